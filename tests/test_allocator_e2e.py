"""The allocator end to end on the Temporal dev server, with real order workflows, the real
worker and the ledger in PostgreSQL: stock that arrives reaches the waiting orders first come
first served, once, and never more than there is."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.contracts import AllocationCheck
from config import Settings
from domain.inventory import (
    EventStatus,
    FutureReceiptPlanned,
    FutureReceiptReceived,
    InventoryBatch,
    InventoryEvent,
    LocationDefined,
    ProductDefined,
    Rejection,
    StockReceived,
)
from domain.order import Order
from domain.order_book import ShipmentStatus
from runtime import allocator
from runtime.sweep import ensure_sweep_schedules, schedule_id
from tests.order_life import make_order
from tests.polling import eventually
from worker import build_worker
from workflows import search_attributes as sa
from workflows.allocator import AllocatorWorkflow
from workflows.allocator_messages import FeedResult, allocator_id
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus, BackorderSummary, CancelRequest, OrderStatus

pytestmark = pytest.mark.e2e
Handle = WorkflowHandle[BackorderWorkflow, BackorderSummary]


def site_settings(window: dt.timedelta = dt.timedelta(milliseconds=300), **policy: Any) -> Settings:
    """A site of its own; `window`: the allocator's batching window (events and checks sent
    within it share a pass)."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        site=f"site-{tag}",
        temporal={"task_queue": f"tq-{tag}"},
        policy=policy,
        allocator={"batch_window": window},
    )


async def rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(sql.encode(), params or None)
        return list(await cur.fetchall())


class Shop:
    """One site on the dev server: its settings, worker, ledger and orders."""

    def __init__(
        self, env: WorkflowEnvironment, pool: AsyncConnectionPool, dsn: str, settings: Settings
    ):
        self.client: Client = env.client
        self.pool, self.dsn, self.settings = pool, dsn, settings
        self.site = settings.site
        self.sku = f"KTP-{uuid.uuid4().hex[:6]}"
        self.location = f"DC-{uuid.uuid4().hex[:6]}"

    def event_id(self) -> str:
        return f"ev-{uuid.uuid4().hex[:12]}"

    async def feed(self, *events: InventoryEvent) -> FeedResult:
        batch = InventoryBatch(events=events)
        return await allocator.send_inventory(self.client, self.settings, self.site, batch)

    async def define(self, sku: str | None = None, **product: Any) -> None:
        result = await self.feed(
            LocationDefined(event_id=self.event_id(), location_id=self.location),
            ProductDefined(event_id=self.event_id(), sku=sku or self.sku, **product),
        )
        assert all(o.status is EventStatus.APPLIED for o in result.outcomes), result

    def receipt(self, quantity: int, event_id: str | None = None) -> StockReceived:
        return StockReceived(
            event_id=event_id or self.event_id(),
            sku=self.sku,
            location=self.location,
            quantity=quantity,
        )

    async def place(self, placed_at: dt.datetime, quantity: int, **extra: Any) -> Handle:
        """An order of `quantity` units of the sku that waits (nothing is in stock yet)."""
        order = make_order(placed_at, [(self.sku, quantity, "10.00")], site=self.site, **extra)
        handle = await self.client.start_workflow(
            BackorderWorkflow.run,
            order,
            id=order.workflow_id,
            task_queue=self.settings.temporal.task_queue,
        )
        await self.waiting(order)
        return handle

    async def waiting(self, order: Order) -> None:
        """Until the order's open lines are in the allocator's demand index."""
        await eventually(
            lambda: rows(
                self.dsn, "SELECT count(*) FROM demand WHERE order_id = %s", order.order_id
            ),
            lambda r: r == [(len(order.lines),)],
        )

    async def stock(self) -> tuple[int, int]:
        found = await rows(
            self.dsn,
            "SELECT on_hand, reserved FROM stock WHERE sku = %s AND location = %s",
            self.sku,
            self.location,
        )
        return found[0] if found else (0, 0)

    @asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        """The allocator in the middle of a pass, held there (its advisory lock is taken)
        until the block ends: messages sent meanwhile arrive under load and share the next
        pass, whatever the timing."""
        async with await psycopg.AsyncConnection.connect(self.dsn) as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"allocator:{self.site}",),
            )
            before = (await allocator.allocator_status(self.client, self.site)).passes
            check = AllocationCheck(reason="held busy", skus=(self.sku,))
            await allocator.nudge(self.client, self.settings, self.site, check)
            await eventually(
                lambda: allocator.allocator_status(self.client, self.site),
                lambda st: st.passes > before and not st.pending_check,
            )
            yield

    async def held(self, order_id: str) -> int:
        """Units the ledger holds for the order."""
        found = await rows(
            self.dsn,
            "SELECT coalesce(sum(quantity), 0) FROM reservations"
            " WHERE order_id = %s AND state = 'reserved'",
            order_id,
        )
        return int(found[0][0])


@asynccontextmanager
async def shop(
    env: WorkflowEnvironment,
    pool: AsyncConnectionPool,
    dsn: str,
    window: dt.timedelta = dt.timedelta(milliseconds=300),
    **policy: Any,
) -> AsyncIterator[Shop]:
    settings = site_settings(window, **policy)
    async with build_worker(env.client, pool, settings):
        yield Shop(env, pool, dsn, settings)


async def released(
    handle: Handle, units: int, status: BackorderStatus | None = None
) -> OrderStatus:
    """Until the order has `units` released (in shipments), and is in `status` if given."""
    return await eventually(
        lambda: handle.query(BackorderWorkflow.status),
        lambda s: (
            sum(ln.released for ln in s.lines) == units and (status is None or s.status is status)
        ),
    )


RECENTLY = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1)


def placed(hour: int) -> dt.datetime:
    """The `hour`th hour of yesterday: the seed examples' days, moved close to now. An order
    placed long ago would be past its FTC deadline (which runs from placed_at) and cancelled
    at acceptance."""
    return RECENTLY + dt.timedelta(hours=hour)


async def test_the_seeds_fifo_example_oldest_orders_are_released_first(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """Orders 100 (placed at 5), 101 (at 6) and 102 (at 8) wait for 20 units each; 50 arrive:
    100 and 101 ship in full, 102 gets the 10 left and waits for the rest."""
    async with shop(dev_env, pg_pool, pg_dsn, release_mode="quantity") as s:
        await s.define()
        # placed out of order: the queue is by placed_at, not by when the workflow started
        o102 = await s.place(placed(8), 20, order_id=f"102-{s.sku}")
        o100 = await s.place(placed(5), 20, order_id=f"100-{s.sku}")
        o101 = await s.place(placed(6), 20, order_id=f"101-{s.sku}")

        result = await s.feed(s.receipt(50))

        assert [o.status for o in result.outcomes] == [EventStatus.APPLIED]
        assert (result.orders_released, result.units_released) == (3, 50)
        done = BackorderStatus.COMPLETED
        first, second = await released(o100, 20, done), await released(o101, 20, done)
        assert second.shipments[0].allotments[0].quantity == 20
        third = await released(o102, 10)
    assert [sh.status for sh in first.shipments] == [ShipmentStatus.READY]
    assert third.status is BackorderStatus.BACKORDERED
    assert [(ln.released, ln.backordered) for ln in third.lines] == [(10, 10)]
    assert await s.stock() == (50, 50)
    assert [await s.held(o) for o in (o100.id[10:], o101.id[10:], o102.id[10:])] == [20, 20, 10]
    assert await rows(
        pg_dsn, "SELECT quantity_open FROM demand WHERE order_id = %s", o102.id[10:]
    ) == [(10,)]


async def test_twenty_concurrent_receipts_for_two_hundred_orders_never_over_allocate(
    dev_env: WorkflowEnvironment, pg_dsn: str
) -> None:
    async with (
        AsyncConnectionPool(pg_dsn, min_size=2, max_size=12) as pool,
        shop(dev_env, pool, pg_dsn, release_mode="full") as s,
    ):
        await s.define()
        start = placed(1)
        wanted = [1 + i % 3 for i in range(200)]  # 400 units wanted
        orders = [
            make_order(start + dt.timedelta(minutes=i), [(s.sku, q, "1.00")], site=s.site)
            for i, q in enumerate(wanted)
        ]
        handles = await asyncio.gather(
            *(
                s.client.start_workflow(
                    BackorderWorkflow.run,
                    o,
                    id=o.workflow_id,
                    task_queue=s.settings.temporal.task_queue,
                )
                for o in orders
            )
        )
        await eventually(
            lambda: rows(pg_dsn, "SELECT count(*) FROM demand WHERE sku = %s", s.sku),
            lambda r: r == [(200,)],
            seconds=120,
        )
        receipts = [s.receipt(11) for _ in range(20)]  # 220 units, in 20 concurrent feeds
        results = await asyncio.gather(*(s.feed(r) for r in receipts))

        assert all(o.status is EventStatus.APPLIED for r in results for o in r.outcomes)
        # served strictly first come first served: the oldest orders whose units fit
        expected, left = {}, 220
        for o, q in zip(orders, wanted, strict=True):
            expected[o.order_id] = q if q <= left else 0
            left -= expected[o.order_id]
        statuses = await asyncio.gather(
            *(released(h, expected[o.order_id]) for h, o in zip(handles, orders, strict=True))
        )
        passes = await allocator.allocator_status(s.client, s.site)
    assert sum(expected.values()) == 220
    on_hand, reserved = await s.stock()
    assert (on_hand, reserved) == (220, 220)
    held = await rows(
        pg_dsn,
        "SELECT order_id, sum(quantity) FROM reservations"
        " WHERE sku = %s AND state = 'reserved' GROUP BY order_id",
        s.sku,
    )
    assert dict(held) == {k: v for k, v in expected.items() if v}
    assert all(sum(ln.released for ln in st.lines) == expected[st.order_id] for st in statuses)
    assert passes.passes < 20  # concurrent receipts shared passes


async def test_a_duplicated_event_is_applied_once(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    async with shop(dev_env, pg_pool, pg_dsn) as s:
        await s.define()
        event = s.receipt(7, event_id=f"dup-{s.sku}")
        first = await s.feed(event)
        again = await s.feed(event)
        handle = s.client.get_workflow_handle(allocator_id(s.site))
        await handle.signal(AllocatorWorkflow.inventory, InventoryBatch(events=(event,)))
        third = await s.feed(s.receipt(1))
    assert [o.status for o in first.outcomes] == [EventStatus.APPLIED]
    assert [o.status for o in again.outcomes] == [EventStatus.DUPLICATE]
    assert [o.status for o in third.outcomes] == [EventStatus.APPLIED]
    assert await s.stock() == (8, 0)
    assert await rows(pg_dsn, "SELECT count(*) FROM stock_movements WHERE sku = %s", s.sku) == [
        (2,)
    ]


async def test_bad_events_are_rejected_and_the_good_ones_in_the_batch_applied(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    async with shop(dev_env, pg_pool, pg_dsn) as s:
        await s.define()
        unknown = StockReceived(
            event_id=s.event_id(), sku="NO-SUCH-SKU", location=s.location, quantity=3
        )
        result = await s.feed(s.receipt(2), unknown, s.receipt(3))
    assert [o.status for o in result.outcomes] == [
        EventStatus.APPLIED,
        EventStatus.REJECTED,
        EventStatus.APPLIED,
    ]
    assert result.outcomes[1].rejection is Rejection.UNKNOWN_SKU
    assert "NO-SUCH-SKU" in (result.outcomes[1].reason or "")
    assert await s.stock() == (5, 0)


async def test_a_cancelled_orders_reservation_goes_to_the_next_order(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """The first order's units are promised from a purchase order (a future shipment); when it
    is cancelled they go back and the allocator hands them to the second order at once."""
    async with shop(dev_env, pg_pool, pg_dsn, future_inventory=True) as s:
        await s.define()
        first = await s.place(placed(5), 4)
        second = await s.place(placed(6), 4)
        today = (await dev_env.get_current_time()).date()
        po = FutureReceiptPlanned(
            event_id=s.event_id(),
            receipt_id=f"PO-{s.sku}",
            sku=s.sku,
            location=s.location,
            quantity=4,
            expected_date=today + dt.timedelta(days=5),
        )
        await s.feed(po)
        before = await released(first, 4)
        assert [sh.status for sh in before.shipments] == [ShipmentStatus.FUTURE]
        assert await s.held(second.id[10:]) == 0

        await first.execute_update(BackorderWorkflow.cancel_order, CancelRequest())
        after = await released(second, 4)
        assert await s.held(first.id[10:]) == 0
        assert await s.held(second.id[10:]) == 4
    assert [sh.status for sh in after.shipments] == [ShipmentStatus.FUTURE]
    assert (await first.result()).status is BackorderStatus.CANCELLED


async def test_a_future_receipt_releases_future_shipments_that_turn_ready_when_received(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    async with shop(
        dev_env, pg_pool, pg_dsn, future_inventory=True, future_date_limit_days=10
    ) as s:
        await s.define()
        order = await s.place(placed(5), 6)
        today = (await dev_env.get_current_time()).date()
        late = FutureReceiptPlanned(
            event_id=s.event_id(),
            receipt_id=f"PO-late-{s.sku}",
            sku=s.sku,
            location=s.location,
            quantity=6,
            expected_date=today + dt.timedelta(days=40),
        )
        soon = late.model_copy(
            update={
                "event_id": s.event_id(),
                "receipt_id": f"PO-soon-{s.sku}",
                "expected_date": today + dt.timedelta(days=3),
            }
        )
        beyond = await s.feed(late)
        assert beyond.units_released == 0  # past the future date limit: not promised
        within = await s.feed(soon)
        assert within.units_released == 6
        promised = await released(order, 6, BackorderStatus.AWAITING_RECEIPT)
        assert [(sh.status, sh.expected_date) for sh in promised.shipments] == [
            (ShipmentStatus.FUTURE, soon.expected_date)
        ]

        arrived = await s.feed(
            FutureReceiptReceived(event_id=s.event_id(), receipt_id=soon.receipt_id)
        )
        assert [o.status for o in arrived.outcomes] == [EventStatus.APPLIED]
        summary = await order.result()
    assert summary.status is BackorderStatus.COMPLETED
    assert await s.stock() == (6, 6)
    assert await rows(
        pg_dsn,
        "SELECT source, receipt_id, quantity FROM reservations WHERE order_id = %s",
        order.id[10:],
    ) == [("current", soon.receipt_id, 6)]
    # received in full: nothing left to come or promised on it (the promises are now
    # reservations of stock on hand, above)
    assert await rows(
        pg_dsn,
        "SELECT receipt_id, status, quantity, received, reserved FROM future_receipts"
        " WHERE sku = %s ORDER BY expected_date",
        s.sku,
    ) == [(soon.receipt_id, "received", 0, 6, 0), (late.receipt_id, "open", 6, 0, 0)]


async def test_an_ended_orders_allotment_is_released_and_goes_to_the_next_order(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """Demand left behind by an order whose workflow is gone (terminated by an operator):
    the pass reserves for it, the delivery finds no workflow, releases the units and drops
    the demand, and the next pass serves the next order."""
    async with shop(dev_env, pg_pool, pg_dsn) as s:
        await s.define()
        ghost = await s.place(placed(2), 3)
        await ghost.terminate("operator cleanup")
        live = await s.place(placed(3), 3)

        await s.feed(s.receipt(3))
        await released(live, 3)
        status = await allocator.allocator_status(s.client, s.site)
    assert sum(p.gone for p in status.recent) == 1
    assert await s.held(ghost.id[10:]) == 0
    assert await rows(pg_dsn, "SELECT count(*) FROM demand WHERE order_id = %s", ghost.id[10:]) == [
        (0,)
    ]
    assert await rows(
        pg_dsn, "SELECT outcome FROM allotment_deliveries WHERE order_id = %s", ghost.id[10:]
    ) == [("gone",)]


async def test_the_sweep_schedule_and_backorder_check_run_full_passes(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """Stock that reached the ledger without an event (a repair by SQL) is found by the
    scheduled sweep; `backorder check` runs one on demand and answers what it did."""
    async with shop(dev_env, pg_pool, pg_dsn) as s:
        await s.define()
        order = await s.place(placed(5), 2)
        await pg_execute(
            pg_dsn,
            "INSERT INTO stock (sku, location, on_hand) VALUES (%s, %s, 2)",
            s.sku,
            s.location,
        )
        ids = await ensure_sweep_schedules(s.client, s.settings)
        assert ids == [schedule_id(s.site)]
        assert await ensure_sweep_schedules(s.client, s.settings) == ids  # idempotent
        schedule = s.client.get_schedule_handle(schedule_id(s.site))
        await schedule.trigger()
        await released(order, 2)

        later = await s.place(placed(6), 1)
        await pg_execute(
            pg_dsn,
            "UPDATE stock SET on_hand = on_hand + 1 WHERE sku = %s AND location = %s",
            s.sku,
            s.location,
        )
        outcome = await allocator.run_check(
            s.client, s.settings, s.site, AllocationCheck(reason="operator request")
        )
        await released(later, 1)
        await schedule.delete()
    assert (outcome.report.orders_released, outcome.report.units_released) == (1, 1)
    assert outcome.delivery.delivered == 1


async def pg_execute(dsn: str, sql: str, *params: Any) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.execute(sql.encode(), params)


async def test_a_poisoned_order_is_set_aside_and_the_site_keeps_serving(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """An order whose demand cannot be read (placed_at in year 10000 UTC, as the contract once
    let through) used to fail every pass of its sku for ever, and with it the site's feed.
    Now the pass sets it aside with one exception, and a receipt reaches the next order."""
    async with shop(dev_env, pg_pool, pg_dsn) as s:
        await s.define()
        poisoned = await s.place(placed(2), 2)  # first in line
        normal = await s.place(placed(3), 2)
        poisoned_id = poisoned.id.removeprefix("backorder-")
        await pg_execute(
            pg_dsn,
            "UPDATE demand SET placed_at = '9999-12-31T23:00:00-05:00' WHERE order_id = %s",
            poisoned_id,
        )

        result = await asyncio.wait_for(s.feed(s.receipt(2)), 60)
        await released(normal, 2, BackorderStatus.COMPLETED)
        later = await asyncio.wait_for(s.feed(s.receipt(1)), 60)  # and the next pass too
        swept = await allocator.run_check(s.client, s.settings, s.site, AllocationCheck())
        still = await eventually(
            lambda: poisoned.query(BackorderWorkflow.status), lambda s: s.exceptions.open > 0
        )
        flagged = (await poisoned.describe()).typed_search_attributes.get(sa.OPEN_EXCEPTIONS)
    assert (result.orders_released, result.units_released) == (1, 2)
    assert still.exceptions.open == 1 and flagged == 1  # the pass told the order
    assert [e.kind for e in still.exceptions.latest] == ["demand_unreadable"]
    assert (later.units_released, swept.report.units_released) == (0, 0)
    assert await s.held(poisoned_id) == 0
    assert still.status is BackorderStatus.BACKORDERED  # the order itself keeps waiting
    assert await s.stock() == (3, 2)
    assert await rows(
        pg_dsn,
        "SELECT kind, severity, resolved_at IS NULL FROM exceptions WHERE order_id = %s",
        poisoned_id,
    ) == [("demand_unreadable", "high", True)]
