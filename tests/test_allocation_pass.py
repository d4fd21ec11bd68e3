"""The allocation pass against real PostgreSQL, without Temporal: what it reserves, for whom,
in which order, and that no interleaving of passes hands out a unit twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any, cast

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.allocation import AllocationActivities, reservation_key, unknown_orders
from activities.contracts import (
    DeliveryRequest,
    DemandUpdate,
    PassReport,
    PassRequest,
    ShipmentRequest,
)
from activities.fulfilment import FulfilmentActivities
from activities.inventory import InventoryActivities
from config import Settings
from domain.inventory import LocationDefined, ProductDefined, StockReceived
from domain.order import Fulfillment, FulfillmentType
from domain.order_book import BookLine, OrderBook
from domain.planner import Backorder, BackorderLine
from workflows.messages import AllotmentSignal

env = ActivityEnvironment()
TODAY = dt.date(2026, 11, 23)
PLACED = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def allocator(pool: AsyncConnectionPool, **policy: Any) -> AllocationActivities:
    settings = Settings(site="s", policy=policy)
    return AllocationActivities(pool, settings, cast(Client, object()))  # no signals sent here


async def rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(sql.encode(), params or None)
        return list(await cur.fetchall())


class Ledger:
    def __init__(self, pool: AsyncConnectionPool, dsn: str) -> None:
        self.pool, self.dsn = pool, dsn
        self.sku = f"P-{uuid.uuid4().hex[:6]}"
        self.orders = InventoryActivities(pool)

    async def wait(
        self, order_id: str, quantity: int, minutes: int, tier: str = "standard", site: str = "s"
    ) -> None:
        """An order that waits for `quantity` units, placed `minutes` after PLACED."""
        backorder = Backorder(
            order_id=order_id,
            placed_at=PLACED + dt.timedelta(minutes=minutes),
            tier=tier,
            fulfillment=Fulfillment(type=FulfillmentType.SHIP_TO_HOME),
            lines=(BackorderLine(line_id="L1", sku=self.sku, quantity=quantity),),
        )
        update = DemandUpdate(
            key=f"backorder-{order_id}/demand-1", order_id=order_id, backorder=backorder, site=site
        )
        await env.run(self.orders.update_demand, update)

    def receipt(self, quantity: int) -> StockReceived:
        return StockReceived(
            event_id=uuid.uuid4().hex, sku=self.sku, location="DC", quantity=quantity
        )

    def setup(self) -> tuple[LocationDefined, ProductDefined]:
        return (
            LocationDefined(event_id=uuid.uuid4().hex, location_id="DC"),
            ProductDefined(event_id=uuid.uuid4().hex, sku=self.sku),
        )

    async def held(self) -> dict[str, int]:
        found = await rows(
            self.dsn,
            "SELECT order_id, sum(quantity) FROM reservations"
            " WHERE sku = %s AND state = 'reserved' GROUP BY order_id",
            self.sku,
        )
        return {o: int(q) for o, q in found}

    async def stock(self) -> tuple[int, int]:
        found = await rows(self.dsn, "SELECT on_hand, reserved FROM stock WHERE sku = %s", self.sku)
        return (int(found[0][0]), int(found[0][1])) if found else (0, 0)


@pytest.fixture
def ledger(pg_pool: AsyncConnectionPool, pg_dsn: str) -> Ledger:
    return Ledger(pg_pool, pg_dsn)


def request(pass_id: str, *events: Any, site: str = "s", **more: Any) -> PassRequest:
    return PassRequest(
        site=site, pass_id=pass_id, reason="test", as_of=TODAY, events=events, **more
    )


async def test_a_pass_serves_tiers_then_first_come_and_shrinks_their_demand(
    pg_pool: AsyncConnectionPool, ledger: Ledger
) -> None:
    run = allocator(pg_pool, release_mode="quantity")
    await ledger.wait("late-vip", 2, minutes=30, tier="vip")
    await ledger.wait("first", 3, minutes=0)
    await ledger.wait("second", 3, minutes=10)
    pass_id = f"p-{ledger.sku}"

    report = await env.run(run.allocate, request(pass_id, *ledger.setup(), ledger.receipt(6)))

    assert (report.orders_waiting, report.orders_released, report.units_released) == (3, 3, 6)
    assert await ledger.held() == {"late-vip": 2, "first": 3, "second": 1}
    assert await ledger.stock() == (6, 6)
    assert await rows(
        ledger.dsn,
        "SELECT order_id, quantity_open, shipments FROM demand WHERE sku = %s",
        ledger.sku,
    ) == [("second", 2, 1)]
    signals = await rows(
        ledger.dsn,
        "SELECT order_id, signal FROM allotment_deliveries WHERE pass_id = %s ORDER BY order_id",
        pass_id,
    )
    assert [o for o, _ in signals] == ["first", "late-vip", "second"]
    second = AllotmentSignal.model_validate(signals[2][1])
    assert second.pass_id == pass_id and second.release is not None
    assert [(ln.released, ln.backordered) for ln in second.release.lines] == [(1, 2)]
    assert await rows(
        ledger.dsn, "SELECT DISTINCT key FROM reservations WHERE order_id = 'second'"
    ) == [(reservation_key("s", pass_id, "second"),)]


async def test_a_retried_pass_returns_its_report_and_reserves_nothing_more(
    pg_pool: AsyncConnectionPool, ledger: Ledger
) -> None:
    run = allocator(pg_pool)
    await ledger.wait(f"o-{ledger.sku}", 2, minutes=0)
    first = request(f"retry-{ledger.sku}", *ledger.setup(), ledger.receipt(5))

    report = await env.run(run.allocate, first)
    again = await env.run(run.allocate, first)

    assert again == report and report.units_released == 2
    assert await ledger.stock() == (5, 2)
    assert sum((await ledger.held()).values()) == 2


async def test_other_sites_orders_are_not_served_by_this_sites_pass(
    pg_pool: AsyncConnectionPool, ledger: Ledger
) -> None:
    await ledger.wait(f"eu-{ledger.sku}", 1, minutes=0, site="eu")
    report = await env.run(
        allocator(pg_pool).allocate, request(f"s-{ledger.sku}", *ledger.setup(), ledger.receipt(4))
    )
    assert (report.orders_waiting, report.units_released) == (0, 0)
    assert await ledger.held() == {}


async def test_concurrent_passes_of_two_sites_never_over_allocate(
    pg_pool: AsyncConnectionPool, ledger: Ledger, pg_dsn: str
) -> None:
    """The allocator serialises one site's passes; two sites share the stock rows, whose
    locks alone must keep 40 passes at once from promising a unit twice."""
    big = AsyncConnectionPool(pg_dsn, min_size=4, max_size=12, open=False)
    await big.open(wait=True)
    try:
        run = allocator(big, release_mode="quantity")
        await env.run(run.allocate, request(f"setup-{ledger.sku}", *ledger.setup()))
        for i in range(100):
            await ledger.wait(f"s-{i}-{ledger.sku}", 2, minutes=i, site="s")
            await ledger.wait(f"t-{i}-{ledger.sku}", 2, minutes=i, site="t")
        passes = [
            request(f"{site}-{i}-{ledger.sku}", ledger.receipt(3), site=site)
            for i in range(20)
            for site in ("s", "t")
        ]
        reports: list[PassReport] = await asyncio.gather(
            *(env.run(run.allocate, p) for p in passes)
        )
    finally:
        await big.close()
    on_hand, reserved = await ledger.stock()
    held = await ledger.held()
    assert (on_hand, reserved) == (120, 120)
    assert sum(held.values()) == 120 == sum(r.units_released for r in reports)
    assert all(q <= 2 for q in held.values())
    left = await rows(
        pg_dsn, "SELECT coalesce(sum(quantity_open), 0) FROM demand WHERE sku = %s", ledger.sku
    )
    assert left == [(400 - 120,)]


@pytest.mark.e2e
async def test_a_redelivery_to_an_order_that_shipped_the_allotment_and_ended_frees_nothing(
    pg_pool: AsyncConnectionPool, ledger: Ledger, dev_env: WorkflowEnvironment
) -> None:
    """A delivery signalled both winners and died before recording it; the orders applied the
    pass, one shipped it and completed, then the retried delivery finds both workflows gone.
    The one that published a shipment under the pass's step keeps its units (they are in its
    shipment); the one that never applied it is gone: its units go back."""
    settings = Settings(site="s")
    run = AllocationActivities(pg_pool, settings, dev_env.client)  # no such workflows: NOT_FOUND
    shipped, vanished = f"shipped-{ledger.sku}", f"vanished-{ledger.sku}"
    await ledger.wait(shipped, 2, minutes=0)
    await ledger.wait(vanished, 1, minutes=5)
    pass_id = f"redeliver-{ledger.sku}"
    await env.run(run.allocate, request(pass_id, *ledger.setup(), ledger.receipt(3)))
    signals = dict(
        await rows(
            ledger.dsn,
            "SELECT order_id, signal FROM allotment_deliveries WHERE pass_id = %s",
            pass_id,
        )
    )
    release = AllotmentSignal.model_validate(signals[shipped]).release
    assert release is not None
    book = OrderBook(
        order_id=shipped,
        currency="USD",
        lines=(BookLine(line_id="L1", sku=ledger.sku, unit_price="1", ordered=2, backordered=2),),
    ).release(release, PLACED)
    shipment = book.shipments[0]
    await env.run(  # what the order's workflow did with the allotment before it completed
        FulfilmentActivities(pg_pool).publish_shipment,
        ShipmentRequest(
            key=f"backorder-{shipped}/pass-{pass_id}/shipment/{shipment.shipment_id}",
            order_id=shipped,
            shipment=shipment,
        ),
    )

    report = await env.run(run.deliver_allotments, DeliveryRequest(site="s", pass_id=pass_id))

    assert (report.delivered, report.gone) == (1, (vanished,))
    assert await ledger.held() == {shipped: 2}
    assert await ledger.stock() == (3, 2)


async def test_a_check_of_orders_it_does_not_know_names_them(
    pg_pool: AsyncConnectionPool, ledger: Ledger
) -> None:
    """`backorder check --order NOPE` looked at 0 skus without a word. An order is known by
    its claim (every accepted order has one, waiting or not) or by demand rows."""
    waiting, done, nope = (f"{k}-{ledger.sku}" for k in ("waiting", "done", "NOPE"))
    await ledger.wait(waiting, 1, minutes=0)
    await rows(
        ledger.dsn,
        "INSERT INTO order_claims (order_id, workflow_id, run_id) VALUES (%s, %s, 'r') RETURNING 1",
        done,
        f"backorder-{done}",
    )
    async with pg_pool.connection() as conn:
        found = await unknown_orders(conn, [nope, waiting, done, nope, "also-NOPE"])
        assert found == tuple(sorted([nope, "also-NOPE"]))
        assert await unknown_orders(conn, []) == ()

    check = request(f"check-{ledger.sku}", order_ids=(waiting, nope))
    report = await env.run(allocator(pg_pool).allocate, check)
    assert report.orders_waiting == 1
    assert report.unknown_orders == (nope,)
