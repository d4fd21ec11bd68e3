"""`backorder shipment load FILE`: a warehouse's JSON-lines feed of fulfilment reports, one
`report_fulfilment` update per line (`-`: standard input).

Modelled on the order batch (`cli.order_batch`): every line is checked first, without Temporal
or the database, and a bad line is named on standard error with its number and each field at
fault; the good lines are sent (none, with `--all-or-nothing` and a bad line). A warehouse
gives only shipment ids, so the orders come from the read model (`runtime.fulfilment_feed`).
Each report's outcome, in file order, then the counts go to standard output; a progress bar
shows on standard error when it is a terminal. Exit 0 only when every line is in its order's
book (applied now or before). Reports are idempotent: loading the file again is safe.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import click
import psycopg
from temporalio.client import Client, RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from cli.app import command, flag, typed
from cli.common import counted, file_name, read_text, whole_number
from cli.database import database
from cli.errors import CliError, failure_message, namespace_missing, validation_lines
from cli.tables import progress_bar
from config import Settings
from domain.order import workflow_id_for
from runtime.connections import ServiceUnreachable, connect_temporal
from runtime.fulfilment_feed import (
    REPORTS_IN_FLIGHT,
    BadLine,
    FeedSummary,
    LineResult,
    Outcome,
    ReportLine,
    Stopped,
    by_order,
    not_sent,
    orders_of,
    read_reports,
    send_reports,
)
from workflows.messages import FulfilmentAnswer

NOT_RUNNING = "NotRunning"
"""How a line names the refusal of an order whose workflow has ended (or never ran here)."""
ALREADY = "reports already applied come back unchanged"


def read_feed(path: Path) -> tuple[list[ReportLine], list[BadLine]]:
    """The file's good lines as reports and its bad lines (any line ending); a file with
    neither is a CliError, not a load of nothing."""
    reports, bad = read_reports(io.StringIO(read_text(path), newline=None))
    if not reports and not bad:
        raise CliError(
            f"{file_name(path)} holds no reports: expected one fulfilment report (a JSON "
            'object such as {"type": "delivered", ...}) a line'
        )
    return reports, bad


def bad_line_text(bad: BadLine) -> str:
    """`line 4: not a valid shipped report:` then `  carrier: Field required` per field."""
    if bad.fields is None:
        return f"line {bad.line_no}: {bad.reason}"
    whole = f"({bad.reason.removeprefix('not a valid ')})"
    return f"line {bad.line_no}: {bad.reason}:\n{validation_lines(bad.fields, whole)}"


def gone(err: RPCError) -> bool:
    """Temporal has no running workflow by that id (not: no such namespace, which every
    report would meet)."""
    return err.status is RPCStatusCode.NOT_FOUND and not namespace_missing(err)


def refused(r: ReportLine, kind: str, why: str) -> LineResult:
    return LineResult(r.line_no, r.report, Outcome.REFUSED, refusal=kind, reason=why)


async def report_line(client: Client, order_id: str, r: ReportLine) -> LineResult:
    """The `report_fulfilment` update of the order's workflow: applied, unchanged, or refused
    for this report alone (typed, or the workflow not running). A failure every report would
    meet (Temporal unreachable or not answering, the namespace missing) raises Stopped."""
    workflow_id = workflow_id_for(order_id)
    handle = client.get_workflow_handle(workflow_id)
    try:
        answer = await handle.execute_update(
            "report_fulfilment", r.report, result_type=FulfilmentAnswer
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type:
            return refused(r, cause.type, cause.message)
        return refused(r, type(cause).__name__, str(cause))
    except (RPCError, RPCTimeoutOrCancelledError) as err:
        if isinstance(err, RPCError) and gone(err):
            return refused(r, NOT_RUNNING, f"{workflow_id} is not running ({err.message})")
        why = failure_message(err)
        raise Stopped(refused(r, "no answer", why), why) from None
    return LineResult(r.line_no, r.report, Outcome.APPLIED if answer.changed else Outcome.UNCHANGED)


def send_all(
    settings: Settings, reports: Sequence[ReportLine], concurrency: int
) -> tuple[list[LineResult], str | None]:
    """Find each shipment's order (one query), then send every report, `concurrency` orders at
    a time, with a progress bar on a terminal. Temporal out of reach sends nothing, and the
    outcomes still name the unknown shipments."""

    async def go() -> tuple[list[LineResult], str | None]:
        async with database(settings) as conn:
            orders = await orders_of(conn, {r.report.shipment_id for r in reports})
        groups, unknown = by_order(reports, orders)
        if not groups:
            return unknown, None
        try:
            client = await connect_temporal(settings)
        except ServiceUnreachable as err:
            held = [not_sent(r, "Temporal out of reach") for g in groups.values() for r in g]
            return [*unknown, *held], f"nothing sent: {err}"
        with progress_bar("sending reports", sum(map(len, groups.values()))) as advance:
            sent, stopped = await send_reports(
                groups,
                lambda order_id, r: report_line(client, order_id, r),
                concurrency,
                lambda result: advance(1),
            )
        return sorted([*unknown, *sent], key=lambda x: x.line_no), stopped

    try:
        return asyncio.run(go())
    except psycopg.Error as err:
        why = " ".join(str(err).split())
        raise CliError(
            f"PostgreSQL refused the read of the shipments (nothing sent): {why}"
        ) from None


def cmd_shipment_load(settings: Settings, args: argparse.Namespace) -> None:
    """Check every line first, send the good ones (none, with --all-or-nothing and a bad
    line), then each outcome and the counts; exit 1 unless every line is applied or was."""
    reports, bad = read_feed(args.file)
    for b in bad:
        print(bad_line_text(b), file=sys.stderr)
    results: list[LineResult] = []
    stopped: str | None = None
    if bad and args.all_or_nothing:
        held = f"{counted(len(bad), 'bad line')}, --all-or-nothing"
        results = [not_sent(r, held) for r in reports]
    elif reports:
        results, stopped = send_all(settings, reports, args.concurrency or REPORTS_IN_FLIGHT)
    for result in results:
        print(result)
    summary = FeedSummary.of(results, len(bad))
    print(summary)
    if not summary.all_in:
        raise CliError(failure_text(summary, stopped, args.all_or_nothing))


def failure_text(summary: FeedSummary, stopped: str | None, all_or_nothing: bool) -> str:
    """Why the load exits 1, and what to do about it."""
    if stopped:
        unsent = counted(summary.not_sent, "report")
        return f"{stopped}\n{unsent} not sent; loading the file again is safe ({ALREADY})"
    if summary.bad and all_or_nothing:
        return (
            f"{counted(summary.bad, 'bad line')} of {summary.lines}; with --all-or-nothing "
            "nothing was sent: fix them and load the file again"
        )
    missed = summary.lines - summary.applied - summary.unchanged
    missed_of = f"{missed} of {summary.lines} lines not applied"
    return f"{missed_of}; fix them and load the file again ({ALREADY})"


def load_command() -> click.Command:
    """`shipment load FILE [--all-or-nothing] [--concurrency N]`."""
    return command(
        "load",
        cmd_shipment_load,
        "Send a warehouse's JSON-lines file of fulfilment reports (- = stdin), one report a "
        "line as `report_fulfilment` takes it. Every line is checked first; bad lines are "
        "named and not sent. Each shipment's order is read from the shipments table; reports "
        "of one order go in file order. Loading the file again is safe. A progress bar shows "
        "on a terminal (stderr).",
        click.Argument(["file"], type=click.Path(path_type=Path, allow_dash=True)),
        flag("--all-or-nothing", help="send nothing when any line is bad"),
        click.Option(
            ["--concurrency"],
            type=typed(whole_number(1, 64), "n"),
            help=f"orders sent reports at a time (default {REPORTS_IN_FLIGHT})",
        ),
        short_help="send a JSON-lines file of fulfilment reports (- = stdin), one a line",
    )
