"""Customer notices and operator exceptions, written to PostgreSQL by the order workflow.

The workflow never mails anyone itself: it writes the notice, rendered from its template, to an
outbox (`notices`) that the notice-delivery workflow sends from, so a retried activity cannot
mail twice and a mail outage never holds up an order. Exceptions go to the operators' queue
(`exceptions`) the same way. Both are written once per idempotency key; a retry finds the row
and does nothing.

The order's state change a notice reports is recorded in the workflow's history before the
activity is scheduled, and Temporal runs the activity until it commits: history and outbox
cannot disagree. After the commit the activity wakes the delivery workflow; if that wake-up
is lost (a crash between commit and signal), the workflow's own poll finds the row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from temporalio import activity

from activities.contracts import (
    RAISE_EXCEPTION,
    SEND_NOTICE,
    Empty,
    ExceptionReport,
    Notice,
    Severity,
)
from notifications.render import Storefront, render

Wake = Callable[[], Awaitable[None]]
News = Callable[[Iterable[str]], Awaitable[None]]
"""Tells orders what is open for them on the exception queue (never raises)."""


class NoticeActivities:
    """`send_notice` and `raise_exception`; they share the worker's connection pool. `wake`
    tells the delivery workflow a notice is waiting (None: notices stay in the outbox); `news`
    tells an order what is open for it once an exception is raised (`runtime.exception_news`)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        storefront: Storefront | None = None,
        wake: Wake | None = None,
        news: News | None = None,
    ) -> None:
        self._pool = pool
        self._storefront = storefront or Storefront()
        self._wake = wake
        self._news = news

    def activities(self) -> list[Callable[..., Any]]:
        return [self.send_notice, self.raise_exception]

    @activity.defn(name=SEND_NOTICE.name)
    async def send_notice(self, notice: Notice) -> Empty:
        """Render the notice and queue it for delivery, once per key (the first payload written
        wins); then wake the delivery workflow."""
        activity.logger.info(
            "%s key=%s order=%s kind=%s", SEND_NOTICE.name, notice.key, notice.order_id, notice.kind
        )
        async with self._pool.connection() as conn:
            await self.write_notice(conn, notice)
        await self.wake_delivery(notice.key)
        return Empty()

    async def write_notice(self, conn: AsyncConnection[Any], notice: Notice) -> None:
        """`send_notice`'s write, in the caller's transaction (see there)."""
        payload = notice.model_dump(mode="json")
        text = render(notice, self._storefront)
        cur = await conn.execute(
            # clock_timestamp(), not now(): notices written in one transaction keep their order
            """INSERT INTO notices (key, order_id, kind, payload, recipient, subject, body,
                                    created_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, clock_timestamp())
               ON CONFLICT (key) DO NOTHING
               RETURNING key""",
            (
                notice.key,
                notice.order_id,
                notice.kind.value,
                Jsonb(payload),
                notice.email,
                text.subject,
                text.text,
            ),
        )
        if await cur.fetchone() is None:
            cur = await conn.execute("SELECT payload FROM notices WHERE key = %s", (notice.key,))
            row = await cur.fetchone()
            if row is not None and row[0] != payload:
                # Replays send the same notice; a different one under the key is a bug in
                # how keys are made, and the customer has (or will have) the first one.
                activity.logger.warning(
                    "%s key=%s was already written with another payload; kept the first",
                    SEND_NOTICE.name,
                    notice.key,
                )

    async def wake_delivery(self, key: str) -> None:
        """After the notice's commit: the delivery workflow sends it now, not at its poll."""
        if self._wake is None:
            return
        try:
            await self._wake()
        except Exception as err:  # the delivery workflow's poll finds the notice anyway
            activity.logger.warning(
                "%s key=%s written; waking notice delivery failed (its poll will find it): %s",
                SEND_NOTICE.name,
                key,
                err,
            )

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
            await queue_exception(
                conn, report.key, report.order_id, report.kind, report.severity, report.detail
            )
        if self._news is not None:  # after the commit: the reading includes it
            await self._news([report.order_id])
        return Empty()


async def queue_exception(
    conn: AsyncConnection[Any],
    key: str,
    order_id: str,
    kind: str,
    severity: Severity,
    detail: str,
) -> bool:
    """Write a row to the operators' queue, once per key, in the caller's transaction; whether
    this call wrote it (False: the key was there)."""
    cur = await conn.execute(
        """INSERT INTO exceptions (key, order_id, kind, severity, detail)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (key) DO NOTHING""",
        (key, order_id, kind, severity.value, detail),
    )
    return cur.rowcount == 1
