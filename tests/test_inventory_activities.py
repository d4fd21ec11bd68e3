"""The inventory ledger activities against real PostgreSQL: free stock, all-or-nothing and
idempotent reservations that never over-reserve, releases that free only the order's own units,
and the demand index. The database is shared by this module, so every test uses its own skus,
locations and order ids.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import contracts
from activities.contracts import (
    AvailabilityRequest,
    DemandUpdate,
    Empty,
    NudgeRequest,
    StockReservation,
)
from activities.feed import apply_events
from activities.inventory import InventoryActivities
from domain.inventory import FutureReceiptReceived
from domain.order import Fulfillment, FulfillmentType
from domain.planner import Allotment, Backorder
from domain.planner.demand import BackorderLine
from domain.planner.plan import StockSource
from domain.planner.stock import Location, Receipt, StockLevel

STH = Fulfillment(type=FulfillmentType.SHIP_TO_HOME)
PLACED = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
env = ActivityEnvironment()


@pytest.fixture(scope="module")
def ledger(pg_pool: AsyncConnectionPool) -> InventoryActivities:
    return InventoryActivities(pg_pool)


async def sql(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement in its own transaction; its rows, if it returns any."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(query.encode(), params or None)
        return list(await cur.fetchall()) if cur.description else []


async def seed_stock(dsn: str, sku: str, location: str, on_hand: int, reserved: int = 0) -> None:
    await sql(
        dsn,
        "INSERT INTO locations (location_id) VALUES (%s) ON CONFLICT DO NOTHING",
        location,
    )
    await sql(
        dsn,
        "INSERT INTO stock (sku, location, on_hand, reserved) VALUES (%s, %s, %s, %s)",
        sku,
        location,
        on_hand,
        reserved,
    )


async def seed_receipt(
    dsn: str,
    receipt_id: str,
    sku: str,
    location: str,
    quantity: int,
    *,
    reserved: int = 0,
    status: str = "open",
    expected: dt.date | None = dt.date(2026, 12, 1),
) -> None:
    await sql(
        dsn,
        "INSERT INTO locations (location_id) VALUES (%s) ON CONFLICT DO NOTHING",
        location,
    )
    await sql(
        dsn,
        """INSERT INTO future_receipts (receipt_id, sku, location, quantity, reserved, status,
                                        expected_date)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        receipt_id,
        sku,
        location,
        quantity,
        reserved,
        status,
        expected,
    )


async def stock_reserved(dsn: str, sku: str, location: str) -> int:
    rows = await sql(
        dsn, "SELECT reserved FROM stock WHERE sku = %s AND location = %s", sku, location
    )
    return int(rows[0][0])


async def receipt_reserved(dsn: str, receipt_id: str) -> int:
    rows = await sql(dsn, "SELECT reserved FROM future_receipts WHERE receipt_id = %s", receipt_id)
    return int(rows[0][0])


async def held(dsn: str, order_id: str) -> list[tuple[Any, ...]]:
    """The order's reservation rows: (line, sku, location, quantity, source, receipt, state)."""
    return await sql(
        dsn,
        """SELECT line_id, sku, location, quantity, source, receipt_id, state
             FROM reservations WHERE order_id = %s
            ORDER BY line_id, sku, location, state, quantity""",
        order_id,
    )


def current(line: str, sku: str, location: str, quantity: int) -> Allotment:
    return Allotment(
        line_id=line, sku=sku, quantity=quantity, location=location, source=StockSource.CURRENT
    )


def future(line: str, sku: str, location: str, quantity: int, receipt: str) -> Allotment:
    return Allotment(
        line_id=line,
        sku=sku,
        quantity=quantity,
        location=location,
        source=StockSource.FUTURE,
        expected_date=dt.date(2026, 12, 1),
        receipt_id=receipt,
    )


def reservation(order_id: str, step: str, *allotments: Allotment) -> StockReservation:
    return StockReservation(
        key=contracts.step_key(f"backorder-{order_id}", step),
        order_id=order_id,
        allotments=allotments,
    )


async def test_activities_are_registered_under_their_contract_names(
    ledger: InventoryActivities,
) -> None:
    names = {activity._Definition.must_from_callable(fn).name for fn in ledger.activities()}
    assert names == {
        contracts.CHECK_AVAILABILITY.name,
        contracts.RESERVE_STOCK.name,
        contracts.RELEASE_STOCK.name,
        contracts.UPDATE_DEMAND.name,
    }


async def test_availability_returns_free_stock_and_open_receipts_only(
    ledger: InventoryActivities, pg_dsn: str
) -> None:
    await sql(
        pg_dsn,
        "INSERT INTO locations (location_id, rank, pickup) VALUES ('AV-DC', 2, false),"
        " ('AV-STORE', 0, true)",
    )
    await sql(
        pg_dsn,
        "INSERT INTO products (sku, backorderable, future_inventory, is_insert)"
        " VALUES ('AV-1', false, false, true), ('AV-OTHER', true, true, false)",
    )
    await seed_stock(pg_dsn, "AV-1", "AV-DC", on_hand=5, reserved=2)  # 3 free
    await seed_stock(pg_dsn, "AV-1", "AV-STORE", on_hand=4, reserved=4)  # none free
    await seed_stock(pg_dsn, "AV-2", "AV-DC", on_hand=0)
    await seed_stock(pg_dsn, "AV-OTHER", "AV-DC", on_hand=9)  # not asked for
    await seed_receipt(pg_dsn, "AV-R1", "AV-1", "AV-DC", 10, reserved=3)  # 7 free
    await seed_receipt(pg_dsn, "AV-R2", "AV-1", "AV-DC", 5, reserved=5)  # none free
    await seed_receipt(pg_dsn, "AV-R3", "AV-2", "AV-DC", 5, status="received")
    await seed_receipt(pg_dsn, "AV-R4", "AV-2", "AV-DC", 5, status="cancelled")
    await seed_receipt(pg_dsn, "AV-R5", "AV-2", "AV-STORE", 2, expected=None)
    await seed_receipt(pg_dsn, "AV-R6", "AV-OTHER", "AV-DC", 2)

    request = AvailabilityRequest(order_id="AV-O1", skus=("AV-1", "AV-2", "AV-1"), fulfillment=STH)
    result = await env.run(ledger.check_availability, request)

    stock = result.stock
    assert {Location(location_id="AV-DC", rank=2), Location(location_id="AV-STORE", rank=0)} <= set(
        stock.locations
    )
    assert stock.on_hand == (StockLevel(sku="AV-1", location="AV-DC", quantity=3),)
    assert set(stock.receipts) == {
        Receipt(
            receipt_id="AV-R1",
            sku="AV-1",
            location="AV-DC",
            quantity=7,
            expected_date=dt.date(2026, 12, 1),
        ),
        Receipt(receipt_id="AV-R5", sku="AV-2", location="AV-STORE", quantity=2),
    }
    assert [p.sku for p in result.catalog.products] == ["AV-1"]
    product = result.catalog.product("AV-1")
    assert (product.backorderable, product.future_inventory, product.insert) == (
        False,
        False,
        True,
    )
    unknown = result.catalog.product("AV-2")  # not in products: the catalog's defaults
    assert (unknown.backorderable, unknown.future_inventory, unknown.insert) == (True, True, False)


async def test_reserve_is_idempotent_by_key(ledger: InventoryActivities, pg_dsn: str) -> None:
    await seed_stock(pg_dsn, "ID-1", "ID-DC", on_hand=10)
    request = reservation("ID-O1", "reserve", current("1", "ID-1", "ID-DC", 3))

    assert await env.run(ledger.reserve_stock, request) == Empty()
    await env.run(ledger.reserve_stock, request)  # the same step, retried

    assert await stock_reserved(pg_dsn, "ID-1", "ID-DC") == 3
    assert await held(pg_dsn, "ID-O1") == [("1", "ID-1", "ID-DC", 3, "current", None, "reserved")]

    again = reservation("ID-O1", "reserve-again", current("1", "ID-1", "ID-DC", 3))
    await env.run(ledger.reserve_stock, again)  # another step reserves again
    assert await stock_reserved(pg_dsn, "ID-1", "ID-DC") == 6


async def test_a_short_reservation_reserves_nothing_and_is_not_retried(
    ledger: InventoryActivities, pg_dsn: str
) -> None:
    await seed_stock(pg_dsn, "SH-1", "SH-DC", on_hand=5)
    await seed_stock(pg_dsn, "SH-2", "SH-DC", on_hand=4, reserved=3)
    request = reservation(
        "SH-O1",
        "reserve",
        current("1", "SH-1", "SH-DC", 5),  # fits
        current("2", "SH-2", "SH-DC", 2),  # only 1 free
    )

    with pytest.raises(ApplicationError) as raised:
        await env.run(ledger.reserve_stock, request)

    err = raised.value
    assert err.type == contracts.INSUFFICIENT_STOCK == "InsufficientStock"
    assert err.non_retryable
    assert "sku SH-2 at SH-DC: wanted 2, free 1" in err.message
    assert "SH-1" not in err.message
    assert err.details == (
        {"sku": "SH-2", "location": "SH-DC", "wanted": 2, "free": 1, "receipt_id": None},
    )
    assert await stock_reserved(pg_dsn, "SH-1", "SH-DC") == 0
    assert await stock_reserved(pg_dsn, "SH-2", "SH-DC") == 3
    assert await held(pg_dsn, "SH-O1") == []

    # The key was rolled back with the rest: once the units are back, the same step succeeds.
    await sql(pg_dsn, "UPDATE stock SET reserved = 0 WHERE sku = 'SH-2'")
    await env.run(ledger.reserve_stock, request)
    assert await stock_reserved(pg_dsn, "SH-1", "SH-DC") == 5
    assert await stock_reserved(pg_dsn, "SH-2", "SH-DC") == 2


async def test_allotments_of_one_stock_row_are_added_up(
    ledger: InventoryActivities, pg_dsn: str
) -> None:
    await seed_stock(pg_dsn, "SUM-1", "SUM-DC", on_hand=5)
    request = reservation(
        "SUM-O1", "reserve", current("1", "SUM-1", "SUM-DC", 3), current("2", "SUM-1", "SUM-DC", 3)
    )
    with pytest.raises(ApplicationError, match="wanted 6, free 5"):
        await env.run(ledger.reserve_stock, request)
    assert await stock_reserved(pg_dsn, "SUM-1", "SUM-DC") == 0


async def test_stock_nobody_has_ever_counted_is_short(
    ledger: InventoryActivities, pg_dsn: str
) -> None:
    request = reservation("NO-O1", "reserve", current("1", "NO-1", "NO-DC", 1))
    with pytest.raises(ApplicationError, match="sku NO-1 at NO-DC: wanted 1, free 0") as raised:
        await env.run(ledger.reserve_stock, request)
    assert raised.value.type == contracts.INSUFFICIENT_STOCK


async def test_concurrent_reservations_never_over_reserve(
    ledger: InventoryActivities, pg_dsn: str
) -> None:
    await seed_stock(pg_dsn, "CC-1", "CC-DC", on_hand=10)
    async with AsyncConnectionPool(pg_dsn, min_size=10, max_size=10, open=False) as pool:
        await pool.wait()
        racing = InventoryActivities(pool)
        results = await asyncio.gather(
            *(
                env.run(
                    racing.reserve_stock,
                    reservation(f"CC-O{i}", "reserve", current("1", "CC-1", "CC-DC", 1)),
                )
                for i in range(20)
            ),
            return_exceptions=True,
        )

    won = [r for r in results if isinstance(r, Empty)]
    lost = [r for r in results if isinstance(r, ApplicationError)]
    assert len(won) == 10 and len(lost) == 10, results
    assert all(e.type == contracts.INSUFFICIENT_STOCK for e in lost)
    assert await stock_reserved(pg_dsn, "CC-1", "CC-DC") == 10
    rows = await sql(pg_dsn, "SELECT sum(quantity) FROM reservations WHERE sku = 'CC-1'")
    assert rows == [(10,)]


async def test_reservations_taking_skus_in_opposite_orders_do_not_deadlock(
    ledger: InventoryActivities, pg_dsn: str
) -> None:
    await seed_stock(pg_dsn, "DL-A", "DL-DC", on_hand=100)
    await seed_stock(pg_dsn, "DL-B", "DL-DC", on_hand=100)
    await seed_receipt(pg_dsn, "DL-RA", "DL-A", "DL-DC", 100)
    await seed_receipt(pg_dsn, "DL-RB", "DL-B", "DL-DC", 100)
    a, b = current("1", "DL-A", "DL-DC", 1), current("2", "DL-B", "DL-DC", 1)
    ra, rb = future("3", "DL-A", "DL-DC", 1, "DL-RA"), future("4", "DL-B", "DL-DC", 1, "DL-RB")
    async with AsyncConnectionPool(pg_dsn, min_size=10, max_size=10, open=False) as pool:
        await pool.wait()
        racing = InventoryActivities(pool)
        results = await asyncio.gather(
            *(
                env.run(
                    racing.reserve_stock,
                    reservation(
                        f"DL-O{i}", "reserve", *((a, b, ra, rb) if i % 2 else (rb, ra, b, a))
                    ),
                )
                for i in range(30)
            ),
            return_exceptions=True,
        )
    assert all(isinstance(r, Empty) for r in results), results
    assert await stock_reserved(pg_dsn, "DL-A", "DL-DC") == 30
    assert await stock_reserved(pg_dsn, "DL-B", "DL-DC") == 30
    assert await receipt_reserved(pg_dsn, "DL-RA") == 30
    assert await receipt_reserved(pg_dsn, "DL-RB") == 30


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE stock SET reserved = on_hand + 1 WHERE sku = 'RAW-1'",
        "UPDATE stock SET on_hand = 3 WHERE sku = 'RAW-1'",  # below the 4 reserved
        "UPDATE stock SET on_hand = -1, reserved = 0 WHERE sku = 'RAW-1'",
        "UPDATE stock SET reserved = -1 WHERE sku = 'RAW-1'",
        "UPDATE future_receipts SET reserved = 11 WHERE receipt_id = 'RAW-R1'",
        "UPDATE future_receipts SET status = 'lost' WHERE receipt_id = 'RAW-R1'",
        # an open purchase order always has units to come; received units are never negative
        "UPDATE future_receipts SET quantity = 0 WHERE receipt_id = 'RAW-R1'",
        "UPDATE future_receipts SET received = -1 WHERE receipt_id = 'RAW-R1'",
    ],
)
async def test_the_database_refuses_over_reservation_from_raw_sql(
    pg_dsn: str, statement: str
) -> None:
    if not await sql(pg_dsn, "SELECT 1 FROM stock WHERE sku = 'RAW-1'"):
        await seed_stock(pg_dsn, "RAW-1", "RAW-DC", on_hand=5, reserved=4)
        await seed_receipt(pg_dsn, "RAW-R1", "RAW-1", "RAW-DC", 10)
    with pytest.raises(psycopg.errors.CheckViolation):
        await sql(pg_dsn, statement)
    assert await stock_reserved(pg_dsn, "RAW-1", "RAW-DC") == 4
    assert await receipt_reserved(pg_dsn, "RAW-R1") == 0


async def test_the_database_refuses_reservations_that_do_not_match_their_receipt(
    pg_dsn: str,
) -> None:
    await seed_receipt(pg_dsn, "FK-R1", "FK-1", "FK-DC", 10)
    insert = """INSERT INTO reservations (key, order_id, line_id, sku, location, quantity, source,
                                          receipt_id, state)
                VALUES ('backorder-FK/reserve', 'FK-O1', '1', %s, 'FK-DC', 1, %s, %s, 'reserved')"""
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await sql(pg_dsn, insert, "FK-OTHER", "future", "FK-R1")
    with pytest.raises(psycopg.errors.CheckViolation):
        await sql(pg_dsn, insert, "FK-1", "future", None)
    await sql(pg_dsn, insert, "FK-1", "future", "FK-R1")  # the matching row is accepted


async def test_release_frees_exactly_the_orders_own_reservation(
    ledger: InventoryActivities, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    await seed_stock(pg_dsn, "RL-1", "RL-DC", on_hand=10)
    mine = current("1", "RL-1", "RL-DC", 3)
    theirs = current("1", "RL-1", "RL-DC", 2)  # the same line id, in another order
    await env.run(ledger.reserve_stock, reservation("RL-O1", "reserve", mine))
    await env.run(ledger.reserve_stock, reservation("RL-O2", "reserve", theirs))
    assert await stock_reserved(pg_dsn, "RL-1", "RL-DC") == 5

    release = reservation("RL-O1", "release", mine)
    await env.run(ledger.release_stock, release)
    assert await stock_reserved(pg_dsn, "RL-1", "RL-DC") == 2
    assert await held(pg_dsn, "RL-O1") == [("1", "RL-1", "RL-DC", 3, "current", None, "released")]

    await env.run(ledger.release_stock, release)  # retried: nothing more is freed
    assert await stock_reserved(pg_dsn, "RL-1", "RL-DC") == 2

    # A new release of what the order no longer holds frees nothing, least of all RL-O2's units.
    with caplog.at_level(logging.WARNING, logger="temporalio.activity"):
        await env.run(ledger.release_stock, reservation("RL-O1", "release-again", mine))
    assert await stock_reserved(pg_dsn, "RL-1", "RL-DC") == 2
    assert await held(pg_dsn, "RL-O2") == [("1", "RL-1", "RL-DC", 2, "current", None, "reserved")]
    assert any("held 0 of 3" in r.getMessage() for r in caplog.records), caplog.records


async def test_release_splits_a_reservation_it_frees_in_part(
    ledger: InventoryActivities, pg_dsn: str
) -> None:
    await seed_stock(pg_dsn, "SP-1", "SP-DC", on_hand=10)
    await env.run(
        ledger.reserve_stock, reservation("SP-O1", "reserve", current("1", "SP-1", "SP-DC", 5))
    )
    await env.run(
        ledger.release_stock, reservation("SP-O1", "release", current("1", "SP-1", "SP-DC", 2))
    )
    assert await stock_reserved(pg_dsn, "SP-1", "SP-DC") == 3
    assert await held(pg_dsn, "SP-O1") == [
        ("1", "SP-1", "SP-DC", 2, "current", None, "released"),
        ("1", "SP-1", "SP-DC", 3, "current", None, "reserved"),
    ]

    # Releasing more than is left frees what is left, and no more.
    await env.run(
        ledger.release_stock, reservation("SP-O1", "release-2", current("1", "SP-1", "SP-DC", 9))
    )
    assert await stock_reserved(pg_dsn, "SP-1", "SP-DC") == 0
    rows = await sql(
        pg_dsn,
        "SELECT state, sum(quantity) FROM reservations WHERE order_id = 'SP-O1' GROUP BY state",
    )
    assert rows == [("released", 5)]


async def test_release_matches_line_and_location(ledger: InventoryActivities, pg_dsn: str) -> None:
    await seed_stock(pg_dsn, "LM-1", "LM-DC", on_hand=10)
    await seed_stock(pg_dsn, "LM-1", "LM-STORE", on_hand=10)
    await env.run(
        ledger.reserve_stock,
        reservation(
            "LM-O1",
            "reserve",
            current("1", "LM-1", "LM-DC", 2),
            current("2", "LM-1", "LM-STORE", 2),
        ),
    )
    await env.run(
        ledger.release_stock,
        reservation(
            "LM-O1",
            "release",
            current("2", "LM-1", "LM-DC", 2),  # line 2 holds nothing at LM-DC
            current("1", "LM-1", "LM-STORE", 2),  # line 1 holds nothing at LM-STORE
        ),
    )
    assert await stock_reserved(pg_dsn, "LM-1", "LM-DC") == 2
    assert await stock_reserved(pg_dsn, "LM-1", "LM-STORE") == 2


async def test_future_receipt_reservations(ledger: InventoryActivities, pg_dsn: str) -> None:
    await seed_receipt(pg_dsn, "FU-R1", "FU-1", "FU-DC", 10)
    await seed_receipt(pg_dsn, "FU-R2", "FU-1", "FU-DC", 10, status="cancelled")
    await seed_stock(pg_dsn, "FU-1", "FU-DC", on_hand=1)

    incoming = future("1", "FU-1", "FU-DC", 4, "FU-R1")
    await env.run(ledger.reserve_stock, reservation("FU-O1", "reserve", incoming))
    assert await receipt_reserved(pg_dsn, "FU-R1") == 4
    assert await stock_reserved(pg_dsn, "FU-1", "FU-DC") == 0  # on-hand stock is untouched
    assert await held(pg_dsn, "FU-O1") == [("1", "FU-1", "FU-DC", 4, "future", "FU-R1", "reserved")]

    ask = AvailabilityRequest(order_id="FU-O2", skus=("FU-1",), fulfillment=STH)
    receipts = (await env.run(ledger.check_availability, ask)).stock.receipts
    assert [(r.receipt_id, r.quantity) for r in receipts] == [("FU-R1", 6)]

    too_much = reservation("FU-O2", "reserve", future("1", "FU-1", "FU-DC", 7, "FU-R1"))
    with pytest.raises(ApplicationError, match=r"receipt FU-R1\): wanted 7, free 6") as raised:
        await env.run(ledger.reserve_stock, too_much)
    assert raised.value.type == contracts.INSUFFICIENT_STOCK and raised.value.non_retryable

    cancelled = reservation("FU-O2", "reserve-2", future("1", "FU-1", "FU-DC", 1, "FU-R2"))
    with pytest.raises(ApplicationError, match="wanted 1, free 0") as raised:
        await env.run(ledger.reserve_stock, cancelled)
    assert raised.value.type == contracts.INSUFFICIENT_STOCK
    assert await receipt_reserved(pg_dsn, "FU-R1") == 4

    # A current release of the same line does not free the future reservation.
    await env.run(
        ledger.release_stock, reservation("FU-O1", "release-1", current("1", "FU-1", "FU-DC", 4))
    )
    assert await receipt_reserved(pg_dsn, "FU-R1") == 4
    await env.run(ledger.release_stock, reservation("FU-O1", "release-2", incoming))
    assert await receipt_reserved(pg_dsn, "FU-R1") == 0


async def test_release_of_units_whose_receipt_arrived_frees_stock_on_hand(
    ledger: InventoryActivities, pg_dsn: str, pg_pool: AsyncConnectionPool
) -> None:
    """An order cancelled between the receipt's arrival and its hearing of it releases its
    future allotment: the units are on hand now, so the stock row gets them back."""
    await seed_receipt(pg_dsn, "AR-R1", "AR-1", "AR-DC", 5)
    incoming = future("1", "AR-1", "AR-DC", 3, "AR-R1")
    await env.run(ledger.reserve_stock, reservation("AR-O1", "reserve", incoming))
    async with pg_pool.connection() as conn, conn.transaction():
        received = FutureReceiptReceived(event_id="AR-E1", receipt_id="AR-R1")
        outcomes, _ = await apply_events(conn, [received], "AR-pass")
    assert [o.status.value for o in outcomes] == ["applied"]
    assert await stock_reserved(pg_dsn, "AR-1", "AR-DC") == 3

    await env.run(ledger.release_stock, reservation("AR-O1", "cancel", incoming))

    assert await stock_reserved(pg_dsn, "AR-1", "AR-DC") == 0
    assert await held(pg_dsn, "AR-O1") == [
        ("1", "AR-1", "AR-DC", 3, "current", "AR-R1", "released")
    ]


async def test_allotments_that_contradict_the_ledger_are_invalid(
    ledger: InventoryActivities, pg_dsn: str
) -> None:
    await seed_receipt(pg_dsn, "IV-R1", "IV-1", "IV-DC", 10)
    cases = [
        future("1", "IV-OTHER", "IV-DC", 1, "IV-R1"),  # the receipt is for another sku
        future("1", "IV-1", "IV-DC", 1, "IV-MISSING"),
        Allotment(line_id="1", sku="IV-1", quantity=1, location="IV-DC", source=StockSource.FUTURE),
    ]
    for i, allotment in enumerate(cases):
        with pytest.raises(ApplicationError) as raised:
            await env.run(ledger.reserve_stock, reservation("IV-O1", f"reserve-{i}", allotment))
        assert raised.value.type == contracts.INVALID_REQUEST and raised.value.non_retryable
    assert await receipt_reserved(pg_dsn, "IV-R1") == 0


async def test_a_key_belongs_to_one_activity_and_order(
    ledger: InventoryActivities, pg_dsn: str
) -> None:
    await seed_stock(pg_dsn, "KY-1", "KY-DC", on_hand=10)
    request = reservation("KY-O1", "reserve", current("1", "KY-1", "KY-DC", 1))
    await env.run(ledger.reserve_stock, request)
    with pytest.raises(ApplicationError, match="already used by reserve_stock") as raised:
        await env.run(ledger.release_stock, request)
    assert raised.value.type == contracts.INVALID_REQUEST
    other = request.model_copy(update={"order_id": "KY-O2"})
    with pytest.raises(ApplicationError, match="for order KY-O1"):
        await env.run(ledger.reserve_stock, other)
    assert await stock_reserved(pg_dsn, "KY-1", "KY-DC") == 1


def backorder(order_id: str, *lines: tuple[str, str, int], **update: Any) -> Backorder:
    fields: dict[str, Any] = {"placed_at": PLACED, "fulfillment": STH} | update
    return Backorder(
        order_id=order_id,
        lines=tuple(BackorderLine(line_id=ln, sku=sku, quantity=q) for ln, sku, q in lines),
        **fields,
    )


async def demand_rows(dsn: str, order_id: str) -> list[tuple[Any, ...]]:
    return await sql(
        dsn,
        """SELECT line_id, sku, quantity_open, tier, placed_at, fulfillment_type,
                  pickup_location, shipments, release_in_full
             FROM demand WHERE order_id = %s ORDER BY line_id""",
        order_id,
    )


async def test_update_demand_replaces_and_deletes(ledger: InventoryActivities, pg_dsn: str) -> None:
    first = DemandUpdate(
        key="backorder-DM-O1/demand/1",
        order_id="DM-O1",
        backorder=backorder("DM-O1", ("1", "DM-1", 3), ("2", "DM-2", 1), tier="gold"),
    )
    await env.run(ledger.update_demand, first)
    await env.run(  # another order's demand stays whatever DM-O1 does
        ledger.update_demand,
        DemandUpdate(
            key="backorder-DM-O2/demand/1",
            order_id="DM-O2",
            backorder=backorder("DM-O2", ("1", "DM-1", 5)),
        ),
    )
    assert await demand_rows(pg_dsn, "DM-O1") == [
        ("1", "DM-1", 3, "gold", PLACED, "sth", None, 0, False),
        ("2", "DM-2", 1, "gold", PLACED, "sth", None, 0, False),
    ]

    bopis = Fulfillment(type=FulfillmentType.PICKUP_IN_STORE, pickup_location="DM-STORE")
    second = DemandUpdate(
        key="backorder-DM-O1/demand/2",
        order_id="DM-O1",
        backorder=backorder(
            "DM-O1", ("2", "DM-2", 1), shipments=1, release_in_full=True, fulfillment=bopis
        ),
    )
    await env.run(ledger.update_demand, second)
    assert await demand_rows(pg_dsn, "DM-O1") == [
        ("2", "DM-2", 1, "standard", PLACED, "bopis", "DM-STORE", 1, True),
    ]

    await env.run(ledger.update_demand, first)  # a late retry of the first step changes nothing
    assert len(await demand_rows(pg_dsn, "DM-O1")) == 1

    gone = DemandUpdate(key="backorder-DM-O1/demand/3", order_id="DM-O1", backorder=None)
    await env.run(ledger.update_demand, gone)
    assert await demand_rows(pg_dsn, "DM-O1") == []
    assert [r[0] for r in await demand_rows(pg_dsn, "DM-O2")] == ["1"]

    wrong = DemandUpdate(
        key="backorder-DM-O3/demand/1",
        order_id="DM-O3",
        backorder=backorder("DM-O2", ("1", "DM-1", 1)),
    )
    with pytest.raises(ApplicationError) as raised:
        await env.run(ledger.update_demand, wrong)
    assert raised.value.type == contracts.INVALID_REQUEST


@pytest.fixture(scope="module", autouse=True)
async def _ledger_balances(pg_dsn: str) -> AsyncIterator[None]:
    """After every test of the module: stock.reserved and receipts' reserved are exactly the
    units the reservations hold (rows seeded as already reserved excepted)."""
    yield
    rows = await sql(
        pg_dsn,
        """SELECT s.sku, s.location, s.reserved, coalesce(sum(r.quantity), 0)
             FROM stock s
             LEFT JOIN reservations r
               ON r.sku = s.sku AND r.location = s.location
              AND r.source = 'current' AND r.state = 'reserved'
            WHERE s.sku NOT IN ('AV-1', 'SH-2', 'RAW-1')
            GROUP BY s.sku, s.location, s.reserved
           HAVING s.reserved <> coalesce(sum(r.quantity), 0)""",
    )
    assert rows == []
    rows = await sql(
        pg_dsn,
        """SELECT f.receipt_id, f.reserved, coalesce(sum(r.quantity), 0)
             FROM future_receipts f
             LEFT JOIN reservations r ON r.receipt_id = f.receipt_id AND r.state = 'reserved'
                                     AND r.source = 'future'
            WHERE f.receipt_id NOT IN ('AV-R1', 'AV-R2', 'FK-R1') AND f.status = 'open'
            GROUP BY f.receipt_id, f.reserved
           HAVING f.reserved <> coalesce(sum(r.quantity), 0)""",
    )
    assert rows == []


async def test_demand_written_while_stock_is_free_asks_the_allocator_for_a_pass(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """The lost wake-up: stock arrived after the order read it and before its demand was
    written, so the pass that handled the receipt did not see the order. Writing the demand
    notices the free units and asks for a pass at once, for those skus (a retry asks again);
    with nothing free it asks nothing."""
    asked: list[NudgeRequest] = []

    async def nudge(request: NudgeRequest) -> Empty:
        asked.append(request)
        return Empty()

    ledger = InventoryActivities(pg_pool, nudge)
    await seed_stock(pg_dsn, "LW-FREE", "LW-DC", 3)
    await seed_stock(pg_dsn, "LW-TAKEN", "LW-DC", 0)  # all gone
    waiting = backorder("LW-O1", ("1", "LW-FREE", 2), ("2", "LW-TAKEN", 1), ("3", "LW-NONE", 1))
    update = DemandUpdate(
        key="backorder-LW-O1/demand/1", order_id="LW-O1", backorder=waiting, site="north"
    )
    await env.run(ledger.update_demand, update)
    await env.run(ledger.update_demand, update)  # a retry after the first died
    taken = backorder("LW-O2", ("1", "LW-TAKEN", 1))
    await env.run(
        ledger.update_demand,
        DemandUpdate(key="backorder-LW-O2/demand/1", order_id="LW-O2", backorder=taken),
    )

    assert [(r.site, r.check.skus, r.check.order_ids) for r in asked] == [
        ("north", ("LW-FREE",), ("LW-O1",)),
        ("north", ("LW-FREE",), ("LW-O1",)),
    ]
    assert len(await demand_rows(pg_dsn, "LW-O1")) == 3  # written once
