"""Split-order numbering: what ships at acceptance keeps the order's number; each later release
that creates shipments is one split, numbered by the site's `split_numbering`."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from activities.contracts import Notice, NoticeKind
from domain.order import Order
from domain.order_book import BookedShipment, OrderBook
from domain.planner import (
    AcceptancePlan,
    Allotment,
    LineOutcome,
    OrderRelease,
    ParentStatus,
    Shipment,
    ShipmentKind,
)
from domain.policy import BackorderPolicy, PaymentTiming, ReleaseMode, SplitNumbering
from domain.split_numbers import (
    MAX_SEQUENCE,
    number_release,
    sequence_number,
    split_number,
    splits_used,
)
from tests.fakes import World
from tests.order_life import Clock, current, make_order, release, running, start, stock, task_queue
from tests.order_life import ready as ready_now
from workflows.backorder import BackorderWorkflow
from workflows.messages import AllotmentSignal, BackorderStatus

NOW = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)
DAY = dt.date(2026, 1, 20)
SEQ, BACK, NONE = SplitNumbering.SEQUENCE, SplitNumbering.BACKORDER, SplitNumbering.NONE


def an_order(number: str = "1001", quantity: int = 10) -> Order:
    return Order.model_validate(
        {
            "order_id": "A-1",
            "order_number": number,
            "placed_at": NOW.isoformat(),
            "currency": "USD",
            "customer": {"id": "cust-1", "email": "c@example.com"},
            "fulfillment": {"type": "sth"},
            "lines": [{"line_id": "L1", "sku": "KTP", "quantity": quantity, "unit_price": "5"}],
        }
    )


def now_allotment(quantity: int) -> Allotment:
    return Allotment(line_id="L1", sku="KTP", quantity=quantity, location="DC", source="current")


def ready(quantity: int) -> Shipment:
    return Shipment(kind=ShipmentKind.READY, location="DC", allotments=(now_allotment(quantity),))


def incoming(quantity: int, receipt: str) -> Shipment:
    allotment = Allotment(
        line_id="L1",
        sku="KTP",
        quantity=quantity,
        location="DC",
        source="future",
        receipt_id=receipt,
        expected_date=DAY,
    )
    return Shipment(
        kind=ShipmentKind.FUTURE, location="DC", expected_date=DAY, allotments=(allotment,)
    )


def accepted(order: Order, shipped_now: int) -> OrderBook:
    quantity = order.lines[0].quantity
    plan = AcceptancePlan(
        order_id=order.order_id,
        shipments=(ready(shipped_now),) if shipped_now else (),
        lines=(
            LineOutcome(
                line_id="L1",
                sku="KTP",
                released=shipped_now,
                backordered=quantity - shipped_now,
                cancelled=0,
            ),
        ),
        backorder=None,  # the book does not keep it
    )
    return OrderBook.accept(order, plan, NOW)


def released(
    order: Order, book: OrderBook, numbering: SplitNumbering, *shipments: Shipment, cancel: int = 0
) -> OrderBook:
    """Apply a release as the order workflow does: book it, then number its new shipments."""
    units = sum(a.quantity for s in shipments for a in s.allotments)
    left = book.line("L1").backordered - units - cancel
    release = OrderRelease(
        order_id=order.order_id,
        shipments=shipments,
        lines=(
            LineOutcome(
                line_id="L1", sku="KTP", released=units, backordered=left, cancelled=cancel
            ),
        ),
        parent_status=ParentStatus.BACKORDERED if left else ParentStatus.REASSIGNED,
    )
    after = book.release(release, NOW)
    new = number_release(
        order.order_number, numbering, book, after.shipments[len(book.shipments) :]
    )
    return OrderBook.model_validate({**after.model_dump(), "shipments": book.shipments + new})


def numbers(book: OrderBook) -> list[tuple[str, str | None]]:
    return [(s.shipment_id, s.order_number) for s in book.shipments]


def test_sequence_gives_each_release_the_next_number_its_shipments_share() -> None:
    order = an_order()
    book = accepted(order, 1)
    book = released(order, book, SEQ, ready(2), incoming(3, "PO-1"))
    book = released(order, book, SEQ, ready(1))
    book = released(order, book, SEQ, ready(1), ready(1))
    assert numbers(book) == [
        ("A-1-S1", None),  # shipped at acceptance: the order's own number
        ("A-1-S2", "1001-001"),
        ("A-1-S3", "1001-001"),  # the same release: the same split
        ("A-1-S4", "1001-002"),
        ("A-1-S5", "1001-003"),
        ("A-1-S6", "1001-003"),
    ]


def test_a_future_shipment_that_turns_ready_keeps_its_number() -> None:
    order = an_order()
    book = released(order, accepted(order, 0), SEQ, incoming(4, "PO-1"))
    book = released(order, book, SEQ, ready(2))
    book = book.receipt_arrived("A-1-S1")
    assert numbers(book) == [("A-1-S1", "1001-001"), ("A-1-S2", "1001-002")]
    assert book.shipment("A-1-S1").status.value == "ready"


def test_a_cancelled_split_keeps_its_number_used() -> None:
    order = an_order()
    book = released(order, accepted(order, 1), SEQ, incoming(4, "PO-1"))
    book = book.back_to_backorder("A-1-S2")  # the receipt slipped: the units wait again
    book = released(order, book, SEQ, ready(4))
    assert numbers(book) == [("A-1-S1", None), ("A-1-S2", "1001-001"), ("A-1-S3", "1001-002")]
    assert splits_used("1001", book.shipments) == 2


def test_a_release_that_ships_nothing_is_no_split() -> None:
    order = an_order()
    book = released(order, accepted(order, 1), SEQ, cancel=2)  # only cancels (inserts dropped)
    assert numbers(book) == [("A-1-S1", None)]
    book = released(order, book, SEQ, ready(3))
    assert numbers(book)[-1] == ("A-1-S2", "1001-001")


def test_backorder_names_every_later_shipment_alike() -> None:
    order = an_order()
    book = accepted(order, 1)
    book = released(order, book, BACK, ready(2), incoming(1, "PO-1"))
    book = released(order, book, BACK, ready(3))
    assert numbers(book) == [
        ("A-1-S1", None),
        ("A-1-S2", "1001-backorder"),
        ("A-1-S3", "1001-backorder"),
        ("A-1-S4", "1001-backorder"),
    ]


def test_none_leaves_every_shipment_under_the_orders_number() -> None:
    order = an_order()
    book = accepted(order, 1)
    plain = released(order, book, NONE, ready(2), incoming(1, "PO-1"))
    assert [n for _, n in numbers(plain)] == [None, None, None]
    new = plain.shipments[1:]
    assert number_release("1001", NONE, book, new) == new  # untouched, not copied
    assert split_number("1001", NONE, book) is None


def test_the_policy_defaults_to_none_also_for_policies_recorded_before() -> None:
    assert BackorderPolicy().split_numbering is NONE
    recorded = BackorderPolicy().model_dump(mode="json")
    del recorded["split_numbering"]
    assert BackorderPolicy.model_validate(recorded).split_numbering is NONE
    assert BackorderPolicy(split_numbering="sequence").split_numbering is SEQ
    with pytest.raises(ValidationError):
        BackorderPolicy(split_numbering="letters")


def test_a_shipment_recorded_before_reads_no_number() -> None:
    order = an_order()
    shipment = released(order, accepted(order, 0), SEQ, ready(1)).shipments[0]
    recorded = shipment.model_dump(mode="json")
    assert recorded["order_number"] == "1001-001"
    del recorded["order_number"]
    assert BookedShipment.model_validate(recorded).order_number is None


def test_a_longest_order_number_still_gets_a_valid_split_number() -> None:
    """An order number may take all 200 characters of an `Identifier`: the split number keeps
    it whole (the customer's number, not a shortened one) and the suffix on top."""
    longest = "N" * 200
    order = an_order(longest)
    book = released(order, accepted(order, 1), SEQ, ready(1))
    assert book.shipments[-1].order_number == f"{longest}-001"
    assert len(f"{longest}-001") > 200
    backorder = released(order, accepted(order, 1), BACK, ready(1))
    assert backorder.shipments[-1].order_number == f"{longest}-backorder"
    # ...and what carries it to the customer takes it too
    notice = Notice(
        key="backorder-A-1/pass-1/shipped",
        kind=NoticeKind.SHIPPED,
        order_id="A-1",
        order_number=longest,
        email="c@example.com",
        split_number=f"{longest}-backorder",
    )
    assert notice.split_number == f"{longest}-backorder"
    # past 999 splits the number grows a digit; the most `sequence` gives still fits
    assert sequence_number("1001", 1000) == "1001-1000"
    BookedShipment.model_validate(
        {
            **book.shipments[-1].model_dump(),
            "order_number": sequence_number(longest, MAX_SEQUENCE),
        }
    )
    with pytest.raises(ValueError, match="not between"):
        sequence_number(longest, MAX_SEQUENCE + 1)


def test_split_numbers_are_checked_like_ids() -> None:
    shipment = released(an_order(), accepted(an_order(), 0), SEQ, ready(1)).shipments[0]
    for bad in ("", " 1001-001", "N" * 211):
        with pytest.raises(ValidationError):
            BookedShipment.model_validate({**shipment.model_dump(), "order_number": bad})
    assert shipment.amount == Decimal(5)


# -- the order workflow, on the time-skipping server ----------------------------------------------


async def test_an_order_released_twice_ships_under_its_split_numbers(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Partly shipped at acceptance, then released in two allotments: shipments under the
    order's number, `-001` and `-002`, in the book, for fulfilment and in the shipped notices."""
    env = time_skipping_env
    t0 = await env.get_current_time()
    clock = Clock(env, t0)
    order = make_order(t0, [("KTP", 3, "10.00")], paid="30.00")
    world = World(
        policy=BackorderPolicy(release_mode=ReleaseMode.QUANTITY, split_numbering=SEQ),
        stock=stock({"KTP": 1}),
    )
    queue = task_queue()
    async with running(env, world, queue, cached=False):  # every task replays first
        handle = await start(env, order, queue)
        for day, pass_id, left in ((1, "P1", 1), (2, "P2", 0)):
            await clock.until(day)
            lines = [("L1", "KTP", 1, left)]
            allotment = release(order.order_id, lines, ready_now(current("L1", "KTP", 1)))
            await handle.signal(
                BackorderWorkflow.allotment, AllotmentSignal(pass_id=pass_id, release=allotment)
            )
        summary = await handle.result()

    n = order.order_number
    expected = [None, f"{n}-001", f"{n}-002"]
    assert summary.status is BackorderStatus.COMPLETED
    assert [s.order_number for s in summary.shipments] == expected
    published = world.applied(c.PUBLISH_SHIPMENT.name)
    assert [(p.shipment.order_number, p.order_number, p.amount_due) for p in published] == [
        (number, n, None)
        for number in expected  # paid at shipment: the amount is due
    ]
    shipped = [(r.kind, r.split_number) for r in world.applied(c.SEND_NOTICE.name)]
    assert [x for x in shipped if x[0] != c.NoticeKind.ON_BACKORDER] == [
        (c.NoticeKind.PARTLY_SHIPPED, None),
        (c.NoticeKind.PARTLY_SHIPPED, f"{n}-001"),
        (c.NoticeKind.SHIPPED, f"{n}-002"),
    ]


async def test_a_backorder_split_of_an_order_charged_at_order_is_due_nothing(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    order = make_order(t0, [("KTP", 2, "10.00")], paid="20.00")
    world = World(
        policy=BackorderPolicy(
            release_mode=ReleaseMode.QUANTITY,
            payment_timing=PaymentTiming.AT_ORDER,
            split_numbering=BACK,
        ),
        stock=stock({"KTP": 1}),
    )
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await Clock(env, t0).until(1)
        allotment = release(
            order.order_id, [("L1", "KTP", 1, 0)], ready_now(current("L1", "KTP", 1))
        )
        await handle.signal(
            BackorderWorkflow.allotment, AllotmentSignal(pass_id="P1", release=allotment)
        )
        summary = await handle.result()

    n = order.order_number
    assert summary.status is BackorderStatus.COMPLETED
    assert [s.order_number for s in summary.shipments] == [None, f"{n}-backorder"]
    published = world.applied(c.PUBLISH_SHIPMENT.name)
    assert [(p.shipment.order_number, p.amount_due) for p in published] == [
        (None, Decimal(0)),
        (f"{n}-backorder", Decimal(0)),
    ]
    last = world.applied(c.SEND_NOTICE.name)[-1]
    assert (last.kind, last.split_number) == (c.NoticeKind.SHIPPED, f"{n}-backorder")
