"""The payment activities on the sandbox gateway, against real PostgreSQL: amounts are checked
against what is open, refusals are non-retryable and change nothing, and a key takes effect
once however often (or however concurrently) it is sent."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from decimal import Decimal

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

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
from activities.payments import PaymentActivities
from payments.gateway import AuthorisationResult, OperationResult
from payments.sandbox import SandboxGateway
from tests.payment_servers import totals

T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Order:
    """One order's payment calls, with ids of its own (the database is shared by the module)."""

    def __init__(self, payments: PaymentActivities, currency: str = "USD") -> None:
        self.order_id = f"P-{uuid.uuid4().hex[:10]}"
        self.payments = payments
        self.currency = currency
        self.env = ActivityEnvironment()

    def request(
        self, step: str, amount: str, reference: str | None = None, **changes: str
    ) -> PaymentRequest:
        return PaymentRequest(
            key=f"backorder-{self.order_id}/{step}",
            order_id=changes.get("order_id", self.order_id),
            amount=Decimal(amount),
            currency=changes.get("currency", self.currency),
            reference=reference,
        )

    async def authorise(self, amount: str, step: str = "authorise") -> PaymentResult:
        return await self.env.run(self.payments.authorise_payment, self.request(step, amount))

    async def capture(self, step: str, auth: str, amount: str, **changes: str) -> PaymentResult:
        return await self.env.run(
            self.payments.capture_payment, self.request(step, amount, auth, **changes)
        )

    async def void(self, step: str, auth: str, amount: str) -> PaymentResult:
        return await self.env.run(self.payments.void_payment, self.request(step, amount, auth))

    async def refund(self, step: str, reference: str, amount: str) -> PaymentResult:
        return await self.env.run(
            self.payments.refund_payment, self.request(step, amount, reference)
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def payments(pg_pool: AsyncConnectionPool, clock: Clock) -> PaymentActivities:
    return PaymentActivities(SandboxGateway(pg_pool, authorisation_days=7, clock=clock))


@pytest.fixture
def order(payments: PaymentActivities) -> Order:
    return Order(payments)


async def requests_of(dsn: str, order_id: str) -> list[tuple[str, str]]:
    """(operation, amount) of every request the gateway stored for the order."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT operation, amount FROM payment_requests WHERE order_id = %s"
            " ORDER BY created_at, operation",
            (order_id,),
        )
        return [(op, f"{amount:.2f}") for op, amount in await cur.fetchall()]


async def refused(kind: str, call: object) -> ApplicationError:
    """Await `call`, which must fail with a non-retryable ApplicationError of type `kind`."""
    assert asyncio.iscoroutine(call)
    with pytest.raises(ApplicationError) as caught:
        await call
    assert caught.value.type == kind, caught.value
    assert caught.value.non_retryable
    return caught.value


def test_activities_register_under_the_contract_names(payments: PaymentActivities) -> None:
    names = {getattr(fn, "__temporal_activity_definition").name for fn in payments.activities()}
    assert names == {
        c.name for c in (AUTHORISE_PAYMENT, CAPTURE_PAYMENT, VOID_PAYMENT, REFUND_PAYMENT)
    }


async def test_authorise_partial_captures_then_void_the_rest(
    order: Order, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        auth = await order.authorise("100.00")
    assert auth.reference.startswith("auth_")
    assert auth.amount == Decimal("100.00")
    assert auth.expires_at == T0 + dt.timedelta(days=7)
    assert f"key=backorder-{order.order_id}/authorise" in caplog.text

    first = await order.capture("capture/S1", auth.reference, "30.00")
    second = await order.capture("capture/S2", auth.reference, "45.50")
    assert first.reference.startswith("cap_") and second.reference.startswith("cap_")
    assert first.reference != second.reference
    assert (first.amount, second.amount) == (Decimal("30.00"), Decimal("45.50"))
    assert await totals(pg_dsn, auth.reference) == ("100.00", "75.50", "0.00", "0.00")

    rest = await order.void("void", auth.reference, "0")  # 0: everything still open
    assert rest.reference.startswith("void_")
    assert rest.amount == Decimal("24.50")
    assert await totals(pg_dsn, auth.reference) == ("100.00", "75.50", "24.50", "0.00")

    err = await refused(PAYMENT_DECLINED, order.capture("capture/S3", auth.reference, "0.01"))
    assert "only 0.00" in str(err)
    again = await order.void("void-again", auth.reference, "0")
    assert again.amount == Decimal(0)  # nothing left to release, which is not an error


async def test_partial_void_and_a_void_above_what_is_open(order: Order, pg_dsn: str) -> None:
    auth = await order.authorise("50.00")
    await order.capture("capture/S1", auth.reference, "20.00")
    part = await order.void("void/S2", auth.reference, "10.00")
    assert part.amount == Decimal("10.00")
    err = await refused(PAYMENT_DECLINED, order.void("void/S3", auth.reference, "20.01"))
    assert "only 20.00" in str(err)
    assert await totals(pg_dsn, auth.reference) == ("50.00", "20.00", "10.00", "0.00")


async def test_over_capture_is_declined_and_changes_nothing(order: Order, pg_dsn: str) -> None:
    auth = await order.authorise("60.00")
    await order.capture("capture/S1", auth.reference, "40.00")
    err = await refused(PAYMENT_DECLINED, order.capture("capture/S2", auth.reference, "20.01"))
    assert "only 20.00" in str(err) and "captured 40.00" in str(err)
    assert await totals(pg_dsn, auth.reference) == ("60.00", "40.00", "0.00", "0.00")
    assert await requests_of(pg_dsn, order.order_id) == [
        ("authorise", "60.00"),
        ("capture", "40.00"),
    ]
    # a declined key is not remembered: the exact remainder goes through under it
    rest = await order.capture("capture/S2", auth.reference, "20.00")
    assert rest.amount == Decimal("20.00")
    assert await totals(pg_dsn, auth.reference) == ("60.00", "60.00", "0.00", "0.00")


async def test_an_expired_authorisation_is_declined(
    order: Order, clock: Clock, pg_dsn: str
) -> None:
    auth = await order.authorise("80.00")
    assert auth.expires_at is not None
    clock.now = auth.expires_at - dt.timedelta(seconds=1)
    await order.capture("capture/S1", auth.reference, "10.00")
    clock.now = auth.expires_at
    err = await refused(PAYMENT_DECLINED, order.capture("capture/S2", auth.reference, "10.00"))
    assert "expired" in str(err)
    await refused(PAYMENT_DECLINED, order.void("void/S2", auth.reference, "10.00"))
    lapsed = await order.void("void", auth.reference, "0")
    assert lapsed.amount == Decimal(0)  # the hold is gone already: nothing to release
    assert await totals(pg_dsn, auth.reference) == ("80.00", "10.00", "0.00", "0.00")
    # the capture made in time can still be refunded
    assert (await order.refund("refund", auth.reference, "10.00")).amount == Decimal("10.00")


async def test_partial_refunds_and_an_over_refund(order: Order, pg_dsn: str) -> None:
    auth = await order.authorise("100.00")
    c1 = await order.capture("capture/S1", auth.reference, "30.00")
    c2 = await order.capture("capture/S2", auth.reference, "50.00")

    r1 = await order.refund("refund/S1", c1.reference, "10.00")
    assert r1.reference.startswith("ref_") and r1.amount == Decimal("10.00")
    err = await refused(PAYMENT_DECLINED, order.refund("refund/S1b", c1.reference, "20.01"))
    assert "only 20.00" in str(err) and c1.reference in str(err)

    # on the authorisation: its captures oldest first (20.00 left of S1, then S2)
    await order.refund("refund/all", auth.reference, "25.00")
    assert await totals(pg_dsn, auth.reference) == ("100.00", "80.00", "0.00", "35.00")
    await refused(PAYMENT_DECLINED, order.refund("refund/S1c", c1.reference, "0.01"))
    await order.refund("refund/S2", c2.reference, "45.00")
    await refused(PAYMENT_DECLINED, order.refund("refund/more", auth.reference, "0.01"))
    assert await totals(pg_dsn, auth.reference) == ("100.00", "80.00", "0.00", "80.00")


async def test_a_retried_capture_is_charged_once(order: Order, pg_dsn: str) -> None:
    auth = await order.authorise("100.00")
    first = await order.capture("capture/S1", auth.reference, "30.00")
    retry = await order.capture("capture/S1", auth.reference, "30.0")  # same amount, other form
    assert retry == first
    assert await totals(pg_dsn, auth.reference) == ("100.00", "30.00", "0.00", "0.00")
    assert await order.authorise("100.00") == auth  # a retried authorisation: the same one
    assert await requests_of(pg_dsn, order.order_id) == [
        ("authorise", "100.00"),
        ("capture", "30.00"),
    ]


async def test_one_key_for_another_request_is_invalid(order: Order, pg_dsn: str) -> None:
    auth = await order.authorise("100.00")
    await order.capture("capture/S1", auth.reference, "30.00")
    err = await refused(INVALID_REQUEST, order.capture("capture/S1", auth.reference, "31.00"))
    assert f"backorder-{order.order_id}/capture/S1" in str(err)
    await refused(INVALID_REQUEST, order.void("capture/S1", auth.reference, "30.00"))
    assert await totals(pg_dsn, auth.reference) == ("100.00", "30.00", "0.00", "0.00")


async def test_concurrent_captures_with_one_key_take_effect_once(pg_dsn: str, clock: Clock) -> None:
    async with AsyncConnectionPool(pg_dsn, min_size=10, max_size=10, open=False) as pool:
        await pool.wait()
        payments = PaymentActivities(SandboxGateway(pool, clock=clock))
        order = Order(payments)
        auth = await order.authorise("100.00")
        request = order.request("capture/S1", "40.00", auth.reference)
        results = await asyncio.gather(
            *(ActivityEnvironment().run(payments.capture_payment, request) for _ in range(10))
        )
    assert len({r.reference for r in results}) == 1
    assert await totals(pg_dsn, auth.reference) == ("100.00", "40.00", "0.00", "0.00")


async def test_concurrent_captures_with_their_own_keys_never_overdraw(
    pg_dsn: str, clock: Clock
) -> None:
    async with AsyncConnectionPool(pg_dsn, min_size=10, max_size=10, open=False) as pool:
        await pool.wait()
        payments = PaymentActivities(SandboxGateway(pool, clock=clock))
        order = Order(payments)
        auth = await order.authorise("100.00")
        outcomes = await asyncio.gather(
            *(
                ActivityEnvironment().run(
                    payments.capture_payment,
                    order.request(f"capture/S{n}", "15.00", auth.reference),
                )
                for n in range(10)
            ),
            return_exceptions=True,
        )
    captured = [o for o in outcomes if isinstance(o, PaymentResult)]
    declined = [o for o in outcomes if isinstance(o, ApplicationError)]
    assert (len(captured), len(declined)) == (6, 4), outcomes
    assert all(e.type == PAYMENT_DECLINED for e in declined)
    assert await totals(pg_dsn, auth.reference) == ("100.00", "90.00", "0.00", "0.00")


async def test_requests_that_can_never_succeed_are_invalid(order: Order, pg_dsn: str) -> None:
    auth = await order.authorise("100.00")
    await refused(INVALID_REQUEST, order.capture("capture/x", "auth_unknown", "1.00"))
    await refused(INVALID_REQUEST, order.refund("refund/x", "cap_unknown", "1.00"))
    err = await refused(
        INVALID_REQUEST, order.capture("capture/eur", auth.reference, "1.00", currency="EUR")
    )
    assert "USD" in str(err) and "EUR" in str(err)
    await refused(
        INVALID_REQUEST, order.capture("capture/other", auth.reference, "1.00", order_id="Z-9")
    )
    await refused(INVALID_REQUEST, order.capture("capture/zero", auth.reference, "0"))
    no_reference = order.request("capture/none", "1.00")
    await refused(INVALID_REQUEST, order.env.run(order.payments.capture_payment, no_reference))
    assert await totals(pg_dsn, auth.reference) == ("100.00", "0.00", "0.00", "0.00")
    assert await requests_of(pg_dsn, order.order_id) == [("authorise", "100.00")]


async def test_other_failures_propagate_for_temporal_to_retry() -> None:
    class Unreachable:
        async def authorise(self, *args: object, **kwargs: object) -> AuthorisationResult:
            raise ConnectionError("gateway unreachable")

        async def capture(self, *args: object, **kwargs: object) -> OperationResult:
            raise ConnectionError("gateway unreachable")

        async def void(self, *args: object, **kwargs: object) -> OperationResult:
            raise ConnectionError("gateway unreachable")

        async def refund(self, *args: object, **kwargs: object) -> OperationResult:
            raise ConnectionError("gateway unreachable")

    order = Order(PaymentActivities(Unreachable()))
    with pytest.raises(ConnectionError):
        await order.capture("capture/S1", "auth_x", "1.00")
