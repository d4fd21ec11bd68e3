"""What the order workflow shows: its status, summary, search attributes and current details for
operators, and the items its notices list for the customer.

Pure functions of the workflow's state, so a view never changes what the workflow does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.order import Order
    from domain.order_book import BookLine, OrderBook, ShipmentStatus
    from domain.payment import PaymentBook
    from domain.planner import LineOutcome
    from domain.policy import BackorderPolicy
    from domain.schedule import ScheduleState, summary
    from workflows import search_attributes as sa
    from workflows.messages import BackorderStatus, BackorderSummary, LineStatus

DETAIL_ROWS = 50
"""Lines and shipments shown in the UI's current details (all of them: the status query)."""


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


def status_of(book: OrderBook) -> BackorderStatus:
    if book.backordered_units:
        return BackorderStatus.BACKORDERED
    if book.unshipped_units:
        return BackorderStatus.AWAITING_RECEIPT
    shipped = any(
        s.status in (ShipmentStatus.READY, ShipmentStatus.TRANSFER) for s in book.shipments
    )
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
    waiting = sorted({ln.sku for ln in book.lines if ln.backordered}) or order.skus
    return [
        sa.BACKORDER_STATUS.value_set(status.value),
        sa.BACKORDER_SKUS.value_set(sa.bounded_keywords(waiting)),
        sa.BACKORDER_SINCE.value_set(schedule.accepted_at),
        sa.CUSTOMER_TIER.value_set(tier),
        sa.ORDER_VALUE.value_set(float(order.value)),
        sa.FTC_STATE.value_set(schedule.ftc.state.value),
    ]


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
) -> str:
    """The order at a glance, as markdown for the Temporal UI's current details."""
    rows = "\n".join(
        f"| {ln.line_id} | {ln.sku} | {ln.ordered} | {ln.released} | {ln.backordered} "
        f"| {ln.cancelled} |"
        for ln in book.lines[:DETAIL_ROWS]
    )
    if len(book.lines) > DETAIL_ROWS:
        rows += f"\n| … | {len(book.lines) - DETAIL_ROWS} more lines (the status query) |||||"
    shipments = ", ".join(
        f"{s.shipment_id} {s.status.value}" for s in book.shipments[-DETAIL_ROWS:]
    )
    if len(book.shipments) > DETAIL_ROWS:
        shipments = f"{len(book.shipments) - DETAIL_ROWS} earlier, then {shipments}"
    nxt = summary(schedule, policy).upcoming if accepted else ()
    upcoming = ", ".join(f"{d.kind.value} {d.at:%Y-%m-%d}" for d in nxt[:3]) or "none"
    money = ""
    if payment is not None:
        p = payment
        money = (
            f"\n\nPayment ({p.timing.value}): authorised {p.authorised}, captured "
            f"{p.captured}, voided {p.voided}, refunded {p.refunded}"
            + (f" — **problem: {p.problem}**" if p.problem else "")
        )
    return (
        f"**Order {order.order_number}** ({order.order_id}) — **{status.value}** "
        f"since {status_since:%Y-%m-%d %H:%M} UTC\n\n"
        f"Customer {order.customer.id} ({tier}), {order.value} {order.currency}; "
        f"expected ship date {schedule.expected_ship_date or 'unknown'}; "
        f"FTC {schedule.ftc.state.value}; next: {upcoming}\n\n"
        "| line | sku | ordered | released | backordered | cancelled |\n"
        f"|---|---|---|---|---|---|\n{rows}\n\nShipments: {shipments or 'none'}{money}"
    )


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
