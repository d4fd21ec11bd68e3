"""The orders an operator asks for, from the PostgreSQL read model (`orders`, and the open rows
of `exceptions`): strongly consistent, unlike Temporal's visibility, and one query however the
backlog is filtered. `backorder order list` prints what `list_orders` returns.
"""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, field_serializer

from activities.contracts import Severity
from domain.contract import Money, minor_units
from runtime.read_rows import UtcInstant
from workflows.messages import BackorderStatus

MAX_LIMIT = 1000
"""The most orders on one page."""

Sort = Literal["age", "value"]


class OrderFilter(BaseModel):
    """Which orders, in what order, which page. A filter left at its default filters nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    statuses: tuple[BackorderStatus, ...] = ()
    """Any of these statuses (none: every status)."""
    sku: str | None = None
    """The order has a line of this SKU."""
    waiting_on: str | None = None
    """The order has units of this SKU still backordered (open demand: no stock assigned yet,
    not even from a purchase order)."""
    site: str | None = None
    tier: str | None = None
    """The tier the order is served as now."""
    older_than: timedelta | None = None
    """Placed longer ago than this."""
    with_exception: bool = False
    """Has at least one open exception."""
    value_above: Money | None = None
    """Order value above this, in the order's own currency."""
    sort: Sort = "age"
    """`age`: oldest first; `value`: largest first; ties by order id."""
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 50
    page: Annotated[int, Field(ge=1)] = 1


class OrderRow(BaseModel):
    """One order as the list shows it."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    workflow_id: str
    order_number: str
    status: BackorderStatus
    customer_tier: str
    site: str
    currency: str
    order_value: Decimal
    placed_at: UtcInstant
    age_days: int
    """Whole days since `placed_at`, by the database's clock (the one `older_than` uses)."""
    status_since: UtcInstant
    skus: list[str]
    open_exceptions: int
    highest_severity: Severity | None
    """The worst open exception's severity; None without one."""

    @field_serializer("order_value")
    def _value_text(self, value: Decimal) -> str:
        return str(in_minor_units(value, self.currency))


class OrderPage(BaseModel):
    """One page of the matching orders and how many match in all."""

    model_config = ConfigDict(frozen=True)

    total: int
    page: int
    pages: int
    orders: list[OrderRow]


def in_minor_units(value: Decimal, currency: str) -> Decimal:
    """`50.0000` (the column's scale) as `50.00`: the currency's decimals, without dropping any
    digit the amount really has."""
    exponent = value.normalize().as_tuple().exponent
    places = -exponent if isinstance(exponent, int) else 0
    digits = max(minor_units(currency), places)
    return value.quantize(Decimal(1).scaleb(-digits))


_CONDITIONS: dict[str, sql.SQL] = {
    "statuses": sql.SQL("o.status = ANY(%(statuses)s)"),
    "sku": sql.SQL("%(sku)s = ANY(o.skus)"),
    "waiting_on": sql.SQL(
        "EXISTS (SELECT 1 FROM demand d WHERE d.order_id = o.order_id AND d.sku = %(waiting_on)s)"
    ),
    "site": sql.SQL("o.site = %(site)s"),
    "tier": sql.SQL("o.customer_tier = %(tier)s"),
    "older_than": sql.SQL("o.placed_at < now() - %(older_than)s"),
    "with_exception": sql.SQL("x.open_exceptions > 0"),
    "value_above": sql.SQL("o.order_value > %(value_above)s"),
}
"""The WHERE clause of each filter, by its field in `OrderFilter`."""

_ORDER: dict[Sort, sql.SQL] = {
    "age": sql.SQL("placed_at, order_id"),
    "value": sql.SQL("order_value DESC, order_id"),
}

# The count and the page in one statement (one snapshot): a page past the end is still one
# row, with the count and nulls.
_QUERY = sql.SQL("""
WITH matching AS (
    SELECT o.order_id, o.workflow_id, o.order_number, o.status, o.customer_tier, o.site,
           o.currency, o.order_value, o.placed_at, o.status_since, o.skus,
           floor(extract(epoch FROM now() - o.placed_at) / 86400)::int AS age_days,
           x.open_exceptions, x.highest_severity
      FROM orders o
      CROSS JOIN LATERAL (
          SELECT count(*)::int AS open_exceptions,
                 (array_agg(e.severity ORDER BY CASE e.severity WHEN 'high' THEN 0
                                                  WHEN 'medium' THEN 1 ELSE 2 END))[1]
                     AS highest_severity
            FROM exceptions e
           WHERE e.order_id = o.order_id AND e.resolved_at IS NULL
      ) x
     WHERE {where}
)
SELECT counted.total, page.*
  FROM (SELECT count(*)::int AS total FROM matching) counted
  LEFT JOIN LATERAL (
      SELECT * FROM matching ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s
  ) page ON true
 ORDER BY {order}
""")


def _query(wanted: OrderFilter) -> sql.Composed:
    """The statement for the filters given (the fields that differ from their defaults)."""
    given = wanted.model_dump(exclude_defaults=True)
    where = [clause for name, clause in _CONDITIONS.items() if name in given]
    return _QUERY.format(
        where=sql.SQL(" AND ").join(where or [sql.SQL("true")]), order=_ORDER[wanted.sort]
    )


def _params(wanted: OrderFilter) -> dict[str, Any]:
    """Every value the statement may name; psycopg sends them apart from the SQL."""
    return {
        **wanted.model_dump(
            include={"sku", "waiting_on", "site", "tier", "older_than", "value_above"}
        ),
        "statuses": [status.value for status in wanted.statuses],
        "limit": wanted.limit,
        "offset": (wanted.page - 1) * wanted.limit,
    }


async def list_orders(conn: AsyncConnection[Any], wanted: OrderFilter) -> OrderPage:
    """The page of orders `wanted` asks for, with the count of all that match."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_query(wanted), _params(wanted))
        rows = await cur.fetchall()
    total = rows[0]["total"]
    return OrderPage(
        total=total,
        page=wanted.page,
        pages=math.ceil(total / wanted.limit),
        orders=[OrderRow.model_validate(row) for row in rows if row["order_id"] is not None],
    )
