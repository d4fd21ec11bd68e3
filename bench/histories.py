"""Readings from Temporal: histories, their event counts and sizes, and exact instants.

Instants come from the server's own event timestamps (host wall clock, like PostgreSQL's
`now()` and the bench's `time.time()`), so a figure does not depend on how often the bench
polled to notice it.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.client import Client

T = TypeVar("T")
A = TypeVar("A")
E = EventType

BUSY = {
    E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    E.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    E.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    E.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
    E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    E.EVENT_TYPE_ACTIVITY_TASK_STARTED,
    E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    E.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    E.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
}
"""Events after the last completed workflow task that mean the workflow is not waiting yet."""


def at(event: HistoryEvent) -> float:
    """The event's server timestamp, in seconds since the epoch."""
    return event.event_time.seconds + event.event_time.nanos / 1e9


async def map_limited(
    fn: Callable[[A], Awaitable[T]], items: Iterable[A], concurrency: int = 50
) -> list[T]:
    """`fn` over the items with at most `concurrency` calls in flight; results in order."""
    limit = asyncio.Semaphore(concurrency)

    async def one(item: A) -> T:
        async with limit:
            return await fn(item)

    return list(await asyncio.gather(*(one(x) for x in items)))


async def events_of(client: Client, workflow_id: str) -> list[HistoryEvent]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return list(history.events)


def waiting_since(events: Sequence[HistoryEvent]) -> float | None:
    """When the workflow began to wait: its last completed workflow task, provided nothing
    after it is still to run (None: it is still working)."""
    for i in range(len(events) - 1, -1, -1):
        if events[i].event_type == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            if any(e.event_type in BUSY for e in events[i + 1 :]):
                return None
            return at(events[i])
    return None


def closed_at(events: Sequence[HistoryEvent]) -> float | None:
    if events and events[-1].event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        return at(events[-1])
    return None


async def waiting_instants(
    client: Client, workflow_ids: Sequence[str], within: float = 120.0
) -> list[float]:
    """Each workflow's instant of starting to wait, re-reading the ones still working."""
    found: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        todo = [w for w in workflow_ids if w not in found]
        got = await map_limited(partial(events_of, client), todo)
        for workflow_id, events in zip(todo, got, strict=True):
            instant = waiting_since(events)
            if instant is not None:
                found[workflow_id] = instant
        if len(found) == len(workflow_ids):
            return [found[w] for w in workflow_ids]
        if loop.time() > deadline:
            raise RuntimeError(f"{len(workflow_ids) - len(found)} workflows never waited")
        await asyncio.sleep(0.5)


async def close_instants(client: Client, workflow_ids: Sequence[str]) -> list[float]:
    """When each (completed) workflow closed, from its last event."""
    got = await map_limited(partial(events_of, client), workflow_ids)
    closed = [closed_at(events) for events in got]
    bad = [w for w, c in zip(workflow_ids, closed, strict=True) if c is None]
    if bad:
        raise RuntimeError(f"{len(bad)} workflows did not complete, e.g. {bad[:3]}")
    return [c for c in closed if c is not None]


@dataclass(frozen=True)
class Life:
    """One workflow's history split at its first signal of a name: up to it (acceptance,
    or the wait), and from it to the end (release)."""

    acceptance: int
    release: int
    total: int
    bytes: int


def life(events: Sequence[HistoryEvent], signal: str) -> Life:
    split = next(
        (
            i
            for i, e in enumerate(events)
            if e.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            and e.workflow_execution_signaled_event_attributes.signal_name == signal
        ),
        None,
    )
    if split is None:
        raise RuntimeError(f"no {signal!r} signal in a history of {len(events)} events")
    return Life(
        acceptance=split,
        release=len(events) - split,
        total=len(events),
        bytes=History(events=events).ByteSize(),
    )


async def lives(client: Client, workflow_ids: Sequence[str], signal: str) -> dict[str, object]:
    """Events before the signal, from it to the end, and history bytes: mean and max."""
    got = await map_limited(partial(events_of, client), workflow_ids)
    each = [life(events, signal) for events in got]
    out: dict[str, object] = {"sampled": len(each)}
    for name in ("acceptance", "release", "total", "bytes"):
        values = [getattr(x, name) for x in each]
        out[name] = {"mean": statistics.fmean(values), "max": max(values)}
    out["event_types"] = _types(got[0]) if got else []
    return out


def _types(events: Sequence[HistoryEvent]) -> list[str]:
    """One history's event types in order (what a reader checks the counts against)."""
    return [E.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in events]
