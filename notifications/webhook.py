"""Notices POSTed as signed JSON to the merchant's endpoint.

The signature (`Backorder-Signature: t=<unix>,v1=<hex>`) is an HMAC-SHA256 of the timestamp and
the exact body, so the receiver knows the notice is ours, unaltered and recent (a replayed old
request fails the tolerance). Several `v1=` values let a secret be rotated without downtime:
the sender signs with the new and the previous secrets, the receiver accepts any match.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence

import httpx

from notifications.message import DeliveryFailed, OutboundMessage

SIGNATURE_HEADER = "Backorder-Signature"
USER_AGENT = "backorder-notifications"
_RETRYABLE_4XX = frozenset({408, 429})


class SignatureError(ValueError):
    """A webhook request whose signature does not prove it came from us, now."""


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def sign(secret: str, body: bytes, timestamp: int, *, previous_secrets: Sequence[str] = ()) -> str:
    """`t=<timestamp>,v1=<hex>`, plus one `v1=` per previous secret still accepted."""
    if not secret:
        raise ValueError("empty webhook secret")
    signatures = [_digest(s, body, timestamp) for s in (secret, *previous_secrets)]
    return ",".join([f"t={timestamp}", *(f"v1={s}" for s in signatures)])


def verify(secret: str, body: bytes, header: str, *, now: int, tolerance: int = 300) -> None:
    """Raise `SignatureError` unless `header` signs `body` with `secret` within `tolerance`
    seconds of `now` (either way: a clock ahead of ours is as suspect as a replay)."""
    timestamp, signatures = _parse(header)
    if timestamp < now - tolerance:
        raise SignatureError(f"stale signature timestamp: {now - timestamp}s old")
    if timestamp > now + tolerance:
        raise SignatureError(f"signature timestamp {timestamp - now}s in the future")
    expected = _digest(secret, body, timestamp).encode()
    # Compare with every value, found or not: the time taken says nothing about a match.
    matches = [hmac.compare_digest(expected, s.encode()) for s in signatures]
    if not any(matches):
        raise SignatureError("signature mismatch")


def _parse(header: str) -> tuple[int, list[str]]:
    timestamps, signatures = [], []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or not value:
            raise SignatureError(f"malformed signature header: bad part {part.strip()!r}")
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise SignatureError("malformed signature header: expected one numeric t=<unix time>")
    if not signatures:
        raise SignatureError("malformed signature header: no v1= signature")
    return int(timestamps[0]), signatures


class WebhookChannel:
    """POSTs each message once; failures are classified, never retried here."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        previous_secrets: Sequence[str] = (),
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("empty webhook secret")
        self.url = url
        self._secrets = (secret, tuple(previous_secrets))
        self._timeout = timeout
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(follow_redirects=False)
        self._clock = clock

    @staticmethod
    def body(message: OutboundMessage) -> bytes:
        """The JSON the receiver gets (and the signature covers)."""
        return json.dumps(
            {
                "id": message.key,
                "kind": message.kind,
                "order_id": message.order_id,
                "order_number": message.order_number,
                "to": message.to,
                "subject": message.subject,
                "text": message.text,
                "notice": message.payload,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()

    async def send(self, message: OutboundMessage) -> str:
        body = self.body(message)
        secret, previous = self._secrets
        headers = {
            SIGNATURE_HEADER: sign(secret, body, int(self._clock()), previous_secrets=previous),
            "Idempotency-Key": message.key,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        try:
            response = await self._client.post(
                self.url, content=body, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException as err:
            raise DeliveryFailed(
                f"webhook {self.url}: timed out after {self._timeout}s ({type(err).__name__})",
                permanent=False,
            ) from err
        except httpx.TransportError as err:
            raise DeliveryFailed(
                f"webhook {self.url}: {type(err).__name__}: {err}", permanent=False
            ) from err
        return _reference(self.url, response)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


def _reference(url: str, response: httpx.Response) -> str:
    """The receiver's id for the delivery (its JSON `id`), else the status line; or the
    failure: 5xx, 408 and 429 may pass, any other status will not (a redirect included)."""
    status = response.status_code
    if response.is_success:
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("id"), str | int):
            return str(data["id"])
        return f"{status} {response.reason_phrase}".strip()
    detail = response.text[:200].strip()
    retry_after = response.headers.get("Retry-After")
    message = f"webhook {url}: HTTP {status} {response.reason_phrase}".strip()
    if retry_after:
        message += f" (Retry-After: {retry_after})"
    if detail:
        message += f": {detail}"
    raise DeliveryFailed(message, permanent=status < 500 and status not in _RETRYABLE_4XX)
