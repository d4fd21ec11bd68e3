"""Delivery from the notice outbox over a real webhook on loopback, against real PostgreSQL:
signed, retried after a failure, given up (and raised to an operator) when refused, never sent
twice at once, and sent after a crash left a notice claimed but unsent."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import ActivityEnvironment

from activities.contracts import Notice as NoticeModel
from activities.contracts import NoticeBatchRequest, NoticeDeliveryReport, NoticeItem, NoticeKind
from activities.notice_delivery import NoticeDeliveryActivities, retry_delay
from activities.notices import NoticeActivities
from config.settings import NotificationSettings
from notifications.message import OutboundMessage
from notifications.webhook import WebhookChannel
from tests.webhook_receiver import WebhookReceiver, webhook_receiver

SECRET = "whsec-delivery-test"


def settings(**changes: Any) -> NotificationSettings:
    base: dict[str, Any] = {
        "channel": "webhook",
        "webhook_url": "http://127.0.0.1:9/unused",
        "webhook_secret": SECRET,
        "retry_initial": dt.timedelta(seconds=30),
        "retry_max": dt.timedelta(minutes=10),
    }
    return NotificationSettings(**{**base, **changes})


async def fetch(dsn: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(sql.encode(), params)
        return list(await cur.fetchall())


@pytest.fixture(autouse=True)
async def empty_outbox(pg_dsn: str) -> None:
    """Each test sees only its own notices (the database is shared by the module)."""
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute("DELETE FROM notices")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    async with webhook_receiver(SECRET) as served:
        yield served


async def write_notices(pool: AsyncConnectionPool, count: int) -> list[str]:
    order_id = f"D-{uuid.uuid4().hex[:8]}"
    keys = []
    env = ActivityEnvironment()
    for n in range(count):
        notice = NoticeModel(
            key=f"backorder-{order_id}/still-waiting/{n}",
            kind=NoticeKind.STILL_WAITING,
            order_id=order_id,
            order_number=f"#{order_id}",
            email="ann@example.com",
            items=(NoticeItem(sku="KTP", quantity=2),),
            expected_ship_date=dt.date(2026, 12, 10),
        )
        await env.run(NoticeActivities(pool).send_notice, notice)
        keys.append(notice.key)
    return keys


async def deliver(
    pool: AsyncConnectionPool, url: str, limit: int = 100, **changes: Any
) -> NoticeDeliveryReport:
    channel = WebhookChannel(url, SECRET, timeout=5)
    try:
        activities = NoticeDeliveryActivities(pool, settings(**changes), channel)
        return await ActivityEnvironment().run(
            activities.deliver_notices, NoticeBatchRequest(limit=limit)
        )
    finally:
        await channel.aclose()


async def make_due(dsn: str) -> None:
    """As if the wait before the next try had passed."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("UPDATE notices SET next_attempt_at = now() WHERE status = 'pending'")


async def test_due_notices_are_sent_signed_and_marked_delivered(
    pg_pool: AsyncConnectionPool, pg_dsn: str, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, url = receiver
    keys = await write_notices(pg_pool, 3)

    report = await deliver(pg_pool, url)

    assert (report.claimed, report.delivered, report.retrying, report.failed) == (3, 3, 0, 0)
    assert report.next_due is None and not report.more
    assert sorted(hook.keys) == sorted(keys) and not hook.rejected
    first = next(body for body in hook.received if body["id"] == keys[0])
    assert first["kind"] == "still_waiting" and first["to"] == "ann@example.com"
    assert "KTP" in first["text"] and first["notice"]["items"] == [{"sku": "KTP", "quantity": 2}]
    rows = await fetch(
        pg_dsn,
        "SELECT status, attempts, channel, delivery_ref IS NOT NULL, delivered_at IS NOT NULL"
        " FROM notices ORDER BY key",
    )
    assert rows == [("delivered", 1, "webhook", True, True)] * 3
    # nothing is due any more: a second round sends nothing
    again = await deliver(pg_pool, url)
    assert again.claimed == 0 and len(hook.received) == 3


async def test_a_failed_send_is_retried_later_with_a_doubling_wait(
    pg_pool: AsyncConnectionPool, pg_dsn: str, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, url = receiver
    [key] = await write_notices(pg_pool, 1)
    hook.failures = [503, 500]

    first = await deliver(pg_pool, url)
    assert (first.claimed, first.retrying, first.delivered) == (1, 1, 0)
    [(attempts, error, wait)] = await fetch(
        pg_dsn,
        "SELECT attempts, last_error, extract(epoch FROM next_attempt_at - now())"
        " FROM notices WHERE key = %s",
        key,
    )
    assert attempts == 1 and "503" in error
    assert 25 < float(wait) <= 30  # retry_initial
    assert first.next_due is not None  # the delivery workflow sleeps until then

    assert (await deliver(pg_pool, url)).claimed == 0  # not due yet
    await make_due(pg_dsn)
    second = await deliver(pg_pool, url)
    assert second.retrying == 1
    [(wait,)] = await fetch(
        pg_dsn, "SELECT extract(epoch FROM next_attempt_at - now()) FROM notices"
    )
    assert 55 < float(wait) <= 60  # doubled

    await make_due(pg_dsn)
    third = await deliver(pg_pool, url)
    assert third.delivered == 1
    assert hook.keys == [key]
    assert await fetch(pg_dsn, "SELECT status, attempts, last_error FROM notices") == [
        ("delivered", 3, None)
    ]


def test_the_wait_doubles_up_to_the_limit() -> None:
    s = settings()
    waits = [retry_delay(n, s).total_seconds() for n in range(1, 8)]
    assert waits == [30, 60, 120, 240, 480, 600, 600]


async def test_a_refused_notice_is_given_up_and_raised_to_an_operator(
    pg_pool: AsyncConnectionPool, pg_dsn: str, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, url = receiver
    [key] = await write_notices(pg_pool, 1)
    hook.failures = [410]

    report = await deliver(pg_pool, url)

    assert (report.failed, report.retrying, report.next_due) == (1, 0, None)
    [(status, error)] = await fetch(pg_dsn, "SELECT status, last_error FROM notices")
    assert status == "failed" and "410" in error
    [(kind, severity, detail)] = await fetch(
        pg_dsn,
        "SELECT kind, severity, detail FROM exceptions WHERE key = %s",
        f"{key}/undeliverable",
    )
    assert (kind, severity) == ("notice_undeliverable", "medium")
    assert "still_waiting notice to ann@example.com refused" in detail


async def test_too_many_failures_give_up(
    pg_pool: AsyncConnectionPool, pg_dsn: str, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, url = receiver
    await write_notices(pg_pool, 1)
    hook.failures = [500, 500, 500]

    assert (await deliver(pg_pool, url, max_attempts=2)).retrying == 1
    await make_due(pg_dsn)
    assert (await deliver(pg_pool, url, max_attempts=2)).failed == 1
    assert await fetch(pg_dsn, "SELECT status, attempts FROM notices") == [("failed", 2)]
    assert hook.received == []


async def test_a_notice_claimed_by_a_round_that_died_is_sent_once_its_lease_runs_out(
    pg_pool: AsyncConnectionPool, pg_dsn: str, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, url = receiver
    [key] = await write_notices(pg_pool, 1)
    sending = asyncio.Event()

    class Hangs:
        name = "webhook"

        async def send(self, message: OutboundMessage) -> str:
            sending.set()
            await asyncio.sleep(3600)
            return "never"

        async def aclose(self) -> None:
            pass

    dying = NoticeDeliveryActivities(pg_pool, settings(), Hangs())
    round_ = asyncio.create_task(
        ActivityEnvironment().run(dying.deliver_notices, NoticeBatchRequest())
    )
    await asyncio.wait_for(sending.wait(), 10)
    round_.cancel()  # the worker died mid-send
    with pytest.raises(asyncio.CancelledError):
        await round_

    [(status, attempts, lease)] = await fetch(
        pg_dsn, "SELECT status, attempts, extract(epoch FROM next_attempt_at - now()) FROM notices"
    )
    assert (status, attempts) == ("pending", 1) and float(lease) > 500
    assert (await deliver(pg_pool, url)).claimed == 0  # claimed: no one else sends it

    await make_due(pg_dsn)  # the lease ran out
    assert (await deliver(pg_pool, url)).delivered == 1
    assert hook.keys == [key]


async def test_concurrent_rounds_never_send_a_notice_twice(
    pg_pool: AsyncConnectionPool, pg_dsn: str, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, url = receiver
    keys = await write_notices(pg_pool, 30)

    reports: list[NoticeDeliveryReport] = []
    while True:
        batch = await asyncio.gather(*(deliver(pg_pool, url, limit=4) for _ in range(3)))
        reports += batch
        if not any(r.more for r in batch):
            break

    assert sum(r.delivered for r in reports) == 30
    assert sorted(hook.keys) == sorted(keys)  # each once
    assert await fetch(pg_dsn, "SELECT count(*) FROM notices WHERE status = 'delivered'") == [(30,)]


async def test_the_outbox_channel_sends_nothing(pg_pool: AsyncConnectionPool, pg_dsn: str) -> None:
    await write_notices(pg_pool, 2)
    activities = NoticeDeliveryActivities(pg_pool, NotificationSettings(), None)

    report = await ActivityEnvironment().run(activities.deliver_notices, NoticeBatchRequest())

    assert report == NoticeDeliveryReport(channel="outbox")
    assert await fetch(pg_dsn, "SELECT status, attempts FROM notices") == [("pending", 0)] * 2
