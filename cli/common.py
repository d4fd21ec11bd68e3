"""What every subcommand module shares: running against Temporal, reading the user's files,
and the argument types that refuse a bad value with the reason."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

import click
from pydantic import TypeAdapter, ValidationError
from temporalio.client import Client, WorkflowExecutionDescription

from cli.app import typed
from cli.errors import BadValue, CliError, first_reason
from config import Settings
from config.settings import SiteName
from domain.order import WORKFLOW_ID_PREFIX, Identifier, workflow_id_for
from runtime.connections import connect_temporal

T = TypeVar("T")

Command = Callable[[Settings, argparse.Namespace], None]
"""What a subparser's `run` default is: `main` calls it with the settings and the arguments."""


def run_with_client(settings: Settings, go: Callable[[Client], Awaitable[T]]) -> T:
    """Connect to Temporal and run `go` with the client: the one place a command connects."""

    async def connected() -> T:
        return await go(await connect_temporal(settings))

    return asyncio.run(connected())


def with_client(fn: Callable[[Client, Settings, argparse.Namespace], Awaitable[None]]) -> Command:
    """A command that needs nothing checked before it connects."""

    def run(settings: Settings, args: argparse.Namespace) -> None:
        run_with_client(settings, lambda client: fn(client, settings, args))

    return run


def workflow_state(desc: WorkflowExecutionDescription) -> str:
    """`running`, `completed`, `failed`...: how messages name a workflow's state."""
    return desc.status.name.lower() if desc.status else "unknown"


# -- the user's files -----------------------------------------------------------------------------


def file_name(path: Path) -> str:
    """How messages name a file argument (`-` is standard input)."""
    return "standard input" if str(path) == "-" else str(path)


def read_text(path: Path) -> str:
    """A file the user named (`-`: standard input) as UTF-8 text; a file that cannot be read,
    or is not UTF-8, is a CliError naming it (and where the bad bytes are)."""
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as err:
        raise CliError(f"cannot read {file_name(path)}: {err.strerror or err}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise CliError(
            f"{file_name(path)} is not UTF-8 text: {err.reason} at byte {err.start} (line {line})"
        ) from None


# -- value parsers: a BadValue is a usage error naming the option (exit 2, `cli.app.typed`) ------

SITE = TypeAdapter(SiteName)
ORDER_ID = TypeAdapter(Identifier)


def site_arg(value: str) -> str:
    """A site name as the settings accept it."""
    try:
        return SITE.validate_python(value)
    except ValidationError:
        raise BadValue(f"{value!r}: letters, digits, _ . - only") from None


def order_id_arg(value: str) -> str:
    """Accept an order id (`A-1`) or its workflow id (`backorder-A-1`): the order id."""
    try:
        return ORDER_ID.validate_python(value.removeprefix(WORKFLOW_ID_PREFIX))
    except ValidationError as err:
        raise BadValue(f"{value!r} is not an order id: {first_reason(err)}") from None


def workflow_id_arg(value: str) -> str:
    """Accept an order id (`A-1`) or a workflow id (`backorder-A-1`): the workflow id."""
    return workflow_id_for(order_id_arg(value))


def date_arg(value: str) -> date:
    """`YYYY-MM-DD`; a date that does not exist says why (`month must be in 1..12`)."""
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        why = "" if str(err).startswith("Invalid isoformat") else f" ({err})"
        raise BadValue(f"{value!r} is not a date YYYY-MM-DD{why}") from None


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argument type for a whole number in `low..high`."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise BadValue(f"{value!r}: must be a whole number {low}..{high}")
        return number

    return parse


def site_option(help: str = "the allocator's site (default: settings)") -> click.Option:
    """The `--site` option of the inventory, check, allocator and read commands."""
    return click.Option(["--site"], type=typed(site_arg, "site"), help=help)


def site_of(settings: Settings, args: argparse.Namespace) -> str:
    """The `--site` given, else the settings' own."""
    site: str = args.site or settings.site
    return site


def counted(n: int, noun: str) -> str:
    """`1 order`, `2 orders`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
