"""`backorder inventory stock`: what an operator checks before calling a supplier.

backorder inventory stock [--sku SKU]... [--location LOC]... [--site SITE] [--json]

Stock per sku and location (on hand, reserved, free), the backordered demand waiting for each
sku, and the open purchase orders still to come, from the ledger in PostgreSQL
(`runtime.stock_view`), not from Temporal. Demand has no location (the allocator picks one when
it releases), so it is shown once per sku, on the sku's total row. Text output is Rich tables,
plain text off a terminal (`cli.tables.show`); `--json` is the form meant for scripts.

A name given with `--sku` or `--location` that the ledger has never heard of is named on stderr;
when every sku (or every location) named is unknown nothing could match, so that is a failure
(exit 1) rather than an empty answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import click
from pydantic import TypeAdapter, ValidationError
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from cli.app import command, flag, typed
from cli.common import counted, site_option
from cli.database import database
from cli.errors import BadValue, CliError, first_reason, validated
from cli.tables import show
from config import Settings
from domain.contract import Identifier
from runtime.stock_view import (
    DemandRow,
    IncomingRow,
    StockFilter,
    StockRow,
    StockView,
    UnknownNames,
    read_stock_view,
)

NAME = TypeAdapter(Identifier)
DEMAND_NOTE = (
    "backordered: units of open backordered lines per sku and site (demand has no location)"
)


def name_arg(value: str) -> str:
    """A sku or location as the ledger spells one (no blank, no surrounding spaces)."""
    try:
        return NAME.validate_python(value)
    except ValidationError as err:
        raise BadValue(f"{value!r}: {first_reason(err)}") from None


def stock_filter(args: argparse.Namespace) -> StockFilter:
    """The filter the arguments ask for (each name once, in the order given)."""
    return validated(
        StockFilter,
        "stock filter",
        skus=tuple(dict.fromkeys(args.skus or ())),
        locations=tuple(dict.fromkeys(args.locations or ())),
        site=args.site,
    )


def filter_text(wanted: StockFilter) -> str:
    """`--sku KTP --location DC`: the filter as it was typed, for messages."""
    flags = [f"--sku {s}" for s in wanted.skus] + [f"--location {loc}" for loc in wanted.locations]
    return " ".join(flags + ([f"--site {wanted.site}"] if wanted.site else []))


# -- the command ----------------------------------------------------------------------------------


async def fetch(settings: Settings, wanted: StockFilter) -> tuple[StockView, UnknownNames]:
    """One connection, one snapshot, closed before anything is printed."""
    async with database(settings) as conn:
        return await read_stock_view(conn, wanted)


def check_names(wanted: StockFilter, unknown: UnknownNames) -> None:
    """Name each unknown sku or location on stderr; a failure when all of a kind are (nothing
    could match: a typo, most likely)."""
    problems = [
        f"unknown sku {s} (no product, stock, purchase order or demand)" for s in unknown.skus
    ]
    problems += [f"unknown location {loc} (not defined)" for loc in unknown.locations]
    every_sku = bool(wanted.skus) and len(unknown.skus) == len(wanted.skus)
    every_location = bool(wanted.locations) and len(unknown.locations) == len(wanted.locations)
    if every_sku or every_location:
        raise CliError("; ".join(problems))
    for problem in problems:
        print(f"backorder: {problem}", file=sys.stderr)


def cmd_stock(settings: Settings, args: argparse.Namespace) -> None:
    """Tables or JSON; an empty answer is one line naming the filter (exit 0)."""
    wanted = stock_filter(args)
    view, unknown = asyncio.run(fetch(settings, wanted))
    check_names(wanted, unknown)
    if args.json:
        print(view.model_dump_json(indent=2))
    elif view.is_empty():
        print(nothing_text(wanted))
    else:
        show(stock_part(view), Text(""), incoming_part(view.incoming))


def nothing_text(wanted: StockFilter) -> str:
    """The one line for an empty answer, naming the filter."""
    what = "no stock, open purchase orders or backordered demand"
    given = filter_text(wanted)
    return f"{what} match {given}" if given else f"{what} yet"


# -- text output ----------------------------------------------------------------------------------


def stock_part(view: StockView) -> Group:
    """The stock table between its heading and the note on where demand is."""
    return Group(Text("stock"), stock_table(view), Text(DEMAND_NOTE))


def stock_table(view: StockView) -> Table:
    """Each sku's locations (serving order), then its total row carrying its demand."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("sku", "location"):
        table.add_column(name, overflow="fold")  # a narrow terminal folds an id, never cuts it
    for name in ("on hand", "reserved", "free", "backordered"):
        table.add_column(name, justify="right")
    table.add_column("by site")
    for sku in view.skus():
        rows = [row for row in view.stock if row.sku == sku]
        for row in rows:
            table.add_row(sku, row.location, *figures([row]))
        demand = [d for d in view.demand if d.sku == sku]
        label = "total" if rows else "no stock"
        table.add_row(sku, label, *figures(rows), *demand_cells(demand), style="bold")
    return table


def figures(rows: Sequence[StockRow]) -> tuple[str, str, str]:
    """On hand, reserved and free of the rows, summed."""
    return (
        str(sum(r.on_hand for r in rows)),
        str(sum(r.reserved for r in rows)),
        str(sum(r.free for r in rows)),
    )


def demand_cells(rows: Sequence[DemandRow]) -> tuple[str, str]:
    """`12` and `east 8, west 4`: the units waiting for the sku, and at which sites."""
    by_site = ", ".join(f"{d.site} {d.units}" for d in rows)
    return str(sum(d.units for d in rows)), by_site or "-"


def incoming_part(rows: Sequence[IncomingRow]) -> Group:
    """The purchase orders' heading and table, or one line saying there are none."""
    if not rows:
        return Group(Text("no open purchase orders"))
    return Group(Text(f"incoming purchase orders ({len(rows)} open)"), incoming_table(rows))


def incoming_table(rows: Sequence[IncomingRow]) -> Table:
    """Per sku, the earliest expected first and undated last, as the planner reads them."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("receipt", "sku", "location"):
        table.add_column(name, overflow="fold")
    for name in ("to come", "promised"):
        table.add_column(name, justify="right")
    table.add_column("expected", no_wrap=True)
    table.add_column("status")
    for row in rows:
        table.add_row(
            row.receipt_id,
            row.sku,
            row.location,
            str(row.to_come),
            promised_text(row),
            str(row.expected_date) if row.expected_date else "undated",
            receipt_status(row),
        )
    return table


def promised_text(row: IncomingRow) -> str:
    """`20 (3 orders)`, or `0`."""
    orders = f" ({counted(row.promised_orders, 'order')})" if row.promised_orders else ""
    return f"{row.promised}{orders}"


def receipt_status(row: IncomingRow) -> str:
    """`open`, or `open, 30 of 50 received` for a purchase order arriving in parts."""
    if not row.received:
        return row.status
    return f"{row.status}, {row.received} of {row.received + row.to_come} received"


def stock_command() -> click.Command:
    """`inventory stock`."""
    about = "stock, backordered demand and incoming purchase orders, from the ledger"
    return command(
        "stock",
        cmd_stock,
        about,
        click.Option(
            ["--sku", "skus"],
            type=typed(name_arg, "sku"),
            multiple=True,
            help="only this sku (repeat for several)",
        ),
        click.Option(
            ["--location", "locations"],
            type=typed(name_arg, "loc"),
            multiple=True,
            help="only stock and purchase orders at this location (repeat for several)",
        ),
        site_option("only this site's demand (stock and purchase orders serve every site)"),
        flag("--json", help="one JSON object: stock, incoming, demand"),
        short_help=about,
    )
