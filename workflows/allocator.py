"""The allocator: one entity workflow per site that turns inventory events into allotments.

Events and checks queue as pending work; once the batching window has passed, one allocation
pass takes all of it. The pass is an activity that applies the events and reserves stock for
the waiting orders in one PostgreSQL transaction; a second activity then signals each order that
got stock (only those). Passes run one at a time, from this loop only, so two passes of a site
never race each other. The history stays short: the allocator continues as new when Temporal
suggests it, carrying what is pending.

New input is held to the exact contract. The `apply_inventory` and `run_check` validators
refuse a payload only the rules of earlier releases accept (an `InvalidInput` error naming the
fields); the `inventory` signal has no answer, so such an event of it is refused alone and
reported rejected by the next pass. Payloads already in a history replay as they ran.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.contract import contract_problems
    from domain.inventory import (
        EventOutcome,
        EventStatus,
        InventoryBatch,
        InventoryEvent,
        Rejection,
        id_conflict,
    )
    from workflows.allocator_messages import (
        AllocatorStart,
        AllocatorStatus,
        FeedResult,
        PassLog,
        PassOutcome,
        PendingWork,
        QueueMove,
    )
    from workflows.calls import call
    from workflows.converter import INVALID_INPUT

REFUSE_AT_ARRIVAL = "allocator-refuses-inexact-and-conflicting-events"
"""Patch: an event of the `inventory` signal that only the rules of earlier releases accept
(a quantity of "2") is refused, not applied as decoded; an event whose id is waiting for the
pass with other content is refused, not answered with the waiting event's outcome. Both are
rejected in the next pass's `refused` (histories recorded before replay as they ran)."""
BATCH_UNDER_LOAD = "allocator-batches-only-under-load"
"""Patch: the batch window is waited for only when events arrived while the last pass ran; an
idle allocator runs a pass at once (before: every pass waited for the window)."""
MOVES_TO_ITS_QUEUE = "allocator-moves-to-its-own-queue"
"""Patch: the `move_to_queue` signal continues the allocator as new on the task queue named
(histories recorded before never had the signal)."""
RECENT_PASSES = 20
"""Passes kept for the status query."""
RESULTS_KEPT = 50
"""Finished batches whose results waiting updates may still read."""
PASS_TIMEOUT = timedelta(minutes=5)
PASS_HEARTBEAT = timedelta(seconds=20)
"""A pass heartbeats while its transaction runs: a worker that dies mid-pass is noticed in
seconds, not at the end of PASS_TIMEOUT (its transaction dies with its connection)."""
DELIVERY_TIMEOUT = timedelta(minutes=30)
DELIVERY_HEARTBEAT = timedelta(seconds=30)


@workflow.defn(name="AllocatorWorkflow")
class AllocatorWorkflow:
    @workflow.init
    def __init__(self, start: AllocatorStart) -> None:
        self._site = start.site
        self._window = start.batch_window
        self._passes = start.passes
        self._recent = list(start.recent)
        self._events: dict[str, InventoryEvent] = {e.event_id: e for e in start.pending.events}
        self._skus = set(start.pending.skus)
        self._orders = set(start.pending.order_ids)
        self._full = start.pending.full
        self._reasons = list(start.pending.reasons)
        self._refused = list(start.pending.refused)
        self._batch = 0
        """The batch now filling; it is taken by the next pass."""
        self._results: dict[int, PassOutcome] = {}
        self._queue = start.task_queue
        self._move_to: str | None = None
        """A task queue the workers now serve this allocator on; it continues as new there."""
        self._loaded = False
        """Events arrived while the last pass ran: the next pass waits for the window."""

    @workflow.run
    async def run(self, start: AllocatorStart) -> None:
        while True:
            await workflow.wait_condition(lambda: self._has_work() or self._moving())
            if self._has_work():
                if self._window and self._batching():
                    await workflow.sleep(self._window)  # let events arriving together batch up
                await self._run_pass()
                self._loaded = self._has_work()
            if self._moving() or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() or self._has_work()
                )
                if not self._has_work():
                    workflow.continue_as_new(self._carried(), task_queue=self._move_to)

    def _batching(self) -> bool:
        """Whether to wait for the window: always in runs recorded before the patch; now only
        under load (events came faster than passes finish)."""
        return self._loaded or not workflow.patched(BATCH_UNDER_LOAD)

    def _moving(self) -> bool:
        return self._move_to is not None

    # -- messages ------------------------------------------------------------------------------

    @workflow.signal
    def inventory(self, batch: InventoryBatch) -> None:
        """Events from the feed, applied in the next pass (no answer: use `apply_inventory`).
        An event refused on arrival is reported in that pass's `refused`."""
        self._add_events(batch.events)

    @workflow.signal
    def check(self, check: c.AllocationCheck | None = None) -> None:
        """Look at some skus or orders in the next pass; no skus and no orders: every sku."""
        self._add_check(check or c.AllocationCheck())

    @workflow.signal
    def move_to_queue(self, move: QueueMove) -> None:
        """Continue as new on `move.task_queue` once the work in flight is answered (a worker
        sends it to an allocator started before allocators had a queue of their own)."""
        if move.task_queue != self._queue and workflow.patched(MOVES_TO_ITS_QUEUE):
            self._move_to = move.task_queue

    @workflow.update
    async def apply_inventory(self, batch: InventoryBatch) -> FeedResult:
        """Apply the events in the next pass and answer each one's outcome."""
        ticket, refused = self._add_events(batch.events)
        await workflow.wait_condition(lambda: ticket in self._results)
        done = self._results[ticket]
        taken = {e.event_id for e in batch.events} - {o.event_id for o in refused}
        outcomes = tuple(o for o in done.report.outcomes if o.event_id in taken)
        return FeedResult(
            pass_id=done.report.pass_id,
            outcomes=outcomes + refused,
            positions=done.report.positions,
            orders_released=done.report.orders_released,
            units_released=done.report.units_released,
        )

    @apply_inventory.validator
    def _validate_inventory(self, batch: InventoryBatch) -> None:
        """Refuse a batch the exact contract refuses, naming each event's fields."""
        problems = contract_problems(batch)
        if problems is not None:
            events = {e.event_id: contract_problems(e) for e in batch.events}
            raise _invalid(batch, problems, events={k: v for k, v in events.items() if v})

    @workflow.update
    async def run_check(self, check: c.AllocationCheck) -> PassOutcome:
        """Run a check (the "Backorder Check" button) and answer what its pass did."""
        ticket = self._add_check(check)
        await workflow.wait_condition(lambda: ticket in self._results)
        return self._results[ticket]

    @run_check.validator
    def _validate_check(self, check: c.AllocationCheck) -> None:
        """Refuse a check the exact contract refuses (none of its rules is relaxed today:
        this keeps the next one that is from slipping through)."""
        problems = contract_problems(check)
        if problems is not None:
            raise _invalid(check, problems)

    @workflow.query
    def status(self) -> AllocatorStatus:
        pending = self._pending()
        return AllocatorStatus(
            site=self._site,
            passes=self._passes,
            pending_events=len(pending.events),
            pending_check=bool(pending.skus or pending.order_ids or pending.full),
            batch_window=self._window,
            recent=tuple(self._recent),
        )

    # -- the pass ------------------------------------------------------------------------------

    async def _run_pass(self) -> None:
        ticket, work = self._batch, self._pending()
        self._batch += 1
        self._events, self._skus, self._orders = {}, set(), set()
        self._full, self._reasons, self._refused = False, [], []
        self._passes += 1
        pass_id = f"{self._site}-{self._passes}-{str(workflow.uuid4())[:8]}"
        reason = "; ".join(dict.fromkeys(work.reasons)) or "inventory events"
        report = await call(
            c.ALLOCATE,
            c.PassRequest(
                site=self._site,
                pass_id=pass_id,
                reason=reason[:500],
                as_of=workflow.now().date(),
                events=work.events,
                skus=work.skus,
                order_ids=work.order_ids,
                full=work.full,
            ),
            run_for=PASS_TIMEOUT,
            heartbeat=PASS_HEARTBEAT,
        )
        delivery = c.DeliveryReport()
        if report.signals:
            delivery = await call(
                c.DELIVER_ALLOTMENTS,
                c.DeliveryRequest(site=self._site, pass_id=pass_id),
                run_for=DELIVERY_TIMEOUT,
                heartbeat=DELIVERY_HEARTBEAT,
            )
        if delivery.freed_skus:  # orders that had ended: their stock goes to the next in line
            self._add_check(
                c.AllocationCheck(reason="stock of ended orders", skus=delivery.freed_skus)
            )
        done = PassOutcome(report=report, delivery=delivery, refused=work.refused)
        self._results[ticket] = done
        self._results.pop(ticket - RESULTS_KEPT, None)
        self._log(done, reason, len(work.events) + len(work.refused))

    def _log(self, done: PassOutcome, reason: str, events: int) -> None:
        report, delivery = done.report, done.delivery
        rejected = [*done.refused, *(o for o in report.outcomes if not o.ok)]
        entry = PassLog(
            pass_id=report.pass_id,
            at=workflow.now(),
            reason=reason[:200],
            events=events,
            rejected=len(rejected),
            orders_released=report.orders_released,
            units_released=report.units_released,
            receipt_notices=report.receipt_notices,
            delivered=delivery.delivered,
            gone=len(delivery.gone),
        )
        self._recent = [*self._recent, entry][-RECENT_PASSES:]
        workflow.logger.info(
            "pass %s (%s): %d events (%d rejected), %d orders released (%d units), "
            "%d signals delivered, %d orders gone",
            entry.pass_id,
            entry.reason,
            entry.events,
            entry.rejected,
            entry.orders_released,
            entry.units_released,
            entry.delivered,
            entry.gone,
        )
        for outcome in rejected:
            _log_rejection(outcome)

    # -- pending work --------------------------------------------------------------------------

    def _add_events(self, events: Iterable[InventoryEvent]) -> tuple[int, tuple[EventOutcome, ...]]:
        """Queue the events for the next pass: its ticket, and the events refused on arrival
        (also reported by the pass)."""
        refused = []
        for e in events:
            refusal = self._refusal(e)
            if refusal is not None:
                refused.append(refusal)
            else:  # the same event twice (an id already waiting): applied once
                self._events.setdefault(e.event_id, e)
        self._refused.extend(refused)
        self._reasons.append("inventory events")
        return self._batch, tuple(refused)

    def _refusal(self, event: InventoryEvent) -> EventOutcome | None:
        """Why `event` may not join the next pass, as its rejection; None: it may. Only the
        rules of earlier releases accept it, or its id is waiting with other content."""
        problems = contract_problems(event)
        waiting = self._events.get(event.event_id)
        conflict = None
        if waiting is not None:
            conflict = id_conflict(
                waiting.model_dump(mode="json"), event, "is waiting to be applied"
            )
        if (problems is None and conflict is None) or not workflow.patched(REFUSE_AT_ARRIVAL):
            return None
        if problems is not None:
            return _rejected(event, Rejection.MALFORMED, f"not applied: {problems}")
        return _rejected(event, Rejection.ID_CONFLICT, str(conflict))

    def _add_check(self, check: c.AllocationCheck) -> int:
        if check.full:
            self._full = True
        self._skus.update(check.skus)
        self._orders.update(check.order_ids)
        self._reasons.append(check.reason)
        return self._batch

    def _has_work(self) -> bool:
        return bool(self._events or self._skus or self._orders or self._full or self._refused)

    def _pending(self) -> PendingWork:
        return PendingWork(
            events=tuple(self._events.values()),
            skus=tuple(sorted(self._skus)),
            order_ids=tuple(sorted(self._orders)),
            full=self._full,
            reasons=tuple(dict.fromkeys(self._reasons)),
            refused=tuple(self._refused),
        )

    def _carried(self) -> AllocatorStart:
        return AllocatorStart(
            site=self._site,
            batch_window=self._window,
            passes=self._passes,
            pending=self._pending(),
            recent=tuple(self._recent),
            task_queue=self._move_to or self._queue,
        )


def _log_rejection(outcome: EventOutcome) -> None:
    workflow.logger.warning("event %s rejected: %s", outcome.event_id, outcome.reason)


def _rejected(event: InventoryEvent, rejection: Rejection, reason: str) -> EventOutcome:
    return EventOutcome(
        event_id=event.event_id, status=EventStatus.REJECTED, rejection=rejection, reason=reason
    )


def _invalid(payload: Any, problems: str, **details: Any) -> ApplicationError:
    """An update's refusal of a payload the exact contract refuses: non-retryable (sending it
    again changes nothing), typed and worded as the converter refuses any other bad payload."""
    return ApplicationError(
        f"invalid {type(payload).__name__}: {problems}",
        {"problems": problems, **details},
        type=INVALID_INPUT,
        non_retryable=True,
    )
