"""The sandbox gateway served over real HTTP on loopback, in the test's loop, on the module's
database (`pg_pool`), with a clock the test moves. Import the fixtures into the test module."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from payments.http_gateway import HttpGateway
from payments.sandbox import SandboxGateway
from payments.sandbox_app import SandboxApp
from payments.server import serve_asgi

T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
AUTHORISATION_DAYS = 3


class Clock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass(frozen=True)
class SandboxServer:
    url: str
    app: SandboxApp
    clock: Clock

    async def arm(self, **fault: Any) -> None:
        """Arm a fault through the API, as an operator would."""
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{self.url}/_sandbox/faults", json=fault)
        assert response.status_code == 200, response.text


@contextlib.asynccontextmanager
async def served_sandbox(pool: AsyncConnectionPool, clock: Clock) -> AsyncIterator[SandboxServer]:
    """The sandbox on `pool` with `clock`, on an ephemeral loopback port, until the block ends."""
    app = SandboxApp(SandboxGateway(pool, authorisation_days=AUTHORISATION_DAYS, clock=clock))
    async with serve_asgi(app) as url:
        yield SandboxServer(url, app, clock)


@pytest.fixture
async def sandbox_server(pg_pool: AsyncConnectionPool) -> AsyncIterator[SandboxServer]:
    async with served_sandbox(pg_pool, Clock()) as server:
        yield server


@pytest.fixture
async def wall_clock_sandbox(pg_pool: AsyncConnectionPool) -> AsyncIterator[SandboxServer]:
    """The sandbox with its clock at the test's start: for callers that read the wall clock
    themselves (the CLI stamps `authorised_at`), whose payment must not have lapsed at T0."""
    async with served_sandbox(pg_pool, Clock(dt.datetime.now(dt.UTC))) as server:
        yield server


@pytest.fixture
async def http_gateway(sandbox_server: SandboxServer) -> AsyncIterator[HttpGateway]:
    async with HttpGateway(sandbox_server.url, timeout=5.0) as gateway:
        yield gateway


async def totals(dsn: str, auth: str) -> tuple[str, str, str, str]:
    """(authorised, captured, voided, refunded) of an authorisation, as stored."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT amount, captured, voided, refunded FROM payment_authorisations"
            " WHERE reference = %s",
            (auth,),
        )
        row = await cur.fetchone()
    assert row is not None, f"no authorisation {auth}"
    amount, captured, voided, refunded = (f"{v:.2f}" for v in row)
    return amount, captured, voided, refunded


async def requests_of(dsn: str, order_id: str) -> list[tuple[str, str, str | None]]:
    """(operation, amount, target) of every request the gateway stored for the order."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT operation, amount, target FROM payment_requests WHERE order_id = %s"
            " ORDER BY created_at, operation, key",
            (order_id,),
        )
        return [(op, f"{amount:.2f}", target) for op, amount, target in await cur.fetchall()]
