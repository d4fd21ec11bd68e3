"""The real worker with its notices going out through the settings' channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from config import Settings
from notifications.channels import channel_for
from payments.gateway import PaymentGateway
from worker import build_worker


@asynccontextmanager
async def delivering_worker(
    client: Client,
    pool: AsyncConnectionPool,
    settings: Settings,
    gateway: PaymentGateway | None = None,
) -> AsyncIterator[None]:
    """Run the worker as `serve` does with a delivery channel; close the channel after."""
    channel = channel_for(settings.notifications)
    assert channel is not None, "the settings name no delivery channel"
    try:
        async with build_worker(client, pool, settings, gateway=gateway, channel=channel):
            yield
    finally:
        await channel.aclose()
