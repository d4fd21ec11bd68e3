"""The order's own book: per line what was ordered, released, is still backordered or was
cancelled, and the shipments created for it.

Pure and deterministic: the order workflow holds one (and carries it through continue-as-new),
activities never cache it. Every change returns a new book and is checked, so a stale
allotment or an impossible cancel is refused with a clear reason instead of corrupting it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, NonNegativeInt, model_validator

from domain.contract import PositiveCount
from domain.order import Contract, Identifier, Money, Order, ShippingPreference, repeated
from domain.planner import (
    AcceptancePlan,
    Allotment,
    Backorder,
    BackorderLine,
    OrderRelease,
    Shipment,
    ShipmentKind,
)


class ShipmentStatus(StrEnum):
    READY = "ready"
    """Current stock, handed to fulfilment; shipped once fulfilment confirms, or at once where
    the site's fulfilment does not report back."""
    TRANSFER = "transfer"
    """Current stock moving to the shipping location; handed to fulfilment like `ready`."""
    FUTURE = "future"
    """Waits for incoming stock expected on `expected_date`; still cancellable."""
    CANCELLED = "cancelled"
    """A future shipment that went back to backorder or was cancelled with the order, or a
    ready or transfer one of which the picker found nothing (a short pick)."""
    SHIPPED = "shipped"
    """Fulfilment confirmed it left: it carries the carrier and tracking number."""
    DELIVERED = "delivered"
    """Fulfilment confirmed the carrier delivered it."""


_STATUS_OF_KIND = {
    ShipmentKind.READY: ShipmentStatus.READY,
    ShipmentKind.TRANSFER: ShipmentStatus.TRANSFER,
    ShipmentKind.FUTURE: ShipmentStatus.FUTURE,
}


class BookStatus(StrEnum):
    """The parent (backordered) shipment's status."""

    BACKORDERED = "backordered"
    REASSIGNED = "reassigned"
    """Nothing waits: every unit is in a child shipment or cancelled."""


ShipmentId = Annotated[str, Field(min_length=1, max_length=220, pattern=r"^\S(.*\S)?$")]
"""An order id (at most 200 characters) and `-S<n>`."""
Carrier = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$")]
"""The carrier as fulfilment names it (`UPS`, `DHL Express`)."""
TrackingNumber = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$")]
"""The carrier's tracking number, as fulfilment reports it (inner blanks kept)."""

SplitNumber = Annotated[str, Field(min_length=1, max_length=210, pattern=r"^\S(.*\S)?$")]
"""An order number (at most 200 characters) and a split's suffix: `-backorder`, or `-` and a
sequence number (`-001`, at most 9 digits); see domain/split_numbers.py."""

_SHIPPED = (ShipmentStatus.SHIPPED, ShipmentStatus.DELIVERED)


class BookedShipment(Contract):
    shipment_id: ShipmentId
    """`<order id>-S<n>`, numbered in creation order: stable across retries and replays."""
    kind: ShipmentKind
    status: ShipmentStatus
    location: Identifier
    destination: Identifier | None = None
    expected_date: dt.date | None = None
    allotments: Annotated[tuple[Allotment, ...], Field(min_length=1)]
    amount: Money
    """Value of the goods in it (what is captured for it when payment is taken at shipment)."""
    created_at: AwareDatetime
    carrier: Carrier | None = None
    """Set once fulfilment confirms the shipment left (shipped, delivered), as are
    `tracking_number`, `shipped_at` and (if known) `estimated_delivery`."""
    tracking_number: TrackingNumber | None = None
    shipped_at: AwareDatetime | None = None
    estimated_delivery: dt.date | None = None
    delivered_at: AwareDatetime | None = None
    """Set once fulfilment confirms the carrier delivered it."""
    order_number: SplitNumber | None = None
    """The number the customer and fulfilment know this shipment's part of the order by (the
    site's `split_numbering`: `<order number>-001`, `<order number>-backorder`); None: the
    order's own number, as for every shipment recorded before."""

    @property
    def live(self) -> bool:
        return self.status is not ShipmentStatus.CANCELLED

    @model_validator(mode="after")
    def _fulfilment_details(self) -> BookedShipment:
        """Tracking exactly when fulfilment confirmed the shipment left; a delivery time exactly
        when it confirmed the delivery (every shipment recorded before has neither)."""
        left = self.status in _SHIPPED
        delivered = self.status is ShipmentStatus.DELIVERED
        fields = {
            "carrier": (self.carrier, left, left),
            "tracking_number": (self.tracking_number, left, left),
            "shipped_at": (self.shipped_at, left, left),
            "estimated_delivery": (self.estimated_delivery, False, left),
            "delivered_at": (self.delivered_at, delivered, delivered),
        }  # field: (value, required, allowed)
        if missing := [f for f, (v, required, _) in fields.items() if required and v is None]:
            raise ValueError(
                f"shipment {self.shipment_id} is {self.status.value} but has no "
                f"{', '.join(missing)}"
            )
        if extra := [f for f, (v, _, allowed) in fields.items() if not allowed and v is not None]:
            raise ValueError(
                f"shipment {self.shipment_id} is {self.status.value}: {', '.join(extra)} may "
                f"be set only once fulfilment reports it "
                f"{'delivered' if extra == ['delivered_at'] else 'shipped'}"
            )
        shipped_at, delivered_at = self.shipped_at, self.delivered_at
        if shipped_at is not None and delivered_at is not None and delivered_at < shipped_at:
            raise ValueError(
                f"shipment {self.shipment_id}: delivered_at {delivered_at.isoformat()} is "
                f"before shipped_at {shipped_at.isoformat()}"
            )
        return self

    def units(self, line_id: str) -> int:
        return sum(a.quantity for a in self.allotments if a.line_id == line_id)


class BookLine(Contract):
    line_id: Identifier
    sku: Identifier
    unit_price: Money
    ordered: Annotated[int, Field(gt=0)]
    released: NonNegativeInt = 0
    """In child shipments (ready, transfer or future)."""
    backordered: NonNegativeInt = 0
    cancelled: NonNegativeInt = 0

    @model_validator(mode="after")
    def _conserved(self) -> BookLine:
        if self.released + self.backordered + self.cancelled != self.ordered:
            raise ValueError(
                f"line {self.line_id}: released {self.released} + backordered "
                f"{self.backordered} + cancelled {self.cancelled} != ordered {self.ordered}"
            )
        return self


class CancelLine(Contract):
    """One line of a cancel request; no quantity means everything of it not yet shipped."""

    line_id: Identifier
    quantity: PositiveCount | None = None


class CancelledPart(Contract):
    """What a cancel takes from one line: waiting units, and units of future shipments."""

    line_id: Identifier
    sku: Identifier
    from_backorder: NonNegativeInt
    from_future: tuple[tuple[Identifier, int], ...] = ()
    """(shipment id, units) taken out of future shipments, whose reservations must be freed."""
    amount: Money

    @property
    def quantity(self) -> int:
        return self.from_backorder + sum(q for _, q in self.from_future)


class CancelPlan(Contract):
    parts: Annotated[tuple[CancelledPart, ...], Field(min_length=1)]

    @property
    def amount(self) -> Decimal:
        return sum((p.amount for p in self.parts), Decimal(0))

    @property
    def units(self) -> int:
        return sum(p.quantity for p in self.parts)


class BookError(ValueError):
    """A change the book refuses; the message is for the operator or customer service."""


class StaleRelease(BookError):
    """An allotment planned against quantities the order no longer has open."""


class CancelRejected(BookError):
    """A cancel of more units than are left to cancel, or naming a line twice."""


class UnknownLine(BookError):
    """A message naming a line the order does not have."""

    def __init__(self, message: str, line_id: str) -> None:
        super().__init__(message)
        self.line_id = line_id


class OrderBook(Contract):
    order_id: Identifier
    currency: str
    lines: Annotated[tuple[BookLine, ...], Field(min_length=1)]
    shipments: tuple[BookedShipment, ...] = ()

    # -- reading -------------------------------------------------------------------------------

    @property
    def status(self) -> BookStatus:
        return BookStatus.BACKORDERED if self.backordered_units else BookStatus.REASSIGNED

    @property
    def backordered_units(self) -> int:
        return sum(ln.backordered for ln in self.lines)

    @property
    def waiting_skus(self) -> list[str]:
        """The skus with units waiting for stock, sorted."""
        return sorted({ln.sku for ln in self.lines if ln.backordered})

    @property
    def backordered_value(self) -> Decimal:
        return sum((ln.unit_price * ln.backordered for ln in self.lines), Decimal(0))

    @property
    def unshipped_units(self) -> int:
        """Backordered units plus units of future shipments: what may still be cancelled."""
        return self.backordered_units + sum(
            a.quantity for s in self.future_shipments for a in s.allotments
        )

    @property
    def future_shipments(self) -> tuple[BookedShipment, ...]:
        return tuple(s for s in self.shipments if s.status is ShipmentStatus.FUTURE)

    @property
    def settled(self) -> bool:
        """Nothing waits for stock and nothing waits for a receipt: the order's life is over."""
        return self.unshipped_units == 0

    @property
    def fulfilled(self) -> bool:
        """Settled, and fulfilment confirmed every live shipment left (shipped or delivered):
        where the site's fulfilment reports back, the order's life may end only then."""
        return self.settled and all(s.status in _SHIPPED for s in self.shipments if s.live)

    def line(self, line_id: str) -> BookLine:
        for ln in self.lines:
            if ln.line_id == line_id:
                return ln
        raise UnknownLine(f"order {self.order_id} has no line {line_id!r}", line_id)

    def shipment(self, shipment_id: str) -> BookedShipment:
        for s in self.shipments:
            if s.shipment_id == shipment_id:
                return s
        raise BookError(f"order {self.order_id} has no shipment {shipment_id!r}")

    def open_backorder(self, order: Order, tier: str | None = None) -> Backorder | None:
        """The demand the allocator serves for this order (None when nothing waits)."""
        waiting = tuple(
            BackorderLine(line_id=ln.line_id, sku=ln.sku, quantity=ln.backordered)
            for ln in self.lines
            if ln.backordered
        )
        if not waiting:
            return None
        return Backorder(
            order_id=self.order_id,
            placed_at=order.placed_at,
            tier=tier or order.customer.tier,
            fulfillment=order.fulfillment,
            lines=waiting,
            shipments=sum(1 for s in self.shipments if s.live),
            release_in_full=order.shipping_preference is ShippingPreference.SHIP_COMPLETE,
        )

    # -- changing ------------------------------------------------------------------------------

    @classmethod
    def accept(cls, order: Order, plan: AcceptancePlan, now: dt.datetime) -> OrderBook:
        """The book right after acceptance: what ships now, waits, or is cancelled."""
        if plan.order_id != order.order_id:
            raise BookError(f"acceptance plan of {plan.order_id} applied to {order.order_id}")
        outcomes = {o.line_id: o for o in plan.lines}
        lines = tuple(
            BookLine(
                line_id=ln.line_id,
                sku=ln.sku,
                unit_price=ln.unit_price,
                ordered=ln.quantity,
                released=outcomes[ln.line_id].released,
                backordered=outcomes[ln.line_id].backordered,
                cancelled=outcomes[ln.line_id].cancelled,
            )
            for ln in order.lines
        )
        prices = {ln.line_id: ln.unit_price for ln in order.lines}
        return cls(
            order_id=order.order_id,
            currency=order.currency,
            lines=lines,
            shipments=_booked(order.order_id, plan.shipments, 0, prices, now),
        )

    def release(self, release: OrderRelease, now: dt.datetime) -> OrderBook:
        """Apply an allotment. It must have been planned against what is open now."""
        if release.order_id != self.order_id:
            raise StaleRelease(f"allotment for {release.order_id} sent to {self.order_id}")
        changed = {o.line_id: o for o in release.lines}
        lines = []
        for ln in self.lines:
            o = changed.pop(ln.line_id, None)
            if o is None:
                lines.append(ln)
                continue
            if o.released + o.backordered + o.cancelled != ln.backordered:
                raise StaleRelease(
                    f"allotment for line {ln.line_id} was planned for "
                    f"{o.released + o.backordered + o.cancelled} open units; "
                    f"{ln.backordered} are open now"
                )
            lines.append(
                ln.model_copy(
                    update={
                        "released": ln.released + o.released,
                        "backordered": o.backordered,
                        "cancelled": ln.cancelled + o.cancelled,
                    }
                )
            )
        if changed:
            raise StaleRelease(f"allotment names unknown lines: {', '.join(sorted(changed))}")
        new = _booked(self.order_id, release.shipments, len(self.shipments), self._prices, now)
        return self.model_copy(
            update={"lines": tuple(lines), "shipments": self.shipments + new}
        )._checked()

    def receipt_arrived(self, shipment_id: str) -> OrderBook:
        """A future shipment's stock came in: it ships now."""
        shipment = self._future(shipment_id)
        return self._replace(shipment, status=ShipmentStatus.READY, kind=ShipmentKind.READY)

    def back_to_backorder(self, shipment_id: str) -> OrderBook:
        """A future shipment whose receipt was cancelled or slipped: its units wait again."""
        shipment = self._future(shipment_id)
        lines = tuple(
            ln.model_copy(
                update={
                    "released": ln.released - shipment.units(ln.line_id),
                    "backordered": ln.backordered + shipment.units(ln.line_id),
                }
            )
            for ln in self.lines
        )
        book = self.model_copy(update={"lines": lines})
        return book._replace(shipment, status=ShipmentStatus.CANCELLED)

    def plan_cancel(self, request: Iterable[CancelLine] = ()) -> CancelPlan:
        """What a cancel would take; no lines means every unshipped unit of the order.

        Waiting units go first, then units of future shipments (latest first). Units in ready
        or transfer shipments are with fulfilment and cannot be cancelled here.
        """
        wanted = list(request)
        for c in wanted:
            self.line(c.line_id)  # unknown line: refused
        if twice := repeated(c.line_id for c in wanted):
            raise CancelRejected(f"line {twice[0]} is named twice in the cancel")
        targets = wanted or [CancelLine(line_id=ln.line_id) for ln in self.lines]
        latest_first = sorted(self.future_shipments, key=_latest_first)
        parts = []
        for c in targets:
            ln = self.line(c.line_id)
            in_future = [
                (s.shipment_id, units) for s in latest_first if (units := s.units(ln.line_id))
            ]
            cancellable = ln.backordered + sum(q for _, q in in_future)
            want = cancellable if c.quantity is None else c.quantity
            if want > cancellable:
                raise CancelRejected(
                    f"line {ln.line_id} ({ln.sku}): {want} to cancel but only {cancellable} "
                    f"not shipped yet ({ln.ordered - ln.cancelled - cancellable} shipped, "
                    f"{ln.cancelled} already cancelled)"
                )
            if want == 0:
                if wanted:
                    raise CancelRejected(
                        f"line {ln.line_id} ({ln.sku}) has nothing left to cancel: "
                        f"{ln.ordered - ln.cancelled} shipped, {ln.cancelled} cancelled"
                    )
                continue
            from_backorder = min(want, ln.backordered)
            rest = want - from_backorder
            from_future = []
            for shipment_id, units in in_future:
                if rest == 0:
                    break
                take = min(rest, units)
                from_future.append((shipment_id, take))
                rest -= take
            parts.append(
                CancelledPart(
                    line_id=ln.line_id,
                    sku=ln.sku,
                    from_backorder=from_backorder,
                    from_future=tuple(from_future),
                    amount=ln.unit_price * want,
                )
            )
        if not parts:
            raise CancelRejected(f"order {self.order_id} has nothing left to cancel")
        return CancelPlan(parts=tuple(parts))

    def cancel(self, plan: CancelPlan) -> OrderBook:
        """Apply a cancel planned on this book."""
        by_line = {p.line_id: p for p in plan.parts}
        lines = tuple(
            ln
            if ln.line_id not in by_line
            else ln.model_copy(
                update={
                    "backordered": ln.backordered - by_line[ln.line_id].from_backorder,
                    "released": ln.released - sum(q for _, q in by_line[ln.line_id].from_future),
                    "cancelled": ln.cancelled + by_line[ln.line_id].quantity,
                }
            )
            for ln in self.lines
        )
        shipments = tuple(_less(s, plan, self._prices)[0] for s in self.shipments)
        return self.model_copy(update={"lines": lines, "shipments": shipments})._checked()

    def freed_by(self, plan: CancelPlan) -> tuple[Allotment, ...]:
        """The reservations a cancel planned on this book gives back to the ledger: the units it
        takes out of future shipments."""
        return tuple(a for s in self.shipments for a in _less(s, plan, self._prices)[1])

    # -- internals -----------------------------------------------------------------------------

    @property
    def _prices(self) -> dict[str, Decimal]:
        return {ln.line_id: ln.unit_price for ln in self.lines}

    def _future(self, shipment_id: str) -> BookedShipment:
        shipment = self.shipment(shipment_id)
        if shipment.status is not ShipmentStatus.FUTURE:
            raise BookError(f"shipment {shipment_id} is {shipment.status.value}, not future")
        return shipment

    def _replace(self, shipment: BookedShipment, **changes: object) -> OrderBook:
        shipments = tuple(
            s.model_copy(update=changes) if s.shipment_id == shipment.shipment_id else s
            for s in self.shipments
        )
        return self.model_copy(update={"shipments": shipments})._checked()

    def _checked(self) -> OrderBook:
        """Re-validate: model_copy skips validation, and the book's invariants must hold."""
        return OrderBook.model_validate(self.model_dump())

    @model_validator(mode="after")
    def _shipments_match_lines(self) -> OrderBook:
        for ln in self.lines:
            in_shipments = sum(
                s.units(ln.line_id)
                for s in self.shipments
                if s.status is not ShipmentStatus.CANCELLED
            )
            if in_shipments != ln.released:
                raise ValueError(
                    f"line {ln.line_id}: {ln.released} released but {in_shipments} in shipments"
                )
        return self


def _booked(
    order_id: str,
    shipments: Iterable[Shipment],
    numbered_before: int,
    prices: dict[str, Decimal],
    now: dt.datetime,
) -> tuple[BookedShipment, ...]:
    """Planned shipments as booked ones, numbered after the order's existing shipments."""
    return tuple(
        BookedShipment(
            shipment_id=f"{order_id}-S{numbered_before + i}",
            kind=s.kind,
            status=_STATUS_OF_KIND[s.kind],
            location=s.location,
            destination=s.destination,
            expected_date=s.expected_date,
            allotments=s.allotments,
            amount=sum((prices[a.line_id] * a.quantity for a in s.allotments), Decimal(0)),
            created_at=now,
        )
        for i, s in enumerate(shipments, start=1)
    )


def _latest_first(s: BookedShipment) -> tuple[int, str]:
    return (-(s.expected_date or dt.date.min).toordinal(), s.shipment_id)


def _less(
    shipment: BookedShipment, plan: CancelPlan, prices: dict[str, Decimal]
) -> tuple[BookedShipment, tuple[Allotment, ...]]:
    """A future shipment with the plan's cancelled units taken out (cancelled when emptied),
    and the allotments taken out of it."""
    owed = {
        p.line_id: q for p in plan.parts for sid, q in p.from_future if sid == shipment.shipment_id
    }
    if not owed:
        return shipment, ()
    kept, freed = [], []
    for a in reversed(shipment.allotments):  # the latest receipts give way first
        take = min(a.quantity, owed.get(a.line_id, 0))
        owed[a.line_id] = owed.get(a.line_id, 0) - take
        if take:
            freed.append(a.model_copy(update={"quantity": take}))
        if a.quantity > take:
            kept.append(a.model_copy(update={"quantity": a.quantity - take}))
    freed.reverse()
    if not kept:
        return shipment.model_copy(update={"status": ShipmentStatus.CANCELLED}), tuple(freed)
    kept.reverse()
    amount = sum((prices[a.line_id] * a.quantity for a in kept), Decimal(0))
    less = shipment.model_copy(update={"allotments": tuple(kept), "amount": amount})
    return less, tuple(freed)
