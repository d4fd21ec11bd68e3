"""What fulfilment reports about a shipment handed to it, and what each report does to the book.

A warehouse system reports `shipped` (carrier, tracking), `short_pick` (the picker found fewer
units than the shipment holds) and `delivered`. Reports arrive at least once and may repeat, so
each is idempotent: `found` in a short pick is the shipment's total, not a difference, and the
same `shipped` or `delivered` again changes nothing. Pure and deterministic, like the book: the
order workflow applies reports; the ledger and the notices follow from the result.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from domain.contract import Count, Day, Instant, require_unique
from domain.order import Contract, Identifier, Money
from domain.order_book import (
    BookedShipment,
    BookError,
    Carrier,
    OrderBook,
    ShipmentId,
    ShipmentStatus,
    TrackingNumber,
)
from domain.planner import Allotment, BackorderLine, ShipmentKind

# -- the reports -------------------------------------------------------------------------------


class ShipmentShipped(Contract):
    """Fulfilment confirms the shipment left with a carrier."""

    type: Literal["shipped"] = "shipped"
    shipment_id: ShipmentId
    carrier: Carrier
    tracking_number: TrackingNumber
    shipped_at: Instant
    estimated_delivery: Day | None = None
    """The carrier's estimate, if fulfilment has one; not before the day it shipped."""

    @model_validator(mode="after")
    def _delivery_after_shipping(self) -> ShipmentShipped:
        if self.estimated_delivery is not None and self.estimated_delivery < self.shipped_at.date():
            raise ValueError(
                f"estimated_delivery {self.estimated_delivery.isoformat()} is before the day the "
                f"shipment shipped ({self.shipped_at.date().isoformat()}, from shipped_at)"
            )
        return self


class PickedLine(Contract):
    line_id: Identifier
    found: Count
    """Units of the line the picker found for this shipment, in total (not the missing ones):
    the same report twice leaves the shipment as once."""


def _some_lines(lines: tuple[PickedLine, ...]) -> tuple[PickedLine, ...]:
    if not lines:
        raise ValueError("a short pick names at least one line")
    return lines


class ShortPick(Contract):
    """Fulfilment found fewer units than the shipment holds; the missing ones wait again."""

    type: Literal["short_pick"] = "short_pick"
    shipment_id: ShipmentId
    lines: Annotated[
        tuple[PickedLine, ...],
        Field(max_length=1000, json_schema_extra={"minItems": 1}),
        AfterValidator(_some_lines),
    ]
    """At least one line (checked after the lines, so a bad count is the only error named)."""
    reported_at: Instant

    @model_validator(mode="after")
    def _each_line_once(self) -> ShortPick:
        require_unique("the short pick's line ids", (ln.line_id for ln in self.lines))
        return self


class ShipmentDelivered(Contract):
    """Fulfilment confirms the carrier delivered the shipment."""

    type: Literal["delivered"] = "delivered"
    shipment_id: ShipmentId
    delivered_at: Instant


FulfilmentReport = Annotated[
    ShipmentShipped | ShortPick | ShipmentDelivered, Field(discriminator="type")
]
"""Any report of fulfilment, told apart by `type`."""


# -- what a report did -------------------------------------------------------------------------


class FulfilmentRefused(BookError):
    """A report the book cannot take (unknown or future shipment, conflicting details, more
    units found than the shipment holds): the message says which and why."""

    def __init__(self, message: str, shipment_id: str) -> None:
        super().__init__(message)
        self.shipment_id = shipment_id


class ReportApplied(Contract):
    """The book after a report, and what the ledger and the notices must follow up."""

    book: OrderBook
    changed: bool
    """False: the book already said so (a repeated report); nothing to follow up."""
    missing: tuple[Allotment, ...] = ()
    """A short pick's units the picker did not find: their reservations are released and the
    stock is written off."""
    backordered: tuple[BackorderLine, ...] = ()
    """A short pick's units per line put back on backorder (the same units as `missing`)."""
    missing_amount: Money = Decimal(0)
    """The value of `missing`: what the shipment's amount went down by."""


# -- applying them -----------------------------------------------------------------------------

_HANDED_OVER = (ShipmentStatus.READY, ShipmentStatus.TRANSFER)
_LEFT = (ShipmentStatus.SHIPPED, ShipmentStatus.DELIVERED)


def ship(book: OrderBook, report: ShipmentShipped) -> ReportApplied:
    """A ready or transfer shipment left: it becomes shipped with the report's details.

    A shipment that already left with the same carrier and tracking number takes the report
    as a repeat (nothing changes, its first dates stand); other details are refused.
    """
    shipment = _shipment(book, report.shipment_id)
    if shipment.status in _LEFT:
        if (shipment.carrier, shipment.tracking_number) == (report.carrier, report.tracking_number):
            return ReportApplied(book=book, changed=False)
        raise FulfilmentRefused(
            f"shipment {shipment.shipment_id} already {shipment.status.value} with "
            f"{shipment.carrier} tracking {shipment.tracking_number}; the report says "
            f"{report.carrier} tracking {report.tracking_number}",
            shipment.shipment_id,
        )
    _require_handed_over(shipment, "shipped")
    shipped = shipment.model_copy(
        update={
            "status": ShipmentStatus.SHIPPED,
            "carrier": report.carrier,
            "tracking_number": report.tracking_number,
            "shipped_at": report.shipped_at,
            "estimated_delivery": report.estimated_delivery,
        }
    )
    return ReportApplied(book=_with(book, shipped), changed=True)


def short_pick(book: OrderBook, report: ShortPick) -> ReportApplied:
    """The picker found fewer units than a ready or transfer shipment holds.

    Per line, the missing units (the shipment's units less `found`) leave the shipment, latest
    allotment first, and wait on backorder again; its amount goes down by their value. A
    shipment left with no unit is cancelled and, as the book does for a cancelled future
    shipment, keeps the allotments and amount it had when it was emptied (what was given back
    is in `missing`). `found` is the shipment's total, so the same report again finds the
    shipment as it says and changes nothing: a line found 0 that the shipment no longer holds
    (an earlier short pick took it all) included, a ready or transfer shipment an earlier
    short pick emptied, when the report finds nothing of it, and a shipment that has shipped
    since, when the report finds what it shipped with (refused otherwise: a feed loaded again
    answers "unchanged", never "refused", for what it already said).
    """
    shipment = _shipment(book, report.shipment_id)
    emptied = shipment.status is ShipmentStatus.CANCELLED and shipment.kind in (
        ShipmentKind.READY,
        ShipmentKind.TRANSFER,
    )  # a cancel or a slipped receipt only ever cancels a future shipment
    left = shipment.status in (ShipmentStatus.SHIPPED, ShipmentStatus.DELIVERED)
    if not emptied and not left:
        _require_handed_over(shipment, "short picked")
    order_lines = {ln.line_id for ln in book.lines}
    missing_of: dict[str, int] = {}
    for picked in report.lines:
        if picked.line_id not in order_lines:
            raise FulfilmentRefused(
                f"short pick of shipment {shipment.shipment_id} names line {picked.line_id}, "
                f"which order {book.order_id} does not have",
                shipment.shipment_id,
            )
        units = shipment.units(picked.line_id)
        if emptied and picked.found:
            raise FulfilmentRefused(
                f"short pick of shipment {shipment.shipment_id} found {picked.found} of line "
                f"{picked.line_id}, but an earlier short pick found none of the shipment and "
                f"cancelled it (its units wait on backorder again)",
                shipment.shipment_id,
            )
        if picked.found > units:
            carried = dict.fromkeys(a.line_id for a in shipment.allotments)
            holds = ", ".join(f"{line} {shipment.units(line)}" for line in carried)
            raise FulfilmentRefused(
                f"short pick of shipment {shipment.shipment_id} found {picked.found} of line "
                f"{picked.line_id}, but the shipment holds only {units} of it ({holds})",
                shipment.shipment_id,
            )
        if left and picked.found != units:
            raise FulfilmentRefused(
                f"shipment {shipment.shipment_id} is {shipment.status.value} with {units} of "
                f"line {picked.line_id}: a short pick finding {picked.found} cannot change it",
                shipment.shipment_id,
            )
        if picked.found < units and not emptied:
            missing_of[picked.line_id] = units - picked.found
    if not missing_of:
        return ReportApplied(book=book, changed=False)

    kept, missing = _take_out(shipment.allotments, missing_of)
    prices = {ln.line_id: ln.unit_price for ln in book.lines}
    missing_amount = sum((prices[a.line_id] * a.quantity for a in missing), Decimal(0))
    if kept:
        less = shipment.model_copy(
            update={"allotments": kept, "amount": shipment.amount - missing_amount}
        )
    else:
        less = shipment.model_copy(update={"status": ShipmentStatus.CANCELLED})
    lines = tuple(
        ln.model_copy(
            update={
                "released": ln.released - missing_of[ln.line_id],
                "backordered": ln.backordered + missing_of[ln.line_id],
            }
        )
        if ln.line_id in missing_of
        else ln
        for ln in book.lines
    )
    backordered = tuple(
        BackorderLine(line_id=ln.line_id, sku=ln.sku, quantity=missing_of[ln.line_id])
        for ln in book.lines
        if ln.line_id in missing_of
    )
    return ReportApplied(
        book=_with(book.model_copy(update={"lines": lines}), less),
        changed=True,
        missing=missing,
        backordered=backordered,
        missing_amount=missing_amount,
    )


def deliver(book: OrderBook, report: ShipmentDelivered) -> ReportApplied:
    """A shipped shipment was delivered. Delivered again changes nothing (the first delivery
    time stands); a shipment not shipped yet is refused."""
    shipment = _shipment(book, report.shipment_id)
    if shipment.status is ShipmentStatus.DELIVERED:
        return ReportApplied(book=book, changed=False)
    if shipment.status is not ShipmentStatus.SHIPPED:
        raise FulfilmentRefused(
            f"shipment {shipment.shipment_id} is {shipment.status.value}, not shipped: it "
            f"cannot be delivered{_why_not(shipment)}",
            shipment.shipment_id,
        )
    assert shipment.shipped_at is not None  # BookedShipment: a shipped one has it
    if report.delivered_at < shipment.shipped_at:
        raise FulfilmentRefused(
            f"shipment {shipment.shipment_id} delivered at {report.delivered_at.isoformat()}, "
            f"before it shipped at {shipment.shipped_at.isoformat()}",
            shipment.shipment_id,
        )
    delivered = shipment.model_copy(
        update={"status": ShipmentStatus.DELIVERED, "delivered_at": report.delivered_at}
    )
    return ReportApplied(book=_with(book, delivered), changed=True)


def apply_report(book: OrderBook, report: FulfilmentReport) -> ReportApplied:
    """Any fulfilment report, by its type."""
    if isinstance(report, ShipmentShipped):
        return ship(book, report)
    if isinstance(report, ShortPick):
        return short_pick(book, report)
    return deliver(book, report)


# -- internals ---------------------------------------------------------------------------------


def _shipment(book: OrderBook, shipment_id: str) -> BookedShipment:
    for s in book.shipments:
        if s.shipment_id == shipment_id:
            return s
    raise FulfilmentRefused(
        f"order {book.order_id} has no shipment {shipment_id!r} (it has "
        f"{', '.join(s.shipment_id for s in book.shipments) or 'none'})",
        shipment_id,
    )


def _require_handed_over(shipment: BookedShipment, what: str) -> None:
    if shipment.status not in _HANDED_OVER:
        raise FulfilmentRefused(
            f"shipment {shipment.shipment_id} is {shipment.status.value}, not ready or "
            f"transfer: it cannot be {what}{_why_not(shipment)}",
            shipment.shipment_id,
        )


def _why_not(shipment: BookedShipment) -> str:
    if shipment.status is ShipmentStatus.FUTURE:
        day = shipment.expected_date.isoformat() if shipment.expected_date else "a later day"
        return f" (it waits for incoming stock expected on {day})"
    if shipment.status is ShipmentStatus.CANCELLED:
        return " (it was cancelled: its units went back to backorder or were cancelled)"
    if shipment.status in _HANDED_OVER:
        return " (fulfilment has not reported it shipped)"
    return ""


def _take_out(
    allotments: tuple[Allotment, ...], owed: dict[str, int]
) -> tuple[tuple[Allotment, ...], tuple[Allotment, ...]]:
    """`allotments` less `owed` units per line, taken from the latest allotment first (those
    emptied dropped), and the units taken out, both in the allotments' order."""
    owed = dict(owed)
    kept: list[Allotment] = []
    taken: list[Allotment] = []
    for a in reversed(allotments):
        take = min(a.quantity, owed.get(a.line_id, 0))
        if take:
            owed[a.line_id] -= take
            taken.append(a.model_copy(update={"quantity": take}))
        if a.quantity > take:
            kept.append(a.model_copy(update={"quantity": a.quantity - take}))
    return tuple(reversed(kept)), tuple(reversed(taken))


def _with(book: OrderBook, shipment: BookedShipment) -> OrderBook:
    """`book` with `shipment` in place of its namesake, every invariant checked again (a
    model_copy skips validation)."""
    shipments = tuple(
        shipment if s.shipment_id == shipment.shipment_id else s for s in book.shipments
    )
    return OrderBook.model_validate(book.model_copy(update={"shipments": shipments}).model_dump())
