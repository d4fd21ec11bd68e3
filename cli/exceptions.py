"""`backorder exceptions`: the operators' exception queue, from PostgreSQL.

backorder exceptions [--severity S]... [--kind K]... [--order ID] [--site S] [--all] [--json]
backorder exceptions show ID            every field, the full detail, the order as known
backorder exceptions resolve ID... --note TEXT [--by WHO]

ID is the number the list shows, or the exception's key.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from psycopg import IsolationLevel
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from activities.contracts import Severity
from cli.app import command, flag, group, typed
from cli.common import counted, order_id_arg, site_arg, whole_number
from cli.database import database
from cli.errors import BadValue, CliError, validated
from config import Settings
from runtime.connections import ServiceUnreachable, connect_temporal
from runtime.exception_news import tell_orders
from runtime.exception_queue import (
    MAX_LIMIT,
    SEVERITY_ORDER,
    ExceptionFilter,
    ExceptionRef,
    QueueCounts,
    QueuedException,
    Resolution,
    ResolveOutcome,
    count_exceptions,
    exception_ref,
    find_exception,
    list_exceptions,
    resolve_exception,
)

SEVERITY_STYLE = {Severity.HIGH: "bold red", Severity.MEDIUM: "yellow", Severity.LOW: "dim"}
"""How a terminal shows each severity (a pipe gets plain text)."""


def ref_arg(value: str) -> ExceptionRef:
    """An exception's number or key; a number past the column's range is a BadValue."""
    try:
        return exception_ref(value)
    except ValueError as err:
        raise BadValue(str(err)) from None


def named(ref: ExceptionRef) -> str:
    """How messages name an exception the user asked for."""
    return f"exception {ref}" if isinstance(ref, int) else f"exception with key {ref}"


def when(t: datetime) -> str:
    """A time as every exceptions command prints it (UTC, to the second)."""
    return f"{t:%Y-%m-%d %H:%M:%S} UTC"


def age(since: datetime, now: datetime) -> str:
    """`3d 4h`, `5h 12m`, `7m`, `40s`: how long an exception has waited, to two units."""
    seconds = max(0, int((now - since) / timedelta(seconds=1)))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


def dumped(value: Any) -> None:
    """`--json`: the rows as the models serialise them."""
    print(json.dumps(value, indent=2))


# -- list -----------------------------------------------------------------------------------------


def exception_filter(args: argparse.Namespace) -> ExceptionFilter:
    """The listing's filter from the command line."""
    return validated(
        ExceptionFilter,
        "exceptions filter",
        severities=tuple(args.severity or ()),
        kinds=tuple(args.kind or ()),
        order_id=args.order,
        site=args.site,
        include_resolved=args.all,
        limit=args.limit,
    )


async def read_queue(
    settings: Settings, wanted: ExceptionFilter
) -> tuple[list[QueuedException], QueueCounts]:
    """The listed exceptions and how many match in all, from one snapshot (so the summary
    counts what the table shows)."""
    async with database(settings) as conn:
        await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
        return await list_exceptions(conn, wanted), await count_exceptions(conn, wanted)


def queue_table(rows: Sequence[QueuedException], now: datetime) -> Table:
    """One line per exception; only the detail gives way to the terminal's width (ids, kinds
    and orders are never cut; the full detail is in `show`)."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=True)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("kind", overflow="fold")
    table.add_column("order", overflow="fold")
    table.add_column("site", overflow="fold")
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("detail", no_wrap=True, overflow="ellipsis", ratio=1)
    for row in rows:
        severity = Text(row.severity.value, style=SEVERITY_STYLE[row.severity])
        if not row.is_open:
            severity.append(" (resolved)", style="dim")
        cells = (row.kind, row.order_id, row.site or "-", age(row.raised_at, now))
        detail = " ".join(row.detail.split())  # one line, whatever the row holds
        table.add_row(Text(str(row.id)), severity, *map(Text, cells), Text(detail))
    return table


def summary(counts: QueueCounts, wanted: ExceptionFilter, shown: int) -> str:
    """`3 open: 1 high, 2 medium, 0 low`, and what `--limit` left out."""
    severities = ", ".join(f"{counts.by_severity.get(s, 0)} {s.value}" for s in SEVERITY_ORDER)
    line = f"{counts.open} open: {severities}"
    if wanted.include_resolved:
        line = f"{counted(counts.total, 'exception')}: {severities}; {counts.open} open"
        line += f", {counts.resolved} resolved"
    if shown < counts.total:
        line += f" (showing the first {shown}; --limit N for more)"
    return line


def nothing_listed(wanted: ExceptionFilter) -> str:
    """`no open exceptions`, or `no exceptions match` when filtered."""
    filtered = wanted.model_dump(exclude_defaults=True, exclude={"include_resolved", "limit"})
    return f"no {'' if wanted.include_resolved else 'open '}exceptions" + (
        " match" if filtered else ""
    )


def cmd_list(settings: Settings, args: argparse.Namespace) -> None:
    wanted = exception_filter(args)
    rows, counts = asyncio.run(read_queue(settings, wanted))
    if args.json:
        dumped([row.model_dump(mode="json") for row in rows])
        return
    if not rows:
        print(nothing_listed(wanted))
        return
    console = Console(highlight=False)
    console.print(queue_table(rows, datetime.now(UTC)))
    console.print(Text(summary(counts, wanted, len(rows))))


# -- show -----------------------------------------------------------------------------------------


async def one_exception(settings: Settings, ref: ExceptionRef) -> QueuedException:
    """The exception named, or a CliError saying there is none."""
    async with database(settings) as conn:
        found = await find_exception(conn, ref)
    if found is None:
        raise CliError(f"no {named(ref)}")
    return found


def order_line(e: QueuedException) -> str:
    """The order as the read model knows it."""
    if e.order_number is None:
        return f"{e.order_id} (not in the read model)"
    return f"{e.order_id} (order #{e.order_number}, {e.order_status}, site {e.site})"


def resolution_text(e: QueuedException) -> str:
    """`2026-12-01 09:12:00 UTC by ann: refunded by phone`; `no` while open."""
    if e.resolved_at is None:
        return "no"
    return f"{when(e.resolved_at)} by {e.resolved_by}: {e.resolution}"


def cmd_show(settings: Settings, args: argparse.Namespace) -> None:
    e = asyncio.run(one_exception(settings, args.ref))
    if args.json:
        dumped(e.model_dump(mode="json"))
        return
    state = "open" if e.is_open else "resolved"
    print(f"exception {e.id}: {e.severity.value}, {state}")
    fields = {
        "kind": e.kind,
        "order": order_line(e),
        "raised": f"{when(e.raised_at)} ({age(e.raised_at, datetime.now(UTC))} ago)",
        "resolved": resolution_text(e),
        "key": e.key,
    }
    for name, value in fields.items():
        print(f"  {name + ':':<10}{value}")
    print("  detail:")
    for line in e.detail.splitlines() or [""]:
        print(f"    {line}")


# -- resolve --------------------------------------------------------------------------------------


def resolver(args: argparse.Namespace) -> str:
    """`--by`, else who is logged in; a user the system cannot name must say who they are."""
    if args.by is not None:
        return str(args.by)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise CliError("cannot tell who you are: say it with --by WHO") from None


async def resolve_all(
    settings: Settings, refs: Sequence[ExceptionRef], resolution: Resolution
) -> list[ResolveOutcome]:
    """Resolve each in turn (each commits on its own); then tell their orders' workflows what
    is still open, for the Temporal UI (a Temporal that cannot be reached is a warning: the
    resolutions stand, and the orders' next news corrects their attribute)."""
    async with database(settings) as conn:
        outcomes = [await resolve_exception(conn, ref, resolution) for ref in refs]
        orders = [o.exception.order_id for o in outcomes if o.resolved and o.exception]
        if orders:
            await tell_workflows(settings, conn, orders)
    return outcomes


async def tell_workflows(settings: Settings, conn: Any, order_ids: Sequence[str]) -> None:
    try:
        client = await connect_temporal(settings)
        untold = await tell_orders(client, conn, order_ids)
    except ServiceUnreachable as err:
        untold, why = list(order_ids), str(err)
    else:
        why = "their workflows did not take the news"
    if untold:
        print(
            f"backorder: warning: resolved, but the Temporal UI's OpenExceptions of "
            f"{', '.join(untold)} is not updated ({why}); it is at the order's next change",
            file=sys.stderr,
        )


def outcome_text(outcome: ResolveOutcome) -> str:
    """One line per exception named: resolved now, resolved before, or unknown."""
    e = outcome.exception
    if e is None:
        return f"no {named(outcome.ref)}"
    if outcome.resolved:
        return f"resolved {e.id}: {e.kind} ({e.severity.value}) on order {e.order_id}"
    return f"exception {e.id} was already resolved {resolution_text(e)} (left as it was)"


def cmd_resolve(settings: Settings, args: argparse.Namespace) -> None:
    resolution = validated(Resolution, "resolution", by=resolver(args), note=args.note)
    outcomes = asyncio.run(resolve_all(settings, args.refs, resolution))
    failed = [o for o in outcomes if not o.resolved]
    for outcome in outcomes:
        if outcome.resolved:
            print(outcome_text(outcome))
        elif len(outcomes) > 1:
            print(f"backorder: {outcome_text(outcome)}", file=sys.stderr)
    if len(outcomes) == 1 and failed:
        raise CliError(outcome_text(failed[0]))
    if failed:
        raise CliError(f"{len(failed)} of {len(outcomes)} not resolved")


# -- the commands ---------------------------------------------------------------------------------


def list_options() -> list[click.Parameter]:
    """The filters of `backorder exceptions`."""
    return [
        click.Option(
            ["--severity"],
            type=click.Choice([s.value for s in SEVERITY_ORDER]),
            multiple=True,
            help="only this severity (repeat for several)",
        ),
        click.Option(
            ["--kind"],
            multiple=True,
            metavar="K",
            help="only this kind (repeat): ftc_deadline, payment_capture_failed, ...",
        ),
        click.Option(
            ["--order"],
            type=typed(order_id_arg, "order_id"),
            metavar="ID",
            help="only this order's exceptions",
        ),
        click.Option(
            ["--site"],
            type=typed(site_arg, "site"),
            metavar="S",
            help="only orders of this site (the read model's)",
        ),
        flag("--all", help="resolved exceptions too (after the open)"),
        click.Option(
            ["--limit"],
            type=typed(whole_number(1, MAX_LIMIT), "n"),
            default=50,
            metavar="N",
            help="the first N, worst and oldest first (default 50)",
        ),
        flag("--json", help="machine-readable rows"),
    ]


def exception_commands() -> list[click.Command]:
    """`exceptions` (lists), `exceptions show` and `exceptions resolve`."""
    ref = typed(ref_arg, "id")
    exceptions = group(
        "exceptions",
        "the operators' exception queue: list, show, resolve",
        *list_options(),
        handler=cmd_list,
    )
    exceptions.add_command(
        command(
            "show",
            cmd_show,
            "every field of one exception, the full detail",
            click.Argument(["ref"], type=ref, metavar="ID", help="its number, or its key"),
            flag("--json", help="machine-readable"),
        )
    )
    exceptions.add_command(
        command(
            "resolve",
            cmd_resolve,
            "mark exceptions resolved, saying why (kept)",
            click.Argument(
                ["refs"], type=ref, nargs=-1, required=True, metavar="ID...", help="number or key"
            ),
            click.Option(["--note"], required=True, metavar="TEXT", help="why it is resolved"),
            click.Option(
                ["--by"], metavar="WHO", help="who resolved it (default: the logged-in user)"
            ),
        )
    )
    return [exceptions]
