"""Serve an ASGI app under uvicorn inside the running asyncio loop (for `backorder dev`, tests).

The socket is bound here, before uvicorn starts, so a port in use is an `OSError` to the caller
(uvicorn would `sys.exit`) and port 0 gets an ephemeral port whose number we can hand out.
Signals are left to the host process: uvicorn would otherwise take SIGINT/SIGTERM over.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

import uvicorn
from psycopg_pool import AsyncConnectionPool

from payments.gateway import utc_now
from payments.sandbox import SandboxGateway
from payments.sandbox_app import SandboxApp


class _EmbeddedServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Callable[..., Any],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    access_log: bool = False,
    log_level: str = "warning",
    graceful_seconds: int = 5,
) -> AsyncIterator[str]:
    """Serve `app` until the block exits; yields its base URL (`http://host:port`). Requests
    still running `graceful_seconds` after the exit are cancelled. No lifespan events."""
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,  # the host process owns logging; only levels are set
        log_level=log_level,
        access_log=access_log,
        lifespan="off",
        timeout_graceful_shutdown=graceful_seconds,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn {host}:{bound}")
    try:
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if server.started:
            yield f"http://{f'[{host}]' if ':' in host else host}:{bound}"
    finally:
        server.should_exit = True
        await asyncio.wait([task])
        sock.close()
    task.result()  # raises what stopped the server, if anything did
    if not server.started:
        raise RuntimeError(f"the server on {host}:{bound} stopped while starting")


@contextlib.asynccontextmanager
async def sandbox_gateway_server(
    pool: AsyncConnectionPool,
    host: str = "127.0.0.1",
    port: int = 0,
    authorisation_days: int = 7,
    *,
    clock: Callable[[], dt.datetime] = utc_now,
) -> AsyncIterator[str]:
    """The sandbox gateway on `pool`, served over HTTP; yields its base URL."""
    gateway = SandboxGateway(pool, authorisation_days=authorisation_days, clock=clock)
    async with serve_asgi(SandboxApp(gateway), host, port) as url:
        yield url


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
