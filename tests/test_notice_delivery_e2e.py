"""The notice-delivery workflow on the Temporal dev server with the real worker: woken by each
notice written, finding by its own poll a notice whose wake-up was lost (a crash between the
outbox commit and the signal), and retrying a failed send on a durable timer."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.contracts import Notice, NoticeItem, NoticeKind
from activities.notices import NoticeActivities
from config import Settings
from runtime.notice_delivery import delivery_status, ensure_notice_delivery
from tests.delivering import delivering_worker
from tests.webhook_receiver import WebhookReceiver, webhook_receiver
from workflows.notice_delivery import NoticeDeliveryState

pytestmark = pytest.mark.e2e

SECRET = "whsec-e2e"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    async with webhook_receiver(SECRET) as served:
        yield served


def webhook_settings(url: str, **notifications: Any) -> Settings:
    return Settings(
        site="test",
        temporal={"task_queue": f"tq-{uuid.uuid4().hex[:10]}"},
        notifications={
            "channel": "webhook",
            "webhook_url": url,
            "webhook_secret": SECRET,
            **notifications,
        },
    )


async def settled_status(
    client: Client, settings: Settings, done: Callable[[NoticeDeliveryState], bool]
) -> NoticeDeliveryState:
    """The delivery workflow's status once its round has recorded what the webhook saw."""
    async with asyncio.timeout(20):
        while not done(status := await delivery_status(client, settings)):  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # a query is the only way to see it: poll
    return status


def notice(kind: NoticeKind = NoticeKind.ON_BACKORDER) -> Notice:
    order_id = f"W-{uuid.uuid4().hex[:8]}"
    return Notice(
        key=f"backorder-{order_id}/accept/{kind.value}",
        kind=kind,
        order_id=order_id,
        order_number=f"#{order_id}",
        email="ann@example.com",
        items=(NoticeItem(sku="KTP", quantity=2),),
        expected_ship_date=dt.date(2026, 12, 10),
    )


async def test_a_written_notice_wakes_delivery_at_once(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    receiver: tuple[WebhookReceiver, str],
) -> None:
    hook, url = receiver
    settings = webhook_settings(url, poll_interval=dt.timedelta(hours=1))
    wake = partial(ensure_notice_delivery, dev_env.client, settings, wake=True)
    written = notice()
    async with delivering_worker(dev_env.client, pg_pool, settings):
        await ensure_notice_delivery(dev_env.client, settings)  # as the worker's start does
        await ActivityEnvironment().run(NoticeActivities(pg_pool, wake=wake).send_notice, written)
        await hook.wait_for(1, within=20)  # long before the hour's poll
        status = await settled_status(dev_env.client, settings, lambda s: s.delivered > 0)

    assert hook.keys == [written.key] and not hook.rejected
    assert hook.received[0]["order_number"] == written.order_number
    assert status.delivered == 1


async def test_a_notice_whose_wake_up_was_lost_is_found_by_the_poll(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    receiver: tuple[WebhookReceiver, str],
) -> None:
    hook, url = receiver
    settings = webhook_settings(url, poll_interval=dt.timedelta(seconds=2))
    written = notice(NoticeKind.STILL_WAITING)
    async with delivering_worker(dev_env.client, pg_pool, settings):
        await ensure_notice_delivery(dev_env.client, settings)
        await asyncio.sleep(1)  # the first round found nothing; the workflow sleeps
        # committed, then the worker died before waking anyone
        await ActivityEnvironment().run(NoticeActivities(pg_pool).send_notice, written)
        await hook.wait_for(1, within=20)

    assert hook.keys == [written.key]


async def test_a_failed_send_is_retried_on_a_durable_timer(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    receiver: tuple[WebhookReceiver, str],
) -> None:
    hook, url = receiver
    settings = webhook_settings(
        url,
        poll_interval=dt.timedelta(hours=1),
        retry_initial=dt.timedelta(seconds=2),
        retry_max=dt.timedelta(seconds=2),
    )
    wake = partial(ensure_notice_delivery, dev_env.client, settings, wake=True)
    hook.failures = [503]
    written = notice(NoticeKind.FTC_DELAY_OPTION)
    async with delivering_worker(dev_env.client, pg_pool, settings):
        await ActivityEnvironment().run(NoticeActivities(pg_pool, wake=wake).send_notice, written)
        await hook.wait_for(1, within=30)  # the retry comes from the timer, not the hour's poll
        status = await settled_status(dev_env.client, settings, lambda s: s.delivered > 0)

    assert hook.keys == [written.key]
    assert (status.retried, status.delivered) == (1, 1)
