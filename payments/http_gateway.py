"""`PaymentGateway` over HTTP: the client of the sandbox API (`payments.sandbox_app`).

It sends every call once, with its idempotency key, and never retries: retrying is Temporal's
job (the activity runs again with the same key, which the gateway makes safe). Its task is to
sort answers into the Protocol's errors: 402 is a decline, 400/404/409/422 a request that can
never succeed, and no answer, 5xx or 429 a `GatewayUnavailable` worth retrying.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from payments.gateway import (
    AuthorisationResult,
    GatewayUnavailable,
    InvalidPaymentRequest,
    OperationResult,
    PaymentDeclined,
)
from payments.http_client import HttpClientOwner

log = logging.getLogger("payments.http")

_INVALID = frozenset({400, 404, 409, 422})
_R = TypeVar("_R", bound=BaseModel)


class UnexpectedGatewayResponse(Exception):
    """An answer the client cannot read (another status, a body not as agreed): raised as is,
    so Temporal retries it under the same key while someone looks."""


class HttpGateway(HttpClientOwner):
    """The sandbox API's client; pass `client` to share a connection pool (it is then not
    closed by `aclose`)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        api_key: str | None = None,
    ) -> None:
        super().__init__(base_url, timeout, client)
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}

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
        body = {"order_id": order_id, "amount": _amount(amount), "currency": currency}
        if renews is not None:
            body["renews"] = renews
        return await self._post(AuthorisationResult, "authorise", key, "/v1/authorisations", body)

    async def capture(
        self,
        key: str,
        authorisation_ref: str,
        amount: Decimal,
        *,
        order_id: str,
        currency: str,
    ) -> OperationResult:
        path = f"/v1/authorisations/{quote(authorisation_ref, safe='')}/captures"
        body = {"order_id": order_id, "currency": currency, "amount": _amount(amount)}
        return await self._post(OperationResult, "capture", key, path, body)

    async def void(
        self,
        key: str,
        authorisation_ref: str,
        amount: Decimal | None,
        *,
        order_id: str,
        currency: str,
    ) -> OperationResult:
        path = f"/v1/authorisations/{quote(authorisation_ref, safe='')}/voids"
        body = {
            "order_id": order_id,
            "currency": currency,
            "amount": None if amount is None else _amount(amount),
        }
        return await self._post(OperationResult, "void", key, path, body)

    async def refund(
        self,
        key: str,
        reference: str,
        amount: Decimal,
        *,
        order_id: str,
        currency: str,
    ) -> OperationResult:
        body = {
            "reference": reference,
            "order_id": order_id,
            "currency": currency,
            "amount": _amount(amount),
        }
        return await self._post(OperationResult, "refund", key, "/v1/refunds", body)

    # -- the wire ------------------------------------------------------------------------------

    async def _post(
        self, result: type[_R], operation: str, key: str, path: str, body: dict[str, Any]
    ) -> _R:
        url = f"{self._base_url}{path}"
        call = f"{operation} key={key} order={body['order_id']}"
        try:
            response = await self._client.post(
                url,
                json=body,
                headers={"Idempotency-Key": key, **self._auth},
                timeout=self._timeout,
            )
        except httpx.TimeoutException as err:
            log.warning("%s: no answer from %s within %ss", call, url, self._timeout)
            raise GatewayUnavailable(
                f"{call}: no answer from {url} within {self._timeout}s ({type(err).__name__})"
            ) from err
        except httpx.TransportError as err:
            log.warning("%s: %s unreachable: %r", call, url, err)
            raise GatewayUnavailable(f"{call}: {url} unreachable: {err!r}") from err
        status = response.status_code
        log.info("%s -> %d", call, status)
        if status == 200:
            try:
                return result.model_validate_json(response.content)
            except ValidationError as err:
                raise UnexpectedGatewayResponse(
                    f"{call}: unreadable answer from {url}: {err}"
                ) from err
        message = _message(response)
        if status == 402:
            raise PaymentDeclined(message)
        if status in _INVALID:
            raise InvalidPaymentRequest(message)
        if status == 429 or status >= 500:
            raise GatewayUnavailable(f"{call}: {url} answered {status}: {message}")
        raise UnexpectedGatewayResponse(f"{call}: {url} answered {status}: {message}")


def _amount(amount: Decimal) -> str:
    """A decimal string without exponent ("100", not "1E+2")."""
    return f"{amount:f}"


def _message(response: httpx.Response) -> str:
    """The error's message from the body, or the start of the body as it is."""
    try:
        error = response.json()["error"]
        return str(error["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase
