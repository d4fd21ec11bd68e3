"""What a channel delivers and how it fails: the contract between the outbox and its channels.

Channels never retry: a `DeliveryFailed` says whether trying again can help (`permanent`), and
the caller (the outbox activity, retried by Temporal) decides when.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict


class OutboundMessage(BaseModel):
    """A rendered notice, ready for any channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    """The notice's idempotency key: receivers dedupe retried deliveries on it."""
    kind: str
    order_id: str
    order_number: str
    to: str
    subject: str
    text: str
    payload: dict[str, Any]
    """The notice itself as JSON, for receivers that format their own messages."""


class DeliveryFailed(Exception):
    """A delivery that did not happen. `permanent`: the same message will fail again (a
    refused recipient, a rejected request); otherwise a later attempt may succeed."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    """Delivers messages one at a time; `send` returns the receiver's reference for it."""

    name: str

    async def send(self, message: OutboundMessage) -> str: ...

    async def aclose(self) -> None: ...
