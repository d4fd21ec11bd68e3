"""Running and preparing the service: `backorder dev`, `db migrate`, `setup temporal`."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client

from cli.common import whole_number, with_client
from cli.errors import CliError
from config import Settings
from db.migrate import migrate
from runtime.temporal_setup import setup_namespace
from workflows.search_attributes import SEARCH_ATTRIBUTE_TYPES

MAX_RETENTION_DAYS = 36_500
"""A century: more than any cluster keeps, and far below what a duration can hold."""


def cmd_dev(settings: Settings, args: argparse.Namespace) -> None:
    """Everything in one process until Ctrl-C (imported late: only `dev` needs it)."""
    from runtime.dev import banner, run_dev
    from worker import configure_logging, stop_on_signals

    started = time.monotonic()
    configure_logging(settings)

    async def go() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await run_dev(settings, stop, lambda ep: print(banner(ep, settings, started), flush=True))
        print("backorder dev stopped", flush=True)

    print(f"starting backorder dev in {settings.data_dir.resolve()} ...", flush=True)
    asyncio.run(go())


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> None:
    """Migrate an external database; the embedded one is `backorder dev`'s to migrate."""
    if settings.embedded_database:
        raise CliError("set BACKORDER_DATABASE__DSN (`backorder dev` migrates its own database)")
    applied = asyncio.run(migrate(settings.database.dsn.get_secret_value()))
    print(f"applied {', '.join(applied)}" if applied else "schema is up to date")


async def setup_temporal(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    """Idempotent: run it at every deploy."""
    namespace = settings.temporal.namespace
    created = await setup_namespace(client, namespace, timedelta(days=args.retention_days))
    print(
        f"namespace {namespace} {'created' if created else 'exists'}; search attributes "
        f"registered: {', '.join(SEARCH_ATTRIBUTE_TYPES)}"
    )


def add_dev_command(sub: Any) -> None:
    """`dev`; its port and directory flags are settings (`starter.flag_overrides`)."""
    dev = sub.add_parser("dev", help="run Temporal, PostgreSQL and the worker locally")
    dev.add_argument("--data-dir", type=Path, help="state directory (default .backorder)")
    dev.add_argument("--temporal-port", type=int)
    dev.add_argument("--ui-port", type=int)
    dev.add_argument("--postgres-port", type=int)
    dev.add_argument("--payments-port", type=int, help="the sandbox payment gateway's port")
    dev.set_defaults(run=cmd_dev)


def add_maintenance_commands(sub: Any) -> None:
    """`db migrate` and `setup temporal`."""
    db = sub.add_parser("db", help="database maintenance")
    dsub = db.add_subparsers(dest="db_command", required=True)
    dsub.add_parser("migrate", help="apply schema migrations").set_defaults(run=cmd_migrate)

    setup = sub.add_parser("setup", help="prepare a self-hosted Temporal cluster")
    ssub = setup.add_subparsers(dest="setup_command", required=True)
    temporal = ssub.add_parser("temporal", help="create the namespace and search attributes")
    temporal.add_argument(
        "--retention-days",
        type=whole_number(1, MAX_RETENTION_DAYS),
        default=30,
        help="closed-workflow retention",
    )
    temporal.set_defaults(run=with_client(setup_temporal))
