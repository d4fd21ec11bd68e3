"""A long life stays short in history: the workflow continues as new when Temporal suggests it,
carrying its whole state, on a real dev server told to suggest it early."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from config import Settings
from domain.inventory import (
    EventStatus,
    InventoryBatch,
    LocationDefined,
    ProductDefined,
    StockReceived,
)
from domain.order import Order
from domain.order_book import CancelLine
from embedded.process import find_binary
from runtime import allocator
from tests.fakes import World
from tests.order_life import current, make_order, ready, release, running, start, stock, task_queue
from worker import build_worker
from workflows import search_attributes as sa
from workflows.allocator_messages import allocator_id
from workflows.backorder import BackorderWorkflow
from workflows.converter import data_converter
from workflows.messages import AllotmentSignal, BackorderStatus, CancelRequest, CheckNow

SUGGEST_AT = 80
"""History events after which the server suggests continue-as-new (4096 by default)."""
CHECKS = 60
"""Enough for a history past SUGGEST_AT: a check is a signal and a local activity's marker,
and checks arriving together share a workflow task."""


@pytest.fixture(scope="module")
async def eager_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(find_binary("temporal")),
        data_converter=data_converter,
        search_attributes=sa.ALL,
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={SUGGEST_AT}",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.mark.e2e
def asked(world: World) -> int:
    """Checks that reached the allocator: a workflow task that fails (its continue-as-new
    overtaken by a signal) runs its local activities again, and a check may be asked twice."""
    return len({check.reason for check in world.checks})


async def test_a_busy_order_continues_as_new_and_keeps_its_state(
    eager_env: WorkflowEnvironment,
) -> None:
    env = eager_env
    now = await env.get_current_time()
    order = make_order(now, [("A", 1, "10.00"), ("B", 2, "5.00")], paid="20.00")
    world = World(stock=stock({"A": 1}))
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        first_run = (await handle.describe()).run_id
        for i in range(CHECKS):  # a chatty operator: every check is a signal and a step
            await handle.signal(BackorderWorkflow.check_now, CheckNow(reason=f"check {i}"))
        latest = env.client.get_workflow_handle(order.workflow_id)
        for _ in range(100):  # the run continues as new once it has handled the checks
            described = await latest.describe()
            if described.run_id != first_run and asked(world) == CHECKS:
                break
            await asyncio.sleep(0.1)
        assert described.run_id != first_run, "no continue-as-new happened"
        first = await env.client.get_workflow_handle(order.workflow_id, run_id=first_run).describe()
        assert first.status is WorkflowExecutionStatus.CONTINUED_AS_NEW
        assert described.history_length < SUGGEST_AT * 2

        status = await latest.query(BackorderWorkflow.status)
        assert status.status is BackorderStatus.BACKORDERED
        assert [(ln.released, ln.backordered) for ln in status.lines] == [(1, 0), (0, 2)]
        assert status.payment is not None and status.payment.captured == Decimal("10.00")
        assert sum(e.event == "check" for e in status.log) == CHECKS

        both = ready(current("L2", "B", 2))
        await latest.signal(
            BackorderWorkflow.allotment,
            AllotmentSignal(
                pass_id="P1", release=release(order.order_id, [("L2", "B", 2, 0)], both)
            ),
        )
        summary = await env.client.get_workflow_handle_for(
            BackorderWorkflow.run, order.workflow_id
        ).result()

    assert summary.status is BackorderStatus.COMPLETED
    assert [s.shipment_id for s in summary.shipments] == [
        f"{order.order_id}-S1",
        f"{order.order_id}-S2",
    ]
    assert world.payments() == [
        ("capture", Decimal("10.00"), "auth-0"),
        ("capture", Decimal("10.00"), "auth-0"),
    ]
    assert asked(world) == CHECKS, "every check reached the allocator (at least once)"


@pytest.mark.e2e
async def test_a_busy_allocator_continues_as_new_without_losing_an_event(
    eager_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """Twenty feeds, one after another, each a pass: the allocator continues as new on the
    way and every event is applied exactly once."""
    env = eager_env
    settings = Settings(
        site=f"can-{uuid.uuid4().hex[:6]}",
        temporal={"task_queue": task_queue()},
        allocator={"batch_window": timedelta(0)},
    )
    sku = f"CAN-{uuid.uuid4().hex[:6]}"
    setup = InventoryBatch(
        events=(
            LocationDefined(event_id=f"{sku}-loc", location_id="CAN-DC"),
            ProductDefined(event_id=f"{sku}-prod", sku=sku),
        )
    )
    async with build_worker(env.client, pg_pool, settings):
        await allocator.send_inventory(env.client, settings, settings.site, setup)
        handle = env.client.get_workflow_handle(allocator_id(settings.site))
        first_run = (await handle.describe()).run_id
        for i in range(20):
            receipt = StockReceived(event_id=f"{sku}-{i}", sku=sku, location="CAN-DC", quantity=1)
            batch = InventoryBatch(events=(receipt,))
            result = await allocator.send_inventory(env.client, settings, settings.site, batch)
            assert [o.status for o in result.outcomes] == [EventStatus.APPLIED]
        again = await allocator.send_inventory(
            env.client, settings, settings.site, InventoryBatch(events=(receipt,))
        )
        status = await allocator.allocator_status(env.client, settings.site)
        latest = await handle.describe()
    assert [o.status for o in again.outcomes] == [EventStatus.DUPLICATE]
    assert latest.run_id != first_run  # it continued as new at least once
    assert status.passes == 22  # the count carries over
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        cur = await conn.execute("SELECT on_hand FROM stock WHERE sku = %s", (sku,))
        assert await cur.fetchall() == [(20,)]


def largest_order(now: datetime) -> Order:
    """The largest order the contract accepts: 1,000 lines, every id and sku 200 characters,
    each line a sku of its own, paid at checkout."""

    def longest(prefix: str) -> str:
        return prefix + "x" * (200 - len(prefix))

    order_id = longest(f"MAX-{uuid.uuid4().hex[:8]}-")
    lines = [
        {
            "line_id": longest(f"{i:04d}-"),
            "sku": longest(f"SKU-{i:04d}-"),
            "quantity": 2,
            "unit_price": "1.00",
        }
        for i in range(1000)
    ]
    return Order.model_validate(
        {
            "order_id": order_id,
            "order_number": longest("N-"),
            "placed_at": now.isoformat(),
            "currency": "USD",
            "customer": {"id": longest("c-"), "email": "c@example.com", "tier": "t" * 50},
            "fulfillment": {"type": "sth"},
            "lines": lines,
            "payment": {"reference": "auth-0", "amount": "2000.00", "authorised_at": now},
        }
    )


@pytest.mark.e2e
async def test_the_largest_order_the_contract_accepts_lives_its_whole_life(
    eager_env: WorkflowEnvironment,
) -> None:
    """Acceptance, a release, a cancel through the update, continue-as-new and the end, on a
    real server: every search attribute stays within Temporal's limits by construction."""
    env = eager_env
    now = await env.get_current_time()
    order = largest_order(now)
    skus = [ln.sku for ln in order.lines]
    world = World(stock=stock({sku: 2 for sku in skus[:10]}))  # ten lines ship at once
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        first_run = (await handle.describe()).run_id
        latest = env.client.get_workflow_handle_for(BackorderWorkflow.run, order.workflow_id)
        for _ in range(200):  # until acceptance has published what waits
            attributes = (await latest.describe()).typed_search_attributes
            waiting = attributes.get(sa.BACKORDER_SKUS)
            if waiting and waiting[0] == skus[10]:
                break
            await asyncio.sleep(0.05)

        lines = order.lines[10:20]  # the allocator releases ten more
        shipment = ready(*(current(ln.line_id, ln.sku, 2) for ln in lines))
        ten = release(order.order_id, [(ln.line_id, ln.sku, 2, 0) for ln in lines], shipment)
        await latest.signal(BackorderWorkflow.allotment, AllotmentSignal(pass_id="P1", release=ten))
        cancelled = await latest.execute_update(
            BackorderWorkflow.cancel_order,
            CancelRequest(lines=tuple(CancelLine(line_id=ln.line_id) for ln in order.lines[20:30])),
        )
        for _ in range(200):  # it continues as new once idle past the suggestion
            described = await latest.describe()
            if described.run_id != first_run:
                break
            await latest.signal(BackorderWorkflow.check_now, CheckNow(reason="keep busy"))
            await asyncio.sleep(0.05)
        assert described.run_id != first_run, "no continue-as-new happened"
        assert described.status is WorkflowExecutionStatus.RUNNING
        await latest.signal(BackorderWorkflow.cancel, CancelRequest(reason="the rest"))
        summary = await latest.result()

    assert waiting is not None and waiting[-1] == f"+{990 - (len(waiting) - 1)} more"
    assert len(json.dumps(waiting)) <= sa.VALUE_SIZE_LIMIT
    assert waiting[:-1] == skus[10 : 10 + len(waiting) - 1]  # the first waiting skus, in order
    assert len(cancelled.cancelled) == 10
    assert summary.status is BackorderStatus.COMPLETED
    released = [(ln.released, ln.cancelled) for ln in summary.lines]
    assert released == [(2, 0)] * 20 + [(0, 2)] * 980
    captured = sum(amount for step, amount, _ in world.payments() if step == "capture")
    voided = sum(amount for step, amount, _ in world.payments() if step == "void")
    assert (captured, voided) == (Decimal("40.00"), Decimal("1960.00"))
