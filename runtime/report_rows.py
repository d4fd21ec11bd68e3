"""The report as rows of words and numbers, the same on the terminal (`backorder report`) and
on the HTML page (`runtime.report_html`): one place decides how a KPI reads."""

from __future__ import annotations

from dataclasses import dataclass

from notifications.render import format_amount
from runtime.report import (
    BACKORDER_RATE,
    CANCEL_RATE,
    EXPECTED_WITHIN_DAYS,
    FILL_TIME,
    Amount,
    Figures,
    Report,
    Share,
    SkuFigures,
    TargetCheck,
)


@dataclass(frozen=True)
class KpiRow:
    """One line of the KPI table; `target` and `mark` are empty where the seeds set none."""

    kpi: str
    value: str
    target: str = ""
    mark: str = ""


SKU_COLUMNS = (
    "sku",
    "waiting orders",
    "units",
    "value",
    "oldest",
    f"expected in {EXPECTED_WITHIN_DAYS}d",
    "backorder rate",
    "fill time",
    "fill p90",
    "cancel rate",
)


def now_rows(report: Report) -> list[KpiRow]:
    """What is on backorder now."""
    backlog = report.figures.backlog
    within = f"expected within {EXPECTED_WITHIN_DAYS} days"
    rows = [
        KpiRow(
            "on backorder",
            f"{counted(backlog.orders, 'orders')}, {counted(backlog.units, 'units')}",
        ),
        *(
            KpiRow(f"value on backorder ({amount.currency})", money(amount))
            for amount in backlog.value
        ),
        KpiRow("oldest backorder", days(backlog.oldest_days)),
        KpiRow(f"{within} (units)", share(backlog.expected_units, "units")),
        KpiRow(f"{within} (orders)", share(backlog.expected_orders, "orders")),
    ]
    if not backlog.value:
        rows.insert(1, KpiRow("value on backorder", "-"))
    return rows


def period_rows(report: Report) -> list[KpiRow]:
    """What happened in the period, against the seeds' targets."""
    figures, ftc = report.figures, report.ftc
    rate, fill, cancel = _checks(figures)
    return [
        KpiRow("new backorders", f"{report.new_backorders:,}"),
        KpiRow(
            "backorder rate",
            share(figures.backorder_rate, "orders placed"),
            BACKORDER_RATE.text(),
            mark(rate),
        ),
        KpiRow(
            "fill time (mean)",
            f"{days(figures.fill_time.mean_days)} ({figures.fill_time.filled:,} filled)",
            FILL_TIME.text(),
            mark(fill),
        ),
        KpiRow("fill time (p90)", days(figures.fill_time.p90_days)),
        KpiRow(
            "cancel rate",
            share(figures.cancel_rate, "backorders ended"),
            CANCEL_RATE.text(),
            mark(cancel),
        ),
        KpiRow(
            "FTC delay notices sent",
            f"{ftc.delay_notices + ftc.renewed_notices:,} "
            f"({ftc.delay_notices:,} delay, {ftc.renewed_notices:,} renewed)",
        ),
        KpiRow("cancelled under the FTC rule", counted(ftc.cancelled_orders, "orders")),
    ]


def sku_cells(row: SkuFigures) -> tuple[str, ...]:
    """One sku's line of the per-sku table, in `SKU_COLUMNS` order."""
    backlog = row.backlog
    rate, fill, cancel = _checks(row)
    return (
        row.sku,
        f"{backlog.orders:,}",
        f"{backlog.units:,}",
        ", ".join(money(a) for a in backlog.value) or "-",
        days(backlog.oldest_days),
        percent(backlog.expected_units),
        judged(percent(row.backorder_rate), rate),
        judged(days(row.fill_time.mean_days), fill),
        days(row.fill_time.p90_days),
        judged(percent(row.cancel_rate), cancel),
    )


def notes(report: Report) -> list[str]:
    """What a reader must know to read the figures right."""
    said = [
        f"period: {report.since} to {report.until} (UTC days); backorder rate of the orders "
        "placed in it; fill time and cancel rate of the backorders that ended in it",
        "backorder rate: of the orders this service accepted, unless --orders-placed gives the "
        "order system's count (an order system that starts only backordered orders here needs "
        "it; in-stock orders started here complete at acceptance and count)"
        if not report.orders_placed_given
        else "backorder rate: of the orders placed as the order system counts them "
        "(--orders-placed)",
    ]
    unpriced = report.figures.backlog.unpriced_orders
    if unpriced:
        said.append(
            f"orders on backorder recorded before line prices were kept: {unpriced:,} (their "
            "units count; their value is not in the value on backorder)"
        )
    return said


# -- words for numbers ----------------------------------------------------------------------------


def money(amount: Amount) -> str:
    return format_amount(amount.amount, amount.currency)


def days(value: float | None) -> str:
    """`12 days`, `9.9 days`, or `-` when there is nothing to measure."""
    if value is None:
        return "-"
    text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return f"{text} day{'' if text == '1' else 's'}"


def percent(part: Share) -> str:
    return "-" if part.pct is None else f"{part.pct:.1f} %"


def share(part: Share, of: str) -> str:
    """`4.2 % (5 of 120 orders placed)`, or `- (none ended)`."""
    if part.pct is None:
        return f"- (no {of})"
    return f"{percent(part)} ({part.part:,} of {counted(part.whole, of)})"


def counted(n: int, plural: str) -> str:
    """`1 order placed`, `2,000 orders placed`: the first word singular for one."""
    first, _, rest = plural.partition(" ")
    noun = first.removesuffix("s") if n == 1 else first
    return f"{n:,} {noun}" + (f" {rest}" if rest else "")


def mark(check: TargetCheck) -> str:
    return {True: "met", False: "missed", None: "no data"}[check.met]


def judged(text: str, check: TargetCheck) -> str:
    """`4.2 % met`: a figure with its mark (nothing to judge: the figure alone)."""
    return text if check.met is None else f"{text} {mark(check)}"


def _checks(figures: Figures) -> tuple[TargetCheck, TargetCheck, TargetCheck]:
    by_kpi = {check.kpi: check for check in figures.targets}
    return by_kpi[BACKORDER_RATE.kpi], by_kpi[FILL_TIME.kpi], by_kpi[CANCEL_RATE.kpi]
