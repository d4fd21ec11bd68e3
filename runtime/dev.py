"""`backorder dev`: the whole service on one machine, from one command.

Starts what the settings leave empty (Temporal dev server with the Web UI, persisted to
`<data dir>/temporal.db`; PostgreSQL in `<data dir>/pg`), applies the migrations, runs the
worker in this process, and on SIGINT/SIGTERM stops everything in reverse order. State lives
in the data dir, so a second run resumes every sleeping workflow.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from config import Settings
from embedded.postgres import EmbeddedPostgres
from embedded.process import EmbeddedError, ensure_port_free
from embedded.temporal import TemporalDevServer


@dataclass(frozen=True)
class DevEndpoints:
    temporal: str
    ui_url: str | None
    postgres_dsn: str
    data_dir: Path
    payments: str
    notices: str


@contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One `backorder dev` per data dir: two would corrupt the same SQLite file and cluster."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir / "dev.lock"
    with lock_path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise EmbeddedError(
                f"{data_dir} is in use by another `backorder dev` (pid {holder}); "
                "stop it first or use another BACKORDER_DATA_DIR"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)


async def run_dev(
    settings: Settings,
    stop: asyncio.Event,
    on_ready: Callable[[DevEndpoints], None],
) -> None:
    """Bring the stack up, call `on_ready`, run the worker until `stop` is set, tear down."""
    from worker import serve, serves_sandbox  # the worker module imports everything: lazy

    data_dir = settings.data_dir.resolve()
    dev = settings.dev
    sandbox_here = serves_sandbox(settings)
    with data_dir_lock(data_dir):
        async with AsyncExitStack() as stack:
            temporal: TemporalDevServer | None = None
            postgres: EmbeddedPostgres | None = None
            if settings.embedded_temporal:
                temporal = TemporalDevServer(
                    db_file=data_dir / "temporal.db",
                    host=dev.host,
                    port=dev.temporal_port,
                    ui_port=dev.ui_port,
                    namespace=settings.temporal.namespace,
                    log_level=dev.temporal_log_level,
                )
            if settings.embedded_database:
                postgres = EmbeddedPostgres(
                    pgdata=data_dir / "pg", host=dev.host, port=dev.postgres_port
                )
            servers = [s for s in (temporal, postgres) if s is not None]
            for server in servers:  # every port first, so a conflict leaves nothing running
                server.check_ports()
            if sandbox_here:
                ensure_port_free(
                    dev.host,
                    dev.payments_port,
                    "sandbox payment gateway",
                    "BACKORDER_DEV__PAYMENTS_PORT",
                )
            for server in servers:
                stack.callback(server.stop)
                await server.start()
            dsn = postgres.dsn() if postgres else settings.database.dsn.get_secret_value()
            endpoints = DevEndpoints(
                temporal=settings.temporal_address,
                ui_url=temporal.ui_url if temporal else None,
                postgres_dsn=dsn if postgres else "(external, from BACKORDER_DATABASE__DSN)",
                data_dir=data_dir,
                payments=_payments(settings, sandbox_here),
                notices=_notices(settings),
            )
            await serve(
                settings,
                dsn,
                stop,
                on_ready=lambda: on_ready(endpoints),
                with_sandbox=sandbox_here,
            )


def _payments(settings: Settings, sandbox_here: bool) -> str:
    if settings.payments.gateway == "stripe":
        return f"Stripe at {settings.payments.stripe_base_url}"
    where = "served here" if sandbox_here else "external"
    return f"sandbox gateway {settings.sandbox_url} ({where}; faults: POST /_sandbox/faults)"


def _notices(settings: Settings) -> str:
    n = settings.notifications
    if n.channel == "webhook":
        return f"webhook {n.webhook_url} (outbox: `backorder notifications`)"
    if n.channel == "smtp":
        return f"SMTP {n.smtp_host}:{n.smtp_port} (outbox: `backorder notifications`)"
    return "kept in the outbox, not sent: `backorder notifications` lists them"


def banner(endpoints: DevEndpoints, settings: Settings, started: float) -> str:
    took = time.monotonic() - started
    lines = [
        f"backorder dev is up in {took:.1f}s (site {settings.site})",
        f"  Temporal     {endpoints.temporal}  namespace {settings.temporal.namespace}, "
        f"task queues {settings.temporal.task_queue} (orders), "
        f"{settings.temporal.allocator_queue} (allocators)",
    ]
    if endpoints.ui_url:
        lines.append(f"  Web UI       {endpoints.ui_url}")
    lines += [
        f"  PostgreSQL   {endpoints.postgres_dsn}",
        f"  Payments     {endpoints.payments}",
        f"  Notices      {endpoints.notices}",
        f"  Data dir     {endpoints.data_dir}  (logs: temporal.log, postgres.log)",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)
