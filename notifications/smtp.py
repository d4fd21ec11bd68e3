"""Notices mailed as plain text through the merchant's SMTP relay.

One connection per message: notices are few and far between, and a fresh connection cannot be
left half-broken by an earlier failure. The Message-ID is derived from the notice's key, so a
retried delivery carries the same id and receivers (and we) can tell it is not a new message.
"""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from notifications.message import DeliveryFailed, OutboundMessage


def message_id(key: str) -> str:
    """The same notice key always yields the same Message-ID."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@backorder>"


class SmtpChannel:
    """Sends each message once; replies in 5xx are permanent failures, 4xx and lost
    connections transient ones."""

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        use_tls: bool = False,
        timeout: float = 30.0,
    ) -> None:
        if starttls and use_tls:
            raise ValueError("choose starttls (upgrade a plain connection) or use_tls, not both")
        self.host, self.port, self.sender = host, port, sender
        self._username, self._password = username, password
        self._starttls, self._use_tls = starttls, use_tls
        self._timeout = timeout

    def build(self, message: OutboundMessage) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = formatdate(usegmt=True)
        email["Message-ID"] = message_id(message.key)
        email["X-Backorder-Key"] = message.key
        email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to us
        email.set_content(message.text, charset="utf-8")
        return email

    async def send(self, message: OutboundMessage) -> str:
        try:
            email = self.build(message)
        except ValueError as err:  # a header with a line break, say: it will never go out
            raise DeliveryFailed(f"smtp: cannot build the message: {err}", permanent=True) from err
        where = f"smtp {self.host}:{self.port}"
        try:
            await aiosmtplib.send(
                email,
                hostname=self.host,
                port=self.port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,
                use_tls=self._use_tls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as err:
            refused = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in err.recipients)
            permanent = all(_permanent(r.code) for r in err.recipients)
            raise DeliveryFailed(
                f"{where}: recipient refused: {refused}", permanent=permanent
            ) from err
        except aiosmtplib.SMTPResponseException as err:
            raise DeliveryFailed(
                f"{where}: {type(err).__name__}: {err.code} {err.message}",
                permanent=_permanent(err.code),
            ) from err
        except aiosmtplib.SMTPNotSupported as err:  # e.g. STARTTLS or AUTH not offered
            raise DeliveryFailed(f"{where}: {err}", permanent=True) from err
        except (aiosmtplib.SMTPException, OSError) as err:  # timeouts, refused/lost connections
            raise DeliveryFailed(f"{where}: {type(err).__name__}: {err}", permanent=False) from err
        return message_id(message.key)

    async def aclose(self) -> None:
        """Nothing held open between messages."""


def _permanent(code: int) -> bool:
    return 500 <= code < 600
