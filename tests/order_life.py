"""Helpers for the order workflow tests: an order made for a test, a worker on the fake world,
and time told in days since acceptance."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.order import Order
from domain.planner import (
    Allotment,
    LineOutcome,
    Location,
    OrderRelease,
    ParentStatus,
    Receipt,
    Shipment,
    ShipmentKind,
    Stock,
    StockLevel,
)
from tests.fakes import World
from tests.leftovers import wind_down
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderSummary


def make_order(
    now: dt.datetime,
    lines: Sequence[tuple[str, int, str]],
    paid: str | None = None,
    **extra: Any,
) -> Order:
    """An order placed `now` with lines (sku, quantity, unit price), line ids L1, L2...; `paid`:
    the checkout payment's amount (authorisation auth-0, or capture cap-0 at order)."""
    order_id = extra.pop("order_id", f"T-{uuid.uuid4().hex[:10]}")
    data: dict[str, Any] = {
        "order_id": order_id,
        "order_number": f"N-{order_id[2:8]}",
        "placed_at": now.isoformat(),
        "currency": "USD",
        "customer": {"id": "cust-1", "email": "c@example.com"},
        "fulfillment": {"type": "sth"},
        "lines": [
            {"line_id": f"L{i}", "sku": sku, "quantity": q, "unit_price": price}
            for i, (sku, q, price) in enumerate(lines, start=1)
        ],
        **extra,
    }
    if paid is not None:
        data["payment"] = {"reference": "auth-0", "amount": paid, "authorised_at": now.isoformat()}
    return Order.model_validate(data)


def stock(
    on_hand: dict[str, int] | None = None, receipts: Sequence[tuple[str, str, int, dt.date]] = ()
) -> Stock:
    """Stock at one location DC: units on hand per sku, and receipts (id, sku, units, date)."""
    return Stock(
        locations=(Location(location_id="DC"),),
        on_hand=tuple(
            StockLevel(sku=sku, location="DC", quantity=q) for sku, q in (on_hand or {}).items()
        ),
        receipts=tuple(
            Receipt(receipt_id=rid, sku=sku, location="DC", quantity=q, expected_date=day)
            for rid, sku, q, day in receipts
        ),
    )


def task_queue() -> str:
    """A task queue of the test's own, so tests never share workers."""
    return f"tq-{uuid.uuid4().hex[:8]}"


def ready(*allotments: Allotment) -> Shipment:
    return Shipment(kind=ShipmentKind.READY, location="DC", allotments=allotments)


def incoming(day: dt.date, *allotments: Allotment) -> Shipment:
    """A future shipment waiting for receipts expected on `day`."""
    return Shipment(
        kind=ShipmentKind.FUTURE, location="DC", expected_date=day, allotments=allotments
    )


def current(line_id: str, sku: str, quantity: int) -> Allotment:
    return Allotment(line_id=line_id, sku=sku, quantity=quantity, location="DC", source="current")


def future(line_id: str, sku: str, quantity: int, receipt: str, day: dt.date) -> Allotment:
    return Allotment(
        line_id=line_id,
        sku=sku,
        quantity=quantity,
        location="DC",
        source="future",
        receipt_id=receipt,
        expected_date=day,
    )


class Clock:
    """Days since the order was accepted, on the time-skipping server."""

    def __init__(self, env: WorkflowEnvironment, start: dt.datetime) -> None:
        self.env, self.start = env, start

    async def until(self, day: float) -> None:
        now = await self.env.get_current_time()
        wait = self.start + dt.timedelta(days=day) - now
        assert wait > dt.timedelta(0), f"day {day} is already past"
        await self.env.sleep(wait)

    def day(self, instant: dt.datetime) -> float:
        return round((instant - self.start) / dt.timedelta(days=1), 1)


@asynccontextmanager
async def running(
    env: WorkflowEnvironment, world: World, task_queue: str, *, cached: bool = True
) -> AsyncIterator[Worker]:
    """A worker on the fake world; not `cached`: it keeps no workflow in memory, so every task
    replays the whole history first, as after a worker restart (a replay that would redo a step
    or take another path shows up at once). Gates a failed test left shut are opened on the way
    out, and what is still running is wound down before the worker goes (tests/leftovers.py)."""
    world.clock = env.get_current_time
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[BackorderWorkflow],
        activities=world.activities(),
        max_cached_workflows=100 if cached else 0,
    ) as worker:
        try:
            yield worker
        finally:
            for gate in world.gates.values():
                gate.opened.set()
            await wind_down(env, task_queue)


Handle = WorkflowHandle[BackorderWorkflow, BackorderSummary]


def local_activity_marker(event: HistoryEvent) -> str | None:
    """The activity type a local activity's marker records (None: not such a marker)."""
    if not event.HasField("marker_recorded_event_attributes"):
        return None
    marker = event.marker_recorded_event_attributes
    if marker.marker_name != "core_local_activity":
        return None
    data = json.loads(marker.details["data"].payloads[0].data)
    return str(data["activity_type"])


def step_of(event: HistoryEvent) -> tuple[str, bool] | None:
    """The activity an event starts (a regular one's scheduled event, a local one's marker) and
    whether it ran locally; None: the event starts none."""
    if event.HasField("activity_task_scheduled_event_attributes"):
        return event.activity_task_scheduled_event_attributes.activity_type.name, False
    local = local_activity_marker(event)
    return None if local is None else (local, True)


async def start(env: WorkflowEnvironment, order: Order, task_queue: str) -> Handle:
    return await env.client.start_workflow(
        BackorderWorkflow.run, order, id=order.workflow_id, task_queue=task_queue
    )


def release(
    order_id: str, lines: list[tuple[str, str, int, int]], *shipments: Shipment
) -> OrderRelease:
    """An allotment: per line (line id, sku, released, left backordered)."""
    outcomes = tuple(
        LineOutcome(line_id=lid, sku=sku, released=r, backordered=b, cancelled=0)
        for lid, sku, r, b in lines
    )
    done = not any(b for *_, b in lines)
    return OrderRelease(
        order_id=order_id,
        shipments=shipments,
        lines=outcomes,
        parent_status=ParentStatus.REASSIGNED if done else ParentStatus.BACKORDERED,
    )


def money(*pairs: tuple[str, str]) -> list[tuple[str, Decimal]]:
    return [(step, Decimal(amount)) for step, amount in pairs]


async def seen(handle: Handle, event: EventType.ValueType) -> None:
    """Until a workflow task has completed after the latest `event`: the workflow has it."""
    for _ in range(200):
        events = [e.event_type async for e in handle.fetch_history_events()]
        last = max((i for i, e in enumerate(events) if e == event), default=None)
        if last is not None and EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in events[last:]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the workflow never handled {EventType.Name(event)}")


async def accepted(handle: Handle) -> None:
    """Until acceptance has begun (its first log entry)."""
    for _ in range(200):
        if (await handle.query(BackorderWorkflow.status)).log:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the order was never accepted")
