"""`backorder shipment load FILE`: a warehouse's JSON-lines feed of fulfilment reports.

Without servers: every line is checked against the `FulfilmentReport` contract and a bad one
named by its number, field and why; nothing is sent with --all-or-nothing and a bad line; a
file a user names wrongly is one line, never a traceback; reports of one order go one after
another in file order while different orders go together. On the dev server with the real
worker: a short pick then a shipped reach the order, an unknown shipment and a bad line are
outcomes of their own, loading the file again changes nothing, and an order that ended
refuses."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from cli.fulfilment_feed import bad_line_text
from config import Settings
from domain.order_book import ShipmentStatus
from payments.sandbox import SandboxGateway
from runtime.fulfilment_feed import (
    FeedSummary,
    LineResult,
    Outcome,
    ReportLine,
    Stopped,
    by_order,
    read_reports,
    send_reports,
)
from tests.checkout import checked_out
from tests.conftest import Cli
from tests.polling import eventually
from worker import build_worker
from workflows.backorder import BackorderWorkflow

AT = "2026-12-02T16:00:00Z"


def shipped(shipment_id: str, **changes: Any) -> str:
    fields = {
        "type": "shipped",
        "shipment_id": shipment_id,
        "carrier": "DHL",
        "tracking_number": "JD0001",
        "shipped_at": AT,
        **changes,
    }
    return json.dumps({k: v for k, v in fields.items() if v is not None})


def delivered(shipment_id: str) -> str:
    return json.dumps({"type": "delivered", "shipment_id": shipment_id, "delivered_at": AT})


def short_pick(shipment_id: str, line_id: str, found: Any) -> str:
    return json.dumps(
        {
            "type": "short_pick",
            "shipment_id": shipment_id,
            "lines": [{"line_id": line_id, "found": found}],
            "reported_at": AT,
        }
    )


def write(path: Path, *lines: str) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# -- checking, no servers ----------------------------------------------------------------------


def test_every_line_is_checked_and_a_bad_one_named_by_number_field_and_why() -> None:
    text = "\n".join(
        [
            "# today's shipments",  # 1
            "",  # 2
            shipped("A-1-S1"),  # 3
            '{"type": "shipped", "shipment_id": "A-1-S2",',  # 4: bad JSON
            '{"type": "lost", "shipment_id": "A-1-S3"}',  # 5: unknown type
            shipped("A-1-S4", tracking_number=None),  # 6: a field missing
            '{"shipment_id": "A-1-S5"}',  # 7: no type
            "   ",  # 8
            short_pick("A-1-S6", "L1", "2"),  # 9: a count as a string
            json.dumps({**json.loads(delivered("A-1-S7")), "order_id": "A-1"}),  # 10
            '["shipped"]',  # 11
            "  # an indented comment",  # 12
            delivered("A-1-S8"),  # 13
        ]
    )
    good, bad = read_reports(io.StringIO(text, newline=None))

    assert [(r.line_no, r.report.type, r.report.shipment_id) for r in good] == [
        (3, "shipped", "A-1-S1"),
        (13, "delivered", "A-1-S8"),
    ]
    said = {b.line_no: bad_line_text(b) for b in bad}
    assert sorted(said) == [4, 5, 6, 7, 9, 10, 11]
    for line_no, message in said.items():
        assert message.startswith(f"line {line_no}: "), message
    assert "malformed JSON" in said[4] and "column" in said[4]
    assert 'type: unknown report type "lost" (one of shipped, short_pick, delivered)' in said[5]
    assert said[6] == "line 6: not a valid shipped report:\n  tracking_number: Field required"
    assert "type: missing (one of shipped, short_pick, delivered)" in said[7]
    assert '  lines.0.found: must be a JSON integer such as 2, not "2"' in said[9]
    assert "  order_id: Extra inputs are not permitted" in said[10]  # not in the contract
    assert said[11] == "line 11: not a JSON object but an array"
    assert {b.line_no: b.shipment_id for b in bad}[6] == "A-1-S4"


def test_a_bom_and_windows_line_endings_are_read_as_any_other_file() -> None:
    text = "\ufeff" + shipped("A-1-S1") + "\r\n# note\r\n" + delivered("A-1-S1") + "\r\n"
    good, bad = read_reports(io.StringIO(text, newline=None))
    assert bad == [] and [r.line_no for r in good] == [1, 3]


def test_a_file_a_user_names_wrongly_is_one_line_and_exit_1(
    tmp_path: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n# no reports\n")))
    empty = write(tmp_path / "empty.jsonl", "# nothing today", "")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"carrier": "M\xfcller"}\n')
    for target, expected in [
        (empty, "holds no reports"),
        ("-", "standard input holds no reports"),
        (str(latin), "is not UTF-8 text: invalid start byte at byte 14 (line 1)"),
        (str(tmp_path), "cannot read"),
        (str(tmp_path / "missing.jsonl"), "cannot read"),
    ]:
        code, out, err = run_cli("shipment", "load", target)
        assert code == 1 and out == "", (target, out, err)
        assert err.startswith("backorder: ") and expected in err, err
        assert err.count("\n") == 1 and "Traceback" not in err, err


def test_all_or_nothing_sends_nothing_when_a_line_is_bad(
    tmp_path: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No database or Temporal is reached: a PostgreSQL that is not there would say so."""
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", "postgresql://nobody@127.0.0.1:1/none")
    feed = write(tmp_path / "feed.jsonl", delivered("A-1-S1"), shipped("A-1-S2", carrier=" "))
    code, out, err = run_cli("shipment", "load", feed, "--all-or-nothing")
    assert code == 1, (out, err)
    assert "line 2: not a valid shipped report:\n  carrier:" in err
    assert "PostgreSQL" not in err and "with --all-or-nothing nothing was sent" in err
    assert "line 1: A-1-S1: not sent (1 bad line, --all-or-nothing)" in out
    assert "0 sent: 0 applied, 0 unchanged, 0 refused; 0 unknown shipments, 1 bad line" in out


# -- sending, no servers -----------------------------------------------------------------------


def lines_of(*shipments: str) -> list[ReportLine]:
    text = "\n".join(delivered(s) for s in shipments)
    good, bad = read_reports(io.StringIO(text))
    assert not bad
    return good


async def test_reports_of_one_order_go_in_file_order_one_at_a_time_orders_together() -> None:
    reports = lines_of("A-S1", "B-S1", "A-S1", "A-S2", "B-S1", "C-S1", "A-S1")
    groups, unknown = by_order(reports, {"A-S1": "A", "A-S2": "A", "B-S1": "B", "C-S1": "C"})
    assert unknown == []
    sent: dict[str, list[int]] = defaultdict(list)
    busy: set[str] = set()
    most_at_once = 0

    async def send(order_id: str, r: ReportLine) -> LineResult:
        nonlocal most_at_once
        assert order_id not in busy, f"two reports of order {order_id} in flight at once"
        busy.add(order_id)
        most_at_once = max(most_at_once, len(busy))
        await asyncio.sleep(0.01)
        busy.discard(order_id)
        sent[order_id].append(r.line_no)
        return LineResult(r.line_no, r.report, Outcome.APPLIED)

    told: list[int] = []
    results, stopped = await send_reports(groups, send, 8, lambda r: told.append(r.line_no))

    assert stopped is None
    assert dict(sent) == {"A": [1, 3, 4, 7], "B": [2, 5], "C": [6]}
    assert most_at_once == 3  # the three orders went together
    assert [r.line_no for r in results] == [1, 2, 3, 4, 5, 6, 7] and sorted(told) == list(
        range(1, 8)
    )


async def test_sending_stops_at_a_failure_every_report_would_meet() -> None:
    reports = lines_of("A-S1", "A-S1", "B-S1")
    groups, _ = by_order(reports, {"A-S1": "A", "B-S1": "B"})

    async def send(order_id: str, r: ReportLine) -> LineResult:
        why = "Temporal refused the request (unavailable)"
        raise Stopped(LineResult(r.line_no, r.report, Outcome.REFUSED, "no answer", why), why)

    results, stopped = await send_reports(groups, send, 1, lambda r: None)

    assert stopped == "sending stopped at line 1: Temporal refused the request (unavailable)"
    assert [(r.line_no, r.outcome) for r in results] == [
        (1, Outcome.REFUSED),
        (2, Outcome.NOT_SENT),
        (3, Outcome.NOT_SENT),
    ]
    assert str(results[2]) == "line 3: B-S1: not sent (sending stopped at line 1)"
    assert FeedSummary.of(results, 0).all_in is False


def test_an_unknown_shipment_is_an_outcome_of_its_own_and_counted() -> None:
    reports = lines_of("A-S1", "NOPE-S1")
    groups, unknown = by_order(reports, {"A-S1": "A"})
    assert list(groups) == ["A"] and [str(u) for u in unknown] == [
        "line 2: no shipment NOPE-S1: fulfilment has not been handed it"
    ]
    applied = LineResult(1, reports[0].report, Outcome.APPLIED)
    summary = FeedSummary.of([applied, *unknown], bad=2)
    assert (
        str(summary) == "1 sent: 1 applied, 0 unchanged, 0 refused; 1 unknown shipment, 2 bad lines"
    )
    assert not summary.all_in
    assert FeedSummary.of([applied], bad=0).all_in


# -- on the dev server, with the real worker ---------------------------------------------------


@pytest.mark.e2e
async def test_a_warehouse_feed_reaches_each_shipments_order_and_loads_again_safely(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    pg_dsn: str,
    tmp_path: Path,
    run_cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = f"tq-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(
        "BACKORDER_TEMPORAL__TARGET", dev_env.client.service_client.config.target_host
    )
    monkeypatch.setenv("BACKORDER_TEMPORAL__TASK_QUEUE", queue)
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", pg_dsn)
    monkeypatch.setenv("BACKORDER_POLICY__FULFILMENT_REPORTS", "shipped")
    settings = Settings(site="test")
    now = await dev_env.get_current_time()
    order = (await checked_out(pg_pool, SandboxGateway(pg_pool), now, "FF")).order
    s1 = f"{order.order_id}-S1"
    feed = write(
        tmp_path / "warehouse.jsonl",
        "# the warehouse's feed",  # 1
        short_pick(s1, "L1", 1),  # 2: one of L1's two units found
        shipped(s1),  # 3
        delivered("NOPE-S1"),  # 4: fulfilment was never handed it
        "",  # 5
        shipped(s1, carrier=None),  # 6: bad
    )

    async def shipment_rows() -> int:
        async with pg_pool.connection() as conn:
            cur = await conn.execute("SELECT 1 FROM shipments WHERE shipment_id = %s", (s1,))
            return len(await cur.fetchall())

    async def load(*more: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(run_cli, "shipment", "load", feed, *more)

    async with build_worker(dev_env.client, pg_pool, settings):
        handle = await dev_env.client.start_workflow(
            BackorderWorkflow.run, order, id=order.workflow_id, task_queue=queue
        )
        await eventually(shipment_rows, lambda n: n == 1)

        code, out, err = await load()
        assert code == 1, (out, err)
        assert out.splitlines() == [
            f"line 2: {s1}: short-picked",
            f"line 3: {s1}: shipped",
            "line 4: no shipment NOPE-S1: fulfilment has not been handed it",
            "2 sent: 2 applied, 0 unchanged, 0 refused; 1 unknown shipment, 1 bad line",
        ]
        assert "line 6: not a valid shipped report:\n  carrier: Field required" in err
        assert "2 of 4 lines not applied" in err and "Traceback" not in err
        status = await handle.query(BackorderWorkflow.status)
        (shipment,) = status.shipments
        assert shipment.status is ShipmentStatus.SHIPPED and shipment.carrier == "DHL"
        assert sum(a.quantity for a in shipment.allotments) == 1  # the short pick came first

        code, out, err = await load()  # the same file again: nothing changes
        assert code == 1, (out, err)
        assert f"line 3: {s1}: shipped already (nothing changed)" in out
        assert "0 applied" in out and "short-picked\n" not in out, out
        # the short pick of a shipment that has shipped since found what it left with
        assert f"line 2: {s1}: short-picked already (nothing changed)" in out, out
        assert "2 unchanged, 0 refused" in out, out
        again = await handle.query(BackorderWorkflow.status)
        assert again.shipments == status.shipments

        await handle.terminate("test over")
        code, out, err = await load()
        assert code == 1 and f"line 3: {s1}: refused (NotRunning): {order.workflow_id}" in out
        assert "0 applied, 0 unchanged, 2 refused" in out, out

    monkeypatch.setenv("BACKORDER_TEMPORAL__TARGET", "127.0.0.1:1")  # Temporal out of reach
    code, out, err = await load()
    assert code == 1 and f"line 2: {s1}: not sent (Temporal out of reach)" in out, (out, err)
    assert "line 4: no shipment NOPE-S1" in out  # the read model still answered
    assert "backorder: nothing sent: cannot reach Temporal" in err and "Traceback" not in err
    assert "\x1b" not in out + err  # no progress bar, no colour through a pipe
