"""BackorderWorkflow: the durable life of one backordered order (id `backorder-<order id>`).

Acceptance splits the order against current stock; then the workflow sleeps until an allotment,
a customer-service message or its next timer, and ends when nothing is left unshipped. Every
change goes through the pure order book, schedule and payment book first, then its effects run
as idempotent activities keyed by workflow id and step. Signals queue in an inbox that the main
loop drains, so changes never interleave; the `cancel_order` update shares the same lock.

This module holds the life and the messages; the steps the workflow inherits are in
`acceptance`, `allotments`, `cancels` and `timer_duties` (on `shipping`, `payment_steps`,
`order_effects` and `order_state`), what it shows in `order_views`, its patch ids in `patches`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.acceptance import Acceptance
from workflows.alarm import Alarm
from workflows.allotments import Allotments
from workflows.customer_service import CustomerService, RefusedMessage, ServiceMessage
from workflows.failures import cause_of, error_type_of
from workflows.fulfilment_reports import FulfilmentSteps
from workflows.order_state import PendingEffects
from workflows.order_views import line_statuses, order_summary, waiting_book
from workflows.patches import (
    CLAIM_ORDER_ID,
    LEAN_HISTORY_2,
    OPEN_EXCEPTIONS_NEWS,
    SETTLE_UNDER_LOCK,
    STRICT_CONTRACT,
    patched,
)
from workflows.timer_duties import TimerDuties

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.contract import contract_problems
    from domain.order import Order, placed_at_problem
    from domain.policy import BackorderPolicy
    from domain.schedule import ScheduleState, due, next_wakeup, summary
    from workflows import refusals as r
    from workflows.calls import call, shielded
    from workflows.messages import (
        AllotmentSignal,
        BackorderStatus,
        BackorderSummary,
        CarriedState,
        OpenExceptions,
        OrderStatus,
    )

T = TypeVar("T")
Event = AllotmentSignal | ServiceMessage | RefusedMessage

DUTIES_PER_WAKEUP = 50
"""A guard: the schedule advances on every duty, so more than this means a bug, not work."""


@workflow.defn(name="BackorderWorkflow")
class BackorderWorkflow(Acceptance, Allotments, TimerDuties, CustomerService, FulfilmentSteps):
    @workflow.init
    def __init__(self, start: Order | CarriedState) -> None:
        order = start.order if isinstance(start, CarriedState) else start
        self._order = order
        self._inbox: list[Event] = []
        self._lock = asyncio.Lock()
        self._pending = PendingEffects()
        self._row_written = False
        self._alarm = Alarm()
        self._opened: c.OpenedOrder | None = None
        """What `open_order` read with the claim, for acceptance (lean-history-2)."""
        self._accepted = isinstance(start, CarriedState)
        carried = start
        if not isinstance(carried, CarriedState):
            now = workflow.now()
            carried = CarriedState(
                order=order,
                site=order.site or "default",
                policy=BackorderPolicy(),
                book=waiting_book(order),
                schedule=ScheduleState(accepted_at=now),
                payment=None,
                tier=order.customer.tier,
                status=BackorderStatus.BACKORDERED,
                status_since=now,
                acceptance_eta=None,
                passes=(),
                arrived=(),
                steps=0,
                log=(),
                cancel_reason=None,
            )
        self._site = carried.site
        self._policy = carried.policy
        self._book = carried.book
        self._schedule = carried.schedule
        self._payment = carried.payment
        self._tier = carried.tier
        self._status = carried.status
        self._status_since = carried.status_since
        self._acceptance_eta = carried.acceptance_eta
        self._passes = list(carried.passes)
        self._arrived = set(carried.arrived)
        self._steps = carried.steps
        self._log = list(carried.log)
        self._cancel_reason = carried.cancel_reason
        self._exceptions = carried.exceptions

    # -- the life ------------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: Order | CarriedState) -> BackorderSummary:
        """`start` is the order, or (after continue-as-new) the state its last run carried."""
        order = self._order
        if not self._accepted:
            self._publish_attributes()  # operators find the order from its first instant
            if patched(CLAIM_ORDER_ID):
                await self._claim()  # before any side effect: a duplicate leaves no trace
        try:
            if not self._accepted:
                async with self._transition():  # an early cancel_order waits for it
                    await shielded(self._accept())
            while not self._done():
                await shielded(self._work())
                if self._done():
                    break
                if workflow.info().is_continue_as_new_suggested():
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    if not self._inbox and not self._done():
                        workflow.continue_as_new(self._carried())
                await self._sleep()
            await shielded(self._settle())
        except asyncio.CancelledError:
            # Cancelled from Temporal (an operator): compensate, then end as cancelled.
            await shielded(self._compensate("workflow cancelled", "temporal"))
            raise
        except ActivityError as err:
            await shielded(self._compensate(f"failed: {cause_of(err)}", "backorder-workflow"))
            raise ApplicationError(
                f"order {order.order_id} could not continue: {cause_of(err)}; what was not shipped "
                "was cancelled and given back",
                type="BackorderFailed",
                non_retryable=True,
            ) from err
        await self._answer_late_messages()
        return order_summary(
            self._order,
            self._book,
            self._status,
            self._payment,
            self._days_in_backorder(),
            workflow.now(),
        )

    async def _settle(self) -> None:
        """Nothing is left to ship: answer what is still in the inbox (stock allotted meanwhile
        goes back at once), then close the payment. Under the lock, so a `cancel_order` still
        voiding finishes first and its void is in the payment book before the closing one."""
        if not patched(SETTLE_UNDER_LOCK):
            await self._finish()
            return
        async with self._transition():
            await self._drain()
            await self._finish()

    async def _answer_late_messages(self) -> None:
        """Never end with a message unhandled: an allotment signalled while the order was
        ending is refused here and its stock goes back. The last check and the return share
        one workflow task, so a signal arriving later makes Temporal retry that task with it."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        while self._inbox and patched(SETTLE_UNDER_LOCK):
            async with self._transition():
                await shielded(self._drain())
            await workflow.wait_condition(workflow.all_handlers_finished)

    async def _claim(self) -> None:
        """One workflow per order, `backorder-<order id>`, and one acceptance per order id,
        whatever the entry point (our CLI, raw `temporal workflow start`, another SDK) and
        however long ago the first run ended."""
        order, info = self._order, workflow.info()
        problems = contract_problems(order)
        if problems is not None and patched(STRICT_CONTRACT):
            raise r.invalid("Order", problems).error()  # taken only by an earlier release's rules
        late = placed_at_problem(order.placed_at, workflow.now())
        if late is not None:  # the contract's bound against now, where the order enters
            raise ApplicationError(
                f"invalid Order: placed_at: {late[1]}",
                late[0],
                type=r.INVALID_INPUT,
                non_retryable=True,
            )
        if info.workflow_id != order.workflow_id:
            raise r.Refusal(
                r.WRONG_WORKFLOW_ID,
                f"order {order.order_id} must run as workflow {order.workflow_id}, not "
                f"{info.workflow_id}: one workflow per order",
                {"field": "order_id", "workflow_id": order.workflow_id},
            ).error()
        claim = c.OrderClaim(
            order_id=order.order_id,
            workflow_id=info.workflow_id,
            run_id=info.first_execution_run_id,
        )
        try:
            if workflow.patched(LEAN_HISTORY_2):  # the claim and acceptance's reads in one
                self._opened = await call(c.OPEN_ORDER, self._opening(claim))
            else:
                await call(c.CLAIM_ORDER, claim)
        except ActivityError as err:
            if error_type_of(err) != c.DUPLICATE_ORDER:
                raise
            cause = err.cause
            details = cause.details if isinstance(cause, ApplicationError) else ()
            raise ApplicationError(
                cause_of(err), *details, type=c.DUPLICATE_ORDER, non_retryable=True
            ) from None

    async def _sleep(self) -> None:
        """Until a message arrives (or an update settles the order), or the next timer."""
        wakeup = next_wakeup(self._schedule, self._policy)
        if workflow.patched(LEAN_HISTORY_2):
            self._alarm.set(wakeup)
            await workflow.wait_condition(
                lambda: bool(self._inbox) or self._done() or self._alarm.rang
            )
            return
        timeout = None
        if wakeup is not None:
            timeout = max(wakeup - workflow.now(), timedelta(seconds=1))
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: bool(self._inbox) or self._done(), timeout=timeout
            )

    async def _work(self) -> None:
        async with self._transition():
            await self._drain()
            for _ in range(DUTIES_PER_WAKEUP):
                duties = due(self._schedule, self._policy, workflow.now())
                if not duties or (self._book.settled and not self._schedule.awaiting_capture):
                    return
                await self._perform(duties[0])
            workflow.logger.error("timers did not settle after %d duties", DUTIES_PER_WAKEUP)

    async def _compensate(self, reason: str, by: str) -> None:
        """Cancel everything not shipped yet and close the payment (Temporal cancel, failure);
        under the lock, after any `cancel_order` in flight, like `_settle`."""
        if not patched(SETTLE_UNDER_LOCK):
            await self._give_up(reason, by)
            await self._finish()
            return
        async with self._transition():
            await self._give_up(reason, by)
            await self._drain()
            await self._finish()

    def _carried(self) -> CarriedState:
        return CarriedState(
            order=self._order,
            site=self._site,
            policy=self._policy,
            book=self._book,
            schedule=self._schedule,
            payment=self._payment,
            tier=self._tier,
            status=self._status,
            status_since=self._status_since,
            acceptance_eta=self._acceptance_eta,
            passes=tuple(self._passes),
            arrived=tuple(sorted(self._arrived)),
            steps=self._steps,
            log=tuple(self._log),
            cancel_reason=self._cancel_reason,
            exceptions=self._exceptions,
        )

    # -- messages ------------------------------------------------------------------------------

    @workflow.signal
    def allotment(self, allotment: AllotmentSignal) -> None:
        """Stock the allocator reserved for this order, and news of awaited receipts."""
        self._inbox.append(allotment)

    @workflow.signal(name="exceptions_changed")
    def exceptions_changed(self, news: OpenExceptions) -> None:
        """What is open for the order on the operators' queue, read after a change there (sent
        by whoever raised or resolved). Only the newest reading counts: news may overtake."""
        if not patched(OPEN_EXCEPTIONS_NEWS):
            self._refuse_unknown("exceptions_changed")  # what workers before the patch did
            return
        known = self._exceptions.as_of
        if news.as_of is None or (known is not None and news.as_of <= known):
            return
        self._exceptions = news
        self._publish_attributes()

    @workflow.query
    def status(self) -> OrderStatus:
        return OrderStatus(
            order_id=self._order.order_id,
            order_number=self._order.order_number,
            status=self._status,
            customer_tier=self._tier,
            order_value=self._order.value,
            currency=self._order.currency,
            backordered_since=self._schedule.accepted_at,
            as_of=workflow.now(),
            days_in_backorder=self._days_in_backorder(),
            lines=line_statuses(self._book),
            parent=self._book.status,
            shipments=self._book.shipments,
            payment=self._payment,
            expected_ship_date=self._schedule.expected_ship_date,
            ftc_state=self._schedule.ftc.state,
            schedule=summary(self._schedule, self._policy) if self._accepted else None,
            log=tuple(self._log),
            cancel_reason=self._cancel_reason,
            exceptions=self._exceptions,
        )

    async def _drain(self) -> None:
        """Handle the inbox in arrival order (the caller holds the lock)."""
        while self._inbox:
            await self._handle(self._inbox.pop(0))

    async def _handle(self, event: Event) -> None:
        if isinstance(event, AllotmentSignal):
            await self._allot(event)
        else:
            await self._serve(event)
