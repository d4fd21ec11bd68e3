"""The state of one order's workflow, typed in one place for the parts it is built from.

`BackorderWorkflow` sets it in its `__init__`; the steps it inherits (effects, payments,
shipping, acceptance, allotments, cancels, timer duties) read and change it. Also the
bookkeeping every step shares: the log, numbered steps and idempotency keys.
"""

from __future__ import annotations

import datetime as dt

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.order import Order
    from domain.order_book import OrderBook
    from domain.payment import PaymentBook
    from domain.policy import BackorderPolicy
    from domain.schedule import ScheduleState
    from workflows.messages import BackorderStatus, LogEntry, OpenExceptions

LOG_LIMIT = 200


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
