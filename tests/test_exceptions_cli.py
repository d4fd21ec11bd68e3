"""`backorder exceptions` against a real PostgreSQL queue: exceptions written by the activities'
own `queue_exception`, listed worst and oldest first with filters, shown in full, resolved with
who and why (and kept); bad input is a message, never a traceback."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import psycopg
import pytest
from temporalio.testing import WorkflowEnvironment

import starter
from activities.contracts import Severity
from activities.notices import queue_exception

LONG_DETAIL = (
    "order 1001 backordered 41 days; FTC shipping deadline 2026-12-09. The customer was told"
    " 2026-11-20 and has not answered; cancel the unshipped lines or ask for consent again."
)


@pytest.fixture
def dsn(pg_dsn: str, dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty queue and read model; output as a pipe gets it, 120 columns wide. A resolve
    tells the orders' workflows on the dev server (these orders have none: nothing to tell)."""
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", pg_dsn)
    target = dev_env.client.service_client.config.target_host
    monkeypatch.setenv("BACKORDER_TEMPORAL__TARGET", target)
    monkeypatch.setenv("COLUMNS", "120")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM exceptions")
        conn.execute("DELETE FROM orders")
    return pg_dsn


def queue(dsn: str, key: str, order_id: str, kind: str, severity: str, detail: str) -> None:
    """Write an exception as the activities do (`queue_exception`, once per key)."""

    async def write() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            await queue_exception(conn, key, order_id, kind, Severity(severity), detail)

    asyncio.run(write())


def raise_exception(
    dsn: str,
    order_id: str,
    kind: str,
    severity: str,
    detail: str = "needs a look",
    hours_ago: float = 0,
) -> int:
    """Queue a new exception, raised `hours_ago`; its number."""
    key = f"backorder-{order_id}/{kind}/{uuid.uuid4().hex[:6]}"
    queue(dsn, key, order_id, kind, severity, detail)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            """UPDATE exceptions SET raised_at = now() - make_interval(secs => %s)
                WHERE key = %s RETURNING id""",
            (hours_ago * 3600, key),
        ).fetchone()
    assert row is not None
    return int(row[0])


def add_order(dsn: str, order_id: str, site: str, number: str, status: str = "backordered") -> None:
    """The order's row in the read model."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO orders (order_id, workflow_id, order_number, site, customer_id,
                                  customer_tier, placed_at, currency, order_value, status, skus,
                                  status_since)
               VALUES (%s, %s, %s, %s, 'c-1', 'standard', now(), 'USD', 50, %s, '{KTP}', now())""",
            (order_id, f"backorder-{order_id}", number, site, status),
        )


def stored(dsn: str, number: int) -> dict[str, Any]:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        row = conn.execute("SELECT * FROM exceptions WHERE id = %s", (number,)).fetchone()
    assert row is not None
    return row


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`backorder exceptions ...`: (exit code, stdout, stderr)."""
    code = starter.main(["exceptions", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def listed(out: str) -> list[list[str]]:
    """The table's rows, split into words (between the header's rule and the summary)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("─")) + 1
    return [line.split() for line in lines[start:-1]]


@pytest.fixture
def backlog(dsn: str) -> dict[str, int]:
    """Two known orders (north, south), one the read model does not know, and exceptions of
    every severity and age; one already resolved."""
    add_order(dsn, "A-1", "north", "1001")
    add_order(dsn, "B-2", "south", "1002", status="completed")
    numbers = {
        "low_old": raise_exception(dsn, "A-1", "message_refused", "low", hours_ago=50),
        "high_new": raise_exception(dsn, "B-2", "payment_capture_failed", "high", hours_ago=1),
        "high_old": raise_exception(dsn, "A-1", "ftc_deadline", "high", LONG_DETAIL, 30),
        "medium": raise_exception(dsn, "C-3", "demand_invalid", "medium", hours_ago=2),
        "done": raise_exception(dsn, "B-2", "payment_void_failed", "high", hours_ago=70),
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """UPDATE exceptions SET resolved_at = now(), resolved_by = 'ann',
                                     resolution = 'voided by hand' WHERE id = %s""",
            (numbers["done"],),
        )
    return numbers


# -- list -----------------------------------------------------------------------------------------


def test_an_empty_queue_says_so(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys) == (0, "no open exceptions\n", "")
    assert run(capsys, "--all") == (0, "no exceptions\n", "")
    assert run(capsys, "--kind", "ftc_deadline") == (0, "no open exceptions match\n", "")
    assert run(capsys, "--json") == (0, "[]\n", "")


def test_open_exceptions_worst_first_then_oldest(
    backlog: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys)

    assert (code, err) == (0, "")
    assert out.split("\n", 1)[0].split() == [
        "id", "severity", "kind", "order", "site", "age", "detail",
    ]  # fmt: skip
    rows = listed(out)
    assert [int(r[0]) for r in rows] == [
        backlog["high_old"],
        backlog["high_new"],
        backlog["medium"],
        backlog["low_old"],
    ]
    assert rows[0][1:6] == ["high", "ftc_deadline", "A-1", "north", "1d"]
    assert rows[1][1:7] == ["high", "payment_capture_failed", "B-2", "south", "1h", "0m"]
    assert rows[2][3:5] == ["C-3", "-"]  # the read model does not know C-3
    assert rows[3][5:7] == ["2d", "2h"]
    assert out.splitlines()[-1] == "4 open: 2 high, 1 medium, 1 low"


def test_plain_text_through_a_pipe_with_only_the_detail_cut(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    order = "SHOP-2026-11-30-" + "7" * 20
    number = raise_exception(dsn, order, "payment_reauthorise_failed", "high", LONG_DETAIL)

    code, out, _ = run(capsys)

    assert code == 0 and "\x1b[" not in out
    row = out.splitlines()[2]
    assert len(row) <= 120
    assert row.split()[:4] == [str(number), "high", "payment_reauthorise_failed", order]
    assert row.endswith("…") and "order 1001" in row


def test_filters_by_severity_kind_order_and_site(
    backlog: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    def ids(*argv: str) -> list[int]:
        code, out, err = run(capsys, *argv)
        assert (code, err) == (0, "")
        return [int(r[0]) for r in listed(out)]

    assert ids("--severity", "high") == [backlog["high_old"], backlog["high_new"]]
    assert ids("--severity", "low", "--severity", "medium") == [
        backlog["medium"],
        backlog["low_old"],
    ]
    assert ids("--kind", "demand_invalid", "--kind", "message_refused") == [
        backlog["medium"],
        backlog["low_old"],
    ]
    assert ids("--order", "A-1") == ids("--order", "backorder-A-1")
    assert ids("--order", "A-1") == [backlog["high_old"], backlog["low_old"]]
    assert ids("--site", "south") == [backlog["high_new"]]
    assert ids("--site", "south", "--all") == [backlog["high_new"], backlog["done"]]
    assert run(capsys, "--site", "east") == (0, "no open exceptions match\n", "")
    _, out, _ = run(capsys, "--severity", "high", "--order", "B-2")
    assert out.splitlines()[-1] == "1 open: 1 high, 0 medium, 0 low"


def test_all_lists_the_resolved_after_the_open(
    backlog: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--all")

    rows = listed(out)
    assert code == 0 and len(rows) == 5
    assert int(rows[-1][0]) == backlog["done"] and rows[-1][1:3] == ["high", "(resolved)"]
    assert out.splitlines()[-1] == "5 exceptions: 3 high, 1 medium, 1 low; 4 open, 1 resolved"


def test_limit_shows_the_first_and_says_how_many_match(
    backlog: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, "--limit", "2")

    assert [int(r[0]) for r in listed(out)] == [backlog["high_old"], backlog["high_new"]]
    assert out.splitlines()[-1] == (
        "4 open: 2 high, 1 medium, 1 low (showing the first 2; --limit N for more)"
    )


def test_json_rows_have_every_field(
    backlog: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--json", "--all")

    rows = json.loads(out)
    assert code == 0 and [r["id"] for r in rows][-1] == backlog["done"]
    first, unknown, done = rows[0], rows[2], rows[-1]
    assert set(first) == {
        "id", "key", "order_id", "kind", "severity", "detail", "raised_at", "resolved_at",
        "resolved_by", "resolution", "site", "order_number", "order_status",
    }  # fmt: skip
    assert first["detail"] == LONG_DETAIL  # never shortened
    assert (first["severity"], first["site"], first["order_number"]) == ("high", "north", "1001")
    assert first["raised_at"].endswith("Z") and first["resolved_at"] is None
    assert (unknown["order_id"], unknown["site"], unknown["order_status"]) == ("C-3", None, None)
    assert (done["resolved_by"], done["resolution"]) == ("ann", "voided by hand")


# -- show -----------------------------------------------------------------------------------------


def test_show_by_number_or_key_prints_every_field(
    backlog: dict[str, int], dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    number = backlog["high_old"]
    key = stored(dsn, number)["key"]

    code, out, err = run(capsys, "show", str(number))

    assert (code, err) == (0, "")
    assert run(capsys, "show", key)[1] == out
    lines = out.splitlines()
    assert lines[0] == f"exception {number}: high, open"
    assert lines[1] == "  kind:     ftc_deadline"
    assert lines[2] == "  order:    A-1 (order #1001, backordered, site north)"
    assert lines[3].startswith("  raised:   20") and lines[3].endswith(" UTC (1d 6h ago)")
    assert lines[4:7] == ["  resolved: no", f"  key:      {key}", "  detail:"]
    assert lines[7] == f"    {LONG_DETAIL}"


def test_show_a_resolved_one_and_an_order_the_read_model_lacks(
    backlog: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, "show", str(backlog["done"]))
    assert out.startswith(f"exception {backlog['done']}: high, resolved\n")
    assert " UTC by ann: voided by hand\n" in out

    _, out, _ = run(capsys, "show", str(backlog["medium"]))
    assert "  order:    C-3 (not in the read model)\n" in out

    _, out, _ = run(capsys, "show", str(backlog["medium"]), "--json")
    assert json.loads(out)["id"] == backlog["medium"]


def test_show_of_an_unknown_exception(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "show", "999999") == (1, "", "backorder: no exception 999999\n")
    assert run(capsys, "show", "nope/none") == (
        1,
        "",
        "backorder: no exception with key nope/none\n",
    )


# -- resolve --------------------------------------------------------------------------------------


def test_resolving_records_who_when_and_why_and_keeps_the_row(
    backlog: dict[str, int],
    dsn: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "night-shift")
    number = backlog["high_new"]

    code, out, err = run(capsys, "resolve", str(number), "--note", "  captured by phone ")

    assert (code, err) == (0, "")
    assert out == f"resolved {number}: payment_capture_failed (high) on order B-2\n"
    row = stored(dsn, number)
    assert (row["resolved_by"], row["resolution"]) == ("night-shift", "captured by phone")
    assert row["resolved_at"] is not None and row["detail"] == "needs a look"
    assert number not in [int(r[0]) for r in listed(run(capsys)[1])]
    assert number in [int(r[0]) for r in listed(run(capsys, "--all")[1])]
    assert " UTC by night-shift: captured by phone\n" in run(capsys, "show", str(number))[1]


def test_a_retried_activity_does_not_reopen_a_resolved_exception(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    number = raise_exception(dsn, "D-4", "ftc_deadline", "high")
    key = stored(dsn, number)["key"]
    assert run(capsys, "resolve", key, "--note", "customer consented", "--by", "ann")[0] == 0
    resolved = stored(dsn, number)

    queue(dsn, key, "D-4", "ftc_deadline", "high", "raised again by a retry")

    assert stored(dsn, number) == resolved
    assert resolved["resolution"] == "customer consented"


def test_resolving_a_resolved_one_says_when_and_by_whom_and_changes_nothing(
    backlog: dict[str, int], dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    number = backlog["done"]
    before = stored(dsn, number)

    code, out, err = run(capsys, "resolve", str(number), "--note", "again", "--by", "bob")

    assert (code, out) == (1, "")
    assert err.startswith(f"backorder: exception {number} was already resolved 20")
    assert err.endswith(" UTC by ann: voided by hand (left as it was)\n")
    assert stored(dsn, number) == before


def test_resolving_several_reports_each_and_fails_if_any_did(
    backlog: dict[str, int], dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = [str(backlog["low_old"]), "424242", str(backlog["done"]), str(backlog["medium"])]

    code, out, err = run(capsys, "resolve", *refs, "--note", "batch", "--by", "ann")

    assert code == 1
    assert out.splitlines() == [
        f"resolved {backlog['low_old']}: message_refused (low) on order A-1",
        f"resolved {backlog['medium']}: demand_invalid (medium) on order C-3",
    ]
    errors = err.splitlines()
    assert errors[0] == "backorder: no exception 424242"
    assert errors[1].startswith(f"backorder: exception {backlog['done']} was already resolved")
    assert errors[2] == "backorder: 2 of 4 not resolved"
    assert stored(dsn, backlog["medium"])["resolution"] == "batch"  # kept despite the others


@pytest.mark.parametrize("note", ["", "   "])
def test_an_empty_note_is_refused(
    backlog: dict[str, int], dsn: str, note: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "resolve", str(backlog["medium"]), "--note", note, "--by", "a")

    assert (code, out) == (1, "")
    assert err == (
        "backorder: not a valid resolution:\n  note: String should have at least 1 character\n"
    )
    assert stored(dsn, backlog["medium"])["resolved_at"] is None


# -- bad input ------------------------------------------------------------------------------------

BAD_INPUT = [
    (
        ["--severity", "urgent"],
        2,
        "Invalid value for '--severity': 'urgent' is not one of 'high', 'medium', 'low'.",
    ),
    (["--limit", "0"], 2, "'0': must be a whole number 1..10000"),
    (["--order", " "], 2, "is not an order id"),
    (["--site", "no site"], 2, "letters, digits, _ . - only"),
    (["show"], 2, "Missing argument 'ID'."),
    (["show", "99999999999999999999"], 2, "past the largest exception number"),
    (["resolve", "1"], 2, "Missing option '--note'."),
    (["resolve", "--note", "x"], 2, "Missing argument 'ID...'."),
    (["resolve", "1", "--note", "x", "--by", " "], 1, "by: String should have at least 1"),
    (
        ["resolve", "1", "--by", "a", "--note", "x" * 2001],
        1,
        "note: String should have at most 2000",
    ),
]


@pytest.mark.parametrize(
    ("argv", "code", "expected"), BAD_INPUT, ids=[" ".join(a)[:24] for a, _, _ in BAD_INPUT]
)
def test_bad_input_is_a_message_never_a_traceback(
    dsn: str, argv: list[str], code: int, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    got, out, err = run(capsys, *argv)

    assert (got, out) == (code, "")
    assert expected in err and "Traceback" not in err
    if code == 2:  # a usage error: the command's usage, then what is wrong
        assert err.startswith("Usage: backorder exceptions")


@pytest.mark.parametrize("argv", [[], ["show", "1"], ["resolve", "1", "--note", "x", "--by", "a"]])
def test_an_unreachable_database_is_named(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", "postgresql://nobody@127.0.0.1:1/none")

    code, out, err = run(capsys, *argv)

    assert (code, out) == (1, "")
    assert err.startswith("backorder: cannot reach PostgreSQL") and "Traceback" not in err
