"""The stock a planning pass may hand out: on hand now, and receipts still on their way."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from domain.order import Contract, Identifier, require_unique

Many = Field(max_length=10_000_000)


class Location(Contract):
    location_id: Identifier
    rank: NonNegativeInt = 0
    """Routing preference: ship-to-home stock is drawn from lower ranks first."""


class StockLevel(Contract):
    """Units of a sku at a location that are free to assign now (on hand less reserved)."""

    sku: Identifier
    location: Identifier
    quantity: NonNegativeInt


class Receipt(Contract):
    """Incoming units of a sku at a location; without an expected date they cannot be promised."""

    receipt_id: Identifier
    sku: Identifier
    location: Identifier
    quantity: PositiveInt
    expected_date: dt.date | None = None


class Stock(Contract):
    locations: Annotated[tuple[Location, ...], Field(max_length=100_000)]
    on_hand: Annotated[tuple[StockLevel, ...], Many] = ()
    receipts: Annotated[tuple[Receipt, ...], Many] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Stock:
        locations = (loc.location_id for loc in self.locations)
        require_unique("location ids", locations, shown=10)
        levels = ((s.sku, s.location) for s in self.on_hand)
        require_unique("stock levels per (sku, location)", levels, shown=10)
        require_unique("receipt ids", (r.receipt_id for r in self.receipts), shown=10)
        known = {loc.location_id for loc in self.locations}
        unknown = {s.location for s in self.on_hand} | {r.location for r in self.receipts}
        unknown -= known
        if unknown:
            raise ValueError(f"stock at unknown locations: {', '.join(sorted(unknown))}")
        return self
