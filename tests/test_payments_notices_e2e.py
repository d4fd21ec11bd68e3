"""One order on the Temporal dev server with the real worker, its money going over HTTP to the
sandbox gateway (with faults injected) and its notices to a signed webhook: a capture whose
answer was lost is retried by Temporal and charged once, a 5xx'd void is retried, and the
customer gets each notice once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from config import Settings
from domain.order_book import CancelLine
from payments.http_gateway import HttpGateway
from payments.sandbox import SandboxGateway
from payments.sandbox_app import SandboxApp
from payments.server import serve_asgi
from runtime.notice_delivery import ensure_notice_delivery
from tests.checkout import checked_out
from tests.delivering import delivering_worker
from tests.webhook_receiver import WebhookReceiver, webhook_receiver
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus, CancelRequest

pytestmark = pytest.mark.e2e

SECRET = "whsec-order-e2e"


async def rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())


@pytest.fixture
async def sandbox_url(pg_pool: AsyncConnectionPool) -> AsyncIterator[str]:
    async with serve_asgi(SandboxApp(SandboxGateway(pg_pool))) as url:
        yield url


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    async with webhook_receiver(SECRET) as served:
        yield served


async def test_money_over_http_survives_faults_and_notices_reach_the_webhook_once(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    pg_dsn: str,
    sandbox_url: str,
    receiver: tuple[WebhookReceiver, str],
) -> None:
    hook, hook_url = receiver
    settings = Settings(
        site="test",
        temporal={"task_queue": f"tq-{uuid.uuid4().hex[:10]}"},
        payments={"sandbox_url": sandbox_url},
        notifications={"channel": "webhook", "webhook_url": hook_url, "webhook_secret": SECRET},
    )
    now = await dev_env.get_current_time()
    async with HttpGateway(sandbox_url) as gateway:  # the order system, at checkout
        checkout = await checked_out(pg_pool, gateway, now, "H")
    order, auth, order_id = checkout.order, checkout.auth, checkout.order.order_id
    async with httpx.AsyncClient(base_url=sandbox_url) as sandbox:
        for fault in (
            {"operation": "capture", "order_id": order_id, "kind": "lost_response"},
            {"operation": "void", "order_id": order_id, "kind": "error_500"},
        ):
            (await sandbox.post("/_sandbox/faults", json=fault)).raise_for_status()

        async with (
            HttpGateway(settings.sandbox_url, timeout=5) as gateway,
            delivering_worker(dev_env.client, pg_pool, settings, gateway),
        ):
            await ensure_notice_delivery(dev_env.client, settings)
            handle = await dev_env.client.start_workflow(
                BackorderWorkflow.run,
                order,
                id=order.workflow_id,
                task_queue=settings.temporal.task_queue,
            )
            await hook.wait_for(2, within=60)  # partly shipped, on backorder
            result = await handle.execute_update(
                BackorderWorkflow.cancel_order,
                CancelRequest(lines=(CancelLine(line_id="L2"),), reason="no longer needed"),
            )
            summary = await handle.result()
            await hook.wait_for(3, within=30)
        left = (await sandbox.get("/_sandbox/faults")).json()

    assert summary.status is BackorderStatus.COMPLETED
    assert result.voided == Decimal("15.00")
    assert left == {"faults": []} or not left.get("faults"), left  # both faults were hit
    # charged once although the capture's answer was lost and Temporal sent it again
    assert await rows(
        pg_dsn,
        "SELECT amount, captured, voided FROM payment_authorisations WHERE reference = %s",
        auth.reference,
    ) == [(Decimal("35.0000"), Decimal("20.0000"), Decimal("15.0000"))]
    assert await rows(
        pg_dsn,
        "SELECT operation, amount FROM payment_requests WHERE order_id = %s"
        " AND operation <> 'authorise' ORDER BY created_at",
        order_id,
    ) == [("capture", Decimal("20.0000")), ("void", Decimal("15.0000"))]
    # each notice once, signed, in the order the customer should read them
    assert [body["kind"] for body in hook.received] == [
        "partly_shipped",
        "on_backorder",
        "cancelled",
    ]
    assert not hook.rejected
    cancelled = hook.received[2]
    assert cancelled["order_number"] == order.order_number
    assert "15.00 USD" in cancelled["text"]
    assert await rows(
        pg_dsn, "SELECT DISTINCT status FROM notices WHERE order_id = %s", order_id
    ) == [("delivered",)]
