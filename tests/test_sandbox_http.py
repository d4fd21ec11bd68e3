"""The sandbox gateway over real HTTP (uvicorn on loopback, real PostgreSQL): the client keeps the
Protocol's rules, and injected faults show what a caller sees, above all that a capture whose
answer was lost is charged once when retried with its key."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import socket
import time
import uuid
from decimal import Decimal

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import INVALID_REQUEST, PAYMENT_DECLINED, PaymentRequest
from activities.payments import PaymentActivities
from payments.gateway import GatewayUnavailable, InvalidPaymentRequest, PaymentDeclined
from payments.http_gateway import HttpGateway, UnexpectedGatewayResponse
from payments.sandbox import SandboxGateway
from payments.sandbox_app import SandboxApp
from payments.server import sandbox_gateway_server, serve_asgi
from tests.payment_servers import (
    AUTHORISATION_DAYS,
    T0,
    SandboxServer,
    http_gateway,
    requests_of,
    sandbox_server,
    totals,
)

__all__ = ["http_gateway", "sandbox_server"]  # fixtures

D = Decimal


def new_order() -> str:
    return f"H-{uuid.uuid4().hex[:10]}"


async def post(url: str, body: bytes | None, key: str | None = "k") -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    async with httpx.AsyncClient() as client:
        return await client.post(url, content=body, headers=headers)


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["type"], error["message"]


# -- every operation ---------------------------------------------------------------------------


async def test_authorise_capture_in_parts_then_void_part_and_the_rest(
    http_gateway: HttpGateway, pg_dsn: str
) -> None:
    order = new_order()
    auth = await http_gateway.authorise(f"{order}/auth", order, D("100.00"), "USD")
    assert auth.reference.startswith("auth_")
    assert auth.amount == D("100.00")
    assert auth.expires_at == T0 + dt.timedelta(days=AUTHORISATION_DAYS)
    assert auth.authorised_at == T0

    first = await http_gateway.capture(
        f"{order}/cap1", auth.reference, D("30.00"), order_id=order, currency="USD"
    )
    second = await http_gateway.capture(
        f"{order}/cap2", auth.reference, D("45.50"), order_id=order, currency="USD"
    )
    assert first.reference.startswith("cap_") and first.reference != second.reference
    assert (first.amount, second.amount) == (D("30.00"), D("45.50"))

    part = await http_gateway.void(
        f"{order}/void1", auth.reference, D("4.50"), order_id=order, currency="USD"
    )
    rest = await http_gateway.void(
        f"{order}/void2", auth.reference, None, order_id=order, currency="USD"
    )
    assert part.reference.startswith("void_")
    assert (part.amount, rest.amount) == (D("4.50"), D("20.00"))
    assert await totals(pg_dsn, auth.reference) == ("100.00", "75.50", "24.50", "0.00")


async def test_a_renewal_must_name_an_authorisation_of_the_same_order(
    http_gateway: HttpGateway, pg_dsn: str
) -> None:
    order, other = new_order(), new_order()
    old = await http_gateway.authorise(f"{order}/auth", order, D("50.00"), "EUR")
    foreign = await http_gateway.authorise(f"{other}/auth", other, D("50.00"), "EUR")

    renewed = await http_gateway.authorise(
        f"{order}/renew", order, D("50.00"), "EUR", renews=old.reference
    )
    assert renewed.reference not in (old.reference, foreign.reference)
    with pytest.raises(InvalidPaymentRequest, match=f"of order {other}, not of order {order}"):
        await http_gateway.authorise(
            f"{order}/renew-foreign", order, D("50.00"), "EUR", renews=foreign.reference
        )
    with pytest.raises(InvalidPaymentRequest, match="renews unknown authorisation"):
        await http_gateway.authorise(
            f"{order}/renew-unknown", order, D("50.00"), "EUR", renews="auth_nope"
        )
    assert await requests_of(pg_dsn, order) == [
        ("authorise", "50.00", None),
        ("authorise", "50.00", old.reference),
    ]
    # the renewed authorisation is stored under its key with what it renews
    with pytest.raises(InvalidPaymentRequest, match="was used for another request"):
        await http_gateway.authorise(f"{order}/renew", order, D("50.00"), "EUR")


async def test_refund_part_of_a_capture_and_of_an_authorisation(
    http_gateway: HttpGateway, pg_dsn: str
) -> None:
    order = new_order()
    auth = await http_gateway.authorise(f"{order}/auth", order, D("100.00"), "USD")
    c1 = await http_gateway.capture(
        f"{order}/cap1", auth.reference, D("30.00"), order_id=order, currency="USD"
    )
    await http_gateway.capture(
        f"{order}/cap2", auth.reference, D("50.00"), order_id=order, currency="USD"
    )
    r1 = await http_gateway.refund(
        f"{order}/ref1", c1.reference, D("10.00"), order_id=order, currency="USD"
    )
    assert r1.reference.startswith("ref_") and r1.amount == D("10.00")
    # on the authorisation: the 20.00 left of the first capture, then 5.00 of the second
    await http_gateway.refund(
        f"{order}/ref-all", auth.reference, D("25.00"), order_id=order, currency="USD"
    )
    assert await totals(pg_dsn, auth.reference) == ("100.00", "80.00", "0.00", "35.00")
    with pytest.raises(PaymentDeclined, match=r"only 0\.00"):
        await http_gateway.refund(
            f"{order}/ref-more", c1.reference, D("0.01"), order_id=order, currency="USD"
        )


# -- idempotency -------------------------------------------------------------------------------


async def test_one_key_with_the_same_request_answers_the_same_and_takes_effect_once(
    http_gateway: HttpGateway, pg_dsn: str
) -> None:
    order = new_order()
    auth = await http_gateway.authorise(f"{order}/auth", order, D("100.00"), "USD")
    assert await http_gateway.authorise(f"{order}/auth", order, D("100"), "USD") == auth
    first = await http_gateway.capture(
        f"{order}/cap1", auth.reference, D("30.00"), order_id=order, currency="USD"
    )
    again = await http_gateway.capture(
        f"{order}/cap1", auth.reference, D("30.0"), order_id=order, currency="USD"
    )
    assert again == first
    assert await totals(pg_dsn, auth.reference) == ("100.00", "30.00", "0.00", "0.00")
    assert await requests_of(pg_dsn, order) == [
        ("authorise", "100.00", None),
        ("capture", "30.00", auth.reference),
    ]


async def test_amounts_are_answered_in_cents_not_the_books_four_places_and_alike_on_replay(
    sandbox_server: SandboxServer,
) -> None:
    """What `order status` shows of the money comes from these answers ("30.00", not
    "30.0000"); a finer amount keeps its digits."""
    order, url = new_order(), sandbox_server.url

    async def money(path: str, key: str, **body: str | None) -> tuple[str, str]:
        sent = json.dumps({"order_id": order, "currency": "USD", **body}).encode()
        answer = await post(f"{url}{path}", sent, key)
        assert answer.status_code == 200, answer.text
        assert (await post(f"{url}{path}", sent, key)).json() == answer.json()  # a replay
        return answer.json()["reference"], answer.json()["amount"]

    auth, held = await money("/v1/authorisations", f"{order}/auth", amount="50")
    _, captured = await money(f"/v1/authorisations/{auth}/captures", f"{order}/cap", amount="30")
    _, part = await money(f"/v1/authorisations/{auth}/voids", f"{order}/v1", amount="0.0050")
    _, rest = await money(f"/v1/authorisations/{auth}/voids", f"{order}/v2", amount=None)
    assert (held, captured, part, rest) == ("50.00", "30.00", "0.005", "19.995")


async def test_one_key_for_another_request_is_invalid(
    http_gateway: HttpGateway, sandbox_server: SandboxServer, pg_dsn: str
) -> None:
    order = new_order()
    auth = await http_gateway.authorise(f"{order}/auth", order, D("100.00"), "USD")
    await http_gateway.capture(
        f"{order}/cap1", auth.reference, D("30.00"), order_id=order, currency="USD"
    )
    with pytest.raises(InvalidPaymentRequest, match=f"idempotency key {order}/cap1 was used"):
        await http_gateway.capture(
            f"{order}/cap1", auth.reference, D("31.00"), order_id=order, currency="USD"
        )
    response = await post(
        f"{sandbox_server.url}/v1/authorisations/{auth.reference}/voids",
        b'{"order_id": "%s", "currency": "USD", "amount": null}' % order.encode(),
        key=f"{order}/cap1",
    )
    assert error_of(response)[:2] == (409, "idempotency_key_reused")
    assert await totals(pg_dsn, auth.reference) == ("100.00", "30.00", "0.00", "0.00")


# -- declines and invalid requests -------------------------------------------------------------


async def test_a_capture_above_what_is_open_is_declined_and_changes_nothing(
    http_gateway: HttpGateway, pg_dsn: str
) -> None:
    order = new_order()
    auth = await http_gateway.authorise(f"{order}/auth", order, D("60.00"), "USD")
    await http_gateway.capture(
        f"{order}/cap1", auth.reference, D("40.00"), order_id=order, currency="USD"
    )
    with pytest.raises(PaymentDeclined, match=r"only 20\.00 .* is open"):
        await http_gateway.capture(
            f"{order}/cap2", auth.reference, D("20.01"), order_id=order, currency="USD"
        )
    assert await totals(pg_dsn, auth.reference) == ("60.00", "40.00", "0.00", "0.00")
    assert len(await requests_of(pg_dsn, order)) == 2


async def test_an_expired_authorisation_is_declined(
    http_gateway: HttpGateway, sandbox_server: SandboxServer, pg_dsn: str
) -> None:
    order = new_order()
    auth = await http_gateway.authorise(f"{order}/auth", order, D("80.00"), "USD")
    sandbox_server.clock.now = auth.expires_at - dt.timedelta(seconds=1)
    await http_gateway.capture(
        f"{order}/cap1", auth.reference, D("10.00"), order_id=order, currency="USD"
    )
    sandbox_server.clock.now = auth.expires_at
    with pytest.raises(PaymentDeclined, match="expired"):
        await http_gateway.capture(
            f"{order}/cap2", auth.reference, D("10.00"), order_id=order, currency="USD"
        )
    lapsed = await http_gateway.void(
        f"{order}/void", auth.reference, None, order_id=order, currency="USD"
    )
    assert lapsed.amount == 0
    assert await totals(pg_dsn, auth.reference) == ("80.00", "10.00", "0.00", "0.00")


async def test_requests_that_can_never_succeed_are_invalid(
    http_gateway: HttpGateway, pg_dsn: str
) -> None:
    order = new_order()
    auth = await http_gateway.authorise(f"{order}/auth", order, D("100.00"), "USD")
    ref = auth.reference
    with pytest.raises(InvalidPaymentRequest, match="unknown authorisation"):
        await http_gateway.capture(f"{order}/x1", "auth_nope", D(1), order_id=order, currency="USD")
    with pytest.raises(InvalidPaymentRequest, match="is in USD; the request is in EUR"):
        await http_gateway.capture(f"{order}/x2", ref, D(1), order_id=order, currency="EUR")
    with pytest.raises(InvalidPaymentRequest, match="belongs to order"):
        await http_gateway.void(f"{order}/x3", ref, None, order_id="Z-9", currency="USD")
    with pytest.raises(InvalidPaymentRequest, match="must be positive"):
        await http_gateway.refund(f"{order}/x4", ref, D("-1"), order_id=order, currency="USD")
    with pytest.raises(InvalidPaymentRequest, match="unknown authorisation or capture 'a/b'"):
        await http_gateway.capture(f"{order}/x5", "a/b", D(1), order_id=order, currency="USD")
    assert await requests_of(pg_dsn, order) == [("authorise", "100.00", None)]


# -- faults ------------------------------------------------------------------------------------


async def test_a_capture_whose_answer_was_lost_is_charged_once_when_retried(
    http_gateway: HttpGateway, sandbox_server: SandboxServer, pg_dsn: str
) -> None:
    order = new_order()
    auth = await http_gateway.authorise(f"{order}/auth", order, D("100.00"), "USD")
    await sandbox_server.arm(operation="capture", order_id=order, kind="lost_response")
    with pytest.raises(GatewayUnavailable, match=f"capture key={order}/cap1 .* answered 500"):
        await http_gateway.capture(
            f"{order}/cap1", auth.reference, D("30.00"), order_id=order, currency="USD"
        )
    assert await totals(pg_dsn, auth.reference) == ("100.00", "30.00", "0.00", "0.00")

    retried = await http_gateway.capture(
        f"{order}/cap1", auth.reference, D("30.00"), order_id=order, currency="USD"
    )
    assert retried.amount == D("30.00") and retried.reference.startswith("cap_")
    assert await totals(pg_dsn, auth.reference) == ("100.00", "30.00", "0.00", "0.00")
    assert await requests_of(pg_dsn, order) == [
        ("authorise", "100.00", None),
        ("capture", "30.00", auth.reference),
    ]


async def test_a_500_applies_nothing_until_the_fault_is_spent(
    http_gateway: HttpGateway, sandbox_server: SandboxServer, pg_dsn: str
) -> None:
    order = new_order()
    auth = await http_gateway.authorise(f"{order}/auth", order, D("100.00"), "USD")
    await sandbox_server.arm(operation="capture", order_id=order, kind="error_500", times=2)
    for _ in range(2):
        with pytest.raises(GatewayUnavailable, match="answered 500: injected error_500"):
            await http_gateway.capture(
                f"{order}/cap1", auth.reference, D("30.00"), order_id=order, currency="USD"
            )
    assert await totals(pg_dsn, auth.reference) == ("100.00", "0.00", "0.00", "0.00")
    done = await http_gateway.capture(
        f"{order}/cap1", auth.reference, D("30.00"), order_id=order, currency="USD"
    )
    assert done.amount == D("30.00")
    assert await totals(pg_dsn, auth.reference) == ("100.00", "30.00", "0.00", "0.00")


async def test_a_timeout_is_unavailable_and_applies_nothing(
    sandbox_server: SandboxServer, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="payments.sandbox")
    order = new_order()
    async with HttpGateway(sandbox_server.url, timeout=0.3) as gateway:
        auth = await gateway.authorise(f"{order}/auth", order, D("100.00"), "USD")
        await sandbox_server.arm(operation="void", order_id=order, kind="timeout")
        started = time.monotonic()
        with pytest.raises(GatewayUnavailable, match=f"void key={order}/void .* within 0.3s"):
            await gateway.void(
                f"{order}/void", auth.reference, None, order_id=order, currency="USD"
            )
        assert time.monotonic() - started < 5
        for _ in range(100):  # the server stops holding the request once the client hangs up
            if f"key={order}/void -> 504" in caplog.text:
                break
            await asyncio.sleep(0.02)
        assert f"key={order}/void -> 504" in caplog.text
        assert time.monotonic() - started < 5
        assert await totals(pg_dsn, auth.reference) == ("100.00", "0.00", "0.00", "0.00")
        rest = await gateway.void(
            f"{order}/void", auth.reference, None, order_id=order, currency="USD"
        )
    assert rest.amount == D("100.00")


async def test_an_injected_decline_applies_nothing_and_is_not_remembered(
    http_gateway: HttpGateway, sandbox_server: SandboxServer, pg_dsn: str
) -> None:
    order = new_order()
    await sandbox_server.arm(operation="authorise", order_id=order, kind="decline")
    with pytest.raises(PaymentDeclined, match="injected decline"):
        await http_gateway.authorise(f"{order}/auth", order, D("100.00"), "USD")
    assert await requests_of(pg_dsn, order) == []
    auth = await http_gateway.authorise(f"{order}/auth", order, D("100.00"), "USD")
    assert auth.amount == D("100.00")


async def test_faults_hit_only_their_operation_and_order_and_can_be_cleared(
    http_gateway: HttpGateway, sandbox_server: SandboxServer
) -> None:
    order, other = new_order(), new_order()
    await sandbox_server.arm(operation="*", order_id=order, kind="error_500", times=3)
    await sandbox_server.arm(operation="refund", kind="decline")
    other_auth = await http_gateway.authorise(f"{other}/auth", other, D("10.00"), "USD")
    with pytest.raises(GatewayUnavailable):
        await http_gateway.authorise(f"{order}/auth", order, D("10.00"), "USD")
    async with httpx.AsyncClient(base_url=sandbox_server.url) as client:
        listed = (await client.get("/_sandbox/faults")).json()["faults"]
        assert [(f["operation"], f["order_id"], f["left"]) for f in listed] == [
            ("*", order, 2),
            ("refund", None, 1),
        ]
        assert (await client.delete("/_sandbox/faults")).json() == {"cleared": 2}
        assert (await client.get("/_sandbox/faults")).json() == {"faults": []}
    auth = await http_gateway.authorise(f"{order}/auth", order, D("10.00"), "USD")
    assert auth.reference != other_auth.reference


# -- the HTTP surface --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/authorisations", b"", "authorise: the request body is empty"),
        ("/v1/authorisations", b'{"order_id": "H-1",', "authorise: the body is not valid JSON"),
        ("/v1/authorisations", b"[1, 2]", "the body must be a JSON object, not list"),
        (
            "/v1/authorisations",
            b'{"order_id": "H-1", "amount": 10.5, "currency": "USD"}',
            'amount: Value error, amounts are decimal strings such as "12.50"',
        ),
        (
            "/v1/authorisations",
            b'{"order_id": "H-1", "amount": "ten", "currency": "USD"}',
            "amount: Input should be a valid decimal",
        ),
        (
            "/v1/authorisations/auth_x/captures",
            b'{"order_id": "H-1", "currency": "USD"}',
            "capture: amount: Field required",
        ),
        (
            "/v1/authorisations/auth_x/voids",
            b'{"order_id": "H-1", "currency": "USD"}',
            "void: amount: Field required",
        ),
        (
            "/v1/refunds",
            b'{"reference": "cap_x", "order_id": "H-1", "currency": "USD", "amount": "1",'
            b' "reason": "x"}',
            "refund: reason: Extra inputs are not permitted",
        ),
        (
            "/v1/authorisations",
            b'{"order_id": "H-1", "amount": "10", "currency": "usd"}',
            "currency 'usd' is not an ISO 4217 code",
        ),
        ("/_sandbox/faults", b'{"operation": "capture", "kind": "error_500", "times": 0}', "times"),
        ("/_sandbox/faults", b'{"operation": "settle", "kind": "error_500"}', "operation"),
    ],
)
async def test_malformed_requests_are_400_saying_what_is_wrong(
    sandbox_server: SandboxServer, path: str, body: bytes, message: str
) -> None:
    response = await post(f"{sandbox_server.url}{path}", body)
    status, kind, text = error_of(response)
    assert (status, kind) == (400, "invalid_request"), text
    assert message in text


async def test_money_calls_need_an_idempotency_key_and_malformed_ones_spend_no_fault(
    sandbox_server: SandboxServer, pg_dsn: str
) -> None:
    order = new_order()
    await sandbox_server.arm(operation="authorise", order_id=order, kind="error_500")
    body = b'{"order_id": "%s", "amount": "10.00", "currency": "USD"}' % order.encode()
    response = await post(f"{sandbox_server.url}/v1/authorisations", body, key=None)
    assert error_of(response) == (
        400,
        "invalid_request",
        "authorise needs an Idempotency-Key header",
    )
    assert sandbox_server.app.faults.armed()[0]["left"] == 1
    assert await requests_of(pg_dsn, order) == []


async def test_health_unknown_routes_and_wrong_methods(sandbox_server: SandboxServer) -> None:
    async with httpx.AsyncClient(base_url=sandbox_server.url) as client:
        health = await client.get("/healthz")
        missing = await client.post("/v1/charges", json={})
        wrong = await client.get("/v1/authorisations")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert error_of(missing) == (404, "not_found", "no route /v1/charges")
    assert error_of(wrong)[:2] == (405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"


async def test_every_call_is_logged_with_its_key_on_both_sides(
    http_gateway: HttpGateway, caplog: pytest.LogCaptureFixture
) -> None:
    order = new_order()
    with caplog.at_level(logging.INFO, logger="payments"):
        await http_gateway.authorise(f"{order}/auth", order, D("10.00"), "USD")
    sides = {r.name for r in caplog.records if f"key={order}/auth" in r.getMessage()}
    assert sides == {"payments.http", "payments.sandbox"}


# -- the client on its own ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (402, PaymentDeclined),
        (400, InvalidPaymentRequest),
        (404, InvalidPaymentRequest),
        (409, InvalidPaymentRequest),
        (422, InvalidPaymentRequest),
        (429, GatewayUnavailable),
        (503, GatewayUnavailable),
        (401, UnexpectedGatewayResponse),
    ],
)
async def test_the_client_sorts_answers_into_the_protocols_errors(
    status: int, error: type[Exception]
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"error": {"type": "x", "message": "the reason"}})

    transport = httpx.MockTransport(answer)
    async with httpx.AsyncClient(transport=transport) as client:
        gateway = HttpGateway("http://gateway.test/", client=client, api_key="sk_test")
        with pytest.raises(error, match="the reason"):
            await gateway.capture("k-1", "auth_1", D("1E+1"), order_id="H-1", currency="USD")
    (request,) = seen
    assert str(request.url) == "http://gateway.test/v1/authorisations/auth_1/captures"
    assert request.headers["Idempotency-Key"] == "k-1"
    assert request.headers["Authorization"] == "Bearer sk_test"
    assert request.content == b'{"order_id":"H-1","currency":"USD","amount":"10"}'


async def test_an_unreachable_gateway_is_unavailable() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with HttpGateway(f"http://127.0.0.1:{port}") as gateway:
        with pytest.raises(GatewayUnavailable, match=f"authorise key=k-1 order=H-1: .*:{port}"):
            await gateway.authorise("k-1", "H-1", D(1), "USD")


# -- the server helpers ------------------------------------------------------------------------


async def test_a_port_in_use_is_an_error_to_the_caller(pg_pool: AsyncConnectionPool) -> None:
    async with sandbox_gateway_server(pg_pool, authorisation_days=2) as url:
        port = int(url.rsplit(":", 1)[1])
        assert port > 0
        with pytest.raises(OSError):
            async with serve_asgi(SandboxApp(SandboxGateway(pg_pool)), port=port):
                pass
        order = new_order()
        async with HttpGateway(url) as gateway:
            auth = await gateway.authorise(f"{order}/auth", order, D("5.00"), "USD")
    remaining = auth.expires_at - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=2) - dt.timedelta(minutes=1) < remaining <= dt.timedelta(days=2)


# -- through the payment activities ------------------------------------------------------------


def request(order: str, step: str, amount: str, reference: str | None = None) -> PaymentRequest:
    return PaymentRequest(
        key=f"{order}/{step}",
        order_id=order,
        amount=D(amount),
        currency="USD",
        reference=reference,
    )


async def test_the_activities_over_http_refuse_declines_and_let_outages_retry(
    http_gateway: HttpGateway, sandbox_server: SandboxServer, pg_dsn: str
) -> None:
    payments, env, order = PaymentActivities(http_gateway), ActivityEnvironment(), new_order()
    auth = await env.run(payments.authorise_payment, request(order, "auth", "50.00"))
    await env.run(payments.capture_payment, request(order, "cap1", "20.00", auth.reference))

    with pytest.raises(ApplicationError) as declined:
        await env.run(payments.capture_payment, request(order, "cap2", "30.01", auth.reference))
    assert (declined.value.type, declined.value.non_retryable) == (PAYMENT_DECLINED, True)
    assert "only 30.00" in str(declined.value)

    with pytest.raises(ApplicationError) as invalid:
        await env.run(payments.void_payment, request(order, "void", "1.00", "auth_nope"))
    assert (invalid.value.type, invalid.value.non_retryable) == (INVALID_REQUEST, True)

    await sandbox_server.arm(operation="capture", order_id=order, kind="lost_response")
    with pytest.raises(GatewayUnavailable):  # raised as is: Temporal retries it
        await env.run(payments.capture_payment, request(order, "cap3", "30.00", auth.reference))
    retried = await env.run(
        payments.capture_payment, request(order, "cap3", "30.00", auth.reference)
    )
    assert retried.amount == D("30.00")
    assert await totals(pg_dsn, auth.reference) == ("50.00", "50.00", "0.00", "0.00")
