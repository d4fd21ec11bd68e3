"""`backorder notifications` against a real PostgreSQL outbox: list with filters, show the
rendered text, requeue failed notices; clear errors when the database or a key is missing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

import starter


@pytest.fixture
def dsn(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM notices")
    return pg_dsn


def add(dsn: str, order_id: str, kind: str, status: str, **extra: Any) -> str:
    key = f"backorder-{order_id}/{kind}/{uuid.uuid4().hex[:6]}"
    row = {
        "recipient": "ann@example.com",
        "subject": f"Order #{order_id}: {kind.replace('_', ' ')}",
        "body": f"Hello,\n\nabout your order #{order_id}.\n",
        "attempts": 0,
        "last_error": None,
        **extra,
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO notices (key, order_id, kind, payload, recipient, subject, body,
                                   status, attempts, last_error, delivered_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                       CASE WHEN %s = 'delivered' THEN now() END)""",
            (
                key,
                order_id,
                kind,
                Jsonb({"order_number": order_id}),
                row["recipient"],
                row["subject"],
                row["body"],
                status,
                row["attempts"],
                row["last_error"],
                status,
            ),
        )
    return key


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = starter.main(["notifications", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_lists_newest_first_with_filters(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys) == (0, "no notices\n", "")
    add(dsn, "A-1", "on_backorder", "delivered", attempts=1)
    failed = add(dsn, "A-1", "shipped", "failed", attempts=12, last_error="webhook: 503")
    add(dsn, "B-2", "still_waiting", "pending", attempts=2, last_error="timed out")

    code, out, _ = run(capsys)
    assert code == 0
    header, rule, *rows = out.splitlines()
    assert header.split()[:5] == ["created", "(UTC)", "order", "kind", "to"]
    assert set(rule) == {"─"}
    assert [row.split()[3] for row in rows] == ["still_waiting", "shipped", "on_backorder"]
    assert "pending (try 2 failed: timed out)" in out
    assert "FAILED after 12: webhook: 503" in out
    assert "Order #A-1: shipped" in out and failed in rows[1]

    code, out, _ = run(capsys, "--status", "failed")
    assert out.count("\n") == 3 and "shipped" in out  # the header, its rule, the one row
    code, out, _ = run(capsys, "--order", "B-2")
    assert "still_waiting" in out and "A-1" not in out
    code, out, _ = run(capsys, "--order", "Z-9")
    assert out == "no notices match\n"
    code, out, _ = run(capsys, "--order", "A-1", "--json")
    rows = json.loads(out)
    assert {r["kind"] for r in rows} == {"on_backorder", "shipped"}
    assert rows[0]["body"].startswith("Hello")


def test_show_prints_the_message_and_its_delivery(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = add(dsn, "C-3", "cancelled", "failed", attempts=3, last_error="410 Gone")

    code, out, _ = run(capsys, "show", key)

    assert code == 0
    assert out.startswith("To: ann@example.com\nSubject: Order #C-3: cancelled\n\nHello,\n")
    assert f"-- cancelled for order C-3, key {key}: failed, 3 tries; last error: 410 Gone" in out
    assert run(capsys, "show", "nope/none") == (
        1,
        "",
        "backorder: no notice with key nope/none\n",
    )


def test_retry_requeues_failed_notices_only(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    failed = add(dsn, "D-4", "shipped", "failed", attempts=12, last_error="503")
    other = add(dsn, "D-4", "refunded", "failed", attempts=1, last_error="410")
    sent = add(dsn, "D-4", "on_backorder", "delivered", attempts=1)

    code, out, _ = run(capsys, "retry", failed, sent)

    assert code == 0
    assert f"not requeued (no such notice, or not failed): {sent}" in out
    assert "requeued 1 notice\n" in out
    assert "stay in the outbox" in out  # the default channel sends nothing
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT key, status, attempts FROM notices ORDER BY key").fetchall()
    assert sorted(rows) == sorted(
        [(failed, "pending", 0), (other, "failed", 1), (sent, "delivered", 1)]
    )

    code, out, _ = run(capsys, "retry", "--failed")
    assert "requeued 1 notice\n" in out
    assert run(capsys, "retry")[0:3:2] == (
        1,
        "backorder: name the notices to retry, or --failed for every failed one\n",
    )


def test_an_unreachable_database_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", "postgresql://postgres@127.0.0.1:9/none")
    code, out, err = run(capsys)
    assert code == 1 and out == ""
    assert err.startswith("backorder: cannot reach PostgreSQL: ")
    assert err.count("\n") == 1


def test_delivery_status_says_when_nothing_is_delivered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(capsys, "delivery") == (
        0,
        "notifications.channel is outbox: notices are kept, not delivered (no delivery)\n",
        "",
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--status", "sent"], "Invalid value for '--status': 'sent' is not one of 'pending', "),
        (["--limit", "x"], "Invalid value for '--limit': 'x' is not a valid integer."),
        (["show"], "Missing argument 'KEY'."),
    ],
)
def test_bad_input_is_a_usage_error(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *argv)

    assert (code, out) == (2, "")
    assert err.startswith("Usage: backorder notifications") and expected in err
    assert "Traceback" not in err
