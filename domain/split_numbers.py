"""Split-order numbering: the number the backordered remainder of an order ships under, to the
customer and to fulfilment (the site's `split_numbering`).

What ships at acceptance keeps the order's own number (None on the shipment). Each later release
that creates shipments is one split, all its shipments under one number: with `sequence` the
next after the highest the order has used (`<order number>-001`, `-002`, ...; a cancelled
shipment's number stays used, so a number is never given twice), with `backorder`
`<order number>-backorder` every time. A future shipment that turns ready keeps its number (it is
numbered when the release creates it, never again).

Length: an order number may be as long as an `Identifier` (200 characters), so a split number
may be longer; `SplitNumber` allows the suffix on top (`-backorder`, or `-` and up to 9 digits)
rather than cutting the order's number, which would no longer be the one the customer knows.

Pure: the order workflow calls it with the book before the release and the release's shipments.
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.order_book import BookedShipment, OrderBook
from domain.policy import SplitNumbering

BACKORDER_SUFFIX = "-backorder"
MAX_SEQUENCE = 999_999_999
"""The most splits `sequence` numbers (`-` and 9 digits fit `SplitNumber`); an order never
comes near it: each split is a release of at least one unit."""


def sequence_number(order_number: str, split: int) -> str:
    """`<order number>-001` for the first split; three digits at least, more past 999."""
    if not 1 <= split <= MAX_SEQUENCE:
        raise ValueError(f"split {split} of order {order_number}: not between 1 and {MAX_SEQUENCE}")
    return f"{order_number}-{split:03d}"


def splits_used(order_number: str, shipments: Iterable[BookedShipment]) -> int:
    """The highest sequence number among the shipments' numbers (0: none yet)."""
    prefix = f"{order_number}-"
    used = 0
    for s in shipments:
        number = s.order_number
        if number is not None and number.startswith(prefix):
            tail = number.removeprefix(prefix)
            if tail.isascii() and tail.isdigit():
                used = max(used, int(tail))
    return used


def split_number(order_number: str, numbering: SplitNumbering, before: OrderBook) -> str | None:
    """The number the next release's shipments go by (None: the order's own)."""
    if numbering is SplitNumbering.SEQUENCE:
        return sequence_number(order_number, splits_used(order_number, before.shipments) + 1)
    if numbering is SplitNumbering.BACKORDER:
        return f"{order_number}{BACKORDER_SUFFIX}"
    return None


def number_release(
    order_number: str,
    numbering: SplitNumbering,
    before: OrderBook,
    new: Iterable[BookedShipment],
) -> tuple[BookedShipment, ...]:
    """The shipments a release created (`new`, not yet in `before`), each under the release's
    split number; unchanged with `none` or when the release created none."""
    shipments = tuple(new)
    if not shipments:
        return ()
    number = split_number(order_number, numbering, before)
    if number is None:
        return shipments
    return tuple(
        BookedShipment.model_validate({**s.model_dump(), "order_number": number}) for s in shipments
    )
