"""Worker memory per cached workflow: RSS growth over a population of sleeping workflows.

A fresh worker runs a few workflows through their whole life (imports, sandbox, pools warm),
settles, and its RSS is read; then M workflows are started and left waiting, and RSS is read
again once they all wait and the worker has settled. The growth is divided by the workflows
the worker holds in its cache: min(M, max_cached_workflows). Neither `backorder-worker` nor the
baseline sets max_cached_workflows, so both keep the SDK's default (read from its signature).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.worker import Worker

from bench.cpu import rss_bytes
from bench.stack import WorkerProcess

SETTLE = 3.0
"""Seconds to let the last workflow tasks and the allocator's pass finish before reading."""


def cache_size() -> int:
    default = inspect.signature(Worker.__init__).parameters["max_cached_workflows"].default
    return int(default)


def worker_sets_cache() -> bool:
    """Whether `backorder-worker` passes its own cache size (then the SDK default is not its)."""
    import worker

    return "max_cached_workflows" in inspect.getsource(worker)


async def rss_settled(pid: int) -> int:
    """RSS once it stops moving much (read every 0.5 s, up to SETTLE seconds)."""
    last = rss_bytes(pid)
    for _ in range(int(SETTLE / 0.5)):
        await asyncio.sleep(0.5)
        now = rss_bytes(pid)
        if abs(now - last) < 256 * 1024:
            return now
        last = now
    return last


async def per_cached_workflow(
    worker: WorkerProcess,
    warm_up: Callable[[], Awaitable[None]],
    populate: Callable[[int], Awaitable[object]],
    workflows: int,
) -> dict[str, Any]:
    await warm_up()
    await asyncio.sleep(SETTLE)
    before = await rss_settled(worker.pid)
    await populate(workflows)
    await asyncio.sleep(SETTLE)
    after = await rss_settled(worker.pid)
    cached = min(workflows, cache_size())
    return {
        "workflows": workflows,
        "cached": cached,
        "cache_size": cache_size(),
        "cache_note": (
            f"{workflows} workflows > cache of {cache_size()}: divided by the cache size"
            if workflows > cache_size()
            else "every workflow is in the cache"
        ),
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_workflow": (after - before) / cached,
    }
