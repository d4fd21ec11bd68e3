"""What an operator checks before calling a supplier, read from the inventory ledger: stock per
(sku, location), the open purchase orders still to come, and the backordered demand waiting for
each sku. `backorder inventory stock` prints what `read_stock_view` returns.

Demand is per sku and site (the `demand` index has no location: the allocator chooses one when it
releases), so it is never split across locations. `activities.ledger.read_stock` is the
planner's view of the same tables and leaves out rows with nothing free, the ones an operator
most needs to see; this module reads them all, in one snapshot so the figures agree.
"""

from __future__ import annotations

from datetime import date
from typing import Any, TypeVar

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict

from config.settings import SiteName
from domain.contract import Identifier
from runtime.read_rows import UtcInstant

M = TypeVar("M", bound=BaseModel)


class StockFilter(BaseModel):
    """Which skus, locations and site. A filter left empty filters nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    skus: tuple[Identifier, ...] = ()
    """Any of these skus."""
    locations: tuple[Identifier, ...] = ()
    """Stock and purchase orders at any of these; demand of the skus found there."""
    site: SiteName | None = None
    """Demand of this site only (stock and purchase orders are shared by every site)."""


class StockRow(BaseModel):
    """One (sku, location) row of `stock`."""

    model_config = ConfigDict(frozen=True)

    sku: str
    location: str
    on_hand: int
    reserved: int
    """Units of `on_hand` promised to orders."""
    free: int
    """on_hand - reserved: what the next pass may hand out."""


class IncomingRow(BaseModel):
    """One open purchase order (future receipt): not cancelled, closed or received in full."""

    model_config = ConfigDict(frozen=True)

    receipt_id: str
    sku: str
    location: str
    to_come: int
    """Units still to come (what was received already is on hand)."""
    received: int
    """Units received so far (a purchase order may arrive in parts)."""
    promised: int
    """Units of `to_come` already promised to orders."""
    promised_orders: int
    """Orders holding those promises."""
    expected_date: date | None
    """None: undated, so no order can be promised it for a date."""
    status: str


class DemandRow(BaseModel):
    """The open backordered lines of one sku at one site."""

    model_config = ConfigDict(frozen=True)

    sku: str
    site: str
    units: int
    lines: int
    orders: int
    oldest_placed_at: UtcInstant
    """When the longest-waiting of those orders was placed."""


class StockView(BaseModel):
    """Everything the filter matches; `--json` prints it as it is."""

    model_config = ConfigDict(frozen=True)

    stock: list[StockRow]
    incoming: list[IncomingRow]
    demand: list[DemandRow]

    def skus(self) -> list[str]:
        """Every sku in the view, whichever table it comes from."""
        return sorted(
            {row.sku for rows in (self.stock, self.incoming, self.demand) for row in rows}
        )

    def is_empty(self) -> bool:
        return not (self.stock or self.incoming or self.demand)


class UnknownNames(BaseModel):
    """Names the filter gave that the ledger has never heard of (a typo, most likely)."""

    model_config = ConfigDict(frozen=True)

    skus: list[str]
    """No product, stock row, purchase order or demand has them."""
    locations: list[str]
    """Not defined as a location."""


_AT_LOCATIONS = sql.SQL(
    """(SELECT sku FROM stock WHERE location = ANY(%(locations)s)
        UNION SELECT sku FROM future_receipts
               WHERE status = 'open' AND location = ANY(%(locations)s))"""
)
"""The skus stocked or expected at the filter's locations: whose demand a location filter shows."""

_STOCK = sql.SQL("""
SELECT s.sku, s.location, s.on_hand, s.reserved, s.on_hand - s.reserved AS free
  FROM stock s
  JOIN locations l ON l.location_id = s.location
 WHERE {where}
 ORDER BY s.sku, l.rank, s.location
""")

# Only 'open' receipts have units to come: 'received' ones have none left, and what 'closed' and
# 'cancelled' ones keep in `quantity` will never come (0007_partial_receipts.sql).
_INCOMING = sql.SQL("""
SELECT f.receipt_id, f.sku, f.location, f.quantity AS to_come, f.received,
       f.reserved AS promised, held.orders AS promised_orders, f.expected_date, f.status
  FROM future_receipts f
  CROSS JOIN LATERAL (
      SELECT count(DISTINCT r.order_id) AS orders
        FROM reservations r
       WHERE r.receipt_id = f.receipt_id AND r.source = 'future' AND r.state = 'reserved'
  ) held
 WHERE f.status = 'open' AND {where}
 ORDER BY f.sku, f.expected_date NULLS LAST, f.receipt_id
""")

_DEMAND = sql.SQL("""
SELECT d.sku, d.site, sum(d.quantity_open) AS units, count(*) AS lines,
       count(DISTINCT d.order_id) AS orders, min(d.placed_at) AS oldest_placed_at
  FROM demand d
 WHERE {where}
 GROUP BY d.sku, d.site
 ORDER BY d.sku, d.site
""")

_UNKNOWN = sql.SQL("""
SELECT 'sku' AS kind, n AS name
  FROM unnest(%(skus)s::text[]) AS n
 WHERE NOT EXISTS (SELECT 1 FROM products WHERE sku = n)
   AND NOT EXISTS (SELECT 1 FROM stock WHERE sku = n)
   AND NOT EXISTS (SELECT 1 FROM future_receipts WHERE sku = n)
   AND NOT EXISTS (SELECT 1 FROM demand WHERE sku = n)
UNION ALL
SELECT 'location', n
  FROM unnest(%(locations)s::text[]) AS n
 WHERE NOT EXISTS (SELECT 1 FROM locations WHERE location_id = n)
""")

Where = dict[str, sql.Composable]
"""A query's WHERE clause for each filter, by its field in `StockFilter`."""

_STOCK_WHERE: Where = {
    "skus": sql.SQL("s.sku = ANY(%(skus)s)"),
    "locations": sql.SQL("s.location = ANY(%(locations)s)"),
}
_INCOMING_WHERE: Where = {
    "skus": sql.SQL("f.sku = ANY(%(skus)s)"),
    "locations": sql.SQL("f.location = ANY(%(locations)s)"),
}
_DEMAND_WHERE: Where = {
    "skus": sql.SQL("d.sku = ANY(%(skus)s)"),
    "locations": sql.SQL("d.sku IN {}").format(_AT_LOCATIONS),
    "site": sql.SQL("d.site = %(site)s"),
}


def _query(query: sql.SQL, clauses: Where, wanted: StockFilter) -> sql.Composed:
    """`query` with the clauses of the filters given (the fields that are not empty)."""
    given = wanted.model_dump(exclude_defaults=True)
    where = [clause for name, clause in clauses.items() if name in given]
    return query.format(where=sql.SQL(" AND ").join(where or [sql.SQL("true")]))


def _params(wanted: StockFilter) -> dict[str, Any]:
    """The filter's values; psycopg sends them apart from the SQL."""
    return {"skus": list(wanted.skus), "locations": list(wanted.locations), "site": wanted.site}


async def _rows(
    conn: AsyncConnection[Any], query: sql.SQL | sql.Composed, wanted: StockFilter
) -> list[dict[str, Any]]:
    """Rows as dicts whatever the connection's own row factory."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, _params(wanted))
        return await cur.fetchall()


async def _read(
    conn: AsyncConnection[Any], model: type[M], query: sql.SQL, clauses: Where, wanted: StockFilter
) -> list[M]:
    """One table of the view."""
    return [
        model.model_validate(r) for r in await _rows(conn, _query(query, clauses, wanted), wanted)
    ]


async def read_stock_view(
    conn: AsyncConnection[Any], wanted: StockFilter
) -> tuple[StockView, UnknownNames]:
    """Stock, incoming purchase orders and demand matching `wanted`, from one read-only
    snapshot (so free stock, promises and demand agree); and the filter's unknown names.
    `conn` must have no transaction open: the snapshot is its own."""
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        view = StockView(
            stock=await _read(conn, StockRow, _STOCK, _STOCK_WHERE, wanted),
            incoming=await _read(conn, IncomingRow, _INCOMING, _INCOMING_WHERE, wanted),
            demand=await _read(conn, DemandRow, _DEMAND, _DEMAND_WHERE, wanted),
        )
        unknown = await _rows(conn, _UNKNOWN, wanted)
    return view, UnknownNames(
        skus=[r["name"] for r in unknown if r["kind"] == "sku"],
        locations=[r["name"] for r in unknown if r["kind"] == "location"],
    )
