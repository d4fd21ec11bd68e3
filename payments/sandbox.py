"""A payment gateway on PostgreSQL, for development, tests and `backorder dev`.

It behaves like a card gateway where it matters to the order workflow: authorisations lapse,
captures and voids come out of what an authorisation still holds, refunds out of what was
captured, and every operation is idempotent by key. Its state is plain tables (migration 0003),
so an operator can look at it with SQL.

Each call runs in one transaction that first claims its key (an INSERT into `payment_requests`
on the key's primary key), then locks the authorisation row, checks and applies the effect. A
concurrent call with the same key waits on the key until the first commits, then finds the
stored result; one that is declined rolls back and leaves no trace, key included.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from payments.gateway import (
    AuthorisationResult,
    InvalidPaymentRequest,
    OperationResult,
    PaymentDeclined,
    utc_now,
)

Operation = Literal["authorise", "capture", "void", "refund"]

_PREFIX: dict[Operation, str] = {
    "authorise": "auth",
    "capture": "cap",
    "void": "void",
    "refund": "ref",
}
_CURRENCY = re.compile(r"[A-Z]{3}")
_MAX_AMOUNT = Decimal(10) ** 14  # numeric(18, 4)
_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class _Outcome:
    amount: Decimal
    expires_at: dt.datetime | None = None


@dataclass(frozen=True)
class _Stored:
    reference: str
    amount: Decimal
    expires_at: dt.datetime | None
    at: dt.datetime
    """When the key was first applied: for an authorisation, when the hold was placed."""


@dataclass(frozen=True)
class _Authorisation:
    reference: str
    amount: Decimal
    captured: Decimal
    voided: Decimal
    refunded: Decimal
    expires_at: dt.datetime

    @property
    def open(self) -> Decimal:
        return self.amount - self.captured - self.voided

    def check_open(self, operation: str, amount: Decimal, now: dt.datetime) -> None:
        """Decline taking `amount` (a capture or a void) from a lapsed hold, or more than is
        open."""
        if now >= self.expires_at:
            raise PaymentDeclined(
                f"{operation} of {_show(amount)} declined: authorisation {self.reference} "
                f"expired at {self.expires_at.isoformat()}"
            )
        if amount > self.open:
            raise PaymentDeclined(
                f"{operation} of {_show(amount)} declined: only {_show(self.open)} of "
                f"authorisation {self.reference} is open ({self.figures()})"
            )

    def figures(self) -> str:
        return (
            f"authorised {_show(self.amount)}, captured {_show(self.captured)}, "
            f"voided {_show(self.voided)}"
        )


class IdempotencyKeyReused(InvalidPaymentRequest):
    """The key was first used for another request (the HTTP API answers it with 409)."""


_Effect = Callable[[AsyncConnection[Any], dt.datetime, str], Awaitable[_Outcome]]


class SandboxGateway:
    """`PaymentGateway` on PostgreSQL; `clock` is injectable so tests can lapse authorisations
    without waiting."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        authorisation_days: int = 7,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        if authorisation_days <= 0:
            raise ValueError("authorisation_days must be positive")
        self._pool = pool
        self._hold = dt.timedelta(days=authorisation_days)
        self._clock = clock

    # -- the gateway ---------------------------------------------------------------------------

    async def authorise(
        self,
        key: str,
        order_id: str,
        amount: Decimal,
        currency: str,
        *,
        renews: str | None = None,
    ) -> AuthorisationResult:
        _check_amount(amount)
        _check_currency(currency)

        async def effect(conn: AsyncConnection[Any], now: dt.datetime, ref: str) -> _Outcome:
            if renews is not None:
                await _check_renews(conn, renews, order_id)
            expires_at = now + self._hold
            await conn.execute(
                """INSERT INTO payment_authorisations
                       (reference, order_id, currency, amount, authorised_at, expires_at)
                   VALUES (%s, %s, %s, %s, %s, %s)""",
                (ref, order_id, currency, amount, now, expires_at),
            )
            return _Outcome(amount, expires_at)

        request = _request("authorise", order_id, currency, amount, renews)
        stored = await self._once(key, "authorise", request, renews, effect)
        assert stored.expires_at is not None  # every authorisation is stored with it
        return AuthorisationResult(
            reference=stored.reference,
            amount=stored.amount,
            expires_at=stored.expires_at,
            authorised_at=stored.at,
        )

    async def capture(
        self,
        key: str,
        authorisation_ref: str,
        amount: Decimal,
        *,
        order_id: str,
        currency: str,
    ) -> OperationResult:
        _check_amount(amount)
        _check_currency(currency)

        async def effect(conn: AsyncConnection[Any], now: dt.datetime, ref: str) -> _Outcome:
            auth = await _locked(conn, authorisation_ref, order_id, currency)
            auth.check_open("capture", amount, now)
            await conn.execute(
                "UPDATE payment_authorisations SET captured = captured + %s WHERE reference = %s",
                (amount, auth.reference),
            )
            await conn.execute(
                """INSERT INTO payment_captures (reference, authorisation_ref, amount, captured_at)
                   VALUES (%s, %s, %s, %s)""",
                (ref, auth.reference, amount, now),
            )
            return _Outcome(amount)

        request = _request("capture", order_id, currency, amount, authorisation_ref)
        stored = await self._once(key, "capture", request, authorisation_ref, effect)
        return OperationResult(reference=stored.reference, amount=stored.amount)

    async def void(
        self,
        key: str,
        authorisation_ref: str,
        amount: Decimal | None,
        *,
        order_id: str,
        currency: str,
    ) -> OperationResult:
        if amount is not None:
            _check_amount(amount)
        _check_currency(currency)

        async def effect(conn: AsyncConnection[Any], now: dt.datetime, ref: str) -> _Outcome:
            auth = await _locked(conn, authorisation_ref, order_id, currency)
            if amount is None:  # the rest: nothing when it lapsed, since the hold is gone
                released = Decimal(0) if now >= auth.expires_at else auth.open
            else:
                auth.check_open("void", amount, now)
                released = amount
            await conn.execute(
                "UPDATE payment_authorisations SET voided = voided + %s WHERE reference = %s",
                (released, auth.reference),
            )
            return _Outcome(released)

        request = _request("void", order_id, currency, amount, authorisation_ref)
        stored = await self._once(key, "void", request, authorisation_ref, effect)
        return OperationResult(reference=stored.reference, amount=stored.amount)

    async def refund(
        self,
        key: str,
        reference: str,
        amount: Decimal,
        *,
        order_id: str,
        currency: str,
    ) -> OperationResult:
        _check_amount(amount)
        _check_currency(currency)

        async def effect(conn: AsyncConnection[Any], now: dt.datetime, ref: str) -> _Outcome:
            cur = await conn.execute(
                "SELECT authorisation_ref FROM payment_captures WHERE reference = %s",
                (reference,),
            )
            row = await cur.fetchone()
            capture_ref: str | None = reference if row else None
            auth = await _locked(conn, row[0] if row else reference, order_id, currency)
            cur = await conn.execute(
                """SELECT reference, amount - refunded FROM payment_captures
                    WHERE authorisation_ref = %s AND (%s::text IS NULL OR reference = %s)
                    ORDER BY seq
                      FOR UPDATE""",
                (auth.reference, capture_ref, capture_ref),
            )
            captures: list[tuple[str, Decimal]] = list(await cur.fetchall())
            refundable = sum((left for _, left in captures), Decimal(0))
            if amount > refundable:
                what = f"capture {capture_ref}" if capture_ref else f"the captures of {reference}"
                raise PaymentDeclined(
                    f"refund of {_show(amount)} declined: only {_show(refundable)} of {what} "
                    f"is refundable (authorisation {auth.reference}: captured "
                    f"{_show(auth.captured)}, refunded {_show(auth.refunded)})"
                )
            rest = amount
            for capture, left in captures:  # oldest first
                take = min(rest, left)
                if take:
                    await conn.execute(
                        "UPDATE payment_captures SET refunded = refunded + %s WHERE reference = %s",
                        (take, capture),
                    )
                rest -= take
            await conn.execute(
                "UPDATE payment_authorisations SET refunded = refunded + %s WHERE reference = %s",
                (amount, auth.reference),
            )
            return _Outcome(amount)

        request = _request("refund", order_id, currency, amount, reference)
        stored = await self._once(key, "refund", request, reference, effect)
        return OperationResult(reference=stored.reference, amount=stored.amount)

    # -- idempotency ---------------------------------------------------------------------------

    async def _once(
        self,
        key: str,
        operation: Operation,
        request: dict[str, str | None],
        target: str | None,
        effect: _Effect,
    ) -> _Stored:
        """Claim `key` and apply `effect` in one transaction, or return what the key stored."""
        if not key:
            raise InvalidPaymentRequest("an idempotency key is required")
        now = self._clock()
        reference = f"{_PREFIX[operation]}_{uuid.uuid4().hex}"
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                """INSERT INTO payment_requests
                       (key, operation, request, order_id, target, reference, amount, created_at)
                   VALUES (%s, %s, %s, %s, %s, %s, 0, %s)
                   ON CONFLICT (key) DO NOTHING
                   RETURNING key""",
                (key, operation, Jsonb(request), request["order_id"], target, reference, now),
            )
            if await cur.fetchone() is None:
                return await _stored(conn, key, request)
            outcome = await effect(conn, now, reference)
            await conn.execute(
                "UPDATE payment_requests SET amount = %s, expires_at = %s WHERE key = %s",
                (outcome.amount, outcome.expires_at, key),
            )
            return _Stored(reference, _answered(outcome.amount), outcome.expires_at, now)


async def _stored(conn: AsyncConnection[Any], key: str, request: dict[str, str | None]) -> _Stored:
    """The result stored under `key`, if it was stored for this very request."""
    cur = await conn.execute(
        "SELECT request, reference, amount, expires_at, created_at FROM payment_requests"
        " WHERE key = %s",
        (key,),
    )
    row = await cur.fetchone()
    if row is None:  # rows are never deleted; a conflict means it is there
        raise RuntimeError(f"payment request {key} conflicted but is not stored")
    first, reference, amount, expires_at, at = row
    if first != request:
        raise IdempotencyKeyReused(
            f"idempotency key {key} was used for another request: first {first}, now {request}"
        )
    return _Stored(reference, _answered(amount), expires_at, at)


def _answered(amount: Decimal) -> Decimal:
    """An amount as the gateway answers it: as the books hold it (numeric(18, 4)), so a
    replay of the key answers the same, without the zeros past the cents ("30.00", "0.005",
    not the books' "30.0000") that a card gateway would never show."""
    held = amount.quantize(_PLACES)
    cents = held.quantize(Decimal("0.01"))
    return cents if cents == held else held.normalize()


async def _check_renews(conn: AsyncConnection[Any], renews: str, order_id: str) -> None:
    """A re-authorisation must replace an authorisation of the same order."""
    cur = await conn.execute(
        "SELECT order_id FROM payment_authorisations WHERE reference = %s", (renews,)
    )
    row = await cur.fetchone()
    if row is None:
        raise InvalidPaymentRequest(f"renews unknown authorisation {renews!r}")
    if row[0] != order_id:
        raise InvalidPaymentRequest(
            f"renews authorisation {renews} of order {row[0]}, not of order {order_id}"
        )


async def _locked(
    conn: AsyncConnection[Any], reference: str, order_id: str, currency: str
) -> _Authorisation:
    """The authorisation, locked for this transaction, if it belongs to this order and
    currency."""
    cur = await conn.execute(
        """SELECT order_id, currency, amount, captured, voided, refunded, expires_at
             FROM payment_authorisations WHERE reference = %s FOR UPDATE""",
        (reference,),
    )
    row = await cur.fetchone()
    if row is None:
        raise InvalidPaymentRequest(f"unknown authorisation or capture {reference!r}")
    owner, held_in, amount, captured, voided, refunded, expires_at = row
    if owner != order_id:
        raise InvalidPaymentRequest(
            f"authorisation {reference} belongs to order {owner}, not {order_id}"
        )
    if held_in != currency:
        raise InvalidPaymentRequest(
            f"authorisation {reference} is in {held_in}; the request is in {currency}"
        )
    return _Authorisation(reference, amount, captured, voided, refunded, expires_at)


def _request(
    operation: Operation,
    order_id: str,
    currency: str,
    amount: Decimal | None,
    reference: str | None,
) -> dict[str, str | None]:
    """The request as stored with its key: amounts at 4 places, so "10" and "10.00" match."""
    return {
        "operation": operation,
        "order_id": order_id,
        "currency": currency,
        "amount": None if amount is None else f"{amount:.4f}",
        "reference": reference,
    }


def _check_amount(amount: Decimal) -> None:
    exponent = amount.as_tuple().exponent
    if (
        not amount.is_finite()
        or amount <= 0
        or amount >= _MAX_AMOUNT
        or not isinstance(exponent, int)
        or (exponent < -4 and amount != round(amount, 4))
    ):
        raise InvalidPaymentRequest(
            f"amount {amount} must be positive, below {_MAX_AMOUNT} and have at most 4 decimals"
        )


def _check_currency(currency: str) -> None:
    if not _CURRENCY.fullmatch(currency):
        raise InvalidPaymentRequest(f"currency {currency!r} is not an ISO 4217 code")


def _show(amount: Decimal) -> str:
    """Amounts in messages: 2 places unless finer ("12.50", "0.0050")."""
    cents = amount.quantize(Decimal("0.01"))
    return f"{cents}" if cents == amount else f"{amount.normalize():f}"
