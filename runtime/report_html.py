"""`backorder report --html`: one self-contained page an operator opens in any browser, even
offline: the KPI tables and four plotly charts (backorders by age, fill-time distribution, value
on backorder by sku, daily new / released / cancelled). plotly.js is inlined once; nothing is
fetched from the network, and every text from the database is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]

from runtime.report import Report
from runtime.report_rows import SKU_COLUMNS, KpiRow, notes, now_rows, period_rows, sku_cells

AGE_TITLE = "Backorders by age"
FILL_TITLE = "Fill time distribution"
VALUE_TITLE = "Value on backorder by SKU"
DAILY_TITLE = "Daily new, released and cancelled backorders"

_CLASS = {"met": "met", "missed": "missed"}
"""The marks that are coloured (green, red)."""

_CONFIG = {"displaylogo": False, "responsive": True}
"""No link to plotly's site in the mode bar."""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; }
.met { color: #1a7f37; font-weight: bold; }
.missed { color: #cf222e; font-weight: bold; }
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 1em; }
.note { color: #555; font-size: 0.9em; }
"""


def report_page(report: Report) -> str:
    """The whole page as one string of HTML."""
    title = f"Backorder report: site {report.site}, {report.since} to {report.until}"
    charts = [
        age_chart(report),
        fill_chart(report),
        value_chart(report),
        daily_chart(report),
    ]
    html_charts = [
        chart.to_html(
            full_html=False,
            include_plotlyjs=i == 0,
            config=_CONFIG,
            default_width="100%",
            default_height="420px",
        )
        for i, chart in enumerate(charts)
    ]
    body = [
        f"<h1>{escape(title)}</h1>",
        f"<p>As of {report.as_of:%Y-%m-%d %H:%M} UTC</p>",
        "<h2>Now</h2>",
        _kpi_table(now_rows(report)),
        f"<h2>{escape(str(report.since))} to {escape(str(report.until))}</h2>",
        _kpi_table(period_rows(report)),
        *_reasons(report),
        '<div class="charts">',
        *(f"<div>{chart}</div>" for chart in html_charts),
        "</div>",
        *_sku_table(report),
        *(f'<p class="note">{escape(note)}</p>' for note in notes(report)),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# -- charts ---------------------------------------------------------------------------------------


def age_chart(report: Report) -> Any:
    buckets = report.age_buckets
    figure = go.Figure(
        go.Bar(x=[b.label for b in buckets], y=[b.orders for b in buckets], name="orders")
    )
    return _laid_out(figure, AGE_TITLE, "days on backorder", "orders")


def fill_chart(report: Report) -> Any:
    """A histogram of whole days (the counts per day come from the database)."""
    bins = report.fill_days
    figure = go.Figure(
        go.Bar(x=[b.days for b in bins], y=[b.orders for b in bins], name="filled backorders")
    )
    figure.update_layout(bargap=0.05)
    return _laid_out(figure, FILL_TITLE, "days from backorder to filled", "backorders", bins)


def value_chart(report: Report) -> Any:
    """One bar series per currency: amounts in different currencies are never stacked."""
    by_currency: dict[str, tuple[list[str], list[float]]] = {}
    for row in report.by_sku or []:
        for amount in row.backlog.value:
            skus, amounts = by_currency.setdefault(amount.currency, ([], []))
            skus.append(row.sku)
            amounts.append(float(amount.amount))
    figure = go.Figure(
        [go.Bar(x=skus, y=amounts, name=cur) for cur, (skus, amounts) in by_currency.items()]
    )
    figure.update_layout(barmode="group")
    return _laid_out(figure, VALUE_TITLE, "sku", "value", by_currency)


def daily_chart(report: Report) -> Any:
    days = [str(day.day) for day in report.daily]
    figure = go.Figure(
        [
            go.Bar(x=days, y=[d.new for d in report.daily], name="new"),
            go.Bar(x=days, y=[d.released for d in report.daily], name="released (filled)"),
            go.Bar(x=days, y=[d.cancelled for d in report.daily], name="cancelled"),
        ]
    )
    figure.update_layout(barmode="group")
    any_day = any(d.new or d.released or d.cancelled for d in report.daily)
    return _laid_out(figure, DAILY_TITLE, "day (UTC)", "orders", any_day)


def _laid_out(figure: Any, title: str, x: str, y: str, data: object = True) -> Any:
    """Titles, axes, and a "no data" note on an empty chart."""
    figure.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 60, "b": 60},
    )
    if not data:  # the note alone: empty axes would show made-up ranges (-1 to 1, years)
        figure.update_xaxes(visible=False)
        figure.update_yaxes(visible=False)
        figure.add_annotation(
            text="no data in this period",
            showarrow=False,
            font={"size": 16},
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
        )
    return figure


# -- tables ---------------------------------------------------------------------------------------


def _kpi_table(rows: list[KpiRow]) -> str:
    """KPI and value, and the target and its mark where any row has one."""
    judged = any(r.target for r in rows)
    head = "<th>KPI</th><th>value</th>" + ("<th>target</th><th></th>" if judged else "")
    lines = [f"<table>\n<tr>{head}</tr>"]
    for r in rows:
        cells = f"<td>{escape(r.kpi)}</td><td>{escape(r.value)}</td>"
        if judged:
            cells += f'<td>{escape(r.target)}</td><td class="{_CLASS.get(r.mark, "")}">'
            cells += f"{escape(r.mark)}</td>"
        lines.append(f"<tr>{cells}</tr>")
    return "\n".join([*lines, "</table>"])


def _reasons(report: Report) -> list[str]:
    if not report.cancel_reasons:
        return []
    rows = "\n".join(
        f'<tr><td>{escape(r.reason)}</td><td class="num">{r.orders:,}</td></tr>'
        for r in report.cancel_reasons
    )
    return [
        "<h2>Cancelled backorders by reason</h2>",
        f"<table>\n<tr><th>reason</th><th>orders</th></tr>\n{rows}\n</table>",
    ]


def _sku_table(report: Report) -> list[str]:
    if not report.by_sku:
        return []
    head = "".join(f"<th>{escape(name)}</th>" for name in SKU_COLUMNS)
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in sku_cells(row)) + "</tr>"
        for row in report.by_sku
    )
    return [
        "<h2>Per SKU (the orders in which it waited)</h2>",
        f"<table>\n<tr>{head}</tr>\n{rows}\n</table>",
    ]
