"""Fulfilment's reports on the order book: shipped, short pick, delivered. Every unit stays
counted, a repeated report changes nothing, and a report the book cannot take is refused with
what an operator needs to act on it."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from domain.fulfilment import (
    FulfilmentRefused,
    FulfilmentReport,
    PickedLine,
    ReportApplied,
    ShipmentDelivered,
    ShipmentShipped,
    ShortPick,
    apply_report,
    deliver,
    ship,
    short_pick,
)
from domain.order_book import BookedShipment, BookError, OrderBook, ShipmentStatus
from domain.planner import ShipmentKind, StockSource, plan_release
from domain.planner.catalog import Catalog
from tests.planner_strategies import AS_OF, order, stock
from tests.test_order_book import BY_QUANTITY, NOW, accepted, counts, priced, released

SHIPPED_AT = dt.datetime(2026, 5, 2, 9, tzinfo=dt.UTC)
DELIVERED_AT = dt.datetime(2026, 5, 4, 15, tzinfo=dt.UTC)
REPORTS: TypeAdapter[Any] = TypeAdapter(FulfilmentReport)

A1 = priced(order("A-1", {"KTP": 6, "KTP2": 2}))


def handed_over() -> OrderBook:
    """A-1: S1 ready at A (KTP 1, KTP2 2, $15), S2 a transfer B -> A (KTP 2, $20), S3 future
    at A on May 1 (KTP 1 of receipt r0 and 2 of r1, $30); nothing waits."""
    book = accepted(A1, stock({("KTP", "A"): 1, ("KTP", "B"): 2, ("KTP2", "A"): 2}))
    receipts = [("KTP", "A", 1, "2026-05-01"), ("KTP", "A", 2, "2026-05-01")]
    book = book.release(released(book, A1, stock(receipts=receipts)), NOW)
    assert [(s.shipment_id, s.status) for s in book.shipments] == [
        ("A-1-S1", ShipmentStatus.READY),
        ("A-1-S2", ShipmentStatus.TRANSFER),
        ("A-1-S3", ShipmentStatus.FUTURE),
    ]
    return book


def arrived() -> OrderBook:
    """`handed_over` with S3's receipts in: three shipments with fulfilment."""
    return handed_over().receipt_arrived("A-1-S3")


def shipped(shipment_id: str, tracking: str = "1Z999", **changes: Any) -> ShipmentShipped:
    fields: dict[str, Any] = {
        "shipment_id": shipment_id,
        "carrier": "UPS",
        "tracking_number": tracking,
        "shipped_at": SHIPPED_AT,
    }
    return ShipmentShipped(**(fields | changes))


def picked(shipment_id: str, **found: int) -> ShortPick:
    lines = tuple(PickedLine(line_id=line, found=n) for line, n in found.items())
    return ShortPick(shipment_id=shipment_id, lines=lines, reported_at=SHIPPED_AT)


def delivered(shipment_id: str, at: dt.datetime = DELIVERED_AT) -> ShipmentDelivered:
    return ShipmentDelivered(shipment_id=shipment_id, delivered_at=at)


def ship_all(book: OrderBook) -> OrderBook:
    for s in book.shipments:
        if s.status in (ShipmentStatus.READY, ShipmentStatus.TRANSFER):
            book = ship(book, shipped(s.shipment_id, tracking=f"T-{s.shipment_id}")).book
    return book


# -- shipped -----------------------------------------------------------------------------------


def test_a_ready_shipment_ships_with_its_carrier_and_tracking() -> None:
    book = arrived()
    result = ship(book, shipped("A-1-S1", estimated_delivery=dt.date(2026, 5, 6)))
    s1 = result.book.shipment("A-1-S1")
    assert result.changed and (result.missing, result.backordered) == ((), ())
    assert (s1.status, s1.kind, s1.carrier, s1.tracking_number) == (
        ShipmentStatus.SHIPPED, ShipmentKind.READY, "UPS", "1Z999",
    )  # fmt: skip
    assert (s1.shipped_at, s1.estimated_delivery, s1.delivered_at) == (
        SHIPPED_AT, dt.date(2026, 5, 6), None,
    )  # fmt: skip
    assert counts(result.book) == counts(book)  # shipping moves no unit
    assert result.book.shipments[1:] == book.shipments[1:]


def test_a_transfer_shipment_ships_too() -> None:
    result = ship(arrived(), shipped("A-1-S2"))
    assert result.book.shipment("A-1-S2").status is ShipmentStatus.SHIPPED


def test_the_same_shipped_report_again_changes_nothing() -> None:
    once = ship(arrived(), shipped("A-1-S1")).book
    again = ship(once, shipped("A-1-S1", shipped_at=SHIPPED_AT + dt.timedelta(hours=1)))
    assert not again.changed and again.book == once
    assert again.book.shipment("A-1-S1").shipped_at == SHIPPED_AT  # the first report stands
    after_delivery = deliver(once, delivered("A-1-S1")).book
    late = ship(after_delivery, shipped("A-1-S1"))
    assert not late.changed and late.book == after_delivery


@pytest.mark.parametrize(
    ("carrier", "tracking"), [("UPS", "1Z000"), ("DHL", "1Z999")], ids=["tracking", "carrier"]
)
def test_a_shipped_report_with_other_details_is_refused(carrier: str, tracking: str) -> None:
    once = ship(arrived(), shipped("A-1-S1")).book
    with pytest.raises(
        FulfilmentRefused,
        match=f"shipment A-1-S1 already shipped with UPS tracking 1Z999; the report says "
        f"{carrier} tracking {tracking}",
    ) as refused:
        ship(once, shipped("A-1-S1", tracking=tracking, carrier=carrier))
    assert refused.value.shipment_id == "A-1-S1"


def test_a_future_cancelled_or_unknown_shipment_cannot_ship() -> None:
    book = handed_over()
    with pytest.raises(
        FulfilmentRefused,
        match=r"shipment A-1-S3 is future, not ready or transfer: it cannot be shipped "
        r"\(it waits for incoming stock expected on 2026-05-01\)",
    ):
        ship(book, shipped("A-1-S3"))
    slipped = book.back_to_backorder("A-1-S3")
    with pytest.raises(FulfilmentRefused, match=r"A-1-S3 is cancelled, .* \(it was cancelled"):
        ship(slipped, shipped("A-1-S3"))
    with pytest.raises(
        FulfilmentRefused, match=r"order A-1 has no shipment 'A-1-S9' \(it has A-1-S1, A-1-S2, "
    ):
        ship(book, shipped("A-1-S9"))
    assert issubclass(FulfilmentRefused, BookError)


# -- delivered ---------------------------------------------------------------------------------


def test_a_shipped_shipment_is_delivered_once() -> None:
    book = ship(arrived(), shipped("A-1-S1")).book
    result = deliver(book, delivered("A-1-S1"))
    s1 = result.book.shipment("A-1-S1")
    assert result.changed and (s1.status, s1.delivered_at) == (
        ShipmentStatus.DELIVERED, DELIVERED_AT,
    )  # fmt: skip
    assert (s1.carrier, s1.tracking_number, s1.shipped_at) == ("UPS", "1Z999", SHIPPED_AT)
    again = deliver(result.book, delivered("A-1-S1", DELIVERED_AT + dt.timedelta(days=1)))
    assert not again.changed and again.book == result.book  # the first delivery time stands


def test_only_a_shipped_shipment_can_be_delivered_and_not_before_it_shipped() -> None:
    book = ship(arrived(), shipped("A-1-S1")).book
    with pytest.raises(
        FulfilmentRefused,
        match=r"shipment A-1-S2 is transfer, not shipped: it cannot be delivered \(fulfilment "
        r"has not reported it shipped\)",
    ):
        deliver(book, delivered("A-1-S2"))
    with pytest.raises(FulfilmentRefused, match="A-1-S3 is future, not shipped"):
        deliver(handed_over(), delivered("A-1-S3"))
    with pytest.raises(
        FulfilmentRefused,
        match=r"shipment A-1-S1 delivered at 2026-05-02T08:59:00\+00:00, before it shipped at "
        r"2026-05-02T09:00:00\+00:00",
    ):
        deliver(book, delivered("A-1-S1", SHIPPED_AT - dt.timedelta(minutes=1)))
    assert deliver(book, delivered("A-1-S1", SHIPPED_AT)).changed  # the same moment is fine


# -- short pick --------------------------------------------------------------------------------


def test_a_short_pick_puts_the_missing_units_back_on_backorder_latest_allotment_first() -> None:
    book = arrived()  # S3: KTP 1 of r0, 2 of r1
    result = short_pick(book, picked("A-1-S3", KTP=1))
    s3 = result.book.shipment("A-1-S3")
    assert result.changed and s3.status is ShipmentStatus.READY
    assert [(a.receipt_id, a.quantity) for a in s3.allotments] == [("r0", 1)]  # r1 dropped
    assert s3.amount == Decimal("10.00") and result.missing_amount == Decimal("20.00")
    assert [(a.line_id, a.receipt_id, a.quantity) for a in result.missing] == [("KTP", "r1", 2)]
    assert [(b.line_id, b.sku, b.quantity) for b in result.backordered] == [("KTP", "KTP", 2)]
    assert counts(result.book) == {"KTP": (4, 2, 0), "KTP2": (2, 0, 0)}
    waiting = result.book.open_backorder(A1)
    assert waiting is not None and [(ln.line_id, ln.quantity) for ln in waiting.lines] == [
        ("KTP", 2)
    ]


def test_a_short_pick_takes_from_more_than_one_allotment_and_keeps_the_earliest() -> None:
    result = short_pick(arrived(), picked("A-1-S3", KTP=0))
    assert result.book.shipment("A-1-S3").status is ShipmentStatus.CANCELLED
    assert [(a.receipt_id, a.quantity) for a in result.missing] == [("r0", 1), ("r1", 2)]

    result = short_pick(arrived(), picked("A-1-S1", KTP=1, KTP2=0))
    s1 = result.book.shipment("A-1-S1")
    assert [(a.line_id, a.quantity) for a in s1.allotments] == [("KTP", 1)]  # KTP2 dropped
    assert s1.amount == Decimal("10.00") and result.missing_amount == Decimal("5.00")
    assert [(a.line_id, a.quantity, a.source) for a in result.missing] == [
        ("KTP2", 2, StockSource.CURRENT)
    ]
    assert counts(result.book) == {"KTP": (6, 0, 0), "KTP2": (0, 2, 0)}


def test_a_short_pick_of_every_unit_cancels_the_shipment_as_it_was() -> None:
    book = arrived()
    s1 = book.shipment("A-1-S1")
    result = short_pick(book, picked("A-1-S1", KTP=0, KTP2=0))
    emptied = result.book.shipment("A-1-S1")
    assert emptied.status is ShipmentStatus.CANCELLED and not emptied.live
    assert (emptied.allotments, emptied.amount) == (s1.allotments, s1.amount)  # as cancel does
    assert result.missing == s1.allotments and result.missing_amount == Decimal("15.00")
    assert counts(result.book) == {"KTP": (5, 1, 0), "KTP2": (0, 2, 0)}
    waiting = result.book.open_backorder(A1)
    assert waiting is not None and waiting.shipments == 2  # the cancelled one does not count


def test_a_short_pick_that_finds_everything_changes_nothing() -> None:
    book = arrived()
    for report in (picked("A-1-S1", KTP=1, KTP2=2), picked("A-1-S2", KTP=2, KTP2=0)):
        result = short_pick(book, report)  # S2 holds no KTP2: found 0 of it is so
        assert not result.changed and result.book is book
        assert (result.missing, result.backordered, result.missing_amount) == ((), (), Decimal(0))


def test_the_same_short_pick_again_changes_nothing() -> None:
    for report in (picked("A-1-S3", KTP=1), picked("A-1-S1", KTP=0, KTP2=0)):
        once = short_pick(arrived(), report).book
        again = short_pick(once, report)
        assert not again.changed and again.book == once and again.missing == ()
    # a line the first report took out whole: found 0 is what the shipment says now
    once = short_pick(arrived(), picked("A-1-S1", KTP2=0)).book
    assert [a.line_id for a in once.shipment("A-1-S1").allotments] == ["KTP"]
    again = short_pick(once, picked("A-1-S1", KTP=1, KTP2=0))
    assert not again.changed and again.book == once
    # an emptied shipment: a report that finds none of some of its lines is the same news
    once = short_pick(arrived(), picked("A-1-S1", KTP=0, KTP2=0)).book
    assert not short_pick(once, picked("A-1-S1", KTP2=0)).changed
    # found is the total: a later report finding fewer takes only the difference
    later = short_pick(short_pick(arrived(), picked("A-1-S2", KTP=1)).book, picked("A-1-S2", KTP=0))
    assert [a.quantity for a in later.missing] == [1]
    assert later.book.shipment("A-1-S2").status is ShipmentStatus.CANCELLED


def test_a_short_pick_the_book_cannot_take_is_refused_with_the_numbers() -> None:
    book = arrived()
    with pytest.raises(
        FulfilmentRefused,
        match=r"short pick of shipment A-1-S1 found 3 of line KTP2, but the shipment holds only 2 "
        r"of it \(KTP 1, KTP2 2\)",
    ):
        short_pick(book, picked("A-1-S1", KTP=0, KTP2=3))
    with pytest.raises(
        FulfilmentRefused, match=r"A-1-S2 found 1 of line KTP2, but .* only 0 of it \(KTP 2\)"
    ):
        short_pick(book, picked("A-1-S2", KTP2=1))
    with pytest.raises(FulfilmentRefused, match=r"holds only 3 of it \(KTP 3\)"):
        short_pick(book, picked("A-1-S3", KTP=4))  # two allotments, one line
    with pytest.raises(
        FulfilmentRefused,
        match="short pick of shipment A-1-S2 names line NOPE, which order A-1 does not have",
    ):
        short_pick(book, picked("A-1-S2", NOPE=0))
    with pytest.raises(FulfilmentRefused, match="A-1-S3 is future, not ready or transfer: it "):
        short_pick(handed_over(), picked("A-1-S3", KTP=0))
    gone = ship(book, shipped("A-1-S1")).book
    with pytest.raises(
        FulfilmentRefused,
        match="A-1-S1 is shipped with 1 of line KTP: a short pick finding 0 cannot change it",
    ):
        short_pick(gone, picked("A-1-S1", KTP=0))
    # the short pick a feed sent before the shipment left, sent again: nothing to change
    as_shipped = {a.line_id: a.quantity for a in gone.shipment("A-1-S1").allotments}
    assert not short_pick(gone, picked("A-1-S1", **as_shipped)).changed
    emptied = short_pick(book, picked("A-1-S1", KTP=0, KTP2=0)).book
    with pytest.raises(
        FulfilmentRefused,
        match="found 1 of line KTP, but an earlier short pick found none of the shipment",
    ):
        short_pick(emptied, picked("A-1-S1", KTP=1))
    slipped = handed_over().back_to_backorder("A-1-S3")
    with pytest.raises(FulfilmentRefused, match="A-1-S3 is cancelled, not ready or transfer"):
        short_pick(slipped, picked("A-1-S3", KTP=0))  # a slipped receipt is no short pick


def test_a_short_picked_shipment_still_ships_with_what_was_found() -> None:
    book = short_pick(arrived(), picked("A-1-S1", KTP2=1)).book
    result = ship(book, shipped("A-1-S1"))
    s1 = result.book.shipment("A-1-S1")
    assert s1.status is ShipmentStatus.SHIPPED and s1.units("KTP2") == 1
    with pytest.raises(FulfilmentRefused, match="A-1-S1 is cancelled"):
        ship(short_pick(arrived(), picked("A-1-S1", KTP=0, KTP2=0)).book, shipped("A-1-S1"))


# -- apply_report and fulfilled ----------------------------------------------------------------


def test_apply_report_dispatches_on_the_type() -> None:
    book = arrived()
    steps: list[tuple[ShipmentShipped | ShortPick | ShipmentDelivered, ShipmentStatus]] = [
        (shipped("A-1-S1"), ShipmentStatus.SHIPPED),
        (delivered("A-1-S1"), ShipmentStatus.DELIVERED),
        (picked("A-1-S2", KTP=0), ShipmentStatus.CANCELLED),
    ]
    for report, status in steps:
        result = apply_report(book, report)
        assert isinstance(result, ReportApplied) and result.changed
        book = result.book
        assert book.shipment(report.shipment_id).status is status


def test_an_order_is_fulfilled_once_every_live_shipment_left_and_nothing_waits() -> None:
    book = handed_over()
    assert not book.fulfilled  # S3 waits for its receipt
    book = book.receipt_arrived("A-1-S3")
    assert book.settled and not book.fulfilled  # settled as before; fulfilment has not reported
    book = ship(book, shipped("A-1-S1")).book
    book = ship(book, shipped("A-1-S2", tracking="2")).book
    assert not book.fulfilled
    short = short_pick(book, picked("A-1-S3", KTP=2)).book
    assert not short.fulfilled and not short.settled  # one unit waits again
    book = ship(book, shipped("A-1-S3", tracking="3")).book
    assert book.fulfilled and book.settled
    assert deliver(book, delivered("A-1-S2")).book.fulfilled
    # a shipment emptied by a short pick does not hold the order once nothing waits
    book = ship(handed_over(), shipped("A-1-S2")).book
    emptied = short_pick(book, picked("A-1-S1", KTP=0, KTP2=0)).book
    assert not emptied.fulfilled  # its units wait again, and S3 for its receipt
    withdrawn = emptied.cancel(emptied.plan_cancel())
    assert [s.status for s in withdrawn.shipments] == [
        ShipmentStatus.CANCELLED, ShipmentStatus.SHIPPED, ShipmentStatus.CANCELLED,
    ]  # fmt: skip
    assert withdrawn.fulfilled


def test_an_order_cancelled_whole_is_fulfilled() -> None:
    o = priced(order("C-1", {"KTP": 2}))
    book = accepted(o, stock())
    assert not book.fulfilled
    assert book.cancel(book.plan_cancel()).fulfilled  # nothing was handed to fulfilment


# -- the shipment's fields ---------------------------------------------------------------------


def _s1_json(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(arrived().shipment("A-1-S1").model_dump_json())
    return data | changes


def test_a_shipment_recorded_before_fulfilment_reported_decodes_unchanged() -> None:
    new_fields = ("carrier", "tracking_number", "shipped_at", "estimated_delivery", "delivered_at")
    old = {k: v for k, v in _s1_json().items() if k not in new_fields}
    decoded = BookedShipment.model_validate_json(json.dumps(old))
    assert decoded == arrived().shipment("A-1-S1")
    assert all(getattr(decoded, f) is None for f in new_fields)


TRACKING = {"carrier": "UPS", "tracking_number": "1Z999", "shipped_at": "2026-05-02T09:00:00Z"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"status": "shipped"},
            "A-1-S1 is shipped but has no carrier, tracking_number, shipped_at",
        ),
        ({"status": "shipped", **TRACKING, "carrier": None}, r"is shipped but has no carrier \["),
        ({"status": "delivered", **TRACKING}, "is delivered but has no delivered_at"),
        (
            {"status": "ready", "carrier": "UPS", "estimated_delivery": "2026-05-06"},
            "is ready: carrier, estimated_delivery may be set only once fulfilment reports it "
            "shipped",
        ),
        (
            {"status": "shipped", **TRACKING, "delivered_at": "2026-05-04T15:00:00Z"},
            "is shipped: delivered_at may be set only once fulfilment reports it delivered",
        ),
        (
            {"status": "delivered", **TRACKING, "delivered_at": "2026-05-01T15:00:00Z"},
            "delivered_at 2026-05-01T15:00:00\\+00:00 is before shipped_at 2026-05-02T09:00:00",
        ),
        ({"status": "shipped", **TRACKING, "carrier": " UPS"}, "carrier"),
        ({"status": "shipped", **TRACKING, "tracking_number": "1" * 101}, "tracking_number"),
        ({"status": "shipped", **TRACKING, "shipped_at": "2026-05-02T09:00:00"}, "timezone"),
    ],
)
def test_a_shipment_has_tracking_exactly_when_it_left(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        BookedShipment.model_validate_json(json.dumps(_s1_json(**changes)))


def test_a_shipped_and_a_delivered_shipment_round_trip() -> None:
    book = deliver(ship(arrived(), shipped("A-1-S1")).book, delivered("A-1-S1")).book
    assert OrderBook.model_validate_json(book.model_dump_json()) == book


# -- the reports' contract ---------------------------------------------------------------------


def test_reports_are_told_apart_by_type() -> None:
    report = REPORTS.validate_json(
        '{"type": "short_pick", "shipment_id": "A-1-S1", "reported_at": "2026-05-02T09:00:00Z",'
        ' "lines": [{"line_id": "KTP", "found": 0}]}'
    )
    assert report == picked("A-1-S1", KTP=0)
    report = REPORTS.validate_json(
        '{"type": "shipped", "shipment_id": "A-1-S1", "carrier": "UPS", "tracking_number": '
        '"1Z 999", "shipped_at": "2026-05-02T11:00:00+02:00", "estimated_delivery": "2026-05-02"}'
    )
    assert isinstance(report, ShipmentShipped) and report.tracking_number == "1Z 999"
    report = REPORTS.validate_json(
        '{"type": "delivered", "shipment_id": "A-1-S1", "delivered_at": "2026-05-04T15:00:00Z"}'
    )
    assert report == delivered("A-1-S1")


SHIPPED = {
    "type": "shipped",
    "shipment_id": "A-1-S1",
    "carrier": "UPS",
    "tracking_number": "1Z999",
    "shipped_at": "2026-05-02T09:00:00Z",
}
SHORT = {
    "type": "short_pick",
    "shipment_id": "A-1-S1",
    "lines": [{"line_id": "KTP", "found": 0}],
    "reported_at": "2026-05-02T09:00:00Z",
}


@pytest.mark.parametrize(
    ("report", "message"),
    [
        (SHIPPED | {"type": "lost"}, "does not match any of the expected tags"),
        ({k: v for k, v in SHIPPED.items() if k != "type"}, "Unable to extract tag"),
        (
            SHIPPED | {"estimated_delivery": "2026-05-01"},
            r"estimated_delivery 2026-05-01 is before the day the shipment shipped \(2026-05-02, "
            r"from shipped_at\)",
        ),
        (SHIPPED | {"shipped_at": 1_777_712_400}, "must be an RFC 3339 date-time string"),
        (SHIPPED | {"shipped_at": "2026-05-02T09:00:00"}, "must be an RFC 3339 date-time"),
        (SHIPPED | {"tracking_number": "1Z999 "}, "tracking_number"),
        (SHIPPED | {"carrier": ""}, "carrier"),
        (SHIPPED | {"signed_by": "me"}, "Extra inputs are not permitted"),
        ({k: v for k, v in SHIPPED.items() if k != "carrier"}, "carrier\n  Field required"),
        (SHORT | {"lines": []}, "names at least one line"),
        (SHORT | {"lines": [{"line_id": "KTP", "found": -1}]}, "greater than or equal to 0"),
        (SHORT | {"lines": [{"line_id": "KTP", "found": "1"}]}, "must be a JSON integer"),
        (SHORT | {"lines": [{"line_id": "KTP", "found": 1.0}]}, "must be a JSON integer"),
        (
            SHORT | {"lines": [{"line_id": "KTP", "found": 0}, {"line_id": "KTP", "found": 1}]},
            "the short pick's line ids must be unique; repeated: KTP",
        ),
        (
            {"type": "delivered", "shipment_id": "A-1-S1", "delivered_at": "2026-05-04"},
            "must be an RFC 3339 date-time string",
        ),
    ],
)
def test_a_report_the_contract_refuses_says_why(report: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        REPORTS.validate_json(json.dumps(report))


# -- properties --------------------------------------------------------------------------------

SKUS = ("KTP", "KTP2", "KTP3")


@st.composite
def books(draw: st.DrawFn) -> OrderBook:
    """An order of up to three lines accepted against stock at two locations (ready and
    transfer shipments), released against incoming stock (future ones), some of which came in."""
    n = draw(st.integers(1, 3))
    ordered = draw(st.lists(st.integers(1, 6), min_size=n, max_size=n))
    o = order("P-1", dict(zip(SKUS, ordered, strict=False)))
    on_hand = {(s, loc): draw(st.integers(0, 3)) for s in SKUS[:n] for loc in ("A", "B")}
    book = accepted(o, stock(on_hand))
    receipts = [
        (s, "A", q, day)
        for s in SKUS[:n]
        for day in ("2026-05-01", "2026-05-10")
        if (q := draw(st.integers(0, 3)))
    ]
    if (waiting := book.open_backorder(o)) is not None:
        plan = plan_release([waiting], stock(receipts=receipts), Catalog(), BY_QUANTITY, AS_OF)
        if (release := plan.release_for("P-1")) is not None:
            book = book.release(release, NOW)
    for s in book.future_shipments:
        if draw(st.booleans()):
            book = book.receipt_arrived(s.shipment_id)
    return book


@st.composite
def reports(draw: st.DrawFn, book: OrderBook) -> ShipmentShipped | ShortPick | ShipmentDelivered:
    """A report of one of the book's shipments (or one it does not have); short picks find any
    number from none to one more than the shipment holds."""
    ids = [s.shipment_id for s in book.shipments] + ["P-1-S99"]
    shipment_id = draw(st.sampled_from(ids))
    kind = draw(st.sampled_from(["shipped", "short_pick", "delivered"]))
    if kind == "shipped":
        return shipped(shipment_id, tracking=draw(st.sampled_from(["T1", "T2"])))
    if kind == "delivered":
        return delivered(shipment_id)
    lines = [ln.line_id for ln in book.lines]
    named = draw(st.lists(st.sampled_from(lines), min_size=1, unique=True))
    units = {ln: (book.shipment(shipment_id).units(ln) if shipment_id in ids[:-1] else 0)
             for ln in named}  # fmt: skip
    found = {ln: draw(st.integers(0, units[ln] + 1)) for ln in named}
    return picked(shipment_id, **found)


def conserved(book: OrderBook) -> None:
    for ln in book.lines:
        assert ln.released + ln.backordered + ln.cancelled == ln.ordered
        assert ln.released == sum(s.units(ln.line_id) for s in book.shipments if s.live)


def fulfilled_by_hand(book: OrderBook) -> bool:
    """Every released unit is in a shipped or delivered shipment, and nothing waits."""
    left = (ShipmentStatus.SHIPPED, ShipmentStatus.DELIVERED)
    return all(
        ln.backordered == 0
        and ln.released == sum(s.units(ln.line_id) for s in book.shipments if s.status in left)
        for ln in book.lines
    )


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_sequence_of_reports_keeps_every_unit_counted_and_repeats_change_nothing(
    data: st.DataObject,
) -> None:
    book = data.draw(books())
    ordered = {ln.line_id: ln.ordered for ln in book.lines}
    for _ in range(data.draw(st.integers(1, 8))):
        report = data.draw(reports(book))
        try:
            result = apply_report(book, report)
        except FulfilmentRefused:
            continue
        before_units = sum(ln.released for ln in book.lines)
        after_units = sum(ln.released for ln in result.book.lines)
        assert before_units - after_units == sum(a.quantity for a in result.missing)
        assert sum(b.quantity for b in result.backordered) == sum(
            a.quantity for a in result.missing
        )
        assert result.changed == (result.book != book)
        again = apply_report(result.book, report)
        assert not again.changed and again.book == result.book and again.missing == ()
        book = result.book
        conserved(book)
        assert {ln.line_id: ln.ordered for ln in book.lines} == ordered
        assert book.fulfilled == fulfilled_by_hand(book)


@settings(max_examples=100, deadline=None)
@given(book=books(), short=st.booleans(), deliver_too=st.booleans())
def test_fulfilled_exactly_when_every_released_unit_left_and_nothing_waits(
    book: OrderBook, short: bool, deliver_too: bool
) -> None:
    assert book.fulfilled == fulfilled_by_hand(book)
    handed = [s for s in book.shipments if s.status in (ShipmentStatus.READY, "transfer")]
    if short and handed:
        first = handed[0]
        book = short_pick(book, picked(first.shipment_id, **{first.allotments[0].line_id: 0})).book
        assert book.fulfilled == fulfilled_by_hand(book)
    book = ship_all(book)
    assert book.fulfilled == fulfilled_by_hand(book)
    if deliver_too:
        for s in book.shipments:
            if s.status is ShipmentStatus.SHIPPED:
                book = deliver(book, delivered(s.shipment_id)).book
    assert book.fulfilled == fulfilled_by_hand(book)
    waiting = book.backordered_units or book.future_shipments
    assert book.fulfilled == (not waiting)  # every handed-over shipment has now left
    conserved(book)
