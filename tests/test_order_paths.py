"""The order workflow's other paths on the time-skipping server, with the activities faked in one
world: customer cancels (update and signal), the FTC rule without consent, auto-cancel, a
Temporal cancel, stale allotments, reservation races, declined re-authorisations, cancelled
receipts, the exact re-authorisation at release, priority changes and allocator checks.

Each test asserts the exact stock and money operations, figures and notices the path produces.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from domain.order import Order
from domain.order_book import CancelledPart, CancelLine, ShipmentStatus
from domain.planner import BackorderLine
from domain.policy import BackorderPolicy, PaymentTiming
from domain.schedule import ConsentKind, DutyKind, FtcState
from domain.schedule.days import add_working_days, end_of_day
from tests.fakes import Effect, World
from tests.order_life import (
    Clock,
    current,
    future,
    incoming,
    make_order,
    ready,
    release,
    running,
    start,
    step_of,
    stock,
    task_queue,
)
from workflows import search_attributes as sa
from workflows.backorder import BackorderWorkflow
from workflows.messages import (
    AllotmentSignal,
    BackorderStatus,
    BackorderSummary,
    CancelRequest,
    CheckNow,
    PriorityChange,
    ReceiptChange,
    ReceiptStatus,
)

Handle = WorkflowHandle[BackorderWorkflow, BackorderSummary]

AT_ORDER = BackorderPolicy(payment_timing=PaymentTiming.AT_ORDER)
SHIPPED_KINDS = (c.NoticeKind.PARTLY_SHIPPED, c.NoticeKind.SHIPPED)
LONG_HOLD = BackorderPolicy(reauth_interval_days=365)
"""With an authorisation that lasts 200 days: no re-authorisation within a test."""


def long_held(order: Order, t0: dt.datetime) -> Order:
    """The order with a checkout authorisation that lasts 200 days."""
    assert order.payment is not None
    payment = order.payment.model_copy(update={"expires_at": t0 + dt.timedelta(days=200)})
    return order.model_copy(update={"payment": payment})


def since(world: World, mark: int) -> list[Effect]:
    """The effects applied after the first `mark` ones, in the order they were applied."""
    return list(world.effects.values())[mark:]


def names(effects: Sequence[Effect]) -> list[str]:
    return [e.name for e in effects]


def of(effects: Sequence[Effect], name: str) -> list[Any]:
    return [e.request for e in effects if e.name == name]


def near(instant: dt.datetime, expected: dt.datetime) -> bool:
    return abs(instant - expected) < dt.timedelta(minutes=1)


async def scheduled(handle: Handle) -> list[tuple[str, dt.datetime]]:
    """Every activity the workflow ran (once per call, however often it was retried): regular
    ones by their scheduled event, local ones by their marker."""
    calls = []
    async for event in handle.fetch_history_events():
        step = step_of(event)
        if step is not None:
            calls.append((step[0], event.event_time.ToDatetime(tzinfo=dt.UTC)))
    return calls


def line_figures(lines: Sequence[Any]) -> list[tuple[str, int, int, int, int]]:
    return [(ln.line_id, ln.ordered, ln.released, ln.backordered, ln.cancelled) for ln in lines]


# -- 1. a customer cancels part of the order through the cancel_order update -----------------------


async def test_cancel_order_update_refuses_what_it_cannot_cancel_then_cancels_part(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    day20 = (t0 + dt.timedelta(days=20)).date()
    order = make_order(t0, [("A", 2, "10.00"), ("B", 4, "5.00")], paid="40.00")
    world = World(stock=stock({"A": 2}))
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await clock.until(1)
        po = future("L2", "B", 2, "PO-1", day20)
        await handle.signal(
            BackorderWorkflow.allotment,
            AllotmentSignal(
                pass_id="P1",
                release=release(order.order_id, [("L2", "B", 2, 2)], incoming(day20, po)),
            ),
        )
        await clock.until(2)
        before = await handle.query(BackorderWorkflow.status)
        mark, tries = len(world.effects), len(world.attempts)

        with pytest.raises(WorkflowUpdateFailedError) as unknown:
            await handle.execute_update(
                BackorderWorkflow.cancel_order, CancelRequest(lines=(CancelLine(line_id="L9"),))
            )
        with pytest.raises(WorkflowUpdateFailedError) as shipped:
            await handle.execute_update(
                BackorderWorkflow.cancel_order, CancelRequest(lines=(CancelLine(line_id="L1"),))
            )
        refused = await handle.query(BackorderWorkflow.status)
        assert (len(world.effects), len(world.attempts)) == (mark, tries)  # nothing changed

        result = await handle.execute_update(
            BackorderWorkflow.cancel_order,
            CancelRequest(
                lines=(CancelLine(line_id="L2", quantity=3),),
                reason="needs fewer",
                requested_by="cs",
            ),
        )
        after = await handle.query(BackorderWorkflow.status)
        cancel_effects = since(world, mark)
        await clock.until(3)
        arrived = ReceiptChange(receipt_id="PO-1", status=ReceiptStatus.ARRIVED)
        await handle.signal(
            BackorderWorkflow.allotment, AllotmentSignal(pass_id="P2", receipts=(arrived,))
        )
        summary = await handle.result()

    refusals = [(e.value.cause.type, e.value.cause.message) for e in (unknown, shipped)
                if isinstance(e.value.cause, ApplicationError)]  # fmt: skip
    assert refusals == [
        ("UnknownLine", f"order {order.order_id} has no line 'L9'"),
        ("CancelRejected", "line L1 (A) has nothing left to cancel: 2 shipped, 0 cancelled"),
    ]
    assert (refused.lines, refused.shipments, refused.payment, refused.log) == (
        before.lines,
        before.shipments,
        before.payment,
        before.log,
    )

    s1, s2 = f"{order.order_id}-S1", f"{order.order_id}-S2"
    assert result.cancelled == (
        CancelledPart(
            line_id="L2", sku="B", from_backorder=2, from_future=((s2, 1),), amount=Decimal("15")
        ),
    )
    assert (result.voided, result.refunded) == (Decimal("15.00"), Decimal(0))

    assert names(cancel_effects) == [  # money first, then the cancel's writes together
        "release_stock",
        "void_payment",
        "publish_shipment",
        "update_demand",
        "send_notice",
    ]
    # Only the unit taken out of the future shipment had stock reserved for it.
    (freed,) = of(cancel_effects, "release_stock")
    assert freed.allotments == (future("L2", "B", 1, "PO-1", day20),)
    (published,) = of(cancel_effects, "publish_shipment")
    assert published.shipment.shipment_id == s2
    assert published.shipment.status is ShipmentStatus.FUTURE
    assert published.shipment.allotments == (future("L2", "B", 1, "PO-1", day20),)
    assert published.shipment.amount == Decimal("5.00")
    (void,) = of(cancel_effects, "void_payment")
    assert (void.amount, void.reference) == (Decimal("15.00"), "auth-0")
    (demand,) = of(cancel_effects, "update_demand")
    assert demand.backorder is None
    (notice,) = of(cancel_effects, "send_notice")
    assert notice.kind is c.NoticeKind.CANCELLED
    assert notice.items == (c.NoticeItem(sku="B", quantity=3),)
    assert notice.amount == Decimal("15.00")

    assert after.status is BackorderStatus.AWAITING_RECEIPT
    assert line_figures(after.lines) == [("L1", 2, 2, 0, 0), ("L2", 4, 1, 0, 3)]
    assert [(s.shipment_id, s.status, s.amount) for s in after.shipments] == [
        (s1, ShipmentStatus.READY, Decimal("20.00")),
        (s2, ShipmentStatus.FUTURE, Decimal("5.00")),
    ]
    assert after.cancel_reason == "needs fewer"
    assert after.payment is not None
    assert (after.payment.authorised, after.payment.captured, after.payment.voided) == (
        Decimal("5.00"),
        Decimal("20.00"),
        Decimal("15.00"),
    )

    # The whole life: S1 captured at acceptance, 15 voided by the cancel, S2 captured on arrival.
    assert world.payments() == [
        ("capture", Decimal("20.00"), "auth-0"),
        ("void", Decimal("15.00"), "auth-0"),
        ("capture", Decimal("5.00"), "auth-0"),
    ]
    assert world.stock_moves() == [
        ("reserve_stock", (("A", 2, "current"),)),
        ("release_stock", (("B", 1, "future"),)),
    ]
    assert world.notices() == [
        c.NoticeKind.PARTLY_SHIPPED,
        c.NoticeKind.ON_BACKORDER,
        c.NoticeKind.CANCELLED,
        c.NoticeKind.SHIPPED,
    ]
    assert summary.status is BackorderStatus.COMPLETED
    assert line_figures(summary.lines) == [("L1", 2, 2, 0, 0), ("L2", 4, 1, 0, 3)]


# -- 2. the whole order cancelled by the cancel signal, payment taken at order ---------------------


async def test_cancel_signal_refunds_the_unshipped_value_each_effect_once_after_lost_responses(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    day20 = (t0 + dt.timedelta(days=20)).date()
    order = make_order(t0, [("A", 2, "10.00"), ("B", 4, "5.00")], paid="40.00")
    world = World(policy=AT_ORDER, stock=stock({"A": 2}))
    queue = task_queue()
    async with running(env, world, queue, cached=False):
        handle = await start(env, order, queue)
        await clock.until(1)
        po = future("L2", "B", 3, "PO-1", day20)
        await handle.signal(
            BackorderWorkflow.allotment,
            AllotmentSignal(
                pass_id="P1",
                release=release(order.order_id, [("L2", "B", 3, 1)], incoming(day20, po)),
            ),
        )
        await clock.until(2)
        mark = len(world.effects)
        # the first attempt of each of these loses its response after the effect
        world.fail_after_effect.update(
            {"release_stock": 1, "publish_shipment": 1, "refund_payment": 1}
        )
        await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="changed my mind"))
        summary = await handle.result()
        final = await handle.query(BackorderWorkflow.status)

    cancel_effects = since(world, mark)
    assert names(cancel_effects) == [
        "release_stock",
        "refund_payment",
        "publish_shipment",
        "update_demand",
        "send_notice",
        "send_notice",
    ]
    (freed,) = of(cancel_effects, "release_stock")
    assert freed.allotments == (po,)
    (withdrawn,) = of(cancel_effects, "publish_shipment")
    assert withdrawn.shipment.shipment_id == f"{order.order_id}-S2"
    assert withdrawn.shipment.status is ShipmentStatus.CANCELLED
    # No capture at acceptance (it was taken at checkout); exactly the unshipped value refunded.
    assert world.payments() == [("refund", Decimal("20.00"), "auth-0")]
    cancelled, refunded = of(cancel_effects, "send_notice")
    assert (cancelled.kind, cancelled.items, cancelled.amount) == (
        c.NoticeKind.CANCELLED,
        (c.NoticeItem(sku="B", quantity=4),),
        Decimal("20.00"),
    )
    # the refund is confirmed in its own message, after the cancellation
    assert (refunded.kind, refunded.items, refunded.amount) == (
        c.NoticeKind.REFUNDED,
        (c.NoticeItem(sku="B", quantity=4),),
        Decimal("20.00"),
    )
    assert of(cancel_effects, "update_demand")[0].backorder is None

    assert summary.status is BackorderStatus.COMPLETED  # A shipped
    assert line_figures(summary.lines) == [("L1", 2, 2, 0, 0), ("L2", 4, 0, 0, 4)]
    assert summary.payment is not None
    assert (summary.payment.captured, summary.payment.refunded) == (
        Decimal("40.00"),
        Decimal("20.00"),
    )
    assert final.cancel_reason == "changed my mind"

    # Each lost response was retried with the very same request; every key applied once.
    for name in ("release_stock", "publish_shipment", "refund_payment"):
        tries = [a for a in world.attempts if a.name == name]
        assert len(tries) == len(world.applied(name)) + 1, name
    for attempt in world.attempts:
        key = getattr(attempt.request, "key", None)
        if key is not None:
            assert world.effects[key].request == attempt.request, key
    assert world.fail_after_effect == {
        "release_stock": 0,
        "publish_shipment": 0,
        "refund_payment": 0,
    }


async def test_cancel_signal_before_anything_shipped_refunds_all_and_ends_cancelled(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    order = make_order(t0, [("B", 2, "10.00")], paid="20.00")
    world = World(policy=AT_ORDER)
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await clock.until(1)
        await handle.signal(BackorderWorkflow.cancel)
        summary = await handle.result()

    assert world.payments() == [("refund", Decimal("20.00"), "auth-0")]
    assert world.stock_moves() == []
    assert world.notices() == [
        c.NoticeKind.ON_BACKORDER,
        c.NoticeKind.CANCELLED,
        c.NoticeKind.REFUNDED,
    ]
    assert summary.status is BackorderStatus.CANCELLED
    assert line_figures(summary.lines) == [("L1", 2, 0, 0, 2)]
    assert [r.status for r in world.records] == [
        BackorderStatus.BACKORDERED,
        BackorderStatus.CANCELLED,
    ]


# -- 3. the FTC rule: no consent ---------------------------------------------------------------


async def test_ftc_cancels_on_day_60_without_consent_and_refunds(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    day91 = (t0 + dt.timedelta(days=91)).date()
    order = make_order(t0, [("B", 3, "5.00")], paid="15.00")
    world = World(policy=AT_ORDER, stock=stock(receipts=[("PO-9", "B", 3, day91)]))
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await clock.until(26)
        flagged = await handle.query(BackorderWorkflow.status)
        await clock.until(28)
        noticed = await handle.query(BackorderWorkflow.status)
        summary = await handle.result()
        final = await handle.query(BackorderWorkflow.status)
        described = await handle.describe()

    assert flagged.ftc_state is FtcState.FLAGGED
    assert noticed.ftc_state is FtcState.NOTICE_SENT
    effects = list(world.effects.values())
    notices = [(e.request.kind, clock.day(e.at)) for e in effects if e.name == "send_notice"]
    assert notices == [
        (c.NoticeKind.ON_BACKORDER, 0.0),
        (c.NoticeKind.STILL_WAITING, 7.0),
        (c.NoticeKind.STILL_WAITING, 14.0),
        (c.NoticeKind.FTC_DELAY_OPTION, 27.0),
        (c.NoticeKind.CANCELLED, 60.0),
        (c.NoticeKind.REFUNDED, 60.0),  # paid at order: the refund is confirmed
    ]
    delay = next(n for n in world.applied("send_notice") if n.kind is c.NoticeKind.FTC_DELAY_OPTION)
    assert delay.revised_ship_date == day91
    assert delay.respond_by is not None and near(delay.respond_by, t0 + dt.timedelta(days=60))
    cancelled = world.applied("send_notice")[-1]
    assert (cancelled.items, cancelled.amount) == (
        (c.NoticeItem(sku="B", quantity=3),),
        Decimal("15.00"),
    )
    refunds = [(e.request.amount, e.request.reference, clock.day(e.at)) for e in effects
               if e.name == "refund_payment"]  # fmt: skip
    assert refunds == [(Decimal("15.00"), "auth-0", 60.0)]
    assert world.payments() == [("refund", Decimal("15.00"), "auth-0")]
    assert world.applied("update_demand")[-1].backorder is None

    assert summary.status is BackorderStatus.CANCELLED
    # cancelled 60 days after placed_at (the notices above), a moment before 60 days after
    # acceptance; the time-skipping server's clock runs in real time while the cancel's steps
    # run, so under load the order may end a few seconds past the 60th day of its backorder
    assert summary.days_in_backorder in (59, 60)
    assert line_figures(summary.lines) == [("L1", 3, 0, 0, 3)]
    assert final.ftc_state is FtcState.CANCELLED
    assert final.cancel_reason is not None and final.cancel_reason.startswith("FTC rule")
    assert final.schedule is not None
    refund_by = final.schedule.ftc.refund_by
    assert refund_by == add_working_days((t0 + dt.timedelta(days=60)).date(), 7)
    attrs = described.typed_search_attributes
    assert attrs.get(sa.FTC_STATE) == FtcState.CANCELLED.value
    assert attrs.get(sa.BACKORDER_STATUS) == BackorderStatus.CANCELLED.value


async def test_ftc_silence_consents_then_the_renewed_notice_and_a_cancel_without_express_consent(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    day45 = (t0 + dt.timedelta(days=45)).date()
    ship_by = end_of_day(day45)  # the consented date lasts all day
    order = long_held(make_order(t0, [("B", 3, "5.00")], paid="15.00"), t0)
    world = World(policy=LONG_HOLD, stock=stock(receipts=[("PO-4", "B", 3, day45)]))
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await clock.until(28)
        consented = await handle.query(BackorderWorkflow.status)
        summary = await handle.result()
        final = await handle.query(BackorderWorkflow.status)
        described = await handle.describe()

    assert consented.ftc_state is FtcState.CONSENTED
    assert consented.schedule is not None
    assert consented.schedule.ftc.consent is ConsentKind.SILENCE
    assert consented.schedule.ftc.ship_by == day45

    sent = [(e.request, e.at) for e in world.effects.values() if e.name == "send_notice"]
    assert [n.kind for n, _ in sent] == [
        c.NoticeKind.ON_BACKORDER,
        c.NoticeKind.STILL_WAITING,
        c.NoticeKind.STILL_WAITING,
        c.NoticeKind.FTC_DELAY_OPTION,
        c.NoticeKind.FTC_RENEWED_NOTICE,
        c.NoticeKind.CANCELLED,
    ]
    (delay, at_delay), (renewed, at_renewed), (cancelled, at_cancel) = sent[3:]
    assert clock.day(at_delay) == 27.0
    assert (delay.revised_ship_date, delay.respond_by) == (day45, None)  # silence is consent
    assert near(at_renewed, ship_by - dt.timedelta(days=3))
    assert renewed.revised_ship_date == day45 + dt.timedelta(days=2)
    assert renewed.respond_by is not None and near(renewed.respond_by, ship_by)
    assert near(at_cancel, ship_by)
    assert (cancelled.items, cancelled.amount) == (
        (c.NoticeItem(sku="B", quantity=3),),
        Decimal("15.00"),
    )
    # Nothing captured; the hold is voided when the order is cancelled, and nothing else moved.
    voids = [(e.request.amount, e.request.reference, e.at) for e in world.effects.values()
             if e.name == "void_payment"]  # fmt: skip
    assert len(voids) == 1
    assert voids[0][:2] == (Decimal("15.00"), "auth-0") and near(voids[0][2], ship_by)
    assert world.payments() == [("void", Decimal("15.00"), "auth-0")]

    assert summary.status is BackorderStatus.CANCELLED
    assert final.ftc_state is FtcState.CANCELLED
    assert described.typed_search_attributes.get(sa.FTC_STATE) == FtcState.CANCELLED.value
    assert summary.payment is not None
    assert (summary.payment.authorised, summary.payment.voided) == (Decimal(0), Decimal("15.00"))


# -- 4. auto-cancel ----------------------------------------------------------------------------


async def test_auto_cancel_on_its_day_voids_the_current_authorisation_and_stops(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    order = make_order(t0, [("B", 3, "5.00")], paid="15.00")
    world = World(policy=BackorderPolicy(auto_cancel_days=10))
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        summary = await handle.result()
        final = await handle.query(BackorderWorkflow.status)

    effects = list(world.effects.values())
    pays = [
        (e.name.removesuffix("_payment"), e.request.amount, e.request.reference, clock.day(e.at))
        for e in effects
        if e.name.endswith("_payment")
    ]
    # Re-authorised on day 6 (7-day hold less a day), then the fresh hold voided on day 10.
    reauth = next(e for e in effects if e.name == "authorise_payment")
    fresh = reauth.result.reference
    assert pays == [
        ("authorise", Decimal("15.00"), "auth-0", 6.0),  # renews auth-0
        ("void", Decimal("15.00"), "auth-0", 6.0),
        ("void", Decimal("15.00"), fresh, 10.0),
    ]
    notices = [(e.request.kind, clock.day(e.at)) for e in effects if e.name == "send_notice"]
    assert notices == [
        (c.NoticeKind.ON_BACKORDER, 0.0),
        (c.NoticeKind.STILL_WAITING, 7.0),
        (c.NoticeKind.CANCELLED, 10.0),
    ]
    assert world.applied("send_notice")[-1].amount == Decimal("15.00")
    assert world.applied("send_notice")[-1].reason == "not filled within 10 days"  # told why
    assert max(clock.day(e.at) for e in effects) == 10.0  # no timer after the cancel
    assert summary.status is BackorderStatus.CANCELLED
    assert summary.days_in_backorder == 10
    assert line_figures(summary.lines) == [("L1", 3, 0, 0, 3)]
    assert final.cancel_reason == "not filled within 10 days"
    assert final.schedule is not None and final.schedule.upcoming == ()


async def test_auto_cancel_takes_only_what_is_still_backordered(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """`auto_cancel_days`: "cancel and refund what is still backordered" (policy, DutyKind): a
    future shipment already assigned to incoming stock keeps its units, and its customer keeps
    hearing from the timers that guard it until it ships; auto-cancel does not fire again."""
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    day20 = (t0 + dt.timedelta(days=20)).date()
    order = long_held(make_order(t0, [("A", 2, "10.00"), ("B", 3, "5.00")], paid="35.00"), t0)
    world = World(policy=LONG_HOLD.override(auto_cancel_days=10))
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await clock.until(1)
        po = future("L2", "B", 3, "PO-1", day20)
        await handle.signal(
            BackorderWorkflow.allotment,
            AllotmentSignal(
                pass_id="P1",
                release=release(
                    order.order_id, [("L1", "A", 0, 2), ("L2", "B", 3, 0)], incoming(day20, po)
                ),
            ),
        )
        await clock.until(11)
        after = await handle.query(BackorderWorkflow.status)
        # On day 10 only L1's waiting units were cancelled: L2 keeps its future shipment.
        assert line_figures(after.lines) == [("L1", 2, 0, 0, 2), ("L2", 3, 3, 0, 0)]
        assert after.status is BackorderStatus.AWAITING_RECEIPT
        assert world.stock_moves() == []  # the future shipment's stock stays reserved
        assert world.payments() == [("void", Decimal("20.00"), "auth-0")]
        await clock.until(19)
        mark = len(world.effects)
        arrived = ReceiptChange(receipt_id="PO-1", status=ReceiptStatus.ARRIVED)
        await handle.signal(
            BackorderWorkflow.allotment, AllotmentSignal(pass_id="P2", receipts=(arrived,))
        )
        summary = await handle.result()

    kinds = [(e.request.kind, clock.day(e.at)) for e in since(world, 0) if e.name == "send_notice"]
    assert kinds == [
        (c.NoticeKind.ON_BACKORDER, 0.0),
        (c.NoticeKind.STILL_WAITING, 7.0),
        (c.NoticeKind.CANCELLED, 10.0),
        (c.NoticeKind.STILL_WAITING, 14.0),  # B still waits for PO-1
        (c.NoticeKind.SHIPPED, 19.0),
    ]
    # the capture is made with the release's writes, once they are committed
    assert names(since(world, mark)) == ["publish_shipment", "send_notice", "capture_payment"]
    assert world.payments() == [
        ("void", Decimal("20.00"), "auth-0"),
        ("capture", Decimal("15.00"), "auth-0"),
    ]
    assert summary.status is BackorderStatus.COMPLETED


# -- 5. cancelled from Temporal --------------------------------------------------------------------


async def test_temporal_cancel_compensates_then_ends_cancelled(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    day20 = (t0 + dt.timedelta(days=20)).date()
    order = make_order(t0, [("A", 2, "10.00"), ("B", 3, "5.00")], paid="35.00")
    world = World(stock=stock({"A": 2}))
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await clock.until(1)
        po = future("L2", "B", 2, "PO-1", day20)
        await handle.signal(
            BackorderWorkflow.allotment,
            AllotmentSignal(
                pass_id="P1",
                release=release(order.order_id, [("L2", "B", 2, 1)], incoming(day20, po)),
            ),
        )
        await clock.until(2)
        mark = len(world.effects)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        final = await handle.query(BackorderWorkflow.status)
        described = await handle.describe()

    assert isinstance(failed.value.cause, CancelledError)
    assert described.status is WorkflowExecutionStatus.CANCELED
    compensation = since(world, mark)
    assert names(compensation) == [
        "release_stock",
        "void_payment",
        "publish_shipment",
        "update_demand",
        "send_notice",
    ]
    assert of(compensation, "release_stock")[0].allotments == (po,)
    withdrawn = of(compensation, "publish_shipment")[0].shipment
    assert (withdrawn.shipment_id, withdrawn.status) == (
        f"{order.order_id}-S2",
        ShipmentStatus.CANCELLED,
    )
    void = of(compensation, "void_payment")[0]
    assert (void.amount, void.reference) == (Decimal("15.00"), "auth-0")
    assert of(compensation, "update_demand")[0].backorder is None
    notice = of(compensation, "send_notice")[0]
    assert (notice.kind, notice.items, notice.amount) == (
        c.NoticeKind.CANCELLED,
        (c.NoticeItem(sku="B", quantity=3),),
        Decimal("15.00"),
    )
    assert world.payments() == [
        ("capture", Decimal("20.00"), "auth-0"),
        ("void", Decimal("15.00"), "auth-0"),
    ]
    assert line_figures(final.lines) == [("L1", 2, 2, 0, 0), ("L2", 3, 0, 0, 3)]
    assert final.cancel_reason == "workflow cancelled"
    assert final.payment is not None
    assert (final.payment.authorisation, final.payment.authorised) == (None, Decimal(0))


# -- 6. stale allotments -----------------------------------------------------------------------


async def test_stale_allotments_are_released_and_leave_the_book_alone(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    order = make_order(t0, [("B", 3, "5.00")])
    world = World()
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await clock.until(1)
        before = await handle.query(BackorderWorkflow.status)
        mark, checks = len(world.effects), len(world.checks)
        too_many = release(order.order_id, [("L1", "B", 4, 0)], ready(current("L1", "B", 4)))
        unknown = release(order.order_id, [("L9", "Z", 1, 0)], ready(current("L9", "Z", 1)))
        await handle.signal(
            BackorderWorkflow.allotment, AllotmentSignal(pass_id="P1", release=too_many)
        )
        await handle.signal(
            BackorderWorkflow.allotment, AllotmentSignal(pass_id="P2", release=unknown)
        )
        await clock.until(2)
        after = await handle.query(BackorderWorkflow.status)
        await handle.terminate("test over")

    # the refused units go back, the allocator is told to hand them on, and the order's
    # demand index entry is written again from its book
    assert names(since(world, mark)) == [
        "release_stock",
        "update_demand",
        "release_stock",
        "update_demand",
    ]
    assert [(r.skus, r.site) for r in world.checks[checks:]] == [
        (("B",), "test"),
        (("Z",), "test"),
    ]
    assert world.stock_moves() == [
        ("release_stock", (("B", 4, "current"),)),
        ("release_stock", (("Z", 1, "current"),)),
    ]
    assert [r.allotments for r in world.applied("release_stock")] == [
        (current("L1", "B", 4),),
        (current("L9", "Z", 1),),
    ]
    assert (after.lines, after.shipments, after.status) == (
        before.lines,
        before.shipments,
        BackorderStatus.BACKORDERED,
    )
    refused = [e.detail for e in after.log if e.event == "allotment refused"]
    assert len(refused) == 2
    assert "was planned for 4 open units; 3 are open now" in refused[0]
    assert "allotment names unknown lines: L9" in refused[1]


# -- 7. a reservation race at acceptance ---------------------------------------------------------


async def test_acceptance_reads_stock_again_when_the_reservation_loses_a_race(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    order = make_order(t0, [("A", 2, "10.00")])
    world = World(stock=stock({"A": 2}), short_reservations=1)
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        summary = await handle.result()
        final = await handle.query(BackorderWorkflow.status)
        calls = [name for name, _ in await scheduled(handle)]

    assert calls.count("open_order") + calls.count("check_availability") == 2  # two reads
    assert calls.count("reserve_stock") == 2
    (reserved,) = world.applied("reserve_stock")
    assert reserved.key == f"{order.workflow_id}/accept-2/reserve"
    assert reserved.allotments == (current("L1", "A", 2),)
    assert world.notices() == [c.NoticeKind.SHIPPED]
    assert summary.status is BackorderStatus.COMPLETED
    assert line_figures(summary.lines) == [("L1", 2, 2, 0, 0)]
    assert [e.event for e in final.log].count("stock moved") == 1


async def test_acceptance_lets_everything_wait_when_stock_keeps_moving(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    order = make_order(t0, [("A", 2, "10.00")], paid="20.00")
    world = World(stock=stock({"A": 2}), short_reservations=3)
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await clock.until(1)
        status = await handle.query(BackorderWorkflow.status)
        calls = [name for name, _ in await scheduled(handle)]
        await handle.terminate("test over")

    assert calls.count("open_order") + calls.count("check_availability") == 3
    assert calls.count("reserve_stock") == 2  # the third read is not even tried
    assert world.applied("reserve_stock") == []
    assert world.stock_moves() == []
    assert world.payments() == []
    assert world.notices() == [c.NoticeKind.ON_BACKORDER]
    (demand,) = world.applied("update_demand")
    assert demand.backorder is not None
    assert demand.backorder.lines == (BackorderLine(line_id="L1", sku="A", quantity=2),)
    assert status.status is BackorderStatus.BACKORDERED
    assert line_figures(status.lines) == [("L1", 2, 0, 2, 0)]
    assert status.shipments == ()
    assert [e.event for e in status.log].count("stock moved") == 2


# -- 8. a declined re-authorisation ----------------------------------------------------------------


async def test_declined_reauthorisation_is_reported_once_and_the_order_keeps_waiting(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    order = make_order(t0, [("B", 3, "5.00")], paid="15.00")
    world = World(decline={"authorise_payment"})
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await clock.until(20)
        status = await handle.query(BackorderWorkflow.status)
        calls = await scheduled(handle)
        await handle.terminate("test over")

    authorisations = [clock.day(at) for name, at in calls if name == "authorise_payment"]
    assert authorisations == [6.0]  # tried once, never again
    assert world.payments() == []
    (report,) = world.applied("raise_exception")
    assert (report.kind, report.severity) == ("payment_authorise_failed", c.Severity.HIGH)
    assert "card declined" in report.detail
    effects = list(world.effects.values())
    notices = [(e.request.kind, clock.day(e.at)) for e in effects if e.name == "send_notice"]
    assert notices == [
        (c.NoticeKind.ON_BACKORDER, 0.0),
        (c.NoticeKind.PAYMENT_PROBLEM, 6.0),
        (c.NoticeKind.STILL_WAITING, 7.0),
        (c.NoticeKind.STILL_WAITING, 14.0),
    ]
    problem = next(
        n for n in world.applied("send_notice") if n.kind is c.NoticeKind.PAYMENT_PROBLEM
    )
    assert problem.items == (c.NoticeItem(sku="B", quantity=3),)
    assert status.status is BackorderStatus.BACKORDERED
    assert line_figures(status.lines) == [("L1", 3, 0, 3, 0)]
    assert status.payment is not None
    problem_text = status.payment.problem or ""
    assert problem_text.startswith("authorise: ") and "card declined" in problem_text
    assert status.schedule is not None
    assert DutyKind.REAUTHORISE not in {d.kind for d in status.schedule.upcoming}


# -- 9. a receipt cancelled ----------------------------------------------------------------------


async def test_cancelled_receipt_sends_its_shipment_back_to_backorder(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    day20 = (t0 + dt.timedelta(days=20)).date()
    order = make_order(t0, [("B", 3, "5.00")], paid="15.00")
    world = World()
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await clock.until(1)
        po = future("L1", "B", 3, "PO-1", day20)
        await handle.signal(
            BackorderWorkflow.allotment,
            AllotmentSignal(
                pass_id="P1",
                release=release(order.order_id, [("L1", "B", 3, 0)], incoming(day20, po)),
            ),
        )
        await clock.until(2)
        waiting = await handle.query(BackorderWorkflow.status)
        mark = len(world.effects)
        gone = ReceiptChange(receipt_id="PO-1", status=ReceiptStatus.CANCELLED)
        await handle.signal(
            BackorderWorkflow.allotment, AllotmentSignal(pass_id="P2", receipts=(gone,))
        )
        await clock.until(3)
        status = await handle.query(BackorderWorkflow.status)
        await handle.terminate("test over")

    assert waiting.status is BackorderStatus.AWAITING_RECEIPT
    assert waiting.expected_ship_date == day20
    changes = since(world, mark)
    assert names(changes) == ["release_stock", "publish_shipment", "update_demand"]
    assert of(changes, "release_stock")[0].allotments == (po,)
    withdrawn = of(changes, "publish_shipment")[0].shipment
    assert (withdrawn.shipment_id, withdrawn.status) == (
        f"{order.order_id}-S1",
        ShipmentStatus.CANCELLED,
    )
    demand = of(changes, "update_demand")[0].backorder
    assert demand is not None
    assert demand.lines == (BackorderLine(line_id="L1", sku="B", quantity=3),)
    assert demand.shipments == 0
    assert status.status is BackorderStatus.BACKORDERED
    assert line_figures(status.lines) == [("L1", 3, 0, 3, 0)]
    assert [s.status for s in status.shipments] == [ShipmentStatus.CANCELLED]
    assert world.payments() == []
    assert [r.status for r in world.records] == [
        BackorderStatus.BACKORDERED,
        BackorderStatus.AWAITING_RECEIPT,
        BackorderStatus.BACKORDERED,
    ]


async def test_a_purchase_order_received_in_parts_readies_only_the_shipments_it_arrived_for(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """PO-1 arrives in part for S1; S2 is promised later from PO-1's rest and from PO-2. PO-2
    arriving does not ready S2 (its PO-1 units are still to come); the rest of PO-1 does, with
    its own "shipped" notice."""
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    day20 = (t0 + dt.timedelta(days=20)).date()
    order = make_order(t0, [("B", 4, "5.00"), ("C", 1, "5.00")], paid="25.00")
    world = World()
    queue = task_queue()

    def news(pass_id: str, receipt: str) -> AllotmentSignal:
        arrived = ReceiptChange(receipt_id=receipt, status=ReceiptStatus.ARRIVED)
        return AllotmentSignal(pass_id=pass_id, receipts=(arrived,))

    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await clock.until(1)
        s1 = incoming(day20, future("L1", "B", 2, "PO-1", day20))
        first = release(order.order_id, [("L1", "B", 2, 2)], s1)
        await handle.signal(
            BackorderWorkflow.allotment, AllotmentSignal(pass_id="P1", release=first)
        )
        await handle.signal(BackorderWorkflow.allotment, news("P2", "PO-1"))  # S1's part
        await clock.until(2)
        s2 = incoming(
            day20, future("L1", "B", 2, "PO-1", day20), future("L2", "C", 1, "PO-2", day20)
        )
        second = release(order.order_id, [("L1", "B", 2, 0), ("L2", "C", 1, 0)], s2)
        await handle.signal(
            BackorderWorkflow.allotment, AllotmentSignal(pass_id="P3", release=second)
        )
        await handle.signal(BackorderWorkflow.allotment, news("P4", "PO-2"))
        await clock.until(3)
        waiting = await handle.query(BackorderWorkflow.status)
        await handle.signal(BackorderWorkflow.allotment, news("P5", "PO-1"))  # the rest
        summary = await handle.result()

    assert [s.status for s in waiting.shipments] == [ShipmentStatus.READY, ShipmentStatus.FUTURE]
    assert [s.status for s in summary.shipments] == [ShipmentStatus.READY] * 2
    shipped = [n for n in world.applied("send_notice") if n.kind in SHIPPED_KINDS]
    assert [n.kind for n in shipped] == [c.NoticeKind.PARTLY_SHIPPED, c.NoticeKind.SHIPPED]
    assert world.payments() == [
        ("capture", Decimal("10.00"), "auth-0"),
        ("capture", Decimal("15.00"), "auth-0"),
    ]


# -- 10. void and re-authorise the exact amount at a full release ---------------------------------


async def exact_reauth_life(
    env: WorkflowEnvironment, decline: frozenset[str] = frozenset()
) -> tuple[World, BackorderSummary]:
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    order = make_order(t0, [("A", 2, "10.00"), ("B", 3, "5.00")], paid="35.00")
    world = World(policy=BackorderPolicy(void_and_reauth_on_release=True), stock=stock({"A": 2}))
    world.decline = set(decline)
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await clock.until(2)
        await handle.signal(
            BackorderWorkflow.allotment,
            AllotmentSignal(
                pass_id="P1",
                release=release(order.order_id, [("L2", "B", 3, 0)], ready(current("L2", "B", 3))),
            ),
        )
        summary = await handle.result()
    return world, summary


async def test_full_release_authorises_exactly_the_released_value_then_voids_the_old(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    world, summary = await exact_reauth_life(time_skipping_env)
    fresh = next(e for e in world.effects.values() if e.name == "authorise_payment")
    assert world.payments() == [
        ("capture", Decimal("20.00"), "auth-0"),
        ("authorise", Decimal("15.00"), "auth-0"),  # first: a decline leaves the old hold
        ("void", Decimal("15.00"), "auth-0"),
        ("capture", Decimal("15.00"), fresh.result.reference),
    ]
    assert world.notices() == [
        c.NoticeKind.PARTLY_SHIPPED,
        c.NoticeKind.ON_BACKORDER,
        c.NoticeKind.SHIPPED,
    ]
    assert summary.status is BackorderStatus.COMPLETED
    assert summary.payment is not None
    assert (summary.payment.captured, summary.payment.authorised) == (Decimal("35.00"), Decimal(0))


async def test_a_declined_exact_reauthorisation_leaves_the_old_hold_to_pay(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    world, summary = await exact_reauth_life(time_skipping_env, frozenset({"authorise_payment"}))
    assert world.payments() == [
        ("capture", Decimal("20.00"), "auth-0"),
        ("capture", Decimal("15.00"), "auth-0"),
    ]
    assert [(r.kind, r.severity) for r in world.applied("raise_exception")] == [
        ("payment_authorise_failed", c.Severity.HIGH)
    ]
    assert c.NoticeKind.PAYMENT_PROBLEM in world.notices()
    assert summary.payment is not None and summary.payment.captured == Decimal("35.00")


async def test_exact_reauthorisation_is_not_reported_as_money_given_back(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """`PaymentBook.voided` is what was "released from authorisations for units that will not
    ship"; every unit shipped here, so nothing was given back to the customer."""
    _, summary = await exact_reauth_life(time_skipping_env)
    assert summary.payment is not None
    assert summary.payment.voided == Decimal(0)


# -- 11. priority and allocator checks ----------------------------------------------------------


async def test_priority_reaches_the_demand_and_checks_reach_the_allocator(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    order = make_order(t0, [("B", 3, "5.00")])
    world = World(policy=BackorderPolicy(check_interval_hours=24))
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await clock.until(0.5)
        await handle.signal(
            BackorderWorkflow.set_priority, PriorityChange(tier="vip", reason="complaint")
        )
        await handle.signal(BackorderWorkflow.check_now, CheckNow(reason="customer called"))
        await clock.until(3.5)
        status = await handle.query(BackorderWorkflow.status)
        described = await handle.describe()
        calls = await scheduled(handle)
        await handle.terminate("test over")

    tiers = [d.backorder.tier for d in world.applied("update_demand")]
    assert tiers == ["standard", "vip"]
    assert world.applied("update_demand")[-1].backorder.lines == (
        BackorderLine(line_id="L1", sku="B", quantity=3),
    )
    assert status.customer_tier == "vip"
    assert described.typed_search_attributes.get(sa.CUSTOMER_TIER) == "vip"
    assert any(e.event == "priority" and "standard -> vip" in e.detail for e in status.log)
    assert [(r.order_id, r.reason) for r in world.checks] == [
        (order.order_id, "customer called"),
        (order.order_id, "periodic self-check"),
        (order.order_id, "periodic self-check"),
        (order.order_id, "periodic self-check"),
    ]
    check_days = [clock.day(at) for name, at in calls if name == c.REQUEST_CHECK.name]
    assert check_days == [0.5, 1.0, 2.0, 3.0]


async def test_an_order_that_reaches_us_late_gets_its_ftc_notice_at_once(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Placed 11-20, started 12-18: the FTC deadline is 12-20 (from placed_at, not acceptance),
    so the delay notice is due already and goes out with acceptance; the status shows the
    deadline it is measured against."""
    env = time_skipping_env
    t0 = await env.get_current_time()
    placed = t0 - dt.timedelta(days=28)
    order = make_order(placed, [("B", 2, "5.00")])
    world = World(policy=BackorderPolicy(customer_update_days=(), ftc_exception_days=None))
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        for _ in range(100):
            status = await handle.query(BackorderWorkflow.status)
            if status.ftc_state is not FtcState.NONE:
                break
            await env.sleep(dt.timedelta(seconds=1))
        await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="test"))
        await handle.result()

    assert status.schedule is not None
    assert status.schedule.ftc_deadline == placed + dt.timedelta(days=30)
    assert world.notices()[:2] == [c.NoticeKind.ON_BACKORDER, c.NoticeKind.FTC_DELAY_OPTION]
    notice = world.applied("send_notice")[1]
    assert notice.revised_ship_date is not None and notice.revised_ship_date > t0.date()
    assert near(world.effects[notice.key].at, t0)  # at acceptance, not days later


async def test_a_capture_declined_in_the_release_write_is_recorded_and_its_hold_voided(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """The release's capture is made with its writes (lean-history-2) and the
    gateway declines it: the shipment still goes, the decline is in the payment book, an
    operator is called, and the order's end voids what the capture left held."""
    env = time_skipping_env
    order = make_order(await env.get_current_time(), [("KTP", 2, "10.00")], paid="20.00")
    world = World(decline={"capture_payment"})
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        shipment = ready(current("L1", "KTP", 2))
        allotment = AllotmentSignal(
            pass_id="P1", release=release(order.order_id, [("L1", "KTP", 2, 0)], shipment)
        )
        await handle.signal(BackorderWorkflow.allotment, allotment)
        summary = await handle.result()

    assert summary.status is BackorderStatus.COMPLETED
    assert len(world.applied("publish_shipment")) == 1
    assert c.NoticeKind.SHIPPED in world.notices()
    assert [r.kind for r in world.applied("raise_exception")] == ["payment_capture_failed"]
    (void,) = world.applied("void_payment")
    assert order.payment is not None
    assert world.payments() == [("void", Decimal("20.00"), order.payment.reference)]
    assert void.key == f"{order.workflow_id}/final/void"
    assert summary.payment is not None
    assert (summary.payment.captured, summary.payment.authorised) == (Decimal(0), Decimal(0))
    assert [(op.step.value, op.failure is None) for op in summary.payment.operations] == [
        ("capture", False),
        ("void", True),
    ]
