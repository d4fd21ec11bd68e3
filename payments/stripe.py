"""The payment gateway on Stripe: PaymentIntents with manual capture, over Stripe's HTTP API.

An authorisation is a PaymentIntent (`pi_...`) created with `capture_method=manual` and confirmed
at once; captures take from it, a void of the rest cancels it, refunds go to its charge. Requests
are form-encoded like Stripe's own clients send them, with `Authorization: Bearer <secret key>`
and a pinned `Stripe-Version` (`STRIPE_VERSION`), and every object created carries the order in
`metadata[order_id]`. Amounts go out in the currency's minor units (`minor_units`: cents, none
for zero-decimal currencies such as JPY, three decimals for KWD & co); an amount the currency
cannot express is an `InvalidPaymentRequest`, never rounded.

Errors, as the Protocol wants them: a 402 or a `card_error` (declines), and refusals such as
`charge_already_captured` or `amount_too_large`, are `PaymentDeclined`; other 400s, 404s and
idempotency errors (a key reused for another request) are `InvalidPaymentRequest`; 429, 5xx,
timeouts and connection errors are `GatewayUnavailable` (so is `idempotency_key_in_use`: another
call with the same key is in flight, and retrying the key gets its answer). There are no retry
loops here: Temporal retries the activity, under the same key. Every call is logged with its
idempotency key on the `payments.stripe` logger.

Idempotency
-----------
Every POST carries an `Idempotency-Key`: the key we are given, unchanged, on the request that
moves money (create, capture, cancel, refund). Stripe replays its stored answer to a key for 24
hours. The adapter does not rely on that alone, because Stripe forgets keys after a day and
localstripe (the fake server the tests run) ignores the header altogether; the same key must
still take effect once:

- capture: before capturing, the adapter records the key and amount on the PaymentIntent
  (`metadata[capture_key]`, `capture_amount`, `capture_received_before`), a metadata update
  whose own Idempotency-Key is `<key>/claim`. A capture that finds its own key recorded and the
  capture done (the PaymentIntent `succeeded`, or `amount_received` grown by the amount)
  returns the first result without a second request; the same key with another amount is an
  `InvalidPaymentRequest`. If the capture POST itself is refused (a concurrent call with the
  same key got there first), the PaymentIntent is read once more and the same check applies.
- void of the rest: the same, with `metadata[release_key]` / `release_amount` and the cancel.
- partial void: the record is the effect (below), keyed by the key's digest.
- refund: each refund carries `metadata[idempotency_key]`; a refund whose key is already on one
  of the charge's refunds returns that refund.
- authorise has no such guard: finding an earlier PaymentIntent by its key would need the
  Search API (eventually consistent, absent from localstripe). It relies on Stripe's replay of
  the key; on localstripe a repeated authorise creates a second PaymentIntent (a second hold,
  which lapses unused).

The records assume what the order workflow does: one payment call at a time per authorisation.

Several captures of one authorisation
-------------------------------------
Stripe captures a PaymentIntent once, and that capture releases whatever it did not take,
unless multicapture is available: an IC+ pricing feature, for Visa, Mastercard, Amex and
Discover online card payments. The adapter asks for it on every authorisation
(`payment_method_options[card][request_multicapture]=if_available`) and, when the charge reports
`payment_method_details.card.multicapture.status == "available"`, captures with
`final_capture=false`, except for a capture that takes all that is still open, which is final
and releases the (partly voided) rest.

Without multicapture (most accounts; always on localstripe, which rejects `final_capture`) the
first capture is final: Stripe takes its amount and releases the rest of the hold. A later
capture of the same authorisation is then a `PaymentDeclined` that says so: nothing was
captured, no money is lost silently, and the workflow reports the failed capture to an
operator. The same holds for an explicit void after that capture: nothing is held any more
("above what is open"). To collect for later shipments on such cards, the order has to be
re-authorised (`authorise(..., renews=...)`) before the next capture.

Partial void
------------
Stripe cannot release part of a hold (there is no partial reversal of an authorisation). A
void of less than is open is recorded on the PaymentIntent (`metadata[soft_void_<digest>]`)
and returned as released: the adapter never captures it (captures are checked against the
hold minus these records), and Stripe releases it for real at the final capture, at the void
of the rest (a cancel), or when the authorisation lapses. Until then the customer's statement
still shows the whole hold. A void of exactly what is open cancels the PaymentIntent: the whole
hold is released at once.

Other limits
------------
- `renews` charges the old PaymentIntent's payment method (and customer) off session: live, that
  payment method must be saved to a customer (checkout's `setup_future_usage=off_session`), or
  Stripe refuses to reuse it; a card that asks for authentication declines off session.
- Without `renews`, an authorisation uses `default_payment_method` (a test-mode convenience such
  as `pm_card_visa`); the storefront normally authorises at checkout, and the workflow only
  re-authorises.
- `expires_at` is the charge's `payment_method_details.card.capture_before` when Stripe gives it,
  else seven days after creation (Stripe's usual hold for online card payments).
- The order is checked against the PaymentIntent's `metadata[order_id]` when it has one (a
  checkout that did not set it cannot be checked); the currency is always checked.
- Refunds are bounded by what the charge can still refund, read before the request; on the
  pinned API version a partial capture creates no refund, while localstripe (which has no
  `amount_captured`) still records the released rest as one, and the adapter reads both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx

from payments.gateway import (
    AuthorisationResult,
    GatewayUnavailable,
    InvalidPaymentRequest,
    OperationResult,
    PaymentDeclined,
)
from payments.http_client import HttpClientOwner

log = logging.getLogger("payments.stripe")

STRIPE_VERSION = "2025-03-31.basil"
"""The API version every request pins (partial captures and cancels create no refund in it)."""

DEFAULT_HOLD = dt.timedelta(days=7)
"""How long Stripe holds an online card authorisation when the charge does not say."""

ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv"}
    | {"xaf", "xof", "xpf"}
)
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
"""Stripe takes these in thousandths, but only in steps of ten (the last digit must be 0)."""
WHOLE_UNITS = frozenset({"isk"})
"""Two decimals in the API, but charged in whole units only (amounts divisible by 100)."""

DECLINE_CODES = frozenset(
    {
        "amount_too_large",
        "card_declined",
        "charge_already_captured",
        "charge_already_refunded",
        "charge_expired_for_capture",
        "expired_card",
        "payment_intent_unexpected_state",
    }
)
"""Error codes that are the gateway's refusal (nothing open, expired, declined), not a bad
request."""

Json = dict[str, Any]
Form = Mapping[str, str | list[str]]

_ID = re.compile(r"^(pi|ch)_[A-Za-z0-9_]+$")
_ORDER = "order_id"
_KEY = "idempotency_key"
_SOFT_VOID = "soft_void_"


class StripeApiError(RuntimeError):
    """An answer the adapter does not expect (401 for a wrong key, a body that is not JSON):
    raised as is, so the activity is retried and an operator sees it."""


def _exponent(currency: str) -> tuple[int, int]:
    """The API's decimals for `currency`, and the step its minor amounts must be a multiple of."""
    c = currency.lower()
    if c in ZERO_DECIMAL:
        return 0, 1
    if c in THREE_DECIMAL:
        return 3, 10
    if c in WHOLE_UNITS:
        return 2, 100
    return 2, 1


def minor_units(amount: Decimal, currency: str) -> int:
    """`amount` in the currency's minor units as Stripe expects them (1050 for 10.50 USD, 1234
    for 1234 JPY, 1230 for 1.23 KWD); refused when not positive or finer than Stripe takes."""
    if not amount.is_finite() or amount <= 0:
        raise InvalidPaymentRequest(f"amount must be positive, got {amount} {currency}")
    exponent, step = _exponent(currency)
    scaled = amount.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise InvalidPaymentRequest(
            f"{amount} {currency.upper()} has more decimals than the currency has ({exponent})"
        )
    minor = int(scaled)
    if minor % step:
        raise InvalidPaymentRequest(
            f"Stripe takes {currency.upper()} only in steps of {Decimal(step).scaleb(-exponent)}"
            f", not {amount}"
        )
    return minor


def from_minor_units(minor: int, currency: str) -> Decimal:
    """The inverse of `minor_units`."""
    exponent, _ = _exponent(currency)
    return Decimal(minor).scaleb(-exponent)


def _token(key: str) -> str:
    """The idempotency key as stored in metadata (values hold at most 500 characters)."""
    return key if len(key) <= 500 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _soft_void_name(key: str) -> str:
    """The metadata key of a partial void (metadata keys hold at most 40 characters)."""
    return _SOFT_VOID + hashlib.sha256(key.encode()).hexdigest()[:16]


class _Intent:
    """The parts of a PaymentIntent (with its latest charge expanded) the adapter reads. It
    reads Stripe's fields when present and localstripe's simpler model otherwise."""

    def __init__(self, raw: Json) -> None:
        self.raw = raw
        self.id: str = raw["id"]
        self.status: str = raw.get("status") or ""
        self.amount = int(raw["amount"])
        self.currency: str = raw.get("currency") or ""
        self.metadata: dict[str, str] = dict(raw.get("metadata") or {})
        charge = raw.get("latest_charge")
        self.charge: Json | None = charge if isinstance(charge, dict) else None

    @property
    def capturable(self) -> int:
        """What Stripe still holds and would let us capture."""
        if "amount_capturable" in self.raw:
            return int(self.raw["amount_capturable"])
        return self.amount if self.status == "requires_capture" else 0

    @property
    def received(self) -> int | None:
        """What was captured so far, when Stripe says (localstripe does not)."""
        value = self.raw.get("amount_received")
        return None if value is None else int(value)

    @property
    def soft_voided(self) -> int:
        """What partial voids took out of the hold (still held by Stripe, never captured)."""
        return sum(int(v) for k, v in self.metadata.items() if k.startswith(_SOFT_VOID))

    @property
    def open(self) -> int:
        return max(self.capturable - self.soft_voided, 0)

    @property
    def multicapture(self) -> bool:
        card = _dig(self.charge, "payment_method_details", "card")
        return bool(_dig(card, "multicapture", "status") == "available")

    @property
    def payment_method(self) -> str | None:
        pm = self.raw.get("payment_method")
        if isinstance(pm, dict):
            return str(pm["id"])
        return pm if isinstance(pm, str) else None

    @property
    def customer(self) -> str | None:
        customer = self.raw.get("customer")
        if isinstance(customer, dict):
            return str(customer["id"])
        return customer if isinstance(customer, str) else None

    @property
    def expires_at(self) -> dt.datetime:
        before = _dig(self.charge, "payment_method_details", "card", "capture_before")
        if isinstance(before, int):
            return dt.datetime.fromtimestamp(before, dt.UTC)
        return dt.datetime.fromtimestamp(int(self.raw["created"]), dt.UTC) + DEFAULT_HOLD

    def describe_nothing_open(self, currency: str) -> str:
        """Why nothing (or not enough) can be taken from this authorisation."""
        if self.status == "succeeded":
            return (
                f"{self.id} was captured already and Stripe holds nothing more of it: without "
                "multicapture a PaymentIntent is captured once, and that capture released the "
                "rest of the hold (re-authorise to collect more)"
            )
        if self.status == "canceled":
            return f"{self.id} was voided or lapsed (canceled): nothing is held"
        if self.status != "requires_capture":
            return f"{self.id} holds nothing (status {self.status})"
        return f"{self.id} has {from_minor_units(self.open, currency)} {currency.upper()} open" + (
            f" ({from_minor_units(self.soft_voided, currency)} of the hold voided)"
            if self.soft_voided
            else ""
        )


def _dig(obj: object, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _refundable(charge: Json) -> int:
    """What a charge can still refund. On the pinned API version a partial capture creates no
    refund (`amount_captured - amount_refunded`); localstripe has no `amount_captured` and
    records the released rest as a refund, as Stripe's older versions did."""
    if not charge.get("captured") or charge.get("status") == "failed":
        return 0
    refunded = int(charge.get("amount_refunded") or 0)
    if "amount_captured" in charge:
        return max(int(charge["amount_captured"]) - refunded, 0)
    return max(int(charge["amount"]) - refunded, 0)


class StripeGateway(HttpClientOwner):
    """`PaymentGateway` on Stripe's PaymentIntents (see the module's docstring for the limits)."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://api.stripe.com",
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        default_payment_method: str | None = None,
    ) -> None:
        super().__init__(base_url, timeout, client)
        self._api_key = api_key
        self._default_payment_method = default_payment_method

    # -- the Protocol --------------------------------------------------------------------------

    async def authorise(
        self,
        key: str,
        order_id: str,
        amount: Decimal,
        currency: str,
        *,
        renews: str | None = None,
    ) -> AuthorisationResult:
        minor = minor_units(amount, currency)
        form: dict[str, str | list[str]] = {
            "amount": str(minor),
            "currency": currency.lower(),
            "capture_method": "manual",
            "confirm": "true",
            "payment_method_types[]": ["card"],
            "payment_method_options[card][request_multicapture]": "if_available",
            f"metadata[{_ORDER}]": order_id,
            f"metadata[{_KEY}]": _token(key),
            "expand[]": ["latest_charge"],
        }
        if renews is not None:
            old = await self._intent(renews, key, order_id=order_id, currency=currency)
            payment_method = old.payment_method
            if payment_method is None:
                raise InvalidPaymentRequest(f"{renews} has no payment method to charge again")
            form["payment_method"] = payment_method
            if old.customer is not None:
                form["customer"] = old.customer
            form["off_session"] = "true"
            form["metadata[renews]"] = renews
        elif self._default_payment_method is not None:
            form["payment_method"] = self._default_payment_method
        else:
            raise InvalidPaymentRequest(
                "nothing to authorise with: no `renews` authorisation to take the payment method "
                "from, and no default payment method"
            )
        intent = _Intent(await self._post("/v1/payment_intents", key, form))
        if intent.status != "requires_capture":
            error = intent.raw.get("last_payment_error") or {}
            raise PaymentDeclined(
                f"{intent.id} is not authorised (status {intent.status})"
                + (f": {error.get('message')}" if error.get("message") else "")
            )
        log.info("authorised key=%s %s %s %s", key, intent.id, amount, currency)
        return AuthorisationResult(reference=intent.id, amount=amount, expires_at=intent.expires_at)

    async def capture(
        self,
        key: str,
        authorisation_ref: str,
        amount: Decimal,
        *,
        order_id: str,
        currency: str,
    ) -> OperationResult:
        minor = minor_units(amount, currency)
        intent = await self._intent(authorisation_ref, key, order_id=order_id, currency=currency)
        done = _captured_by(intent, key, minor, amount)
        if done is not None:
            log.info("capture key=%s already done on %s: its first result", key, intent.id)
            return done
        if minor > intent.open:
            raise PaymentDeclined(
                f"cannot capture {amount} {currency.upper()}: "
                + intent.describe_nothing_open(currency)
            )
        await self._post(
            f"/v1/payment_intents/{intent.id}",
            key,
            {
                "metadata[capture_key]": _token(key),
                "metadata[capture_amount]": str(minor),
                "metadata[capture_received_before]": (
                    "" if intent.received is None else str(intent.received)
                ),
            },
            idempotency_key=f"{key}/claim",
        )
        form: dict[str, str | list[str]] = {
            "amount_to_capture": str(minor),
            "expand[]": ["latest_charge"],
        }
        if intent.multicapture:
            form["final_capture"] = "false" if minor < intent.open else "true"
        try:
            after = _Intent(await self._post(f"/v1/payment_intents/{intent.id}/capture", key, form))
        except (InvalidPaymentRequest, PaymentDeclined):
            # A concurrent call with this key may have captured first (localstripe does not
            # replay keys, and refuses the second capture): if so, this is its result.
            again = await self._intent(intent.id, key, order_id=order_id, currency=currency)
            done = _captured_by(again, key, minor, amount)
            if done is None:
                raise
            return done
        return OperationResult(reference=_charge_id(after), amount=amount)

    async def void(
        self,
        key: str,
        authorisation_ref: str,
        amount: Decimal | None,
        *,
        order_id: str,
        currency: str,
    ) -> OperationResult:
        minor = None if amount is None else minor_units(amount, currency)
        asked = "rest" if minor is None else str(minor)
        intent = await self._intent(authorisation_ref, key, order_id=order_id, currency=currency)
        released = _released_by(intent, key, asked, currency)
        if released is not None:
            log.info("void key=%s already done on %s: its first result", key, intent.id)
            return released
        soft = _soft_void_name(key)
        if soft in intent.metadata:
            if amount is None or intent.metadata[soft] != asked:
                raise InvalidPaymentRequest(f"key {key} was used for another void of {intent.id}")
            return OperationResult(reference=f"{intent.id}/{soft}", amount=amount)
        if minor is None or amount is None:
            if intent.capturable == 0:  # captured, voided or lapsed: nothing is held
                return OperationResult(reference=intent.id, amount=Decimal(0))
            releasing = intent.open
        elif minor > intent.open:
            raise PaymentDeclined(
                f"cannot void {amount} {currency.upper()}: "
                + intent.describe_nothing_open(currency)
            )
        elif minor < intent.open:
            # Stripe cannot release part of a hold: record it, never capture it (module doc).
            await self._post(f"/v1/payment_intents/{intent.id}", key, {f"metadata[{soft}]": asked})
            log.info("void key=%s recorded %s of %s as released", key, amount, intent.id)
            return OperationResult(reference=f"{intent.id}/{soft}", amount=amount)
        else:
            releasing = minor
        await self._post(
            f"/v1/payment_intents/{intent.id}",
            key,
            {
                "metadata[release_key]": _token(key),
                "metadata[release_amount]": str(releasing),
                "metadata[release_asked]": asked,
            },
            idempotency_key=f"{key}/claim",
        )
        try:
            await self._post(f"/v1/payment_intents/{intent.id}/cancel", key, {})
        except (InvalidPaymentRequest, PaymentDeclined):
            again = await self._intent(intent.id, key, order_id=order_id, currency=currency)
            released = _released_by(again, key, asked, currency)
            if released is None:
                raise
            return released
        return OperationResult(reference=intent.id, amount=from_minor_units(releasing, currency))

    async def refund(
        self,
        key: str,
        reference: str,
        amount: Decimal,
        *,
        order_id: str,
        currency: str,
    ) -> OperationResult:
        minor = minor_units(amount, currency)
        if reference.startswith("pi_"):
            intent = await self._intent(reference, key, order_id=order_id, currency=currency)
            charge, target = intent.charge, {"payment_intent": intent.id}
        else:
            charge = await self._charge(reference, key, order_id=order_id, currency=currency)
            target = {"charge": charge["id"]}
        if charge is None:
            raise PaymentDeclined(f"nothing was captured on {reference}: nothing to refund")
        refunds = await self._get(
            "/v1/refunds", key, params={"charge": charge["id"], "limit": "100"}
        )
        for earlier in refunds.get("data") or []:
            if (earlier.get("metadata") or {}).get(_KEY) == _token(key):
                if int(earlier["amount"]) != minor:
                    raise InvalidPaymentRequest(f"key {key} was used for another refund")
                log.info("refund key=%s already done: %s", key, earlier["id"])
                return OperationResult(reference=earlier["id"], amount=amount)
        refundable = _refundable(charge)
        if minor > refundable:
            raise PaymentDeclined(
                f"cannot refund {amount} {currency.upper()} of {reference}: "
                f"{from_minor_units(refundable, currency)} is left to refund"
            )
        try:
            done = await self._post(
                "/v1/refunds",
                key,
                {
                    **target,
                    "amount": str(minor),
                    f"metadata[{_ORDER}]": order_id,
                    f"metadata[{_KEY}]": _token(key),
                },
            )
        except InvalidPaymentRequest as err:
            if "greater than" in str(err):  # Stripe's over-refund, sometimes without a code
                raise PaymentDeclined(str(err)) from err
            raise
        if done.get("status") in ("failed", "canceled"):
            raise PaymentDeclined(f"refund {done['id']} {done['status']}")
        return OperationResult(reference=done["id"], amount=amount)

    # -- reads and checks ----------------------------------------------------------------------

    async def _intent(self, ref: str, key: str, *, order_id: str, currency: str) -> _Intent:
        if not ref.startswith("pi_") or not _ID.match(ref):
            raise InvalidPaymentRequest(f"{ref!r} does not name a Stripe PaymentIntent")
        intent = _Intent(
            await self._get(
                f"/v1/payment_intents/{ref}", key, params={"expand[]": ["latest_charge"]}
            )
        )
        _check(ref, intent.metadata, intent.currency, order_id=order_id, currency=currency)
        return intent

    async def _charge(self, ref: str, key: str, *, order_id: str, currency: str) -> Json:
        if not ref.startswith("ch_") or not _ID.match(ref):
            raise InvalidPaymentRequest(f"{ref!r} names neither a PaymentIntent nor a Charge")
        charge = await self._get(f"/v1/charges/{ref}", key, params={"expand[]": ["payment_intent"]})
        intent = charge.get("payment_intent")
        metadata = {**(charge.get("metadata") or {})}
        if isinstance(intent, dict):
            metadata = {**(intent.get("metadata") or {}), **metadata}
        _check(ref, metadata, charge.get("currency") or "", order_id=order_id, currency=currency)
        return charge

    # -- HTTP ----------------------------------------------------------------------------------

    async def _get(self, path: str, key: str, *, params: Form | None = None) -> Json:
        return await self._call("GET", path, key, params=params)

    async def _post(
        self, path: str, key: str, form: Form, *, idempotency_key: str | None = None
    ) -> Json:
        return await self._call("POST", path, key, form=form, idempotency_key=idempotency_key)

    async def _call(
        self,
        method: str,
        path: str,
        key: str,
        *,
        form: Form | None = None,
        params: Form | None = None,
        idempotency_key: str | None = None,
    ) -> Json:
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Stripe-Version": STRIPE_VERSION,
        }
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or key
        log.info("stripe %s %s key=%s", method, path, headers.get("Idempotency-Key", key))
        try:
            response = await self._client.request(
                method,
                self._base_url + path,
                data=form,
                params=params,
                headers=headers,
                timeout=self._timeout,
            )
        except httpx.TimeoutException as err:
            log.warning("stripe %s %s key=%s timed out: %r", method, path, key, err)
            raise GatewayUnavailable(
                f"Stripe did not answer {method} {path} within {self._timeout}s"
            ) from err
        except httpx.TransportError as err:
            log.warning("stripe %s %s key=%s unreachable: %r", method, path, key, err)
            raise GatewayUnavailable(f"Stripe unreachable for {method} {path}: {err!r}") from err
        log.info(
            "stripe %s %s key=%s -> %s%s request-id=%s",
            method,
            path,
            key,
            response.status_code,
            " (replayed)" if response.headers.get("Idempotent-Replayed") == "true" else "",
            response.headers.get("Request-Id"),
        )
        if response.is_success:
            try:
                body = response.json()
            except ValueError as err:
                raise StripeApiError(f"{method} {path}: answer is not JSON") from err
            if not isinstance(body, dict):
                raise StripeApiError(f"{method} {path}: answer is not an object")
            return body
        raise _error(method, path, response)


def _check(
    ref: str, metadata: Mapping[str, str], theirs: str, *, order_id: str, currency: str
) -> None:
    """Refuse a call wired to another order's or another currency's payment."""
    owner = metadata.get(_ORDER)
    if owner is not None and owner != order_id:
        raise InvalidPaymentRequest(f"{ref} belongs to order {owner}, not {order_id}")
    if theirs.lower() != currency.lower():
        raise InvalidPaymentRequest(f"{ref} is in {theirs.upper()}, not {currency.upper()}")


def _charge_id(intent: _Intent) -> str:
    charge = intent.raw.get("latest_charge")
    if isinstance(charge, dict):
        return str(charge["id"])
    return charge if isinstance(charge, str) else intent.id


def _captured_by(intent: _Intent, key: str, minor: int, amount: Decimal) -> OperationResult | None:
    """The first result of the capture under `key`, if it was made; None if it was not."""
    meta = intent.metadata
    if meta.get("capture_key") != _token(key):
        return None
    if meta.get("capture_amount") != str(minor):
        raise InvalidPaymentRequest(f"key {key} was used for another capture of {intent.id}")
    before = meta.get("capture_received_before") or ""
    if intent.received is not None and before:
        done = intent.received >= int(before) + minor
    else:
        done = intent.status == "succeeded"
    return OperationResult(reference=_charge_id(intent), amount=amount) if done else None


def _released_by(intent: _Intent, key: str, asked: str, currency: str) -> OperationResult | None:
    """The first result of the void of the rest under `key`, if the cancel was made."""
    meta = intent.metadata
    if meta.get("release_key") != _token(key):
        return None
    if meta.get("release_asked") != asked:
        raise InvalidPaymentRequest(f"key {key} was used for another void of {intent.id}")
    if intent.status != "canceled":
        return None
    return OperationResult(
        reference=intent.id,
        amount=from_minor_units(int(meta.get("release_amount") or 0), currency),
    )


def _error(method: str, path: str, response: httpx.Response) -> Exception:
    """Stripe's error answer as the Protocol's exception."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    kind, code = error.get("type") or "", error.get("code") or ""
    decline = error.get("decline_code") or ""
    message = error.get("message") or response.reason_phrase
    text = (
        f"Stripe {status} on {method} {path}: {message}"
        + (f" [{kind}" if kind else " [")
        + (f" {code}" if code else "")
        + (f" {decline}" if decline else "")
        + "]"
    )
    if status == 429 or status >= 500 or code in ("idempotency_key_in_use", "lock_timeout"):
        return GatewayUnavailable(text)
    if status == 402 or kind == "card_error" or code in DECLINE_CODES:
        return PaymentDeclined(text)
    if kind == "idempotency_error" or status in (400, 404, 409):
        return InvalidPaymentRequest(text)
    return StripeApiError(text)
