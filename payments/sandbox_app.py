"""The sandbox gateway as a JSON API over HTTP, so the worker can talk to it like a real one.

A raw ASGI app (no framework) in front of `SandboxGateway`. Money calls need an
`Idempotency-Key` header; amounts travel as decimal strings, never JSON numbers. Errors are
`{"error": {"type", "message"}}`: a decline is 402, a request that can never succeed 400, a key
reused for another request 409, a sandbox failure 500.

`/_sandbox/faults` arms faults (500s, timeouts, declines, lost answers) so reliability tests can
watch the client and Temporal cope; see `Faults`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import unquote

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from payments.gateway import InvalidPaymentRequest, PaymentDeclined
from payments.sandbox import IdempotencyKeyReused, Operation, SandboxGateway

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("payments.sandbox")

_MAX_BODY = 64 * 1024


def _decimal_string(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError('amounts are decimal strings such as "12.50", not JSON numbers')
    return value


Amount = Annotated[Decimal, BeforeValidator(_decimal_string)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthoriseBody(_Body):
    order_id: str = Field(min_length=1)
    amount: Amount
    currency: str
    renews: str | None = None


class CaptureBody(_Body):
    order_id: str = Field(min_length=1)
    currency: str
    amount: Amount


class VoidBody(_Body):
    order_id: str = Field(min_length=1)
    currency: str
    amount: Amount | None
    """Required, but null releases all that is still open."""


class RefundBody(_Body):
    reference: str
    """A capture, or an authorisation (its captures are refunded oldest first)."""
    order_id: str = Field(min_length=1)
    currency: str
    amount: Amount


FaultKind = Literal["error_500", "timeout", "decline", "lost_response"]


class Fault(_Body):
    """What to do to the next `times` requests of `operation` (of `order_id` if given):

    - error_500: answer 500, apply nothing;
    - timeout: hold the request `delay_seconds` (or until the client hangs up), then answer 504,
      apply nothing;
    - decline: answer 402, apply nothing;
    - lost_response: apply the operation (committed), then answer 500 instead of its result.
    """

    operation: Operation | Literal["*"]
    kind: FaultKind
    order_id: str | None = None
    times: int = Field(default=1, ge=1)
    delay_seconds: float = Field(default=30.0, ge=0, le=3600, allow_inf_nan=False)

    def matches(self, operation: Operation, order_id: str) -> bool:
        return self.operation in ("*", operation) and self.order_id in (None, order_id)


@dataclass
class _Armed:
    fault: Fault
    left: int


class Faults:
    """Armed faults, in memory (one app's, lost on restart): a matching request consumes one
    of the first armed fault that matches it; malformed requests consume none."""

    def __init__(self) -> None:
        self._armed: list[_Armed] = []

    def arm(self, fault: Fault) -> None:
        self._armed.append(_Armed(fault, fault.times))

    def clear(self) -> int:
        cleared, self._armed = len(self._armed), []
        return cleared

    def armed(self) -> list[dict[str, Any]]:
        return [a.fault.model_dump(mode="json") | {"left": a.left} for a in self._armed]

    def take(self, operation: Operation, order_id: str) -> Fault | None:
        for armed in self._armed:
            if armed.fault.matches(operation, order_id):
                armed.left -= 1
                if armed.left == 0:
                    self._armed.remove(armed)
                return armed.fault
        return None


@dataclass(frozen=True)
class _Response:
    status: int
    payload: object
    headers: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def note(self) -> str:
        """The error message, for the request log."""
        if isinstance(self.payload, dict) and isinstance(self.payload.get("error"), dict):
            return f": {self.payload['error'].get('message')}"
        return ""


class ApiError(Exception):
    """An answer other than 200, raised from anywhere in a handler."""

    def __init__(
        self, status: int, kind: str, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        super().__init__(message)
        self.response = _error(status, kind, message, headers)


def _error(
    status: int, kind: str, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> _Response:
    return _Response(status, {"error": {"type": kind, "message": message}}, headers)


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    raw_path: str
    """Still %-encoded, so a reference with a "/" is one path segment."""
    key: str | None
    body: bytes
    receive: Receive


_Handler = Callable[[_Request, dict[str, str]], Awaitable[_Response]]
_B = TypeVar("_B", bound=BaseModel)


class SandboxApp:
    """The routes of the sandbox API, served by any ASGI server (see `payments.server`)."""

    def __init__(self, gateway: SandboxGateway, faults: Faults | None = None) -> None:
        self.gateway = gateway
        self.faults = faults or Faults()
        self._routes: list[tuple[re.Pattern[str], dict[str, _Handler]]] = [
            (re.compile(r"/healthz"), {"GET": self._health}),
            (re.compile(r"/v1/authorisations"), {"POST": self._authorise}),
            (re.compile(r"/v1/authorisations/(?P<ref>[^/]+)/captures"), {"POST": self._capture}),
            (re.compile(r"/v1/authorisations/(?P<ref>[^/]+)/voids"), {"POST": self._void}),
            (re.compile(r"/v1/refunds"), {"POST": self._refund}),
            (
                re.compile(r"/_sandbox/faults"),
                {"GET": self._list_faults, "POST": self._arm_fault, "DELETE": self._clear_faults},
            ),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.monotonic()
        method, path = scope["method"], scope["path"]
        key = _header(scope, b"idempotency-key")
        try:
            body = await _read_body(receive)
            if body is None:
                log.info("%s %s key=%s: the client hung up", method, path, key)
                return
            raw_path = bytes(scope.get("raw_path") or path.encode()).decode("latin-1")
            request = _Request(method, path, raw_path, key, body, receive)
            response = await self._dispatch(request)
        except ApiError as err:
            response = err.response
        except Exception as err:
            log.exception("%s %s key=%s failed", method, path, key)
            response = _error(500, "internal_error", f"the sandbox failed: {err!r}")
        log.info(
            "%s %s key=%s -> %d in %.0f ms%s",
            method,
            path,
            key,
            response.status,
            (time.monotonic() - started) * 1000,
            response.note,
        )
        await _send(send, response)

    async def _dispatch(self, request: _Request) -> _Response:
        for pattern, methods in self._routes:
            match = pattern.fullmatch(request.raw_path)
            if match is None:
                continue
            handler = methods.get(request.method)
            if handler is None:
                allowed = ", ".join(methods)
                raise ApiError(
                    405,
                    "method_not_allowed",
                    f"{request.method} is not allowed on {request.path} (allowed: {allowed})",
                    ((b"allow", allowed.encode()),),
                )
            return await handler(request, {k: unquote(v) for k, v in match.groupdict().items()})
        raise ApiError(404, "not_found", f"no route {request.path}")

    # -- money ---------------------------------------------------------------------------------

    async def _authorise(self, request: _Request, _: dict[str, str]) -> _Response:
        body = _parse(AuthoriseBody, "authorise", request.body)
        return await self._apply(
            "authorise",
            request,
            body.order_id,
            lambda key: self.gateway.authorise(
                key, body.order_id, body.amount, body.currency, renews=body.renews
            ),
        )

    async def _capture(self, request: _Request, path: dict[str, str]) -> _Response:
        body = _parse(CaptureBody, "capture", request.body)
        return await self._apply(
            "capture",
            request,
            body.order_id,
            lambda key: self.gateway.capture(
                key, path["ref"], body.amount, order_id=body.order_id, currency=body.currency
            ),
        )

    async def _void(self, request: _Request, path: dict[str, str]) -> _Response:
        body = _parse(VoidBody, "void", request.body)
        return await self._apply(
            "void",
            request,
            body.order_id,
            lambda key: self.gateway.void(
                key, path["ref"], body.amount, order_id=body.order_id, currency=body.currency
            ),
        )

    async def _refund(self, request: _Request, _: dict[str, str]) -> _Response:
        body = _parse(RefundBody, "refund", request.body)
        return await self._apply(
            "refund",
            request,
            body.order_id,
            lambda key: self.gateway.refund(
                key, body.reference, body.amount, order_id=body.order_id, currency=body.currency
            ),
        )

    async def _apply(
        self,
        operation: Operation,
        request: _Request,
        order_id: str,
        call: Callable[[str], Awaitable[BaseModel]],
    ) -> _Response:
        """Run the gateway call under the request's key, with the fault armed for it, if any."""
        key = request.key
        if not key:
            raise ApiError(400, "invalid_request", f"{operation} needs an Idempotency-Key header")
        fault = self.faults.take(operation, order_id)
        injected = f"injected {fault and fault.kind}: {operation} key={key} order={order_id}"
        if fault is not None:
            log.warning(injected)
        if fault is not None and fault.kind == "error_500":
            return _error(500, "sandbox_fault", f"{injected} not applied")
        if fault is not None and fault.kind == "decline":
            return _error(402, "payment_declined", f"{injected} declined, not applied")
        if fault is not None and fault.kind == "timeout":
            await _hold(request.receive, fault.delay_seconds)
            return _error(504, "sandbox_fault", f"{injected} not applied")
        try:
            result = await call(key)
        except PaymentDeclined as err:
            return _error(402, "payment_declined", str(err))
        except IdempotencyKeyReused as err:
            return _error(409, "idempotency_key_reused", str(err))
        except InvalidPaymentRequest as err:
            return _error(400, "invalid_request", str(err))
        if fault is not None and fault.kind == "lost_response":
            return _error(500, "sandbox_fault", f"{injected} applied, its answer lost")
        return _Response(200, result.model_dump(mode="json"))

    # -- the rest ------------------------------------------------------------------------------

    async def _health(self, _: _Request, __: dict[str, str]) -> _Response:
        return _Response(200, {"status": "ok"})

    async def _list_faults(self, _: _Request, __: dict[str, str]) -> _Response:
        return _Response(200, {"faults": self.faults.armed()})

    async def _arm_fault(self, request: _Request, _: dict[str, str]) -> _Response:
        fault = _parse(Fault, "fault", request.body)
        self.faults.arm(fault)
        log.warning("armed fault %s", fault.model_dump(mode="json"))
        return _Response(200, {"faults": self.faults.armed()})

    async def _clear_faults(self, _: _Request, __: dict[str, str]) -> _Response:
        return _Response(200, {"cleared": self.faults.clear()})


def _parse(model: type[_B], what: str, body: bytes) -> _B:
    """The body as `model`, or a 400 that says what is wrong with it."""
    if not body.strip():
        raise ApiError(400, "invalid_request", f"{what}: the request body is empty")
    try:
        data = json.loads(body)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise ApiError(
            400, "invalid_request", f"{what}: the body is not valid JSON: {err}"
        ) from err
    if not isinstance(data, dict):
        raise ApiError(
            400,
            "invalid_request",
            f"{what}: the body must be a JSON object, not {type(data).__name__}",
        )
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors()
        )
        raise ApiError(400, "invalid_request", f"{what}: {problems}") from err


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None when the client hung up first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            raise ApiError(413, "invalid_request", f"the body is above {_MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _hold(receive: Receive, seconds: float) -> None:
    """Sleep `seconds`, or less if the client hangs up (it timed out: nobody is waiting)."""

    async def hung_up() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(hung_up(), timeout=seconds)


async def _send(send: Send, response: _Response) -> None:
    body = json.dumps(response.payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *response.headers,
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: the gateway's pool belongs to whoever made it."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
