"""The `--html` page on its own, from reports built here (no database): what it draws, that
amounts in two currencies are two series, and that a sku or site name is text, never markup."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from runtime.report import AGE_BUCKETS, Report
from runtime.report_html import (
    AGE_TITLE,
    DAILY_TITLE,
    FILL_TITLE,
    VALUE_TITLE,
    daily_chart,
    fill_chart,
    report_page,
    value_chart,
)

HOSTILE = '<img src=x onerror="alert(1)">'
"""A sku (any non-blank text is an id) that would run a script if the page did not escape it."""


def share(part: int, whole: int) -> dict[str, Any]:
    return {"part": part, "whole": whole, "pct": 100 * part / whole if whole else None}


def figures(value: list[dict[str, str]], orders: int = 0) -> dict[str, Any]:
    return {
        "backlog": {
            "orders": orders,
            "units": 2 * orders,
            "value": value,
            "unpriced_orders": 0,
            "oldest_days": 3 if orders else None,
            "expected_units": share(0, 2 * orders),
            "expected_orders": share(0, orders),
        },
        "backorder_rate": share(1, 4),
        "fill_time": {"filled": 2, "mean_days": 3.5, "p90_days": 4.9},
        "cancel_rate": share(0, 2),
        "targets": [
            {"kpi": "backorder rate", "value": 25.0, "target": "< 5 %", "met": False},
            {"kpi": "fill time (mean)", "value": 3.5, "target": "< 14 days", "met": True},
            {"kpi": "cancel rate", "value": 0.0, "target": "< 20 %", "met": True},
        ],
    }


def report(**changes: Any) -> Report:
    since = date(2026, 11, 1)
    fields: dict[str, Any] = {
        "site": "east",
        "since": since,
        "until": since + timedelta(days=2),
        "as_of": datetime(2026, 11, 3, 12, 0, tzinfo=UTC),
        "figures": figures([{"currency": "USD", "amount": "30.00"}], orders=2),
        "new_backorders": 2,
        "cancel_reasons": [],
        "ftc": {"delay_notices": 0, "renewed_notices": 0, "cancelled_orders": 0},
        "age_buckets": [
            {"label": f"{a}-{b}", "min_days": a, "max_days": b, "orders": 1} for a, b in AGE_BUCKETS
        ],
        "fill_days": [{"days": 3, "orders": 1}, {"days": 4, "orders": 1}],
        "daily": [
            {"day": since + timedelta(days=i), "new": 1, "released": i, "cancelled": 0}
            for i in range(3)
        ],
        "by_sku": [
            {"sku": "KTP", **figures([{"currency": "USD", "amount": "30.00"}], orders=1)},
            {"sku": HOSTILE, **figures([{"currency": "JPY", "amount": "500"}], orders=1)},
        ],
    }
    return Report.model_validate(fields | changes)


def test_the_page_has_the_tables_and_the_four_charts() -> None:
    page = report_page(report())
    for title in (AGE_TITLE, FILL_TITLE, VALUE_TITLE, DAILY_TITLE):
        assert title in page
    assert page.count("plotly.js v") == 1  # the bundle inlined once, for every chart
    assert page.count('class="plotly-graph-div"') == 4
    assert '<td class="missed">missed</td>' in page and '<td class="met">met</td>' in page
    assert "30.00 USD" in page and "500 JPY" in page


def test_a_name_from_the_database_is_text_not_markup() -> None:
    page = report_page(report())
    outside_scripts = re.sub(r"<script\b.*?</script>", "", page, flags=re.DOTALL)
    assert "<img" not in outside_scripts and "&lt;img src=x" in outside_scripts
    assert HOSTILE not in page  # nor in the charts' data (plotly writes \u003c)


def test_two_currencies_are_two_series_never_one_sum() -> None:
    traces = value_chart(report()).data
    assert [(t.name, list(t.x), list(t.y)) for t in traces] == [
        ("USD", ["KTP"], [30.0]),
        ("JPY", [HOSTILE], [500.0]),
    ]


def test_the_daily_chart_has_new_released_and_cancelled() -> None:
    traces = daily_chart(report()).data
    assert [t.name for t in traces] == ["new", "released (filled)", "cancelled"]
    assert list(traces[1].y) == [0, 1, 2]
    assert list(fill_chart(report()).data[0].x) == [3, 4]


def test_an_empty_report_draws_empty_charts_that_say_so() -> None:
    empty = report(
        figures=figures([]),
        fill_days=[],
        by_sku=None,
        daily=[{"day": date(2026, 11, 1), "new": 0, "released": 0, "cancelled": 0}],
    )
    page = report_page(empty)
    assert page.count("no data in this period") == 3  # fill time, value, daily; ages show 0s
    assert "Per SKU" not in page
