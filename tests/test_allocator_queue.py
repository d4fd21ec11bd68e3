"""The allocator on a task queue of its own, and batching only under load. Real PostgreSQL, the
real Temporal dev server.

- An allocator started before allocators had their own queue (on the orders' queue, its input
  naming no queue) moves when the worker asks: it answers what is in flight, continues as new
  on the allocators' queue carrying its passes, and serves the feed from there.
- An idle allocator runs a pass at once, whatever its window; one that received events while a
  pass ran waits for the window so they batch up. Read from the history's timers, not clocks.
"""

from __future__ import annotations

import datetime as dt

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment

from domain.inventory import EventStatus, InventoryBatch
from runtime import allocator
from tests.polling import eventually
from tests.test_allocator_e2e import Shop, shop
from workflows.allocator import AllocatorWorkflow
from workflows.allocator_messages import AllocatorStart, allocator_id

pytestmark = pytest.mark.e2e


async def timers(handle: WorkflowHandle[AllocatorWorkflow, None]) -> int:
    history = await handle.fetch_history()
    return sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED)


async def test_the_worker_serves_allocators_on_their_own_queue(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    async with shop(dev_env, pg_pool, pg_dsn) as s:
        await s.define()
        described = await s.client.get_workflow_handle(allocator_id(s.site)).describe()
    assert s.settings.temporal.allocator_queue == f"{s.settings.temporal.task_queue}-allocator"
    assert described.task_queue == s.settings.temporal.allocator_queue
    # already where it belongs: nobody asks it to move
    assert not await allocator.move_to_its_queue(s.client, s.settings, s.site)


async def test_an_allocator_on_the_orders_queue_moves_to_its_own(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    async with shop(dev_env, pg_pool, pg_dsn, window=dt.timedelta(0)) as s:
        legacy = AllocatorStart(site=s.site, batch_window=dt.timedelta(0))  # no queue named
        handle = await s.client.start_workflow(
            AllocatorWorkflow.run,
            legacy,
            id=allocator_id(s.site),
            task_queue=s.settings.temporal.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
        await s.define()  # answered on the orders' queue
        first = await handle.describe()
        assert first.task_queue == s.settings.temporal.task_queue

        assert await allocator.move_to_its_queue(s.client, s.settings, s.site)
        moved = await eventually(
            lambda: s.client.get_workflow_handle(allocator_id(s.site)).describe(),
            lambda d: d.run_id != first.run_id,
        )
        result = await s.feed(s.receipt(4))
        status = await allocator.allocator_status(s.client, s.site)
        stock = await s.stock()
        asked_again = await allocator.move_to_its_queue(s.client, s.settings, s.site)
    assert moved.task_queue == s.settings.temporal.allocator_queue
    assert [o.status for o in result.outcomes] == [EventStatus.APPLIED]
    assert status.passes == 2  # the pass of the old run is carried into the new one
    assert stock == (4, 0)
    assert not asked_again


async def test_an_idle_allocator_runs_its_pass_at_once_and_batches_only_under_load(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    async with shop(dev_env, pg_pool, pg_dsn, window=dt.timedelta(seconds=2)) as s:
        await s.define()
        handle = s.client.get_workflow_handle(allocator_id(s.site))
        idle = await timers(handle)
        await s.feed(s.receipt(1))  # idle again: no window
        after_idle = await timers(handle)
        await under_load(s)
        after_load = await timers(handle)
        status = await allocator.allocator_status(s.client, s.site)
    assert (idle, after_idle) == (0, 0)
    assert after_load == 1
    assert status.recent[-1].events == 2  # the two receipts sent under load shared a pass


async def under_load(s: Shop) -> None:
    """Two receipts sent while a pass runs: the next pass waits for the window and takes both."""
    async with s.busy():
        handle = s.client.get_workflow_handle(allocator_id(s.site))
        await handle.signal(AllocatorWorkflow.inventory, _batch(s, 2))
        await eventually(
            lambda: allocator.allocator_status(s.client, s.site), lambda st: st.pending_events == 2
        )
    await eventually(
        lambda: allocator.allocator_status(s.client, s.site), lambda st: st.pending_events == 0
    )
    await eventually(
        lambda: allocator.allocator_status(s.client, s.site),
        lambda st: st.recent[-1].events == 2,
    )


def _batch(s: Shop, n: int) -> InventoryBatch:
    return InventoryBatch(events=tuple(s.receipt(1) for _ in range(n)))
