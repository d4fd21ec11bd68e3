"""Ledger building blocks shared by the order activities and the allocator: row locks taken in
one fixed order (stock rows by (sku, location), then receipts by receipt_id, then reservations)
so that concurrent transactions queue instead of deadlocking, and the idempotency claim."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from temporalio.exceptions import ApplicationError

from activities import contracts
from domain.planner import Allotment, Catalog, Stock
from domain.planner.catalog import Product
from domain.planner.stock import Location, Receipt, StockLevel

StockKey = tuple[str, str]
"""(sku, location): one row of `stock`."""
HeldKey = tuple[str, str, str, str, str | None]
"""(line_id, sku, location, source, receipt_id): the reservations one allotment refers to."""
HeldRow = tuple[int, int, str]
"""(id, quantity, source) of one reserved row of `reservations`."""

_ENDED_BY = {"released": ("released_key", "released_at"), "shipped": ("shipped_key", "shipped_at")}
"""How a reservation may end, and the columns that say which call ended it and when."""


@dataclass(frozen=True)
class Short:
    """One stock row or receipt that cannot cover what a reservation wants."""

    sku: str
    location: str
    wanted: int
    free: int
    receipt_id: str | None = None

    def __str__(self) -> str:
        where = f"sku {self.sku} at {self.location}"
        if self.receipt_id is not None:
            where += f" (receipt {self.receipt_id})"
        return f"{where}: wanted {self.wanted}, free {self.free}"


def invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=contracts.INVALID_REQUEST, non_retryable=True)


async def lock_stock(conn: AsyncConnection[Any], keys: Iterable[StockKey]) -> dict[StockKey, int]:
    """Lock the existing `stock` rows of `keys` in (sku, location) order; their free units."""
    levels = await lock_levels(conn, keys)
    return {k: on_hand - reserved for k, (on_hand, reserved) in levels.items()}


async def lock_levels(
    conn: AsyncConnection[Any], keys: Iterable[StockKey]
) -> dict[StockKey, tuple[int, int]]:
    """Lock the existing `stock` rows of `keys` in (sku, location) order; (on_hand, reserved)."""
    skus, locations = columns(keys)
    if not skus:
        return {}
    cur = await conn.execute(
        """
        SELECT sku, location, on_hand, reserved
          FROM stock
         WHERE (sku, location) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
         ORDER BY sku, location
           FOR UPDATE
        """,
        (skus, locations),
    )
    return {(sku, loc): (int(on_hand), int(res)) for sku, loc, on_hand, res in await cur.fetchall()}


async def lock_receipts(
    conn: AsyncConnection[Any], receipt_ids: Iterable[str]
) -> dict[str, tuple[str, str, str, int]]:
    """Lock the receipts in receipt_id order; their (sku, location, status, free units)."""
    ids = sorted(set(receipt_ids))
    if not ids:
        return {}
    cur = await conn.execute(
        """
        SELECT receipt_id, sku, location, status, quantity - reserved
          FROM future_receipts
         WHERE receipt_id = ANY(%s)
         ORDER BY receipt_id
           FOR UPDATE
        """,
        (ids,),
    )
    rows = await cur.fetchall()
    return {rid: (sku, loc, status, int(free)) for rid, sku, loc, status, free in rows}


def columns(keys: Iterable[StockKey]) -> tuple[list[str], list[str]]:
    pairs = list(keys)
    return [sku for sku, _ in pairs], [location for _, location in pairs]


async def claim(conn: AsyncConnection[Any], key: str, kind: str, order_id: str) -> bool:
    """Record `key` in this transaction; False if it was already applied (a retry: do nothing).

    A concurrent call with the same key waits here until the first commits or rolls back.
    """
    cur = await conn.execute(
        """
        INSERT INTO ledger_operations (key, kind, order_id) VALUES (%s, %s, %s)
        ON CONFLICT (key) DO NOTHING
        RETURNING key
        """,
        (key, kind, order_id),
    )
    if await cur.fetchone() is not None:
        return True
    cur = await conn.execute("SELECT kind, order_id FROM ledger_operations WHERE key = %s", (key,))
    done = await cur.fetchone()
    if done is not None and tuple(done) != (kind, order_id):
        raise invalid(
            f"key {key} was already used by {done[0]} for order {done[1]};"
            f" it cannot also be {kind} for order {order_id}"
        )
    return False


async def add_reserved(
    conn: AsyncConnection[Any],
    stock: Mapping[StockKey, int],
    receipts: Mapping[str, int],
    sign: int = 1,
) -> None:
    """Count units as reserved (sign 1) or free again (sign -1) on their stock rows and
    receipts, whose locks the caller holds; the CHECKs refuse anything that does not fit."""
    keys = sorted(k for k, q in stock.items() if q)
    if keys:
        skus, locations = columns(keys)
        await conn.execute(
            """
            UPDATE stock SET reserved = stock.reserved + w.quantity, updated_at = now()
              FROM unnest(%s::text[], %s::text[], %s::int[]) AS w(sku, location, quantity)
             WHERE stock.sku = w.sku AND stock.location = w.location
            """,
            (skus, locations, [sign * stock[k] for k in keys]),
        )
    ids = sorted(r for r, q in receipts.items() if q)
    if ids:
        await conn.execute(
            """
            UPDATE future_receipts
               SET reserved = future_receipts.reserved + w.quantity, updated_at = now()
              FROM unnest(%s::text[], %s::int[]) AS w(receipt_id, quantity)
             WHERE future_receipts.receipt_id = w.receipt_id
            """,
            (ids, [sign * receipts[r] for r in ids]),
        )


async def insert_reservations(
    conn: AsyncConnection[Any], held: Iterable[tuple[str, str, Allotment]]
) -> None:
    """One reservation row per (key, order id, allotment)."""
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO reservations (key, order_id, line_id, sku, location, quantity, source,
                                      receipt_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (key, order_id, a.line_id, a.sku, a.location, a.quantity, a.source.value,
                 a.receipt_id)
                for key, order_id, a in held
            ],
        )  # fmt: skip


async def read_stock(conn: AsyncConnection[Any], skus: Iterable[str]) -> tuple[Stock, Catalog]:
    """Free stock (on hand less reserved) and open receipts of `skus` at every location, and
    their products: what the planner takes. Rows with nothing free are left out; skus the
    catalog does not list are absent and get the catalog's defaults."""
    ordered = sorted(set(skus))
    cur = await conn.execute("SELECT location_id, rank FROM locations ORDER BY rank, location_id")
    locations = [Location(location_id=i, rank=r) for i, r in await cur.fetchall()]
    cur = await conn.execute(
        """
        SELECT sku, location, on_hand - reserved
          FROM stock
         WHERE sku = ANY(%s) AND on_hand > reserved
         ORDER BY sku, location
        """,
        (ordered,),
    )
    levels = [StockLevel(sku=s, location=loc, quantity=q) for s, loc, q in await cur.fetchall()]
    cur = await conn.execute(
        """
        SELECT receipt_id, sku, location, quantity - reserved, expected_date
          FROM future_receipts
         WHERE sku = ANY(%s) AND status = 'open' AND quantity > reserved
         ORDER BY sku, expected_date NULLS LAST, receipt_id
        """,
        (ordered,),
    )
    receipts = [
        Receipt(receipt_id=r, sku=s, location=loc, quantity=q, expected_date=d)
        for r, s, loc, q, d in await cur.fetchall()
    ]
    cur = await conn.execute(
        """
        SELECT sku, backorderable, future_inventory, is_insert, preorder_release, preorder_end
          FROM products
         WHERE sku = ANY(%s)
         ORDER BY sku
        """,
        (ordered,),
    )
    products = [
        Product(
            sku=s,
            backorderable=b,
            future_inventory=f,
            insert=i,
            preorder_release=release,
            preorder_end=end,
        )
        for s, b, f, i, release, end in await cur.fetchall()
    ]
    return (
        Stock(locations=tuple(locations), on_hand=tuple(levels), receipts=tuple(receipts)),
        Catalog(products=tuple(products)),
    )


async def lock_held(
    conn: AsyncConnection[Any], order_id: str, held: HeldKey, *, on_hand: bool = False
) -> list[HeldRow]:
    """Lock the order's reserved rows that `held` refers to, newest first.

    A future allotment's rows include those whose receipt has been received since (now stock
    on hand). `on_hand`: every row of the line's units on hand at the stock row instead,
    whichever receipt they came from; they are alike once on the shelf, so shipping takes any.
    """
    line_id, sku, location, source, receipt_id = held
    cur = await conn.execute(
        """
        SELECT id, quantity, source
          FROM reservations
         WHERE order_id = %s AND line_id = %s AND sku = %s AND location = %s
           AND state = 'reserved'
           AND CASE WHEN %s THEN source = 'current'
                    ELSE (source = %s OR (%s = 'future' AND source = 'current'))
                         AND receipt_id IS NOT DISTINCT FROM %s
               END
         ORDER BY id DESC
           FOR UPDATE
        """,
        (order_id, line_id, sku, location, on_hand, source, source, receipt_id),
    )
    return [(int(row_id), int(q), str(s)) for row_id, q, s in await cur.fetchall()]


async def end_held(
    conn: AsyncConnection[Any], rows: Iterable[HeldRow], wanted: int, key: str, state: str
) -> tuple[int, int]:
    """End up to `wanted` units of `rows` (locked, in the order given) as `state` ('released'
    or 'shipped') by the call `key`, splitting the last row if it holds more: the rest stays
    reserved, the ended part becomes a row of its own. The units ended, and how many of them
    were reserved as stock on hand (source 'current')."""
    key_column, at_column = (sql.Identifier(c) for c in _ENDED_BY[state])
    end_row = sql.SQL(
        "UPDATE reservations SET state = %s, {} = %s, {} = now() WHERE id = %s"
    ).format(key_column, at_column)
    split_off = sql.SQL(
        """
        INSERT INTO reservations (key, order_id, line_id, sku, location, quantity, source,
                                  receipt_id, state, {}, created_at, {})
        SELECT key, order_id, line_id, sku, location, %s, source, receipt_id, %s, %s,
               created_at, now()
          FROM reservations
         WHERE id = %s
        """
    ).format(key_column, at_column)
    left = wanted
    current = 0
    for row_id, quantity, source in rows:
        if left == 0:
            break
        part = min(quantity, left)
        if source == "current":
            current += part
        if quantity == part:
            await conn.execute(end_row, (state, key, row_id))
        else:
            await conn.execute(
                "UPDATE reservations SET quantity = quantity - %s WHERE id = %s", (part, row_id)
            )
            await conn.execute(split_off, (part, state, key, row_id))
        left -= part
    return wanted - left, current
