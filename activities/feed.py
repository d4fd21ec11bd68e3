"""The inventory feed applied to the ledger, inside the allocation pass's transaction.

Each event runs in a savepoint of its own: a bad event is rolled back and reported with the
reason, the good ones around it stay applied. An event id already in `inventory_events` is a
redelivery and changes nothing. Rows are locked in the ledger's one order (stock rows by
(sku, location), then receipts by receipt_id) before any event is applied, so a feed batch and
concurrent order activities queue instead of deadlocking.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from activities.ledger import StockKey, columns, lock_receipts, lock_stock
from domain.inventory import (
    EventOutcome,
    EventStatus,
    FutureReceiptCancelled,
    FutureReceiptClosed,
    FutureReceiptPlanned,
    FutureReceiptReceived,
    FutureReceiptUpdated,
    InventoryEvent,
    LocationDefined,
    ProductDefined,
    ReceiptNotice,
    ReceiptStatus,
    Rejection,
    StockAdjusted,
    StockReceived,
)

_STOCK_LOCK_CLASS = 0x5354  # "ST": the advisory lock space of stock keys (see _lock_stock_keys)


@dataclass
class FeedEffects:
    """What the applied events mean for the pass that follows them."""

    skus: set[str] = field(default_factory=set)
    """Skus whose free stock, future receipts or product switches changed: the pass looks at
    the orders waiting for them."""
    notices: list[ReceiptNotice] = field(default_factory=list)
    """Orders to tell about future receipts their units were promised from."""


class _Rejected(Exception):
    """Raised inside an event's savepoint so that everything the event did is rolled back."""

    def __init__(self, rejection: Rejection, reason: str) -> None:
        super().__init__(reason)
        self.rejection = rejection
        self.reason = reason


@dataclass
class _Change:
    """What one event changed, kept apart until its savepoint is released."""

    skus: set[str] = field(default_factory=set)
    notices: list[tuple[str, str, ReceiptStatus]] = field(default_factory=list)
    """(order_id, receipt_id, status)"""


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


async def apply_events(
    conn: AsyncConnection[Any], events: Sequence[InventoryEvent], pass_id: str
) -> tuple[list[EventOutcome], FeedEffects]:
    """Apply `events` in order on `conn` (already in a transaction); one outcome per event."""
    await _lock_rows(conn, events)
    outcomes: list[EventOutcome] = []
    skus: set[str] = set()
    notices: dict[tuple[str, str], ReceiptStatus] = {}
    for event in events:
        change = _Change()
        try:
            async with conn.transaction():
                recorded = await _record(conn, event, pass_id)
                if recorded:
                    await _apply(conn, event, change)
        except _Rejected as rejected:
            outcomes.append(
                EventOutcome(
                    event_id=event.event_id,
                    status=EventStatus.REJECTED,
                    rejection=rejected.rejection,
                    reason=rejected.reason,
                )
            )
            continue
        if not recorded:
            outcomes.append(EventOutcome(event_id=event.event_id, status=EventStatus.DUPLICATE))
            continue
        outcomes.append(EventOutcome(event_id=event.event_id, status=EventStatus.APPLIED))
        skus |= change.skus
        for order_id, receipt_id, status in change.notices:
            # One notice per (order, receipt): a later event's news replaces an earlier one's
            # (a receipt that slipped and then arrived has arrived).
            notices[order_id, receipt_id] = status
    return outcomes, FeedEffects(
        skus=skus,
        notices=[
            ReceiptNotice(order_id=order_id, receipt_id=receipt_id, status=status)
            for (order_id, receipt_id), status in notices.items()
        ],
    )


# --- locking -------------------------------------------------------------------------------


async def _lock_rows(conn: AsyncConnection[Any], events: Sequence[InventoryEvent]) -> None:
    """Lock everything the batch may change, in the ledger's order, before changing any of it."""
    receipt_ids = sorted(
        {
            e.receipt_id
            for e in events
            if isinstance(
                e,
                FutureReceiptPlanned
                | FutureReceiptUpdated
                | FutureReceiptCancelled
                | FutureReceiptReceived
                | FutureReceiptClosed,
            )
        }
    )
    where: dict[str, StockKey] = {}
    if receipt_ids:
        cur = await conn.execute(
            "SELECT receipt_id, sku, location FROM future_receipts WHERE receipt_id = ANY(%s)",
            (receipt_ids,),
        )
        where = {rid: (sku, location) for rid, sku, location in await cur.fetchall()}
    for e in events:  # a receipt planned earlier in the batch may be received later in it
        if isinstance(e, FutureReceiptPlanned):
            where.setdefault(e.receipt_id, (e.sku, e.location))

    keys: set[StockKey] = set()
    for e in events:
        if isinstance(e, StockReceived | StockAdjusted):
            keys.add((e.sku, e.location))
        elif (
            # (a close changes its receipt only: it needs no stock row, and the allocator's
            # pass does not lock its sku's rows up front)
            isinstance(e, FutureReceiptUpdated | FutureReceiptCancelled | FutureReceiptReceived)
            and e.receipt_id in where
        ):
            keys.add(where[e.receipt_id])
    ordered = sorted(keys)
    await _lock_stock_keys(conn, ordered)
    await lock_stock(conn, ordered)
    await lock_receipts(conn, receipt_ids)


async def _lock_stock_keys(conn: AsyncConnection[Any], keys: Sequence[StockKey]) -> None:
    """Serialise feed batches on the stock keys they touch, rows that exist or not.

    `lock_stock` can only lock rows that exist; two batches each creating the rows of the same
    new (sku, location) keys in opposite orders would deadlock on the primary key. Every batch
    first takes one transaction-level advisory lock per key, in the order of the lock ids, so a
    row can only be created by the batch holding its key; the order activities never create
    stock rows and take no advisory locks, so the ledger's order becomes: advisory keys, stock
    rows, receipts.
    """
    skus, locations = columns(keys)
    if not skus:
        return
    # The subquery's ORDER BY is applied before the outer aggregate calls the lock function.
    await conn.execute(
        """
        SELECT count(pg_advisory_xact_lock(%s, k.id))
          FROM (SELECT DISTINCT hashtext(sku || chr(31) || location) AS id
                  FROM unnest(%s::text[], %s::text[]) AS w(sku, location)
                 ORDER BY 1) AS k
        """,
        (_STOCK_LOCK_CLASS, skus, locations),
    )


# --- applying ------------------------------------------------------------------------------


async def _record(conn: AsyncConnection[Any], event: InventoryEvent, pass_id: str) -> bool:
    """Record the event id; False when it was applied before (a redelivery)."""
    cur = await conn.execute(
        """
        INSERT INTO inventory_events (event_id, kind, payload, pass_id)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT (event_id) DO NOTHING
        RETURNING event_id
        """,
        (event.event_id, event.type, Jsonb(event.model_dump(mode="json")), pass_id),
    )
    return await cur.fetchone() is not None


async def _apply(conn: AsyncConnection[Any], event: InventoryEvent, change: _Change) -> None:
    match event:
        case StockReceived():
            await _require_product(conn, event.sku)
            await _require_location(conn, event.location)
            await _add_stock(conn, event.sku, event.location, event.quantity)
            await _movement(
                conn, event.event_id, event.sku, event.location, event.quantity, event.reason
            )
            change.skus.add(event.sku)
        case StockAdjusted():
            await _adjust(conn, event)
            change.skus.add(event.sku)
        case FutureReceiptPlanned():
            await _plan(conn, event)
            change.skus.add(event.sku)
        case FutureReceiptUpdated():
            await _update(conn, event, change)
        case FutureReceiptCancelled():
            await _cancel(conn, event, change)
        case FutureReceiptReceived():
            await _receive(conn, event, change)
        case FutureReceiptClosed():
            await _close(conn, event, change)
        case LocationDefined():
            await conn.execute(
                """
                INSERT INTO locations (location_id, rank, pickup) VALUES (%s, %s, %s)
                ON CONFLICT (location_id) DO UPDATE
                   SET rank = EXCLUDED.rank, pickup = EXCLUDED.pickup
                """,
                (event.location_id, event.rank, event.pickup),
            )
        case ProductDefined():
            await conn.execute(
                """
                INSERT INTO products (sku, backorderable, future_inventory, is_insert)
                VALUES (%s, %s, %s, %s)
                ON CONFLICT (sku) DO UPDATE
                   SET backorderable = EXCLUDED.backorderable,
                       future_inventory = EXCLUDED.future_inventory,
                       is_insert = EXCLUDED.is_insert,
                       updated_at = now()
                """,
                (event.sku, event.backorderable, event.future_inventory, event.insert),
            )
            change.skus.add(event.sku)


async def _require_product(conn: AsyncConnection[Any], sku: str) -> None:
    cur = await conn.execute("SELECT 1 FROM products WHERE sku = %s", (sku,))
    if await cur.fetchone() is None:
        raise _Rejected(Rejection.UNKNOWN_SKU, f"unknown sku {sku}: define the product first")


async def _require_location(conn: AsyncConnection[Any], location: str) -> None:
    cur = await conn.execute("SELECT 1 FROM locations WHERE location_id = %s", (location,))
    if await cur.fetchone() is None:
        raise _Rejected(
            Rejection.UNKNOWN_LOCATION, f"unknown location {location}: define the location first"
        )


async def _add_stock(
    conn: AsyncConnection[Any], sku: str, location: str, on_hand: int, reserved: int = 0
) -> None:
    """Add units on hand (and the part of them orders hold) to a stock row, creating it."""
    await conn.execute(
        """
        INSERT INTO stock (sku, location, on_hand, reserved) VALUES (%s, %s, %s, %s)
        ON CONFLICT (sku, location) DO UPDATE
           SET on_hand = stock.on_hand + EXCLUDED.on_hand,
               reserved = stock.reserved + EXCLUDED.reserved,
               updated_at = now()
        """,
        (sku, location, on_hand, reserved),
    )


async def _movement(
    conn: AsyncConnection[Any], event_id: str, sku: str, location: str, delta: int, reason: str
) -> None:
    await conn.execute(
        """
        INSERT INTO stock_movements (event_id, sku, location, delta, reason)
        VALUES (%s, %s, %s, %s, %s)
        """,
        (event_id, sku, location, delta, reason),
    )


async def _adjust(conn: AsyncConnection[Any], event: StockAdjusted) -> None:
    await _require_product(conn, event.sku)
    await _require_location(conn, event.location)
    if event.delta > 0:
        await _add_stock(conn, event.sku, event.location, event.delta)
    else:
        cur = await conn.execute(
            "SELECT on_hand, reserved FROM stock WHERE sku = %s AND location = %s",
            (event.sku, event.location),
        )
        row = await cur.fetchone()
        on_hand, reserved = (int(row[0]), int(row[1])) if row is not None else (0, 0)
        left = on_hand + event.delta
        what = f"adjustment of {event.delta} {event.sku} at {event.location}"
        if row is None:
            raise _Rejected(Rejection.WOULD_TAKE_RESERVED, f"{what}: there is no stock there")
        if left < 0:
            raise _Rejected(
                Rejection.WOULD_TAKE_RESERVED,
                f"{what} would leave {left} on hand: only {on_hand} there",
            )
        if left < reserved:
            raise _Rejected(
                Rejection.WOULD_TAKE_RESERVED,
                f"{what} would leave {left} on hand with {reserved} reserved",
            )
        await conn.execute(
            """
            UPDATE stock SET on_hand = on_hand + %s, updated_at = now()
             WHERE sku = %s AND location = %s
            """,
            (event.delta, event.sku, event.location),
        )
    await _movement(conn, event.event_id, event.sku, event.location, event.delta, event.reason)


async def _plan(conn: AsyncConnection[Any], event: FutureReceiptPlanned) -> None:
    await _require_product(conn, event.sku)
    await _require_location(conn, event.location)
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
        raise _Rejected(
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
        raise _Rejected(
            Rejection.UNKNOWN_RECEIPT,
            f"unknown future receipt {receipt_id}: plan it with a future_receipt event first",
        )
    if receipt.status != "open":
        state = "received in full" if receipt.status == "received" else receipt.status
        raise _Rejected(
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
    conn: AsyncConnection[Any], change: _Change, receipt_id: str, status: ReceiptStatus
) -> None:
    for order_id in await _holders(conn, receipt_id):
        change.notices.append((order_id, receipt_id, status))


async def _update(conn: AsyncConnection[Any], event: FutureReceiptUpdated, change: _Change) -> None:
    receipt = await _open_receipt(conn, event.receipt_id)
    rest = None  # the new quantity still to come
    if event.quantity is not None:
        rest = event.quantity - receipt.received
        if rest <= 0:
            raise _Rejected(
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
            raise _Rejected(
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


async def _cancel(
    conn: AsyncConnection[Any], event: FutureReceiptCancelled, change: _Change
) -> None:
    receipt = await _open_receipt(conn, event.receipt_id)
    # The reservations stay: the order workflows release them when told.
    await conn.execute(
        """
        UPDATE future_receipts SET status = 'cancelled', updated_at = now()
         WHERE receipt_id = %s
        """,
        (event.receipt_id,),
    )
    await _tell(conn, change, event.receipt_id, ReceiptStatus.CANCELLED)
    change.skus.add(receipt.sku)


async def _close(conn: AsyncConnection[Any], event: FutureReceiptClosed, change: _Change) -> None:
    """Nothing more will come: the rest (kept in `quantity` for the record) is promised to no
    one new, and the orders promised units of it are told, as for a cancelled receipt, and
    release their reservations themselves. Units received before stay theirs."""
    receipt = await _open_receipt(conn, event.receipt_id)
    await conn.execute(
        """
        UPDATE future_receipts SET status = 'closed', updated_at = now()
         WHERE receipt_id = %s
        """,
        (event.receipt_id,),
    )
    await _tell(conn, change, event.receipt_id, ReceiptStatus.CANCELLED)
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


async def _receive(
    conn: AsyncConnection[Any], event: FutureReceiptReceived, change: _Change
) -> None:
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
        raise _Rejected(
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
        raise _Rejected(
            Rejection.WOULD_TAKE_RESERVED,
            f"{where} counts {receipt.reserved} units promised, more than its reservations"
            " hold: the ledger needs repair before this receipt",
        )
    arrived += [h for h in waiting if all(row_id in whole for row_id, _ in h.rows)]
    moved = sum(whole.values()) + sum(part for _, part in parts)

    await _add_stock(conn, receipt.sku, receipt.location, units, moved)
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
    await _movement(
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
