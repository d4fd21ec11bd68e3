"""Reaching a site's allocator from outside it: the CLI, order activities and the sweep.

Every way in starts the allocator if it is not running (signal-with-start, update-with-start),
so no one has to create it first, and a terminated allocator comes back with the next event.

**Bursts.** `apply_inventory` and `run_check` are updates that wait for their pass, and
Temporal holds at most 10 updates in flight per workflow (`limit.workflowUpdate.maxInFlight`,
the dev server's and the cluster's default): the 11th concurrent sender is refused with
RESOURCE_EXHAUSTED ("limit on number of concurrent in-flight updates has been reached").
Two measures absorb a burst:

- *One update per process and pass, not per sender.* Concurrent `send_inventory` calls of one
  client to one site share updates: their batches are merged (each event id once, at most
  MAX_EVENTS_PER_BATCH events) into at most FEED_UPDATES_IN_FLIGHT updates at a time, and
  each sender gets its own events' outcomes back (the rest of a FeedResult is the pass's
  anyway). The allocator applies a pass's events together whichever update brought them, so
  nothing changes but the number of updates. Retries alone were not enough: with a hundred
  senders each holding an update and retrying, under load the allocator's own workflow
  tasks kept failing to complete, each failure made the server abort every update admitted
  but not yet accepted, and no update completed in ten minutes.
- *Back-pressure between processes.* An update refused for load (RESOURCE_EXHAUSTED: too
  many in flight, the workflow busy, a rate limit), aborted before the workflow took it
  (UNAVAILABLE, "workflow update was aborted"), refused while the allocator's workflow task
  is failing (a worker too busy to finish it in time), or whose call timed out, is offered
  again after a jittered backoff (50 ms doubling to 2 s, each wait drawn between half and
  all of it, so refused senders do not come back in lockstep) until it is taken or
  `patience` runs out, always under the same update id: the server answers an id it
  already took instead of running it twice (and events are applied once by event id
  anyway). Any other error is raised at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.api.errordetails.v1 import WorkflowNotReadyFailure
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from activities.contracts import AllocationCheck
from config import Settings
from domain.inventory import MAX_EVENTS_PER_BATCH, InventoryBatch, InventoryEvent
from workflows.allocator import AllocatorWorkflow
from workflows.allocator_messages import (
    AllocatorStart,
    AllocatorStatus,
    FeedResult,
    PassOutcome,
    QueueMove,
    allocator_id,
)

T = TypeVar("T")
A = TypeVar("A")
logger = logging.getLogger(__name__)

PATIENCE = timedelta(minutes=10)
"""How long a feed sender or check keeps offering its update to a busy allocator."""
NUDGE_PATIENCE = timedelta(seconds=20)
"""The same for a nudge (an activity: Temporal retries it after that)."""
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0
"""Seconds between offers of a refused message: doubling from the first to the most."""
FEED_UPDATES_IN_FLIGHT = 2
"""Feed updates one client keeps in flight to one allocator (Temporal allows 10 per workflow,
shared by every process): one in the pass being run, one filling for the next."""
RETRY_LATER = (RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE)
"""Status codes of a message the server did not take, and will take later."""


def refused(err: BaseException) -> bool:
    """The server turned the message away, or dropped it before the workflow took it, and
    will take it later: too many updates in flight, the workflow busy, a rate limit
    (RESOURCE_EXHAUSTED); the update aborted, the server unreachable (UNAVAILABLE); the
    allocator's last workflow task failed or timed out, as on an overloaded worker (refused
    as "not ready" until a task succeeds); the call timed out (an update the server did take
    is found again by its id)."""
    if isinstance(err, WorkflowUpdateRPCTimeoutOrCancelledError):
        cause = err.__cause__  # a timeout, not a call cancelled (by our caller, say)
        return not (isinstance(cause, RPCError) and cause.status is RPCStatusCode.CANCELLED)
    if not isinstance(err, RPCError):
        return False
    if err.status in RETRY_LATER:
        return True
    details = err.grpc_status.details
    not_ready = bool(details) and details[0].Is(WorkflowNotReadyFailure.DESCRIPTOR)
    return not_ready or "Workflow Task in failed state" in err.message


async def offer(send: Callable[[], Awaitable[T]], what: str, patience: timedelta) -> T:
    """`send()` until it is not refused (see `refused`), with a jittered exponential backoff;
    after `patience`, the last refusal is raised. Other errors are raised at once."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + patience.total_seconds()
    backoff = BACKOFF_FIRST
    refusals = 0
    while True:
        try:
            result = await send()
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
            left = give_up - loop.time()
            task = asyncio.current_task()
            cancelled = task is not None and task.cancelling() > 0  # seen as an RPC error
            if cancelled or not refused(err) or left <= 0:
                raise
            refusals += 1
            logger.debug("%s refused (%s); offered again, %d refusals", what, err, refusals)
            await asyncio.sleep(min(random.uniform(backoff / 2, backoff), left))
            backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        if refusals:
            logger.info("%s taken after %d refusals (the allocator was busy)", what, refusals)
        return result


def start_input(settings: Settings, site: str) -> AllocatorStart:
    return AllocatorStart(
        site=site,
        batch_window=settings.allocator.batch_window,
        task_queue=settings.temporal.allocator_queue,
    )


def _start_operation(
    settings: Settings, site: str
) -> WithStartWorkflowOperation[AllocatorWorkflow, None]:
    return WithStartWorkflowOperation(
        AllocatorWorkflow.run,
        start_input(settings, site),
        id=allocator_id(site),
        task_queue=settings.temporal.allocator_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def _update(
    client: Client,
    settings: Settings,
    site: str,
    update: UpdateMethodMultiParam[[AllocatorWorkflow, A], T],
    arg: A,
    update_id: str,
) -> T:
    """The update, starting the allocator if it is not running."""
    start = _start_operation(settings, site)
    try:
        return await client.execute_update_with_start_workflow(
            update, arg, id=update_id, start_workflow_operation=start
        )
    finally:
        # the start's own outcome is set on a future of its own: collect it, or a call cut
        # short (a CLI giving up) leaves asyncio to print "exception was never retrieved"
        outcome = start._workflow_handle  # the SDK's future behind workflow_handle()
        if outcome.done() and not outcome.cancelled():
            outcome.exception()


async def send_inventory(
    client: Client,
    settings: Settings,
    site: str,
    batch: InventoryBatch,
    patience: timedelta = PATIENCE,
) -> FeedResult:
    """Apply a batch of events and wait for the pass that applied them: each event's outcome,
    and the pass's stock positions and releases. Concurrent calls on one client share updates
    (see the module); a refused update is offered again for up to `patience`."""
    return await _feed(client, settings, site).send(batch, patience)


@dataclass
class _Sender:
    batch: InventoryBatch
    patience: timedelta
    answer: asyncio.Future[FeedResult]


class _Feed:
    """The `send_inventory` calls of one client to one allocator, merged into at most
    FEED_UPDATES_IN_FLIGHT updates at a time."""

    def __init__(self, client: Client, settings: Settings, site: str) -> None:
        self._client, self._settings, self._site = client, settings, site
        self.loop = asyncio.get_running_loop()
        self._waiting: list[_Sender] = []
        self._in_flight = 0
        self._dispatching = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def send(self, batch: InventoryBatch, patience: timedelta) -> FeedResult:
        sender = _Sender(batch, patience, self.loop.create_future())
        self._waiting.append(sender)
        if not self._dispatching:  # after the callers of this turn of the loop have queued
            self._dispatching = True
            self.loop.call_soon(self._dispatch)
        return await sender.answer

    def _dispatch(self) -> None:
        self._dispatching = False
        while self._waiting and self._in_flight < FEED_UPDATES_IN_FLIGHT:
            group = self._take()
            if not group:
                return
            self._in_flight += 1
            task = self.loop.create_task(self._deliver(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Sender]:
        """The next senders, in order, whose events fit in one batch together."""
        group: list[_Sender] = []
        ids: set[str] = set()
        while self._waiting:
            if self._waiting[0].answer.done():  # its caller gave up before it was sent
                self._waiting.pop(0)
                continue
            new = {e.event_id for e in self._waiting[0].batch.events} - ids
            if group and len(ids) + len(new) > MAX_EVENTS_PER_BATCH:
                break
            group.append(self._waiting.pop(0))
            ids |= new
        return group

    async def _deliver(self, group: list[_Sender]) -> None:
        try:
            events: dict[str, InventoryEvent] = {}
            for sender in group:  # the same id twice: applied once, its outcome told to both
                for e in sender.batch.events:
                    events.setdefault(e.event_id, e)
            merged = InventoryBatch(events=tuple(events.values()))
            update_id = f"feed-{uuid.uuid4()}"
            result = await offer(
                lambda: _update(
                    self._client,
                    self._settings,
                    self._site,
                    AllocatorWorkflow.apply_inventory,
                    merged,
                    update_id,
                ),
                f"update {update_id} ({len(events)} events of {len(group)} senders) to "
                f"{allocator_id(self._site)}",
                max(s.patience for s in group),
            )
        except asyncio.CancelledError:  # the loop is closing: no more deliveries
            self._in_flight -= 1
            for sender in group:
                sender.answer.cancel()
            raise
        except Exception as err:
            for sender in group:
                if not sender.answer.done():
                    sender.answer.set_exception(err)
        else:
            for sender in group:
                if not sender.answer.done():
                    sender.answer.set_result(_own(result, sender.batch))
        self._in_flight -= 1
        self._dispatch()


def _own(result: FeedResult, batch: InventoryBatch) -> FeedResult:
    """A merged update's result as one sender's: the outcomes of its own events."""
    wanted = {e.event_id for e in batch.events}
    return result.model_copy(
        update={"outcomes": tuple(o for o in result.outcomes if o.event_id in wanted)}
    )


_feeds: weakref.WeakKeyDictionary[Client, dict[tuple[str, str], _Feed]] = (
    weakref.WeakKeyDictionary()
)


def _feed(client: Client, settings: Settings, site: str) -> _Feed:
    feeds = _feeds.setdefault(client, {})
    key = (site, settings.temporal.allocator_queue)
    feed = feeds.get(key)
    if feed is None or feed.loop is not asyncio.get_running_loop():
        feed = feeds[key] = _Feed(client, settings, site)
    return feed


async def run_check(
    client: Client,
    settings: Settings,
    site: str,
    check: AllocationCheck,
    patience: timedelta = PATIENCE,
) -> PassOutcome:
    """Run a check (a full sweep unless skus or orders are named) and wait for its pass
    (offered again while the allocator refuses it for load, for up to `patience`)."""
    update_id = f"check-{uuid.uuid4()}"
    return await offer(
        lambda: _update(client, settings, site, AllocatorWorkflow.run_check, check, update_id),
        f"update {update_id} (check) to {allocator_id(site)}",
        patience,
    )


async def nudge(
    client: Client,
    settings: Settings,
    site: str,
    check: AllocationCheck,
    patience: timedelta = NUDGE_PATIENCE,
) -> None:
    """Ask for a check without waiting for it (order workflows, the scheduled sweep)."""
    await offer(
        lambda: client.start_workflow(
            AllocatorWorkflow.run,
            start_input(settings, site),
            id=allocator_id(site),
            task_queue=settings.temporal.allocator_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="check",
            start_signal_args=[check],
        ),
        f"check signal to {allocator_id(site)}",
        patience,
    )


async def allocator_status(client: Client, site: str) -> AllocatorStatus:
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(allocator_id(site))
    return await handle.query(AllocatorWorkflow.status)


async def move_to_its_queue(client: Client, settings: Settings, site: str) -> bool:
    """Ask the site's allocator, if it runs on another task queue than the allocators' (one
    started before they had their own), to move there. Whether it was asked."""
    queue = settings.temporal.allocator_queue
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(allocator_id(site))
    try:
        described = await handle.describe()
        if described.status is not WorkflowExecutionStatus.RUNNING:
            return False
        if described.task_queue == queue:
            return False
        await handle.signal(AllocatorWorkflow.move_to_queue, QueueMove(task_queue=queue))
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:  # none yet, or it just ended
            return False
        raise
    logger.info("%s asked to move to task queue %s", allocator_id(site), queue)
    return True
