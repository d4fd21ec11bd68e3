"""Ledger building blocks shared by the order activities and the allocator: row locks taken in
one fixed order (stock rows by (sku, location), then receipts by receipt_id, then reservations)
so that concurrent transactions queue instead of deadlocking, and the idempotency claim."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from temporalio.exceptions import ApplicationError

from activities import contracts
from domain.planner import Allotment, Catalog, Stock
from domain.planner.catalog import Product
from domain.planner.stock import Location, Receipt, StockLevel

StockKey = tuple[str, str]
"""(sku, location): one row of `stock`."""
HeldKey = tuple[str, str, str, str, str | None]
"""(line_id, sku, location, source, receipt_id): the reservations one allotment refers to."""


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
    skus, locations = columns(keys)
    if not skus:
        return {}
    cur = await conn.execute(
        """
        SELECT sku, location, on_hand - reserved
          FROM stock
         WHERE (sku, location) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
         ORDER BY sku, location
           FOR UPDATE
        """,
        (skus, locations),
    )
    return {(sku, location): int(free) for sku, location, free in await cur.fetchall()}


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
        SELECT sku, backorderable, future_inventory, is_insert
          FROM products
         WHERE sku = ANY(%s)
         ORDER BY sku
        """,
        (ordered,),
    )
    products = [
        Product(sku=s, backorderable=b, future_inventory=f, insert=i)
        for s, b, f, i in await cur.fetchall()
    ]
    return (
        Stock(locations=tuple(locations), on_hand=tuple(levels), receipts=tuple(receipts)),
        Catalog(products=tuple(products)),
    )
