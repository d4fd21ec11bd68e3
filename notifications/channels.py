"""The delivery channel the settings choose: none (the outbox only), webhook or SMTP."""

from __future__ import annotations

from config.settings import NotificationSettings
from notifications.message import Channel
from notifications.smtp import SmtpChannel
from notifications.webhook import WebhookChannel


def channel_for(settings: NotificationSettings) -> Channel | None:
    """None for `outbox`: notices are rendered and kept, and nothing is sent."""
    timeout = settings.timeout.total_seconds()
    if settings.channel == "webhook":
        return WebhookChannel(
            settings.webhook_url, settings.webhook_secret.get_secret_value(), timeout=timeout
        )
    if settings.channel == "smtp":
        return SmtpChannel(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_sender,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls,
            use_tls=settings.smtp_tls,
            timeout=timeout,
        )
    return None
