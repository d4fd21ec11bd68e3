"""The policy switches combined for one line or one order, shared by acceptance and release."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from enum import Enum

from domain.order import Fulfillment, FulfillmentType, OrderLine
from domain.planner.catalog import Catalog
from domain.planner.demand import Backorder
from domain.policy import BackorderPolicy, InsertHandling, ReleaseMode


def backorderable(
    line: OrderLine, catalog: Catalog, policy: BackorderPolicy, today: dt.date | None = None
) -> bool:
    """The site switch wins; then a pre-order window that has closed (`today`); then the
    line's own flag; then the product's."""
    if not policy.backorders_enabled:
        return False
    if today is not None and catalog.product(line.sku).preorders_closed(today):
        return False
    if line.allow_backorder is not None:
        return line.allow_backorder
    return catalog.product(line.sku).backorderable


def release_mode_for(backorder: Backorder, policy: BackorderPolicy) -> ReleaseMode:
    """The site's release mode, unless this backorder may only be released in full."""
    room = split_room(backorder.shipments, policy)
    if backorder.release_in_full or (room is not None and room < 1):
        return ReleaseMode.FULL
    return policy.release_mode


def split_room(shipments_before: int, policy: BackorderPolicy) -> int | None:
    """How many shipments a partial release may add (None: no cap).

    One shipment under `max_shipments` stays free for the remainder; a complete release is never
    held back by the cap.
    """
    cap = policy.max_shipments
    return None if cap is None else cap - shipments_before - 1


def inserts_in(catalog: Catalog) -> frozenset[str]:
    return frozenset(p.sku for p in catalog.products if p.insert)


def pickup_location(fulfillment: Fulfillment) -> str | None:
    """BOPIS draws only on its pickup location; None lets ship-to-home draw on every location."""
    if fulfillment.type is FulfillmentType.PICKUP_IN_STORE:
        return fulfillment.pickup_location
    return None


class Split(Enum):
    """What happens to an order of which part can ship now and part cannot."""

    SPLIT = "split"
    """What can ship, ships; the rest stays backordered."""
    DROP_INSERTS = "drop_inserts"
    """Only inserts are missing and the policy drops them: all the rest ships."""
    HOLD = "hold"
    """The order is not split: nothing ships now."""


def split(
    missing_skus: Iterable[str],
    inserts: frozenset[str],
    shipments_before: int,
    new_shipments: Callable[[], int],
    policy: BackorderPolicy,
) -> Split:
    """Never split only for missing inserts, nor past `max_shipments`."""
    if all(sku in inserts for sku in missing_skus):
        return Split.DROP_INSERTS if policy.inserts is InsertHandling.DROP else Split.HOLD
    room = split_room(shipments_before, policy)
    if room is not None and new_shipments() > room:
        return Split.HOLD
    return Split.SPLIT
