"""The inventory feed applied to real PostgreSQL: each event kind's effect on the ledger, events
applied once, bad events rejected alone and not recorded, reserved units never taken, received
receipts turning promises into stock, purchase orders received in parts and closed short, the
notices orders get, and concurrent batches that queue instead of deadlocking. The database is
shared by this module, so every test uses its own skus, locations, receipt, event and order ids.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities import contracts
from activities.allocation import AllocationActivities
from activities.contracts import DemandUpdate, PassRequest, StockReservation
from activities.feed import FeedEffects, apply_events
from activities.inventory import InventoryActivities
from activities.ledger import read_stock
from config import Settings
from db.migrate import MIGRATIONS_DIR, migrate
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
from domain.order import Fulfillment, FulfillmentType
from domain.planner import Allotment, Backorder, BackorderLine
from domain.planner.plan import StockSource
from embedded.postgres import EmbeddedPostgres
from workflows.messages import AllotmentSignal, ReceiptChange

DEC_1 = dt.date(2026, 12, 1)
DEC_5 = dt.date(2026, 12, 5)
NOV_28 = dt.date(2026, 11, 28)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def sql(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement in its own transaction; its rows, if it returns any."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(query.encode(), params or None)
        return list(await cur.fetchall()) if cur.description else []


async def apply(
    pool: AsyncConnectionPool, events: Sequence[InventoryEvent], pass_id: str = "pass-1"
) -> tuple[list[EventOutcome], FeedEffects]:
    async with pool.connection() as conn, conn.transaction():
        return await apply_events(conn, events, pass_id)


async def plan(
    pool: AsyncConnectionPool, po: str, sku: str, loc: str, quantity: int, day: dt.date | None
) -> None:
    """A future receipt `po` of `quantity` units expected on `day`, applied on its own."""
    planned = FutureReceiptPlanned(
        event_id=uid("e"),
        receipt_id=po,
        sku=sku,
        location=loc,
        quantity=quantity,
        expected_date=day,
    )
    outcomes, _ = await apply(pool, [planned])
    assert statuses(outcomes) == [EventStatus.APPLIED]


def statuses(outcomes: Sequence[EventOutcome]) -> list[EventStatus]:
    return [o.status for o in outcomes]


async def define(pool: AsyncConnectionPool, sku: str, *locations: str) -> None:
    """The product and its locations, through the feed."""
    events: list[InventoryEvent] = [
        LocationDefined(event_id=uid("loc"), location_id=loc) for loc in locations
    ]
    events.append(ProductDefined(event_id=uid("prod"), sku=sku))
    outcomes, _ = await apply(pool, events)
    assert statuses(outcomes) == [EventStatus.APPLIED] * len(events)


async def stock(dsn: str, sku: str, location: str) -> tuple[int, int] | None:
    rows = await sql(
        dsn, "SELECT on_hand, reserved FROM stock WHERE sku = %s AND location = %s", sku, location
    )
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


async def movements(dsn: str, sku: str, location: str) -> list[tuple[Any, ...]]:
    """(event_id, delta, reason) of the stock row's movements, oldest first."""
    return await sql(
        dsn,
        """SELECT event_id, delta, reason FROM stock_movements
            WHERE sku = %s AND location = %s ORDER BY id""",
        sku,
        location,
    )


async def recorded(dsn: str, *event_ids: str) -> dict[str, tuple[Any, ...]]:
    """The recorded events among `event_ids`: event_id -> (kind, payload, pass_id)."""
    rows = await sql(
        dsn,
        "SELECT event_id, kind, payload, pass_id FROM inventory_events WHERE event_id = ANY(%s)",
        list(event_ids),
    )
    return {r[0]: tuple(r[1:]) for r in rows}


async def receipt(dsn: str, receipt_id: str) -> tuple[Any, ...]:
    """(sku, location, quantity, reserved, expected_date, status)"""
    rows = await sql(
        dsn,
        """SELECT sku, location, quantity, reserved, expected_date, status
             FROM future_receipts WHERE receipt_id = %s""",
        receipt_id,
    )
    assert len(rows) == 1, f"receipt {receipt_id}: {rows}"
    return rows[0]


async def reserve_on_receipt(
    dsn: str, receipt_id: str, order_id: str, quantity: int, *, released: bool = False
) -> None:
    """A future reservation of the receipt's units, as reserve_stock makes it (and the
    receipt's reserved count with it, unless it is already released)."""
    sku, location, *_ = await receipt(dsn, receipt_id)
    await sql(
        dsn,
        """INSERT INTO reservations (key, order_id, line_id, sku, location, quantity, source,
                                     receipt_id, state, released_key, released_at)
           VALUES (%s, %s, 'L1', %s, %s, %s, 'future', %s, %s, %s, %s)""",
        uid("key"),
        order_id,
        sku,
        location,
        quantity,
        receipt_id,
        "released" if released else "reserved",
        uid("rel") if released else None,
        dt.datetime.now(dt.UTC) if released else None,
    )
    if not released:
        await sql(
            dsn,
            "UPDATE future_receipts SET reserved = reserved + %s WHERE receipt_id = %s",
            quantity,
            receipt_id,
        )


async def reservations(dsn: str, receipt_id: str) -> list[tuple[Any, ...]]:
    """(order_id, quantity, source, receipt_id, state) of the receipt's reservations."""
    return await sql(
        dsn,
        """SELECT order_id, quantity, source, receipt_id, state FROM reservations
            WHERE receipt_id = %s ORDER BY order_id, state, quantity""",
        receipt_id,
    )


async def received_of(dsn: str, receipt_id: str) -> int:
    rows = await sql(dsn, "SELECT received FROM future_receipts WHERE receipt_id = %s", receipt_id)
    return int(rows[0][0])


async def assert_balanced(dsn: str, sku: str) -> None:
    """The ledger of `sku` balances: each stock row's on hand is the sum of its movements and
    its reserved the units current reservations hold; each receipt's reserved is the units its
    future reservations hold (while open, never more than is still to come) and what it
    received is what its receipts moved on hand."""
    for location, on_hand, reserved, moved, held in await sql(
        dsn,
        """SELECT s.location, s.on_hand, s.reserved,
                  (SELECT coalesce(sum(m.delta), 0) FROM stock_movements m
                    WHERE m.sku = s.sku AND m.location = s.location),
                  (SELECT coalesce(sum(r.quantity), 0) FROM reservations r
                    WHERE r.sku = s.sku AND r.location = s.location
                      AND r.state = 'reserved' AND r.source = 'current')
             FROM stock s WHERE s.sku = %s""",
        sku,
    ):
        assert (on_hand, reserved) == (moved, held), f"stock of {sku} at {location}"
        assert 0 <= reserved <= on_hand
    for receipt_id, status, quantity, reserved, received, held, moved in await sql(
        dsn,
        """SELECT f.receipt_id, f.status, f.quantity, f.reserved, f.received,
                  (SELECT coalesce(sum(r.quantity), 0) FROM reservations r
                    WHERE r.receipt_id = f.receipt_id
                      AND r.state = 'reserved' AND r.source = 'future'),
                  (SELECT coalesce(sum(m.delta), 0) FROM stock_movements m
                    WHERE m.sku = f.sku AND m.location = f.location
                      AND m.reason LIKE 'future receipt ' || f.receipt_id || ' received%%')
             FROM future_receipts f WHERE f.sku = %s""",
        sku,
    ):
        assert (reserved, received) == (held, moved), f"receipt {receipt_id}"
        if status == "open":
            assert 0 <= reserved <= quantity and quantity > 0, f"receipt {receipt_id}"
        if status == "received":
            assert (quantity, reserved) == (0, 0), f"receipt {receipt_id}"


# --- locations and products -----------------------------------------------------------------


async def test_location_and_product_events_upsert_and_are_recorded(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    loc, sku = uid("LOC"), uid("SKU")
    location = LocationDefined(event_id=uid("e"), location_id=loc, rank=3, pickup=True)
    product = ProductDefined(event_id=uid("e"), sku=sku, backorderable=False, insert=True)
    first: list[InventoryEvent] = [location, product]
    outcomes, effects = await apply(pg_pool, first, pass_id="pass-defs")
    assert statuses(outcomes) == [EventStatus.APPLIED, EventStatus.APPLIED]
    assert effects.skus == {sku}
    assert effects.notices == []
    assert await sql(pg_dsn, "SELECT rank, pickup FROM locations WHERE location_id = %s", loc) == [
        (3, True)
    ]
    assert await sql(
        pg_dsn,
        "SELECT backorderable, future_inventory, is_insert FROM products WHERE sku = %s",
        sku,
    ) == [(False, True, True)]
    rows = await recorded(pg_dsn, location.event_id, product.event_id)
    assert rows[location.event_id] == (
        "location",
        {
            "event_id": location.event_id,
            "occurred_at": None,
            "type": "location",
            "location_id": loc,
            "rank": 3,
            "pickup": True,
        },
        "pass-defs",
    )
    assert rows[product.event_id][0] == "product"
    assert rows[product.event_id][1]["backorderable"] is False

    again: list[InventoryEvent] = [
        LocationDefined(event_id=uid("e"), location_id=loc, rank=1, pickup=False),
        ProductDefined(event_id=uid("e"), sku=sku, future_inventory=False),
    ]
    outcomes, effects = await apply(pg_pool, again)
    assert statuses(outcomes) == [EventStatus.APPLIED, EventStatus.APPLIED]
    assert await sql(pg_dsn, "SELECT rank, pickup FROM locations WHERE location_id = %s", loc) == [
        (1, False)
    ]
    assert await sql(
        pg_dsn,
        "SELECT backorderable, future_inventory, is_insert FROM products WHERE sku = %s",
        sku,
    ) == [(True, False, False)]


# --- receipts and adjustments ----------------------------------------------------------------


async def test_receipts_add_stock_with_movements(pg_pool: AsyncConnectionPool, pg_dsn: str) -> None:
    sku, loc = uid("SKU"), uid("LOC")
    await define(pg_pool, sku, loc)
    events = [
        StockReceived(event_id=uid("e"), sku=sku, location=loc, quantity=7),
        StockReceived(event_id=uid("e"), sku=sku, location=loc, quantity=5, reason="return"),
    ]
    outcomes, effects = await apply(pg_pool, events, pass_id="pass-r")
    assert statuses(outcomes) == [EventStatus.APPLIED, EventStatus.APPLIED]
    assert [o.event_id for o in outcomes] == [e.event_id for e in events]
    assert effects.skus == {sku}
    assert await stock(pg_dsn, sku, loc) == (12, 0)
    assert await movements(pg_dsn, sku, loc) == [
        (events[0].event_id, 7, "receipt"),
        (events[1].event_id, 5, "return"),
    ]
    rows = await recorded(pg_dsn, *(e.event_id for e in events))
    assert {k: (v[0], v[2]) for k, v in rows.items()} == {
        e.event_id: ("receipt", "pass-r") for e in events
    }


async def test_definitions_earlier_in_the_batch_count(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc = uid("SKU"), uid("LOC")
    events: list[InventoryEvent] = [
        LocationDefined(event_id=uid("e"), location_id=loc),
        ProductDefined(event_id=uid("e"), sku=sku),
        StockReceived(event_id=uid("e"), sku=sku, location=loc, quantity=4),
        FutureReceiptPlanned(
            event_id=uid("e"), receipt_id=uid("PO"), sku=sku, location=loc, quantity=9
        ),
    ]
    outcomes, effects = await apply(pg_pool, events)
    assert statuses(outcomes) == [EventStatus.APPLIED] * 4
    assert effects.skus == {sku}
    assert await stock(pg_dsn, sku, loc) == (4, 0)


async def test_a_redelivered_event_is_applied_once(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc = uid("SKU"), uid("LOC")
    await define(pg_pool, sku, loc)
    event = StockReceived(event_id=uid("e"), sku=sku, location=loc, quantity=3)
    outcomes, _ = await apply(pg_pool, [event], pass_id="pass-a")
    assert statuses(outcomes) == [EventStatus.APPLIED]

    outcomes, effects = await apply(pg_pool, [event], pass_id="pass-b")
    assert outcomes == [EventOutcome(event_id=event.event_id, status=EventStatus.DUPLICATE)]
    assert effects.skus == set()
    assert await stock(pg_dsn, sku, loc) == (3, 0)
    assert len(await movements(pg_dsn, sku, loc)) == 1
    assert (await recorded(pg_dsn, event.event_id))[event.event_id][2] == "pass-a"

    # The same id twice in one call: the second is the redelivery.
    twice = StockReceived(event_id=uid("e"), sku=sku, location=loc, quantity=2)
    outcomes, _ = await apply(pg_pool, [twice, twice])
    assert statuses(outcomes) == [EventStatus.APPLIED, EventStatus.DUPLICATE]
    assert await stock(pg_dsn, sku, loc) == (5, 0)


async def test_a_rejected_event_leaves_its_neighbours_applied_and_is_not_recorded(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc, new_sku = uid("SKU"), uid("LOC"), uid("KTP")
    await define(pg_pool, sku, loc)
    bad = StockReceived(event_id=uid("e"), sku=new_sku, location=loc, quantity=6)
    events = [
        StockReceived(event_id=uid("e"), sku=sku, location=loc, quantity=2),
        bad,
        StockReceived(event_id=uid("e"), sku=sku, location=loc, quantity=3),
    ]
    outcomes, effects = await apply(pg_pool, events)
    assert statuses(outcomes) == [EventStatus.APPLIED, EventStatus.REJECTED, EventStatus.APPLIED]
    assert outcomes[1] == EventOutcome(
        event_id=bad.event_id,
        status=EventStatus.REJECTED,
        rejection=Rejection.UNKNOWN_SKU,
        reason=f"unknown sku {new_sku}: define the product first",
    )
    assert effects.skus == {sku}
    assert await stock(pg_dsn, sku, loc) == (5, 0)
    assert await stock(pg_dsn, new_sku, loc) is None
    assert await movements(pg_dsn, new_sku, loc) == []
    assert set(await recorded(pg_dsn, *(e.event_id for e in events))) == {
        events[0].event_id,
        events[2].event_id,
    }

    # Fixed (the product defined), the same event id is applied.
    await define(pg_pool, new_sku)
    outcomes, effects = await apply(pg_pool, [bad])
    assert statuses(outcomes) == [EventStatus.APPLIED]
    assert effects.skus == {new_sku}
    assert await stock(pg_dsn, new_sku, loc) == (6, 0)
    assert bad.event_id in await recorded(pg_dsn, bad.event_id)


async def test_unknown_sku_location_and_receipt_are_rejected(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc = uid("SKU"), uid("LOC")
    await define(pg_pool, sku, loc)
    ghost_sku, ghost_loc, ghost_po = uid("NOSKU"), uid("NOLOC"), uid("NOPO")
    events: list[InventoryEvent] = [
        StockReceived(event_id=uid("e"), sku=ghost_sku, location=loc, quantity=1),
        StockReceived(event_id=uid("e"), sku=sku, location=ghost_loc, quantity=1),
        StockAdjusted(event_id=uid("e"), sku=ghost_sku, location=loc, delta=4, reason="count"),
        StockAdjusted(event_id=uid("e"), sku=sku, location=ghost_loc, delta=-1, reason="count"),
        FutureReceiptPlanned(
            event_id=uid("e"), receipt_id=uid("PO"), sku=ghost_sku, location=loc, quantity=1
        ),
        FutureReceiptPlanned(
            event_id=uid("e"), receipt_id=uid("PO"), sku=sku, location=ghost_loc, quantity=1
        ),
        FutureReceiptUpdated(event_id=uid("e"), receipt_id=ghost_po, quantity=3),
        FutureReceiptCancelled(event_id=uid("e"), receipt_id=ghost_po),
        FutureReceiptReceived(event_id=uid("e"), receipt_id=ghost_po),
    ]
    outcomes, effects = await apply(pg_pool, events)
    assert [(o.status, o.rejection) for o in outcomes] == [
        (EventStatus.REJECTED, Rejection.UNKNOWN_SKU),
        (EventStatus.REJECTED, Rejection.UNKNOWN_LOCATION),
        (EventStatus.REJECTED, Rejection.UNKNOWN_SKU),
        (EventStatus.REJECTED, Rejection.UNKNOWN_LOCATION),
        (EventStatus.REJECTED, Rejection.UNKNOWN_SKU),
        (EventStatus.REJECTED, Rejection.UNKNOWN_LOCATION),
        (EventStatus.REJECTED, Rejection.UNKNOWN_RECEIPT),
        (EventStatus.REJECTED, Rejection.UNKNOWN_RECEIPT),
        (EventStatus.REJECTED, Rejection.UNKNOWN_RECEIPT),
    ]
    assert outcomes[1].reason == f"unknown location {ghost_loc}: define the location first"
    assert outcomes[6].reason is not None and ghost_po in outcomes[6].reason
    assert effects == FeedEffects()
    assert await recorded(pg_dsn, *(e.event_id for e in events)) == {}
    assert await sql(pg_dsn, "SELECT count(*) FROM stock WHERE sku = %s", ghost_sku) == [(0,)]
    assert await sql(
        pg_dsn,
        "SELECT count(*) FROM future_receipts WHERE sku = %s OR location = %s",
        ghost_sku,
        ghost_loc,
    ) == [(0,)]


async def test_adjustments_add_and_remove_free_units(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc = uid("SKU"), uid("LOC")
    await define(pg_pool, sku, loc)
    up = StockAdjusted(event_id=uid("e"), sku=sku, location=loc, delta=10, reason="cycle count")
    down = StockAdjusted(event_id=uid("e"), sku=sku, location=loc, delta=-4, reason="damaged")
    outcomes, effects = await apply(pg_pool, [up, down])
    assert statuses(outcomes) == [EventStatus.APPLIED, EventStatus.APPLIED]
    assert effects.skus == {sku}
    assert await stock(pg_dsn, sku, loc) == (6, 0)
    assert await movements(pg_dsn, sku, loc) == [
        (up.event_id, 10, "cycle count"),
        (down.event_id, -4, "damaged"),
    ]
    # Down to zero is fine when nothing is reserved.
    outcomes, _ = await apply(
        pg_pool, [StockAdjusted(event_id=uid("e"), sku=sku, location=loc, delta=-6, reason="x")]
    )
    assert statuses(outcomes) == [EventStatus.APPLIED]
    assert await stock(pg_dsn, sku, loc) == (0, 0)


async def test_a_negative_adjustment_never_takes_reserved_units(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc, empty_loc = uid("KTP"), uid("DC"), uid("STORE")
    await define(pg_pool, sku, loc, empty_loc)
    await apply(pg_pool, [StockReceived(event_id=uid("e"), sku=sku, location=loc, quantity=8)])
    await sql(pg_dsn, "UPDATE stock SET reserved = 6 WHERE sku = %s AND location = %s", sku, loc)

    too_much = StockAdjusted(event_id=uid("e"), sku=sku, location=loc, delta=-5, reason="lost")
    below_zero = StockAdjusted(event_id=uid("e"), sku=sku, location=loc, delta=-9, reason="lost")
    nothing_there = StockAdjusted(
        event_id=uid("e"), sku=sku, location=empty_loc, delta=-1, reason="lost"
    )
    fits = StockAdjusted(event_id=uid("e"), sku=sku, location=loc, delta=-2, reason="lost")
    outcomes, effects = await apply(pg_pool, [too_much, below_zero, nothing_there, fits])
    assert [(o.status, o.rejection) for o in outcomes] == [
        (EventStatus.REJECTED, Rejection.WOULD_TAKE_RESERVED),
        (EventStatus.REJECTED, Rejection.WOULD_TAKE_RESERVED),
        (EventStatus.REJECTED, Rejection.WOULD_TAKE_RESERVED),
        (EventStatus.APPLIED, None),
    ]
    assert (
        outcomes[0].reason
        == f"adjustment of -5 {sku} at {loc} would leave 3 on hand with 6 reserved"
    )
    assert (
        outcomes[1].reason
        == f"adjustment of -9 {sku} at {loc} would leave -1 on hand: only 8 there"
    )
    assert outcomes[2].reason == f"adjustment of -1 {sku} at {empty_loc}: there is no stock there"
    assert effects.skus == {sku}
    assert await stock(pg_dsn, sku, loc) == (6, 6)
    assert await stock(pg_dsn, sku, empty_loc) is None
    assert [m[1:] for m in await movements(pg_dsn, sku, loc)] == [(8, "receipt"), (-2, "lost")]
    assert (await movements(pg_dsn, sku, loc))[-1][0] == fits.event_id
    assert set(await recorded(pg_dsn, too_much.event_id, below_zero.event_id, fits.event_id)) == {
        fits.event_id
    }

    # Alone in its batch, the rejected adjustment changes nothing either.
    outcomes, effects = await apply(pg_pool, [too_much])
    assert statuses(outcomes) == [EventStatus.REJECTED]
    assert effects == FeedEffects()
    assert await stock(pg_dsn, sku, loc) == (6, 6)


# --- future receipts -----------------------------------------------------------------------


async def test_a_planned_future_receipt_is_inserted_once(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc = uid("SKU"), uid("LOC")
    await define(pg_pool, sku, loc)
    dated, undated = uid("PO"), uid("PO")
    events: list[InventoryEvent] = [
        FutureReceiptPlanned(
            event_id=uid("e"),
            receipt_id=dated,
            sku=sku,
            location=loc,
            quantity=20,
            expected_date=DEC_1,
        ),
        FutureReceiptPlanned(
            event_id=uid("e"), receipt_id=undated, sku=sku, location=loc, quantity=5
        ),
        FutureReceiptPlanned(
            event_id=uid("e"),
            receipt_id=dated,
            sku=sku,
            location=loc,
            quantity=30,
            expected_date=DEC_5,
        ),
    ]
    outcomes, effects = await apply(pg_pool, events)
    assert [(o.status, o.rejection) for o in outcomes] == [
        (EventStatus.APPLIED, None),
        (EventStatus.APPLIED, None),
        (EventStatus.REJECTED, Rejection.RECEIPT_EXISTS),
    ]
    assert outcomes[2].reason == (
        f"future receipt {dated} already exists (sku {sku} at {loc}, open):"
        " use future_receipt_update to change it"
    )
    assert effects.skus == {sku}
    assert await receipt(pg_dsn, dated) == (sku, loc, 20, 0, DEC_1, "open")
    assert await receipt(pg_dsn, undated) == (sku, loc, 5, 0, None, "open")
    assert await stock(pg_dsn, sku, loc) is None  # promised units are not on hand


async def test_a_future_receipt_update_changes_quantity_and_date(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc, po, undated = uid("SKU"), uid("LOC"), uid("PO"), uid("PO")
    await define(pg_pool, sku, loc)
    await apply(
        pg_pool,
        [
            FutureReceiptPlanned(
                event_id=uid("e"),
                receipt_id=po,
                sku=sku,
                location=loc,
                quantity=10,
                expected_date=DEC_1,
            ),
            FutureReceiptPlanned(
                event_id=uid("e"), receipt_id=undated, sku=sku, location=loc, quantity=10
            ),
        ],
    )
    order = uid("ORD")
    await reserve_on_receipt(pg_dsn, po, order, 4)
    await reserve_on_receipt(pg_dsn, undated, order, 2)

    events: list[InventoryEvent] = [
        FutureReceiptUpdated(event_id=uid("e"), receipt_id=po, quantity=3),
        FutureReceiptUpdated(event_id=uid("e"), receipt_id=po, quantity=4, expected_date=NOV_28),
        FutureReceiptUpdated(event_id=uid("e"), receipt_id=undated, expected_date=DEC_5),
    ]
    outcomes, effects = await apply(pg_pool, events)
    assert [(o.status, o.rejection) for o in outcomes] == [
        (EventStatus.REJECTED, Rejection.WOULD_TAKE_RESERVED),
        (EventStatus.APPLIED, None),
        (EventStatus.APPLIED, None),
    ]
    assert outcomes[0].reason == (
        f"4 units of future receipt {po} are promised to orders;"
        " the new quantity 3 cannot be below that"
    )
    assert effects.skus == {sku}
    # Earlier, or a first date: good news, nobody is told.
    assert effects.notices == []
    assert await receipt(pg_dsn, po) == (sku, loc, 4, 4, NOV_28, "open")
    assert await receipt(pg_dsn, undated) == (sku, loc, 10, 2, DEC_5, "open")


async def test_a_slipped_receipt_tells_each_holding_order_once(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc, po = uid("SKU"), uid("LOC"), uid("PO")
    await define(pg_pool, sku, loc)
    await plan(pg_pool, po, sku, loc, 10, DEC_1)
    b, a, gone = "B-" + uid("o"), "A-" + uid("o"), uid("GONE")
    await reserve_on_receipt(pg_dsn, po, b, 2)
    await reserve_on_receipt(pg_dsn, po, a, 1)
    await reserve_on_receipt(pg_dsn, po, a, 3)  # a second row of the same order
    await reserve_on_receipt(pg_dsn, po, gone, 2, released=True)

    outcomes, effects = await apply(
        pg_pool,
        [
            FutureReceiptUpdated(event_id=uid("e"), receipt_id=po, expected_date=DEC_5),
            FutureReceiptUpdated(
                event_id=uid("e"), receipt_id=po, expected_date=dt.date(2026, 12, 20)
            ),
        ],
    )
    assert statuses(outcomes) == [EventStatus.APPLIED, EventStatus.APPLIED]
    assert effects.notices == [
        ReceiptNotice(order_id=a, receipt_id=po, status=ReceiptStatus.SLIPPED),
        ReceiptNotice(order_id=b, receipt_id=po, status=ReceiptStatus.SLIPPED),
    ]
    assert (await receipt(pg_dsn, po))[4] == dt.date(2026, 12, 20)

    # A slip and then the arrival in one batch: the order hears the latest news only.
    outcomes, effects = await apply(
        pg_pool,
        [
            FutureReceiptUpdated(
                event_id=uid("e"), receipt_id=po, expected_date=dt.date(2026, 12, 24)
            ),
            FutureReceiptReceived(event_id=uid("e"), receipt_id=po),
        ],
    )
    assert statuses(outcomes) == [EventStatus.APPLIED, EventStatus.APPLIED]
    assert effects.notices == [
        ReceiptNotice(order_id=a, receipt_id=po, status=ReceiptStatus.ARRIVED),
        ReceiptNotice(order_id=b, receipt_id=po, status=ReceiptStatus.ARRIVED),
    ]


async def test_a_cancelled_receipt_tells_its_orders_and_keeps_their_reservations(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc, po = uid("SKU"), uid("LOC"), uid("PO")
    await define(pg_pool, sku, loc)
    await plan(pg_pool, po, sku, loc, 10, DEC_1)
    order = uid("ORD")
    await reserve_on_receipt(pg_dsn, po, order, 3)

    cancel = FutureReceiptCancelled(event_id=uid("e"), receipt_id=po)
    outcomes, effects = await apply(pg_pool, [cancel])
    assert statuses(outcomes) == [EventStatus.APPLIED]
    assert effects.skus == {sku}
    assert effects.notices == [
        ReceiptNotice(order_id=order, receipt_id=po, status=ReceiptStatus.CANCELLED)
    ]
    assert await receipt(pg_dsn, po) == (sku, loc, 10, 3, DEC_1, "cancelled")
    assert await reservations(pg_dsn, po) == [(order, 3, "future", po, "reserved")]

    closed: list[InventoryEvent] = [
        FutureReceiptCancelled(event_id=uid("e"), receipt_id=po),
        FutureReceiptUpdated(event_id=uid("e"), receipt_id=po, quantity=12),
        FutureReceiptReceived(event_id=uid("e"), receipt_id=po),
    ]
    outcomes, effects = await apply(pg_pool, closed)
    assert [o.rejection for o in outcomes] == [Rejection.RECEIPT_CLOSED] * 3
    assert outcomes[0].reason == (f"future receipt {po} (sku {sku} at {loc}) was already cancelled")
    assert effects == FeedEffects()
    assert await receipt(pg_dsn, po) == (sku, loc, 10, 3, DEC_1, "cancelled")
    assert await stock(pg_dsn, sku, loc) is None


async def test_a_received_receipt_turns_its_promises_into_stock(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc, po = uid("SKU"), uid("LOC"), uid("PO")
    await define(pg_pool, sku, loc)
    await apply(
        pg_pool,
        [
            StockReceived(event_id=uid("e"), sku=sku, location=loc, quantity=3),
            FutureReceiptPlanned(
                event_id=uid("e"),
                receipt_id=po,
                sku=sku,
                location=loc,
                quantity=10,
                expected_date=DEC_1,
            ),
        ],
    )
    await sql(pg_dsn, "UPDATE stock SET reserved = 1 WHERE sku = %s AND location = %s", sku, loc)
    o1, o2, gone = "A-" + uid("o"), "B-" + uid("o"), "C-" + uid("o")
    await reserve_on_receipt(pg_dsn, po, o2, 4)
    await reserve_on_receipt(pg_dsn, po, o1, 2)
    await reserve_on_receipt(pg_dsn, po, gone, 5, released=True)

    received = FutureReceiptReceived(event_id=uid("e"), receipt_id=po)
    outcomes, effects = await apply(pg_pool, [received])
    assert statuses(outcomes) == [EventStatus.APPLIED]
    assert effects.skus == {sku}
    assert effects.notices == [
        ReceiptNotice(order_id=o1, receipt_id=po, status=ReceiptStatus.ARRIVED),
        ReceiptNotice(order_id=o2, receipt_id=po, status=ReceiptStatus.ARRIVED),
    ]
    assert await stock(pg_dsn, sku, loc) == (3 + 10, 1 + 6)
    # Nothing is still to come, nothing is promised on it: the promises are stock reservations.
    assert await receipt(pg_dsn, po) == (sku, loc, 0, 0, DEC_1, "received")
    assert await received_of(pg_dsn, po) == 10
    assert await reservations(pg_dsn, po) == [
        (o1, 2, "current", po, "reserved"),
        (o2, 4, "current", po, "reserved"),
        (gone, 5, "future", po, "released"),
    ]
    assert (await movements(pg_dsn, sku, loc))[-1] == (
        received.event_id,
        10,
        f"future receipt {po} received",
    )
    # The ledger's invariants still hold, and reserved matches the reservations that hold it.
    assert await sql(
        pg_dsn,
        "SELECT count(*) FROM stock WHERE sku = %s AND (reserved > on_hand OR on_hand < 0)",
        sku,
    ) == [(0,)]
    assert await sql(
        pg_dsn,
        """SELECT coalesce(sum(quantity), 0) FROM reservations
            WHERE sku = %s AND location = %s AND state = 'reserved' AND source = 'current'""",
        sku,
        loc,
    ) == [(6,)]

    outcomes, _ = await apply(pg_pool, [FutureReceiptReceived(event_id=uid("e"), receipt_id=po)])
    assert [o.rejection for o in outcomes] == [Rejection.RECEIPT_CLOSED]
    assert await stock(pg_dsn, sku, loc) == (13, 7)


async def test_a_part_smaller_than_a_promise_keeps_units_for_it_and_tells_it_nothing(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """7 of 10 units promised to one order, 6 arrive: the promise does not fit, so the order
    hears nothing and keeps it; the rest (4) cannot hold the 7, so 3 of the 6 stay reserved
    for the order on hand (never more promised on a receipt than is still to come)."""
    sku, loc, po = uid("SKU"), uid("LOC"), uid("PO")
    await define(pg_pool, sku, loc)
    await plan(pg_pool, po, sku, loc, 10, DEC_1)
    order = uid("ORD")
    await reserve_on_receipt(pg_dsn, po, order, 7)

    part = FutureReceiptReceived(event_id=uid("e"), receipt_id=po, quantity=6)
    outcomes, effects = await apply(pg_pool, [part])
    assert statuses(outcomes) == [EventStatus.APPLIED]
    assert effects.notices == []
    assert effects.skus == {sku}
    assert await stock(pg_dsn, sku, loc) == (6, 3)  # 3 free for the pass that follows
    assert await receipt(pg_dsn, po) == (sku, loc, 4, 4, DEC_1, "open")
    assert await reservations(pg_dsn, po) == [
        (order, 3, "current", po, "reserved"),
        (order, 4, "future", po, "reserved"),
    ]
    assert (await movements(pg_dsn, sku, loc))[-1] == (
        part.event_id,
        6,
        f"future receipt {po} received in part, 4 still to come",
    )
    await assert_balanced(pg_dsn, sku)

    # The rest arrives: the order's promise is all on hand now, and it is told.
    rest = FutureReceiptReceived(event_id=uid("e"), receipt_id=po)
    outcomes, effects = await apply(pg_pool, [rest])
    assert statuses(outcomes) == [EventStatus.APPLIED]
    assert effects.notices == [
        ReceiptNotice(order_id=order, receipt_id=po, status=ReceiptStatus.ARRIVED)
    ]
    assert await stock(pg_dsn, sku, loc) == (10, 7)
    assert await receipt(pg_dsn, po) == (sku, loc, 0, 0, DEC_1, "received")
    assert await reservations(pg_dsn, po) == [
        (order, 3, "current", po, "reserved"),
        (order, 4, "current", po, "reserved"),
    ]
    await assert_balanced(pg_dsn, sku)


async def test_a_receipt_planned_and_received_in_one_batch(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc, po = uid("SKU"), uid("LOC"), uid("PO")
    await define(pg_pool, sku, loc)
    outcomes, effects = await apply(
        pg_pool,
        [
            FutureReceiptPlanned(
                event_id=uid("e"), receipt_id=po, sku=sku, location=loc, quantity=10
            ),
            FutureReceiptReceived(event_id=uid("e"), receipt_id=po, quantity=12),
            FutureReceiptReceived(event_id=uid("e"), receipt_id=po, quantity=10),
        ],
    )
    assert [(o.status, o.rejection) for o in outcomes] == [
        (EventStatus.APPLIED, None),
        (EventStatus.REJECTED, Rejection.OVER_RECEIPT),
        (EventStatus.APPLIED, None),
    ]
    assert effects.notices == []
    assert await stock(pg_dsn, sku, loc) == (10, 0)
    assert (await receipt(pg_dsn, po))[5] == "received"
    await assert_balanced(pg_dsn, sku)


# --- purchase orders received in parts and closed short ----------------------------------------

activity_env = ActivityEnvironment()


def on_po(order_id: str, step: str, sku: str, loc: str, po: str, units: int) -> StockReservation:
    """The order's future allotment of `units` from `po`, as its workflow reserves and frees it."""
    allotment = Allotment(
        line_id="L1",
        sku=sku,
        quantity=units,
        location=loc,
        source=StockSource.FUTURE,
        expected_date=DEC_1,
        receipt_id=po,
    )
    return StockReservation(
        key=contracts.step_key(f"backorder-{order_id}", step),
        order_id=order_id,
        allotments=(allotment,),
    )


async def promise(
    pool: AsyncConnectionPool, order_id: str, sku: str, loc: str, po: str, units: int
) -> None:
    """What an allocation pass does: reserve `units` of the receipt for the order."""
    request = on_po(order_id, "reserve", sku, loc, po, units)
    await activity_env.run(InventoryActivities(pool).reserve_stock, request)


async def give_back(
    pool: AsyncConnectionPool, order_id: str, sku: str, loc: str, po: str, units: int
) -> None:
    """What the order workflow does when told the receipt was cancelled: free its allotment."""
    request = on_po(order_id, f"receipt-{po}-cancelled/S1/release-stock", sku, loc, po, units)
    await activity_env.run(InventoryActivities(pool).release_stock, request)


async def offered(pool: AsyncConnectionPool, sku: str) -> tuple[list[int], list[int]]:
    """What the allocator's pass reads for the planner: free units on hand, and of open
    receipts (what is still to come and not promised)."""
    async with pool.connection() as conn:
        stock_now, _ = await read_stock(conn, [sku])
    return [s.quantity for s in stock_now.on_hand], [r.quantity for r in stock_now.receipts]


def received(po: str, quantity: int | None = None) -> FutureReceiptReceived:
    return FutureReceiptReceived(event_id=uid("e"), receipt_id=po, quantity=quantity)


async def test_a_purchase_order_received_in_two_parts_keeps_every_promise(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """PO of 25: A was promised 10 first, then B 15. 10 arrive: A's promise is all on hand
    (A is told), B keeps its 15 on the open rest. The 15 arrive: B is told. The same event
    again changes nothing."""
    sku, loc, po = uid("SKU"), uid("LOC"), uid("PO")
    await define(pg_pool, sku, loc)
    await plan(pg_pool, po, sku, loc, 25, DEC_1)
    a, b = "B-" + uid("o"), "A-" + uid("o")  # ids sort against the order of their promises
    await promise(pg_pool, a, sku, loc, po, 10)
    await promise(pg_pool, b, sku, loc, po, 15)

    first = received(po, 10)
    outcomes, effects = await apply(pg_pool, [first])
    assert statuses(outcomes) == [EventStatus.APPLIED]
    assert effects.skus == {sku}
    assert effects.notices == [
        ReceiptNotice(order_id=a, receipt_id=po, status=ReceiptStatus.ARRIVED)
    ]
    assert await stock(pg_dsn, sku, loc) == (10, 10)
    assert await receipt(pg_dsn, po) == (sku, loc, 15, 15, DEC_1, "open")  # date kept
    assert await received_of(pg_dsn, po) == 10
    assert await reservations(pg_dsn, po) == [
        (b, 15, "future", po, "reserved"),
        (a, 10, "current", po, "reserved"),
    ]
    assert await offered(pg_pool, sku) == ([], [])  # all of it promised, on hand or to come
    await assert_balanced(pg_dsn, sku)

    outcomes, effects = await apply(pg_pool, [first], pass_id="pass-again")
    assert statuses(outcomes) == [EventStatus.DUPLICATE]
    assert effects == FeedEffects()
    assert await stock(pg_dsn, sku, loc) == (10, 10)
    assert await receipt(pg_dsn, po) == (sku, loc, 15, 15, DEC_1, "open")
    assert len(await movements(pg_dsn, sku, loc)) == 1

    rest = received(po)  # everything still to come
    outcomes, effects = await apply(pg_pool, [rest])
    assert statuses(outcomes) == [EventStatus.APPLIED]
    assert effects.notices == [
        ReceiptNotice(order_id=b, receipt_id=po, status=ReceiptStatus.ARRIVED)
    ]
    assert await stock(pg_dsn, sku, loc) == (25, 25)
    assert await receipt(pg_dsn, po) == (sku, loc, 0, 0, DEC_1, "received")
    assert await received_of(pg_dsn, po) == 25
    assert [m[1:] for m in await movements(pg_dsn, sku, loc)] == [
        (10, f"future receipt {po} received in part, 15 still to come"),
        (15, f"future receipt {po} received"),
    ]
    await assert_balanced(pg_dsn, sku)


async def test_a_part_serves_whole_promises_first_promised_first_and_the_rest_is_free(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """PO of 30: A promised 15 first, then B 6 and C 3; 6 promised to no one. 12 arrive: A's
    15 do not fit, B's and C's do; the 3 left are free stock for the pass, and the open rest
    (18) still holds A's 15 and offers 3."""
    sku, loc, po = uid("SKU"), uid("LOC"), uid("PO")
    await define(pg_pool, sku, loc)
    await plan(pg_pool, po, sku, loc, 30, DEC_1)
    a, b, c = "A-" + uid("o"), "B-" + uid("o"), "C-" + uid("o")
    await promise(pg_pool, a, sku, loc, po, 15)
    await promise(pg_pool, b, sku, loc, po, 6)
    await promise(pg_pool, c, sku, loc, po, 3)

    outcomes, effects = await apply(pg_pool, [received(po, 12)])
    assert statuses(outcomes) == [EventStatus.APPLIED]
    assert effects.notices == [
        ReceiptNotice(order_id=b, receipt_id=po, status=ReceiptStatus.ARRIVED),
        ReceiptNotice(order_id=c, receipt_id=po, status=ReceiptStatus.ARRIVED),
    ]
    assert await stock(pg_dsn, sku, loc) == (12, 9)
    assert await receipt(pg_dsn, po) == (sku, loc, 18, 15, DEC_1, "open")
    assert await reservations(pg_dsn, po) == [
        (a, 15, "future", po, "reserved"),
        (b, 6, "current", po, "reserved"),
        (c, 3, "current", po, "reserved"),
    ]
    assert await offered(pg_pool, sku) == ([3], [3])
    await assert_balanced(pg_dsn, sku)


async def test_a_purchase_order_closed_short_sends_its_waiting_orders_back(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """PO of 25 (A 10 first, B 15): 10 arrive, then the supplier closes it. A keeps its
    units on hand; B is told the receipt is cancelled, and its release leaves the ledger
    balanced, the PO's promises at 0 and its 15 missing units for the record."""
    sku, loc, po = uid("SKU"), uid("LOC"), uid("PO")
    await define(pg_pool, sku, loc)
    await plan(pg_pool, po, sku, loc, 25, DEC_1)
    a, b = "A-" + uid("o"), "B-" + uid("o")
    await promise(pg_pool, a, sku, loc, po, 10)
    await promise(pg_pool, b, sku, loc, po, 15)
    await apply(pg_pool, [received(po, 10)])

    close = FutureReceiptClosed(event_id=uid("e"), receipt_id=po, reason="supplier short")
    outcomes, effects = await apply(pg_pool, [close], pass_id="pass-close")
    assert statuses(outcomes) == [EventStatus.APPLIED]
    assert effects.skus == {sku}
    assert effects.notices == [
        ReceiptNotice(order_id=b, receipt_id=po, status=ReceiptStatus.CANCELLED)
    ]
    # Until B gives them back, the PO counts B's promises; it offers nothing to anyone.
    assert await receipt(pg_dsn, po) == (sku, loc, 15, 15, DEC_1, "closed")
    assert await offered(pg_pool, sku) == ([], [])
    payload = (await recorded(pg_dsn, close.event_id))[close.event_id]
    assert payload[0] == "future_receipt_close" and payload[1]["reason"] == "supplier short"
    assert await stock(pg_dsn, sku, loc) == (10, 10)  # no stock moves

    await give_back(pg_pool, b, sku, loc, po, 15)
    assert await receipt(pg_dsn, po) == (sku, loc, 15, 0, DEC_1, "closed")
    assert await received_of(pg_dsn, po) == 10
    assert await reservations(pg_dsn, po) == [
        (a, 10, "current", po, "reserved"),
        (b, 15, "future", po, "released"),
    ]
    assert await stock(pg_dsn, sku, loc) == (10, 10)
    await assert_balanced(pg_dsn, sku)

    outcomes, _ = await apply(pg_pool, [close])
    assert statuses(outcomes) == [EventStatus.DUPLICATE]


async def test_units_kept_for_an_order_on_a_po_closed_short_go_free_when_it_gives_them_back(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """PO of 25 (A 10 first, B 15): 12 arrive. A is served; B's 15 do not fit, and the rest
    (13) cannot hold them, so 2 of the 12 stay reserved for B on hand. The PO is closed: B is
    told, and its release frees the 13 promised on the PO and the 2 on hand."""
    sku, loc, po = uid("SKU"), uid("LOC"), uid("PO")
    await define(pg_pool, sku, loc)
    await plan(pg_pool, po, sku, loc, 25, DEC_1)
    a, b = "A-" + uid("o"), "B-" + uid("o")
    await promise(pg_pool, a, sku, loc, po, 10)
    await promise(pg_pool, b, sku, loc, po, 15)

    outcomes, effects = await apply(pg_pool, [received(po, 12)])
    assert statuses(outcomes) == [EventStatus.APPLIED]
    assert effects.notices == [
        ReceiptNotice(order_id=a, receipt_id=po, status=ReceiptStatus.ARRIVED)
    ]
    assert await stock(pg_dsn, sku, loc) == (12, 12)
    assert await receipt(pg_dsn, po) == (sku, loc, 13, 13, DEC_1, "open")
    assert await reservations(pg_dsn, po) == [
        (a, 10, "current", po, "reserved"),
        (b, 2, "current", po, "reserved"),
        (b, 13, "future", po, "reserved"),
    ]
    await assert_balanced(pg_dsn, sku)

    outcomes, effects = await apply(
        pg_pool, [FutureReceiptClosed(event_id=uid("e"), receipt_id=po)]
    )
    assert statuses(outcomes) == [EventStatus.APPLIED]
    assert effects.notices == [
        ReceiptNotice(order_id=b, receipt_id=po, status=ReceiptStatus.CANCELLED)
    ]
    await give_back(pg_pool, b, sku, loc, po, 15)
    assert await stock(pg_dsn, sku, loc) == (12, 10)
    assert await receipt(pg_dsn, po) == (sku, loc, 13, 0, DEC_1, "closed")
    assert await offered(pg_pool, sku) == ([2], [])
    await assert_balanced(pg_dsn, sku)


async def test_more_than_is_still_to_come_is_rejected(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc, po, small = uid("SKU"), uid("LOC"), uid("PO"), uid("PO")
    await define(pg_pool, sku, loc)
    await plan(pg_pool, po, sku, loc, 25, DEC_1)
    await plan(pg_pool, small, sku, loc, 5, DEC_1)
    await apply(pg_pool, [received(po, 10)])

    events = [received(po, 16), received(small, 6)]
    outcomes, effects = await apply(pg_pool, events)
    assert outcomes == [
        EventOutcome(
            event_id=events[0].event_id,
            status=EventStatus.REJECTED,
            rejection=Rejection.OVER_RECEIPT,
            reason=f"received 16 units of future receipt {po} (sku {sku} at {loc}), but only 15"
            " are still to come, 10 received before: book the surplus as a receipt, or raise"
            " the purchase order's quantity with future_receipt_update first",
        ),
        EventOutcome(
            event_id=events[1].event_id,
            status=EventStatus.REJECTED,
            rejection=Rejection.OVER_RECEIPT,
            reason=f"received 6 units of future receipt {small} (sku {sku} at {loc}), but only"
            " 5 are still to come: book the surplus as a receipt, or raise the purchase"
            " order's quantity with future_receipt_update first",
        ),
    ]
    assert effects == FeedEffects()
    assert await recorded(pg_dsn, *(e.event_id for e in events)) == {}
    assert await stock(pg_dsn, sku, loc) == (10, 0)
    assert await receipt(pg_dsn, po) == (sku, loc, 15, 0, DEC_1, "open")
    assert await receipt(pg_dsn, small) == (sku, loc, 5, 0, DEC_1, "open")

    # Raised first (the whole PO, received units included), the surplus may come.
    raised = FutureReceiptUpdated(event_id=uid("e"), receipt_id=po, quantity=26)
    outcomes, _ = await apply(pg_pool, [raised, events[0]])
    assert statuses(outcomes) == [EventStatus.APPLIED, EventStatus.APPLIED]
    assert await receipt(pg_dsn, po) == (sku, loc, 0, 0, DEC_1, "received")
    assert await stock(pg_dsn, sku, loc) == (26, 0)
    await assert_balanced(pg_dsn, sku)


async def test_every_receipt_event_on_a_closed_po_is_rejected(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc, po = uid("SKU"), uid("LOC"), uid("PO")
    await define(pg_pool, sku, loc)
    await plan(pg_pool, po, sku, loc, 25, DEC_1)
    await apply(
        pg_pool,
        [received(po, 10), FutureReceiptClosed(event_id=uid("e"), receipt_id=po)],
    )
    events: list[InventoryEvent] = [
        received(po),
        received(po, 5),
        FutureReceiptUpdated(event_id=uid("e"), receipt_id=po, quantity=30),
        FutureReceiptUpdated(event_id=uid("e"), receipt_id=po, expected_date=DEC_5),
        FutureReceiptCancelled(event_id=uid("e"), receipt_id=po),
        FutureReceiptClosed(event_id=uid("e"), receipt_id=po),
    ]
    outcomes, effects = await apply(pg_pool, events)
    assert [(o.status, o.rejection) for o in outcomes] == [
        (EventStatus.REJECTED, Rejection.RECEIPT_CLOSED)
    ] * len(events)
    assert {o.reason for o in outcomes} == {
        f"future receipt {po} (sku {sku} at {loc}) was already closed"
    }
    assert effects == FeedEffects()
    assert await recorded(pg_dsn, *(e.event_id for e in events)) == {}
    assert await receipt(pg_dsn, po) == (sku, loc, 15, 0, DEC_1, "closed")
    assert await stock(pg_dsn, sku, loc) == (10, 0)
    await assert_balanced(pg_dsn, sku)

    # Received in full, it is closed too.
    full = uid("PO")
    await plan(pg_pool, full, sku, loc, 4, DEC_1)
    await apply(pg_pool, [received(full, 1), received(full, 3)])
    outcomes, _ = await apply(pg_pool, [received(full, 1)])
    assert [o.rejection for o in outcomes] == [Rejection.RECEIPT_CLOSED]
    assert outcomes[0].reason == (
        f"future receipt {full} (sku {sku} at {loc}) was already received in full"
    )


async def test_after_a_part_an_update_counts_the_whole_po_and_a_slip_tells_who_still_waits(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc, po = uid("SKU"), uid("LOC"), uid("PO")
    await define(pg_pool, sku, loc)
    await plan(pg_pool, po, sku, loc, 25, DEC_1)
    served, waits = "A-" + uid("o"), "B-" + uid("o")
    await reserve_on_receipt(pg_dsn, po, served, 5)
    await reserve_on_receipt(pg_dsn, po, waits, 12)
    outcomes, effects = await apply(pg_pool, [received(po, 10)])
    assert effects.notices == [
        ReceiptNotice(order_id=served, receipt_id=po, status=ReceiptStatus.ARRIVED)
    ]
    assert await stock(pg_dsn, sku, loc) == (10, 5)
    assert await receipt(pg_dsn, po) == (sku, loc, 15, 12, DEC_1, "open")

    events: list[InventoryEvent] = [
        FutureReceiptUpdated(event_id=uid("e"), receipt_id=po, quantity=21),  # 11 to come < 12
        FutureReceiptUpdated(event_id=uid("e"), receipt_id=po, quantity=10),  # nothing to come
        FutureReceiptUpdated(event_id=uid("e"), receipt_id=po, quantity=30, expected_date=DEC_5),
    ]
    outcomes, effects = await apply(pg_pool, events)
    assert [(o.status, o.rejection) for o in outcomes] == [
        (EventStatus.REJECTED, Rejection.WOULD_TAKE_RESERVED),
        (EventStatus.REJECTED, Rejection.OVER_RECEIPT),
        (EventStatus.APPLIED, None),
    ]
    assert outcomes[0].reason == (
        f"12 units of future receipt {po} are promised to orders;"
        " the new quantity 21 leaves 11 to come after the 10 received"
    )
    assert outcomes[1].reason == (
        f"10 units of future receipt {po} were already received; a quantity of 10 leaves"
        " nothing to come: close it with future_receipt_close"
    )
    # Only the order still waiting for units of the PO hears that they slipped.
    assert effects.notices == [
        ReceiptNotice(order_id=waits, receipt_id=po, status=ReceiptStatus.SLIPPED)
    ]
    assert await receipt(pg_dsn, po) == (sku, loc, 20, 12, DEC_5, "open")
    assert await received_of(pg_dsn, po) == 10
    await assert_balanced(pg_dsn, sku)


async def test_the_pass_after_a_part_hands_the_free_units_on_and_tells_the_served_order(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """In the allocation pass (the allocator's activity, without Temporal): PO of 20, A
    promised 10; W waits for 4 units on hand. 14 arrive: A's promise is on hand and A hears
    it arrived; the 4 left over go to W in the same pass."""
    sku, loc, po = uid("SKU"), uid("LOC"), uid("PO")
    await define(pg_pool, sku, loc)
    await plan(pg_pool, po, sku, loc, 20, DEC_1)
    a, w = "A-" + uid("o"), "W-" + uid("o")
    await promise(pg_pool, a, sku, loc, po, 10)
    backorder = Backorder(
        order_id=w,
        placed_at=dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC),
        fulfillment=Fulfillment(type=FulfillmentType.SHIP_TO_HOME),
        lines=(BackorderLine(line_id="L1", sku=sku, quantity=4),),
    )
    update = DemandUpdate(key=f"backorder-{w}/demand", order_id=w, backorder=backorder, site="s")
    await activity_env.run(InventoryActivities(pg_pool).update_demand, update)

    # The pass sends no signal itself: its outbox rows are what it would deliver.
    allocator = AllocationActivities(pg_pool, Settings(site="s"), cast(Client, object()))
    pass_id = uid("pass")
    report = await activity_env.run(
        allocator.allocate,
        PassRequest(
            site="s", pass_id=pass_id, reason="test", as_of=NOV_28, events=(received(po, 14),)
        ),
    )

    assert [o.status for o in report.outcomes] == [EventStatus.APPLIED]
    assert (report.orders_released, report.units_released, report.receipt_notices) == (1, 4, 1)
    signals = {
        order_id: AllotmentSignal.model_validate(signal)
        for order_id, signal in await sql(
            pg_dsn,
            "SELECT order_id, signal FROM allotment_deliveries WHERE pass_id = %s",
            pass_id,
        )
    }
    assert signals[a].release is None
    assert signals[a].receipts == (ReceiptChange(receipt_id=po, status=ReceiptStatus.ARRIVED),)
    release = signals[w].release
    assert release is not None and signals[w].receipts == ()
    assert [(x.source, x.quantity) for x in release.allotments] == [(StockSource.CURRENT, 4)]
    assert await stock(pg_dsn, sku, loc) == (14, 14)
    assert await receipt(pg_dsn, po) == (sku, loc, 6, 0, DEC_1, "open")
    assert await sql(pg_dsn, "SELECT count(*) FROM demand WHERE order_id = %s", w) == [(0,)]
    await assert_balanced(pg_dsn, sku)


async def test_the_migration_turns_receipts_received_before_it_into_the_new_ledger(
    pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    """Before partial receipts a received PO kept its quantity and its promises counted; the
    migration records what came (from its movement) and leaves nothing to come or promised."""
    await pg_server.create_database("t_partial_receipts_migration")
    dsn = pg_server.dsn("t_partial_receipts_migration")
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0007":
            shutil.copy(path, tmp_path)
    await migrate(dsn, tmp_path)
    await sql(dsn, "INSERT INTO locations (location_id) VALUES ('DC')")
    await sql(
        dsn,
        """INSERT INTO future_receipts (receipt_id, sku, location, quantity, reserved, status)
           VALUES ('PO-1', 'KTP', 'DC', 10, 6, 'received'), ('PO-2', 'KTP', 'DC', 5, 2, 'open'),
                  ('PO-3', 'KTP', 'DC', 4, 1, 'cancelled')""",
    )
    await sql(dsn, "INSERT INTO inventory_events (event_id) VALUES ('e-1')")
    await sql(
        dsn,
        """INSERT INTO stock_movements (event_id, sku, location, delta, reason)
           VALUES ('e-1', 'KTP', 'DC', 8, 'future receipt PO-1 received')""",
    )

    assert "0007" in await migrate(dsn)  # (and any migration after it)
    assert await sql(
        dsn,
        "SELECT receipt_id, quantity, received, reserved, status FROM future_receipts"
        " ORDER BY receipt_id",
    ) == [
        ("PO-1", 0, 8, 0, "received"),
        ("PO-2", 5, 0, 2, "open"),
        ("PO-3", 4, 0, 1, "cancelled"),
    ]


# --- concurrency ---------------------------------------------------------------------------


async def _apply_slowly(
    pool: AsyncConnectionPool, events: Sequence[InventoryEvent], pass_id: str
) -> list[EventOutcome]:
    """Apply the batch and hold the transaction a moment before committing."""
    async with pool.connection() as conn, conn.transaction():
        outcomes, _ = await apply_events(conn, events, pass_id)
        await asyncio.sleep(0.05)
    return outcomes


@pytest.mark.parametrize("rows_exist", [True, False], ids=["existing-rows", "new-rows"])
async def test_concurrent_batches_in_opposite_orders_both_commit(
    pg_pool: AsyncConnectionPool, pg_dsn: str, rows_exist: bool
) -> None:
    """Two passes apply batches touching the same stock rows in opposite orders at once: they
    queue on the rows (or, for rows neither can see yet, on their keys) instead of
    deadlocking, and every unit is counted."""
    sku = uid("SKU")
    locs = [f"{uid('LOC')}-{i:02}" for i in range(12)]
    await define(pg_pool, sku, *locs)
    start = 50 if rows_exist else 0
    if rows_exist:
        await apply(
            pg_pool,
            [StockReceived(event_id=uid("e"), sku=sku, location=loc, quantity=50) for loc in locs],
        )

    def batch(order: list[str]) -> list[InventoryEvent]:
        events: list[InventoryEvent] = []
        for loc in order:
            events.append(StockReceived(event_id=uid("e"), sku=sku, location=loc, quantity=5))
            if rows_exist:
                events.append(
                    StockAdjusted(event_id=uid("e"), sku=sku, location=loc, delta=-2, reason="c")
                )
        return events

    forward, backward = batch(locs), batch(locs[::-1])
    results = await asyncio.wait_for(
        asyncio.gather(
            _apply_slowly(pg_pool, forward, uid("pass")),
            _apply_slowly(pg_pool, backward, uid("pass")),
        ),
        timeout=30,
    )
    assert [set(statuses(outcomes)) for outcomes in results] == [{EventStatus.APPLIED}] * 2

    per_batch = 5 - 2 if rows_exist else 5
    for loc in locs:
        assert await stock(pg_dsn, sku, loc) == (start + 2 * per_batch, 0)
    moves = 12 * (1 if rows_exist else 0) + 2 * len(forward)
    assert await sql(
        pg_dsn, "SELECT count(*), sum(delta) FROM stock_movements WHERE sku = %s", sku
    ) == [(moves, 12 * (start + 2 * per_batch))]
