"""The payment gateway the settings choose, as the worker's payment activities use it."""

from __future__ import annotations

from config import Settings
from payments.http_gateway import HttpGateway
from payments.stripe import StripeGateway


def gateway_for(settings: Settings) -> HttpGateway | StripeGateway:
    """Stripe, or the sandbox over HTTP (`backorder dev`'s own unless `sandbox_url` is set).
    Both hold an HTTP connection pool: close them with `aclose()`."""
    p = settings.payments
    timeout = p.timeout.total_seconds()
    if p.gateway == "stripe":
        assert p.stripe_api_key  # the settings refuse stripe without a key
        return StripeGateway(
            p.stripe_api_key.get_secret_value(), base_url=p.stripe_base_url, timeout=timeout
        )
    return HttpGateway(settings.sandbox_url, timeout=timeout)
