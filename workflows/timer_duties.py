"""The order's timers: what falls due on the schedule (re-authorising, telling the customer it
still waits, FTC notices, exceptions and cancels, the merchant's cut-off, self-checks) and is
done when the workflow wakes for it."""

from __future__ import annotations

from decimal import Decimal

from temporalio import workflow

from workflows.cancels import Cancels
from workflows.order_views import unshipped_items, waiting_items

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.order_book import CancelLine
    from domain.schedule import Due, DutyKind, record, record_still_waiting, summary
    from workflows.calls import call


class TimerDuties(Cancels):
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
                    waiting_items(self._book),
                    expected_ship_date=self._schedule.expected_ship_date,
                )
                self._schedule = record(self._schedule, duty, now)
            case DutyKind.FTC_DELAY_NOTICE | DutyKind.FTC_RENEWED_NOTICE:
                renewed = duty.kind is DutyKind.FTC_RENEWED_NOTICE
                await self._notify(
                    c.NoticeKind.FTC_RENEWED_NOTICE if renewed else c.NoticeKind.FTC_DELAY_OPTION,
                    duty.key,
                    unshipped_items(self._book),
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
