"""Customer notices and operator exceptions, written to PostgreSQL by the order workflow.

The workflow never mails anyone itself: it writes the notice to an outbox (`notices`) that the
notices subsystem renders and delivers, so a retried activity cannot mail twice and a mail
outage never holds up an order. Exceptions go to the operators' queue (`exceptions`) the same
way. Both are written once per idempotency key; a retry finds the row and does nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from temporalio import activity

from activities.contracts import RAISE_EXCEPTION, SEND_NOTICE, Empty, ExceptionReport, Notice


class NoticeActivities:
    """`send_notice` and `raise_exception`; they share the worker's connection pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    def activities(self) -> list[Callable[..., Any]]:
        return [self.send_notice, self.raise_exception]

    @activity.defn(name=SEND_NOTICE.name)
    async def send_notice(self, notice: Notice) -> Empty:
        """Queue the notice for delivery, once per key (the first payload written wins)."""
        activity.logger.info(
            "%s key=%s order=%s kind=%s", SEND_NOTICE.name, notice.key, notice.order_id, notice.kind
        )
        payload = notice.model_dump(mode="json")
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """INSERT INTO notices (key, order_id, kind, payload)
                   VALUES (%s, %s, %s, %s)
                   ON CONFLICT (key) DO NOTHING
                   RETURNING key""",
                (notice.key, notice.order_id, notice.kind.value, Jsonb(payload)),
            )
            if await cur.fetchone() is None:
                cur = await conn.execute(
                    "SELECT payload FROM notices WHERE key = %s", (notice.key,)
                )
                row = await cur.fetchone()
                if row is not None and row[0] != payload:
                    # Replays send the same notice; a different one under the key is a bug in
                    # how keys are made, and the customer has (or will have) the first one.
                    activity.logger.warning(
                        "%s key=%s was already written with another payload; kept the first",
                        SEND_NOTICE.name,
                        notice.key,
                    )
        return Empty()

    @activity.defn(name=RAISE_EXCEPTION.name)
    async def raise_exception(self, report: ExceptionReport) -> Empty:
        """Put the report on the operators' queue, once per key."""
        activity.logger.info(
            "%s key=%s order=%s kind=%s severity=%s",
            RAISE_EXCEPTION.name,
            report.key,
            report.order_id,
            report.kind,
            report.severity,
        )
        async with self._pool.connection() as conn:
            await conn.execute(
                """INSERT INTO exceptions (key, order_id, kind, severity, detail)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (key) DO NOTHING""",
                (report.key, report.order_id, report.kind, report.severity.value, report.detail),
            )
        return Empty()
