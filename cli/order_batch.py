"""`backorder order start FILE.jsonl`: start one order workflow per line of a JSON-lines file.

A file ending in `.jsonl` or `.ndjson`, or any file (`-`: standard input) with `--batch`, holds
one order per line in the contract of `order start FILE.json`. Every line is checked first, as
the single start checks its file; a bad line is named with its number and each problem
(`line 7: lines.0.quantity: Input should be greater than 0`). Blank lines and `#` comments are
skipped; an order id may occur once per file.

**The batch rule: good lines start, bad lines are refused.** A batch is many customers'
independent orders, usually an export of the storefront. One order with a bad field should not
hold back the thousands that are fine: each waits in the first-come-first-served queue only
once its workflow exists, and stock arriving meanwhile goes to the orders already waiting.
`inventory load` treats a feed file the same way. The recovery is the same for either rule:
fix the bad lines and start the whole file again. Starting is idempotent, so the orders
started the first time come back as `already started` (never a second workflow) and only the
fixed lines start. (An order id that has a workflow is `already started` whatever its line
says now: an order is accepted once, and changes to it go through `order cancel` and the
other messages.) An integrator whose batch must land whole (orders that only make sense
together) gives `--all-or-nothing`: one bad line and nothing is started. That covers what can
be checked beforehand; a start Temporal refuses midway cannot take back the ones before it.

Starts run `--concurrency` at a time (8). A progress bar shows on standard error when it is a
terminal. The summary (counts, then the refused lines and why) goes to standard output; with
`--json`, as one JSON object. Exit 0 when every order has its workflow, started now or
already; 1 otherwise.
"""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime
from pathlib import Path

import click
from rich import box
from rich.table import Table
from rich.text import Text
from temporalio.client import Client, RPCTimeoutOrCancelledError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from cli.app import flag, typed
from cli.common import counted, file_name, read_text, run_with_client, whole_number
from cli.errors import CliError, failure_message
from cli.tables import progress_bar, show
from config import Settings
from runtime.connections import ServiceUnreachable
from runtime.order_batch import (
    STARTS_IN_FLIGHT,
    BatchSummary,
    LineResult,
    NumberedOrder,
    Outcome,
    RefusedLine,
    Stopped,
    not_sent,
    read_orders,
    refused_result,
    start_backorder,
    start_orders,
)

BATCH_SUFFIXES = (".jsonl", ".ndjson")
LINE_FAULTS = (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.FAILED_PRECONDITION)
"""Temporal refusing one start for what is in it: that line is refused, the others go on.
Any other refusal (unreachable, timed out, no such namespace, not allowed) would refuse every
line: starting stops."""


def is_batch(args: argparse.Namespace) -> bool:
    """`--batch`, or a file named `.jsonl` / `.ndjson`."""
    return bool(args.batch) or Path(args.file).suffix.lower() in BATCH_SUFFIXES


def single_only(args: argparse.Namespace) -> None:
    """The batch options make no sense for one order: say so rather than ignore them."""
    given = [
        flag
        for flag, value in (
            ("--json", args.json),
            ("--all-or-nothing", args.all_or_nothing),
            ("--concurrency", args.concurrency is not None),
        )
        if value
    ]
    if given:
        raise CliError(
            f"{', '.join(given)}: only for a JSON-lines batch (a .jsonl or .ndjson file, or "
            f"--batch); {file_name(args.file)} is read as one order"
        )


def read_batch(path: Path) -> tuple[list[NumberedOrder], list[RefusedLine]]:
    """The file's good lines as orders and its bad lines (any line ending)."""
    return read_orders(io.StringIO(read_text(path), newline=None), datetime.now(UTC))


async def start_line(client: Client, settings: Settings, n: NumberedOrder) -> LineResult:
    """Start one line's order: started, already started, or refused by Temporal for this
    order alone. A refusal every line would get raises Stopped."""
    order = n.order
    line = LineResult(
        line=n.line_no,
        order_id=order.order_id,
        outcome=Outcome.STARTED,
        workflow_id=order.workflow_id,
    )
    try:
        handle = await start_backorder(client, settings, order)
    except WorkflowAlreadyStartedError as err:
        return line.model_copy(update={"outcome": Outcome.ALREADY_STARTED, "run_id": err.run_id})
    except (RPCError, RPCTimeoutOrCancelledError) as err:
        why = failure_message(err)
        refused = line.model_copy(update={"outcome": Outcome.REFUSED, "reasons": (why,)})
        if isinstance(err, RPCError) and err.status in LINE_FAULTS:
            return refused
        raise Stopped(refused, why) from None
    return line.model_copy(update={"run_id": handle.result_run_id})


def start_all(
    settings: Settings, orders: list[NumberedOrder], concurrency: int
) -> tuple[list[LineResult], str | None]:
    """Connect and start every order, a few at a time, with a progress bar on a terminal.
    Temporal out of reach starts nothing, and the summary still names the bad lines."""
    try:
        with progress_bar("starting orders", len(orders)) as advance:
            return run_with_client(
                settings,
                lambda client: start_orders(
                    orders,
                    lambda n: start_line(client, settings, n),
                    concurrency,
                    lambda r: advance(1),
                ),
            )
    except ServiceUnreachable as err:
        return [not_sent(n, f"not sent: {err}") for n in orders], f"nothing started: {err}"


def cmd_order_batch(settings: Settings, args: argparse.Namespace) -> None:
    """Check every line first (no Temporal needed for that), start the good ones (none, with
    --all-or-nothing and a bad line), then the summary; exit 1 unless every order has its
    workflow."""
    orders, bad = read_batch(args.file)
    results = [refused_result(b) for b in bad]
    stopped: str | None = None
    if bad and args.all_or_nothing:
        held = f"not sent: {counted(len(bad), 'line')} refused and --all-or-nothing given"
        results += [not_sent(n, held) for n in orders]
    elif orders:
        started, stopped = start_all(settings, orders, args.concurrency or STARTS_IN_FLIGHT)
        results += started
    summary = BatchSummary.of(file_name(args.file), results, stopped)
    if args.json:
        print(summary.model_dump_json(indent=2))
    else:
        show(*summary_text(summary))
    if not summary.all_in:
        raise CliError(failure_text(summary, args.all_or_nothing))


def summary_text(summary: BatchSummary) -> list[Table | Text]:
    """The counts, then each refused line's problems, one row each."""
    counts = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    counts.add_column("outcome")
    counts.add_column("orders", justify="right")
    rows = [
        ("started", summary.started),
        ("already started", summary.already_started),
        ("refused", summary.refused),
    ]
    for name, n in rows + ([("not sent", summary.not_sent)] if summary.not_sent else []):
        counts.add_row(name, str(n))
    refused = [r for r in summary.results if r.outcome is Outcome.REFUSED]
    if not refused:
        return [counts]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("line", justify="right")
    table.add_column("order", overflow="fold")
    table.add_column("why refused", overflow="fold")
    for r in refused:
        for i, reason in enumerate(r.reasons):
            first = i == 0
            table.add_row(str(r.line) if first else "", (r.order_id or "") if first else "", reason)
    return [counts, Text(""), table]


def failure_text(summary: BatchSummary, all_or_nothing: bool) -> str:
    """Why the batch exits 1, and what to do about it."""
    again = "orders already started come back as already started, never twice"
    if summary.stopped:
        unsent = counted(summary.not_sent, "line")
        return f"{summary.stopped}\n{unsent} not sent; starting the file again is safe ({again})"
    refused = f"{summary.refused} of {summary.lines} lines refused"
    if all_or_nothing:
        return f"{refused}; with --all-or-nothing nothing was started: fix them and start again"
    return f"{refused}; fix them and start the file again ({again})"


def batch_options() -> list[click.Option]:
    """`order start`'s options for a JSON-lines batch."""
    return [
        flag(
            "--batch",
            help="read FILE as JSON lines, one order a line (implied by .jsonl and .ndjson)",
        ),
        flag(
            "--all-or-nothing",
            help="start nothing when any line is refused (default: start the good lines)",
        ),
        click.Option(
            ["--concurrency"],
            type=typed(whole_number(1, 64), "n"),
            help=f"starts in flight at a time (default {STARTS_IN_FLIGHT})",
        ),
        flag("--json", help="print the batch's summary as JSON"),
    ]
