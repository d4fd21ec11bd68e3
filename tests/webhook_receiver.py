"""A merchant's webhook endpoint for tests: verifies each delivery's signature, dedupes on its
`Idempotency-Key` like a careful receiver would, and can be told to fail the next requests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from notifications.webhook import SIGNATURE_HEADER, SignatureError, verify
from payments.server import serve_asgi

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class WebhookReceiver:
    secret: str
    received: list[dict[str, Any]] = field(default_factory=list)
    """Verified deliveries, in order of arrival (duplicates included)."""
    rejected: list[str] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    """Statuses to answer the next requests with, one each (then 200 again)."""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def keys(self) -> list[str]:
        return [body["id"] for body in self.received]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if self.failures:
            await answer_json(send, self.failures.pop(0), {"error": "told to fail"})
            return
        try:
            verify(
                self.secret, body, headers.get(SIGNATURE_HEADER.lower(), ""), now=int(time.time())
            )
        except SignatureError as err:
            self.rejected.append(str(err))
            await answer_json(send, 401, {"error": str(err)})
            return
        payload = json.loads(body)
        assert headers["idempotency-key"] == payload["id"]
        self.received.append(payload)
        self.arrived.set()
        await answer_json(send, 200, {"id": f"msg-{len(self.received)}"})

    async def wait_for(self, count: int, within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def read_body(receive: Receive) -> bytes:
    """A request's whole body, however many messages it came in."""
    body = b""
    while True:
        event = await receive()
        body += bytes(event.get("body", b""))
        if not event.get("more_body"):
            return body


async def answer_json(send: Send, status: int, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": raw})


@asynccontextmanager
async def webhook_receiver(
    secret: str = "whsec-test",
) -> AsyncIterator[tuple[WebhookReceiver, str]]:
    """A receiver served on a loopback port; yields it and its URL."""
    receiver = WebhookReceiver(secret)
    async with serve_asgi(receiver) as url:
        yield receiver, f"{url}/hooks/backorder"
