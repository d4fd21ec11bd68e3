"""The inventory feed applied to the ledger, inside the allocation pass's transaction.

Each event runs in a savepoint of its own: a bad event is rolled back and reported with the
reason, the good ones around it stay applied. An event id already in `inventory_events` is a
redelivery and changes nothing; the same id with other content is rejected as an id conflict
naming what differs. Rows are locked in the ledger's one order (stock rows by (sku, location),
then receipts by receipt_id) before any event is applied, so a feed batch and concurrent order
activities queue instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from activities import purchase_orders
from activities.feed_rows import (
    Change,
    Rejected,
    add_stock,
    movement,
    require_location,
    require_product,
)
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
    id_conflict,
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


async def apply_events(
    conn: AsyncConnection[Any], events: Sequence[InventoryEvent], pass_id: str
) -> tuple[list[EventOutcome], FeedEffects]:
    """Apply `events` in order on `conn` (already in a transaction); one outcome per event."""
    await _lock_rows(conn, events)
    outcomes: list[EventOutcome] = []
    skus: set[str] = set()
    notices: dict[tuple[str, str], ReceiptStatus] = {}
    for event in events:
        change = Change()
        try:
            async with conn.transaction():
                recorded = await _record(conn, event, pass_id)
                if recorded:
                    await _apply(conn, event, change)
        except Rejected as rejected:
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
    """Record the event with its payload; False when its id was applied before with the same
    content (a redelivery). The same id with other content is rejected (`id_conflict`): an id
    is the sender's idempotency key, and a change sent under an old one would otherwise be
    dropped without a word. An event recorded before payloads were kept (NULL) cannot be
    compared: a redelivery of it stays a duplicate."""
    cur = await conn.execute(
        """
        INSERT INTO inventory_events (event_id, kind, payload, pass_id)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT (event_id) DO NOTHING
        RETURNING event_id
        """,
        (event.event_id, event.type, Jsonb(event.model_dump(mode="json")), pass_id),
    )
    if await cur.fetchone() is not None:
        return True
    cur = await conn.execute(
        "SELECT payload FROM inventory_events WHERE event_id = %s", (event.event_id,)
    )
    row = await cur.fetchone()
    conflict = id_conflict(row[0], event) if row is not None and row[0] is not None else None
    if conflict is not None:
        raise Rejected(Rejection.ID_CONFLICT, conflict)
    return False


async def _apply(conn: AsyncConnection[Any], event: InventoryEvent, change: Change) -> None:
    match event:
        case StockReceived():
            await require_product(conn, event.sku)
            await require_location(conn, event.location)
            await add_stock(conn, event.sku, event.location, event.quantity)
            await movement(
                conn, event.event_id, event.sku, event.location, event.quantity, event.reason
            )
            change.skus.add(event.sku)
        case StockAdjusted():
            await _adjust(conn, event)
            change.skus.add(event.sku)
        case FutureReceiptPlanned():
            await purchase_orders.plan(conn, event)
            change.skus.add(event.sku)
        case FutureReceiptUpdated():
            await purchase_orders.update(conn, event, change)
        case FutureReceiptCancelled():
            await purchase_orders.cancel(conn, event, change)
        case FutureReceiptReceived():
            await purchase_orders.receive(conn, event, change)
        case FutureReceiptClosed():
            await purchase_orders.close(conn, event, change)
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
                INSERT INTO products (sku, backorderable, future_inventory, is_insert,
                                      preorder_release, preorder_end)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (sku) DO UPDATE
                   SET backorderable = EXCLUDED.backorderable,
                       future_inventory = EXCLUDED.future_inventory,
                       is_insert = EXCLUDED.is_insert,
                       preorder_release = EXCLUDED.preorder_release,
                       preorder_end = EXCLUDED.preorder_end,
                       updated_at = now()
                """,
                (
                    event.sku,
                    event.backorderable,
                    event.future_inventory,
                    event.insert,
                    event.preorder_release,
                    event.preorder_end,
                ),
            )
            change.skus.add(event.sku)


async def _adjust(conn: AsyncConnection[Any], event: StockAdjusted) -> None:
    await require_product(conn, event.sku)
    await require_location(conn, event.location)
    if event.delta > 0:
        await add_stock(conn, event.sku, event.location, event.delta)
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
            raise Rejected(Rejection.WOULD_TAKE_RESERVED, f"{what}: there is no stock there")
        if left < 0:
            raise Rejected(
                Rejection.WOULD_TAKE_RESERVED,
                f"{what} would leave {left} on hand: only {on_hand} there",
            )
        if left < reserved:
            raise Rejected(
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
    await movement(conn, event.event_id, event.sku, event.location, event.delta, event.reason)
