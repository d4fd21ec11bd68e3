"""Stuck orders: a step of an order that keeps failing goes on the operators' exception queue.

Temporal retries a failing activity on its own (a ledger write until its database answers,
a payment for about half an hour), so an order can wait on one step for a long time without
anything failing for good, and nobody looks. This worker interceptor watches every activity of
an order's workflow (`backorder-<order id>`): from the attempt that starts `after` the step was
first scheduled (and at least its `at_attempt`-th), it raises one `order_stuck` exception per
step (key: workflow id + `stuck` + activity id, so once however many attempts follow); when the
step then succeeds, it resolves that exception itself, saying so. Both are best effort: the
watch never fails the step it watches (the database it writes to may be the very thing away).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from activities.contracts import Severity, step_key
from activities.notices import News, queue_exception
from domain.order import WORKFLOW_ID_PREFIX

logger = logging.getLogger(__name__)

KIND = "order_stuck"
RESOLVER = "backorder"
"""Who resolved a stuck-step exception whose step succeeded in the end."""


class StuckSteps(Interceptor):
    """Raise (and clear) `order_stuck` exceptions for steps that keep failing."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        news: News | None = None,
        *,
        after: dt.timedelta = dt.timedelta(minutes=10),
        at_attempt: int = 3,
    ) -> None:
        self.pool, self.news = pool, news
        self.after, self.at_attempt = after, at_attempt

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Watch(next, self)

    def order_of(self, info: activity.Info) -> str | None:
        """The order whose step this attempt is, when it is one of an order's steps that has
        been failing long enough to be called stuck."""
        workflow_id = info.workflow_id or ""
        if not workflow_id.startswith(WORKFLOW_ID_PREFIX) or info.attempt < self.at_attempt:
            return None
        if info.current_attempt_scheduled_time - info.scheduled_time < self.after:
            return None
        return workflow_id.removeprefix(WORKFLOW_ID_PREFIX)

    async def raise_stuck(self, info: activity.Info, order_id: str) -> None:
        detail = (
            f"step {info.activity_type} has been failing since "
            f"{info.scheduled_time:%Y-%m-%d %H:%M} UTC (attempt {info.attempt} now); the order "
            "waits on it. Temporal keeps retrying: the pending activity's last failure in the "
            f"Temporal UI (workflow {info.workflow_id}) says why. Resolved by itself when the "
            "step succeeds."
        )

        async def write(conn: AsyncConnection[Any]) -> bool:
            return await queue_exception(conn, _key(info), order_id, KIND, Severity.HIGH, detail)

        await self._write("raise", order_id, write)

    async def clear_stuck(self, info: activity.Info, order_id: str) -> None:
        async def write(conn: AsyncConnection[Any]) -> bool:
            cur = await conn.execute(
                """UPDATE exceptions SET resolved_at = now(), resolved_by = %s, resolution = %s
                    WHERE key = %s AND resolved_at IS NULL""",
                (RESOLVER, f"{info.activity_type} succeeded at attempt {info.attempt}", _key(info)),
            )
            return cur.rowcount == 1

        await self._write("resolve", order_id, write)

    async def _write(
        self, what: str, order_id: str, change: Callable[[AsyncConnection[Any]], Awaitable[bool]]
    ) -> None:
        """Make the change; tell the order only when it changed something (a step retried
        every 10 s for an hour raises once and tells once, not 360 times)."""
        try:
            async with self.pool.connection() as conn:
                changed = await change(conn)
        except Exception as err:  # never fail the step being watched
            logger.warning("could not %s order %s's stuck-step exception: %s", what, order_id, err)
            return
        if changed and self.news is not None:
            await self.news([order_id])


def _key(info: activity.Info) -> str:
    return step_key(info.workflow_id or "", "stuck", info.activity_id)


class _Watch(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, steps: StuckSteps) -> None:
        super().__init__(next)
        self._steps = steps

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        order_id = self._steps.order_of(info)
        if order_id is not None:
            await self._steps.raise_stuck(info, order_id)
        result = await super().execute_activity(input)
        if order_id is not None:
            await self._steps.clear_stuck(info, order_id)
        return result
