"""The payment gateway as the payment activities see it, whatever is behind it.

Behind it: `payments.sandbox.SandboxGateway` (state in PostgreSQL), the same sandbox served
over HTTP, and a Stripe adapter. Keeping the activities on this Protocol means they never
learn which one they talk to, and every implementation must honour the same rules:

- Every operation takes an idempotency key. The same key with the same request returns the
  stored result and takes no second effect; the same key with another request is an
  `InvalidPaymentRequest`. Two concurrent calls with one key take effect once.
- A refusal of the gateway (amount above what is open, authorisation expired or voided) is a
  `PaymentDeclined` and has no effect. Whether the refusal is remembered under its key is up to
  the gateway (the sandbox does not, Stripe does), so a new attempt should use a new key.
- A request that can never succeed as sent (unknown reference, currency or order that does not
  match the authorisation, amount not positive) is an `InvalidPaymentRequest`.
- A gateway that is unreachable, times out or answers 5xx/429 raises `GatewayUnavailable`;
  anything else (network, database) is raised as is: the caller may retry with the same key.

`capture`, `void` and `refund` take the order and currency too, beyond the reference: the
gateway checks them against the authorisation (a capture wired to another order's
authorisation is refused), and a card gateway needs the currency to express the amount in minor
units.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict


class PaymentError(Exception):
    """A gateway's answer that retrying the same request cannot change."""


class PaymentDeclined(PaymentError):
    """The gateway refused: amount above what is open, authorisation expired or voided."""


class InvalidPaymentRequest(PaymentError):
    """The request is wrong as sent: unknown reference, mismatched currency or order, bad
    amount, or an idempotency key reused for another request."""


class GatewayUnavailable(Exception):
    """The gateway did not answer, or answered that it could not serve now (timeout, 5xx,
    429): the same request may be sent again with the same key (Temporal retries it)."""


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthorisationResult(_Result):
    reference: str
    """The authorisation's id (`auth_<hex>` in the sandbox): what is captured from or voided."""
    amount: Decimal
    expires_at: AwareDatetime
    """When the gateway lets the authorisation lapse (nothing can be captured after)."""
    authorised_at: AwareDatetime | None = None
    """When the gateway placed the hold (an order's `payment.authorised_at`); None: this
    gateway does not say."""


class OperationResult(_Result):
    reference: str
    """The capture's, void's or refund's own id (`cap_`, `void_`, `ref_<hex>` in the sandbox)."""
    amount: Decimal
    """The amount moved: for a void of "the rest", what was still open."""


class PaymentGateway(Protocol):
    """Authorise, then capture (in parts), void what is left, refund what was captured."""

    async def authorise(
        self,
        key: str,
        order_id: str,
        amount: Decimal,
        currency: str,
        *,
        renews: str | None = None,
    ) -> AuthorisationResult:
        """Hold `amount` on the customer's payment method until `expires_at`. `renews` names
        the authorisation this one replaces (a re-authorisation): a card gateway charges the
        same saved payment method, off session. The caller voids the old one afterwards."""
        ...

    async def capture(
        self,
        key: str,
        authorisation_ref: str,
        amount: Decimal,
        *,
        order_id: str,
        currency: str,
    ) -> OperationResult:
        """Take `amount` of what the authorisation still holds (one of possibly many)."""
        ...

    async def void(
        self,
        key: str,
        authorisation_ref: str,
        amount: Decimal | None,
        *,
        order_id: str,
        currency: str,
    ) -> OperationResult:
        """Release `amount` of what the authorisation still holds; None releases all of it
        (zero when nothing is open any more: captured, voided or lapsed)."""
        ...

    async def refund(
        self,
        key: str,
        reference: str,
        amount: Decimal,
        *,
        order_id: str,
        currency: str,
    ) -> OperationResult:
        """Give back `amount` of a capture, or of all captures of an authorisation (oldest
        first) when `reference` names the authorisation."""
        ...


def utc_now() -> dt.datetime:
    """The default clock of gateways: aware UTC time."""
    return dt.datetime.now(dt.UTC)
