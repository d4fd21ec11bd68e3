"""One order end to end on the Temporal dev server with the real worker: ledger, payment sandbox,
outbox and fulfilment in PostgreSQL. What the fakes assume, the real activities must do."""

from __future__ import annotations

import uuid
from decimal import Decimal
from functools import partial
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
from tests.polling import eventually
from worker import build_worker
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus, CancelRequest, FulfilmentAnswer

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


async def test_fulfilment_reports_move_the_ledger_the_shipment_and_the_money(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """`fulfilment_reports = "shipped"`: a short pick writes off what was not found and puts it
    back on backorder; `shipped` consumes the reservation, records the tracking, captures and
    tells the customer; the order ends once every unit is shipped or cancelled."""
    settings = Settings(
        site="test",
        temporal={"task_queue": f"tq-{uuid.uuid4().hex[:10]}"},
        policy={"fulfilment_reports": "shipped"},
    )
    now = await dev_env.get_current_time()
    checkout = await checked_out(pg_pool, SandboxGateway(pg_pool), now, "F")
    order, auth, sku_a = checkout.order, checkout.auth, checkout.in_stock
    s1, dsn, oid = f"{order.order_id}-S1", pg_dsn, order.order_id
    report = partial(dev_env.client.get_workflow_handle(order.workflow_id).execute_update,
                     "report_fulfilment", result_type=FulfilmentAnswer)  # fmt: skip

    async with build_worker(dev_env.client, pg_pool, settings):
        handle = await dev_env.client.start_workflow(
            BackorderWorkflow.run,
            order,
            id=order.workflow_id,
            task_queue=settings.temporal.task_queue,
        )
        await eventually(
            lambda: handle.query(BackorderWorkflow.status), lambda s: len(s.shipments) == 1
        )
        # acceptance handed 2 units of line 1 to fulfilment: nothing captured or said yet
        assert await rows(dsn, "SELECT captured FROM payment_authorisations WHERE reference = %s",
                          auth.reference) == [(Decimal("0.0000"),)]  # fmt: skip
        picked = await report(
            {"type": "short_pick", "shipment_id": s1, "lines": [{"line_id": "L1", "found": 1}],
             "reported_at": now.isoformat()}
        )  # fmt: skip
        assert picked.changed and picked.shipment.units("L1") == 1
        assert await rows(dsn, "SELECT on_hand, reserved FROM stock WHERE sku = %s", sku_a) == [
            (4, 1)
        ]
        shipped = await report(
            {"type": "shipped", "shipment_id": s1, "carrier": "UPS", "tracking_number": "1Z9",
             "shipped_at": now.isoformat(), "estimated_delivery": str(now.date())}
        )  # fmt: skip
        assert shipped.shipment.status.value == "shipped"
        await handle.execute_update(
            BackorderWorkflow.cancel_order, CancelRequest(reason="no longer needed")
        )
        summary = await handle.result()

    assert summary.status is BackorderStatus.COMPLETED
    assert await rows(dsn, "SELECT on_hand, reserved FROM stock WHERE sku = %s", sku_a) == [(3, 0)]
    assert await rows(
        dsn,
        "SELECT state, sum(quantity) FROM reservations WHERE order_id = %s GROUP BY 1 ORDER BY 1",
        oid,
    ) == [("released", 1), ("shipped", 1)]
    assert await rows(
        dsn, "SELECT delta, reason FROM stock_movements WHERE sku = %s ORDER BY id", sku_a
    ) == [(-1, f"short pick {s1}"), (-1, f"shipped {s1}")]
    assert await rows(
        dsn,
        "SELECT status, amount, carrier, tracking_number FROM shipments WHERE order_id = %s",
        oid,
    ) == [("shipped", Decimal("10.0000"), "UPS", "1Z9")]
    assert await rows(
        dsn,
        "SELECT captured, voided FROM payment_authorisations WHERE reference = %s",
        auth.reference,
    ) == [(Decimal("10.0000"), Decimal("25.0000"))]
    notices = await rows(
        dsn,
        "SELECT kind, payload->>'tracking_number' FROM notices WHERE order_id = %s"
        " ORDER BY created_at, key",
        oid,
    )
    assert notices == [
        ("on_backorder", None),
        ("short_picked", None),
        ("partly_shipped", "1Z9"),
        ("cancelled", None),
    ], notices
