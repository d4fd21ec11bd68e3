"""Payloads of the allocator workflow: its input, update results and status query.

The inventory events themselves (`domain.inventory`) and the check request
(`activities.contracts.AllocationCheck`) are the messages it receives.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from activities.contracts import AllocationCheck, DeliveryReport, PassReport
from domain.contract import Contract, Count, Identifier
from domain.inventory import EventOutcome, InventoryEvent, StockPosition

ALLOCATOR_ID_PREFIX = "allocator-"


def allocator_id(site: str) -> str:
    """One allocator per site: `allocator-<site>`."""
    return f"{ALLOCATOR_ID_PREFIX}{site}"


class PendingWork(Contract):
    """What waits for the next pass: events not yet applied and the checks asked for."""

    events: tuple[InventoryEvent, ...] = ()
    skus: tuple[Identifier, ...] = ()
    order_ids: tuple[Identifier, ...] = ()
    full: bool = False
    reasons: tuple[str, ...] = ()
    refused: tuple[EventOutcome, ...] = ()
    """Events refused on arrival, reported by the next pass (see `PassOutcome.refused`)."""

    @property
    def empty(self) -> bool:
        return not (self.events or self.skus or self.order_ids or self.full or self.refused)


class PassLog(Contract):
    """One pass, for the status query (the last few are kept)."""

    pass_id: Identifier
    at: datetime
    reason: str
    events: int
    rejected: int
    orders_released: int
    units_released: int
    receipt_notices: int
    delivered: int
    gone: int


class AllocatorStart(Contract):
    """The allocator's input; after continue-as-new, also what the last run carried."""

    site: Identifier
    batch_window: timedelta = timedelta(seconds=2)
    """Events arriving this close together share one pass."""
    passes: Count = 0
    """Passes run so far (the next pass's number)."""
    pending: PendingWork = PendingWork()
    recent: tuple[PassLog, ...] = ()
    task_queue: str | None = None
    """The task queue this run was started on (None: a run started before allocators had a
    queue of their own, on the orders' queue)."""


class QueueMove(Contract):
    """The `move_to_queue` signal: the task queue the workers now serve this allocator on. A
    worker sends it at start to an allocator running elsewhere; the allocator continues as new
    there once its in-flight work is answered."""

    task_queue: Identifier


class FeedResult(Contract):
    """The `apply_inventory` update's answer: each event's outcome, and the stock it left."""

    pass_id: Identifier
    outcomes: tuple[EventOutcome, ...]
    positions: tuple[StockPosition, ...] = ()
    orders_released: int = 0
    units_released: int = 0


class PassOutcome(Contract):
    """The `run_check` update's answer: the pass and the signals it delivered."""

    report: PassReport
    delivery: DeliveryReport
    refused: tuple[EventOutcome, ...] = ()
    """Events the allocator refused when they arrived, never applied (all rejected): an event of
    the `inventory` signal that only the rules of earlier releases accept (`malformed`), or one
    whose id was waiting for this pass with other content (`id_conflict`)."""


class AllocatorStatus(Contract):
    site: Identifier
    passes: int
    pending_events: int
    pending_check: bool
    batch_window: timedelta
    recent: tuple[PassLog, ...]


__all__ = [
    "ALLOCATOR_ID_PREFIX",
    "AllocationCheck",
    "AllocatorStart",
    "AllocatorStatus",
    "FeedResult",
    "PassLog",
    "PassOutcome",
    "PendingWork",
    "QueueMove",
    "allocator_id",
]
