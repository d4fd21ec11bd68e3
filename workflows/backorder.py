"""BackorderWorkflow: the durable life of one backordered order (id `backorder-<order id>`).

Acceptance splits the order against current stock; then the workflow sleeps until an allotment,
a customer-service message or its next timer, and ends when nothing is left unshipped. Every
change goes through the pure order book, schedule and payment book first, then its effects run
as idempotent activities keyed by workflow id and step. Signals queue in an inbox that the main
loop drains, so changes never interleave; the `cancel_order` update shares the same lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Iterable
from datetime import timedelta
from decimal import Decimal
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from activities.read_model import ReadModelActivities
    from domain.order import Order
    from domain.order_book import (
        BookedShipment,
        BookError,
        BookLine,
        CancelLine,
        CancelPlan,
        OrderBook,
        ShipmentStatus,
        StaleRelease,
    )
    from domain.payment import PaymentBook, PaymentOperation, PaymentStep, expired_at
    from domain.planner import (
        Allotment,
        LineOutcome,
        OrderRelease,
        ParentStatus,
        Stock,
        expected_ship_date,
        plan_acceptance,
    )
    from domain.policy import BackorderPolicy, PaymentTiming
    from domain.schedule import (
        Authorisation,
        Due,
        DutyKind,
        ScheduleState,
        due,
        next_wakeup,
        record,
        record_authorisation,
        record_cleared,
        record_consent,
        record_expected_ship_date,
        record_still_waiting,
        summary,
    )
    from workflows import search_attributes as sa
    from workflows.calls import UNTIL_IT_WORKS, call
    from workflows.messages import (
        AllotmentSignal,
        BackorderStatus,
        BackorderSummary,
        CancelRequest,
        CancelResult,
        CarriedState,
        CheckNow,
        ConsentSignal,
        LineStatus,
        LogEntry,
        OrderRecord,
        OrderStatus,
        PriorityChange,
        ReceiptChange,
        ReceiptStatus,
    )

T = TypeVar("T")
Event = AllotmentSignal | CancelRequest | ConsentSignal | PriorityChange | CheckNow

RESERVE_ATTEMPTS = 3
"""Acceptance re-reads stock this often when another order takes it between read and reserve."""
LOG_LIMIT = 200
PASSES_KEPT = 500
DETAIL_ROWS = 50
"""Lines and shipments shown in the UI's current details (all of them: the status query)."""
DUTIES_PER_WAKEUP = 50
"""A guard: the schedule advances on every duty, so more than this means a bug, not work."""
NUDGE_WHEN_FREED = "nudge-allocator-when-stock-is-freed"
"""Patch: releasing stock asks the allocator to hand it on, and a refused allotment re-syncs
the demand index (histories recorded before this change replay without those calls)."""
REFUND_NOTICE = "confirm-refunds-to-the-customer"
"""A refund (payment at order) is confirmed by its own `refunded` notice after `cancelled`."""
SETTLE_UNDER_LOCK = "settle-under-the-lock"
"""Patch: the order's end runs under the lock after the inbox is drained (a cancel_order still
voiding finishes first, stock allotted meanwhile goes back), and messages that arrive while it
ends are answered before it returns."""
CLAIM_ORDER_ID = "claim-the-order-id"
"""Patch: before acceptance the workflow id is checked and the order id claimed in PostgreSQL,
so an order is accepted once whatever the entry point."""
FTC_FROM_PLACED_AT = "ftc-clock-from-placed-at"
"""Patch: the FTC deadline runs from `placed_at` (and allows for credit applications)."""
RECEIPT_NEWS_PER_SHIPMENT = "receipt-news-per-shipment"
"""Patch: a receipt's arrival counts for the shipments waiting on it when the news came, not
for ones promised later from the rest of a purchase order received in parts, and each pass's
receipt news has steps of its own (the same receipt may arrive in several parts)."""
WRONG_WORKFLOW_ID = "WrongWorkflowId"
GATEWAY = {
    PaymentStep.AUTHORISE: c.AUTHORISE_PAYMENT,
    PaymentStep.CAPTURE: c.CAPTURE_PAYMENT,
    PaymentStep.VOID: c.VOID_PAYMENT,
    PaymentStep.REFUND: c.REFUND_PAYMENT,
}
"""The activity that performs each payment step."""


@workflow.defn(name="BackorderWorkflow")
class BackorderWorkflow:
    @workflow.init
    def __init__(self, start: Order | CarriedState) -> None:
        order = start.order if isinstance(start, CarriedState) else start
        self._order = order
        self._inbox: list[Event] = []
        self._lock = asyncio.Lock()
        self._accepted = isinstance(start, CarriedState)
        carried = start
        if not isinstance(carried, CarriedState):
            now = workflow.now()
            carried = CarriedState(
                order=order,
                site=order.site or "default",
                policy=BackorderPolicy(),
                book=_waiting_book(order),
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

    # -- the life ------------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: Order | CarriedState) -> BackorderSummary:
        """`start` is the order, or (after continue-as-new) the state its last run carried."""
        order = self._order
        if not self._accepted and workflow.patched(CLAIM_ORDER_ID):
            await self._claim()  # before anything else: a duplicate leaves no trace
        try:
            if not self._accepted:
                self._publish_attributes()  # operators find the order from its first instant
                async with self._lock:  # an early cancel_order waits for acceptance to finish
                    await _shielded(self._accept())
            while not self._book.settled:
                await _shielded(self._work())
                if self._book.settled:
                    break
                if workflow.info().is_continue_as_new_suggested():
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    if not self._inbox and not self._book.settled:
                        workflow.continue_as_new(self._carried())
                await self._sleep()
            await _shielded(self._settle())
        except asyncio.CancelledError:
            # Cancelled from Temporal (an operator): compensate, then end as cancelled.
            await _shielded(self._compensate("workflow cancelled", "temporal"))
            raise
        except ActivityError as err:
            await _shielded(self._compensate(f"failed: {_cause(err)}", "backorder-workflow"))
            raise ApplicationError(
                f"order {order.order_id} could not continue: {_cause(err)}; what was not shipped "
                "was cancelled and given back",
                type="BackorderFailed",
                non_retryable=True,
            ) from err
        await self._answer_late_messages()
        return self._summary()

    async def _settle(self) -> None:
        """Nothing is left to ship: answer what is still in the inbox (stock allotted meanwhile
        goes back at once), then close the payment. Under the lock, so a `cancel_order` still
        voiding finishes first and its void is in the payment book before the closing one."""
        if not workflow.patched(SETTLE_UNDER_LOCK):
            await self._finish()
            return
        async with self._lock:
            await self._drain()
            await self._finish()

    async def _answer_late_messages(self) -> None:
        """Never end with a message unhandled: an allotment signalled while the order was
        ending is refused here and its stock goes back. The last check and the return share
        one workflow task, so a signal arriving later makes Temporal retry that task with it."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        while self._inbox and workflow.patched(SETTLE_UNDER_LOCK):
            async with self._lock:
                await _shielded(self._drain())
            await workflow.wait_condition(workflow.all_handlers_finished)

    async def _claim(self) -> None:
        """One workflow per order, `backorder-<order id>`, and one acceptance per order id,
        whatever the entry point (our CLI, raw `temporal workflow start`, another SDK) and
        however long ago the first run ended."""
        order, info = self._order, workflow.info()
        if info.workflow_id != order.workflow_id:
            raise ApplicationError(
                f"order {order.order_id} must run as workflow {order.workflow_id}, not "
                f"{info.workflow_id}: one workflow per order",
                order.workflow_id,
                type=WRONG_WORKFLOW_ID,
                non_retryable=True,
            )
        claim = c.OrderClaim(
            order_id=order.order_id,
            workflow_id=info.workflow_id,
            run_id=info.first_execution_run_id,
        )
        try:
            await call(c.CLAIM_ORDER, claim)
        except ActivityError as err:
            if _error_type(err) != c.DUPLICATE_ORDER:
                raise
            cause = err.cause
            details = cause.details if isinstance(cause, ApplicationError) else ()
            raise ApplicationError(
                _cause(err), *details, type=c.DUPLICATE_ORDER, non_retryable=True
            ) from None

    async def _sleep(self) -> None:
        """Until a message arrives (or an update settles the order), or the next timer."""
        wakeup = next_wakeup(self._schedule, self._policy)
        timeout = None
        if wakeup is not None:
            timeout = max(wakeup - workflow.now(), timedelta(seconds=1))
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: bool(self._inbox) or self._book.settled, timeout=timeout
            )

    async def _work(self) -> None:
        async with self._lock:
            await self._drain()
            for _ in range(DUTIES_PER_WAKEUP):
                duties = due(self._schedule, self._policy, workflow.now())
                if not duties or self._book.settled:
                    return
                await self._perform(duties[0])
            workflow.logger.error("timers did not settle after %d duties", DUTIES_PER_WAKEUP)

    # -- messages ------------------------------------------------------------------------------

    @workflow.signal
    def allotment(self, allotment: AllotmentSignal) -> None:
        """Stock the allocator reserved for this order, and news of awaited receipts."""
        self._inbox.append(allotment)

    @workflow.signal
    def cancel(self, request: CancelRequest | None = None) -> None:
        """Cancel the whole order, or given lines; a cancel that cannot apply is logged."""
        self._inbox.append(request or CancelRequest())

    @workflow.signal
    def consent(self, consent: ConsentSignal | None = None) -> None:
        """The customer accepts the shipping delay (FTC rule)."""
        self._inbox.append(consent or ConsentSignal())

    @workflow.signal
    def check_now(self, request: CheckNow | None = None) -> None:
        """Ask the allocator to look at this order again."""
        self._inbox.append(request or CheckNow())

    @workflow.signal
    def set_priority(self, change: PriorityChange) -> None:
        """Serve this order as another tier from now on."""
        self._inbox.append(change)

    @workflow.update
    async def cancel_order(self, request: CancelRequest) -> CancelResult:
        """Cancel and answer what was cancelled and given back."""
        await workflow.wait_condition(lambda: self._accepted)
        async with self._lock:
            try:
                return await _shielded(self._cancel(request))
            except BookError as err:  # the order changed since the validator ran
                raise ApplicationError(str(err), type="CancelRejected") from None

    @cancel_order.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if self._book.settled:
            raise ValueError(f"order {self._order.order_id} has nothing left to cancel")
        self._book.plan_cancel(request.lines)  # raises with the reason

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
            lines=self._lines(),
            parent=self._book.status,
            shipments=self._book.shipments,
            payment=self._payment,
            expected_ship_date=self._schedule.expected_ship_date,
            ftc_state=self._schedule.ftc.state,
            schedule=summary(self._schedule, self._policy) if self._accepted else None,
            log=tuple(self._log),
            cancel_reason=self._cancel_reason,
        )

    async def _drain(self) -> None:
        """Handle the inbox in arrival order (the caller holds the lock)."""
        while self._inbox:
            await self._handle(self._inbox.pop(0))

    async def _handle(self, event: Event) -> None:
        match event:
            case AllotmentSignal():
                await self._allot(event)
            case CancelRequest():
                try:
                    await self._cancel(event)
                except BookError as err:
                    self._note("cancel refused", f"{err} (from {event.requested_by})")
            case ConsentSignal():
                before = self._schedule.ftc
                self._schedule = record_consent(
                    self._schedule, self._policy, workflow.now(), event.until
                )
                taken = (
                    "recorded" if self._schedule.ftc != before else "ignored: nothing to consent to"
                )
                self._note("consent", f"{taken} (via {event.channel}, until {event.until})")
                await self._changed()
            case CheckNow():
                await self._request_check(event.reason)
            case PriorityChange():
                self._note("priority", f"{self._tier} -> {event.tier}: {event.reason}")
                self._tier = event.tier
                await self._update_demand()
                await self._changed()

    # -- acceptance ----------------------------------------------------------------------------

    async def _accept(self) -> None:
        order = self._order
        chosen = await call(c.LOAD_POLICY, c.PolicyRequest(site=order.site))
        self._site, self._policy = chosen.site, chosen.policy
        policy = self._policy
        for attempt in range(1, RESERVE_ATTEMPTS + 1):
            available = await call(
                c.CHECK_AVAILABILITY,
                c.AvailabilityRequest(
                    order_id=order.order_id, skus=tuple(order.skus), fulfillment=order.fulfillment
                ),
            )
            stock = available.stock
            if attempt == RESERVE_ATTEMPTS:  # stock keeps moving: let it all wait instead
                stock = Stock(locations=stock.locations, receipts=stock.receipts)
            plan = plan_acceptance(order, stock, available.catalog, policy)
            if not plan.allotments or await self._reserve(plan.allotments, f"accept-{attempt}"):
                break
        now = workflow.now()
        waiting = [o.sku for o in plan.lines if o.backordered]
        self._acceptance_eta = expected_ship_date(
            waiting, available.stock.receipts, now.date(), policy.default_backorder_days
        )
        self._book = OrderBook.accept(order, plan, now)
        self._accepted = True  # from here on a cancel has stock and money to give back
        self._payment = PaymentBook.from_order(order, policy.payment_timing)
        authorisation = None
        if order.payment is not None and policy.payment_timing is PaymentTiming.AT_SHIP:
            authorisation = Authorisation(
                authorised_at=order.payment.authorised_at, expires_at=expired_at(order)
            )
        placed = workflow.patched(FTC_FROM_PLACED_AT)  # the FTC clock runs from placed_at
        self._schedule = ScheduleState(
            accepted_at=now,
            ordered_at=order.placed_at if placed else None,
            applied_for_credit=placed and order.applied_for_credit,
            stated_ship_date=order.stated_ship_date,
            expected_ship_date=self._acceptance_eta,
            authorisation=authorisation,
        )
        book = self._book
        self._note(
            "accepted",
            f"site {self._site}: {sum(o.released for o in plan.lines)} units ship now, "
            f"{book.backordered_units} backordered, {sum(o.cancelled for o in plan.lines)} "
            f"cancelled; expected {self._acceptance_eta}",
        )
        await self._ship(book.shipments, "accept")
        amount, cancelled = self._cancelled_in(plan.lines)
        if cancelled:
            given = await self._give_back(amount, "accept")
            await self._notify(c.NoticeKind.CANCELLED, "accept/cancelled", cancelled, amount=given)
            await self._confirm_refund(given, "accept", cancelled)
        await self._update_demand()
        if book.backordered_units:
            await self._notify(
                c.NoticeKind.ON_BACKORDER,
                "accept/on-backorder",
                self._waiting_items(),
                expected_ship_date=self._acceptance_eta,
            )
        await self._changed(accepted=True)

    async def _reserve(self, allotments: tuple[Allotment, ...], step: str) -> bool:
        """Reserve stock planned at acceptance; False when another order took it first."""
        try:
            await self._stock(c.RESERVE_STOCK, allotments, step, "reserve")
        except ActivityError as err:
            if _error_type(err) != c.INSUFFICIENT_STOCK:
                raise
            self._note("stock moved", f"{_cause(err)}; reading stock again")
            return False
        return True

    # -- allotments and receipts ---------------------------------------------------------------

    async def _allot(self, signal: AllotmentSignal) -> None:
        if signal.pass_id in self._passes:
            self._note("allotment ignored", f"pass {signal.pass_id} was already applied")
            return
        self._passes = [*self._passes, signal.pass_id][-PASSES_KEPT:]
        if signal.release is not None:
            await self._release(signal.release, f"pass-{signal.pass_id}")
        for change in signal.receipts:
            await self._receipt(change, signal.pass_id)

    async def _release(self, release: OrderRelease, step: str) -> None:
        before = self._book
        try:
            self._book = before.release(release, workflow.now())
        except StaleRelease as err:
            self._note("allotment refused", f"{step}: {err}; its stock goes back")
            await self._free(release.allotments, f"{step}/refused")
            if workflow.patched(NUDGE_WHEN_FREED):
                await self._update_demand()  # the allocator's index may have drifted
            return
        new = self._book.shipments[len(before.shipments) :]
        self._note(
            "allotment",
            f"{step}: {sum(o.released for o in release.lines)} units in "
            f"{len(new)} shipments; {self._book.backordered_units} still backordered",
        )
        if self._policy.void_and_reauth_on_release and (
            release.parent_status is ParentStatus.REASSIGNED
        ):
            value = sum((s.amount for s in new), Decimal(0))
            await self._reauthorise(value, f"{step}/reauthorise")
        await self._ship(new, step)
        amount, dropped = self._cancelled_in(release.lines)
        if dropped:
            await self._give_back(amount, f"{step}/dropped")
        await self._update_demand()
        await self._changed()

    async def _receipt(self, change: ReceiptChange, pass_id: str) -> None:
        awaiting = [
            s
            for s in self._book.future_shipments
            if any(a.receipt_id == change.receipt_id for a in s.allotments)
        ]
        if not awaiting:
            self._note("receipt", f"{change.receipt_id} {change.status.value}: no shipment waits")
            return
        step = f"receipt-{change.receipt_id}-{change.status.value}"
        per_shipment = workflow.patched(RECEIPT_NEWS_PER_SHIPMENT)
        if per_shipment:
            step = f"pass-{pass_id}/{step}"
        if change.status is ReceiptStatus.ARRIVED:
            if per_shipment:
                self._arrived.update(f"{s.shipment_id}/{change.receipt_id}" for s in awaiting)
            else:
                self._arrived.add(change.receipt_id)
            for s in awaiting:
                if all(self._has_arrived(s, a.receipt_id) for a in s.allotments):
                    self._book = self._book.receipt_arrived(s.shipment_id)
                    self._note("receipt", f"{change.receipt_id} arrived: {s.shipment_id} ships")
                    await self._ship([self._book.shipment(s.shipment_id)], step)
        else:
            # the date promised at acceptance may be past by now: wait the policy's default
            soonest = workflow.now().date() + timedelta(days=self._policy.default_backorder_days)
            self._acceptance_eta = max(self._acceptance_eta or soonest, soonest)
            for s in awaiting:
                self._book = self._book.back_to_backorder(s.shipment_id)
                self._note(
                    "receipt",
                    f"{change.receipt_id} {change.status.value}: {s.shipment_id} waits again",
                )
                await self._free(s.allotments, f"{step}/{s.shipment_id}")
                await self._publish(self._book.shipment(s.shipment_id), step)
            await self._update_demand()
        await self._changed()

    def _has_arrived(self, shipment: BookedShipment, receipt_id: str | None) -> bool:
        """Whether the receipt arrived for this shipment (plain receipt ids: news recorded
        before `receipt-news-per-shipment`, which counted for every shipment)."""
        return (
            receipt_id in self._arrived or f"{shipment.shipment_id}/{receipt_id}" in self._arrived
        )

    async def _ship(self, shipments: Iterable[BookedShipment], step: str) -> None:
        """Hand new or newly ready shipments to fulfilment, capture them, tell the customer."""
        going = []
        for s in shipments:
            await self._publish(s, step)
            if s.status in (ShipmentStatus.READY, ShipmentStatus.TRANSFER):
                await self._capture(s)
                going.append(s)
        if going:
            kind = (
                c.NoticeKind.PARTLY_SHIPPED if self._book.unshipped_units else c.NoticeKind.SHIPPED
            )
            items = _items((a.sku, a.quantity) for s in going for a in s.allotments)
            await self._notify(kind, f"{step}/shipped", items)

    # -- cancels and compensation --------------------------------------------------------------

    async def _cancel(self, request: CancelRequest) -> CancelResult:
        plan = self._book.plan_cancel(request.lines)
        return await self._cancel_plan(plan, request.reason, request.requested_by)

    async def _cancel_plan(self, plan: CancelPlan, reason: str, by: str) -> CancelResult:
        """Take the units out of the book first, then release their stock, withdraw the future
        shipments they were in, give the money back and tell the customer."""
        step = self._step("cancel")
        before = self._book
        freed = before.freed_by(plan)
        self._book = before.cancel(plan)
        self._cancel_reason = reason
        self._note("cancelled", f"{step}: {plan.units} units by {by}: {reason}")
        if freed:
            await self._free(freed, step)
        for old, new in zip(before.shipments, self._book.shipments, strict=True):
            if old != new:
                await self._publish(new, step)
        given = await self._give_back(plan.amount, step)
        await self._update_demand()
        items = _items((p.sku, p.quantity) for p in plan.parts)
        await self._notify(c.NoticeKind.CANCELLED, f"{step}/notice", items, amount=given)
        await self._confirm_refund(given, step, items)
        await self._changed()
        refund = self._payment is not None and self._payment.timing is PaymentTiming.AT_ORDER
        return CancelResult(
            cancelled=plan.parts,
            voided=Decimal(0) if refund else given,
            refunded=given if refund else Decimal(0),
        )

    async def _compensate(self, reason: str, by: str) -> None:
        """Cancel everything not shipped yet and close the payment (Temporal cancel, failure);
        under the lock, after any `cancel_order` in flight, like `_settle`."""
        if not workflow.patched(SETTLE_UNDER_LOCK):
            await self._give_up(reason, by)
            await self._finish()
            return
        async with self._lock:
            await self._give_up(reason, by)
            await self._drain()
            await self._finish()

    async def _give_up(self, reason: str, by: str) -> None:
        if not self._accepted:
            self._note("cancelled", f"before acceptance: {reason}")
        elif not self._book.settled:
            await self._cancel_plan(self._book.plan_cancel(), reason, by)

    async def _finish(self) -> None:
        """The order's life is over: release what is left of the authorisation, final record."""
        if self._payment is not None:  # nothing more will be captured
            await self._give_back(self._payment.authorised, "final")
            self._payment = self._payment.closed()
        self._schedule = record_cleared(self._schedule)
        await self._changed()

    # -- timers --------------------------------------------------------------------------------

    async def _perform(self, duty: Due) -> None:
        order, now = self._order, workflow.now()
        match duty.kind:
            case DutyKind.REAUTHORISE:
                amount = self._payment.authorised if self._payment else Decimal(0)
                await self._reauthorise(amount, duty.key)
            case DutyKind.CUSTOMER_UPDATE:
                await self._notify(
                    c.NoticeKind.STILL_WAITING,
                    duty.key,
                    self._waiting_items(),
                    expected_ship_date=self._schedule.expected_ship_date,
                )
                self._schedule = record(self._schedule, duty, now)
            case DutyKind.FTC_DELAY_NOTICE | DutyKind.FTC_RENEWED_NOTICE:
                renewed = duty.kind is DutyKind.FTC_RENEWED_NOTICE
                await self._notify(
                    c.NoticeKind.FTC_RENEWED_NOTICE if renewed else c.NoticeKind.FTC_DELAY_OPTION,
                    duty.key,
                    self._unshipped_items(),
                    expected_ship_date=self._schedule.expected_ship_date,
                    revised_ship_date=duty.revised_date,
                    respond_by=duty.cancel_at,
                )
                self._schedule = record(self._schedule, duty, now)
                self._note(
                    "ftc notice",
                    f"notice {duty.notice}: revised date {duty.revised_date or 'unknown'}, "
                    + (f"cancelled {duty.cancel_at:%Y-%m-%d} unless the customer consents"
                       if duty.cancel_at else "silence is consent"),
                )  # fmt: skip
            case DutyKind.FTC_EXCEPTION:
                await call(
                    c.RAISE_EXCEPTION,
                    c.ExceptionReport(
                        key=self._key(duty.key),
                        order_id=order.order_id,
                        kind="ftc_deadline",
                        severity=c.Severity.HIGH,
                        detail=f"order {order.order_number} backordered "
                        f"{self._days_in_backorder()} days; FTC shipping deadline "
                        f"{summary(self._schedule, self._policy).ftc_deadline:%Y-%m-%d}",
                    ),
                )
                self._schedule = record(self._schedule, duty, now)
                self._note("exception", "flagged for an operator: FTC deadline near (high)")
            case DutyKind.FTC_CANCEL:
                # the rule: everything not shipped (waiting or in future shipments) goes
                self._schedule = record(self._schedule, duty, now)
                if not self._book.settled:
                    reason = (
                        "FTC rule: not shipped by the deadline without consent; refund by "
                        f"{duty.refund_by}"
                    )
                    await self._cancel_plan(self._book.plan_cancel(), reason, "ftc-rule")
            case DutyKind.AUTO_CANCEL:
                # the merchant's cut-off: what is still backordered goes; units already in
                # future shipments keep waiting for their receipts
                self._schedule = record(self._schedule, duty, now)
                waiting = [
                    CancelLine(line_id=ln.line_id, quantity=ln.backordered)
                    for ln in self._book.lines
                    if ln.backordered
                ]
                if waiting:
                    reason = f"not filled within {self._policy.auto_cancel_days} days"
                    plan = self._book.plan_cancel(waiting)
                    await self._cancel_plan(plan, reason, "auto-cancel")
                if not self._book.settled:
                    self._schedule = record_still_waiting(self._schedule)
            case DutyKind.SELF_CHECK:
                await self._request_check("periodic self-check")
                self._schedule = record(self._schedule, duty, now)

    async def _request_check(self, reason: str, skus: tuple[str, ...] = ()) -> None:
        await call(
            c.REQUEST_CHECK,
            c.CheckRequest(
                order_id=self._order.order_id, reason=reason, site=self._site, skus=skus
            ),
        )
        self._note("check", f"allocator asked to re-check: {reason}")

    # -- payments ------------------------------------------------------------------------------

    async def _capture(self, shipment: BookedShipment) -> None:
        if self._payment is None:
            return
        amount = self._payment.to_capture(shipment.amount)
        if amount > 0:
            await self._pay(
                PaymentStep.CAPTURE,
                amount,
                self._payment.authorisation,
                f"capture/{shipment.shipment_id}",
            )

    async def _give_back(self, amount: Decimal, step: str) -> Decimal:
        """Void or refund `amount` for units that will not ship; what was given back."""
        back = self._payment.give_back(amount) if self._payment else None
        if back is None:
            return Decimal(0)
        ok = await self._pay(back.step, back.amount, back.applies_to, f"{step}/{back.step}")
        return back.amount if ok else Decimal(0)

    async def _confirm_refund(
        self, given: Decimal, step: str, items: tuple[c.NoticeItem, ...]
    ) -> None:
        """Tell the customer the money is on its way back (a void needs no word: the hold
        just ends)."""
        payment = self._payment
        if given <= 0 or payment is None or payment.timing is not PaymentTiming.AT_ORDER:
            return
        if workflow.patched(REFUND_NOTICE):
            await self._notify(c.NoticeKind.REFUNDED, f"{step}/refunded", items, amount=given)

    async def _reauthorise(self, amount: Decimal, step: str) -> None:
        """A fresh authorisation for `amount` (what is still to capture, or exactly the released
        value with `void_and_reauth_on_release`), then the old one is voided. In that order: if
        the gateway declines, the old hold still pays for what ships."""
        payment = self._payment
        if payment is None or payment.authorisation is None:
            return
        if amount <= 0:  # nothing left to hold
            self._schedule = record_authorisation(self._schedule, None)
            return
        old, held = payment.authorisation, payment.authorised
        result = await self._pay(PaymentStep.AUTHORISE, amount, old, step)  # renews `old`
        if result is None:
            self._schedule = record_authorisation(self._schedule, None)
            await self._notify(
                c.NoticeKind.PAYMENT_PROBLEM, f"{step}/problem", self._unshipped_items()
            )
            return
        if held > 0:
            await self._pay(PaymentStep.VOID, held, old, f"{step}/void-previous")
        now = workflow.now()
        expires = result.expires_at or now + timedelta(days=7)
        self._schedule = record_authorisation(
            self._schedule, Authorisation(authorised_at=now, expires_at=expires)
        )
        self._note("re-authorised", f"{amount} {self._order.currency} until {expires:%Y-%m-%d}")

    async def _pay(
        self,
        step: PaymentStep,
        amount: Decimal,
        applies_to: str | None,
        key_step: str,
    ) -> c.PaymentResult | None:
        """One gateway call; a decline or an exhausted retry is recorded, reported to an
        operator, and returns None: money problems never lose the order."""
        assert self._payment is not None
        key = self._key(key_step)
        request = c.PaymentRequest(
            key=key,
            order_id=self._order.order_id,
            amount=amount,
            currency=self._order.currency,
            reference=applies_to,
        )
        now = workflow.now()
        try:
            result = await call(GATEWAY[step], request)
        except ActivityError as err:
            self._payment = self._payment.recorded(
                PaymentOperation(step=step, key=key, amount=amount, applies_to=applies_to, at=now,
                                 failure=_cause(err))
            )  # fmt: skip
            self._note("payment failed", f"{step.value} {amount}: {_cause(err)}")
            await call(
                c.RAISE_EXCEPTION,
                c.ExceptionReport(
                    key=self._key(key_step, "exception"),
                    order_id=self._order.order_id,
                    kind=f"payment_{step.value}_failed",
                    severity=c.Severity.HIGH,
                    detail=f"{step.value} of {amount} {self._order.currency}: {_cause(err)}",
                ),
            )
            return None
        self._payment = self._payment.recorded(
            PaymentOperation(step=step, key=key, amount=result.amount, applies_to=applies_to,
                             reference=result.reference, at=now)
        )  # fmt: skip
        return result

    # -- effects -------------------------------------------------------------------------------

    async def _free(self, allotments: Iterable[Allotment], step: str) -> None:
        """Release the stock, and offer it to the orders next in line at once (not at the next
        sweep)."""
        freed = tuple(allotments)
        if freed:
            await self._stock(c.RELEASE_STOCK, freed, step, "release-stock")
            if workflow.patched(NUDGE_WHEN_FREED):
                skus = tuple(sorted({a.sku for a in freed}))
                await self._request_check(f"stock freed ({step})", skus)

    async def _stock(
        self,
        contract: c.ActivityContract[c.StockReservation, c.Empty],
        allotments: tuple[Allotment, ...],
        *key: str,
    ) -> None:
        reservation = c.StockReservation(
            key=self._key(*key), order_id=self._order.order_id, allotments=allotments
        )
        await call(contract, reservation)

    async def _publish(self, shipment: BookedShipment, step: str) -> None:
        await call(
            c.PUBLISH_SHIPMENT,
            c.ShipmentRequest(
                key=self._key(step, "shipment", shipment.shipment_id),
                order_id=self._order.order_id,
                shipment=shipment,
            ),
        )

    async def _update_demand(self) -> None:
        """What still waits, for the allocator (None once nothing does)."""
        await call(
            c.UPDATE_DEMAND,
            c.DemandUpdate(
                key=self._key(self._step("demand")),
                order_id=self._order.order_id,
                backorder=self._book.open_backorder(self._order, self._tier),
                site=self._site,
            ),
        )

    async def _notify(
        self,
        kind: c.NoticeKind,
        step: str,
        items: tuple[c.NoticeItem, ...],
        **details: object,
    ) -> None:
        order = self._order
        notice = c.Notice.model_validate(
            {
                "key": self._key(step),
                "kind": kind,
                "order_id": order.order_id,
                "order_number": order.order_number,
                "email": order.customer.email,
                "items": items,
                "currency": order.currency,
                **details,
            }
        )
        await call(c.SEND_NOTICE, notice)

    async def _changed(self, *, accepted: bool = False) -> None:
        """After any change: the expected date, timers, status, search attributes, read model
        (written on acceptance and on every change of status)."""
        book = self._book
        dates = [s.expected_date for s in book.future_shipments if s.expected_date]
        if book.backordered_units and self._acceptance_eta is not None:
            dates.append(self._acceptance_eta)
        expected = max(dates, default=None)
        if expected != self._schedule.expected_ship_date:
            self._schedule = record_expected_ship_date(self._schedule, expected)
        if book.settled and self._schedule.backordered:
            self._schedule = record_cleared(self._schedule)
        status = _status_of(book)
        moved = status is not self._status
        if moved or accepted:
            self._status, self._status_since = status, workflow.now()
        self._publish_attributes()
        if moved or accepted:
            await self._record()

    # -- views ---------------------------------------------------------------------------------

    def _publish_attributes(self) -> None:
        """Search attributes and current details: what operators see in the Temporal UI."""
        order, book = self._order, self._book
        waiting = sorted({ln.sku for ln in book.lines if ln.backordered}) or order.skus
        workflow.upsert_search_attributes(
            [
                sa.BACKORDER_STATUS.value_set(self._status.value),
                sa.BACKORDER_SKUS.value_set(sa.bounded_keywords(waiting)),
                sa.BACKORDER_SINCE.value_set(self._schedule.accepted_at),
                sa.CUSTOMER_TIER.value_set(self._tier),
                sa.ORDER_VALUE.value_set(float(order.value)),
                sa.FTC_STATE.value_set(self._schedule.ftc.state.value),
            ]
        )
        workflow.set_current_details(self._details())

    def _details(self) -> str:
        order, book = self._order, self._book
        rows = "\n".join(
            f"| {ln.line_id} | {ln.sku} | {ln.ordered} | {ln.released} | {ln.backordered} "
            f"| {ln.cancelled} |"
            for ln in book.lines[:DETAIL_ROWS]
        )
        if len(book.lines) > DETAIL_ROWS:
            rows += f"\n| … | {len(book.lines) - DETAIL_ROWS} more lines (the status query) |||||"
        shipments = ", ".join(
            f"{s.shipment_id} {s.status.value}" for s in book.shipments[-DETAIL_ROWS:]
        )
        if len(book.shipments) > DETAIL_ROWS:
            shipments = f"{len(book.shipments) - DETAIL_ROWS} earlier, then {shipments}"
        nxt = summary(self._schedule, self._policy).upcoming if self._accepted else ()
        upcoming = ", ".join(f"{d.kind.value} {d.at:%Y-%m-%d}" for d in nxt[:3]) or "none"
        money = ""
        if self._payment is not None:
            p = self._payment
            money = (
                f"\n\nPayment ({p.timing.value}): authorised {p.authorised}, captured "
                f"{p.captured}, voided {p.voided}, refunded {p.refunded}"
                + (f" — **problem: {p.problem}**" if p.problem else "")
            )
        return (
            f"**Order {order.order_number}** ({order.order_id}) — **{self._status.value}** "
            f"since {self._status_since:%Y-%m-%d %H:%M} UTC\n\n"
            f"Customer {order.customer.id} ({self._tier}), {order.value} {order.currency}; "
            f"expected ship date {self._schedule.expected_ship_date or 'unknown'}; "
            f"FTC {self._schedule.ftc.state.value}; next: {upcoming}\n\n"
            "| line | sku | ordered | released | backordered | cancelled |\n"
            f"|---|---|---|---|---|---|\n{rows}\n\nShipments: {shipments or 'none'}{money}"
        )

    async def _record(self) -> None:
        await workflow.execute_activity_method(
            ReadModelActivities.record_order,
            OrderRecord(
                order=self._order,
                workflow_id=workflow.info().workflow_id,
                status=self._status,
                status_since=self._status_since,
                site=self._site,
                tier=self._tier,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=UNTIL_IT_WORKS,
        )

    def _lines(self) -> list[LineStatus]:
        return [LineStatus(**ln.model_dump(exclude={"unit_price"})) for ln in self._book.lines]

    def _summary(self) -> BackorderSummary:
        return BackorderSummary(
            order_id=self._order.order_id,
            status=self._status,
            lines=self._lines(),
            shipments=self._book.shipments,
            payment=self._payment,
            days_in_backorder=self._days_in_backorder(),
            ended_at=workflow.now(),
        )

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
        )

    def _cancelled_in(
        self, outcomes: Iterable[LineOutcome]
    ) -> tuple[Decimal, tuple[c.NoticeItem, ...]]:
        """The value and items of what a plan cancelled (not backorderable, dropped inserts)."""
        cancelled = [o for o in outcomes if o.cancelled]
        value = sum(
            (self._book.line(o.line_id).unit_price * o.cancelled for o in cancelled), Decimal(0)
        )
        return value, _items((o.sku, o.cancelled) for o in cancelled)

    def _waiting_items(self) -> tuple[c.NoticeItem, ...]:
        return _items((ln.sku, ln.backordered) for ln in self._book.lines)

    def _unshipped_items(self) -> tuple[c.NoticeItem, ...]:
        future = ((a.sku, a.quantity) for s in self._book.future_shipments for a in s.allotments)
        return _items([*((ln.sku, ln.backordered) for ln in self._book.lines), *future])

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


def _waiting_book(order: Order) -> OrderBook:
    """Before acceptance everything waits (what `status` shows in the first instants)."""
    return OrderBook(
        order_id=order.order_id,
        currency=order.currency,
        lines=tuple(
            BookLine(
                line_id=ln.line_id,
                sku=ln.sku,
                unit_price=ln.unit_price,
                ordered=ln.quantity,
                backordered=ln.quantity,
            )
            for ln in order.lines
        ),
    )


def _status_of(book: OrderBook) -> BackorderStatus:
    if book.backordered_units:
        return BackorderStatus.BACKORDERED
    if book.unshipped_units:
        return BackorderStatus.AWAITING_RECEIPT
    shipped = any(
        s.status in (ShipmentStatus.READY, ShipmentStatus.TRANSFER) for s in book.shipments
    )
    return BackorderStatus.COMPLETED if shipped else BackorderStatus.CANCELLED


def _items(pairs: Iterable[tuple[str, int]]) -> tuple[c.NoticeItem, ...]:
    """Units per sku, in first-seen order (zero quantities left out)."""
    units: Counter[str] = Counter()
    for sku, quantity in pairs:
        units[sku] += quantity
    return tuple(c.NoticeItem(sku=sku, quantity=q) for sku, q in units.items() if q > 0)


def _error_type(err: ActivityError) -> str | None:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def _cause(err: BaseException) -> str:
    """The innermost message of an activity failure (what the gateway or ledger said)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err)


async def _shielded(work: Awaitable[T]) -> T:
    """Run `work` to the end even if the workflow is cancelled meanwhile: a half-done change
    (stock freed but money not given back) must never be left behind. The cancel is re-raised
    once the work is done."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
