"""Connections built from the settings: the Temporal client and the PostgreSQL pool."""

from __future__ import annotations

from pathlib import Path

from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, TLSConfig

from config import Settings
from workflows.converter import data_converter


class ServiceUnreachable(RuntimeError):
    """A service named in the settings could not be reached; the message says which."""


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def tls_config(settings: Settings) -> TLSConfig | bool:
    t = settings.temporal
    if not t.uses_tls:
        return False
    return TLSConfig(
        server_root_ca_cert=_read(t.tls_server_ca),
        domain=t.tls_server_name,
        client_cert=_read(t.tls_client_cert),
        client_private_key=_read(t.tls_client_key),
    )


async def connect_temporal(settings: Settings) -> Client:
    """A client with the pydantic data converter (our models travel as plain JSON)."""
    t = settings.temporal
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=t.namespace,
            tls=tls_config(settings),
            api_key=t.api_key.get_secret_value() if t.api_key else None,
            data_converter=data_converter,
        )
    except Exception as err:
        hint = " (is `backorder dev` running?)" if settings.embedded_temporal else ""
        raise ServiceUnreachable(
            f"cannot reach Temporal at {settings.temporal_address}, namespace "
            f"{t.namespace}{hint}: {err}"
        ) from None


async def open_pool(dsn: str, settings: Settings) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(
        dsn,
        min_size=settings.database.pool_min_size,
        max_size=settings.database.pool_max_size,
        open=False,
        name="backorder",
    )
    try:
        await pool.open(wait=True, timeout=15)
    except Exception as err:
        await pool.close()
        raise ServiceUnreachable(f"cannot connect to PostgreSQL: {err}") from None
    return pool
