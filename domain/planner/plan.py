"""What the planner decides: allotments grouped into shipments, and what each line has left."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from domain.contract import Count, Day, PositiveCount
from domain.order import Contract, Identifier
from domain.planner.demand import Backorder, BackorderLine


class StockSource(StrEnum):
    CURRENT = "current"
    FUTURE = "future"


class ShipmentKind(StrEnum):
    READY = "ready"
    """Current stock, shipped from `location` now."""
    FUTURE = "future"
    """Incoming stock at `location`, shipped once it arrives on `expected_date`."""
    TRANSFER = "transfer"
    """Current stock moved from `location` to `destination`, which ships the line."""


class ParentStatus(StrEnum):
    BACKORDERED = "backordered"
    """Something is still waiting for stock."""
    REASSIGNED = "reassigned"
    """Everything is assigned to child shipments (or dropped); the backorder is done."""


class Allotment(Contract):
    """Units of one stock row assigned to one order line: what the ledger reserves."""

    line_id: Identifier
    sku: Identifier
    quantity: PositiveCount
    location: Identifier
    source: StockSource
    expected_date: Day | None = None
    receipt_id: Identifier | None = None


class Shipment(Contract):
    """A child shipment to create; a future one waits for its receipts' expected date."""

    kind: ShipmentKind
    location: Identifier
    destination: Identifier | None = None
    expected_date: Day | None = None
    allotments: Annotated[tuple[Allotment, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _consistent(self) -> Shipment:
        if (self.destination is not None) != (self.kind is ShipmentKind.TRANSFER):
            raise ValueError("a transfer, and only a transfer, has a destination")
        future = self.kind is ShipmentKind.FUTURE
        if (self.expected_date is not None) != future:
            raise ValueError("a future shipment, and only one, has an expected date")
        source = StockSource.FUTURE if future else StockSource.CURRENT
        for a in self.allotments:
            if a.location != self.location or a.source is not source:
                raise ValueError(f"allotment of line {a.line_id} does not belong in this shipment")
            if future and a.expected_date != self.expected_date:
                raise ValueError(f"allotment of line {a.line_id} is expected on another date")
        return self


class LineOutcome(Contract):
    """Where one line's quantity went: released + backordered + cancelled = its open quantity."""

    line_id: Identifier
    sku: Identifier
    released: Count
    """Assigned now, in the shipments of this plan."""
    backordered: Count
    """Still waiting for stock."""
    cancelled: Count
    """Not backorderable and out of stock, or a missing insert that was dropped."""

    @property
    def quantity(self) -> int:
        return self.released + self.backordered + self.cancelled


class OrderRelease(Contract):
    """What one backordered order gets in a pass, and what its parent shipment becomes."""

    order_id: Identifier
    shipments: tuple[Shipment, ...]
    lines: Annotated[tuple[LineOutcome, ...], Field(min_length=1)]
    parent_status: ParentStatus

    @model_validator(mode="after")
    def _status_matches_lines(self) -> OrderRelease:
        done = not any(ln.backordered for ln in self.lines)
        if done != (self.parent_status is ParentStatus.REASSIGNED):
            raise ValueError("the parent is reassigned exactly when nothing stays backordered")
        return self

    @property
    def allotments(self) -> tuple[Allotment, ...]:
        return tuple(a for s in self.shipments for a in s.allotments)


class ReleasePlan(Contract):
    """One planning pass. Orders it does not mention keep their backorder unchanged."""

    releases: tuple[OrderRelease, ...]
    """The orders that get stock or drop inserts, in the order they were served."""

    def release_for(self, order_id: str) -> OrderRelease | None:
        return next((r for r in self.releases if r.order_id == order_id), None)


class AcceptancePlan(Contract):
    """An order at acceptance: what ships now, what is cancelled, and the backorder left."""

    order_id: Identifier
    shipments: tuple[Shipment, ...]
    lines: Annotated[tuple[LineOutcome, ...], Field(min_length=1)]
    backorder: Backorder | None
    """The demand to hand to later release passes; None when nothing is backordered."""

    @property
    def allotments(self) -> tuple[Allotment, ...]:
        return tuple(a for s in self.shipments for a in s.allotments)


def remaining_backorder(backorder: Backorder, release: OrderRelease) -> Backorder | None:
    """The backorder after a release: open quantities reduced, the new shipments counted."""
    if release.order_id != backorder.order_id:
        raise ValueError(f"release of order {release.order_id} applied to {backorder.order_id}")
    left = {ln.line_id: ln.backordered for ln in release.lines}
    lines = []
    for ln in backorder.lines:
        quantity = left.get(ln.line_id, ln.quantity)
        if quantity:
            lines.append(BackorderLine(line_id=ln.line_id, sku=ln.sku, quantity=quantity))
    if not lines:
        return None
    shipments = backorder.shipments + len(release.shipments)
    return backorder.model_copy(update={"lines": tuple(lines), "shipments": shipments})
