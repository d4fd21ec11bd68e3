"""`backorder inventory load FILE`: send a JSON-lines feed file, one event a line, in batches.

Bad lines are named and skipped; good lines are sent in file order. Sending the file again is
safe: lines already applied come back as duplicates.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError

from cli.allocator import apply_batch
from cli.common import add_site, read_text, run_with_client, site_of, whole_number
from cli.errors import CliError
from config import Settings
from domain.inventory import MAX_EVENTS_PER_BATCH, EventStatus
from runtime.inventory_file import (
    CHUNK_SIZE,
    LineOutcome,
    LineRejection,
    NumberedEvent,
    batch_of,
    chunks,
    match_outcomes,
    read_events,
    summarise,
)


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
) -> None:
    """Send `events` in file order, one batch (and one allocator pass) at a time; each
    rejection is printed as it comes back and every outcome is added to `done`."""
    for chunk in chunks(events, size):
        result = await apply_batch(client, settings, site, batch_of(chunk))
        for line in match_outcomes(chunk, result.outcomes):
            if line.outcome.status is EventStatus.REJECTED:
                print(line, file=sys.stderr)
            done.append(line)


def cmd_inventory_load(settings: Settings, args: argparse.Namespace) -> None:
    """Bad lines are named and skipped; good lines are sent in order, in batches. Sending the
    file again is safe: lines already applied come back as duplicates."""
    events, bad = read_feed_file(args.file)
    for line in bad:
        print(line, file=sys.stderr)
    done: list[LineOutcome] = []
    failure: str | None = None
    site = site_of(settings, args)
    if events:
        try:
            run_with_client(
                settings,
                lambda client: send_feed(client, settings, site, events, args.chunk_size, done),
            )
        except (CliError, RPCError) as err:
            if not done:
                raise
            failure = f"sending stopped at line {events[len(done)].line_no}: {err}"
    summary = summarise(bad, done)
    print(summary)
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


def add_load_command(isub: Any) -> None:
    """`inventory load FILE [--chunk-size N]`."""
    load = add_site(
        isub.add_parser("load", help="send a JSON-lines feed file (- = stdin), one event a line")
    )
    load.add_argument("file", metavar="FILE", type=Path)
    load.add_argument(
        "--chunk-size",
        type=whole_number(1, MAX_EVENTS_PER_BATCH),
        default=CHUNK_SIZE,
        help="events per batch",
    )
    load.set_defaults(run=cmd_inventory_load)
