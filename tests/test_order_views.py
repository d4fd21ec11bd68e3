"""What operators see of an order in the Temporal UI: the static summary and details a start
passes, and the current details the workflow publishes. Pure functions first, then one order on
the dev server through `backorder order start`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.testing import WorkflowEnvironment

from cli.orders import start_order
from config import Settings
from domain.order import Order, OrderLine
from domain.order_book import BookedShipment, ShipmentStatus
from domain.payment import PaymentBook
from domain.planner import Allotment, ShipmentKind, StockSource
from domain.policy import BackorderPolicy, PaymentTiming
from domain.schedule import ScheduleState
from tests.polling import eventually
from tests.test_backorder_workflow import fresh
from worker import build_worker
from workflows.backorder import BackorderWorkflow
from workflows.messages import (
    BackorderStatus,
    CancelRequest,
    ExceptionBrief,
    LogEntry,
    OpenExceptions,
)
from workflows.order_views import (
    DETAIL_ROWS,
    DETAILS_BYTES,
    LOG_ROWS,
    STATIC_DETAILS_BYTES,
    SUMMARY_BYTES,
    current_details,
    fulfilment_parts,
    static_details,
    static_summary,
    waiting_book,
)

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
HEADINGS = ("### Order ", "### Lines (", "### Shipments (", "### Payment", "### Next timers")
LINES_HEADER = re.compile(r"^\|.*line.*\|.*sku.*\|.*ordered.*\|.*released.*\|.*waiting.*\|")
SEPARATOR = re.compile(r"^\|(:--\|){2}(--:\|){4}$")


def with_lines(order: Order, count: int) -> Order:
    """The example order with `count` lines of distinct SKUs."""
    lines = [
        OrderLine(line_id=f"L{i}", sku=f"SKU-{i}", quantity=i % 7 + 1, unit_price=Decimal("2.50"))
        for i in range(1, count + 1)
    ]
    return order.model_copy(update={"lines": lines})


def details(order: Order, *, log: tuple[LogEntry, ...] = (), **state: Any) -> str:
    """The current details of `order` accepted at NOW, all waiting unless `state` says more."""
    book = state.pop("book", waiting_book(order))
    return current_details(
        order,
        book,
        BackorderStatus.BACKORDERED,
        NOW,
        order.customer.tier,
        ScheduleState(accepted_at=NOW, ordered_at=order.placed_at),
        BackorderPolicy(),
        state.pop("payment", None),
        accepted=state.pop("accepted", True),
        log=log,
        exceptions=state.pop("exceptions", None),
    )


def shipped(order: Order) -> BookedShipment:
    """Two units of the first line shipped from stock."""
    line = order.lines[0]
    return BookedShipment(
        shipment_id=f"{order.order_id}-S1",
        kind=ShipmentKind.READY,
        status=ShipmentStatus.READY,
        location="DC1",
        allotments=(
            Allotment(
                line_id=line.line_id,
                sku=line.sku,
                quantity=2,
                location="DC1",
                source=StockSource.CURRENT,
            ),
        ),
        amount=line.unit_price * 2,
        created_at=NOW,
    )


def test_current_details_have_sections_and_a_table_with_a_header_row(
    example_order: Order,
) -> None:
    text = details(example_order)
    lines = text.splitlines()

    assert [h for h in HEADINGS if not any(ln.startswith(h) for ln in lines)] == []
    header = next(i for i, ln in enumerate(lines) if LINES_HEADER.match(ln))
    assert SEPARATOR.match(lines[header + 1])
    assert lines[header + 2].replace("\u00a0", "").split("|")[1:-1] == [
        " 1 ",
        " KTP ",
        " 5 ",
        " 0 ",
        " 5 ",
        " 0 ",
    ]
    assert "\u00a0KTP\u00a0" in text  # padded: the UI resets cell padding, so cells would touch
    assert "- **Status:** backordered since 2026-11-23 09:30 UTC" in lines
    assert "- **Customer:** c1, tier standard" in lines
    assert "- **Value:** 50.00 USD" in lines
    assert any(ln.startswith("- **FTC:** none · deadline ") for ln in lines)
    assert "- none through this service" in lines  # no payment
    assert any(ln.startswith("- customer_update · ") for ln in lines)


def test_shipments_payment_problem_and_the_latest_log_entries_show(example_order: Order) -> None:
    order = example_order
    book = waiting_book(order).model_copy(update={"shipments": (shipped(order),)})
    payment = PaymentBook(
        timing=PaymentTiming.AT_SHIP,
        currency="USD",
        authorised=Decimal("30.00"),
        captured=Decimal("20.00"),
        problem="capture declined | card_expired",
    )
    log = tuple(
        LogEntry(at=NOW + timedelta(minutes=i), event="check", detail=f"entry {i}")
        for i in range(LOG_ROWS + 3)
    )
    text = details(order, book=book, payment=payment, log=log)

    assert f"- {order.order_id}-S1 · **ready** · 2 units · 20.00 USD" in text
    assert "- **Amounts:** authorised 30.00 · captured 20.00 · voided 0 · refunded 0 USD" in text
    assert r"- **Problem:** **capture declined \| card\_expired**" in text  # escaped, not markup
    latest = [ln for ln in text.splitlines() if "· **check** ·" in ln]
    assert (
        latest[0] == f"- 2026-11-23 09:{30 + LOG_ROWS + 2} UTC · **check** · entry {LOG_ROWS + 2}"
    )
    assert len(latest) == LOG_ROWS
    assert "+3 more earlier entries: `backorder order status` shows them all" in text


def test_before_acceptance_no_timer_is_promised(example_order: Order) -> None:
    text = details(example_order, accepted=False)

    assert "- none yet: the order is being accepted" in text
    assert "### Lately" in text and "- nothing yet" in text


def test_a_thousand_line_order_stays_bounded(example_order: Order) -> None:
    order = with_lines(example_order, 1000)
    text = details(order)

    assert len(text.encode()) <= DETAILS_BYTES
    assert text.count("SKU-") == DETAIL_ROWS
    assert f"+{1000 - DETAIL_ROWS} more lines: `backorder order status` shows them all" in text
    assert len(static_details(order).encode()) <= STATIC_DETAILS_BYTES
    assert len(static_summary(order).encode()) <= SUMMARY_BYTES


def test_outside_values_are_escaped_cut_and_kept_on_one_line(example_order: Order) -> None:
    order = example_order.model_copy(update={"order_number": "A|B" + "x" * 300})
    log = (LogEntry(at=NOW, event="note", detail="two\nlines *and* [a](link)"),)
    text = details(order, log=log)

    assert r"### Order A\|B" in text and "x" * 100 not in text
    assert r"· two lines \*and\* \[a\](link)" in text


def test_ids_the_ui_would_smarten_are_code_spans_and_read_as_typed(example_order: Order) -> None:
    """The UI's renderer turns `1/2` into a fraction, `'` into a curly quote and `--` into a
    dash, which escapes cannot stop: such ids are code spans (checked in a real browser by
    tests/test_ui_browser.py); plain ones stay plain text."""
    line = example_order.lines[0].model_copy(update={"sku": "BOLT-1/2|x"})
    customer = example_order.customer.model_copy(update={"id": "o'neil--1"})
    order = example_order.model_copy(
        update={"lines": (line, *example_order.lines[1:]), "customer": customer}
    )
    text = details(order)

    assert "`o'neil--1`" in text  # an item: as it is
    assert r"`BOLT-1/2\|x`" in text  # a table cell: the pipe escaped for the table
    assert "`BOLT-1/2|x`" in static_summary(order)
    assert f"### Order {example_order.order_number}\n" in text  # nothing to smarten: plain


def test_the_details_name_the_open_exceptions_and_how_many_more(example_order: Order) -> None:
    briefs = tuple(
        ExceptionBrief(id=i, kind=f"kind_{i}", severity="high", raised_at=NOW) for i in (4, 7)
    )
    text = details(example_order, exceptions=OpenExceptions(open=6, latest=briefs, as_of=NOW))
    at = f"{NOW:%Y-%m-%d %H:%M} UTC"
    section = text.split("### Open exceptions (6)\n\n")[1].split("\n\n###")[0]
    assert section.splitlines()[:3] == [
        f"- #4 · **kind\\_4** · high · raised {at}",
        f"- #7 · **kind\\_7** · high · raised {at}",
        "- +4 more",
    ]
    assert "Open exceptions" not in details(example_order)  # no news yet: nothing claimed


def test_the_details_are_cut_at_a_line_when_still_too_big(example_order: Order) -> None:
    """Every part is bounded; the whole is too, should the parts ever add up past it."""
    order = with_lines(example_order, DETAIL_ROWS).model_copy(
        update={"order_number": "&" * 200}  # escaping doubles it, in every place it shows
    )
    huge = tuple(LogEntry(at=NOW, event="&" * 200, detail="&" * 200) for _ in range(LOG_ROWS))
    text = details(order, log=huge)

    assert len(text.encode()) <= DETAILS_BYTES


def test_details_read_no_clock(example_order: Order, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workflow code: the same state gives the same text, whenever it is rendered."""
    first = details(example_order)

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Frozen:
            raise AssertionError("read the clock")

    monkeypatch.setattr("workflows.order_views.datetime", Frozen)
    assert details(example_order) == first


def test_static_summary_is_one_line_of_what_is_known_at_start(example_order: Order) -> None:
    assert static_summary(example_order) == "Order M9681118 · tier standard · 50.00 USD · 5 KTP"
    many = static_summary(with_lines(example_order, 5))
    assert (
        many == ("Order M9681118 · tier standard · 50.00 USD · 2 SKU-1, 3 SKU-2, 4 SKU-3 (+2 SKUs)")
        and "\n" not in many
    )


def test_static_details_list_the_order_as_placed(example_order: Order) -> None:
    text = static_details(example_order)

    assert "- **Placed:** 2026-11-20 10:00 UTC" in text
    assert "- **Customer:** c1, tier standard" in text
    assert "\u00a0KTP\u00a0" in text and "unit price (USD)" in text


@pytest.mark.e2e
async def test_a_started_order_shows_its_summary_and_details_in_temporal(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    settings: Settings,
    example_order: Order,
) -> None:
    """Started as `backorder order start` starts it: what the Temporal UI reads (describe's
    user metadata, and the `__temporal_workflow_metadata` query for the current details)."""
    order = fresh(example_order, await dev_env.get_current_time())
    async with build_worker(dev_env.client, pg_pool, settings):
        await start_order(dev_env.client, settings, order)
        handle = dev_env.client.get_workflow_handle(order.workflow_id)
        await eventually(lambda: handle.query(BackorderWorkflow.status), lambda s: bool(s.schedule))
        described = await handle.describe()
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="test"))
        await handle.result()

    assert await described.static_summary() == static_summary(order)
    assert await described.static_details() == static_details(order)
    shown = metadata.current_details
    assert [h for h in HEADINGS if h not in shown] == [], shown
    assert "- **Status:** backordered since " in shown
    assert any(LINES_HEADER.match(ln) for ln in shown.splitlines()), shown


def test_a_shipment_fulfilment_confirmed_shows_its_split_carrier_and_delivery(
    example_order: Order,
) -> None:
    order = example_order
    left = shipped(order).model_copy(
        update={
            "status": ShipmentStatus.SHIPPED,
            "order_number": f"{order.order_number}-001",
            "carrier": "UPS",
            "tracking_number": "1Z999AA1",
            "shipped_at": NOW,
            "estimated_delivery": NOW.date() + timedelta(days=3),
        }
    )
    arrived = left.model_copy(
        update={"status": ShipmentStatus.DELIVERED, "delivered_at": NOW + timedelta(days=2)}
    )
    for shipment, tail in (
        (left, "delivery expected 2026-11-26"),
        (arrived, "delivered 2026-11-25"),
    ):
        book = waiting_book(order).model_copy(update={"shipments": (shipment,)})
        text = details(order, book=book)
        assert f"· split {order.order_number}-001 · UPS 1Z999AA1 · {tail}" in text, text
        assert fulfilment_parts(shipment)[1:] == ["UPS 1Z999AA1", tail]
