"""`backorder report`: the seeds' backorder KPIs for a site and a period, from the read model.

backorder report [--since DATE] [--until DATE] [--days N] [--site S] [--by-sku]
                 [--json | --html FILE]

It answers from PostgreSQL (`runtime.report`), never from Temporal's visibility. The period is
whole UTC days: the last 30 up to today unless told (`--days N` counts back from `--until`, or
forward from `--since`). Text output is Rich tables (plain text off a terminal, see
`cli.tables.show`); `--json` is the whole report for scripts; `--html FILE` writes one
self-contained page with charts, which needs no network to open.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from cli.app import command, flag, one_of, typed
from cli.common import date_arg, site_of, site_option, whole_number
from cli.database import database
from cli.errors import CliError, validated
from cli.tables import show
from config import Settings
from runtime.report import Report, ReportRefused, ReportRequest, read_report
from runtime.report_rows import (
    SKU_COLUMNS,
    KpiRow,
    notes,
    now_rows,
    period_rows,
    sku_cells,
)

DEFAULT_DAYS = 30
MAX_DAYS = 3660
"""Ten years: a longer period is a typo, not a question."""


# -- arguments ------------------------------------------------------------------------------------


def period(
    since: date | None, until: date | None, days: int | None, today: date
) -> tuple[date, date]:
    """The first and last day the flags ask for: `--days` counts from whichever end is given
    (back from today when neither is); a period that ends before it starts is refused."""
    if days is not None and since is not None and until is not None:
        raise CliError("--since, --until and --days: give at most two of them")
    if since is None:
        until = until or today
        since = until - timedelta(days=(days or DEFAULT_DAYS) - 1)
    elif until is None:
        until = since + timedelta(days=days - 1) if days is not None else today
    if since > until:
        raise CliError(f"--since {since} is after --until {until}" + _today(until, today))
    return since, until


def _today(until: date, today: date) -> str:
    return " (today, UTC)" if until == today else ""


def request(settings: Settings, args: argparse.Namespace, today: date) -> ReportRequest:
    since, until = period(args.since, args.until, args.days, today)
    wanted_by_sku = args.by_sku or args.html is not None  # the page charts value per sku
    return validated(
        ReportRequest,
        "report",
        site=site_of(settings, args),
        since=since,
        until=until,
        by_sku=wanted_by_sku,
        orders_placed=args.orders_placed,
    )


# -- the command ----------------------------------------------------------------------------------


async def fetch(settings: Settings, wanted: ReportRequest) -> Report:
    """One connection, one snapshot, closed before anything is printed."""
    async with database(settings) as conn:
        try:
            return await read_report(conn, wanted)
        except ReportRefused as err:
            raise CliError(str(err)) from None


def cmd_report(settings: Settings, args: argparse.Namespace) -> None:
    """The report as tables, JSON or a page."""
    one_of(args, "json", "html")
    wanted = request(settings, args, datetime.now(UTC).date())
    report = asyncio.run(fetch(settings, wanted))
    if args.json:
        print(report.model_dump_json(indent=2))
    elif args.html is not None:
        from runtime.report_html import report_page  # plotly: only the command that draws

        write_page(args.html, report_page(report))
        print(f"wrote the report for site {report.site} to {args.html.absolute()}")
    else:
        show(Group(*report_text(report, by_sku=args.by_sku)))


def write_page(path: Path, page: str) -> None:
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as err:
        raise CliError(f"cannot write {path}: {err.strerror or err}") from None


# -- text output ----------------------------------------------------------------------------------


def report_text(report: Report, by_sku: bool) -> list[Any]:
    """Headed tables: now, the period, why backorders were cancelled, and per sku."""
    period_title = (
        f"{report.since} to {report.until} ({(report.until - report.since).days + 1} days)"
    )
    parts: list[Any] = [
        Text(f"backorder report: site {report.site}, as of {report.as_of:%Y-%m-%d %H:%M} UTC"),
        Text(""),
        Group(Text("now"), kpi_table(now_rows(report))),
        Text(""),
        Group(Text(period_title), kpi_table(period_rows(report))),
    ]
    if report.cancel_reasons:
        parts += [Text(""), Group(Text("cancelled backorders by reason"), reason_table(report))]
    if by_sku:
        parts += [Text(""), sku_part(report)]
    parts += [Text(""), *(Text(note) for note in notes(report))]
    return parts


def kpi_table(rows: list[KpiRow]) -> Table:
    """KPI and value, and the target and its mark where any row has one."""
    judged = any(row.target for row in rows)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("KPI", "value", *(("target", "") if judged else ())):
        table.add_column(name)
    for row in rows:
        table.add_row(row.kpi, row.value, *((row.target, row.mark) if judged else ()))
    return table


def reason_table(report: Report) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("reason")
    table.add_column("orders", justify="right")
    for reason in report.cancel_reasons:
        table.add_row(reason.reason, f"{reason.orders:,}")
    return table


def sku_part(report: Report) -> Group:
    """The per-sku table, or one line saying no sku waited or had orders."""
    if not report.by_sku:
        return Group(Text("per sku: no sku waits now or had orders in the period"))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column(SKU_COLUMNS[0], overflow="fold")  # a narrow terminal folds a sku, never cuts
    for name in SKU_COLUMNS[1:]:
        table.add_column(name, justify="right")
    for row in report.by_sku:
        table.add_row(*sku_cells(row))
    return Group(Text("per sku (the orders in which it waited)"), table)


def report_commands() -> list[click.Command]:
    """`report`."""
    about = "backorder KPIs from the read model, against the targets: tables, JSON or a page"
    report = command(
        "report",
        cmd_report,
        about,
        click.Option(["--since"], type=typed(date_arg, "date"), help="first day (UTC), YYYY-MM-DD"),
        click.Option(["--until"], type=typed(date_arg, "date"), help="last day (default: today)"),
        click.Option(
            ["--days"],
            type=typed(whole_number(1, MAX_DAYS), "n"),
            help=f"that many days, up to --until or from --since (default {DEFAULT_DAYS})",
        ),
        site_option("the site (default: the settings' site)"),
        flag("--by-sku", help="the same KPIs per sku"),
        click.Option(
            ["--orders-placed"],
            type=typed(whole_number(1, 10**12), "n"),
            help="the site's orders in the period as the order system counts them: the backorder "
            "rate's denominator (default: the orders this service accepted)",
        ),
        flag("--json", help="the whole report as one JSON object (not with --html)"),
        click.Option(
            ["--html"],
            type=click.Path(path_type=Path),
            metavar="FILE",
            help="write one self-contained HTML page with charts (no network needed to view it)",
        ),
        short_help=about,
    )
    return [report]
