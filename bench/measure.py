"""The scenarios' common shape, for ours and the baseline alike.

Each scenario has a client-side instant where it begins (`time.time()` right before the first
start, receipt or signal) and server-side instants where each workflow reaches the state that
ends it (its history, PostgreSQL's `now()`, Temporal's close time: all the host's wall clock).
The bench notices the end with cheap polls (one SQL count or one visibility count every 100 ms),
then reads the exact instants; the polled durations (`time.perf_counter`) are kept as a check.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from temporalio.client import Client

from bench.cpu import Sampler, per_order_ms
from bench.histories import map_limited, waiting_instants

POLL = 0.1
"""Seconds between the cheap polls that notice a scenario's end."""
GRACE = 0.5
"""Seconds between noticing the end and reading every history (not a load during the run)."""


async def poll_until(
    probe: Callable[[], Awaitable[int]],
    want: int,
    *,
    within: float,
    what: str,
    interval: float = POLL,
) -> float:
    """Poll a count until it reaches `want`; the perf_counter seconds it took."""
    began = time.perf_counter()
    while True:
        got = await probe()
        if got >= want:
            return time.perf_counter() - began
        if time.perf_counter() - began > within:
            raise RuntimeError(f"{what}: {got} of {want} after {within:.0f} s")
        await asyncio.sleep(interval)


async def intake(
    client: Client,
    sampler: Sampler,
    workflow_ids: Sequence[str],
    start: Callable[[int], Awaitable[object]],
    noticed: Callable[[], Awaitable[int]],
    *,
    concurrency: int = 50,
) -> dict[str, Any]:
    """Start every workflow (`start(i)`, at most `concurrency` at once) and time first start
    → the last one waiting (its last completed workflow task, with nothing left to run)."""
    n = len(workflow_ids)
    t0 = time.time()
    began = time.perf_counter()
    await map_limited(start, range(n), concurrency)
    starts = time.perf_counter() - began
    polled = starts + await poll_until(noticed, n, within=600, what="accepted")
    await asyncio.sleep(GRACE)  # the last workflow tasks finish before N histories are read
    instants = await waiting_instants(client, workflow_ids)
    t1 = max(instants)
    cpu = sampler.between(t0, t1)
    return {
        "orders": n,
        "seconds": t1 - t0,
        "rate": n / (t1 - t0),
        "starts_seconds": starts,
        "polled_seconds": polled,
        "cpu_ms_per_order": per_order_ms(cpu, n),
    }


def cumulative(instants: Sequence[float], t0: float) -> list[list[float]]:
    """[seconds since t0, how many by then] for each instant: the chart's step curve."""
    return [[t - t0, i + 1] for i, t in enumerate(sorted(instants))]


async def fanout(
    sampler: Sampler,
    n: int,
    send: Callable[[], Awaitable[None]],
    ends: dict[str, tuple[Callable[[], Awaitable[int]], Callable[[], Awaitable[list[float]]]]],
) -> dict[str, Any]:
    """`send()` the stimulus, then for each named end (ready, closed): poll its count to n,
    read its exact instants. The figure is the last instant's distance from the send."""
    t0 = time.time()
    began = time.perf_counter()
    await send()
    out: dict[str, Any] = {"orders": n}
    last = t0
    for name, (count, instants) in ends.items():
        await poll_until(count, n, within=900, what=f"fan-out {name}")
        polled = time.perf_counter() - began
        got = await instants()
        last = max(last, *got)
        out[name] = {
            "seconds": max(got) - t0,
            "polled_seconds": polled,
            "series": cumulative(got, t0),
        }
    out["cpu_ms_per_order"] = per_order_ms(sampler.between(t0, last), n)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def distribution(samples: Sequence[float], polled: Sequence[float]) -> dict[str, Any]:
    return {
        "count": len(samples),
        "p50": percentile(samples, 50),
        "p90": percentile(samples, 90),
        "p99": percentile(samples, 99),
        "max": max(samples),
        "samples": list(samples),
        "polled_p50": percentile(polled, 50),
        "polled_max": max(polled),
    }
