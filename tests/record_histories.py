"""Record workflow histories for the replay test: `python -m tests.record_histories vN`.

Run it when a workflow change is released, and commit the new files next to the old ones.
Never delete or regenerate a history of a version that may still have running workflows:
the replay test proves today's code can still continue those runs (`workflow.patched`).
The activities are the test world's (`tests.fakes`): a replay never runs activities, it only
checks that the workflow asks for the same ones in the same order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowUpdateStage
from temporalio.common import WorkflowIDReusePolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import contracts as c
from domain.inventory import EventOutcome, EventStatus, InventoryBatch, StockReceived
from domain.order_book import CancelLine
from domain.policy import (
    BackorderPolicy,
    FulfilmentReports,
    PaymentTiming,
    ReleaseMode,
    SplitNumbering,
)
from embedded.process import find_binary
from runtime.temporal_setup import register_search_attributes
from tests.fakes import Gate, World
from tests.order_life import (
    Clock,
    accepted,
    current,
    future,
    incoming,
    make_order,
    ready,
    release,
    running,
    seen,
    start,
    stock,
)
from tests.polling import eventually
from workflows.allocator import AllocatorWorkflow
from workflows.allocator_messages import AllocatorStart, QueueMove, allocator_id
from workflows.backorder import BackorderWorkflow
from workflows.converter import data_converter
from workflows.messages import (
    AllotmentSignal,
    CancelRequest,
    CheckNow,
    ConsentSignal,
    ExceptionBrief,
    OpenExceptions,
    PriorityChange,
    ReceiptChange,
    ReceiptStatus,
)
from workflows.notice_delivery import NoticeDeliveryState, NoticeDeliveryWorkflow, delivery_id

HISTORIES = Path(__file__).parent / "histories"
BY_QUANTITY = BackorderPolicy(release_mode=ReleaseMode.QUANTITY, future_inventory=True)

Scenario = Callable[[WorkflowEnvironment, str], Awaitable[str]]
EntityScenario = Callable[[WorkflowEnvironment, str], Awaitable[str | tuple[str, str]]]
"""An entity's scenario: its workflow id, or its id and the run whose history to keep."""
"""Runs one order's life on the task queue given; returns its workflow id."""


async def cancelled_after_three_days(env: WorkflowEnvironment, queue: str) -> str:
    t0 = await env.get_current_time()
    order = make_order(t0, [("KTP", 5, "10.00")])
    handle = await start(env, order, queue)
    await env.sleep(dt.timedelta(days=3))
    await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="changed my mind"))
    await handle.result()
    return order.workflow_id


async def released_in_parts_over_ninety_days(env: WorkflowEnvironment, queue: str) -> str:
    t0 = await env.get_current_time()
    clock, day91 = Clock(env, t0), (t0 + dt.timedelta(days=91)).date()
    order = make_order(t0, [("A", 2, "10.00"), ("B", 4, "5.00")], paid="40.00")
    handle = await start(env, order, queue)
    await clock.until(28)
    await handle.signal(BackorderWorkflow.consent, ConsentSignal(until=day91 + dt.timedelta(4)))
    await clock.until(40)
    one = ready(current("L2", "B", 1))
    signal = AllotmentSignal(
        pass_id="P1", release=release(order.order_id, [("L2", "B", 1, 3)], one)
    )
    await handle.signal(BackorderWorkflow.allotment, signal)
    await handle.signal(BackorderWorkflow.allotment, signal)
    await clock.until(45)
    later = incoming(day91, future("L2", "B", 3, "PO-7", day91))
    signal = AllotmentSignal(
        pass_id="P2", release=release(order.order_id, [("L2", "B", 3, 0)], later)
    )
    await handle.signal(BackorderWorkflow.allotment, signal)
    await clock.until(89.5)
    arrived = ReceiptChange(receipt_id="PO-7", status=ReceiptStatus.ARRIVED)
    await handle.signal(
        BackorderWorkflow.allotment, AllotmentSignal(pass_id="P3", receipts=(arrived,))
    )
    await handle.result()
    return order.workflow_id


async def part_cancelled_then_ftc_cancelled(env: WorkflowEnvironment, queue: str) -> str:
    t0 = await env.get_current_time()
    order = make_order(t0, [("A", 3, "10.00"), ("B", 2, "5.00")], paid="40.00")
    handle = await start(env, order, queue)
    await env.sleep(dt.timedelta(days=2))
    await handle.execute_update(
        BackorderWorkflow.cancel_order, CancelRequest(lines=(CancelLine(line_id="L2"),))
    )
    await handle.result()
    return order.workflow_id


async def refused_allotment_then_partly_released(env: WorkflowEnvironment, queue: str) -> str:
    """A stale allotment is refused (its stock released, the allocator told, demand re-synced);
    a good one ships; a cancel frees the future units."""
    t0 = await env.get_current_time()
    order = make_order(t0, [("KTP", 5, "10.00")], paid="50.00")
    handle = await start(env, order, queue)
    await env.sleep(dt.timedelta(days=1))
    too_many = release(order.order_id, [("L1", "KTP", 6, 0)], ready(current("L1", "KTP", 6)))
    await handle.signal(
        BackorderWorkflow.allotment, AllotmentSignal(pass_id="P1", release=too_many)
    )
    day = (t0 + dt.timedelta(days=10)).date()
    two = release(
        order.order_id,
        [("L1", "KTP", 4, 1)],
        ready(current("L1", "KTP", 2)),
        incoming(day, future("L1", "KTP", 2, "PO-1", day)),
    )
    await handle.signal(BackorderWorkflow.allotment, AllotmentSignal(pass_id="P2", release=two))
    await env.sleep(dt.timedelta(days=1))
    await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="too slow"))
    await handle.result()
    return order.workflow_id


async def allotment_refused_while_cancel_voids(env: WorkflowEnvironment, queue: str) -> str:
    """The race of settle-under-the-lock: stock is allotted while a whole-order cancel waits on
    its void; the allotment is refused and its stock goes back, and nothing is voided twice."""
    t0 = await env.get_current_time()
    order = make_order(t0, [("B", 2, "10.00")], paid="20.00")
    handle = await start(env, order, queue)
    await accepted(handle)
    cancel = await handle.start_update(
        BackorderWorkflow.cancel_order,
        CancelRequest(reason="changed my mind"),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
    )
    gate = RACE_WORLD.gates["void_payment"]
    await gate.entered.wait()
    two = release(order.order_id, [("L1", "B", 2, 0)], ready(current("L1", "B", 2)))
    await handle.signal(BackorderWorkflow.allotment, AllotmentSignal(pass_id="P1", release=two))
    await seen(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    gate.opened.set()
    await cancel.result()
    await handle.result()
    return order.workflow_id


async def late_order_noticed_at_once(env: WorkflowEnvironment, queue: str) -> str:
    """ftc-clock-from-placed-at: placed 28 days before it reached us, its delay notice goes
    out with acceptance."""
    t0 = await env.get_current_time()
    order = make_order(t0 - dt.timedelta(days=28), [("B", 2, "5.00")])
    handle = await start(env, order, queue)
    await env.sleep(dt.timedelta(days=2))
    await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="too late"))
    await handle.result()
    return order.workflow_id


async def duplicate_start_refused(env: WorkflowEnvironment, queue: str) -> str:
    """claim-the-order-id: an ended order started again under its workflow id fails at once."""
    t0 = await env.get_current_time()
    order = make_order(t0, [("KTP", 1, "10.00")])
    handle = await start(env, order, queue)
    await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="first run"))
    await handle.result()
    again = await env.client.start_workflow(
        BackorderWorkflow.run,
        order,
        id=order.workflow_id,
        task_queue=queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    with contextlib.suppress(WorkflowFailureError):
        await again.result()
    return order.workflow_id


async def messages_answered_and_refused(env: WorkflowEnvironment, queue: str) -> str:
    """answer-every-message: updates answer; signals that cannot be applied (malformed, an
    unknown name, an unknown tier, nothing to consent to) are logged and raised."""
    t0 = await env.get_current_time()
    order = make_order(t0, [("B", 3, "5.00"), ("C", 1, "2.00")], paid="17.00")
    handle = await start(env, order, queue)
    await env.sleep(dt.timedelta(hours=12))
    await handle.signal("set_priority", {"tier": 5})
    await handle.signal("setpriority", {"tier": "vip"})
    await handle.signal(BackorderWorkflow.set_priority, PriorityChange(tier="gold"))
    await handle.signal(BackorderWorkflow.consent, ConsentSignal())
    await handle.execute_update(BackorderWorkflow.change_priority, PriorityChange(tier="vip"))
    await handle.execute_update(BackorderWorkflow.request_check, CheckNow(reason="called"))
    lines = (CancelLine(line_id="L2"),)
    await handle.execute_update(BackorderWorkflow.cancel_order, CancelRequest(lines=lines))
    await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="the rest"))
    await handle.result()
    return order.workflow_id


async def inexact_order_refused(env: WorkflowEnvironment, queue: str) -> str:
    """strict-order-contract: an order only an earlier release's rules accept (a price as a
    JSON number) fails its start."""
    t0 = await env.get_current_time()
    order = make_order(t0, [("B", 1, "5.00")]).model_dump(mode="json")
    order["lines"][0]["unit_price"] = 5
    handle = await env.client.start_workflow(
        "BackorderWorkflow", order, id=f"backorder-{order['order_id']}", task_queue=queue
    )
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    return handle.id


async def exceptions_news_mirrored(env: WorkflowEnvironment, queue: str) -> str:
    """open-exceptions-news: news of the exception queue sets the attribute and details; an
    overtaken reading is ignored; the order then ends with nothing open."""
    t0 = await env.get_current_time()
    order = make_order(t0, [("B", 2, "5.00")])
    handle = await start(env, order, queue)
    await env.sleep(dt.timedelta(hours=12))
    brief = ExceptionBrief(id=1, kind="order_stuck", severity="high", raised_at=t0)
    read = t0 + dt.timedelta(hours=12)
    news = OpenExceptions(open=1, latest=(brief,), as_of=read)
    await handle.signal(BackorderWorkflow.exceptions_changed, news)
    await handle.signal(BackorderWorkflow.exceptions_changed, OpenExceptions(open=0, as_of=t0))
    await env.sleep(dt.timedelta(hours=1))
    cleared = OpenExceptions(open=0, as_of=read + dt.timedelta(hours=1))
    await handle.signal(BackorderWorkflow.exceptions_changed, cleared)
    await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="done"))
    await handle.result()
    return order.workflow_id


RACE_WORLD = World(gates={"void_payment": Gate()})


class AllocatorWorld:
    """Fake allocator activities: every event applies; the first pass's only winner has ended,
    so its stock comes back and a second pass runs."""

    def __init__(self) -> None:
        self.deliveries = 0

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name=c.ALLOCATE.name)
        async def allocate(request: c.PassRequest) -> c.PassReport:
            outcomes = tuple(
                EventOutcome(event_id=e.event_id, status=EventStatus.APPLIED)
                for e in request.events
            )
            return c.PassReport(
                pass_id=request.pass_id, site=request.site, outcomes=outcomes, signals=1
            )

        @activity.defn(name=c.DELIVER_ALLOTMENTS.name)
        async def deliver(request: c.DeliveryRequest) -> c.DeliveryReport:
            self.deliveries += 1
            if self.deliveries == 1:
                return c.DeliveryReport(gone=("O-1",), freed_skus=("KTP",))
            return c.DeliveryReport(delivered=1)

        return [allocate, deliver]


async def allocator_batches_events_and_checks(env: WorkflowEnvironment, queue: str) -> str:
    start = AllocatorStart(site="replay", batch_window=dt.timedelta(seconds=2))
    handle = await env.client.start_workflow(
        AllocatorWorkflow.run, start, id=allocator_id("replay"), task_queue=queue
    )
    first = StockReceived(event_id="E1", sku="KTP", location="DC", quantity=5)
    second = first.model_copy(update={"event_id": "E2"})
    await handle.signal(AllocatorWorkflow.inventory, InventoryBatch(events=(first,)))
    await handle.execute_update(AllocatorWorkflow.apply_inventory, InventoryBatch(events=(second,)))
    await handle.execute_update(AllocatorWorkflow.run_check, c.AllocationCheck(reason="button"))
    await handle.signal(AllocatorWorkflow.check, c.AllocationCheck(order_ids=("O-2",)))
    inexact = first.model_dump(mode="json") | {"event_id": "E3", "quantity": "2"}
    await handle.signal("inventory", {"events": [inexact]})  # rejected, not applied
    await env.sleep(dt.timedelta(seconds=5))
    await handle.terminate("recorded")
    return handle.id


class LoadedAllocatorWorld:
    """Fake allocator activities whose first pass runs until `release` is set: events sent
    meanwhile arrive under load."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = asyncio.Event()
        self.passes = 0

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name=c.ALLOCATE.name)
        async def allocate(request: c.PassRequest) -> c.PassReport:
            self.passes += 1
            if self.passes == 1:
                self.running.set()
                await self.release.wait()
            outcomes = tuple(
                EventOutcome(event_id=e.event_id, status=EventStatus.APPLIED)
                for e in request.events
            )
            return c.PassReport(pass_id=request.pass_id, site=request.site, outcomes=outcomes)

        return [allocate]


LOADED = LoadedAllocatorWorld()


async def allocator_batches_under_load_then_moves(
    env: WorkflowEnvironment, queue: str
) -> tuple[str, str]:
    """Started as before allocators had a queue of their own (none named): an idle pass at
    once, two events under load batched after the window, then a move (continue-as-new). The
    first run's history is kept."""
    start = AllocatorStart(site="replay-move", batch_window=dt.timedelta(seconds=2))
    handle = await env.client.start_workflow(
        AllocatorWorkflow.run, start, id=allocator_id("replay-move"), task_queue=queue
    )
    first = StockReceived(event_id="E1", sku="KTP", location="DC", quantity=5)
    await handle.signal(AllocatorWorkflow.inventory, InventoryBatch(events=(first,)))
    await LOADED.running.wait()
    for event_id in ("E2", "E3"):
        event = first.model_copy(update={"event_id": event_id})
        await handle.signal(AllocatorWorkflow.inventory, InventoryBatch(events=(event,)))
    LOADED.release.set()
    await env.sleep(dt.timedelta(seconds=5))
    await handle.signal(AllocatorWorkflow.move_to_queue, QueueMove(task_queue=queue))
    await env.sleep(dt.timedelta(seconds=5))
    first_run = handle.first_execution_run_id
    assert first_run is not None
    await env.client.get_workflow_handle(handle.id).terminate("recorded")
    return handle.id, first_run


class NoticeWorld:
    """A fake outbox: the first round sends one notice and fails another (due again in 30 s),
    the second sends that one, then nothing is due."""

    def __init__(self) -> None:
        self.rounds = 0

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name=c.DELIVER_NOTICES.name)
        async def deliver(request: c.NoticeBatchRequest) -> c.NoticeDeliveryReport:
            self.rounds += 1
            if self.rounds == 1:
                return c.NoticeDeliveryReport(channel="webhook")
            if self.rounds == 2:
                due = activity.info().current_attempt_scheduled_time + dt.timedelta(seconds=30)
                return c.NoticeDeliveryReport(
                    channel="webhook", claimed=2, delivered=1, retrying=1, next_due=due
                )
            if self.rounds == 3:
                return c.NoticeDeliveryReport(channel="webhook", claimed=1, delivered=1)
            return c.NoticeDeliveryReport(channel="webhook")

        return [deliver]


async def fulfilment_reported_short_picked_and_shipped(env: WorkflowEnvironment, queue: str) -> str:
    """fulfilment_reports = "shipped": a ready shipment waits for fulfilment; a short pick sends
    a unit back to backorder, `shipped` captures, the last unit is allotted, shipped and
    delivered, and the order ends."""
    t0 = await env.get_current_time()
    order = make_order(t0, [("KTP", 3, "10.00")], paid="30.00")
    handle = await start(env, order, queue)
    three = release(order.order_id, [("L1", "KTP", 3, 0)], ready(current("L1", "KTP", 3)))
    await handle.signal(BackorderWorkflow.allotment, AllotmentSignal(pass_id="P1", release=three))
    s1, s2 = f"{order.order_id}-S1", f"{order.order_id}-S2"

    async def report(data: dict[str, Any]) -> None:
        await handle.execute_update("report_fulfilment", data)

    async def shipments(n: int) -> None:  # the allotment is in the book
        await eventually(
            lambda: handle.query(BackorderWorkflow.status), lambda s: len(s.shipments) >= n
        )

    at = t0.isoformat()
    await shipments(1)
    await report({"type": "short_pick", "shipment_id": s1,
                  "lines": [{"line_id": "L1", "found": 2}], "reported_at": at})  # fmt: skip
    await report({"type": "shipped", "shipment_id": s1, "carrier": "UPS",
                  "tracking_number": "1Z1", "shipped_at": at})  # fmt: skip
    one = release(order.order_id, [("L1", "KTP", 1, 0)], ready(current("L1", "KTP", 1)))
    await handle.signal(BackorderWorkflow.allotment, AllotmentSignal(pass_id="P2", release=one))
    await shipments(2)
    await report({"type": "delivered", "shipment_id": s1, "delivered_at": at})
    await report({"type": "shipped", "shipment_id": s2, "carrier": "UPS",
                  "tracking_number": "1Z2", "shipped_at": at})  # fmt: skip
    await handle.result()
    return order.workflow_id


async def split_orders_numbered(env: WorkflowEnvironment, queue: str) -> str:
    """split_numbering = "sequence": one unit ships at acceptance under the order's number, a
    release ships as `-001`, the next waits for a receipt as `-002` and ships when it arrives."""
    t0 = await env.get_current_time()
    order = make_order(t0, [("KTP", 4, "10.00")], paid="40.00")
    handle = await start(env, order, queue)
    await env.sleep(dt.timedelta(days=1))
    one = release(order.order_id, [("L1", "KTP", 1, 2)], ready(current("L1", "KTP", 1)))
    await handle.signal(BackorderWorkflow.allotment, AllotmentSignal(pass_id="P1", release=one))
    await env.sleep(dt.timedelta(days=1))
    day = (t0 + dt.timedelta(days=5)).date()
    po = future("L1", "KTP", 2, "PO-1", day)
    two = release(order.order_id, [("L1", "KTP", 2, 0)], incoming(day, po))
    await handle.signal(BackorderWorkflow.allotment, AllotmentSignal(pass_id="P2", release=two))
    await env.sleep(dt.timedelta(days=2))
    arrived = ReceiptChange(receipt_id="PO-1", status=ReceiptStatus.ARRIVED)
    await handle.signal(
        BackorderWorkflow.allotment, AllotmentSignal(pass_id="P3", receipts=(arrived,))
    )
    summary = await handle.result()
    numbers = [s.order_number for s in summary.shipments]
    n = order.order_number
    assert numbers == [None, f"{n}-001", f"{n}-002"], numbers
    return order.workflow_id


async def notices_delivered_woken_retried_and_polled(env: WorkflowEnvironment, queue: str) -> str:
    state = NoticeDeliveryState(poll_interval=dt.timedelta(minutes=1))
    handle = await env.client.start_workflow(
        NoticeDeliveryWorkflow.run, state, id=delivery_id(queue), task_queue=queue
    )
    await env.sleep(dt.timedelta(seconds=5))
    await handle.signal(NoticeDeliveryWorkflow.wake)  # two notices written
    await env.sleep(dt.timedelta(minutes=3))  # the retry's timer, then two polls
    await handle.terminate("recorded")
    return handle.id


SCENARIOS: dict[str, tuple[Scenario, World]] = {
    "refused_allotment_then_partly_released": (
        refused_allotment_then_partly_released,
        World(policy=BY_QUANTITY),
    ),
    "cancelled_after_three_days": (cancelled_after_three_days, World()),
    "released_in_parts_over_ninety_days": (
        released_in_parts_over_ninety_days,
        World(policy=BY_QUANTITY, stock=stock({"A": 2}, receipts=[("PO-7", "B", 3, dt.date.max)])),
    ),
    "allotment_refused_while_cancel_voids": (allotment_refused_while_cancel_voids, RACE_WORLD),
    "late_order_noticed_at_once": (late_order_noticed_at_once, World()),
    "duplicate_start_refused": (duplicate_start_refused, World()),
    "messages_answered_and_refused": (messages_answered_and_refused, World()),
    "inexact_order_refused": (inexact_order_refused, World()),
    "exceptions_news_mirrored": (exceptions_news_mirrored, World()),
    "fulfilment_reported_short_picked_and_shipped": (
        fulfilment_reported_short_picked_and_shipped,
        World(policy=BackorderPolicy(fulfilment_reports=FulfilmentReports.SHIPPED)),
    ),
    "split_orders_numbered": (
        split_orders_numbered,
        World(
            policy=BY_QUANTITY.override(split_numbering=SplitNumbering.SEQUENCE),
            stock=stock({"KTP": 1}, receipts=[("PO-1", "KTP", 2, dt.date.max)]),
        ),
    ),
    "part_cancelled_then_ftc_cancelled": (
        part_cancelled_then_ftc_cancelled,
        World(
            policy=BackorderPolicy(payment_timing=PaymentTiming.AT_ORDER),
            stock=stock({"A": 1}),
        ),
    ),
}


async def record(version: str, only: str = "") -> list[Path]:
    """Record every scenario whose name contains `only` as `<version>-<name>.json`."""
    written = []
    entities: dict[str, tuple[EntityScenario, type, Callable[[], list[Callable[..., Any]]]]] = {
        "allocator_batches_events_and_checks": (
            allocator_batches_events_and_checks,
            AllocatorWorkflow,
            lambda: AllocatorWorld().activities(),
        ),
        "allocator_batches_under_load_then_moves": (
            allocator_batches_under_load_then_moves,
            AllocatorWorkflow,
            LOADED.activities,
        ),
        "notices_delivered_woken_retried_and_polled": (
            notices_delivered_woken_retried_and_polled,
            NoticeDeliveryWorkflow,
            lambda: NoticeWorld().activities(),
        ),
    }
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(find_binary("temporal-test-server")),
        data_converter=data_converter,
    )
    try:
        await register_search_attributes(env.client, "default")
        for name, (scenario, world) in SCENARIOS.items():
            if only not in name:
                continue
            async with running(env, world, f"replay-{name}"):
                workflow_id = await scenario(env, f"replay-{name}")
                history = await env.client.get_workflow_handle(workflow_id).fetch_history()
            path = HISTORIES / f"{version}-{name}.json"
            path.write_text(history.to_json())
            written.append(path)
        for name, (entity_scenario, workflow_class, fakes) in entities.items():
            if only not in name:
                continue
            queue = f"replay-{name}"
            async with Worker(
                env.client, task_queue=queue, workflows=[workflow_class], activities=fakes()
            ):
                kept = await entity_scenario(env, queue)
                workflow_id, run_id = kept if isinstance(kept, tuple) else (kept, None)
                handle = env.client.get_workflow_handle(workflow_id, run_id=run_id)
                history = await handle.fetch_history()
            path = HISTORIES / f"{version}-{name}.json"
            path.write_text(history.to_json())
            written.append(path)
    finally:
        await env.shutdown()
    return written


if __name__ == "__main__":
    import sys

    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m tests.record_histories VERSION [PART]   (e.g. v9 allocator)")
    for p in asyncio.run(record(*sys.argv[1:])):
        print(f"wrote {p}")
