"""Cancels and the order's close: units leave the book first, then their stock is released, the
money given back and the customer told; at the end what is left of the hold is released."""

from __future__ import annotations

from decimal import Decimal

from temporalio import workflow

from workflows.order_views import notice_items
from workflows.payment_steps import PaymentSteps

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.order_book import CancelPlan
    from domain.policy import PaymentTiming
    from domain.schedule import record_cleared
    from workflows.messages import CancelRequest, CancelResult


TOLD_WHY = frozenset({"ftc-rule", "auto-cancel"})
"""Cancels the customer did not ask for, whose reason their notice gives."""


class Cancels(PaymentSteps):
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
        items = notice_items((p.sku, p.quantity) for p in plan.parts)
        told = reason if by in TOLD_WHY else None  # the customer did not ask: say why
        await self._notify(
            c.NoticeKind.CANCELLED, f"{step}/notice", items, amount=given, reason=told
        )
        await self._confirm_refund(given, step, items)
        await self._changed()
        refund = self._payment is not None and self._payment.timing is PaymentTiming.AT_ORDER
        return CancelResult(
            cancelled=plan.parts,
            voided=Decimal(0) if refund else given,
            refunded=given if refund else Decimal(0),
        )

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
