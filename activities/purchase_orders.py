"""The feed's purchase-order events: future receipts planned, updated, cancelled, closed and
received (in whole or in part), and the orders told about them.

They run inside `activities.feed.apply_events`, which has locked the stock rows and receipts they
change before any event is applied.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from activities.feed_rows import (
    Change,
    Rejected,
    add_stock,
    movement,
    require_location,
    require_product,
)
from domain.inventory import (
    FutureReceiptCancelled,
    FutureReceiptClosed,
    FutureReceiptPlanned,
    FutureReceiptReceived,
    FutureReceiptUpdated,
    ReceiptStatus,
    Rejection,
)


@dataclass(frozen=True)
class _Receipt:
    sku: str
    location: str
    quantity: int
    """Units still to come."""
    reserved: int
    """Units of `quantity` promised to orders."""
    expected_date: dt.date | None
    status: str
    received: int
    """Units received so far."""


async def plan(conn: AsyncConnection[Any], event: FutureReceiptPlanned) -> None:
    await require_product(conn, event.sku)
    await require_location(conn, event.location)
    # ON CONFLICT: a concurrent batch planning the same id makes this one wait and then reject.
    cur = await conn.execute(
        """
        INSERT INTO future_receipts (receipt_id, sku, location, quantity, expected_date)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (receipt_id) DO NOTHING
        RETURNING receipt_id
        """,
        (event.receipt_id, event.sku, event.location, event.quantity, event.expected_date),
    )
    if await cur.fetchone() is None:
        found = await _receipt(conn, event.receipt_id)
        where = "" if found is None else f" (sku {found.sku} at {found.location}, {found.status})"
        raise Rejected(
            Rejection.RECEIPT_EXISTS,
            f"future receipt {event.receipt_id} already exists{where}:"
            " use future_receipt_update to change it",
        )


async def _receipt(conn: AsyncConnection[Any], receipt_id: str) -> _Receipt | None:
    cur = await conn.execute(
        """
        SELECT sku, location, quantity, reserved, expected_date, status, received
          FROM future_receipts WHERE receipt_id = %s
        """,
        (receipt_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    sku, location, quantity, reserved, expected_date, status, received = row
    return _Receipt(
        sku, location, int(quantity), int(reserved), expected_date, status, int(received)
    )


async def _open_receipt(conn: AsyncConnection[Any], receipt_id: str) -> _Receipt:
    receipt = await _receipt(conn, receipt_id)
    if receipt is None:
        raise Rejected(
            Rejection.UNKNOWN_RECEIPT,
            f"unknown future receipt {receipt_id}: plan it with a future_receipt event first",
        )
    if receipt.status != "open":
        state = "received in full" if receipt.status == "received" else receipt.status
        raise Rejected(
            Rejection.RECEIPT_CLOSED,
            f"future receipt {receipt_id} (sku {receipt.sku} at {receipt.location})"
            f" was already {state}",
        )
    return receipt


async def _holders(conn: AsyncConnection[Any], receipt_id: str) -> list[str]:
    """The orders holding promised units of the receipt's open rest, by order_id (units of it
    received already are stock reservations: those orders have been told)."""
    cur = await conn.execute(
        """
        SELECT DISTINCT order_id FROM reservations
         WHERE receipt_id = %s AND state = 'reserved' AND source = 'future'
         ORDER BY order_id
        """,
        (receipt_id,),
    )
    return [order_id for (order_id,) in await cur.fetchall()]


async def _tell(
    conn: AsyncConnection[Any], change: Change, receipt_id: str, status: ReceiptStatus
) -> None:
    for order_id in await _holders(conn, receipt_id):
        change.notices.append((order_id, receipt_id, status))


async def update(conn: AsyncConnection[Any], event: FutureReceiptUpdated, change: Change) -> None:
    receipt = await _open_receipt(conn, event.receipt_id)
    rest = None  # the new quantity still to come
    if event.quantity is not None:
        rest = event.quantity - receipt.received
        if rest <= 0:
            raise Rejected(
                Rejection.OVER_RECEIPT,
                f"{receipt.received} units of future receipt {event.receipt_id} were already"
                f" received; a quantity of {event.quantity} leaves nothing to come:"
                " close it with future_receipt_close",
            )
        if rest < receipt.reserved:
            after = (
                f" leaves {rest} to come after the {receipt.received} received"
                if receipt.received
                else " cannot be below that"
            )
            raise Rejected(
                Rejection.WOULD_TAKE_RESERVED,
                f"{receipt.reserved} units of future receipt {event.receipt_id} are promised to"
                f" orders; the new quantity {event.quantity}{after}",
            )
    slipped = (
        event.expected_date is not None
        and receipt.expected_date is not None
        and event.expected_date > receipt.expected_date
    )
    await conn.execute(
        """
        UPDATE future_receipts
           SET quantity = coalesce(%s, quantity),
               expected_date = coalesce(%s, expected_date),
               updated_at = now()
         WHERE receipt_id = %s
        """,
        (rest, event.expected_date, event.receipt_id),
    )
    if slipped:
        await _tell(conn, change, event.receipt_id, ReceiptStatus.SLIPPED)
    change.skus.add(receipt.sku)


async def cancel(conn: AsyncConnection[Any], event: FutureReceiptCancelled, change: Change) -> None:
    # The reservations stay: the order workflows release them when told.
    await _withdraw(conn, event.receipt_id, "cancelled", change)


async def close(conn: AsyncConnection[Any], event: FutureReceiptClosed, change: Change) -> None:
    """Nothing more will come: the rest (kept in `quantity` for the record) is promised to no
    one new, and the orders promised units of it are told, as for a cancelled receipt, and
    release their reservations themselves. Units received before stay theirs."""
    await _withdraw(conn, event.receipt_id, "closed", change)


async def _withdraw(
    conn: AsyncConnection[Any], receipt_id: str, status: str, change: Change
) -> None:
    """The open rest of the receipt will not come: mark it, tell the orders holding promises
    on it (they wait again and release their reservations themselves)."""
    receipt = await _open_receipt(conn, receipt_id)
    await conn.execute(
        """
        UPDATE future_receipts SET status = %s, updated_at = now()
         WHERE receipt_id = %s
        """,
        (status, receipt_id),
    )
    await _tell(conn, change, receipt_id, ReceiptStatus.CANCELLED)
    change.skus.add(receipt.sku)


@dataclass
class _Holding:
    """One order's promise from a future receipt: its future reservations, oldest first."""

    order_id: str
    rows: list[tuple[int, int]] = field(default_factory=list)
    """(reservation id, units)"""

    @property
    def units(self) -> int:
        return sum(units for _, units in self.rows)


async def _holdings(conn: AsyncConnection[Any], receipt_id: str) -> list[_Holding]:
    """The promises on the receipt's open rest, per order, first promised first."""
    cur = await conn.execute(
        """
        SELECT id, order_id, quantity FROM reservations
         WHERE receipt_id = %s AND state = 'reserved' AND source = 'future'
         ORDER BY id
           FOR UPDATE
        """,
        (receipt_id,),
    )
    by_order: dict[str, _Holding] = {}
    for row_id, order_id, units in await cur.fetchall():
        by_order.setdefault(order_id, _Holding(order_id)).rows.append((int(row_id), int(units)))
    return list(by_order.values())


async def receive(conn: AsyncConnection[Any], event: FutureReceiptReceived, change: Change) -> None:
    """Units of the receipt arrived (all that is still to come, or a part).

    An order's future shipment can only turn ready as a whole, so promises move to stock on
    hand whole, per order, first promised first: an order whose whole promise from this
    receipt fits in what is left of the delivery has its reservations turned into stock
    reservations and is told the receipt arrived; an order whose promise does not fit keeps
    it on the open rest and hears nothing. If the rest cannot hold the promises left on it,
    units of this delivery stay reserved for the first of those orders (as stock reserved on
    hand, still under the receipt's id, so the order's release finds them). The units left
    over are free stock: the pass that follows hands them on.
    """
    receipt = await _open_receipt(conn, event.receipt_id)
    units = receipt.quantity if event.quantity is None else event.quantity
    where = f"future receipt {event.receipt_id} (sku {receipt.sku} at {receipt.location})"
    if units > receipt.quantity:
        before = f", {receipt.received} received before" if receipt.received else ""
        raise Rejected(
            Rejection.OVER_RECEIPT,
            f"received {units} units of {where}, but only {receipt.quantity} are still to"
            f" come{before}: book the surplus as a receipt, or raise the purchase order's"
            " quantity with future_receipt_update first",
        )
    rest = receipt.quantity - units

    left = units
    arrived: list[_Holding] = []
    waiting: list[_Holding] = []
    for holding in await _holdings(conn, event.receipt_id):
        if holding.units <= left:
            arrived.append(holding)
            left -= holding.units
        else:
            waiting.append(holding)
    whole = {row_id: held for h in arrived for row_id, held in h.rows}  # rows now on hand

    # Never more promised on the receipt than is still to come.
    parts: list[tuple[int, int]] = []  # (reservation id, units of it now on hand)
    keep = receipt.reserved - sum(whole.values()) - rest
    for holding in waiting:
        for row_id, held in holding.rows:
            if keep <= 0:
                break
            if held <= keep:
                whole[row_id] = held
            else:
                parts.append((row_id, keep))
            keep -= min(held, keep)
    if keep > 0:  # the receipt counts promises no reservation holds: never guess
        raise Rejected(
            Rejection.WOULD_TAKE_RESERVED,
            f"{where} counts {receipt.reserved} units promised, more than its reservations"
            " hold: the ledger needs repair before this receipt",
        )
    arrived += [h for h in waiting if all(row_id in whole for row_id, _ in h.rows)]
    moved = sum(whole.values()) + sum(part for _, part in parts)

    await add_stock(conn, receipt.sku, receipt.location, units, moved)
    if whole:
        await conn.execute(
            "UPDATE reservations SET source = 'current' WHERE id = ANY(%s)", (sorted(whole),)
        )
    for row_id, part in parts:
        # The part on hand becomes a reservation of its own; the rest of the row still waits.
        await conn.execute(
            """
            INSERT INTO reservations (key, order_id, line_id, sku, location, quantity, source,
                                      receipt_id, created_at)
            SELECT key, order_id, line_id, sku, location, %s, 'current', receipt_id, created_at
              FROM reservations
             WHERE id = %s
            """,
            (part, row_id),
        )
        await conn.execute(
            "UPDATE reservations SET quantity = quantity - %s WHERE id = %s", (part, row_id)
        )
    await conn.execute(
        """
        UPDATE future_receipts
           SET quantity = quantity - %s,
               received = received + %s,
               reserved = reserved - %s,
               status = CASE WHEN quantity = %s THEN 'received' ELSE status END,
               updated_at = now()
         WHERE receipt_id = %s
        """,
        (units, units, moved, units, event.receipt_id),
    )
    await movement(
        conn,
        event.event_id,
        receipt.sku,
        receipt.location,
        units,
        f"future receipt {event.receipt_id} received"
        + (f" in part, {rest} still to come" if rest else ""),
    )
    for order_id in sorted(h.order_id for h in arrived):
        change.notices.append((order_id, event.receipt_id, ReceiptStatus.ARRIVED))
    change.skus.add(receipt.sku)
