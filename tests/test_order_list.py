"""`backorder order list` against a real PostgreSQL read model: every filter, both sorts,
pages, the table and `--json`, and one clear message for every bad flag or a database that is
not there. Rows are written by the real `record_order` activity and `queue_exception`."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import ActivityEnvironment

import starter
from activities.contracts import Severity
from activities.notices import queue_exception
from activities.read_model import ReadModelActivities
from domain.order import Order
from embedded.process import free_port
from runtime.order_list import OrderFilter, in_minor_units, list_orders
from workflows.messages import BackorderStatus, OrderRecord

NOW = datetime.now(UTC).replace(microsecond=0)
ODD_ID = "[b]:smile:" + "-7" * 30
"""Rich markup, an emoji code and longer than any terminal column: printed as it is."""

# order id: (status, tier, site, currency, lines as (sku, quantity, unit price), placed ago)
BACKLOG: dict[str, tuple[str, str, str, str, list[tuple[str, int, str]], timedelta]] = {
    "A-1": ("backordered", "standard", "east", "USD", [("KTP", 5, "10.00")], timedelta(days=20)),
    "A-2": (
        "backordered",
        "vip",
        "east",
        "USD",
        [("KTP", 1, "200.00"), ("MUG", 1, "50.00")],
        timedelta(days=20),  # as old as A-1: the order id breaks the tie
    ),
    "B-1": (
        "awaiting_receipt",
        "standard",
        "west",
        "USD",
        [("TEA", 25, "10.00")],  # worth A-2's 250.00: the order id breaks the tie
        timedelta(days=9),
    ),
    "C-1": ("completed", "standard", "east", "JPY", [("MUG", 3, "500")], timedelta(days=40)),
    "D-1": (
        "cancelled",
        "vip",
        "west",
        "USD",
        [(f"S{i}", 1, "2.50") for i in range(1, 6)],
        timedelta(days=2),
    ),
    ODD_ID: ("backordered", "standard", "east", "USD", [("KTP", 1, "99.99")], timedelta(hours=1)),
}
BY_AGE = ["C-1", "A-1", "A-2", "B-1", "D-1", ODD_ID]
BY_VALUE = ["C-1", "A-2", "B-1", ODD_ID, "A-1", "D-1"]  # 1500 JPY counts as 1500


def order(order_id: str) -> OrderRecord:
    status, tier, site, currency, lines, ago = BACKLOG[order_id]
    placed = NOW - ago
    o = Order.model_validate(
        {
            "order_id": order_id,
            "order_number": f"N{order_id}",
            "placed_at": placed,
            "currency": currency,
            "customer": {"id": "c1", "email": "c@example.com", "tier": "standard"},
            "fulfillment": {"type": "sth"},
            "lines": [
                {"line_id": str(i), "sku": sku, "quantity": qty, "unit_price": price}
                for i, (sku, qty, price) in enumerate(lines, 1)
            ],
        }
    )
    return OrderRecord(
        order=o,
        workflow_id=o.workflow_id,
        status=BackorderStatus(status),
        status_since=placed + timedelta(minutes=5),
        site=site,
        tier=tier,
    )


@pytest.fixture(scope="module")
async def backlog(pg_pool: AsyncConnectionPool) -> AsyncIterator[None]:
    record = ReadModelActivities(pg_pool, "default").record_order
    for order_id in BACKLOG:
        await ActivityEnvironment().run(record, order(order_id))
    raised = [
        ("a1-capture", "A-1", Severity.HIGH),
        ("a1-notice", "A-1", Severity.LOW),
        ("a1-old", "A-1", Severity.MEDIUM),
        ("b1-stuck", "B-1", Severity.MEDIUM),
        ("odd-old", ODD_ID, Severity.HIGH),
    ]
    async with pg_pool.connection() as conn:
        for key, order_id, severity in raised:
            await queue_exception(conn, key, order_id, "test", severity, "raised by the test")
        await conn.execute(
            """UPDATE exceptions SET resolved_at = now(), resolved_by = 'test', resolution = 'ok'
                WHERE key IN ('a1-old', 'odd-old')"""
        )
    yield


@pytest.fixture
def dsn(pg_dsn: str, backlog: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", pg_dsn)
    return pg_dsn


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = starter.main(["order", "list", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def listed(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "--json", *argv)
    assert (code, err) == (0, "")
    result: dict[str, Any] = json.loads(out)
    return result


def ids(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    return [row["order_id"] for row in listed(capsys, *argv)["orders"]]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((), BY_AGE),
        (("--status", "backordered"), ["A-1", "A-2", ODD_ID]),
        (("--status", "completed", "--status", "awaiting_receipt"), ["C-1", "B-1"]),
        (("--sku", "MUG"), ["C-1", "A-2"]),
        (("--sku", "KTP' OR true --"), []),  # a value, never SQL
        (("--site", "west"), ["B-1", "D-1"]),
        (("--tier", "vip"), ["A-2", "D-1"]),
        (("--older-than", "10d"), ["C-1", "A-1", "A-2"]),
        (("--older-than", "1w"), ["C-1", "A-1", "A-2", "B-1"]),
        (("--older-than", "12h"), BY_AGE[:-1]),
        (("--with-exception",), ["A-1", "B-1"]),  # resolved ones do not count
        (("--value-above", "250"), ["C-1"]),  # above, not at
        (("--value-above", "99.98"), ["C-1", "A-2", "B-1", ODD_ID]),
        (
            ("--status", "backordered", "--sku", "KTP", "--site", "east", "--with-exception"),
            ["A-1"],
        ),
        (("--sort", "value"), BY_VALUE),
        (("--sort", "value", "--tier", "standard"), ["C-1", "B-1", ODD_ID, "A-1"]),
    ],
)
def test_filters_and_sorts(
    dsn: str, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], expected: list[str]
) -> None:
    assert ids(capsys, *argv) == expected


def test_json_is_typed(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    page = listed(capsys, "--sort", "value")

    assert list(page) == ["total", "page", "pages", "orders"]
    assert (page["total"], page["page"], page["pages"]) == (6, 1, 1)
    rows = {row["order_id"]: row for row in page["orders"]}
    assert rows["A-1"] == {
        "order_id": "A-1",
        "workflow_id": "backorder-A-1",
        "order_number": "NA-1",
        "status": "backordered",
        "customer_tier": "standard",
        "site": "east",
        "currency": "USD",
        "order_value": "50.00",
        "placed_at": (NOW - timedelta(days=20)).isoformat().replace("+00:00", "Z"),
        "age_days": 20,
        "status_since": (NOW - timedelta(days=20, minutes=-5)).isoformat().replace("+00:00", "Z"),
        "skus": ["KTP"],
        "open_exceptions": 2,
        "highest_severity": "high",
    }
    assert rows["C-1"]["order_value"] == "1500"  # JPY has no minor unit
    assert rows["B-1"]["highest_severity"] == "medium"
    assert (rows["D-1"]["open_exceptions"], rows["D-1"]["highest_severity"]) == (0, None)
    assert rows["D-1"]["skus"] == ["S1", "S2", "S3", "S4", "S5"]
    assert rows[ODD_ID]["age_days"] == 0


def test_pages(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    page = listed(capsys, "--limit", "2", "--page", "2")
    assert (page["total"], page["page"], page["pages"]) == (6, 2, 3)
    assert [row["order_id"] for row in page["orders"]] == BY_AGE[2:4]

    code, out, _ = run(capsys, "--limit", "2", "--page", "2", "--sort", "value")
    assert code == 0
    assert out.splitlines()[-1] == "page 2 of 3: orders 3-4 of 6, largest value first"
    assert ids(capsys, "--limit", "4", "--page", "2") == BY_AGE[4:]

    assert run(capsys, "--limit", "2", "--page", "4") == (
        1,
        "",
        "backorder: --page 4: past the last page (3 pages of 2, 6 orders in all)\n",
    )


def test_table_is_aligned_plain_text(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)

    assert (code, err) == (0, "")
    assert "\x1b" not in out
    assert all(line == line.rstrip() for line in out.splitlines())
    header, rule, *rows, footer = out.splitlines()
    assert header.split() == [
        "order", "number", "status", "tier", "site", "value", "age", "(days)",
        "status", "since", "(UTC)", "skus", "open", "exceptions",
    ]  # fmt: skip
    assert set(rule) <= {"\u2500", " "}  # the line under the headings
    assert [row.split()[0] for row in rows] == BY_AGE  # ids whole, never wrapped or cut
    for row, order_id in zip(rows, BY_AGE, strict=True):  # each column starts at its heading
        status, _, _, _, lines, _ = BACKLOG[order_id]
        assert row.index(f" N{order_id} ") + 1 == header.index("number")
        assert row.index(f" {status} ") + 1 == header.index("status")
        assert row.index(f" {lines[0][0]}") + 1 == header.index("skus")
    a1 = rows[1]
    assert "50.00 USD" in a1 and a1.rstrip().endswith(" 2 (high)")
    assert f"{NOW - timedelta(days=20, minutes=-5):%Y-%m-%d %H:%M}" in a1
    assert "1,500 JPY" in rows[0]
    assert "S1, S2, S3 +2 more" in rows[4]
    assert rows[4].rstrip().endswith(" -")  # no open exception
    value_ends = {row.index(" USD") if " USD" in row else row.index(" JPY") for row in rows}
    assert len(value_ends) == 1  # amounts right-aligned
    assert footer == "page 1 of 1: orders 1-6 of 6, oldest first"


def test_a_terminal_gets_rich_styles(
    dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")

    code, out, _ = run(capsys, "--tier", "vip")

    assert code == 0
    assert "\x1b[1m" in out  # bold headings
    assert "A-2" in out and "D-1" in out


def test_nothing_matches(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--sku", "NONE") == (0, "no orders match\n", "")
    assert run(capsys, "--sku", "NONE", "--page", "3") == (0, "no orders match\n", "")
    assert listed(capsys, "--sku", "NONE") == {"total": 0, "page": 1, "pages": 0, "orders": []}


@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        ("--older-than", "3x", "'3x' is not a duration: a whole number then h, d or w"),
        ("--older-than", "-3d", "is not a duration"),
        ("--value-above", "abc", "money must be a decimal string"),
        ("--value-above", "-5", "money must not be negative"),
        ("--limit", "0", "must be a whole number 1..1000"),
        ("--limit", "1001", "must be a whole number 1..1000"),
        ("--page", "0", "must be a whole number 1..1000000"),
        ("--status", "shipped", "'shipped' is not one of 'backordered', 'awaiting_receipt', "),
        ("--sort", "price", "'price' is not one of 'age', 'value'."),
        ("--site", "a b", "letters, digits, _ . - only"),
    ],
)
def test_a_bad_flag_is_named(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, why: str
) -> None:
    code, out, err = run(capsys, f"{flag}={value}")

    assert (code, out) == (2, "")
    assert err.startswith("Usage: backorder order list ")
    assert f"Error: Invalid value for '{flag}': " in err and why in err
    assert "Traceback" not in err


def test_an_unreachable_database_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "BACKORDER_DATABASE__DSN", f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    )
    code, out, err = run(capsys)
    assert (code, out) == (1, "")
    assert err.startswith("backorder: cannot reach PostgreSQL: ")
    assert err.count("\n") == 1


async def test_list_orders_takes_any_connection(
    pg_pool: AsyncConnectionPool, backlog: None
) -> None:
    async with pg_pool.connection() as conn:  # tuple rows: the query reads its own way
        page = await list_orders(conn, OrderFilter(value_above=Decimal(0), sort="value", limit=1))
    assert (page.total, page.pages, [row.order_id for row in page.orders]) == (6, 6, ["C-1"])
    assert page.orders[0].placed_at.tzinfo is UTC


def test_amounts_keep_their_currency_decimals() -> None:
    assert str(in_minor_units(Decimal("50.0000"), "USD")) == "50.00"
    assert str(in_minor_units(Decimal("1500.0000"), "JPY")) == "1500"
    assert str(in_minor_units(Decimal("0.0000"), "KWD")) == "0.000"
    assert str(in_minor_units(Decimal("1.2345"), "USD")) == "1.2345"  # nothing dropped
