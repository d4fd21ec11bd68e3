"""Connections built from the settings: the Temporal client and the PostgreSQL pool."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, TLSConfig

from config import Settings
from workflows.converter import data_converter

logger = logging.getLogger(__name__)


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


RECONNECT_WITHIN = 5.0
"""Seconds a pool keeps retrying one lost connection (after 1 s, then 2 s...) before it gives
up and starts over: it never waits more than about 2 s between attempts, however long the
database was away (psycopg_pool's default keeps one series of attempts going for 5 minutes,
their intervals doubling to 2 minutes: a database back after a minute's outage would only
be noticed a minute later)."""


async def open_pool(dsn: str, settings: Settings) -> AsyncConnectionPool:
    """The PostgreSQL pool of a worker, `backorder dev` and the sandbox gateway, ready to use.

    It survives a PostgreSQL restart or failover without handing out dead connections: each
    connection is checked (an empty query) as it leaves the pool, and the first dead one found
    makes the pool check every idle connection at once (after a restart all of them are dead,
    and one caller would otherwise try them one by one, backing off in between). Lost
    connections are opened again, never waiting more than about 2 s between attempts
    (`RECONNECT_WITHIN`), so the next caller after the database is back gets a connection."""
    sweeps: set[asyncio.Task[None]] = set()

    def sweep() -> None:
        """Check every idle connection now, in the background, once at a time."""
        if sweeps or pool.closed:
            return
        task = asyncio.create_task(pool.check(), name="backorder pool check")
        sweeps.add(task)
        task.add_done_callback(_done_sweep(sweeps))

    async def check(conn: AsyncConnection[Any]) -> None:
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            sweep()
            raise

    async def start_over(failed: AsyncConnectionPool) -> None:
        # A connection was given up after RECONNECT_WITHIN: the pool is short of it. `check()`
        # also grows the pool again (fresh attempts, from 1 s) when it is below its size.
        if not failed.closed:
            await failed.check()

    pool: AsyncConnectionPool = AsyncConnectionPool(
        dsn,
        min_size=settings.database.pool_min_size,
        max_size=settings.database.pool_max_size,
        open=False,
        name="backorder",
        check=check,
        reconnect_timeout=RECONNECT_WITHIN,
        reconnect_failed=start_over,
    )
    try:
        await pool.open(wait=True, timeout=15)
    except Exception as err:
        await pool.close()
        raise ServiceUnreachable(f"cannot connect to PostgreSQL: {err}") from None
    return pool


def _done_sweep(sweeps: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    def done(task: asyncio.Task[None]) -> None:
        sweeps.discard(task)
        if not task.cancelled() and (err := task.exception()) is not None:
            logger.warning("checking the pool's idle connections failed: %s", err)

    return done
