"""Running and preparing the service: `backorder dev`, `db migrate`, `setup temporal`."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta
from pathlib import Path

import click
from temporalio.client import Client

from cli.app import command, group, typed
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


def service_commands() -> list[click.Command]:
    """`dev` (its port and directory flags are settings: `cli.app.settings_for`), `db migrate`
    and `setup temporal`."""
    port = click.INT  # the settings check the range (dev.*), as from any other source
    dev = command(
        "dev",
        cmd_dev,
        "run Temporal, PostgreSQL and the worker locally",
        click.Option(
            ["--data-dir"],
            type=click.Path(path_type=Path),
            help="state directory (default .backorder)",
        ),
        click.Option(["--temporal-port"], type=port, help="the Temporal dev server's port"),
        click.Option(["--ui-port"], type=port, help="the Temporal Web UI's port"),
        click.Option(["--postgres-port"], type=port, help="the embedded PostgreSQL's port"),
        click.Option(["--payments-port"], type=port, help="the sandbox payment gateway's port"),
    )
    db = group("db", "database maintenance")
    db.add_command(command("migrate", cmd_migrate, "apply schema migrations"))
    setup = group("setup", "prepare a self-hosted Temporal cluster")
    setup.add_command(
        command(
            "temporal",
            with_client(setup_temporal),
            "create the namespace and search attributes",
            click.Option(
                ["--retention-days"],
                type=typed(whole_number(1, MAX_RETENTION_DAYS), "days"),
                default=30,
                show_default=True,
                help="closed-workflow retention",
            ),
        )
    )
    return [dev, db, setup]
