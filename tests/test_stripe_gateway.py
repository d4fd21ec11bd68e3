"""The Stripe adapter against localstripe, a Stripe-compatible fake run as a separate process on
loopback (real HTTP, form-encoded, as to Stripe). What localstripe cannot show (multicapture,
Stripe's 429/5xx answers) is checked on recorded requests and canned answers instead.

State is read back from the server with plain HTTP, not through the adapter.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import PAYMENT_DECLINED, PaymentRequest
from activities.payments import PaymentActivities
from embedded.process import free_port
from payments.gateway import (
    GatewayUnavailable,
    InvalidPaymentRequest,
    PaymentDeclined,
)
from payments.stripe import STRIPE_VERSION, StripeGateway, from_minor_units, minor_units
from tests.localstripe_server import API_KEY, running_localstripe

DECLINING_CARD = "pm_card_chargeCustomerFail"
"""Attaches, but every charge is declined (card 4000000000000341, in Stripe and localstripe)."""


@pytest.fixture(scope="module")
def stripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_localstripe(tmp_path_factory.mktemp("localstripe")) as url:
        yield url


@dataclass
class Stripe:
    """A gateway on localstripe, the requests it sent, and a raw reader of the server's state."""

    url: str
    gateway: StripeGateway
    requests: list[httpx.Request] = field(default_factory=list)
    order_id: str = field(default_factory=lambda: f"S-{uuid.uuid4().hex[:10]}")

    def key(self, step: str) -> str:
        return f"backorder-{self.order_id}/{step}"

    def sent(self, method: str = "POST") -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method]

    async def read(self, path: str, **params: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            answer = await client.get(
                self.url + path, params=params, headers={"Authorization": f"Bearer {API_KEY}"}
            )
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    async def charge_of(self, pi: str) -> dict[str, Any]:
        intent = await self.read(f"/v1/payment_intents/{pi}")
        charge: dict[str, Any] = intent["latest_charge"]
        return charge

    async def refunds_of(self, charge: str) -> list[dict[str, Any]]:
        listing = await self.read("/v1/refunds", charge=charge, limit="100")
        refunds: list[dict[str, Any]] = listing["data"]
        return refunds

    async def charge_transactions(self, charge: str) -> list[dict[str, Any]]:
        """The money actually taken: one `charge` balance transaction per capture."""
        listing = await self.read("/v1/balance_transactions", limit="1000")
        return [t for t in listing["data"] if t["source"] == charge and t["type"] == "charge"]


async def _stripe(url: str, **options: Any) -> AsyncIterator[Stripe]:
    requests: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        requests.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        options.setdefault("default_payment_method", "pm_card_visa")
        gateway = StripeGateway(API_KEY, base_url=url, client=client, **options)
        yield Stripe(url=url, gateway=gateway, requests=requests)


@pytest.fixture
async def stripe(stripe_url: str) -> AsyncIterator[Stripe]:
    async for s in _stripe(stripe_url):
        yield s


@pytest.fixture
async def declining(stripe_url: str) -> AsyncIterator[Stripe]:
    async for s in _stripe(stripe_url, default_payment_method=DECLINING_CARD):
        yield s


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


# -- amounts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("10.50", "USD", 1050),
        ("0.01", "eur", 1),
        ("1234", "JPY", 1234),
        ("1234.000", "JPY", 1234),
        ("1.23", "KWD", 1230),
        ("1.230", "KWD", 1230),
        ("5", "ISK", 500),
    ],
)
def test_amounts_go_out_in_the_currencys_minor_units(
    amount: str, currency: str, minor: int
) -> None:
    assert minor_units(Decimal(amount), currency) == minor
    assert from_minor_units(minor, currency) == Decimal(amount)


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("10.5", "JPY"),  # no decimals in yen
        ("1.005", "USD"),  # a third of a cent
        ("1.2345", "KWD"),  # finer than the fils
        ("1.234", "KWD"),  # Stripe takes three-decimal currencies in steps of ten
        ("5.50", "ISK"),  # whole kronur only
        ("0", "USD"),
        ("-1", "USD"),
    ],
)
def test_amounts_the_currency_cannot_express_are_refused(amount: str, currency: str) -> None:
    with pytest.raises(InvalidPaymentRequest):
        minor_units(Decimal(amount), currency)


# -- authorise -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("19.99", "EUR", 1999), ("1234", "JPY", 1234), ("12.34", "KWD", 12340)],
)
async def test_authorise_holds_the_amount_with_manual_capture(
    stripe: Stripe, amount: str, currency: str, minor: int
) -> None:
    key = stripe.key("authorise")
    auth = await stripe.gateway.authorise(key, stripe.order_id, Decimal(amount), currency)

    assert auth.reference.startswith("pi_")
    assert auth.amount == Decimal(amount)
    intent = await stripe.read(f"/v1/payment_intents/{auth.reference}")
    assert intent["status"] == "requires_capture"
    assert intent["capture_method"] == "manual"
    assert (intent["amount"], intent["currency"]) == (minor, currency.lower())
    assert intent["metadata"]["order_id"] == stripe.order_id
    created = dt.datetime.fromtimestamp(intent["created"], dt.UTC)
    assert auth.expires_at == created + dt.timedelta(days=7)  # localstripe has no capture_before

    (post,) = stripe.sent("POST")
    assert post.headers["Idempotency-Key"] == key
    assert post.headers["Authorization"] == f"Bearer {API_KEY}"
    assert post.headers["Stripe-Version"] == STRIPE_VERSION
    body = form(post)
    assert body["payment_method_options[card][request_multicapture]"] == ["if_available"]
    assert body["confirm"] == ["true"]


async def test_a_retried_authorise_sends_the_same_key_and_request(stripe: Stripe) -> None:
    """What makes Stripe replay it (localstripe does not: it creates a second intent)."""
    key = stripe.key("authorise")
    for _ in range(2):
        await stripe.gateway.authorise(key, stripe.order_id, Decimal("5.00"), "USD")
    first, second = stripe.sent("POST")
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == key
    assert form(first) == form(second)


async def test_authorise_without_a_payment_method_is_refused(stripe_url: str) -> None:
    async for s in _stripe(stripe_url, default_payment_method=None):
        with pytest.raises(InvalidPaymentRequest, match="no default payment method"):
            await s.gateway.authorise(s.key("authorise"), s.order_id, Decimal("5.00"), "USD")
        assert s.sent("POST") == []


async def test_a_declined_card_is_payment_declined(declining: Stripe) -> None:
    with pytest.raises(PaymentDeclined, match="declined"):
        await declining.gateway.authorise(
            declining.key("authorise"), declining.order_id, Decimal("10.00"), "USD"
        )


async def test_reauthorisation_charges_the_same_payment_method_off_session(
    stripe: Stripe,
) -> None:
    g, order = stripe.gateway, stripe.order_id
    old = await g.authorise(stripe.key("authorise"), order, Decimal("100.00"), "USD")
    new = await g.authorise(
        stripe.key("reauth"), order, Decimal("60.00"), "USD", renews=old.reference
    )

    assert new.reference != old.reference
    before = await stripe.read(f"/v1/payment_intents/{old.reference}")
    after = await stripe.read(f"/v1/payment_intents/{new.reference}")
    assert after["payment_method"] == before["payment_method"]
    assert after["metadata"]["renews"] == old.reference
    assert (after["status"], after["amount"]) == ("requires_capture", 6000)
    assert form(stripe.sent("POST")[-1])["off_session"] == ["true"]

    released = await g.void(stripe.key("reauth/void-previous"), old.reference, Decimal("100.00"),
                            order_id=order, currency="USD")  # fmt: skip
    assert released.amount == Decimal("100.00")
    assert (await stripe.read(f"/v1/payment_intents/{old.reference}"))["status"] == "canceled"


async def test_reauthorising_another_orders_authorisation_is_refused(stripe: Stripe) -> None:
    other = await stripe.gateway.authorise(
        stripe.key("authorise"), stripe.order_id, Decimal("10.00"), "USD"
    )
    with pytest.raises(InvalidPaymentRequest, match="belongs to order"):
        await stripe.gateway.authorise(
            "backorder-X-1/reauth", "X-1", Decimal("10.00"), "USD", renews=other.reference
        )


# -- capture ---------------------------------------------------------------------------------


async def _authorised(stripe: Stripe, amount: str = "100.00", currency: str = "USD") -> str:
    auth = await stripe.gateway.authorise(
        stripe.key(f"authorise-{uuid.uuid4().hex[:6]}"), stripe.order_id, Decimal(amount), currency
    )
    return auth.reference


async def test_a_partial_capture_takes_its_amount(stripe: Stripe) -> None:
    pi = await _authorised(stripe)
    done = await stripe.gateway.capture(
        stripe.key("capture/S1"), pi, Decimal("40.00"), order_id=stripe.order_id, currency="USD"
    )

    charge = await stripe.charge_of(pi)
    assert (done.reference, done.amount) == (charge["id"], Decimal("40.00"))
    assert charge["captured"] is True
    # localstripe records the released rest as a refund of the uncaptured 60.00
    assert [r["amount"] for r in await stripe.refunds_of(charge["id"])] == [6000]
    assert len(await stripe.charge_transactions(charge["id"])) == 1
    capture = stripe.sent("POST")[-1]
    assert capture.url.path == f"/v1/payment_intents/{pi}/capture"
    assert capture.headers["Idempotency-Key"] == stripe.key("capture/S1")
    assert form(capture)["amount_to_capture"] == ["4000"]
    assert "final_capture" not in form(capture)  # no multicapture on this charge


async def test_a_retried_capture_is_charged_once_and_answers_the_same(stripe: Stripe) -> None:
    pi = await _authorised(stripe)
    key = stripe.key("capture/S1")
    first = await stripe.gateway.capture(
        key, pi, Decimal("40.00"), order_id=stripe.order_id, currency="USD"
    )
    posts = len(stripe.sent("POST"))
    again = await stripe.gateway.capture(
        key, pi, Decimal("40.00"), order_id=stripe.order_id, currency="USD"
    )

    assert again == first
    assert len(stripe.sent("POST")) == posts  # read, recognised, not sent again
    charge = await stripe.charge_of(pi)
    assert len(await stripe.charge_transactions(charge["id"])) == 1
    assert [r["amount"] for r in await stripe.refunds_of(charge["id"])] == [6000]
    with pytest.raises(InvalidPaymentRequest, match="another capture"):
        await stripe.gateway.capture(
            key, pi, Decimal("50.00"), order_id=stripe.order_id, currency="USD"
        )


async def test_concurrent_captures_with_one_key_take_effect_once(stripe: Stripe) -> None:
    pi = await _authorised(stripe)
    key = stripe.key("capture/S1")
    results = await asyncio.gather(
        *(
            stripe.gateway.capture(
                key, pi, Decimal("40.00"), order_id=stripe.order_id, currency="USD"
            )
            for _ in range(3)
        )
    )
    assert len(set(results)) == 1
    charge = await stripe.charge_of(pi)
    assert len(await stripe.charge_transactions(charge["id"])) == 1
    assert [r["amount"] for r in await stripe.refunds_of(charge["id"])] == [6000]


async def test_a_second_capture_without_multicapture_is_declined(stripe: Stripe) -> None:
    pi = await _authorised(stripe)
    g = stripe.gateway
    await g.capture(stripe.key("capture/S1"), pi, Decimal("40.00"),
                    order_id=stripe.order_id, currency="USD")  # fmt: skip
    with pytest.raises(PaymentDeclined, match="captured already"):
        await g.capture(stripe.key("capture/S2"), pi, Decimal("30.00"),
                        order_id=stripe.order_id, currency="USD")  # fmt: skip
    charge = await stripe.charge_of(pi)
    assert len(await stripe.charge_transactions(charge["id"])) == 1
    # and nothing is held any more, so the workflow's final void of the "rest" is refused too
    with pytest.raises(PaymentDeclined):
        await g.void(stripe.key("final/void"), pi, Decimal("60.00"),
                     order_id=stripe.order_id, currency="USD")  # fmt: skip


async def test_a_capture_above_the_hold_is_declined_and_sends_nothing(stripe: Stripe) -> None:
    pi = await _authorised(stripe)
    posts = len(stripe.sent("POST"))
    with pytest.raises(PaymentDeclined, match="open"):
        await stripe.gateway.capture(
            stripe.key("capture/S1"), pi, Decimal("150.00"), order_id=stripe.order_id,
            currency="USD",
        )  # fmt: skip
    assert len(stripe.sent("POST")) == posts
    assert (await stripe.read(f"/v1/payment_intents/{pi}"))["status"] == "requires_capture"


# -- void ------------------------------------------------------------------------------------


async def test_a_void_of_the_rest_cancels_the_intent(stripe: Stripe) -> None:
    pi = await _authorised(stripe)
    g, order = stripe.gateway, stripe.order_id
    key = stripe.key("final/void")
    released = await g.void(key, pi, None, order_id=order, currency="USD")

    assert released.amount == Decimal("100.00")
    assert (await stripe.read(f"/v1/payment_intents/{pi}"))["status"] == "canceled"
    posts = len(stripe.sent("POST"))
    assert await g.void(key, pi, None, order_id=order, currency="USD") == released
    assert len(stripe.sent("POST")) == posts
    nothing = await g.void(stripe.key("later/void"), pi, None, order_id=order, currency="USD")
    assert nothing.amount == 0
    with pytest.raises(PaymentDeclined, match="canceled"):
        await g.capture(stripe.key("capture/S1"), pi, Decimal("1.00"), order_id=order,
                        currency="USD")  # fmt: skip


async def test_a_void_of_the_rest_after_the_capture_releases_nothing(stripe: Stripe) -> None:
    pi = await _authorised(stripe)
    g, order = stripe.gateway, stripe.order_id
    await g.capture(stripe.key("capture/S1"), pi, Decimal("100.00"), order_id=order,
                    currency="USD")  # fmt: skip
    nothing = await g.void(stripe.key("final/void"), pi, None, order_id=order, currency="USD")
    assert nothing.amount == 0
    assert (await stripe.read(f"/v1/payment_intents/{pi}"))["status"] == "succeeded"


async def test_a_partial_void_is_kept_out_of_captures(stripe: Stripe) -> None:
    pi = await _authorised(stripe)
    g, order = stripe.gateway, stripe.order_id
    key = stripe.key("cancel-1/void")
    voided = await g.void(key, pi, Decimal("30.00"), order_id=order, currency="USD")

    assert voided.amount == Decimal("30.00")
    intent = await stripe.read(f"/v1/payment_intents/{pi}")
    assert intent["status"] == "requires_capture"  # Stripe still holds it all
    assert sorted(v for k, v in intent["metadata"].items() if k.startswith("soft_void_")) == [
        "3000"
    ]
    posts = len(stripe.sent("POST"))
    assert await g.void(key, pi, Decimal("30.00"), order_id=order, currency="USD") == voided
    assert len(stripe.sent("POST")) == posts  # counted once
    with pytest.raises(PaymentDeclined, match=r"70\.00 USD open"):
        await g.capture(stripe.key("capture/S1"), pi, Decimal("70.01"), order_id=order,
                        currency="USD")  # fmt: skip
    done = await g.capture(stripe.key("capture/S1b"), pi, Decimal("70.00"), order_id=order,
                           currency="USD")  # fmt: skip
    assert done.amount == Decimal("70.00")
    charge = await stripe.charge_of(pi)
    assert [r["amount"] for r in await stripe.refunds_of(charge["id"])] == [3000]


async def test_a_void_of_all_that_is_open_releases_the_hold(stripe: Stripe) -> None:
    pi = await _authorised(stripe)
    g, order = stripe.gateway, stripe.order_id
    await g.void(stripe.key("cancel-1/void"), pi, Decimal("30.00"), order_id=order, currency="USD")
    with pytest.raises(PaymentDeclined):
        await g.void(stripe.key("cancel-2/void"), pi, Decimal("70.01"), order_id=order,
                     currency="USD")  # fmt: skip
    rest = await g.void(stripe.key("cancel-2b/void"), pi, Decimal("70.00"), order_id=order,
                        currency="USD")  # fmt: skip
    assert rest.amount == Decimal("70.00")
    assert (await stripe.read(f"/v1/payment_intents/{pi}"))["status"] == "canceled"


# -- refund ----------------------------------------------------------------------------------


async def test_partial_refunds_then_an_over_refund_is_declined(stripe: Stripe) -> None:
    pi = await _authorised(stripe)
    g, order = stripe.gateway, stripe.order_id
    captured = await g.capture(stripe.key("capture"), pi, Decimal("100.00"), order_id=order,
                               currency="USD")  # fmt: skip
    first = await g.refund(stripe.key("cancel-1/refund"), pi, Decimal("30.00"), order_id=order,
                           currency="USD")  # fmt: skip
    second = await g.refund(stripe.key("cancel-2/refund"), captured.reference, Decimal("20.00"),
                            order_id=order, currency="USD")  # fmt: skip
    assert (first.amount, second.amount) == (Decimal("30.00"), Decimal("20.00"))
    assert first.reference.startswith("re_") and first.reference != second.reference

    with pytest.raises(PaymentDeclined, match=r"50\.00 is left"):
        await g.refund(stripe.key("cancel-3/refund"), pi, Decimal("50.01"), order_id=order,
                       currency="USD")  # fmt: skip
    again = await g.refund(stripe.key("cancel-1/refund"), pi, Decimal("30.00"), order_id=order,
                           currency="USD")  # fmt: skip
    assert again == first
    refunds = await stripe.refunds_of(captured.reference)
    assert sorted(r["amount"] for r in refunds) == [2000, 3000]
    assert {r["metadata"]["order_id"] for r in refunds} == {order}
    post = stripe.sent("POST")[-1]
    assert post.url.path == "/v1/refunds"
    assert post.headers["Idempotency-Key"] == stripe.key("cancel-2/refund")


async def test_refunds_are_bounded_by_a_partial_capture(stripe: Stripe) -> None:
    pi = await _authorised(stripe)
    g, order = stripe.gateway, stripe.order_id
    await g.capture(stripe.key("capture"), pi, Decimal("40.00"), order_id=order, currency="USD")
    with pytest.raises(PaymentDeclined):
        await g.refund(stripe.key("r1"), pi, Decimal("40.01"), order_id=order, currency="USD")
    done = await g.refund(stripe.key("r2"), pi, Decimal("40.00"), order_id=order, currency="USD")
    assert done.amount == Decimal("40.00")


async def test_nothing_captured_nothing_to_refund(stripe: Stripe) -> None:
    pi = await _authorised(stripe)
    with pytest.raises(PaymentDeclined):
        await stripe.gateway.refund(
            stripe.key("r1"), pi, Decimal("1.00"), order_id=stripe.order_id, currency="USD"
        )


# -- wrong requests --------------------------------------------------------------------------


async def test_calls_wired_to_another_order_or_currency_are_refused(stripe: Stripe) -> None:
    pi = await _authorised(stripe, currency="EUR")
    g = stripe.gateway
    with pytest.raises(InvalidPaymentRequest, match="belongs to order"):
        await g.capture("backorder-X-1/capture", pi, Decimal("1.00"), order_id="X-1",
                        currency="EUR")  # fmt: skip
    with pytest.raises(InvalidPaymentRequest, match="not USD"):
        await g.capture(stripe.key("capture"), pi, Decimal("1.00"), order_id=stripe.order_id,
                        currency="USD")  # fmt: skip
    with pytest.raises(InvalidPaymentRequest, match="belongs to order"):
        await g.void("backorder-X-1/void", pi, None, order_id="X-1", currency="EUR")
    captured = await g.capture(stripe.key("capture"), pi, Decimal("10.00"),
                               order_id=stripe.order_id, currency="EUR")  # fmt: skip
    with pytest.raises(InvalidPaymentRequest, match="belongs to order"):
        await g.refund("backorder-X-1/refund", captured.reference, Decimal("1.00"),
                       order_id="X-1", currency="EUR")  # fmt: skip
    assert (await stripe.read(f"/v1/payment_intents/{pi}"))["status"] == "succeeded"


async def test_unknown_references_are_refused(stripe: Stripe) -> None:
    g, order = stripe.gateway, stripe.order_id
    with pytest.raises(InvalidPaymentRequest, match="Not Found"):
        await g.capture(stripe.key("c"), "pi_doesnotexist", Decimal("1"), order_id=order,
                        currency="USD")  # fmt: skip
    with pytest.raises(InvalidPaymentRequest, match="PaymentIntent"):
        await g.void(stripe.key("v"), "auth_0123", None, order_id=order, currency="USD")
    with pytest.raises(InvalidPaymentRequest):
        await g.refund(stripe.key("r"), "ch_doesnotexist", Decimal("1"), order_id=order,
                       currency="USD")  # fmt: skip
    assert stripe.sent("POST") == []


# -- an unavailable gateway ------------------------------------------------------------------


async def test_a_closed_port_is_gateway_unavailable() -> None:
    async with StripeGateway(
        API_KEY, base_url=f"http://127.0.0.1:{free_port()}", default_payment_method="pm_card_visa"
    ) as g:
        with pytest.raises(GatewayUnavailable, match="unreachable"):
            await g.authorise("backorder-S-1/authorise", "S-1", Decimal("1.00"), "USD")


async def test_a_server_that_does_not_answer_is_gateway_unavailable() -> None:
    with socket.socket() as mute:  # accepts connections (the backlog), never answers
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        port = mute.getsockname()[1]
        async with StripeGateway(API_KEY, base_url=f"http://127.0.0.1:{port}", timeout=0.3) as g:
            with pytest.raises(GatewayUnavailable, match=r"within 0\.3s"):
                await g.capture("backorder-S-1/capture", "pi_123", Decimal("1.00"),
                                order_id="S-1", currency="USD")  # fmt: skip


def _canned(status: int, body: dict[str, Any]) -> StripeGateway:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return StripeGateway(API_KEY, client=client, default_payment_method="pm_card_visa")


@pytest.mark.parametrize(
    ("status", "error", "raised"),
    [
        (429, {"type": "invalid_request_error", "code": "rate_limit"}, GatewayUnavailable),
        (500, {"type": "api_error"}, GatewayUnavailable),
        (503, {}, GatewayUnavailable),
        (409, {"type": "invalid_request_error", "code": "idempotency_key_in_use"},
         GatewayUnavailable),
        (409, {"type": "idempotency_error", "message": "Keys for idempotent requests can only be "
               "used with the same parameters"}, InvalidPaymentRequest),
        (400, {"type": "idempotency_error"}, InvalidPaymentRequest),
        (400, {"type": "invalid_request_error", "code": "parameter_missing"},
         InvalidPaymentRequest),
        (404, {"type": "invalid_request_error", "code": "resource_missing"},
         InvalidPaymentRequest),
        (402, {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
               "message": "Your card has insufficient funds."}, PaymentDeclined),
        (400, {"type": "invalid_request_error", "code": "payment_intent_unexpected_state"},
         PaymentDeclined),
        (402, {"message": "Payment required"}, PaymentDeclined),
    ],
)  # fmt: skip
async def test_stripe_answers_map_onto_the_protocols_errors(
    status: int, error: dict[str, Any], raised: type[Exception]
) -> None:
    g = _canned(status, {"error": error})
    with pytest.raises(raised) as info:
        await g.authorise("backorder-S-1/authorise", "S-1", Decimal("1.00"), "USD")
    assert str(status) in str(info.value)
    if "decline_code" in error:
        assert "insufficient_funds" in str(info.value)


async def test_with_multicapture_captures_leave_the_rest_open_until_the_last() -> None:
    """localstripe has no multicapture: this is Stripe's answer, canned, and the requests."""
    state: dict[str, Any] = {
        "id": "pi_multi",
        "object": "payment_intent",
        "amount": 10000,
        "amount_capturable": 10000,
        "amount_received": 0,
        "currency": "usd",
        "status": "requires_capture",
        "created": 1_800_000_000,
        "metadata": {"order_id": "S-1"},
        "latest_charge": {
            "id": "ch_multi",
            "payment_method_details": {"card": {"multicapture": {"status": "available"}}},
        },
    }
    captures: list[dict[str, list[str]]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/capture"):
            body = form(request)
            captures.append(body)
            taken = int(body["amount_to_capture"][0])
            state["amount_received"] += taken
            state["amount_capturable"] -= taken
            if body["final_capture"] == ["true"]:
                state["amount_capturable"] = 0
                state["status"] = "succeeded"
        elif request.method == "POST":  # a metadata update
            for k, v in form(request).items():
                state["metadata"][k.removeprefix("metadata[").removesuffix("]")] = v[0]
        return httpx.Response(200, json=state)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        g = StripeGateway(API_KEY, client=client)
        first = await g.capture("k/capture-1", "pi_multi", Decimal("40.00"), order_id="S-1",
                                currency="USD")  # fmt: skip
        again = await g.capture("k/capture-1", "pi_multi", Decimal("40.00"), order_id="S-1",
                                currency="USD")  # fmt: skip
        last = await g.capture("k/capture-2", "pi_multi", Decimal("60.00"), order_id="S-1",
                               currency="USD")  # fmt: skip

    assert first == again and first.reference == "ch_multi"
    assert last.amount == Decimal("60.00")
    assert [(c["amount_to_capture"], c["final_capture"]) for c in captures] == [
        (["4000"], ["false"]),
        (["6000"], ["true"]),
    ]


# -- logging and the activities --------------------------------------------------------------


async def test_every_call_is_logged_with_its_key(
    stripe: Stripe, caplog: pytest.LogCaptureFixture
) -> None:
    pi = await _authorised(stripe)
    key = stripe.key("capture/S1")
    before = len(stripe.requests)
    with caplog.at_level(logging.INFO, logger="payments.stripe"):
        await stripe.gateway.capture(
            key, pi, Decimal("1.00"), order_id=stripe.order_id, currency="USD"
        )
    calls = [r.getMessage() for r in caplog.records if r.name == "payments.stripe"]
    sent = [m for m in calls if m.startswith("stripe ") and "->" not in m]
    answered = [m for m in calls if m.startswith("stripe ") and "->" in m]
    assert len(sent) == len(answered) == len(stripe.requests) - before == 3  # read, claim, capture
    assert all(key in m for m in sent + answered)


async def test_a_decline_through_the_activity_is_non_retryable(declining: Stripe) -> None:
    activities = PaymentActivities(declining.gateway)
    request = PaymentRequest(
        key=declining.key("authorise"),
        order_id=declining.order_id,
        amount=Decimal("10.00"),
        currency="USD",
    )
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(activities.authorise_payment, request)
    assert info.value.type == PAYMENT_DECLINED
    assert info.value.non_retryable


async def test_an_authorisation_through_the_activity(stripe: Stripe) -> None:
    activities = PaymentActivities(stripe.gateway)
    request = PaymentRequest(
        key=stripe.key("authorise"), order_id=stripe.order_id, amount=Decimal("10.00"),
        currency="USD",
    )  # fmt: skip
    result = await ActivityEnvironment().run(activities.authorise_payment, request)
    assert result.reference.startswith("pi_") and result.amount == Decimal("10.00")
    assert result.expires_at is not None
