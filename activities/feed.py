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
    reserved: int
    expected_date: dt.date | None
    status: str


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
                | FutureReceiptReceived,
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
        SELECT sku, location, quantity, reserved, expected_date, status
          FROM future_receipts WHERE receipt_id = %s
        """,
        (receipt_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    sku, location, quantity, reserved, expected_date, status = row
    return _Receipt(sku, location, int(quantity), int(reserved), expected_date, status)


async def _open_receipt(conn: AsyncConnection[Any], receipt_id: str) -> _Receipt:
    receipt = await _receipt(conn, receipt_id)
    if receipt is None:
        raise _Rejected(
            Rejection.UNKNOWN_RECEIPT,
            f"unknown future receipt {receipt_id}: plan it with a future_receipt event first",
        )
    if receipt.status != "open":
        raise _Rejected(
            Rejection.RECEIPT_CLOSED,
            f"future receipt {receipt_id} (sku {receipt.sku} at {receipt.location})"
            f" was already {receipt.status}",
        )
    return receipt


async def _holders(conn: AsyncConnection[Any], receipt_id: str) -> list[str]:
    """The orders holding reserved units of the receipt, by order_id."""
    cur = await conn.execute(
        """
        SELECT DISTINCT order_id FROM reservations
         WHERE receipt_id = %s AND state = 'reserved'
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
    if event.quantity is not None and event.quantity < receipt.reserved:
        raise _Rejected(
            Rejection.WOULD_TAKE_RESERVED,
            f"{receipt.reserved} units of future receipt {event.receipt_id} are promised to"
            f" orders; the new quantity {event.quantity} cannot be below that",
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
        (event.quantity, event.expected_date, event.receipt_id),
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


async def _receive(
    conn: AsyncConnection[Any], event: FutureReceiptReceived, change: _Change
) -> None:
    receipt = await _open_receipt(conn, event.receipt_id)
    received = event.quantity if event.quantity is not None else receipt.quantity
    if received < receipt.reserved:
        raise _Rejected(
            Rejection.WOULD_TAKE_RESERVED,
            f"{receipt.reserved} units of future receipt {event.receipt_id} are promised to"
            f" orders; received {received}: lower the promise first",
        )
    # What orders were promised from the receipt stays theirs, now as stock on hand.
    await _add_stock(conn, receipt.sku, receipt.location, received, receipt.reserved)
    await conn.execute(
        """
        UPDATE reservations SET source = 'current'
         WHERE receipt_id = %s AND state = 'reserved' AND source = 'future'
        """,
        (event.receipt_id,),
    )
    await conn.execute(
        """
        UPDATE future_receipts SET status = 'received', updated_at = now()
         WHERE receipt_id = %s
        """,
        (event.receipt_id,),
    )
    await _movement(
        conn,
        event.event_id,
        receipt.sku,
        receipt.location,
        received,
        f"future receipt {event.receipt_id} received",
    )
    await _tell(conn, change, event.receipt_id, ReceiptStatus.ARRIVED)
    change.skus.add(receipt.sku)
