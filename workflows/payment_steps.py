"""The order's money: capture as shipments go, void or refund what will not ship, renew the
hold before it lapses. Every step is recorded in the payment book; a decline or an exhausted
retry goes to an operator instead of failing the order.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.failures import cause_of
from workflows.order_effects import OrderEffects
from workflows.order_views import unshipped_items
from workflows.patches import REFUND_NOTICE, patched

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.order_book import BookedShipment
    from domain.payment import PaymentOperation, PaymentStep
    from domain.policy import PaymentTiming
    from domain.schedule import Authorisation, record_authorisation
    from workflows.calls import call

GATEWAY = {
    PaymentStep.AUTHORISE: c.AUTHORISE_PAYMENT,
    PaymentStep.CAPTURE: c.CAPTURE_PAYMENT,
    PaymentStep.VOID: c.VOID_PAYMENT,
    PaymentStep.REFUND: c.REFUND_PAYMENT,
}
"""The activity that performs each payment step."""


class PaymentSteps(OrderEffects):
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
        if patched(REFUND_NOTICE):
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
                c.NoticeKind.PAYMENT_PROBLEM, f"{step}/problem", unshipped_items(self._book)
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
                                 failure=cause_of(err))
            )  # fmt: skip
            self._note("payment failed", f"{step.value} {amount}: {cause_of(err)}")
            await call(
                c.RAISE_EXCEPTION,
                c.ExceptionReport(
                    key=self._key(key_step, "exception"),
                    order_id=self._order.order_id,
                    kind=f"payment_{step.value}_failed",
                    severity=c.Severity.HIGH,
                    detail=f"{step.value} of {amount} {self._order.currency}: {cause_of(err)}",
                ),
            )
            return None
        self._payment = self._payment.recorded(
            PaymentOperation(step=step, key=key, amount=result.amount, applies_to=applies_to,
                             reference=result.reference, at=now)
        )  # fmt: skip
        return result
