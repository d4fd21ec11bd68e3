"""The webhook and SMTP channels against real servers on loopback: an ASGI app that checks
signatures, an aiosmtpd relay that accepts or refuses recipients."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from activities.contracts import Notice, NoticeItem, NoticeKind
from embedded.process import free_port
from notifications.message import Channel, DeliveryFailed, OutboundMessage
from notifications.smtp import SmtpChannel, message_id
from notifications.webhook import (
    SIGNATURE_HEADER,
    SignatureError,
    WebhookChannel,
    sign,
    verify,
)
from payments.server import serve_asgi
from tests.webhook_receiver import Receive, Scope, Send, answer_json, read_body

SECRET = "whsec_test_4f1b"
NOW = 1_750_000_000


def outbound(
    key: str = "backorder-A-1/accept/on-backorder", to: str = "ada@example.com"
) -> OutboundMessage:
    notice = Notice(
        key=key,
        kind=NoticeKind.ON_BACKORDER,
        order_id="A-1",
        order_number="1001",
        email=to,
        items=(NoticeItem(sku="TENT-2P", quantity=2),),
    )
    return OutboundMessage(
        key=key,
        kind=notice.kind.value,
        order_id=notice.order_id,
        order_number=notice.order_number,
        to=to,
        subject="Your order 1001: some items are on backorder",
        text="Hello Zoë,\n\n  - TENT-2P x 2\n\nAcme Outdoor\n",
        payload=notice.model_dump(mode="json"),
    )


# -- signatures ---------------------------------------------------------------------------------


def test_sign_and_verify_round_trip() -> None:
    body = b'{"id":"k"}'
    header = sign(SECRET, body, NOW)
    assert header.startswith(f"t={NOW},v1=") and len(header.split("v1=")[1]) == 64
    verify(SECRET, body, header, now=NOW)
    verify(SECRET, body, header, now=NOW + 300)  # at the edge of the tolerance


def test_tampered_body_or_wrong_secret_is_a_mismatch() -> None:
    header = sign(SECRET, b'{"amount":"10.00"}', NOW)
    with pytest.raises(SignatureError, match="signature mismatch"):
        verify(SECRET, b'{"amount":"99.00"}', header, now=NOW)
    with pytest.raises(SignatureError, match="signature mismatch"):
        verify("another-secret", b'{"amount":"10.00"}', header, now=NOW)
    forged_time = header.replace(f"t={NOW}", f"t={NOW + 1}")
    with pytest.raises(SignatureError, match="signature mismatch"):
        verify(SECRET, b'{"amount":"10.00"}', forged_time, now=NOW)


def test_stale_and_future_timestamps_are_refused() -> None:
    body = b"{}"
    with pytest.raises(SignatureError, match="stale signature timestamp: 301s old"):
        verify(SECRET, body, sign(SECRET, body, NOW - 301), now=NOW)
    with pytest.raises(SignatureError, match="in the future"):
        verify(SECRET, body, sign(SECRET, body, NOW + 301), now=NOW)
    verify(SECRET, body, sign(SECRET, body, NOW - 3000), now=NOW, tolerance=3600)


@pytest.mark.parametrize(
    "header",
    ["", "garbage", f"v1={'0' * 64}", f"t={NOW}", f"t=soon,v1={'0' * 64}", f"t={NOW},v1="],
)
def test_malformed_headers_are_refused(header: str) -> None:
    with pytest.raises(SignatureError, match="malformed signature header"):
        verify(SECRET, b"{}", header, now=NOW)


def test_rotation_accepts_any_of_several_signatures() -> None:
    body = b'{"id":"k"}'
    header = sign("new-secret", body, NOW, previous_secrets=("old-secret",))
    assert header.count("v1=") == 2
    verify("new-secret", body, header, now=NOW)  # receivers already on the new secret
    verify("old-secret", body, header, now=NOW)  # and those not yet switched
    with pytest.raises(SignatureError, match="mismatch"):
        verify("unrelated", body, header, now=NOW)


# -- the webhook channel against a real HTTP server ----------------------------------------------


@dataclass
class Receiver:
    """An ASGI endpoint: `/hook` checks the signature and records; other paths misbehave."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status, reply = 200, {"id": f"evt_{len(self.received) + 1}"}
        match scope["path"]:
            case "/hook":
                try:
                    verify(SECRET, body, headers[SIGNATURE_HEADER.lower()], now=NOW)
                except (SignatureError, KeyError) as err:
                    status, reply = 401, {"error": str(err)}
                else:
                    self.received.append((headers, body))
            case "/no-id":
                status, reply = 202, {}
            case "/down":
                status, reply = 503, {"error": "maintenance"}
            case "/busy":
                status, reply = 429, {"error": "slow down"}
            case "/bad":
                status, reply = 400, {"error": "unknown field"}
            case "/slow":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), 5)
        await answer_json(send, status, reply)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    app = Receiver()
    async with serve_asgi(app) as url:
        try:
            yield app, url
        finally:
            app.release.set()


def channel(url: str, **options: Any) -> WebhookChannel:
    return WebhookChannel(url, SECRET, clock=lambda: NOW, **options)


async def test_webhook_delivers_a_signed_notice(receiver: tuple[Receiver, str]) -> None:
    app, base = receiver
    hook: Channel = channel(f"{base}/hook")
    message = outbound()
    try:
        reference = await hook.send(message)
    finally:
        await hook.aclose()
    assert reference == f"evt_{len(app.received)}"
    headers, body = app.received[-1]
    assert headers["idempotency-key"] == message.key
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "backorder-notifications"
    sent = json.loads(body)
    assert sent == {
        "id": message.key,
        "kind": "on_backorder",
        "order_id": "A-1",
        "order_number": "1001",
        "to": "ada@example.com",
        "subject": message.subject,
        "text": message.text,
        "notice": message.payload,
    }
    assert sent["notice"]["items"] == [{"sku": "TENT-2P", "quantity": 2}]


async def test_webhook_signed_with_the_wrong_secret_is_refused(
    receiver: tuple[Receiver, str],
) -> None:
    app, base = receiver
    before = len(app.received)
    hook = WebhookChannel(f"{base}/hook", "not-the-secret", clock=lambda: NOW)
    with pytest.raises(DeliveryFailed, match=r"HTTP 401.*signature mismatch") as failed:
        await hook.send(outbound())
    await hook.aclose()
    assert failed.value.permanent
    assert len(app.received) == before


async def test_webhook_reference_without_an_id_is_the_status(
    receiver: tuple[Receiver, str],
) -> None:
    _, base = receiver
    hook = channel(f"{base}/no-id")
    assert await hook.send(outbound()) == "202 Accepted"
    await hook.aclose()


@pytest.mark.parametrize(
    ("path", "permanent", "match"),
    [
        ("/down", False, "HTTP 503 Service Unavailable: .*maintenance"),
        ("/busy", False, "HTTP 429"),
        ("/bad", True, "HTTP 400 Bad Request: .*unknown field"),
    ],
)
async def test_webhook_failures_are_classified(
    receiver: tuple[Receiver, str], path: str, permanent: bool, match: str
) -> None:
    _, base = receiver
    hook = channel(f"{base}{path}")
    with pytest.raises(DeliveryFailed, match=match) as failed:
        await hook.send(outbound())
    await hook.aclose()
    assert failed.value.permanent is permanent


async def test_webhook_timeout_is_transient(receiver: tuple[Receiver, str]) -> None:
    _, base = receiver
    hook = channel(f"{base}/slow", timeout=0.2)
    with pytest.raises(DeliveryFailed, match="timed out") as failed:
        await hook.send(outbound())
    await hook.aclose()
    assert not failed.value.permanent


async def test_webhook_unreachable_is_transient() -> None:
    hook = channel(f"http://127.0.0.1:{free_port()}/hook")
    with pytest.raises(DeliveryFailed, match="ConnectError") as failed:
        await hook.send(outbound())
    await hook.aclose()
    assert not failed.value.permanent


# -- the SMTP channel against a real aiosmtpd relay ----------------------------------------------


class Relay:
    """Accepts mail, except for `refused@` (550) and `later@` (451) recipients."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("refused@"):
            return "550 5.1.1 No such mailbox"
        if address.startswith("later@"):
            return "451 4.3.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.messages.append(parsed)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted"


class EphemeralController(Controller):
    """Binds port 0, then learns the port before its readiness probe connects."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def relay() -> Iterator[tuple[Relay, int]]:
    handler = Relay()
    controller = EphemeralController(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


async def test_smtp_delivers_a_plain_text_mail(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    smtp: Channel = SmtpChannel("127.0.0.1", port, "Acme Outdoor <orders@acme.example>")
    message = outbound()
    first = await smtp.send(message)
    again = await smtp.send(message)  # a retried delivery
    other = await smtp.send(outbound(key="backorder-A-1/cancel-1/notice"))
    await smtp.aclose()
    assert first == again == message_id(message.key)
    assert first.startswith("<") and first.endswith("@backorder>")
    assert other != first
    mail, retry = handler.messages[-3], handler.messages[-2]
    assert handler.envelopes[-3] == ("orders@acme.example", ["ada@example.com"])
    assert mail["From"] == "Acme Outdoor <orders@acme.example>"
    assert mail["To"] == "ada@example.com"
    assert mail["Subject"] == message.subject
    assert mail["Message-ID"] == retry["Message-ID"] == first
    assert mail["X-Backorder-Key"] == message.key
    assert mail["Date"]
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content_charset() == "utf-8"
    assert mail.get_content().replace("\r\n", "\n") == message.text  # CRLF on the wire


async def test_smtp_permanent_refusal(relay: tuple[Relay, int]) -> None:
    _, port = relay
    smtp = SmtpChannel("127.0.0.1", port, "orders@acme.example")
    with pytest.raises(DeliveryFailed, match=r"550 5\.1\.1 No such mailbox") as failed:
        await smtp.send(outbound(to="refused@example.com"))
    assert failed.value.permanent


async def test_smtp_temporary_refusal(relay: tuple[Relay, int]) -> None:
    _, port = relay
    smtp = SmtpChannel("127.0.0.1", port, "orders@acme.example")
    with pytest.raises(DeliveryFailed, match=r"451 4\.3\.0") as failed:
        await smtp.send(outbound(to="later@example.com"))
    assert not failed.value.permanent


async def test_smtp_unreachable_is_transient() -> None:
    smtp = SmtpChannel("127.0.0.1", free_port(), "orders@acme.example", timeout=2)
    with pytest.raises(DeliveryFailed) as failed:
        await smtp.send(outbound())
    assert not failed.value.permanent


def test_smtp_tls_modes_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="not both"):
        SmtpChannel("127.0.0.1", 25, "orders@acme.example", starttls=True, use_tls=True)
