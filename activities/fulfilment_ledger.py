"""The ledger side of warehouse confirmations: units that left with a shipment, units the
picker could not find.

Until a shipment leaves, its units are reserved stock on hand. Shipping them consumes the
reservation and the units (on hand and reserved both go down); a short pick gives the missing
units' reservation back and writes them off (they are not there). Both change on hand, so both
write a stock movement, recorded under an inventory event of their own (see migration 0012):
on hand stays the sum of the row's movements.

These are plain functions on the caller's connection: the order's write step calls them in
the transaction that records the confirmation. Each is idempotent by its key (a retry does
nothing), runs in a savepoint (a refusal leaves nothing behind, even if the caller goes on),
and takes the ledger's locks in its one order: stock rows by (sku, location), then
reservations (it touches no receipt: only units on hand can ship or be missed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from activities.feed_rows import movement
from activities.ledger import (
    StockKey,
    claim,
    columns,
    end_held,
    invalid,
    lock_held,
    lock_levels,
)
from domain.planner import Allotment
from domain.planner.plan import StockSource

SHIP_STOCK = "ship_stock"
SHORT_PICK_STOCK = "short_pick_stock"
LineKey = tuple[str, str, str]
"""(line_id, sku, location): the units of one order line at one stock row."""


@dataclass(frozen=True)
class _Operation:
    kind: str  # the claim's kind (ledger_operations.kind)
    event: str  # the inventory event's kind
    state: str  # what the reservations become
    reason: str  # the stock movement's reason, before the shipment id
    verb: str  # for messages


_SHIP = _Operation(SHIP_STOCK, "shipped", "shipped", "shipped", "ship")
_SHORT_PICK = _Operation(SHORT_PICK_STOCK, "short_pick", "released", "short pick", "short-pick")


@dataclass(frozen=True)
class StockBalance:
    """One stock row against its history: on hand should be the sum of its movements, and
    reserved the units its reservations hold on hand."""

    sku: str
    location: str
    on_hand: int
    reserved: int
    moved: int
    """The sum of the row's stock movements."""
    held: int
    """Units reserved rows hold at the row as stock on hand."""
    shipped: int
    """Units that left the row with shipments."""

    @property
    def balanced(self) -> bool:
        return self.on_hand == self.moved and self.reserved == self.held


async def ship_stock(
    conn: AsyncConnection[Any],
    key: str,
    order_id: str,
    shipment_id: str,
    allotments: Sequence[Allotment],
) -> None:
    """The shipment's units left the building: the order's reservations of them become
    shipped and on hand and reserved both go down. Refused as a whole when the order holds
    fewer units than an allotment says: shipping them would take another order's stock."""
    await _consume(conn, _SHIP, key, order_id, shipment_id, allotments)


async def short_pick_stock(
    conn: AsyncConnection[Any],
    key: str,
    order_id: str,
    shipment_id: str,
    missing: Sequence[Allotment],
) -> None:
    """The picker did not find `missing` (units of the shipment's allotments): the order's
    reservations of them are released and the units written off (on hand and reserved both go
    down; free stock is unchanged). Refused as a whole when the order does not hold them."""
    await _consume(conn, _SHORT_PICK, key, order_id, shipment_id, missing)


async def stock_balance(conn: AsyncConnection[Any], sku: str, location: str) -> StockBalance | None:
    """The row's balance, for tests and operators; None when the row does not exist."""
    cur = await conn.execute(
        """
        SELECT s.on_hand, s.reserved,
               (SELECT coalesce(sum(m.delta), 0) FROM stock_movements m
                 WHERE m.sku = s.sku AND m.location = s.location),
               (SELECT coalesce(sum(r.quantity), 0) FROM reservations r
                 WHERE r.sku = s.sku AND r.location = s.location
                   AND r.state = 'reserved' AND r.source = 'current'),
               (SELECT coalesce(sum(r.quantity), 0) FROM reservations r
                 WHERE r.sku = s.sku AND r.location = s.location AND r.state = 'shipped')
          FROM stock s
         WHERE s.sku = %s AND s.location = %s
        """,
        (sku, location),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    on_hand, reserved, moved, held, shipped = (int(v) for v in row)
    return StockBalance(sku, location, on_hand, reserved, moved, held, shipped)


async def _consume(
    conn: AsyncConnection[Any],
    op: _Operation,
    key: str,
    order_id: str,
    shipment_id: str,
    allotments: Sequence[Allotment],
) -> None:
    where = f"order {order_id} cannot {op.verb} shipment {shipment_id}"
    wanted: dict[LineKey, int] = defaultdict(int)
    for a in allotments:
        if a.source is not StockSource.CURRENT:
            raise invalid(
                f"{where}: line {a.line_id} (sku {a.sku} at {a.location}) is a {a.source.value}"
                " allotment; only units on hand can leave or go missing"
            )
        wanted[a.line_id, a.sku, a.location] += a.quantity
    async with conn.transaction():  # a savepoint inside the caller's transaction
        if not await claim(conn, key, op.kind, order_id):
            return
        await _check_shipment(conn, where, order_id, shipment_id)
        if not wanted:
            return
        units: dict[StockKey, int] = defaultdict(int)
        for (_, sku, location), q in wanted.items():
            units[sku, location] += q
        levels = await lock_levels(conn, units)
        rows = {
            lk: await lock_held(conn, order_id, (*lk, "current", None), on_hand=True)
            for lk in sorted(wanted)
        }
        short = []
        for (line_id, sku, location), held_rows in rows.items():
            held = sum(q for _, q, _ in held_rows)
            if held < wanted[line_id, sku, location]:
                short.append(
                    f"line {line_id} (sku {sku} at {location}) holds {held} unit(s),"
                    f" wanted {wanted[line_id, sku, location]}"
                )
        if short:
            raise invalid(
                f"{where}: {'; '.join(short)} (units it does not hold are another order's)"
            )
        for (sku, location), q in sorted(units.items()):
            on_hand, reserved = levels.get((sku, location), (0, 0))
            if reserved < q:  # and so on hand too: reserved <= on_hand
                raise invalid(
                    f"{where}: stock of sku {sku} at {location} counts {on_hand} on hand and"
                    f" {reserved} reserved, but the order's reservations hold the {q} unit(s)"
                    " it takes: the ledger needs repair (its stock rows disagree with its"
                    " reservations)"
                )
        await _record_event(conn, op, where, key, order_id, shipment_id, allotments)
        for lk in sorted(wanted):
            await end_held(conn, rows[lk], wanted[lk], key, op.state)
        await _take_stock(conn, units)
        for (sku, location), q in sorted(units.items()):
            await movement(conn, key, sku, location, -q, f"{op.reason} {shipment_id}")


async def _check_shipment(
    conn: AsyncConnection[Any], where: str, order_id: str, shipment_id: str
) -> None:
    """A shipment already published for another order is not this order's to confirm."""
    cur = await conn.execute(
        "SELECT order_id FROM shipments WHERE shipment_id = %s", (shipment_id,)
    )
    row = await cur.fetchone()
    if row is not None and row[0] != order_id:
        raise invalid(f"{where}: the shipment belongs to order {row[0]}")


async def _record_event(
    conn: AsyncConnection[Any],
    op: _Operation,
    where: str,
    key: str,
    order_id: str,
    shipment_id: str,
    allotments: Sequence[Allotment],
) -> None:
    """The inventory event the stock movements belong to, under the operation's key."""
    payload = {
        "type": op.event,
        "order_id": order_id,
        "shipment_id": shipment_id,
        "allotments": [a.model_dump(mode="json") for a in allotments],
    }
    cur = await conn.execute(
        """
        INSERT INTO inventory_events (event_id, kind, payload) VALUES (%s, %s, %s)
        ON CONFLICT (event_id) DO NOTHING
        RETURNING event_id
        """,
        (key, op.event, Jsonb(payload)),
    )
    if await cur.fetchone() is None:
        raise invalid(
            f"{where}: key {key} is already the id of an inventory event; the operation needs"
            " a key of its own"
        )


async def _take_stock(conn: AsyncConnection[Any], units: dict[StockKey, int]) -> None:
    """Take `units` off on hand and reserved alike, on rows whose locks the caller holds."""
    keys = sorted(units)
    skus, locations = columns(keys)
    await conn.execute(
        """
        UPDATE stock
           SET on_hand = stock.on_hand - w.quantity,
               reserved = stock.reserved - w.quantity,
               updated_at = now()
          FROM unnest(%s::text[], %s::text[], %s::int[]) AS w(sku, location, quantity)
         WHERE stock.sku = w.sku AND stock.location = w.location
        """,
        (skus, locations, [units[k] for k in keys]),
    )
