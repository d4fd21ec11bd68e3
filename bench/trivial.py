"""The baseline's side of each scenario: `TrivialWorkflow` started, signalled and read the same
way as our orders (same client, concurrency, polls and exact instants)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from temporalio.client import Client

from bench.baseline import SIGNAL, TrivialWorkflow
from bench.cpu import Sampler
from bench.histories import events_of, lives, map_limited, waiting_instants, waiting_since
from bench.measure import distribution, fanout, intake
from bench.stack import tag


@dataclass
class Trivial:
    client: Client
    task_queue: str

    def ids(self, n: int) -> list[str]:
        prefix = f"trivial-{tag()}"
        return [f"{prefix}-{i:05}" for i in range(n)]

    async def start(self, workflow_id: str) -> None:
        await self.client.start_workflow(
            TrivialWorkflow.run, workflow_id, id=workflow_id, task_queue=self.task_queue
        )

    async def signal(self, workflow_id: str) -> None:
        await self.client.get_workflow_handle(workflow_id).signal(SIGNAL, "stock")

    async def tail_waiting(self, ids: Sequence[str]) -> int:
        """All of `ids` (len) once the last few started wait, else 0: one cheap poll in place
        of our read model's count (tasks run about in start order; `waiting_instants` then
        reads every history and waits for any straggler)."""
        tail = await map_limited(partial(events_of, self.client), ids[-3:])
        return len(ids) if all(waiting_since(events) is not None for events in tail) else 0

    async def completed(self) -> int:
        query = f'TaskQueue="{self.task_queue}" AND ExecutionStatus="Completed"'
        return (await self.client.count_workflows(query)).count

    async def close_times(self, ids: Sequence[str]) -> list[float]:
        wanted = set(ids)
        query = f'TaskQueue="{self.task_queue}" AND ExecutionStatus="Completed"'
        return [
            w.close_time.timestamp()
            async for w in self.client.list_workflows(query)
            if w.id in wanted and w.close_time is not None
        ]

    async def waiting(self, n: int) -> list[str]:
        ids = self.ids(n)
        await map_limited(self.start, ids)
        await waiting_instants(self.client, ids)
        return ids

    async def warm_up(self, n: int = 5) -> None:
        ids = await self.waiting(n)
        for w in ids:
            await self.signal(w)
        await asyncio.gather(*(self.client.get_workflow_handle(w).result() for w in ids))


async def measure_intake(t: Trivial, sampler: Sampler, ids: Sequence[str]) -> dict[str, Any]:
    """Until each has completed its first workflow task (its history)."""
    return await intake(
        t.client, sampler, ids, lambda i: t.start(ids[i]), lambda: t.tail_waiting(ids)
    )


async def measure_fanout(t: Trivial, sampler: Sampler, ids: Sequence[str]) -> dict[str, Any]:
    """First signal sent → each workflow closed (50 signals in flight at a time)."""
    before = await t.completed()

    async def send() -> None:
        await map_limited(t.signal, ids)

    async def closed() -> int:
        return await t.completed() - before

    return await fanout(sampler, len(ids), send, {"closed": (closed, lambda: t.close_times(ids))})


async def measure_latency(t: Trivial, ids: Sequence[str], receipts: int) -> dict[str, Any]:
    """Signal one workflow and await its result, one at a time: signal sent → closed."""
    exact: list[float] = []
    polled: list[float] = []
    for workflow_id in ids[:receipts]:
        handle = t.client.get_workflow_handle(workflow_id)
        t0 = time.time()
        began = time.perf_counter()
        await handle.signal(SIGNAL, "stock")
        await handle.result()
        polled.append(time.perf_counter() - began)
        closed = (await handle.describe()).close_time
        assert closed is not None
        exact.append(closed.timestamp() - t0)
        await asyncio.sleep(0.05)
    return {**distribution(exact, polled), "waiting_before": len(ids)}


async def measure_events(t: Trivial, ids: Sequence[str], sample: int) -> dict[str, Any]:
    picked = list(ids[:: max(1, len(ids) // sample)][:sample])
    return await lives(t.client, picked, SIGNAL)
