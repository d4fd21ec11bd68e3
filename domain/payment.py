"""The order's money: what is authorised, captured, voided and refunded, and every gateway call.

Pure, like the order book: the workflow asks it what to capture or give back, calls the gateway,
and records the outcome here. Amounts never go negative, and the book never asks for more than
is open, so a capture or refund the gateway would decline is not even attempted.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime

from domain.order import Contract, Money, Order
from domain.policy import PaymentTiming

ZERO = Decimal(0)


class PaymentStep(StrEnum):
    AUTHORISE = "authorise"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"


class PaymentOperation(Contract):
    """One gateway call, as operators see it in the `status` query."""

    step: PaymentStep
    key: str
    """The idempotency key it was sent with."""
    amount: Money
    applies_to: str | None = None
    """The authorisation captured from or voided, or the capture refunded."""
    reference: str | None = None
    """The gateway's id of this operation (None: it failed)."""
    at: AwareDatetime
    failure: str | None = None


class GiveBack(Contract):
    """Money to hand back for units that will not ship: void (not captured) or refund."""

    step: PaymentStep
    amount: Money
    applies_to: str


class PaymentBook(Contract):
    timing: PaymentTiming
    currency: str
    authorisation: str | None = None
    """The open authorisation (payment at shipment) captures are taken from."""
    authorised: Money = ZERO
    """What the open authorisation can still capture."""
    capture: str | None = None
    """The capture refunds are taken from (payment at order)."""
    captured: Money = ZERO
    voided: Money = ZERO
    """Released from authorisations for units that will not ship."""
    refunded: Money = ZERO
    operations: tuple[PaymentOperation, ...] = ()
    problem: str | None = None
    """The last failure an operator should look at (a declined re-authorisation...)."""

    @classmethod
    def from_order(cls, order: Order, timing: PaymentTiming) -> PaymentBook | None:
        """The book at acceptance; None when the order carries no payment (nothing to move)."""
        payment = order.payment
        if payment is None:
            return None
        if timing is PaymentTiming.AT_SHIP:
            return cls(
                timing=timing,
                currency=order.currency,
                authorisation=payment.reference,
                authorised=payment.amount,
            )
        return cls(
            timing=timing,
            currency=order.currency,
            capture=payment.reference,
            captured=payment.amount,
        )

    def to_capture(self, amount: Decimal) -> Decimal:
        """What to capture for a shipment worth `amount` (payment at shipment only)."""
        if self.timing is not PaymentTiming.AT_SHIP or self.authorisation is None:
            return ZERO
        return min(amount, self.authorised)

    def give_back(self, amount: Decimal) -> GiveBack | None:
        """How to hand back `amount` for cancelled units: void what is only authorised, refund
        what was captured; never more than is open."""
        if self.timing is PaymentTiming.AT_SHIP and self.authorisation is not None:
            step, open_, target = PaymentStep.VOID, self.authorised, self.authorisation
        elif self.timing is PaymentTiming.AT_ORDER and self.capture is not None:
            step, open_, target = PaymentStep.REFUND, self.captured - self.refunded, self.capture
        else:
            return None
        amount = min(amount, open_)
        if amount <= 0:
            return None
        return GiveBack(step=step, amount=amount, applies_to=target)

    def recorded(self, op: PaymentOperation) -> PaymentBook:
        """The book after a gateway call (a failed call only joins the log)."""
        ops = {"operations": (*self.operations, op)}
        if op.failure is not None:
            return self.model_copy(update={**ops, "problem": f"{op.step.value}: {op.failure}"})
        current = op.applies_to is not None and op.applies_to == self.authorisation
        match op.step:
            case PaymentStep.AUTHORISE:
                update = {"authorisation": op.reference, "authorised": op.amount}
            case PaymentStep.CAPTURE:  # (made with the writes, it may follow the book's close)
                update = {"authorised": max(self.authorised - op.amount, ZERO)}
                update["captured"] = self.captured + op.amount
            case PaymentStep.VOID if current:
                update = {"authorised": self.authorised - op.amount}
                update["voided"] = self.voided + op.amount
            case PaymentStep.VOID:  # the authorisation a re-authorisation replaced
                update = {}
            case PaymentStep.REFUND:
                update = {"refunded": self.refunded + op.amount}
        return self.model_copy(update={**ops, **update})

    def closed(self) -> PaymentBook:
        """Nothing more will be captured: forget the open authorisation."""
        return self.model_copy(update={"authorisation": None, "authorised": ZERO})


def expired_at(order: Order, default_hold: dt.timedelta = dt.timedelta(days=7)) -> dt.datetime:
    """When the checkout authorisation lapses: the gateway's word, or a card's usual hold."""
    payment = order.payment
    if payment is None:
        raise ValueError(f"order {order.order_id} carries no payment")
    return payment.expires_at or payment.authorised_at + default_hold
