"""The allocator's I/O alone: what a one-unit pass costs with few or many orders waiting, and
how fast a pass's allotments are delivered.

    python -m bench.allocation_io [--waiting 10,10000] [--passes 7] [--winners 1000]
                                  [--concurrency 20,100] [--skip-delivery]

Its own embedded PostgreSQL (durable, as `backorder dev` runs it) and Temporal dev server
(SQLite) on free ports in a temp dir; no worker; a pool of the worker's default size. Two
figures:

- **pass**: N orders wait for one unit each of one sku (demand rows written by SQL, as the
  order workflows write them, statistics as autovacuum left them); each pass applies a
  one-unit receipt and allots it. The median and best of `--passes` passes, run in the
  activity's own code (`AllocationActivities.allocate` in an `ActivityEnvironment`), its
  PostgreSQL round trips included, and the ratio to the first size's median: a pass should
  cost the same whatever the length of the queue.
- **delivery**: one pass allots one unit to each of `--winners` orders, whose workflows are
  running on the dev server (started by this bench, no worker: the server accepts the signal,
  nobody runs the workflow task); `deliver_allotments` signals them all and records each
  outcome. Signals per second (default `delivery_concurrency`, or each `--concurrency`), and
  beside it the baseline measured in the same run: the same signals sent bare by the client at
  the same concurrency to as many fresh workflows, no database (the speed of Temporal here).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.allocation import AllocationActivities
from activities.contracts import DeliveryRequest, PassRequest
from config import Settings
from db.migrate import migrate
from domain.inventory import InventoryEvent, LocationDefined, ProductDefined, StockReceived
from domain.order import workflow_id_for
from embedded.postgres import EmbeddedPostgres
from embedded.process import free_port
from embedded.temporal import TemporalDevServer
from workflows.converter import data_converter
from workflows.messages import AllotmentSignal

SITE = "bench"
TODAY = dt.date(2026, 11, 23)
PLACED = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
env = ActivityEnvironment()


def _id() -> str:
    return uuid.uuid4().hex


async def _pass(run: AllocationActivities, *events: InventoryEvent, **more: Any) -> float:
    request = PassRequest(
        site=SITE, pass_id=f"p-{_id()[:12]}", reason="bench", as_of=TODAY, events=events, **more
    )
    started = time.perf_counter()
    await env.run(run.allocate, request)
    return time.perf_counter() - started


async def _waiting(pool: AsyncConnectionPool, sku: str, orders: int, prefix: str) -> list[str]:
    """`orders` orders waiting for one unit of `sku` each, a minute apart."""
    ids = [f"{prefix}-{i:06d}" for i in range(orders)]
    async with pool.connection() as conn:
        await conn.execute(
            """
            INSERT INTO demand (order_id, line_id, sku, quantity_open, tier, placed_at,
                                fulfillment_type, shipments, release_in_full, site)
            SELECT o, 'L1', %s, 1, 'standard', %s + make_interval(mins => n::int), 'sth', 0,
                   false, %s
              FROM unnest(%s::text[]) WITH ORDINALITY AS w(o, n)
            """,
            (sku, PLACED, SITE, ids),
        )
    return ids


def _setup(sku: str) -> tuple[InventoryEvent, ...]:
    return (
        LocationDefined(event_id=_id(), location_id="DC"),
        ProductDefined(event_id=_id(), sku=sku),
    )


def _receipt(sku: str, quantity: int) -> StockReceived:
    return StockReceived(event_id=_id(), sku=sku, location="DC", quantity=quantity)


async def bench_pass(pool: AsyncConnectionPool, waiting: int, passes: int) -> dict[str, float]:
    run = AllocationActivities(pool, Settings(site=SITE), cast(Client, object()))
    sku = f"P-{_id()[:8]}"
    await _pass(run, *_setup(sku))
    await _waiting(pool, sku, waiting, f"w{waiting}-{sku}")
    await _pass(run, _receipt(sku, 1))  # warm-up: plans cached, pages in memory
    times = [await _pass(run, _receipt(sku, 1)) for _ in range(passes)]
    return {"median_ms": statistics.median(times) * 1000, "best_ms": min(times) * 1000}


async def _idle_orders(client: Client, orders: list[str], task_queue: str) -> None:
    """A running workflow per order (nobody polls `task_queue`: the server takes signals)."""
    limit = asyncio.Semaphore(50)

    async def start(order_id: str) -> None:
        async with limit:
            await client.start_workflow(
                "BenchIdleOrder", id=workflow_id_for(order_id), task_queue=task_queue
            )

    await asyncio.gather(*(start(o) for o in orders))


async def bench_delivery(
    pool: AsyncConnectionPool, client: Client, winners: int, concurrency: int | None
) -> dict[str, float]:
    """The pass's deliveries, then the same signals sent bare (`handle.signal`, the same
    concurrency, no database) to as many fresh workflows: the speed of Temporal here."""
    allocator = {} if concurrency is None else {"delivery_concurrency": concurrency}
    settings = Settings(site=SITE, allocator=allocator)
    run = AllocationActivities(pool, settings, client)
    sku = f"D-{_id()[:8]}"
    await _pass(run, *_setup(sku))
    orders = await _waiting(pool, sku, winners, f"d-{sku}")
    await _idle_orders(client, orders, f"nobody-{sku}")
    pass_id = f"d-{_id()[:12]}"
    await env.run(
        run.allocate,
        PassRequest(
            site=SITE,
            pass_id=pass_id,
            reason="bench",
            as_of=TODAY,
            events=(_receipt(sku, winners),),
        ),
    )
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT signal FROM allotment_deliveries WHERE pass_id = %s ORDER BY order_id",
            (pass_id,),
        )
        signals = [AllotmentSignal.model_validate(s) for (s,) in await cur.fetchall()]
    started = time.perf_counter()
    report = await env.run(run.deliver_allotments, DeliveryRequest(site=SITE, pass_id=pass_id))
    took = time.perf_counter() - started
    assert report.delivered == winners, report
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM allotment_deliveries WHERE pass_id = %s AND outcome IS NULL",
            (pass_id,),
        )
        row = await cur.fetchone()
        assert row is not None and row[0] == 0

    bare = [f"bare-{o}" for o in orders]
    await _idle_orders(client, bare, f"nobody-{sku}")
    limit = asyncio.Semaphore(settings.allocator.delivery_concurrency)

    async def signal(order_id: str, sent: AllotmentSignal) -> None:
        async with limit:
            await client.get_workflow_handle(workflow_id_for(order_id)).signal("allotment", sent)

    started = time.perf_counter()
    await asyncio.gather(*(signal(o, sent) for o, sent in zip(bare, signals, strict=True)))
    bare_took = time.perf_counter() - started
    return {
        "concurrency": settings.allocator.delivery_concurrency,
        "seconds": took,
        "signals_per_s": winners / took,
        "bare_signals_per_s": winners / bare_took,
    }


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.allocation_io")
    parser.add_argument("--waiting", default="10,10000")
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--winners", type=int, default=1000)
    parser.add_argument("--skip-delivery", action="store_true")
    parser.add_argument(
        "--concurrency", default="", help="delivery_concurrency values (default: the setting's)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-alloc-") as tmp:
        work = Path(tmp)
        pg = EmbeddedPostgres(pgdata=work / "pg", port=free_port(), database="backorder")
        await pg.start()
        temporal = None
        try:
            dsn = pg.dsn()
            await migrate(dsn)
            # the worker's default pool size (database.pool_max_size)
            pool = AsyncConnectionPool(dsn, min_size=2, max_size=10, open=False)
            await pool.open(wait=True)
            try:
                first: float | None = None
                for n in (int(x) for x in args.waiting.split(",")):
                    figures = await bench_pass(pool, n, args.passes)
                    first = first or figures["median_ms"]
                    print(
                        f"1-unit pass, {n:>6} orders waiting: median {figures['median_ms']:.1f} ms,"
                        f" best {figures['best_ms']:.1f} ms"
                        f" ({figures['median_ms'] / first:.2f}x the first size)",
                        flush=True,
                    )
                if not args.skip_delivery:
                    temporal = TemporalDevServer.on_free_ports(work)
                    await temporal.start()
                    client = await Client.connect(temporal.address, data_converter=data_converter)
                    levels: list[int | None] = [int(x) for x in args.concurrency.split(",") if x]
                    levels = levels or [None]
                    for level in levels:
                        figures = await bench_delivery(pool, client, args.winners, level)
                        ours, bare = figures["signals_per_s"], figures["bare_signals_per_s"]
                        print(
                            f"delivery of {args.winners} allotments (concurrency"
                            f" {figures['concurrency']:.0f}): {figures['seconds']:.2f} s,"
                            f" {ours:.0f} signals/s; the same signals sent bare:"
                            f" {bare:.0f} signals/s (ratio {bare / ours:.2f})",
                            flush=True,
                        )
            finally:
                await pool.close()
        finally:
            if temporal is not None:
                temporal.stop()
            pg.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
