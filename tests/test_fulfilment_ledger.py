"""The ledger side of fulfilment confirmations against real PostgreSQL: shipping consumes the
order's reserved units and the units themselves, a short pick gives back and writes off, both
once per key, refused as a whole when the order does not hold the units, and the ledger
balances after every step (on hand is the sum of the row's movements, reserved what the
reservations hold). Stock arrives through the inventory feed, as in production, so that its
movements are there to balance against. Every test uses its own skus and orders.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import contracts
from activities.feed import apply_events
from activities.fulfilment_ledger import StockBalance, ship_stock, short_pick_stock, stock_balance
from activities.inventory import InventoryActivities
from domain.inventory import (
    FutureReceiptPlanned,
    FutureReceiptReceived,
    InventoryEvent,
    LocationDefined,
    ProductDefined,
    StockAdjusted,
    StockReceived,
)
from domain.planner import Allotment
from tests.test_inventory_activities import current, future, held, reservation, sql

DC = "FL-DC"
env = ActivityEnvironment()
Ledgered = Callable[[AsyncConnection[Any], str, str, str, Sequence[Allotment]], Awaitable[None]]


@pytest.fixture(scope="module")
def ledger(pg_pool: AsyncConnectionPool) -> InventoryActivities:
    return InventoryActivities(pg_pool)


def unit(line: str, sku: str, quantity: int) -> Allotment:
    return current(line, sku, DC, quantity)


async def feed(pool: AsyncConnectionPool, *events: InventoryEvent) -> None:
    async with pool.connection() as conn, conn.transaction():
        outcomes, _ = await apply_events(conn, events, f"pass-{events[0].event_id}")
    assert [o.status.value for o in outcomes] == ["applied"] * len(events), outcomes


async def receive(pool: AsyncConnectionPool, sku: str, units: int) -> None:
    """The product and `units` of it received at DC: a stock movement, as the feed records
    every change of on hand."""
    await feed(
        pool,
        LocationDefined(event_id=f"{sku}-loc", location_id=DC),
        ProductDefined(event_id=f"{sku}-product", sku=sku),
        StockReceived(event_id=f"{sku}-in", sku=sku, location=DC, quantity=units),
    )


async def plan(pool: AsyncConnectionPool, receipt: str, sku: str, units: int) -> None:
    planned = FutureReceiptPlanned(
        event_id=f"{receipt}-plan", receipt_id=receipt, sku=sku, location=DC, quantity=units
    )
    await feed(pool, planned)


async def reserve(ledger: InventoryActivities, order: str, *allotments: Allotment) -> None:
    await env.run(ledger.reserve_stock, reservation(order, "reserve", *allotments))


async def run(
    pool: AsyncConnectionPool, fn: Ledgered, key: str, order: str, shipment: str, *a: Allotment
) -> None:
    """`fn` in a transaction of its own, as the order's write step calls it."""
    async with pool.connection() as conn, conn.transaction():
        await fn(conn, key, order, shipment, a)


async def balanced(
    pool: AsyncConnectionPool, sku: str, on_hand: int, reserved: int
) -> StockBalance:
    """The row holds what the test expects, and agrees with its movements and reservations."""
    async with pool.connection() as conn:
        b = await stock_balance(conn, sku, DC)
    assert b is not None and (b.on_hand, b.reserved) == (on_hand, reserved), b
    assert b.moved == b.on_hand and b.held == b.reserved and b.balanced, b
    return b


async def movements(dsn: str, sku: str) -> list[tuple[Any, ...]]:
    query = "SELECT event_id, delta, reason FROM stock_movements WHERE sku = %s ORDER BY id"
    return await sql(dsn, query, sku)


def rows(line: str, sku: str, *held: tuple[int, str]) -> list[tuple[Any, ...]]:
    """`held`'s rows of the line: (quantity, state) of current units at DC."""
    return [(line, sku, DC, q, "current", None, state) for q, state in held]


async def test_shipping_consumes_the_reserved_units_and_the_units(
    ledger: InventoryActivities, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    await receive(pg_pool, "SHIP-1", 10)
    await reserve(ledger, "SHIP-O1", unit("1", "SHIP-1", 3))
    await balanced(pg_pool, "SHIP-1", on_hand=10, reserved=3)

    key = contracts.step_key("backorder-SHIP-O1", "ship", "S1")
    await run(pg_pool, ship_stock, key, "SHIP-O1", "S1", unit("1", "SHIP-1", 3))

    assert (await balanced(pg_pool, "SHIP-1", on_hand=7, reserved=0)).shipped == 3
    assert await movements(pg_dsn, "SHIP-1") == [
        ("SHIP-1-in", 10, "receipt"),
        (key, -3, "shipped S1"),
    ]
    assert await held(pg_dsn, "SHIP-O1") == rows("1", "SHIP-1", (3, "shipped"))
    assert await sql(
        pg_dsn,
        "SELECT shipped_key, shipped_at IS NOT NULL, released_key FROM reservations"
        " WHERE order_id = 'SHIP-O1'",
    ) == [(key, True, None)]
    assert await sql(
        pg_dsn,
        "SELECT kind, payload->>'shipment_id' FROM inventory_events WHERE event_id = %s",
        key,
    ) == [("shipped", "S1")]


async def test_shipping_is_idempotent_by_key(
    ledger: InventoryActivities, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    await receive(pg_pool, "IDEM-1", 10)
    await reserve(ledger, "IDEM-O1", unit("1", "IDEM-1", 4))
    for _ in range(2):  # the write step retried, or replayed
        await run(pg_pool, ship_stock, "k-IDEM-S1", "IDEM-O1", "S1", unit("1", "IDEM-1", 2))

    await balanced(pg_pool, "IDEM-1", on_hand=8, reserved=2)
    assert [m[1] for m in await movements(pg_dsn, "IDEM-1")] == [10, -2]
    assert await held(pg_dsn, "IDEM-O1") == rows("1", "IDEM-1", (2, "reserved"), (2, "shipped"))


async def test_a_key_belongs_to_one_operation(
    ledger: InventoryActivities, pg_pool: AsyncConnectionPool
) -> None:
    await receive(pg_pool, "KIND-1", 10)
    await reserve(ledger, "KIND-O1", unit("1", "KIND-1", 4))
    one = unit("1", "KIND-1", 1)
    await run(pg_pool, ship_stock, "k-KIND-S1", "KIND-O1", "S1", one)

    reserved_by = contracts.step_key("backorder-KIND-O1", "reserve")
    for fn, key in [(short_pick_stock, "k-KIND-S1"), (ship_stock, reserved_by)]:
        with pytest.raises(ApplicationError, match="already used by") as raised:
            await run(pg_pool, fn, key, "KIND-O1", "S1", one)
        assert raised.value.type == contracts.INVALID_REQUEST and raised.value.non_retryable
    await balanced(pg_pool, "KIND-1", on_hand=9, reserved=3)


async def test_a_partial_shipment_splits_the_reservation(
    ledger: InventoryActivities, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    await receive(pg_pool, "PART-1", 10)
    await reserve(ledger, "PART-O1", unit("1", "PART-1", 5))
    await run(pg_pool, ship_stock, "k-PART-S1", "PART-O1", "S1", unit("1", "PART-1", 2))
    assert await held(pg_dsn, "PART-O1") == rows("1", "PART-1", (3, "reserved"), (2, "shipped"))
    await balanced(pg_pool, "PART-1", on_hand=8, reserved=3)

    await run(pg_pool, ship_stock, "k-PART-S2", "PART-O1", "S2", unit("1", "PART-1", 3))
    reserved_by = contracts.step_key("backorder-PART-O1", "reserve")
    assert await sql(
        pg_dsn,
        "SELECT state, shipped_key, quantity, key FROM reservations WHERE order_id = 'PART-O1'"
        " ORDER BY shipped_key",
    ) == [("shipped", "k-PART-S1", 2, reserved_by), ("shipped", "k-PART-S2", 3, reserved_by)]
    await balanced(pg_pool, "PART-1", on_hand=5, reserved=0)


async def test_shipping_more_than_the_order_holds_is_refused_and_writes_nothing(
    ledger: InventoryActivities, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    await receive(pg_pool, "OVER-1", 10)
    await receive(pg_pool, "OVER-2", 10)
    await reserve(ledger, "OVER-O1", unit("1", "OVER-1", 2), unit("2", "OVER-2", 2))
    await reserve(ledger, "OVER-O2", unit("2", "OVER-2", 5))  # shipping 3 would take one
    fits, too_much = unit("1", "OVER-1", 2), unit("2", "OVER-2", 3)

    async with pg_pool.connection() as conn, conn.transaction():
        with pytest.raises(ApplicationError) as raised:
            await ship_stock(conn, "k-OVER-S1", "OVER-O1", "S1", (fits, too_much))
        # The caller's transaction is still usable, and commits: nothing of the ship is in it.
        await conn.execute("SELECT 1")

    assert raised.value.type == contracts.INVALID_REQUEST and raised.value.non_retryable
    assert raised.value.message == (
        f"order OVER-O1 cannot ship shipment S1: line 2 (sku OVER-2 at {DC}) holds 2 unit(s),"
        " wanted 3 (units it does not hold are another order's)"
    )
    await balanced(pg_pool, "OVER-1", on_hand=10, reserved=2)
    await balanced(pg_pool, "OVER-2", on_hand=10, reserved=7)
    for query in [
        "SELECT 1 FROM ledger_operations WHERE key = 'k-OVER-S1'",
        "SELECT 1 FROM inventory_events WHERE event_id = 'k-OVER-S1'",
        "SELECT 1 FROM reservations WHERE sku LIKE 'OVER-%' AND state <> 'reserved'",
    ]:
        assert await sql(pg_dsn, query) == [], query

    # The key was never spent: the same step with what the order holds goes through.
    await run(pg_pool, ship_stock, "k-OVER-S1", "OVER-O1", "S1", fits)
    await balanced(pg_pool, "OVER-1", on_hand=8, reserved=0)


async def test_a_future_allotment_cannot_ship(
    ledger: InventoryActivities, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    await receive(pg_pool, "FUT-1", 1)
    await plan(pg_pool, "FUT-R1", "FUT-1", 5)
    incoming = future("3", "FUT-1", DC, 2, "FUT-R1")
    await reserve(ledger, "FUT-O1", incoming)
    for fn in (ship_stock, short_pick_stock):
        with pytest.raises(ApplicationError) as raised:
            await run(pg_pool, fn, f"k-FUT-{fn.__name__}", "FUT-O1", "S9", incoming)
        assert raised.value.type == contracts.INVALID_REQUEST
        assert f"shipment S9: line 3 (sku FUT-1 at {DC}) is a future allotment" in str(raised.value)
    assert [r[-1] for r in await held(pg_dsn, "FUT-O1")] == ["reserved"]
    await balanced(pg_pool, "FUT-1", on_hand=1, reserved=0)


async def test_units_of_a_received_receipt_ship_as_stock_on_hand(
    ledger: InventoryActivities, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """A future shipment whose receipt came in ships current units: the reservation rows keep
    the receipt they came from, and shipping takes them all the same."""
    await receive(pg_pool, "ARR-1", 1)
    await plan(pg_pool, "ARR-R1", "ARR-1", 4)
    await reserve(ledger, "ARR-O1", future("1", "ARR-1", DC, 3, "ARR-R1"))
    await feed(pg_pool, FutureReceiptReceived(event_id="ARR-in", receipt_id="ARR-R1"))
    await balanced(pg_pool, "ARR-1", on_hand=5, reserved=3)

    await run(pg_pool, ship_stock, "k-ARR-S1", "ARR-O1", "S1", unit("1", "ARR-1", 3))
    assert await held(pg_dsn, "ARR-O1") == [("1", "ARR-1", DC, 3, "current", "ARR-R1", "shipped")]
    await balanced(pg_pool, "ARR-1", on_hand=2, reserved=0)


async def test_a_short_pick_releases_and_writes_off_the_missing_units(
    ledger: InventoryActivities, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    await receive(pg_pool, "SPK-1", 10)
    await reserve(ledger, "SPK-O1", unit("1", "SPK-1", 4))
    await reserve(ledger, "SPK-O2", unit("1", "SPK-1", 2))
    missing = unit("1", "SPK-1", 1)
    for _ in range(2):  # once per key
        await run(pg_pool, short_pick_stock, "k-SPK-S1", "SPK-O1", "S1", missing)

    b = await balanced(pg_pool, "SPK-1", on_hand=9, reserved=5)
    assert b.on_hand - b.reserved == 4  # free stock is what it was: the unit was never free
    assert await held(pg_dsn, "SPK-O1") == rows("1", "SPK-1", (1, "released"), (3, "reserved"))
    assert await sql(
        pg_dsn,
        "SELECT released_key FROM reservations WHERE order_id = 'SPK-O1' AND state = 'released'",
    ) == [("k-SPK-S1",)]
    assert (await movements(pg_dsn, "SPK-1"))[-1] == ("k-SPK-S1", -1, "short pick S1")
    assert await held(pg_dsn, "SPK-O2") == rows("1", "SPK-1", (2, "reserved"))

    # The picker found 3 of the 4: they ship.
    await run(pg_pool, ship_stock, "k-SPK-S1-ship", "SPK-O1", "S1", unit("1", "SPK-1", 3))
    await balanced(pg_pool, "SPK-1", on_hand=6, reserved=2)

    # Missing units the order no longer holds: refused, never another order's.
    with pytest.raises(ApplicationError, match=r"line 1 \(sku SPK-1 at FL-DC\) holds 0 unit"):
        await run(pg_pool, short_pick_stock, "k-SPK-S1-again", "SPK-O1", "S1", missing)
    await balanced(pg_pool, "SPK-1", on_hand=6, reserved=2)


async def test_a_ledger_whose_stock_disagrees_with_its_reservations_is_refused_clearly(
    ledger: InventoryActivities, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """Reservations that stock no longer counts (a repair by SQL gone wrong): taking them
    would drive on hand below zero; refused with the numbers, not left to a CHECK."""
    await receive(pg_pool, "BAD-1", 3)
    await reserve(ledger, "BAD-O1", unit("1", "BAD-1", 3))
    await sql(pg_dsn, "UPDATE stock SET on_hand = 1, reserved = 1 WHERE sku = 'BAD-1'")
    for fn in (ship_stock, short_pick_stock):
        with pytest.raises(ApplicationError) as raised:
            await run(pg_pool, fn, f"k-BAD-{fn.__name__}", "BAD-O1", "S1", unit("1", "BAD-1", 3))
        assert f"stock of sku BAD-1 at {DC} counts 1 on hand and 1 reserved" in str(raised.value)
        assert "the ledger needs repair" in str(raised.value)
    assert await held(pg_dsn, "BAD-O1") == rows("1", "BAD-1", (3, "reserved"))
    assert await sql(pg_dsn, "SELECT on_hand FROM stock WHERE sku = 'BAD-1'") == [(1,)]


async def test_the_ledger_balances_after_every_step(
    ledger: InventoryActivities, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """on hand = initial + receipts - shipped - short picked + adjustments, at every step."""
    await receive(pg_pool, "BAL-1", 10)
    await balanced(pg_pool, "BAL-1", on_hand=10, reserved=0)
    await reserve(ledger, "BAL-O1", unit("1", "BAL-1", 4))
    await reserve(ledger, "BAL-O2", unit("1", "BAL-1", 3))
    await balanced(pg_pool, "BAL-1", on_hand=10, reserved=7)
    count = StockAdjusted(event_id="BAL-count", sku="BAL-1", location=DC, delta=-2, reason="count")
    await feed(pg_pool, count)
    await balanced(pg_pool, "BAL-1", on_hand=8, reserved=7)
    await run(pg_pool, ship_stock, "k-BAL-A", "BAL-O1", "SA", unit("1", "BAL-1", 4))
    await balanced(pg_pool, "BAL-1", on_hand=4, reserved=3)
    await run(pg_pool, short_pick_stock, "k-BAL-B-short", "BAL-O2", "SB", unit("1", "BAL-1", 1))
    await balanced(pg_pool, "BAL-1", on_hand=3, reserved=2)
    await run(pg_pool, ship_stock, "k-BAL-B", "BAL-O2", "SB", unit("1", "BAL-1", 2))
    await balanced(pg_pool, "BAL-1", on_hand=1, reserved=0)
    await feed(pg_pool, StockReceived(event_id="BAL-in-2", sku="BAL-1", location=DC, quantity=5))
    b = await balanced(pg_pool, "BAL-1", on_hand=6, reserved=0)
    assert b.shipped == 6 and b.on_hand == 10 + 5 - 6 - 1 - 2
    assert [m[1:] for m in await movements(pg_dsn, "BAL-1")] == [
        (10, "receipt"),
        (-2, "count"),
        (-4, "shipped SA"),
        (-1, "short pick SB"),
        (-2, "shipped SB"),
        (5, "receipt"),
    ]


async def test_concurrent_shipments_of_one_stock_row_do_not_deadlock(
    ledger: InventoryActivities, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    await receive(pg_pool, "CC-A", 100)
    await receive(pg_pool, "CC-B", 100)
    a, b = unit("1", "CC-A", 2), unit("2", "CC-B", 2)
    orders = [f"CCS-O{i}" for i in range(20)]
    for order in orders:
        await reserve(ledger, order, a, b)

    async def confirm(i: int, order: str, pool: AsyncConnectionPool) -> None:
        fn = ship_stock if i % 3 else short_pick_stock
        both = (a, b) if i % 2 else (b, a)  # the rows named in opposite orders
        await run(pool, fn, f"k-{order}", order, f"S-{order}", *both)

    async with AsyncConnectionPool(pg_dsn, min_size=10, max_size=10, open=False) as pool:
        await pool.wait()
        results = await asyncio.gather(
            *(confirm(i, order, pool) for i, order in enumerate(orders)), return_exceptions=True
        )
    assert results == [None] * len(orders)
    await balanced(pg_pool, "CC-A", on_hand=60, reserved=0)
    await balanced(pg_pool, "CC-B", on_hand=60, reserved=0)
    assert await sql(
        pg_dsn, "SELECT count(*) FROM reservations WHERE sku = 'CC-A' AND state = 'shipped'"
    ) == [(13,)]  # i % 3 != 0 for 13 of 0..19


async def test_a_shipment_of_another_order_or_a_taken_key_is_refused(
    ledger: InventoryActivities, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    await receive(pg_pool, "OWN-1", 10)
    await reserve(ledger, "OWN-O1", unit("1", "OWN-1", 2))
    await sql(
        pg_dsn,
        f"""INSERT INTO shipments (shipment_id, order_id, order_number, kind, status, location,
                                   amount, allotments, created_at)
            VALUES ('OWN-S1', 'OWN-O2', 'N-OWN-O2', 'ready', 'ready', '{DC}', 0, '[]', now())""",
    )
    two = unit("1", "OWN-1", 2)
    with pytest.raises(ApplicationError, match="S1: the shipment belongs to order OWN-O2"):
        await run(pg_pool, ship_stock, "k-OWN-1", "OWN-O1", "OWN-S1", two)

    found = StockAdjusted(event_id="k-OWN-2", sku="OWN-1", location=DC, delta=1, reason="found")
    await feed(pg_pool, found)
    with pytest.raises(ApplicationError, match="key k-OWN-2 is already the id of an inventory"):
        await run(pg_pool, ship_stock, "k-OWN-2", "OWN-O1", "OWN-S2", two)
    await balanced(pg_pool, "OWN-1", on_hand=11, reserved=2)


@pytest.mark.parametrize(
    "change",
    [
        "reservations SET state = 'shipped' WHERE order_id = 'RAW-O1'",  # no key, no time
        "reservations SET state = 'shipped', shipped_key = 'k' WHERE order_id = 'RAW-O1'",
        "reservations SET shipped_key = 'k', shipped_at = now() WHERE order_id = 'RAW-O1'",
        "reservations SET state = 'released', shipped_key = 'k', shipped_at = now()"
        " WHERE order_id = 'RAW-O1'",  # a released row says how it was released
        "reservations SET state = 'lost' WHERE order_id = 'RAW-O1'",
        "reservations SET state = 'shipped', shipped_key = 'k', shipped_at = now()"
        " WHERE order_id = 'RAW-O2'",  # a promise of a purchase order still to come
        "shipments SET status = 'shipped' WHERE shipment_id = 'RAW-S1'",
        "shipments SET status = 'delivered' WHERE shipment_id = 'RAW-S1'",
        "shipments SET delivered_at = now() WHERE shipment_id = 'RAW-S1'",
        "shipments SET status = 'lost' WHERE shipment_id = 'RAW-S1'",
    ],
)
async def test_the_database_refuses_fulfilment_states_that_do_not_say_who_or_when(
    ledger: InventoryActivities, pg_pool: AsyncConnectionPool, pg_dsn: str, change: str
) -> None:
    if not await sql(pg_dsn, "SELECT 1 FROM shipments WHERE shipment_id = 'RAW-S1'"):
        await receive(pg_pool, "RAWF-1", 5)
        await plan(pg_pool, "RAWF-R1", "RAWF-1", 5)
        await reserve(ledger, "RAW-O1", unit("1", "RAWF-1", 1))
        await reserve(ledger, "RAW-O2", future("1", "RAWF-1", DC, 1, "RAWF-R1"))
        await sql(
            pg_dsn,
            f"""INSERT INTO shipments (shipment_id, order_id, order_number, kind, status, location,
                                       amount, allotments, created_at)
                VALUES ('RAW-S1', 'RAW-O1', 'N-RAW', 'ready', 'ready', '{DC}', 0, '[]', now())""",
        )
    with pytest.raises(psycopg.errors.CheckViolation):
        await sql(pg_dsn, f"UPDATE {change}")
    # What fulfilment writes is accepted.
    for ok in [
        "status = 'shipped', shipped_at = now(), carrier = 'UPS', tracking_number = '1Z',"
        " estimated_delivery = current_date + 2",
        "status = 'delivered', delivered_at = now()",
        "status = 'ready', shipped_at = NULL, delivered_at = NULL",
    ]:
        await sql(pg_dsn, f"UPDATE shipments SET {ok} WHERE shipment_id = 'RAW-S1'")
