"""`backorder order start FILE.jsonl`: a batch of orders, one a line, on the Temporal dev server.

Good lines start, bad lines are named by their number and never started (or nothing starts,
with --all-or-nothing); a batch sent again starts nothing twice; standard input works with
--batch; the summary is a table, or JSON; nothing ANSI reaches a pipe."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

import cli.common
import cli.order_batch
from cli.tables import progress_bar
from config import Settings
from domain.order import Order
from embedded.process import find_binary
from tests.conftest import Cli
from worker import build_worker
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus

ANSI = "\x1b"


@pytest.fixture
def order_line(example_order: Order) -> Callable[..., str]:
    """One JSON line: the example order under another id, with fields changed as given."""

    def line(order_id: str, **changes: Any) -> str:
        data = json.loads(example_order.model_dump_json())
        data.update(order_id=order_id, order_number=f"N-{order_id}", **changes)
        return json.dumps(data)

    return line


def bad_quantity(line: str) -> str:
    data = json.loads(line)
    data["lines"][0]["quantity"] = 0
    return json.dumps(data)


@pytest.fixture
def on_temporal(
    dev_env: WorkflowEnvironment, settings: Settings, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's settings: this dev server, the test's task queue, the test's database."""
    monkeypatch.setenv(
        "BACKORDER_TEMPORAL__TARGET", dev_env.client.service_client.config.target_host
    )
    monkeypatch.setenv("BACKORDER_TEMPORAL__TASK_QUEUE", settings.temporal.task_queue)
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", pg_dsn)


def write(path: Path, *lines: str) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def count_row(out: str, name: str) -> int:
    """The number on the summary table's row `name` (`started   3`)."""
    found = re.search(rf"^\s*{name}\s+(\d+)\s*$", out, re.MULTILINE)
    assert found, out
    return int(found.group(1))


async def workflow_run(env: WorkflowEnvironment, order_id: str) -> str | None:
    """The run id of the order's workflow; None when it has none."""
    try:
        desc = await env.client.get_workflow_handle(f"backorder-{order_id}").describe()
    except RPCError as err:
        assert err.status is RPCStatusCode.NOT_FOUND
        return None
    assert desc.status is WorkflowExecutionStatus.RUNNING
    return desc.run_id


@pytest.mark.e2e
async def test_a_batch_starts_each_order_once_however_often_it_is_sent(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    settings: Settings,
    on_temporal: None,
    run_cli: Cli,
    order_line: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = [f"OB-{tag}-{i}" for i in range(3)]
    batch = write(tmp_path / "orders.jsonl", "# the storefront's export", *map(order_line, ids), "")
    async with build_worker(dev_env.client, pg_pool, settings):
        code, out, err = await asyncio.to_thread(run_cli, "order", "start", batch)
        assert code == 0, (out, err)
        assert [count_row(out, n) for n in ("started", "already started", "refused")] == [3, 0, 0]
        assert ANSI not in out + err and err == ""
        runs = {i: await workflow_run(dev_env, i) for i in ids}
        assert None not in runs.values()
        status = await dev_env.client.get_workflow_handle_for(
            BackorderWorkflow.run, f"backorder-{ids[0]}"
        ).query(BackorderWorkflow.status)
        assert status.status is BackorderStatus.BACKORDERED  # a real order, accepted

        code, out, err = await asyncio.to_thread(run_cli, "order", "start", batch, "--json")
        assert code == 0, (out, err)
        again = json.loads(out)
        assert again | {"results": []} == {
            "file": batch, "lines": 3, "started": 0, "already_started": 3, "refused": 0,
            "not_sent": 0, "stopped": None, "results": [],
        }  # fmt: skip
        assert [(r["line"], r["order_id"], r["outcome"]) for r in again["results"]] == [
            (2, ids[0], "already_started"),
            (3, ids[1], "already_started"),
            (4, ids[2], "already_started"),
        ]
        assert {r["order_id"]: r["run_id"] for r in again["results"]} == runs  # the same runs
        assert {i: await workflow_run(dev_env, i) for i in ids} == runs

        new = f"OB-{tag}-stdin"
        piped = order_line(ids[1]) + "\r\n\r\n" + order_line(new) + "\r\n"
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(piped.encode())))
        code, out, err = await asyncio.to_thread(
            run_cli, "order", "start", "-", "--batch", "--json", "--concurrency", "1"
        )
        assert code == 0, (out, err)
        summary = json.loads(out)
        assert summary["file"] == "standard input"
        assert [(r["line"], r["order_id"], r["outcome"]) for r in summary["results"]] == [
            (1, ids[1], "already_started"),
            (3, new, "started"),
        ]
        assert summary["results"][1]["run_id"] == await workflow_run(dev_env, new)

        single = tmp_path / "one.json"  # the single start keeps refusing a second start
        single.write_text(order_line(ids[0]))
        code, _, err = await asyncio.to_thread(run_cli, "order", "start", str(single))
        assert code == 1 and "already has a workflow" in err


@pytest.mark.e2e
async def test_bad_lines_are_named_by_number_and_only_the_good_ones_start(
    dev_env: WorkflowEnvironment,
    on_temporal: None,
    run_cli: Cli,
    order_line: Callable[..., str],
    tmp_path: Path,
) -> None:
    """No worker: starting is what is tested, the workflows wait for one."""
    tag = uuid.uuid4().hex[:8]
    good, bad = [f"G-{tag}-{i}" for i in (1, 5)], [f"B-{tag}-{i}" for i in (2, 7, 9)]
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    batch = write(
        tmp_path / "orders.ndjson",
        order_line(good[0]),  # 1
        bad_quantity(order_line(bad[0])),  # 2
        f'{{"order_id": "B-{tag}-3", ',  # 3
        "   ",  # 4
        order_line(good[1]),  # 5
        order_line(good[0]),  # 6: the same order again
        order_line(bad[1], placed_at=tomorrow),  # 7
        "# a comment",  # 8
        bad_quantity(order_line(bad[2], currency="XYZ")),  # 9
    )
    code, out, err = await asyncio.to_thread(run_cli, "order", "start", batch)
    assert code == 1
    assert [count_row(out, n) for n in ("started", "already started", "refused")] == [2, 0, 5]
    refused = [ln.split(None, 2) for ln in out.splitlines() if re.match(r"\s*\d+\s+\S", ln)]
    assert [row[0] for row in refused] == ["2", "3", "6", "7", "9"]
    assert err == (
        "backorder: 5 of 7 lines refused; fix them and start the file again (orders already "
        "started come back as already started, never twice)\n"
    )
    assert [await workflow_run(dev_env, i) is not None for i in good + bad] == [
        True, True, False, False, False,
    ]  # fmt: skip

    code, out, err = await asyncio.to_thread(run_cli, "order", "start", batch, "--json")
    assert code == 1 and "5 of 7 lines refused" in err
    summary = json.loads(out)
    assert (summary["started"], summary["already_started"], summary["refused"]) == (0, 2, 5)
    reasons = {r["line"]: r["reasons"] for r in summary["results"] if r["outcome"] == "refused"}
    assert reasons[2] == ["lines.0.quantity: Input should be greater than 0"]
    assert reasons[3][0].startswith("(order): Invalid JSON: EOF while parsing")
    assert reasons[6] == [f"order_id '{good[0]}' repeats line 1; an order is accepted once"]
    assert reasons[7][0].startswith(f"placed_at: placed_at {tomorrow[:10]}")
    assert [r.split(":")[0] for r in reasons[9]] == ["currency", "lines.0.quantity"]
    assert {r["line"]: r["order_id"] for r in summary["results"]} == {
        1: good[0], 2: bad[0], 3: None, 5: good[1], 6: good[0], 7: bad[1], 9: bad[2],
    }  # fmt: skip


def test_all_or_nothing_starts_nothing_when_a_line_is_bad(
    run_cli: Cli,
    order_line: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decided before Temporal is reached: here no Temporal listens at all."""
    monkeypatch.setenv("BACKORDER_TEMPORAL__TARGET", "127.0.0.1:1")
    batch = write(tmp_path / "b.txt", order_line("A-1"), bad_quantity(order_line("A-2")))
    code, out, err = run_cli("order", "start", batch, "--batch", "--all-or-nothing", "--json")
    assert code == 1
    assert err.startswith("backorder: 1 of 2 lines refused; with --all-or-nothing nothing was")
    assert [(r["line"], r["outcome"], r["reasons"]) for r in json.loads(out)["results"]] == [
        (1, "not_sent", ["not sent: 1 line refused and --all-or-nothing given"]),
        (2, "refused", ["lines.0.quantity: Input should be greater than 0"]),
    ]


def test_with_temporal_out_of_reach_the_bad_lines_are_still_named(
    run_cli: Cli, order_line: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKORDER_TEMPORAL__TARGET", "127.0.0.1:1")
    batch = write(tmp_path / "b.jsonl", order_line("A-1"), bad_quantity(order_line("A-2")))
    code, out, err = run_cli("order", "start", batch)
    assert code == 1
    assert [count_row(out, n) for n in ("started", "refused", "not sent")] == [0, 1, 1]
    assert "lines.0.quantity: Input should be greater than 0" in out
    assert err.startswith("backorder: nothing started: cannot reach Temporal at 127.0.0.1:1")
    assert "\n1 line not sent; starting the file again is safe" in err


def test_batch_options_are_refused_for_a_single_order(run_cli: Cli, tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text("{}")
    assert run_cli("order", "start", str(one), "--json") == (
        1,
        "",
        f"backorder: --json: only for a JSON-lines batch (a .jsonl or .ndjson file, or --batch);"
        f" {one} is read as one order\n",
    )


@pytest.mark.e2e
async def test_through_a_pipe_nothing_is_ansi(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    order_line: Callable[..., str],
    tmp_path: Path,
) -> None:
    """A real `backorder` process whose output goes to pipes, under a colour terminal's TERM:
    plain text, no progress bar, no colour."""
    tag = uuid.uuid4().hex[:8]
    batch = write(
        tmp_path / "orders.jsonl", order_line(f"P-{tag}"), bad_quantity(order_line(f"Q-{tag}"))
    )
    env = os.environ | {
        "BACKORDER_TEMPORAL__TARGET": dev_env.client.service_client.config.target_host,
        "BACKORDER_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
        "TERM": "xterm-256color",
    }
    proc = await asyncio.to_thread(
        subprocess.run,
        [str(find_binary("backorder")), "order", "start", batch],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert count_row(proc.stdout, "started") == 1 and count_row(proc.stdout, "refused") == 1
    assert "lines.0.quantity: Input should be greater than 0" in proc.stdout
    assert ANSI not in proc.stdout + proc.stderr
    assert proc.stderr.startswith("backorder: 1 of 2 lines refused")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_progress_bar_and_a_pipe_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(Standard error replaced in the test itself: pytest sets its own before each test.)"""
    terminal, pipe = Terminal(), io.StringIO()
    monkeypatch.setattr("sys.stderr", terminal)
    with progress_bar("starting orders", 3) as advance:
        for _ in range(3):
            advance(1)
    shown = terminal.getvalue()
    assert "starting orders" in shown and "3/3" in shown and ANSI in shown

    monkeypatch.setattr("sys.stderr", pipe)
    with progress_bar("starting orders", 3) as advance:
        advance(3)
    assert pipe.getvalue() == ""


class FakeTemporal:
    """Stands in for `start_backorder`: counts the starts in flight, refuses the orders told."""

    def __init__(self, refuse: dict[str, RPCStatusCode] | None = None) -> None:
        self.refuse = refuse or {}
        self.in_flight = self.most_in_flight = 0
        self.started: list[str] = []

    async def start(self, client: Client, settings: Settings, order: Order) -> SimpleNamespace:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            status = self.refuse.get(order.order_id)
            if status is not None:
                raise RPCError(f"{status.name.lower()} for {order.order_id}", status, b"")
            self.started.append(order.order_id)
            return SimpleNamespace(result_run_id=f"run-{order.order_id}")
        finally:
            self.in_flight -= 1


@pytest.fixture
def fake_temporal(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeTemporal]:
    async def connect(settings: Settings) -> Client:
        return None  # type: ignore[return-value]

    monkeypatch.setattr(cli.common, "connect_temporal", connect)

    def install(**kw: Any) -> FakeTemporal:
        fake = FakeTemporal(**kw)
        monkeypatch.setattr(cli.order_batch, "start_backorder", fake.start)
        return fake

    return install


def test_starts_are_bounded_and_a_refusal_of_every_line_stops_the_batch(
    fake_temporal: Callable[..., FakeTemporal],
    run_cli: Cli,
    order_line: Callable[..., str],
    tmp_path: Path,
) -> None:
    fake = fake_temporal()
    many = write(tmp_path / "many.jsonl", *(order_line(f"M-{i}") for i in range(40)))
    code, out, _ = run_cli("order", "start", many, "--concurrency", "4")
    assert code == 0 and count_row(out, "started") == 40
    assert fake.most_in_flight == 4 and sorted(fake.started) == sorted(f"M-{i}" for i in range(40))

    fake = fake_temporal(
        refuse={"X-2": RPCStatusCode.INVALID_ARGUMENT, "X-4": RPCStatusCode.UNAVAILABLE}
    )
    batch = write(tmp_path / "x.jsonl", *(order_line(f"X-{i}") for i in range(1, 7)))
    code, out, err = run_cli("order", "start", batch, "--concurrency", "1", "--json")
    assert code == 1
    summary = json.loads(out)
    assert [(r["order_id"], r["outcome"]) for r in summary["results"]] == [
        ("X-1", "started"), ("X-2", "refused"), ("X-3", "started"), ("X-4", "refused"),
        ("X-5", "not_sent"), ("X-6", "not_sent"),
    ]  # fmt: skip
    assert summary["results"][1]["reasons"] == [
        "Temporal refused the request (invalid argument): invalid_argument for X-2"
    ]
    stopped = "starting stopped at line 4: Temporal refused the request (unavailable)"
    assert summary["stopped"].startswith(stopped)
    assert err.startswith(f"backorder: {stopped}") and "\n2 lines not sent; starting" in err
    assert fake.started == ["X-1", "X-3"]
