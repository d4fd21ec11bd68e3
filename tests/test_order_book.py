"""The order book: acceptance, allotments, future receipts and cancels keep every unit counted."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.order import Order
from domain.order_book import (
    BookError,
    BookStatus,
    CancelLine,
    CancelRejected,
    OrderBook,
    ShipmentStatus,
    StaleRelease,
)
from domain.planner import OrderRelease, ShipmentKind, plan_acceptance, plan_release
from domain.planner.catalog import Catalog
from domain.planner.stock import Stock
from domain.policy import BackorderPolicy, ReleaseMode
from tests.planner_strategies import AS_OF, order, stock

NOW = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)
BY_QUANTITY = BackorderPolicy(release_mode=ReleaseMode.QUANTITY, future_inventory=True)
PRICES = {"KTP": Decimal("10.00"), "KTP2": Decimal("2.50")}


def priced(o: Order) -> Order:
    lines = [ln.model_copy(update={"unit_price": PRICES[ln.sku]}) for ln in o.lines]
    return o.model_copy(update={"lines": lines})


def accepted(o: Order, on_hand: Stock, policy: BackorderPolicy = BY_QUANTITY) -> OrderBook:
    return OrderBook.accept(o, plan_acceptance(o, on_hand, Catalog(), policy), NOW)


def released(book: OrderBook, o: Order, s: Stock) -> OrderRelease:
    backorder = book.open_backorder(o)
    assert backorder is not None
    release = plan_release([backorder], s, Catalog(), BY_QUANTITY, AS_OF).release_for(o.order_id)
    assert release is not None
    return release


def counts(book: OrderBook) -> dict[str, tuple[int, int, int]]:
    return {ln.line_id: (ln.released, ln.backordered, ln.cancelled) for ln in book.lines}


A1 = priced(order("A-1", {"KTP": 5, "KTP2": 2}))


def test_acceptance_books_the_ready_shipment_and_what_waits() -> None:
    book = accepted(A1, stock({("KTP", "A"): 2, ("KTP2", "A"): 2}))
    assert counts(book) == {"KTP": (2, 3, 0), "KTP2": (2, 0, 0)}
    assert book.status is BookStatus.BACKORDERED and not book.settled
    (s1,) = book.shipments
    assert (s1.shipment_id, s1.status, s1.location, s1.amount) == (
        "A-1-S1", ShipmentStatus.READY, "A", Decimal("25.00"),
    )  # fmt: skip
    assert book.backordered_value == Decimal("30.00")
    waiting = book.open_backorder(A1)
    assert waiting is not None and waiting.shipments == 1
    assert [(ln.line_id, ln.quantity) for ln in waiting.lines] == [("KTP", 3)]


def test_an_allotment_releases_the_rest_and_reassigns_the_parent() -> None:
    book = accepted(A1, stock({("KTP", "A"): 2, ("KTP2", "A"): 2}))
    book = book.release(released(book, A1, stock({("KTP", "B"): 3})), NOW)
    assert counts(book) == {"KTP": (5, 0, 0), "KTP2": (2, 0, 0)}
    assert book.status is BookStatus.REASSIGNED and book.settled
    assert [(s.shipment_id, s.location, s.amount) for s in book.shipments] == [
        ("A-1-S1", "A", Decimal("25.00")),
        ("A-1-S2", "B", Decimal("30.00")),
    ]
    assert book.open_backorder(A1) is None


def test_the_same_allotment_twice_is_refused_as_stale() -> None:
    book = accepted(A1, stock({("KTP2", "A"): 2}))
    release = released(book, A1, stock({("KTP", "B"): 2}))
    once = book.release(release, NOW)
    with pytest.raises(StaleRelease, match="planned for 5 open units; 3 are open now"):
        once.release(release, NOW)
    other = release.model_copy(update={"order_id": "B-2"})
    with pytest.raises(StaleRelease, match="for B-2 sent to A-1"):
        book.release(other, NOW)


def test_a_future_shipment_becomes_ready_or_goes_back_to_backorder() -> None:
    book = accepted(A1, stock({("KTP2", "A"): 2}))
    incoming = stock(receipts=[("KTP", "A", 5, "2026-05-01")])
    book = book.release(released(book, A1, incoming), NOW)
    (future,) = book.future_shipments
    assert (future.expected_date, book.status) == (dt.date(2026, 5, 1), BookStatus.REASSIGNED)
    assert not book.settled  # a future shipment still waits for its receipt

    arrived = book.receipt_arrived(future.shipment_id)
    assert arrived.shipment(future.shipment_id).status is ShipmentStatus.READY
    assert arrived.shipment(future.shipment_id).kind is ShipmentKind.READY
    assert arrived.settled

    slipped = book.back_to_backorder(future.shipment_id)
    assert slipped.shipment(future.shipment_id).status is ShipmentStatus.CANCELLED
    assert counts(slipped)["KTP"] == (0, 5, 0)
    waiting = slipped.open_backorder(A1)
    assert waiting is not None and waiting.shipments == 1  # the cancelled one does not count
    with pytest.raises(BookError, match="is cancelled, not future"):
        slipped.receipt_arrived(future.shipment_id)


def test_cancelling_the_whole_order_takes_waiting_and_future_units_only() -> None:
    o = priced(order("A-1", {"KTP": 5, "KTP2": 2}))
    book = accepted(o, stock({("KTP2", "A"): 2}))
    book = book.release(released(book, o, stock(receipts=[("KTP", "A", 3, "2026-05-01")])), NOW)
    assert counts(book) == {"KTP": (3, 2, 0), "KTP2": (2, 0, 0)}
    plan = book.plan_cancel()
    assert [(p.line_id, p.from_backorder, p.from_future, p.amount) for p in plan.parts] == [
        ("KTP", 2, (("A-1-S2", 3),), Decimal("50.00")),
    ]
    assert [(a.line_id, a.quantity, a.source) for a in book.freed_by(plan)] == [
        ("KTP", 3, "future")
    ]
    after = book.cancel(plan)
    assert counts(after) == {"KTP": (0, 0, 5), "KTP2": (2, 0, 0)}
    assert after.shipment("A-1-S2").status is ShipmentStatus.CANCELLED
    assert after.settled
    with pytest.raises(CancelRejected, match="nothing left to cancel"):
        after.plan_cancel()


def test_a_partial_cancel_takes_waiting_units_first_then_the_latest_future_shipment() -> None:
    o = priced(order("A-1", {"KTP": 6}))
    book = accepted(o, stock())
    receipts = [("KTP", "A", 2, "2026-04-25"), ("KTP", "A", 2, "2026-05-01")]
    book = book.release(released(book, o, stock(receipts=receipts)), NOW)
    assert counts(book) == {"KTP": (4, 2, 0)}
    plan = book.plan_cancel([CancelLine(line_id="KTP", quantity=3)])
    assert plan.units == 3 and plan.amount == Decimal("30.00")
    assert plan.parts[0].from_backorder == 2
    freed = book.freed_by(plan)
    assert [(a.quantity, a.expected_date) for a in freed] == [(1, dt.date(2026, 5, 1))]
    after = book.cancel(plan)
    assert counts(after) == {"KTP": (3, 0, 3)}
    later = next(s for s in after.shipments if s.expected_date == dt.date(2026, 5, 1))
    assert [a.quantity for a in later.allotments] == [1] and later.amount == Decimal("10.00")


@pytest.mark.parametrize(
    ("request_lines", "message"),
    [
        ([CancelLine(line_id="NOPE")], "has no line 'NOPE'"),
        ([CancelLine(line_id="KTP2")], r"line KTP2 \(KTP2\) has nothing left to cancel: 2 shipped"),
        ([CancelLine(line_id="KTP", quantity=4)], r"4 to cancel but only 3 not shipped yet \(2 sh"),
        ([CancelLine(line_id="KTP"), CancelLine(line_id="KTP")], "named twice"),
    ],
)
def test_impossible_cancels_are_refused_with_the_reason(
    request_lines: list[CancelLine], message: str
) -> None:
    book = accepted(A1, stock({("KTP", "A"): 2, ("KTP2", "A"): 2}))
    with pytest.raises(BookError, match=message):
        book.plan_cancel(request_lines)


@settings(max_examples=80, deadline=None)
@given(
    ordered=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    on_hand=st.lists(st.integers(0, 6), min_size=3, max_size=3),
    incoming=st.lists(st.integers(0, 6), min_size=3, max_size=3),
    cancel_first=st.booleans(),
)
def test_every_unit_stays_counted_through_any_life(
    ordered: list[int], on_hand: list[int], incoming: list[int], cancel_first: bool
) -> None:
    skus = ["KTP", "KTP2", "KTP3"][: len(ordered)]
    o = order("P-1", dict(zip(skus, ordered, strict=True)))
    book = accepted(o, stock({(s, "A"): q for s, q in zip(skus, on_hand, strict=False)}))
    if cancel_first and book.unshipped_units:
        book = book.cancel(book.plan_cancel([CancelLine(line_id=book.lines[0].line_id)])
                           if book.lines[0].backordered else book.plan_cancel())  # fmt: skip
    receipts = [(s, "B", q, "2026-05-01") for s, q in zip(skus, incoming, strict=False) if q]
    waiting = book.open_backorder(o)
    if waiting is not None:
        release = plan_release([waiting], stock(receipts=receipts), Catalog(), BY_QUANTITY, AS_OF)
        if (r := release.release_for("P-1")) is not None:
            book = book.release(r, NOW)
    for s in book.future_shipments[:1]:
        book = book.back_to_backorder(s.shipment_id)
    if book.unshipped_units:
        plan = book.plan_cancel()
        freed = sum(a.quantity for a in book.freed_by(plan))
        assert freed == sum(q for p in plan.parts for _, q in p.from_future)
        book = book.cancel(plan)
    assert book.settled
    for ln, q in zip(book.lines, ordered, strict=True):
        assert ln.released + ln.backordered + ln.cancelled == q
        assert ln.released == sum(s.units(ln.line_id) for s in book.shipments if s.live)
