"""What the order workflow shows: its status, summary, search attributes and current details for
operators, and the items its notices list for the customer.

Pure functions of the workflow's state, so a view never changes what the workflow does.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.order import Order
    from domain.order_book import BookedShipment, BookLine, OrderBook
    from domain.payment import PaymentBook
    from domain.planner import LineOutcome
    from domain.policy import BackorderPolicy
    from domain.schedule import ScheduleState, ScheduleSummary, summary
    from workflows import search_attributes as sa
    from workflows.messages import (
        BackorderStatus,
        BackorderSummary,
        LineStatus,
        LogEntry,
        OpenExceptions,
    )

DETAIL_ROWS = 25
"""Lines shown in the UI's details (all of them: the status query)."""
SHIPMENT_ROWS = 10
"""The latest shipments shown in the current details."""
TIMER_ROWS = 4
"""The next timers shown, one of each kind, soonest first."""
LOG_ROWS = 5
"""The latest log entries shown ("what happened lately")."""
TEXT_CHARS = 60
"""An id or other outside value in the details is cut to this many characters."""
LOG_CHARS = 160
"""A log entry's detail or a payment problem is cut to this many characters."""
SUMMARY_SKUS = 3
"""SKUs named in the static summary; the rest are counted."""
SUMMARY_BYTES = 240
"""The static summary's bound: Temporal refuses a summary payload above 400 bytes."""
STATIC_DETAILS_BYTES = 8_000
"""The static details' bound: Temporal refuses details above 20,000 bytes."""
DETAILS_BYTES = 16_000
"""The current details' bound: a query answer and, in the UI, a URL parameter."""
CELL_PAD = "\u00a0"
"""Non-breaking spaces around a table cell's text: the only spacing the UI keeps."""
MARKDOWN_SPECIALS = frozenset("\\`*_[]<>|~&")
"""What an outside value escapes with a backslash, to read as text, not markup."""
SMARTENED = re.compile(r"--|\.\.\.|['\"]|\((?:c|r|tm|p)\)|\d/\d", re.IGNORECASE)
"""What the UI's markdown renderer replaces typographically: dashes, ellipses, quotes, (c)
(r) (tm) (p), fractions; backslash escapes stop none of the quotes and fractions."""
CUT_NOTE = "\n\n… cut to fit: `backorder order status` shows everything\n"


def waiting_book(order: Order) -> OrderBook:
    """Before acceptance everything waits (what `status` shows in the first instants)."""
    return OrderBook(
        order_id=order.order_id,
        currency=order.currency,
        lines=tuple(
            BookLine(
                line_id=ln.line_id,
                sku=ln.sku,
                unit_price=ln.unit_price,
                ordered=ln.quantity,
                backordered=ln.quantity,
            )
            for ln in order.lines
        ),
    )


def status_of(book: OrderBook, reports: bool = False) -> BackorderStatus:
    """`reports`: fulfilment confirms shipments, so a ready one is not shipped yet."""
    if book.backordered_units:
        return BackorderStatus.BACKORDERED
    if book.unshipped_units:
        return BackorderStatus.AWAITING_RECEIPT
    if reports and not book.fulfilled:
        return BackorderStatus.AWAITING_SHIPMENT
    shipped = any(s.live for s in book.shipments)
    return BackorderStatus.COMPLETED if shipped else BackorderStatus.CANCELLED


def line_statuses(book: OrderBook) -> list[LineStatus]:
    return [LineStatus(**ln.model_dump(exclude={"unit_price"})) for ln in book.lines]


def order_summary(
    order: Order,
    book: OrderBook,
    status: BackorderStatus,
    payment: PaymentBook | None,
    days_in_backorder: int,
    ended_at: datetime,
) -> BackorderSummary:
    return BackorderSummary(
        order_id=order.order_id,
        status=status,
        lines=line_statuses(book),
        shipments=book.shipments,
        payment=payment,
        days_in_backorder=days_in_backorder,
        ended_at=ended_at,
    )


def search_attributes(
    order: Order,
    book: OrderBook,
    status: BackorderStatus,
    schedule: ScheduleState,
    tier: str,
) -> list[SearchAttributeUpdate[Any]]:
    """How operators find the order in the Temporal UI and CLI."""
    waiting = book.waiting_skus or order.skus
    return [
        sa.BACKORDER_STATUS.value_set(status.value),
        sa.BACKORDER_SKUS.value_set(sa.bounded_keywords(waiting)),
        sa.BACKORDER_SINCE.value_set(schedule.accepted_at),
        sa.CUSTOMER_TIER.value_set(tier),
        sa.ORDER_VALUE.value_set(float(order.value)),
        sa.FTC_STATE.value_set(schedule.ftc.state.value),
    ]


def static_summary(order: Order) -> str:
    """The one line the Temporal UI shows for the order in its list and header (the workflow's
    static summary): what is known when it starts, so every starter can pass the same."""
    items = notice_items((ln.sku, ln.quantity) for ln in order.lines)
    shown = ", ".join(f"{i.quantity} {_id(i.sku, 30)}" for i in items[:SUMMARY_SKUS])
    more = f" (+{len(items) - SUMMARY_SKUS} SKUs)" if len(items) > SUMMARY_SKUS else ""
    line = (
        f"Order {_id(order.order_number, 60)} · tier {_id(order.customer.tier, 30)} · "
        f"{order.value} {order.currency} · {shown}{more}"
    )
    return _clip(line, SUMMARY_BYTES)


def static_details(order: Order) -> str:
    """The order as it was placed, as short markdown (the workflow's static details): who,
    when, and its lines; what happened since is in the current details."""
    placed = [
        _item("Order", f"{_id(order.order_number)} (id {_id(order.order_id)})"),
        _item("Placed", _at(order.placed_at)),
        _item("Customer", f"{_id(order.customer.id)}, tier {_id(order.customer.tier)}"),
        _item("Value", f"{order.value} {order.currency}"),
        _item("Fulfilment", _fulfilment(order)),
        _item("Site", _id(order.site) if order.site else "the worker's"),
    ]
    table = _table(
        ("line", "sku", "quantity", f"unit price ({order.currency})"),
        (
            (
                _id(ln.line_id, in_table=True),
                _id(ln.sku, in_table=True),
                str(ln.quantity),
                str(ln.unit_price),
            )
            for ln in order.lines[:DETAIL_ROWS]
        ),
        numbers_from=2,
    )
    text = _sections(
        ("Placed", "\n".join(placed)),
        ("Lines", _more(table, len(order.lines), DETAIL_ROWS, "lines")),
    )
    return _clip_lines(text, STATIC_DETAILS_BYTES)


def current_details(
    order: Order,
    book: OrderBook,
    status: BackorderStatus,
    status_since: datetime,
    tier: str,
    schedule: ScheduleState,
    policy: BackorderPolicy,
    payment: PaymentBook | None,
    *,
    accepted: bool,
    log: Sequence[LogEntry] = (),
    exceptions: OpenExceptions | None = None,
) -> str:
    """The order now, as markdown sections for the Temporal UI's current details: headings,
    labelled values one to a line (they read well in any renderer), tables only for rows.
    Bounded row by row and as a whole; a pure function of the state (no clock)."""
    agenda = summary(schedule, policy) if accepted else None
    text = _sections(
        (
            f"Order {_id(order.order_number)}",
            _status_items(order, book, status, status_since, tier, schedule, agenda),
        ),
        (f"Lines ({len(book.lines)})", _lines_table(book)),
        (f"Shipments ({len(book.shipments)})", _shipment_items(book)),
        ("Payment", _payment_items(payment)),
        ("Next timers", _timer_items(agenda)),
        *_exception_section(exceptions),
        ("Lately", _log_items(log)),
    )
    return _clip_lines(text, DETAILS_BYTES)


def _status_items(
    order: Order,
    book: OrderBook,
    status: BackorderStatus,
    status_since: datetime,
    tier: str,
    schedule: ScheduleState,
    agenda: ScheduleSummary | None,
) -> str:
    """The key figures: what an operator asks first."""
    ftc = schedule.ftc
    deadline = f" · deadline {_at(agenda.ftc_deadline)}" if agenda is not None else ""
    dates = "".join(
        f" · {label} {day}"
        for label, day in (("ship by", ftc.ship_by), ("refund by", ftc.refund_by))
        if day is not None
    )
    units = (
        f"{sum(ln.ordered for ln in book.lines)} ordered · {book.unshipped_units} not shipped "
        f"yet · {book.backordered_units} of them backordered"
    )
    return "\n".join(
        (
            _item("Status", f"{status.value} since {_at(status_since)}"),
            _item("Order id", _id(order.order_id)),
            _item("Customer", f"{_id(order.customer.id)}, tier {_id(tier)}"),
            _item("Value", f"{order.value} {order.currency}"),
            _item("Units", units),
            _item("Expected ship date", str(schedule.expected_ship_date or "unknown")),
            _item("FTC", f"{ftc.state.value}{deadline}{dates}"),
        )
    )


def _lines_table(book: OrderBook) -> str:
    table = _table(
        ("line", "sku", "ordered", "released", "waiting", "cancelled"),  # fits 1280 px
        (
            (
                _id(ln.line_id, in_table=True),
                _id(ln.sku, in_table=True),
                *(str(n) for n in (ln.ordered, ln.released, ln.backordered, ln.cancelled)),
            )
            for ln in book.lines[:DETAIL_ROWS]
        ),
        numbers_from=2,
    )
    return _more(table, len(book.lines), DETAIL_ROWS, "lines")


def fulfilment_parts(shipment: BookedShipment) -> list[str]:
    """What fulfilment made of a shipment, for operators: its split number, carrier and
    tracking number, and the delivery expected or made."""
    return _fulfilment_parts(shipment, str)


def _fulfilment_parts(s: BookedShipment, ident: Callable[[str], str]) -> list[str]:
    parts = []
    if s.order_number is not None:
        parts.append(f"split {ident(s.order_number)}")
    if s.carrier is not None and s.tracking_number is not None:
        parts.append(f"{ident(s.carrier)} {ident(s.tracking_number)}")
    if s.delivered_at is not None:
        parts.append(f"delivered {s.delivered_at:%Y-%m-%d}")
    elif s.estimated_delivery is not None:
        parts.append(f"delivery expected {s.estimated_delivery}")
    return parts


def _shipment_items(book: OrderBook) -> str:
    """The latest shipments, newest first."""
    latest = book.shipments[::-1][:SHIPMENT_ROWS]
    items = "\n".join(
        f"- {_id(s.shipment_id)} · **{s.status.value}** · "
        f"{_units(sum(a.quantity for a in s.allotments))} · {s.amount} {book.currency}"
        + (f" · expected {s.expected_date}" if s.expected_date else "")
        + "".join(f" · {part}" for part in _fulfilment_parts(s, _id))
        for s in latest
    )
    return _more(items or "- none yet", len(book.shipments), SHIPMENT_ROWS, "earlier shipments")


def _payment_items(payment: PaymentBook | None) -> str:
    if payment is None:
        return "- none through this service"
    p = payment
    moved = (
        f"authorised {p.authorised} · captured {p.captured} · voided {p.voided} · "
        f"refunded {p.refunded} {p.currency}"
    )
    items = [_item("Timing", p.timing.value), _item("Amounts", moved)]
    if p.problem:
        items.append(_item("Problem", f"**{_text(p.problem, LOG_CHARS)}**"))
    return "\n".join(items)


def _timer_items(agenda: ScheduleSummary | None) -> str:
    if agenda is None:
        return "- none yet: the order is being accepted"
    items = "\n".join(f"- {d.kind.value} · {_at(d.at)}" for d in agenda.upcoming[:TIMER_ROWS])
    return items or "- none: nothing waits"


def _exception_section(exceptions: OpenExceptions | None) -> tuple[tuple[str, str], ...]:
    """Open exceptions on the operators' queue, once the order has had news of them."""
    if exceptions is None or exceptions.as_of is None:
        return ()
    items = "\n".join(
        f"- #{e.id} · **{_text(e.kind)}** · {_text(e.severity)} · raised {_at(e.raised_at)}"
        for e in exceptions.latest
    )
    hidden = exceptions.open - len(exceptions.latest)
    more = f"\n- +{hidden} more" if hidden > 0 else ""
    note = f"\n\n_as of {_at(exceptions.as_of)} · `backorder exceptions --order ID` has them all_"
    return ((f"Open exceptions ({exceptions.open})", (items or "- none") + more + note),)


def _log_items(log: Sequence[LogEntry]) -> str:
    """What happened lately, newest first (the status query has the whole log)."""
    latest = list(log)[::-1][:LOG_ROWS]
    items = "\n".join(
        f"- {_at(e.at)} · **{_text(e.event)}** · {_text(e.detail, LOG_CHARS)}" for e in latest
    )
    return _more(items or "- nothing yet", len(log), LOG_ROWS, "earlier entries")


def _fulfilment(order: Order) -> str:
    f = order.fulfillment
    where = f" at {_id(f.pickup_location)}" if f.pickup_location else ""
    return f"{f.type.value}{where}"


def _sections(*sections: tuple[str, str]) -> str:
    """`### Heading`, a blank line, the body: the UI keeps blank lines as space between them."""
    return "\n\n".join(f"### {heading}\n\n{body}" for heading, body in sections) + "\n"


def _item(label: str, value: str) -> str:
    """A labelled value on a line of its own (a list item: the UI lays items out one per line)."""
    return f"- **{label}:** {value}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numbers_from: int) -> str:
    """A markdown table with a header row and a separator row, the columns from `numbers_from`
    on right-aligned. The UI's markdown styles reset every cell's padding and border, so cells
    are padded with non-breaking spaces (which no renderer collapses): else they read `KTP50`."""

    def row(cells: Iterable[str]) -> str:
        return "|" + "|".join(f" {CELL_PAD}{cell}{CELL_PAD} " for cell in cells) + "|"

    align = "|" + "|".join(":--" if i < numbers_from else "--:" for i in range(len(header)))
    return "\n".join((row(header), align + "|", *(row(r) for r in rows)))


def _more(body: str, total: int, shown: int, what: str) -> str:
    """`body`, then `+N more` when it shows only the first `shown` of `total`."""
    if total <= shown:
        return body
    return f"{body}\n\n+{total - shown} more {what}: `backorder order status` shows them all"


def _units(n: int) -> str:
    return f"{n} unit{'' if n == 1 else 's'}"


def _at(t: datetime) -> str:
    """An instant in UTC to the minute (converted, never read from a clock)."""
    return f"{t.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _text(value: str, limit: int = TEXT_CHARS) -> str:
    """A value from outside (a log line, a reason) as literal markdown on one line: blanks
    collapsed, cut at `limit` characters, markdown's special characters escaped."""
    return "".join(f"\\{ch}" if ch in MARKDOWN_SPECIALS else ch for ch in _flat(value, limit))


def _id(value: str, limit: int = TEXT_CHARS, *, in_table: bool = False) -> str:
    """An identifier (order number, sku, customer, line, shipment) that reads exactly as it is
    typed: escaped text, or a code span where the UI's renderer would "smarten" it into another
    id (`BOLT-1/2` into a fraction, `o'neil--1` into a curly quote and a dash), which
    backslashes cannot stop.
    In a table cell a `|` is escaped even in a code span (GFM splits cells first)."""
    flat = _flat(value, limit)
    if not SMARTENED.search(flat):
        return _text(flat, limit)
    fence = "`" * (max(map(len, re.findall("`+", flat)), default=0) + 1)
    pad = " " if flat[0] == "`" or flat[-1] == "`" else ""
    body = flat.replace("|", "\\|") if in_table else flat
    return f"{fence}{pad}{body}{pad}{fence}"


def _flat(value: str, limit: int) -> str:
    """On one line, blanks collapsed, cut at `limit` characters."""
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _clip(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut on a character boundary."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - len("…".encode())].decode(errors="ignore") + "…"


def _clip_lines(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut at a line boundary (a table stays a table) with a
    note saying where the rest is."""
    if len(text.encode()) <= limit:
        return text
    budget = limit - len(CUT_NOTE.encode())
    kept = _clip(text, budget).rsplit("\n", 1)[0]
    return kept + CUT_NOTE


def notice_items(pairs: Iterable[tuple[str, int]]) -> tuple[c.NoticeItem, ...]:
    """Units per sku, in first-seen order (zero quantities left out)."""
    units: Counter[str] = Counter()
    for sku, quantity in pairs:
        units[sku] += quantity
    return tuple(c.NoticeItem(sku=sku, quantity=q) for sku, q in units.items() if q > 0)


def waiting_items(book: OrderBook) -> tuple[c.NoticeItem, ...]:
    return notice_items((ln.sku, ln.backordered) for ln in book.lines)


def unshipped_items(book: OrderBook) -> tuple[c.NoticeItem, ...]:
    future = ((a.sku, a.quantity) for s in book.future_shipments for a in s.allotments)
    return notice_items([*((ln.sku, ln.backordered) for ln in book.lines), *future])


def cancelled_in(
    book: OrderBook, outcomes: Iterable[LineOutcome]
) -> tuple[Decimal, tuple[c.NoticeItem, ...]]:
    """The value and items of what a plan cancelled (not backorderable, dropped inserts)."""
    cancelled = [o for o in outcomes if o.cancelled]
    value = sum((book.line(o.line_id).unit_price * o.cancelled for o in cancelled), Decimal(0))
    return value, notice_items((o.sku, o.cancelled) for o in cancelled)
