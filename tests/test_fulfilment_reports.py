"""Fulfilment reports back (`fulfilment_reports = "shipped"`), through the order workflow on the
time-skipping server: a ready shipment waits for `shipped`, which takes its units out of the
ledger, captures it and tells the customer the tracking number; a short pick sends units back
to backorder; the order ends when every unit is shipped. Refusals are typed and change nothing.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from domain.fulfilment import ShipmentDelivered, ShipmentShipped, ShortPick
from domain.order_book import CancelLine, ShipmentStatus
from domain.policy import BackorderPolicy, FulfilmentReports, ReleaseMode
from tests.fakes import Gate, World
from tests.order_life import (
    Clock,
    Handle,
    accepted,
    current,
    make_order,
    ready,
    release,
    running,
    start,
    task_queue,
)
from tests.polling import eventually
from workflows import refusals as r
from workflows.backorder import BackorderWorkflow
from workflows.messages import AllotmentSignal, BackorderStatus, CancelRequest, FulfilmentAnswer

REPORTING = BackorderPolicy(
    fulfilment_reports=FulfilmentReports.SHIPPED, release_mode=ReleaseMode.QUANTITY
)


async def report(handle: Handle, message: Any) -> FulfilmentAnswer:
    answer: FulfilmentAnswer = await handle.execute_update(
        "report_fulfilment", message, result_type=FulfilmentAnswer
    )
    return answer


async def refused(handle: Handle, message: Any) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await report(handle, message)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.non_retryable, cause
    return cause


async def allot(
    handle: Handle, pass_id: str, order_id: str, ktp: int, b_waits: bool = False
) -> None:
    """The allocator's allotment of `ktp` units of line L1 (KTP) in one ready shipment; with
    `b_waits`, line L2 (one B) still waits."""
    lines = [("L1", "KTP", ktp, 0), *([("L2", "B", 0, 1)] if b_waits else [])]
    what = release(order_id, lines, ready(current("L1", "KTP", ktp)))
    await handle.signal(BackorderWorkflow.allotment, AllotmentSignal(pass_id=pass_id, release=what))


async def status(handle: Handle) -> BackorderStatus:
    return (await handle.query(BackorderWorkflow.status)).status


def shipped(shipment_id: str, at: dt.datetime, tracking: str = "1Z999AA1") -> ShipmentShipped:
    return ShipmentShipped(
        shipment_id=shipment_id,
        carrier="UPS",
        tracking_number=tracking,
        shipped_at=at,
        estimated_delivery=(at + dt.timedelta(days=3)).date(),
    )


def short_pick(shipment_id: str, at: dt.datetime, found: int) -> ShortPick:
    return ShortPick.model_validate(
        {"shipment_id": shipment_id, "lines": [{"line_id": "L1", "found": found}],
         "reported_at": at}
    )  # fmt: skip


async def test_an_order_ends_when_fulfilment_has_shipped_every_unit(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    order = make_order(t0, [("KTP", 3, "10.00")], paid="30.00")
    world = World(policy=REPORTING)
    queue = task_queue()
    async with running(env, world, queue, cached=False):
        handle = await start(env, order, queue)
        await allot(handle, "P1", order.order_id, ktp=3)
        await eventually(lambda: status(handle), lambda s: s is BackorderStatus.AWAITING_SHIPMENT)
        s1 = f"{order.order_id}-S1"
        # ready, with fulfilment: nothing captured, no "shipped" notice yet
        assert world.payments() == []
        assert c.NoticeKind.SHIPPED not in world.notices()

        # the picker finds 2 of 3: one unit back on backorder, written off the ledger
        now = await env.get_current_time()
        answer = await report(handle, short_pick(s1, now, found=2))
        assert answer.changed and answer.order_status is BackorderStatus.BACKORDERED
        assert answer.shipment.units("L1") == 2 and answer.shipment.amount == Decimal("20.00")
        again = await report(handle, short_pick(s1, now, found=2))  # a redelivered report
        assert not again.changed
        assert world.stock_moves()[-1] == ("short_pick_stock", (("KTP", 1, "current"),))
        assert world.notices()[-1] is c.NoticeKind.SHORT_PICKED
        assert world.applied("update_demand")[-1].backorder.lines[0].quantity == 1

        # shipped: out of the ledger, captured, the customer gets the tracking number
        answer = await report(handle, shipped(s1, now))
        assert answer.shipment.status is ShipmentStatus.SHIPPED
        assert answer.order_status is BackorderStatus.BACKORDERED  # one unit still waits
        assert world.stock_moves()[-1] == ("ship_stock", (("KTP", 2, "current"),))
        assert world.payments() == [("capture", Decimal("20.00"), "auth-0")]
        notice = world.applied("send_notice")[-1]
        assert notice.kind is c.NoticeKind.PARTLY_SHIPPED
        assert (notice.carrier, notice.tracking_number) == ("UPS", "1Z999AA1")
        assert notice.estimated_delivery == (now + dt.timedelta(days=3)).date()
        assert not (await report(handle, shipped(s1, now))).changed  # the same report again
        await report(handle, ShipmentDelivered(shipment_id=s1, delivered_at=now))

        # the last unit: allotted, ready, shipped; then the order ends
        await allot(handle, "P2", order.order_id, ktp=1)
        await eventually(lambda: status(handle), lambda s: s is BackorderStatus.AWAITING_SHIPMENT)
        await report(handle, shipped(f"{order.order_id}-S2", now, tracking="1Z999AA2"))
        summary = await handle.result()

    assert summary.status is BackorderStatus.COMPLETED
    assert [s.status for s in summary.shipments] == [
        ShipmentStatus.DELIVERED,
        ShipmentStatus.SHIPPED,
    ]
    assert world.payments() == [
        ("capture", Decimal("20.00"), "auth-0"),
        ("capture", Decimal("10.00"), "auth-0"),
    ]
    assert world.notices()[-1] is c.NoticeKind.SHIPPED
    assert [m for m, _ in world.stock_moves()].count("ship_stock") == 2
    assert world.records[-1].status is BackorderStatus.COMPLETED


async def test_fulfilment_reports_are_refused_with_a_type_and_change_nothing(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    order = make_order(t0, [("KTP", 2, "10.00"), ("B", 1, "5.00")], paid="25.00")
    world = World(policy=REPORTING)
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await accepted(handle)
        s1 = f"{order.order_id}-S1"
        unknown = await refused(handle, shipped(s1, t0))  # nothing released yet
        assert unknown.type == r.REPORT_REFUSED and s1 in str(unknown)
        await allot(handle, "P1", order.order_id, ktp=2, b_waits=True)
        await eventually(lambda: status(handle), lambda s: s is BackorderStatus.BACKORDERED)
        await eventually(lambda: shipments(handle), lambda n: n == 1)
        too_many = await refused(handle, short_pick(s1, t0, found=3))
        assert too_many.type == r.REPORT_REFUSED and "3" in str(too_many)
        delivered_first = await refused(handle, ShipmentDelivered(shipment_id=s1, delivered_at=t0))
        assert delivered_first.type == r.REPORT_REFUSED
        await report(handle, shipped(s1, t0))
        other = await refused(handle, shipped(s1, t0, tracking="OTHER"))
        assert other.type == r.REPORT_REFUSED
        unreadable = await refused(handle, {"type": "short_pick", "shipment_id": s1, "lines": []})
        assert unreadable.type == r.INVALID_INPUT and "lines" in str(unreadable)
        view = await handle.query(BackorderWorkflow.status)
        assert view.shipments[0].tracking_number == "1Z999AA1"  # the refusals changed nothing
        assert world.payments() == [("capture", Decimal("20.00"), "auth-0")]
        assert [m for m, _ in world.stock_moves()] == ["ship_stock"]


async def shipments(handle: Handle) -> int:
    return len((await handle.query(BackorderWorkflow.status)).shipments)


async def test_an_order_whose_fulfilment_does_not_report_refuses_reports_and_ends_at_ready(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    order = make_order(t0, [("KTP", 1, "10.00")], paid="10.00")
    world = World()  # fulfilment_reports = "none": today's behaviour
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await accepted(handle)
        not_taken = await refused(handle, shipped(f"{order.order_id}-S1", t0))
        assert not_taken.type == r.REPORTS_NOT_TAKEN
        await allot(handle, "P1", order.order_id, ktp=1)
        summary = await handle.result()
    assert summary.status is BackorderStatus.COMPLETED
    assert world.payments() == [("capture", Decimal("10.00"), "auth-0")]
    assert world.notices()[-1] is c.NoticeKind.SHIPPED
    assert "ship_stock" not in [m for m, _ in world.stock_moves()]


async def test_two_reports_accepted_together_are_checked_again_under_the_lock(
    dev_env: WorkflowEnvironment,
) -> None:
    """`shipped` and a `short_pick` of the same shipment, both validated while a cancel holds the
    order's lock (its void waits at the gateway): both validators see a ready shipment and
    accept. The first handler ships it; the second finds it shipped and is refused. The units
    leave the ledger once, as shipped, never also as short-picked."""
    env = dev_env
    now = await env.get_current_time()
    order = make_order(now, [("KTP", 2, "10.00"), ("B", 1, "5.00")], paid="25.00")
    gate = Gate()
    world = World(policy=REPORTING, gates={"void_payment": gate})
    queue = task_queue()
    s1 = f"{order.order_id}-S1"
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await accepted(handle)
        await allot(handle, "P1", order.order_id, ktp=2, b_waits=True)
        await eventually(lambda: shipments(handle), lambda n: n == 1)
        cancel = await handle.start_update(
            BackorderWorkflow.cancel_order,
            CancelRequest(lines=(CancelLine(line_id="L2"),)),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        await gate.entered.wait()  # the cancel holds the lock, its void at the gateway
        first = await handle.start_update(
            "report_fulfilment",
            shipped(s1, now),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            result_type=FulfilmentAnswer,
        )
        second = await handle.start_update(
            "report_fulfilment",
            short_pick(s1, now, found=1),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            result_type=FulfilmentAnswer,
        )
        gate.opened.set()
        await cancel.result()
        assert (await first.result()).shipment.status is ShipmentStatus.SHIPPED
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await second.result()
        summary = await handle.result()

    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == r.REPORT_REFUSED, cause
    assert [m for m, _ in world.stock_moves()] == ["ship_stock"]
    assert world.payments() == [
        ("void", Decimal("5.00"), "auth-0"),
        ("capture", Decimal("20.00"), "auth-0"),
    ]
    assert summary.status is BackorderStatus.COMPLETED


async def test_the_hold_is_renewed_while_fulfilment_has_not_confirmed_the_shipment(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Everything is with fulfilment, nothing is captured yet (capture waits for `shipped`):
    the re-authorisation timer alone runs on, so the shipment is captured from a live hold
    when fulfilment confirms it on day 8, past the first hold's 7 days."""
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    order = make_order(t0, [("KTP", 2, "10.00")], paid="20.00")
    world = World(policy=REPORTING)  # the fake gateway's holds last 7 days
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await allot(handle, "P1", order.order_id, ktp=2)
        await eventually(lambda: status(handle), lambda s: s is BackorderStatus.AWAITING_SHIPMENT)
        view = await handle.query(BackorderWorkflow.status)
        assert view.schedule is not None
        assert [d.kind.value for d in view.schedule.upcoming] == ["reauthorise"]
        await clock.until(8)
        answer = await report(handle, shipped(f"{order.order_id}-S1", await env.get_current_time()))
        summary = await handle.result()
    assert answer.order_status is BackorderStatus.COMPLETED
    pays = [(step, amount, ref) for step, amount, ref in world.payments()]
    assert pays[0] == ("authorise", Decimal("20.00"), "auth-0")  # day 6: the hold renewed
    assert pays[1] == ("void", Decimal("20.00"), "auth-0")
    renewed = world.effects[next(k for k in world.effects if "/reauthorise/" in k)].result
    assert pays[2] == ("capture", Decimal("20.00"), renewed.reference)  # from the live hold
    assert summary.status is BackorderStatus.COMPLETED
