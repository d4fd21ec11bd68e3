"""A burst on one site is absorbed: many concurrent feed senders and many concurrent order
starts, on the dev server with the real worker in process. The senders are spread over a dozen
Temporal clients, as a dozen feed processes would be: within a client their events share
updates, between clients far more updates compete than Temporal's 10 in flight per workflow.
Every event is applied once, every order accepted, no sender refused, the ledger balances.

Sizes: BACKORDER_CHAOS_SENDERS (default 100) and BACKORDER_CHAOS_ORDERS (default 200: about
50 s on 2 cores; 500 took about 130 s there, the time going to the worker accepting the
orders), larger for a soak (`make chaos`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import uuid
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.contracts import AllocationCheck
from config import Settings
from domain.inventory import (
    EventStatus,
    InventoryBatch,
    LocationDefined,
    ProductDefined,
    StockReceived,
)
from domain.order import Order
from runtime import allocator
from tests.order_life import make_order
from tests.polling import eventually
from tests.reliability.invariants import check_invariants
from tests.test_allocator_e2e import rows
from worker import build_worker
from workflows.allocator_messages import FeedResult
from workflows.backorder import BackorderWorkflow
from workflows.converter import data_converter

pytestmark = pytest.mark.e2e

SENDERS = int(os.environ.get("BACKORDER_CHAOS_SENDERS") or 100)
ORDERS = int(os.environ.get("BACKORDER_CHAOS_ORDERS") or 200)
SETTLE = 60 + ORDERS // 10
"""Seconds for the orders and passes to settle after the burst."""
PATIENCE = dt.timedelta(seconds=60 + SENDERS // 2 + ORDERS // 10)
"""How long a sender keeps offering its update before it counts as refused (a livelock fails
the test in minutes, not after the default ten)."""
FEEDS = 12
"""Feed processes (Temporal clients) the senders are spread over."""
RUNNING_OR_DONE = (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)


async def free_units(dsn: str, sku: str) -> int:
    [(free,)] = await rows(
        dsn, "SELECT coalesce(sum(on_hand - reserved), 0) FROM stock WHERE sku = %s", sku
    )
    return int(free)


async def test_a_burst_of_feed_senders_and_order_starts_on_one_site_is_absorbed(
    dev_env: WorkflowEnvironment, pg_dsn: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        site=f"burst-{tag}",
        temporal={"task_queue": f"tq-burst-{tag}"},
        policy={"release_mode": "quantity"},
        allocator={"batch_window": dt.timedelta(milliseconds=300)},
    )
    site, sku, location = settings.site, f"SKU-{tag}", f"DC-{tag}"
    client = dev_env.client
    feeds = [
        await Client.connect(
            client.service_client.config.target_host,
            namespace=client.namespace,
            data_converter=data_converter,
        )
        for _ in range(FEEDS)
    ]

    async def feed(*events: Any, via: Client = client) -> FeedResult:
        batch = InventoryBatch(events=events)
        return await allocator.send_inventory(via, settings, site, batch, PATIENCE)

    receipts = [
        StockReceived(event_id=f"rcv-{tag}-{i}", sku=sku, location=location, quantity=1 + i % 3)
        for i in range(SENDERS)
    ]
    placed = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ORDERS + 3600)  # recently
    orders = [
        make_order(
            placed + dt.timedelta(seconds=i),
            [(sku, 1 + i % 2, "1.00")],
            order_id=f"B-{tag}-{i}",
            site=site,
        )
        for i in range(ORDERS)
    ]

    async def start(order: Order) -> None:
        await client.start_workflow(
            BackorderWorkflow.run,
            order,
            id=order.workflow_id,
            task_queue=settings.temporal.task_queue,
        )

    async with (
        AsyncConnectionPool(pg_dsn, min_size=2, max_size=16) as pool,
        build_worker(client, pool, settings),
    ):
        defined = await feed(
            LocationDefined(event_id=f"loc-{tag}", location_id=location),
            ProductDefined(event_id=f"prd-{tag}", sku=sku),
        )
        assert all(o.status is EventStatus.APPLIED for o in defined.outcomes), defined

        # the burst: every sender and every start at once, interleaved
        work: list[tuple[str, Awaitable[Any]]] = [
            *((r.event_id, feed(r, via=feeds[i % FEEDS])) for i, r in enumerate(receipts)),
            *((o.order_id, start(o)) for o in orders),
        ]
        random.Random(tag).shuffle(work)
        clock = asyncio.get_running_loop().time
        began = clock()
        outcomes = await asyncio.gather(*(w for _, w in work), return_exceptions=True)
        burst = clock() - began
        failed = {
            who: f"{type(err).__name__}: {err}"
            for (who, _), err in zip(work, outcomes, strict=True)
            if isinstance(err, BaseException)
        }
        assert not failed, f"{len(failed)} senders refused or failed: {list(failed.items())[:5]}"

        # every sender's event applied, and told so
        results = {
            who: result
            for (who, _), result in zip(work, outcomes, strict=True)
            if isinstance(result, FeedResult)
        }
        assert len(results) == SENDERS
        for r in receipts:
            assert [(o.event_id, o.status) for o in results[r.event_id].outcomes] == [
                (r.event_id, EventStatus.APPLIED)
            ], results[r.event_id]

        # every order accepted: its workflow alive or done, all its units held or waiting
        ordered = {o.order_id: sum(ln.quantity for ln in o.lines) for o in orders}

        async def accounted() -> dict[str, int]:
            found = await rows(
                pg_dsn,
                """
                SELECT o.order_id,
                       coalesce((SELECT sum(quantity_open) FROM demand d
                                  WHERE d.order_id = o.order_id), 0)
                     + coalesce((SELECT sum(quantity) FROM reservations r
                                  WHERE r.order_id = o.order_id AND r.state = 'reserved'), 0)
                  FROM unnest(%s::text[]) AS o(order_id)
                """,
                list(ordered),
            )
            return {str(o): int(n) for o, n in found}

        def off(units: dict[str, int]) -> dict[str, tuple[int, int]]:
            return {o: (n, ordered[o]) for o, n in units.items() if n != ordered[o]}

        await eventually(accounted, lambda units: not off(units), seconds=SETTLE)
        accepted = clock() - began
        statuses = await asyncio.gather(
            *(client.get_workflow_handle(o.workflow_id).describe() for o in orders)
        )
        not_alive = {d.id: d.status for d in statuses if d.status not in RUNNING_OR_DONE}
        assert not not_alive, not_alive

        # the allocator has settled: nothing owed to an order, no pass pending
        await eventually(
            lambda: rows(
                pg_dsn,
                "SELECT count(*) FROM allotment_deliveries d JOIN allocation_passes p"
                " USING (pass_id) WHERE p.site = %s AND d.outcome IS NULL",
                site,
            ),
            lambda r: r == [(0,)],
            seconds=SETTLE,
        )
        status = await allocator.allocator_status(client, site)
        assert (status.pending_events, status.pending_check) == (0, False), status
        # An order that read its stock just before a pass and wrote its demand just after
        # waits while units are free until the next event or the sweep (the acceptance's
        # lost wake-up, in the order workflow); the sweep's full pass, run here, serves it.
        idle = await free_units(pg_dsn, sku)
        sweep = await allocator.run_check(
            client, settings, site, AllocationCheck(reason="burst test: the sweep")
        )
        released = sweep.report.units_released
        print(
            f"burst of {SENDERS} senders and {ORDERS} starts: sent in {burst:.1f}s, every order"
            f" accepted after {accepted:.1f}s, {status.passes} passes; {idle} units free"
            f" before the sweep, which released {released}"
        )
        await eventually(accounted, lambda units: not off(units), seconds=SETTLE)
        # the suite's shared invariants: stock, orders and their demand, exceptions
        await check_invariants(pg_dsn, client, order_ids=list(ordered), skus=[sku])

    # each event applied exactly once: one audit row, one stock movement of its quantity
    event_ids = [r.event_id for r in receipts]
    applied = await rows(
        pg_dsn,
        "SELECT event_id, kind FROM inventory_events WHERE event_id = ANY(%s)",
        event_ids,
    )
    assert sorted(applied) == sorted((e, "receipt") for e in event_ids)
    moved = await rows(
        pg_dsn,
        "SELECT event_id, delta FROM stock_movements WHERE event_id = ANY(%s)",
        event_ids,
    )
    assert Counter(e for e, _ in moved) == Counter(event_ids)
    assert dict(moved) == {r.event_id: r.quantity for r in receipts}

    # the ledger balances
    received = sum(r.quantity for r in receipts)
    [(on_hand, reserved)] = await rows(
        pg_dsn, "SELECT on_hand, reserved FROM stock WHERE sku = %s", sku
    )
    [(held,)] = await rows(
        pg_dsn,
        "SELECT coalesce(sum(quantity), 0) FROM reservations"
        " WHERE sku = %s AND state = 'reserved' AND source = 'current'",
        sku,
    )
    assert on_hand == received  # nothing on hand before the burst, nothing shipped out of it
    assert reserved == held <= on_hand
    # stock was not left idle while orders waited for it
    [(waiting,)] = await rows(
        pg_dsn, "SELECT coalesce(sum(quantity_open), 0) FROM demand WHERE sku = %s", sku
    )
    assert waiting == sum(ordered.values()) - held
    assert held == min(received, sum(ordered.values()))
