"""Delivery from the notice outbox: claim what is due, send it, record the outcome per notice.

A claim moves the notice's next attempt past a lease, in the same statement that picks it
(`FOR UPDATE SKIP LOCKED`), so two rounds never send one notice at once, and a worker that
dies mid-send leaves it due again when the lease runs out: delivery is at least once, and the
receiver dedupes by the notice's key (webhook `Idempotency-Key`, mail `Message-ID`).

A failed send is tried again later, the wait doubling from `retry_initial` up to `retry_max`,
by the delivery workflow's timer; a permanent refusal, or `max_attempts` failures, marks the
notice failed and raises it to the operators' exception queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio import activity

from activities.contracts import (
    DELIVER_NOTICES,
    NoticeBatchRequest,
    NoticeDeliveryReport,
    Severity,
)
from activities.notices import News, queue_exception
from config.settings import NotificationSettings
from notifications.message import Channel, DeliveryFailed, OutboundMessage

LEASE = dt.timedelta(minutes=10)
"""How long a claimed notice is not due again: longer than a round may take (the delivery
workflow gives the activity 5 minutes)."""


def retry_delay(attempts: int, settings: NotificationSettings) -> dt.timedelta:
    """The wait before try `attempts + 1`: doubling from `retry_initial`, at most `retry_max`."""
    delay: dt.timedelta = settings.retry_initial * (2 ** min(max(attempts - 1, 0), 30))
    return min(delay, settings.retry_max)


class NoticeDeliveryActivities:
    """`deliver_notices` over one channel; None (the `outbox` channel) sends nothing."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        settings: NotificationSettings,
        channel: Channel | None,
        news: News | None = None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._channel = channel
        self._news = news

    def activities(self) -> list[Callable[..., Any]]:
        return [self.deliver_notices]

    @activity.defn(name=DELIVER_NOTICES.name)
    async def deliver_notices(self, request: NoticeBatchRequest) -> NoticeDeliveryReport:
        """One round: send up to `limit` due notices, `concurrency` at a time."""
        channel = self._channel
        if channel is None:
            return NoticeDeliveryReport(channel="outbox")
        claimed = await self._claim(request.limit, channel.name)
        gate = asyncio.Semaphore(self._settings.concurrency)

        async def one(message: OutboundMessage, attempts: int) -> str:
            async with gate:
                outcome = await self._deliver(channel, message, attempts)
                activity.heartbeat(message.key)
                return outcome

        outcomes = await asyncio.gather(*(one(m, a) for m, a in claimed))
        report = NoticeDeliveryReport(
            channel=channel.name,
            claimed=len(claimed),
            delivered=outcomes.count("delivered"),
            retrying=outcomes.count("retrying"),
            failed=outcomes.count("failed"),
            more=len(claimed) == request.limit,
            next_due=await self._next_due(),
        )
        if claimed:
            activity.logger.info(
                "%s via %s: %d claimed, %d delivered, %d retrying, %d failed",
                DELIVER_NOTICES.name,
                channel.name,
                report.claimed,
                report.delivered,
                report.retrying,
                report.failed,
            )
        return report

    async def _claim(self, limit: int, channel: str) -> list[tuple[OutboundMessage, int]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE notices n
                      SET attempts = n.attempts + 1, next_attempt_at = now() + %s, channel = %s
                     FROM (SELECT key FROM notices
                            WHERE status = 'pending' AND next_attempt_at <= now()
                            ORDER BY next_attempt_at, created_at
                            LIMIT %s
                              FOR UPDATE SKIP LOCKED) due
                    WHERE n.key = due.key
                RETURNING n.key, n.kind, n.order_id, n.recipient, n.subject, n.body, n.payload,
                          n.attempts""",
                (LEASE, channel, limit),
            )
            rows = await cur.fetchall()
        return [
            (
                OutboundMessage(
                    key=key,
                    kind=kind,
                    order_id=order_id,
                    order_number=str(payload.get("order_number", order_id)),
                    to=recipient,
                    subject=subject,
                    text=body,
                    payload=payload,
                ),
                attempts,
            )
            for key, kind, order_id, recipient, subject, body, payload, attempts in rows
        ]

    async def _deliver(self, channel: Channel, message: OutboundMessage, attempts: int) -> str:
        """Send one notice and record how it went: delivered, retrying or failed."""
        try:
            reference = await channel.send(message)
        except DeliveryFailed as err:
            return await self._failed(message, attempts, str(err), permanent=err.permanent)
        except Exception as err:  # a bug or an unexpected library error: try again later
            return await self._failed(message, attempts, f"{type(err).__name__}: {err}")
        async with self._pool.connection() as conn:
            await conn.execute(
                """UPDATE notices SET status = 'delivered', delivered_at = now(),
                                      delivery_ref = %s, last_error = NULL
                    WHERE key = %s""",
                (reference, message.key),
            )
        activity.logger.info(
            "notice key=%s delivered via %s (try %d): %s",
            message.key,
            channel.name,
            attempts,
            reference,
        )
        return "delivered"

    async def _failed(
        self, message: OutboundMessage, attempts: int, error: str, *, permanent: bool = False
    ) -> str:
        give_up = permanent or attempts >= self._settings.max_attempts
        async with self._pool.connection() as conn, conn.transaction():
            if give_up:
                await conn.execute(
                    "UPDATE notices SET status = 'failed', last_error = %s WHERE key = %s",
                    (error, message.key),
                )
                why = "refused" if permanent else f"failed {attempts} times"
                await queue_exception(
                    conn,
                    f"{message.key}/undeliverable",
                    message.order_id,
                    "notice_undeliverable",
                    Severity.MEDIUM,
                    f"{message.kind} notice to {message.to} {why}: {error}",
                )
            else:
                await conn.execute(
                    """UPDATE notices SET next_attempt_at = now() + %s, last_error = %s
                        WHERE key = %s""",
                    (retry_delay(attempts, self._settings), error, message.key),
                )
        if give_up and self._news is not None:
            await self._news([message.order_id])
        activity.logger.warning(
            "notice key=%s try %d %s: %s",
            message.key,
            attempts,
            "given up" if give_up else "will be retried",
            error,
        )
        return "failed" if give_up else "retrying"

    async def _next_due(self) -> dt.datetime | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT min(next_attempt_at) FROM notices WHERE status = 'pending'"
            )
            row = await cur.fetchone()
        return row[0] if row else None
