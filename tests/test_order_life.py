"""The order workflow's whole life on the time-skipping server, with the activities faked in one
world: acceptance, re-authorisation, updates, the FTC rule, allotments, cancels, compensation.

Each test asserts the exact stock and money operations; activities that fail after their effect
(a lost response) and a worker restart show that no step is ever done twice.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from domain.order_book import BookStatus, ShipmentStatus
from domain.policy import BackorderPolicy, ReleaseMode
from domain.schedule import FtcState
from tests.fakes import World
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
    stock,
    task_queue,
)
from workflows import search_attributes as sa
from workflows.backorder import BackorderWorkflow
from workflows.messages import (
    AllotmentSignal,
    BackorderStatus,
    ConsentSignal,
    ReceiptChange,
    ReceiptStatus,
)

BY_QUANTITY = BackorderPolicy(release_mode=ReleaseMode.QUANTITY, future_inventory=True)


async def test_a_ninety_day_life(time_skipping_env: WorkflowEnvironment) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    day91 = (t0 + dt.timedelta(days=91)).date()
    order = make_order(t0, [("A", 2, "10.00"), ("B", 4, "5.00")], paid="40.00")
    world = World(
        policy=BY_QUANTITY,
        stock=stock({"A": 2}, receipts=[("PO-7", "B", 3, day91)]),
        # the first attempt of each of these loses its response after the effect
        fail_after_effect={"capture_payment": 1, "send_notice": 1, "void_payment": 1},
    )
    queue = task_queue()
    async with running(env, world, queue, cached=False):
        handle = await start(env, order, queue)
        await clock.until(26)
        status = await handle.query(BackorderWorkflow.status)
        assert status.ftc_state is FtcState.FLAGGED
        assert status.expected_ship_date == day91
        await clock.until(28)
        await handle.signal(BackorderWorkflow.consent, ConsentSignal(until=day91 + dt.timedelta(4)))
        await clock.until(40)
        first = AllotmentSignal(
            pass_id="P1",
            release=release(
                order.order_id,
                [("L2", "B", 1, 3)],
                ready(current("L2", "B", 1)),
            ),
        )
        await handle.signal(BackorderWorkflow.allotment, first)
        await handle.signal(BackorderWorkflow.allotment, first)  # redelivered: applied once
        await clock.until(45)
        po = future("L2", "B", 3, "PO-7", day91)
        await handle.signal(
            BackorderWorkflow.allotment,
            AllotmentSignal(
                pass_id="P2",
                release=release(
                    order.order_id,
                    [("L2", "B", 3, 0)],
                    incoming(day91, po),
                ),
            ),
        )  # fmt: skip
        await clock.until(46)
        status = await handle.query(BackorderWorkflow.status)
        assert status.status is BackorderStatus.AWAITING_RECEIPT
        assert status.parent is BookStatus.REASSIGNED
        await clock.until(89.5)
        arrived = ReceiptChange(receipt_id="PO-7", status=ReceiptStatus.ARRIVED)
        await handle.signal(
            BackorderWorkflow.allotment, AllotmentSignal(pass_id="P3", receipts=(arrived,))
        )
        summary = await handle.result()
        described = await handle.describe()
        final = await handle.query(BackorderWorkflow.status)

    assert summary.status is BackorderStatus.COMPLETED
    assert summary.days_in_backorder == 89
    assert [(ln.ordered, ln.released, ln.backordered, ln.cancelled) for ln in summary.lines] == [
        (2, 2, 0, 0),
        (4, 4, 0, 0),
    ]
    assert [(s.status, s.amount) for s in summary.shipments] == [
        (ShipmentStatus.READY, Decimal("20.00")),
        (ShipmentStatus.READY, Decimal("5.00")),
        (ShipmentStatus.READY, Decimal("15.00")),
    ]

    # Money: one capture per shipment, and a fresh authorisation every 6 days (the 7-day hold
    # less the 24 h margin beats the 10-day interval) for what is still to capture.
    ops = [(e.name, e.request, clock.day(e.at)) for e in world.effects.values()]
    pays = [(n.removesuffix("_payment"), r.amount, day) for n, r, day in ops if "payment" in n]
    reauth_days = [day for step, _, day in pays if step == "authorise"]
    assert reauth_days == [6.0 * k for k in range(1, 15)]
    captures = [(amount, day) for step, amount, day in pays if step == "capture"]
    assert captures == [(Decimal("20.00"), 0.0), (Decimal("5.00"), 40.0), (Decimal("15.00"), 89.5)]
    held = [amount for step, amount, _ in pays if step == "authorise"]
    assert held == [Decimal("20.00")] * 6 + [Decimal("15.00")] * 8
    voids = [r for n, r, _ in ops if n == "void_payment"]
    authorisations = ["auth-0"] + [
        world.effects[r.key].result.reference for n, r, _ in ops if n == "authorise_payment"
    ]
    assert [v.reference for v in voids] == authorisations[:-1]  # each old one, once
    assert [v.amount for v in voids] == held
    assert summary.payment is not None
    assert (summary.payment.captured, summary.payment.voided) == (Decimal("40.00"), Decimal(0))

    # Stock: acceptance reserved what shipped at once; the allocator reserved the rest.
    assert world.stock_moves() == [("reserve_stock", (("A", 2, "current"),))]

    # The customer heard: partly shipped and on backorder, updates on days 7 and 14, the FTC
    # delay notice 3 days before day 30 (revised date beyond 30 more days: consent needed).
    notices = [(r.kind, day) for n, r, day in ops if n == "send_notice"]
    assert notices == [
        (c.NoticeKind.PARTLY_SHIPPED, 0.0),
        (c.NoticeKind.ON_BACKORDER, 0.0),
        (c.NoticeKind.STILL_WAITING, 7.0),
        (c.NoticeKind.STILL_WAITING, 14.0),
        (c.NoticeKind.FTC_DELAY_OPTION, 27.0),
        (c.NoticeKind.PARTLY_SHIPPED, 40.0),
        (c.NoticeKind.SHIPPED, 89.5),
    ]
    delay = next(r for n, r, _ in ops if n == "send_notice" and r.kind == "ftc_delay_option")
    assert delay.revised_ship_date == day91
    assert delay.respond_by is not None and clock.day(delay.respond_by) == 60.0
    assert [(r.kind, r.severity, day) for n, r, day in ops if n == "raise_exception"] == [
        ("ftc_deadline", c.Severity.HIGH, 25.0)
    ]

    # Retried after a lost response: more attempts than effects, but each key applied once (a
    # capture lost in a transition's write step tries the step's writes again too).
    for name in ("capture_payment", "send_notice", "void_payment"):
        tries = [a for a in world.attempts if a.name == name]
        assert len(tries) > len(world.applied(name)), name
    assert len(world.effects) == len(
        {a.request.key for a in world.attempts if hasattr(a.request, "key")}
    )

    # The redelivered pass is in the log; operators see the end state as search attributes.
    events = [e.event for e in final.log]
    assert events.count("allotment") == 2
    assert "allotment ignored" in events
    attrs = described.typed_search_attributes
    assert attrs.get(sa.BACKORDER_STATUS) == "completed"
    assert attrs.get(sa.FTC_STATE) == FtcState.CONSENTED.value
    assert [r.status for r in world.records] == [
        BackorderStatus.BACKORDERED,
        BackorderStatus.AWAITING_RECEIPT,
        BackorderStatus.COMPLETED,
    ]
