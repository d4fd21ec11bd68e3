"""The order's money: capture as shipments go, void or refund what will not ship, renew the
hold before it lapses. Every step is recorded in the payment book; a decline or an exhausted
retry goes to an operator instead of failing the order.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.failures import cause_of
from workflows.order_effects import OrderEffects
from workflows.order_state import PendingCapture
from workflows.order_views import unshipped_items
from workflows.patches import LEAN_HISTORY_2, REFUND_NOTICE, patched

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from activities.effect_batch import CaptureOutcome
    from domain.order_book import BookedShipment
    from domain.payment import PaymentBook, PaymentOperation, PaymentStep
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
        """Capture what the shipment is worth (payment at shipment): made with the transition's
        writes (lean-history-2), or in a step of its own in earlier runs."""
        book = self._book_if_captured()
        if book is None:
            return
        amount = book.to_capture(shipment.amount)
        if amount <= 0:
            return
        step = f"capture/{shipment.shipment_id}"
        reference = book.authorisation
        if workflow.patched(LEAN_HISTORY_2):
            request = self._payment_request(amount, reference, step)
            self._pending.captures.append(PendingCapture(request, step, workflow.now()))
        else:
            await self._pay(PaymentStep.CAPTURE, amount, reference, step)

    def _book_if_captured(self) -> PaymentBook | None:
        """The payment book as it will be once the captures waiting for the write step are
        made (as they nearly always are: a failed one is seen to when it is recorded)."""
        book = self._payment
        for p in self._pending.captures:
            r = p.request
            assert book is not None  # (a capture was decided from it)
            book = book.recorded(
                PaymentOperation(step=PaymentStep.CAPTURE, key=r.key, amount=r.amount,
                                 applies_to=r.reference, at=p.at)
            )  # fmt: skip
        return book

    async def _book_captures(self) -> None:
        """Captures waiting for the write step are made and recorded before any other gateway
        call (the gateway sees them in the order decided) and before a re-authorisation reads
        the book."""
        if self._pending.captures:
            await self.flush_effects()

    async def _record_captures(
        self, pending: list[PendingCapture], outcomes: tuple[CaptureOutcome, ...]
    ) -> None:
        """Each capture made with the writes, in the book as `_pay` records a capture. One that
        failed after the order's end had closed the book (counting on it) leaves its amount
        held: that is voided, as the end would have voided it."""
        by_key = {o.key: o for o in outcomes}
        for capture in pending:
            request, outcome = capture.request, by_key.get(capture.request.key)
            result = None if outcome is None else outcome.result
            failure = (outcome.failure if outcome else None) or "no outcome reported"
            done = await self._recorded(
                PaymentStep.CAPTURE, request, capture.step, capture.at, result, failure
            )
            book = self._payment
            if done is None and book is not None and book.authorisation is None:
                held = request.reference
                await self._pay(PaymentStep.VOID, request.amount, held, f"{capture.step}/void")

    async def _give_back(self, amount: Decimal, step: str) -> Decimal:
        """Void or refund `amount` for units that will not ship; what was given back."""
        book = self._book_if_captured()
        back = book.give_back(amount) if book else None
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
        await self._book_captures()
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
        await self._book_captures()
        request = self._payment_request(amount, applies_to, key_step)
        now = workflow.now()
        try:
            result = await call(GATEWAY[step], request)
        except ActivityError as err:
            return await self._recorded(step, request, key_step, now, None, cause_of(err))
        return await self._recorded(step, request, key_step, now, result, "")

    def _payment_request(
        self, amount: Decimal, applies_to: str | None, key_step: str
    ) -> c.PaymentRequest:
        return c.PaymentRequest(
            key=self._key(key_step),
            order_id=self._order.order_id,
            amount=amount,
            currency=self._order.currency,
            reference=applies_to,
        )

    async def _recorded(
        self,
        step: PaymentStep,
        request: c.PaymentRequest,
        key_step: str,
        at: datetime,
        result: c.PaymentResult | None,
        failure: str,
    ) -> c.PaymentResult | None:
        """A gateway call's outcome in the payment book; a failure (no `result`) is also
        reported to an operator."""
        assert self._payment is not None
        key, amount, applies_to = request.key, request.amount, request.reference
        if result is not None:
            self._payment = self._payment.recorded(
                PaymentOperation(step=step, key=key, amount=result.amount, applies_to=applies_to,
                                 reference=result.reference, at=at)
            )  # fmt: skip
            return result
        self._payment = self._payment.recorded(
            PaymentOperation(step=step, key=key, amount=amount, applies_to=applies_to, at=at,
                             failure=failure)
        )  # fmt: skip
        self._note("payment failed", f"{step.value} {amount}: {failure}")
        await call(
            c.RAISE_EXCEPTION,
            c.ExceptionReport(
                key=self._key(key_step, "exception"),
                order_id=self._order.order_id,
                kind=f"payment_{step.value}_failed",
                severity=c.Severity.HIGH,
                detail=f"{step.value} of {amount} {self._order.currency}: {failure}",
            ),
        )
        return None
