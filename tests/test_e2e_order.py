"""One order end to end on the Temporal dev server with the real worker: ledger, payment sandbox,
outbox and fulfilment in PostgreSQL. What the fakes assume, the real activities must do."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from config import Settings
from domain.order_book import CancelLine
from payments.sandbox import SandboxGateway
from tests.checkout import checked_out
from worker import build_worker
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus, CancelRequest

pytestmark = pytest.mark.e2e


async def rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())


async def test_an_order_ships_what_it_can_and_cancels_the_rest_through_postgresql(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str, settings: Settings
) -> None:
    now = await dev_env.get_current_time()
    # The order system authorised the card at checkout, through the same sandbox gateway.
    checkout = await checked_out(pg_pool, SandboxGateway(pg_pool), now, "E")
    order, auth, sku_a = checkout.order, checkout.auth, checkout.in_stock

    async with build_worker(dev_env.client, pg_pool, settings):
        handle = await dev_env.client.start_workflow(
            BackorderWorkflow.run,
            order,
            id=order.workflow_id,
            task_queue=settings.temporal.task_queue,
        )
        status = await handle.query(BackorderWorkflow.status)
        while not status.log:  # acceptance is under way
            status = await handle.query(BackorderWorkflow.status)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                BackorderWorkflow.cancel_order, CancelRequest(lines=(CancelLine(line_id="L1"),))
            )
        result = await handle.execute_update(
            BackorderWorkflow.cancel_order,
            CancelRequest(lines=(CancelLine(line_id="L2"),), reason="no longer needed"),
        )
        summary = await handle.result()

    assert "nothing left to cancel: 2 shipped" in str(refused.value.cause)
    assert [(p.line_id, p.quantity) for p in result.cancelled] == [("L2", 3)]
    assert result.voided == Decimal("15.00")
    assert summary.status is BackorderStatus.COMPLETED

    dsn, oid = pg_dsn, order.order_id
    assert await rows(dsn, "SELECT on_hand, reserved FROM stock WHERE sku = %s", sku_a) == [(5, 2)]
    assert await rows(
        dsn, "SELECT sku, quantity, state FROM reservations WHERE order_id = %s", oid
    ) == [(sku_a, 2, "reserved")]
    assert await rows(dsn, "SELECT status, amount FROM shipments WHERE order_id = %s", oid) == [
        ("ready", Decimal("20.0000"))
    ]
    assert await rows(
        dsn,
        "SELECT amount, captured, voided FROM payment_authorisations WHERE reference = %s",
        auth.reference,
    ) == [(Decimal("35.0000"), Decimal("20.0000"), Decimal("15.0000"))]
    kinds = await rows(
        dsn, "SELECT kind FROM notices WHERE order_id = %s ORDER BY created_at, key", oid
    )
    assert [k for (k,) in kinds] == ["partly_shipped", "on_backorder", "cancelled"], kinds
    assert await rows(dsn, "SELECT * FROM demand WHERE order_id = %s", oid) == []
    assert await rows(dsn, "SELECT status FROM orders WHERE order_id = %s", oid) == [("completed",)]
