"""The payment activities: the order workflow's payment requests, sent to a `PaymentGateway`.

The gateway does the idempotency (the request's key goes with every call), so these stay thin:
they map the request onto the gateway, and the gateway's refusals onto non-retryable
`ApplicationError`s of the contract's types, since retrying a decline cannot change it. Any
other error propagates and Temporal retries it under the same key, which is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    AUTHORISE_PAYMENT,
    CAPTURE_PAYMENT,
    INVALID_REQUEST,
    PAYMENT_DECLINED,
    REFUND_PAYMENT,
    VOID_PAYMENT,
    PaymentRequest,
    PaymentResult,
)
from payments.gateway import InvalidPaymentRequest, PaymentDeclined, PaymentGateway


class PaymentActivities:
    """Authorise, capture, void and refund through one gateway (sandbox or real)."""

    def __init__(self, gateway: PaymentGateway) -> None:
        self._gateway = gateway

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.authorise_payment,
            self.capture_payment,
            self.void_payment,
            self.refund_payment,
        ]

    @activity.defn(name=AUTHORISE_PAYMENT.name)
    async def authorise_payment(self, request: PaymentRequest) -> PaymentResult:
        """A new authorisation for the order; `reference`, when given, is the authorisation it
        renews (a card gateway charges the same saved payment method again)."""
        _log(AUTHORISE_PAYMENT.name, request)
        with _refusals(AUTHORISE_PAYMENT.name, request):
            auth = await self._gateway.authorise(
                request.key,
                request.order_id,
                request.amount,
                request.currency,
                renews=request.reference,
            )
        return PaymentResult(
            reference=auth.reference, amount=auth.amount, expires_at=auth.expires_at
        )

    @activity.defn(name=CAPTURE_PAYMENT.name)
    async def capture_payment(self, request: PaymentRequest) -> PaymentResult:
        """Capture `amount` from the authorisation named by `reference`."""
        _log(CAPTURE_PAYMENT.name, request)
        with _refusals(CAPTURE_PAYMENT.name, request):
            done = await self._gateway.capture(
                request.key,
                _reference(CAPTURE_PAYMENT.name, request),
                request.amount,
                order_id=request.order_id,
                currency=request.currency,
            )
        return PaymentResult(reference=done.reference, amount=done.amount)

    @activity.defn(name=VOID_PAYMENT.name)
    async def void_payment(self, request: PaymentRequest) -> PaymentResult:
        """Release `amount` of the authorisation named by `reference`; an amount of 0 releases
        everything still open (the result says how much that was, 0 if nothing was)."""
        _log(VOID_PAYMENT.name, request)
        with _refusals(VOID_PAYMENT.name, request):
            done = await self._gateway.void(
                request.key,
                _reference(VOID_PAYMENT.name, request),
                None if request.amount == 0 else request.amount,
                order_id=request.order_id,
                currency=request.currency,
            )
        return PaymentResult(reference=done.reference, amount=done.amount)

    @activity.defn(name=REFUND_PAYMENT.name)
    async def refund_payment(self, request: PaymentRequest) -> PaymentResult:
        """Refund `amount` of the capture named by `reference`, or of the captures of the
        authorisation it names (oldest first)."""
        _log(REFUND_PAYMENT.name, request)
        with _refusals(REFUND_PAYMENT.name, request):
            done = await self._gateway.refund(
                request.key,
                _reference(REFUND_PAYMENT.name, request),
                request.amount,
                order_id=request.order_id,
                currency=request.currency,
            )
        return PaymentResult(reference=done.reference, amount=done.amount)


def _reference(name: str, request: PaymentRequest) -> str:
    if request.reference is None:
        raise InvalidPaymentRequest(f"{name} needs the reference it applies to")
    return request.reference


def _log(name: str, request: PaymentRequest) -> None:
    activity.logger.info(
        "%s key=%s order=%s amount=%s %s reference=%s",
        name,
        request.key,
        request.order_id,
        request.amount,
        request.currency,
        request.reference,
    )


@contextmanager
def _refusals(name: str, request: PaymentRequest) -> Iterator[None]:
    """Gateway refusals as non-retryable ApplicationErrors of the contract's types."""
    try:
        yield
    except PaymentDeclined as err:
        activity.logger.warning("%s key=%s declined: %s", name, request.key, err)
        raise ApplicationError(str(err), type=PAYMENT_DECLINED, non_retryable=True) from err
    except InvalidPaymentRequest as err:
        activity.logger.warning("%s key=%s invalid: %s", name, request.key, err)
        raise ApplicationError(str(err), type=INVALID_REQUEST, non_retryable=True) from err
