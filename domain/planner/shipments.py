"""How an order's takes become child shipments.

Current stock for a line ships from the first location it was taken at; the rest of that line's
current stock is transferred there. Lines shipping from different locations ship separately, and
incoming stock ships per location and expected date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

from domain.planner.plan import Allotment, Shipment, ShipmentKind, StockSource
from domain.planner.pool import Take

ShipmentKey = tuple[int, int, int, str, int, str]
"""(kind, expected date ordinal, location rank, location, destination rank, destination): the
shipment a take belongs to, ordered ready first, then transfers, then future by date."""

_KINDS = (ShipmentKind.READY, ShipmentKind.TRANSFER, ShipmentKind.FUTURE)


def shipment_keys(takes: Sequence[Take]) -> Iterator[ShipmentKey]:
    """The shipment of each of one line's takes (current takes come before future ones)."""
    ship_from = None
    for cell, _ in takes:
        if cell.expected_date is not None:
            yield (2, cell.expected_date.toordinal(), cell.rank, cell.location, 0, "")
        elif ship_from is None:
            ship_from = cell
            yield (0, 0, cell.rank, cell.location, 0, "")
        else:
            yield (1, 0, cell.rank, cell.location, ship_from.rank, ship_from.location)


def count_shipments(takes_per_line: Sequence[Sequence[Take]]) -> int:
    return len({key for takes in takes_per_line for key in shipment_keys(takes)})


def shipments_for(
    lines: Sequence[tuple[str, str]], takes_per_line: Sequence[Sequence[Take]]
) -> tuple[Shipment, ...]:
    """Group the takes of an order's lines (`(line_id, sku)`, in line order) into shipments."""
    groups: dict[ShipmentKey, list[Allotment]] = {}
    for (line_id, sku), takes in zip(lines, takes_per_line, strict=True):
        for key, (cell, quantity) in zip(shipment_keys(takes), takes, strict=True):
            allotment = Allotment(
                line_id=line_id,
                sku=sku,
                quantity=quantity,
                location=cell.location,
                source=StockSource.CURRENT if cell.receipt_id is None else StockSource.FUTURE,
                expected_date=cell.expected_date,
                receipt_id=cell.receipt_id,
            )
            groups.setdefault(key, []).append(allotment)
    return tuple(_shipment(key, groups[key]) for key in sorted(groups))


def _shipment(key: ShipmentKey, allotments: list[Allotment]) -> Shipment:
    kind, day, _, location, _, destination = key
    return Shipment(
        kind=_KINDS[kind],
        location=location,
        destination=destination or None,
        expected_date=dt.date.fromordinal(day) if day else None,
        allotments=tuple(allotments),
    )
