"""`backorder order list`: the orders the read model holds, filtered, sorted and paginated.

It answers from PostgreSQL (`runtime.order_list`), not from Temporal: what the activities
wrote, never an eventually consistent view of it. Text output is a Rich table; in a pipe or a
file it is plain text as wide as its lines, so ids are never wrapped or cut and a script can
read it (`--json` is the form meant for scripts).
"""

from __future__ import annotations

import argparse
import asyncio
import re
from datetime import timedelta
from decimal import Decimal
from typing import get_args

import click
from pydantic import TypeAdapter, ValidationError
from rich import box
from rich.table import Table

from cli.app import command, flag, typed
from cli.common import counted, site_option, whole_number
from cli.database import database
from cli.errors import BadValue, CliError, first_reason, validated
from cli.tables import show
from config import Settings
from domain.contract import Money
from notifications.render import format_amount
from runtime.order_list import MAX_LIMIT, OrderFilter, OrderPage, OrderRow, Sort, list_orders
from workflows.messages import BackorderStatus

SKUS_SHOWN = 3
"""SKUs a row names before `+N more` (`--json` lists them all)."""

_UNITS = {"h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"(\d{1,6})([hdw])")
_MONEY = TypeAdapter(Money)
_SORTED = {"age": "oldest first", "value": "largest value first"}


# -- arguments ------------------------------------------------------------------------------------


def duration_arg(value: str) -> timedelta:
    """`12h`, `3d`, `2w`: a whole number of hours, days or weeks."""
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise BadValue(f"{value!r} is not a duration: a whole number then h, d or w (12h, 3d, 2w)")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def money_arg(value: str) -> Decimal:
    """An amount as the order contract writes one (`"100"`, `"99.50"`)."""
    try:
        return _MONEY.validate_python(value)
    except ValidationError as err:
        raise BadValue(first_reason(err)) from None


def order_filter(args: argparse.Namespace) -> OrderFilter:
    """The filter the arguments ask for; what the parsers let through is checked once more."""
    return validated(
        OrderFilter,
        "order filter",
        statuses=tuple(args.statuses or ()),
        sku=args.sku,
        waiting_on=args.waiting_on,
        site=args.site,
        tier=args.tier,
        older_than=args.older_than,
        with_exception=args.with_exception,
        value_above=args.value_above,
        sort=args.sort,
        limit=args.limit,
        page=args.page,
    )


# -- the command ----------------------------------------------------------------------------------


async def fetch(settings: Settings, wanted: OrderFilter) -> OrderPage:
    """One connection for one statement, closed before anything is printed."""
    async with database(settings) as conn:
        return await list_orders(conn, wanted)


def cmd_list(settings: Settings, args: argparse.Namespace) -> None:
    """The page as a table or JSON; a page past the last is a mistake worth saying."""
    wanted = order_filter(args)
    page = asyncio.run(fetch(settings, wanted))
    if page.total and not page.orders:
        raise CliError(
            f"--page {page.page}: past the last page ({counted(page.pages, 'page')} "
            f"of {wanted.limit}, {counted(page.total, 'order')} in all)"
        )
    if args.json:
        print(page.model_dump_json(indent=2))
    elif not page.orders:
        print("no orders match")
    else:
        show(order_table(page.orders), page_line(page, wanted))


# -- text output ----------------------------------------------------------------------------------


def order_table(orders: list[OrderRow]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("order", "number"):
        table.add_column(name, overflow="fold")  # a narrow terminal folds an id, never cuts it
    for name in ("status", "tier", "site"):
        table.add_column(name)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("age (days)", justify="right")
    table.add_column("status since (UTC)", no_wrap=True)
    table.add_column("skus")
    table.add_column("open exceptions")
    for row in orders:
        table.add_row(*cells(row))
    return table


def cells(row: OrderRow) -> tuple[str, ...]:
    return (
        row.order_id,
        row.order_number,
        row.status.value,
        row.customer_tier,
        row.site,
        format_amount(row.order_value, row.currency),
        str(row.age_days),
        f"{row.status_since:%Y-%m-%d %H:%M}",
        short_skus(row.skus),
        f"{row.open_exceptions} ({row.highest_severity.value})" if row.highest_severity else "-",
    )


def short_skus(skus: list[str]) -> str:
    """`KTP, MUG, TEA +2 more`: a row stays one line however many SKUs the order has."""
    more = len(skus) - SKUS_SHOWN
    return ", ".join(skus[:SKUS_SHOWN]) + (f" +{more} more" if more > 0 else "")


def page_line(page: OrderPage, wanted: OrderFilter) -> str:
    """`page 2 of 3: orders 51-100 of 120, oldest first`."""
    first = (page.page - 1) * wanted.limit + 1
    last = first + len(page.orders) - 1
    return (
        f"page {page.page} of {page.pages}: orders {first}-{last} of {page.total}, "
        f"{_SORTED[wanted.sort]}"
    )


def list_command() -> click.Command:
    """`order list`, for the `order` group."""
    return command(
        "list",
        cmd_list,
        "list orders from the read model: filter, sort, page",
        click.Option(
            ["--status", "statuses"],
            type=click.Choice([status.value for status in BackorderStatus]),
            multiple=True,
            help="only orders in this status (repeatable: any of them)",
        ),
        click.Option(["--sku"], metavar="SKU", help="only orders with a line of this SKU"),
        click.Option(
            ["--waiting-on"],
            metavar="SKU",
            help="only orders with units of this SKU still backordered (no stock assigned yet)",
        ),
        site_option("only orders of this site"),
        click.Option(["--tier"], metavar="TIER", help="only orders served as this customer tier"),
        click.Option(
            ["--older-than"],
            type=typed(duration_arg, "duration"),
            help="placed longer ago: 12h, 3d, 2w",
        ),
        flag("--with-exception", help="only orders with an open exception"),
        click.Option(
            ["--value-above"],
            type=typed(money_arg, "amount"),
            help="order value above, e.g. 100.00",
        ),
        click.Option(
            ["--sort"],
            type=click.Choice(get_args(Sort)),
            default="age",
            help="age: oldest first (default); value: largest first; ties by order id",
        ),
        click.Option(
            ["--limit"],
            type=typed(whole_number(1, MAX_LIMIT), "limit"),
            default=50,
            help="orders a page (default 50)",
        ),
        click.Option(
            ["--page"],
            type=typed(whole_number(1, 1_000_000), "page"),
            default=1,
            help="1 is the first",
        ),
        flag("--json", help="one JSON object: total, pages, orders"),
    )
