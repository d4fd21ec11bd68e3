"""Open backorders, the demand side of a planning pass, and the order in which they are served."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AwareDatetime, Field, NonNegativeInt, model_validator

from domain.order import Contract, Fulfillment, Identifier, require_unique
from domain.policy import BackorderPolicy


class BackorderLine(Contract):
    line_id: Identifier
    sku: Identifier
    quantity: Annotated[int, Field(gt=0, le=1_000_000)]
    """The quantity still open on this line, not the quantity first ordered."""


class Backorder(Contract):
    """One order's open backorder (its parent shipment): what is still owed and how it may ship."""

    order_id: Identifier
    placed_at: AwareDatetime
    tier: Annotated[str, Field(min_length=1, max_length=50)] = "standard"
    fulfillment: Fulfillment
    lines: Annotated[tuple[BackorderLine, ...], Field(min_length=1, max_length=1000)]
    shipments: NonNegativeInt = 0
    """Child shipments already created for the order; counts towards `max_shipments`."""
    release_in_full: bool = False
    """Release only all of it at once (e.g. the customer asked to receive everything together)."""

    @model_validator(mode="after")
    def _line_ids_unique(self) -> Backorder:
        require_unique("line ids", (ln.line_id for ln in self.lines))
        return self


QueuePosition = tuple[int, dt.datetime, str]


def queue_position(backorder: Backorder, policy: BackorderPolicy) -> QueuePosition:
    """Higher tiers first, then first placed first served; the order id settles exact ties."""
    return (policy.tier_rank(backorder.tier), backorder.placed_at, backorder.order_id)
