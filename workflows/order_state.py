"""The state of one order's workflow, typed in one place for the parts it is built from.

`BackorderWorkflow` sets it in its `__init__`; the steps it inherits (effects, payments,
shipping, acceptance, allotments, cancels, timer duties) read and change it. Also the
bookkeeping every step shares: the log, numbered steps and idempotency keys.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from activities.effect_batch import EffectBatch
    from domain.order import Order
    from domain.order_book import OrderBook
    from domain.payment import PaymentBook
    from domain.policy import BackorderPolicy, FulfilmentReports
    from domain.schedule import ScheduleState
    from workflows.messages import BackorderStatus, LogEntry, OpenExceptions, OrderRecord

LOG_LIMIT = 200


@dataclass(frozen=True)
class PendingCapture:
    """A shipment's capture waiting for the transition's write step
    (lean-history-2): its request, its step and when it was decided."""

    request: c.PaymentRequest
    step: str
    at: dt.datetime


@dataclass
class PendingEffects:
    """The writes of the transition under way (lean-history): applied together, in one
    transaction, before the transition lets go of the lock or calls another activity."""

    shipments: list[c.ShipmentRequest] = field(default_factory=list)
    demand: list[c.DemandUpdate] = field(default_factory=list)
    notices: list[c.Notice] = field(default_factory=list)
    records: list[OrderRecord] = field(default_factory=list)
    captures: list[PendingCapture] = field(default_factory=list)
    shipped_stock: list[c.ShipmentStock] = field(default_factory=list)
    short_picked_stock: list[c.ShipmentStock] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.shipments
            or self.demand
            or self.notices
            or self.records
            or self.captures
            or self.shipped_stock
            or self.short_picked_stock
        )

    def batch(self, order_id: str) -> EffectBatch:
        return EffectBatch(
            order_id=order_id,
            shipments=tuple(self.shipments),
            demand=tuple(self.demand),
            notices=tuple(self.notices),
            records=tuple(self.records),
            captures=tuple(p.request for p in self.captures),
            shipped_stock=tuple(self.shipped_stock),
            short_picked_stock=tuple(self.short_picked_stock),
        )


class OrderState:
    """What the workflow knows of its order (what a continue-as-new carries, as `CarriedState`),
    declared for the type checker: the workflow's `__init__` sets every attribute."""

    _order: Order
    _accepted: bool
    _site: str
    _policy: BackorderPolicy
    _book: OrderBook
    _schedule: ScheduleState
    _payment: PaymentBook | None
    _tier: str
    _status: BackorderStatus
    _status_since: dt.datetime
    _acceptance_eta: dt.date | None
    _passes: list[str]
    _arrived: set[str]
    _steps: int
    _log: list[LogEntry]
    _cancel_reason: str | None
    _exceptions: OpenExceptions
    _lock: asyncio.Lock
    _pending: PendingEffects
    _row_written: bool
    """Whether this run has sent the order's read-model row (its later records name the order
    by id)."""

    def _reports(self) -> bool:
        """Whether fulfilment confirms this order's shipments (the policy it was accepted
        under; orders accepted before the setting existed read `none`)."""
        return self._policy.fulfilment_reports is FulfilmentReports.SHIPPED

    def _done(self) -> bool:
        """Nothing is left to ship, and (where fulfilment reports) every shipment is confirmed
        shipped or cancelled: the order's life is over."""
        return self._book.settled and (not self._reports() or self._book.fulfilled)

    def _days_in_backorder(self) -> int:
        return (workflow.now() - self._schedule.accepted_at).days

    def _note(self, event: str, detail: str) -> None:
        workflow.logger.info("%s: %s", event, detail)
        self._log = [*self._log, LogEntry(at=workflow.now(), event=event, detail=detail)][
            -LOG_LIMIT:
        ]

    def _step(self, name: str) -> str:
        """A numbered step (`cancel-3`): unique in the order's life, the same on replay."""
        self._steps += 1
        return f"{name}-{self._steps}"

    def _key(self, *parts: str) -> str:
        return c.step_key(workflow.info().workflow_id, *parts)
