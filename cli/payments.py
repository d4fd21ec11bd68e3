"""`backorder payments sandbox`: serve the sandbox gateway on its own (staging, compose).

`backorder dev` serves it in-process; a deployment without real money (a staging stack) runs
it as a service of its own against the application's PostgreSQL and points the workers'
`payments.sandbox_url` at it.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from config import Settings
from db.migrate import migrate
from payments.server import sandbox_gateway_server
from runtime.connections import open_pool


async def serve_sandbox(settings: Settings, host: str, port: int, stop: asyncio.Event) -> None:
    dsn = settings.database_dsn
    await migrate(dsn)
    pool = await open_pool(dsn, settings)
    try:
        days = settings.payments.sandbox_authorisation_days
        async with sandbox_gateway_server(pool, host, port, days) as url:
            print(f"sandbox payment gateway on {url} (authorisations hold {days} days)", flush=True)
            await stop.wait()
    finally:
        await pool.close()


def cmd_sandbox(settings: Settings, args: argparse.Namespace) -> None:
    from worker import configure_logging, stop_on_signals

    configure_logging(settings)

    async def go() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await serve_sandbox(settings, args.host, args.port or settings.dev.payments_port, stop)

    asyncio.run(go())


def add_payment_commands(sub: Any) -> None:
    about = "the sandbox payment gateway"
    p = sub.add_parser("payments", help=about, description=about)
    psub = p.add_subparsers(dest="payments_command", required=True)
    sandbox = psub.add_parser(
        "sandbox", help="serve the sandbox gateway (books in the settings' PostgreSQL)"
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sandbox.add_argument("--port", type=int, help="default: dev.payments_port (8470)")
    sandbox.set_defaults(run=cmd_sandbox)
