"""`backorder inventory load FILE`: send a JSON-lines feed file, one event a line, in batches.

Bad lines are named and skipped; good lines are sent in file order. Sending the file again is
safe: lines already applied come back as duplicates.

The load ends with what the passes that applied the file released, and to which orders: one
row per order line and stock row, read back from the passes' allotment signals in PostgreSQL
(the allocator's answer carries only the totals). A load that released nothing does not touch
the database. `--json` prints the same as one JSON object, for scripts.
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
from pydantic import BaseModel
from rich import box
from rich.table import Table
from temporalio.client import Client
from temporalio.service import RPCError

from cli.allocator import apply_batch
from cli.app import command, flag, typed
from cli.common import counted, read_text, run_with_client, site_of, site_option, whole_number
from cli.database import database
from cli.errors import CliError
from cli.tables import Advance, progress_bar, show
from config import Settings
from domain.inventory import MAX_EVENTS_PER_BATCH, EventStatus
from runtime.inventory_file import (
    CHUNK_SIZE,
    LineOutcome,
    LineRejection,
    NumberedEvent,
    Release,
    batch_of,
    chunks,
    match_outcomes,
    read_events,
    releases_of,
    summarise,
)
from workflows.allocator_messages import FeedResult


def read_feed_file(path: Path) -> tuple[list[NumberedEvent], list[LineRejection]]:
    """The file's good lines as events and its bad lines (any line ending)."""
    return read_events(io.StringIO(read_text(path), newline=None))


async def send_feed(
    client: Client,
    settings: Settings,
    site: str,
    events: Sequence[NumberedEvent],
    size: int,
    done: list[LineOutcome],
    passes: dict[str, FeedResult],
    advance: Advance,
) -> None:
    """Send `events` in file order, one batch (and one allocator pass) at a time; each
    rejection is printed as it comes back, every outcome is added to `done` and each pass's
    answer to `passes`."""
    for chunk in chunks(events, size):
        result = await apply_batch(client, settings, site, batch_of(chunk))
        passes.setdefault(result.pass_id, result)
        for line in match_outcomes(chunk, result.outcomes):
            if line.outcome.status is EventStatus.REJECTED:
                print(line, file=sys.stderr)
            done.append(line)
        advance(len(chunk))


class RefusedEvent(BaseModel):
    """A line that was not applied, and why."""

    line: int
    event_id: str | None
    reason: str


class LoadReport(BaseModel):
    """What `inventory load --json` prints."""

    applied: int
    duplicate: int
    rejected: int
    lines: int
    """Lines holding an event (blank and comment lines not counted)."""
    rejections: list[RefusedEvent]
    stopped: str | None
    """Why sending stopped before the end of the file (loading it again is safe)."""
    passes: list[str]
    """The allocation passes that applied the file's events."""
    orders_released: int
    units_released: int
    """In those passes (an event of another sender in the same pass counts too)."""
    releases: list[Release] | None
    """Who got those units; null when they could not be read (see releases_unread)."""
    releases_unread: str | None = None


async def read_releases(settings: Settings, pass_ids: Sequence[str]) -> list[Release]:
    """The releases of these passes, from their allotment signals in PostgreSQL."""
    async with database(settings) as conn:
        cur = await conn.execute(
            "SELECT pass_id, order_id, signal, outcome FROM allotment_deliveries"
            " WHERE pass_id = ANY(%s)",
            (list(pass_ids),),
        )
        rows = await cur.fetchall()
    return releases_of((r["pass_id"], r["order_id"], r["signal"], r["outcome"]) for r in rows)


def releases_or_why(
    settings: Settings, passes: dict[str, FeedResult]
) -> tuple[list[Release] | None, str | None]:
    """Who got what, when the passes released anything: the releases, or why they could not be
    read (the load itself went through either way)."""
    released = [p for p, result in passes.items() if result.units_released]
    if not released:
        return [], None
    try:
        return asyncio.run(read_releases(settings, released)), None
    except CliError as err:
        return None, str(err)
    except psycopg.Error as err:
        return None, f"PostgreSQL refused the read: {' '.join(str(err).split())}"


def release_source(r: Release) -> str:
    """`DC`, or `PO-7 at DC, expected 2026-12-10` for units promised from a purchase order."""
    if r.receipt_id is None:
        return r.location
    when = f", expected {r.expected_date}" if r.expected_date else ""
    return f"{r.receipt_id} at {r.location}{when}"


def release_table(releases: Sequence[Release]) -> Table:
    """One row per order line and stock row; a note where the order had already ended."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("order", "line", "sku"):
        table.add_column(name, overflow="fold")
    table.add_column("units", justify="right")
    table.add_column("from", overflow="fold")
    gone = any(r.given_back for r in releases)
    if gone:
        table.add_column("note")
    for r in releases:
        note = ["order had ended: given back"] if r.given_back else [""]
        table.add_row(
            r.order_id, r.line_id, r.sku, str(r.units), release_source(r), *(note if gone else [])
        )
    return table


def print_releases(report: LoadReport) -> None:
    """`released 4 units to 2 orders:` and who got them; nothing when nothing was released."""
    if not report.units_released:
        return
    totals = (
        f"released {counted(report.units_released, 'unit')} to "
        f"{counted(report.orders_released, 'order')}"
    )
    if report.releases is None:
        print(totals)
        print(
            f"backorder: which orders got them could not be read: {report.releases_unread}",
            file=sys.stderr,
        )
        return
    print(f"{totals}:")
    show(release_table(report.releases))


def cmd_inventory_load(settings: Settings, args: argparse.Namespace) -> None:
    """Bad lines are named and skipped; good lines are sent in order, in batches. Sending the
    file again is safe: lines already applied come back as duplicates."""
    events, bad = read_feed_file(args.file)
    for line in bad:
        print(line, file=sys.stderr)
    done: list[LineOutcome] = []
    passes: dict[str, FeedResult] = {}
    failure: str | None = None
    site = site_of(settings, args)
    if events:
        try:
            with progress_bar("sending events", len(events)) as advance:
                run_with_client(
                    settings,
                    lambda client: send_feed(
                        client, settings, site, events, args.chunk_size, done, passes, advance
                    ),
                )
        except (CliError, RPCError) as err:
            if not done:
                raise
            failure = f"sending stopped at line {events[len(done)].line_no}: {err}"
    summary = summarise(bad, done)
    releases, unread = releases_or_why(settings, passes)
    report = LoadReport(
        applied=summary.applied,
        duplicate=summary.duplicate,
        rejected=summary.rejected,
        lines=summary.lines,
        rejections=refusals(bad, done),
        stopped=failure,
        passes=list(passes),
        orders_released=sum(p.orders_released for p in passes.values()),
        units_released=sum(p.units_released for p in passes.values()),
        releases=releases,
        releases_unread=unread,
    )
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(summary)
        print_releases(report)
    if failure:
        raise CliError(
            f"{failure}\nthe lines from there on were not sent; loading the file "
            "again is safe (applied lines come back as duplicates)"
        )
    if summary.rejected:
        raise CliError(
            f"{summary.rejected} of {summary.lines} lines rejected; fix them and load the file "
            "again (applied lines come back as duplicates)"
        )


def refusals(bad: Sequence[LineRejection], done: Sequence[LineOutcome]) -> list[RefusedEvent]:
    """Every line not applied, in file order: refused before sending, or by the allocator."""
    refused = [RefusedEvent(line=b.line_no, event_id=b.event_id, reason=b.reason) for b in bad]
    refused += [
        RefusedEvent(line=line.line_no, event_id=line.event_id, reason=line.detail)
        for line in done
        if line.outcome.status is EventStatus.REJECTED
    ]
    return sorted(refused, key=lambda r: r.line)


def load_command() -> click.Command:
    """`inventory load FILE [--chunk-size N] [--json]`."""
    return command(
        "load",
        cmd_inventory_load,
        "Send a JSON-lines feed file (- = stdin), one event a line, in batches. Bad lines are "
        "named and skipped; sending the file again is safe. Ends with what was released to "
        "which orders. A progress bar shows on a terminal (stderr).",
        click.Argument(["file"], type=click.Path(path_type=Path, allow_dash=True)),
        site_option(),
        click.Option(
            ["--chunk-size"],
            type=typed(whole_number(1, MAX_EVENTS_PER_BATCH), "n"),
            default=CHUNK_SIZE,
            show_default=True,
            help="events per batch",
        ),
        flag("--json", help="print the outcome and the releases as JSON"),
        short_help="send a JSON-lines feed file (- = stdin), one event a line",
    )
