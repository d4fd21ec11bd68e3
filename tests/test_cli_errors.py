"""Nothing a user can type ends in a traceback: every bad file, argument, id or answer from
Temporal is one `backorder: ...` message (or argparse's usage error) naming the problem.

Run through `starter.main`, against the Temporal dev server where Temporal has a say, and as a
real `backorder` process where the whole program matters."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError
from temporalio.client import (
    RPCTimeoutOrCancelledError,
    WorkflowFailureError,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

import cli.allocator
import cli.common
import cli.order_status
import starter
from config import Settings
from domain.order import Order
from embedded.process import find_binary
from tests.conftest import Cli
from tests.test_e2e_cli import ZERO_QUANTITY_ORDER
from worker import build_worker
from workflows.backorder import BackorderWorkflow
from workflows.messages import PriorityChange

CLOSED_PORT = "127.0.0.1:1"
"""Where no Temporal listens: a command that validates first never gets that far."""


def assert_clean(out: str, err: str, expected: str, max_lines: int = 4) -> None:
    """The message names the problem in a few lines; nothing anywhere is a traceback."""
    assert "Traceback" not in out + err, out + err
    assert expected in err, err
    problem = err if err.startswith("backorder: ") else err.split("\n", 1)[-1]  # past usage
    assert 0 < len(problem.strip().splitlines()) <= max_lines, err


@pytest.fixture
def nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Temporal is out of reach: only what is checked before connecting can pass."""
    monkeypatch.setenv("BACKORDER_TEMPORAL__TARGET", CLOSED_PORT)


# -- order files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"order_id": "A\xff"}', "order.json is not UTF-8 text: invalid start byte at byte 15"),
        (
            b'{\n"order_id":\n"\xc3(',
            "is not UTF-8 text: invalid continuation byte at byte 15 (line 3)",
        ),
        (b"", "order.json is empty: expected an order (a JSON object)"),
        (b" \n", "order.json is empty"),
        (b"[1, 2]", "order.json is not a valid order:\n  (order): Input should be an object"),
        (b'"A-1"', "(order): Input should be an object"),
        (b"{not json", "(order): Invalid JSON"),
    ],
    ids=["latin-1", "utf-8-cut", "empty", "blank", "array", "string", "broken-json"],
)
def test_order_start_names_what_is_wrong_with_the_file(
    content: bytes, expected: str, tmp_path: Path, run_cli: Cli, nowhere: None
) -> None:
    path = tmp_path / "order.json"
    path.write_bytes(content)
    code, out, err = run_cli("order", "start", str(path))
    assert code == 1
    assert_clean(out, err, expected)


def test_order_start_of_a_directory_or_a_missing_file(tmp_path: Path, run_cli: Cli) -> None:
    code, out, err = run_cli("order", "start", str(tmp_path))
    assert code == 1
    assert_clean(out, err, f"backorder: cannot read {tmp_path}: Is a directory")
    code, out, err = run_cli("order", "start", str(tmp_path / "nope.json"))
    assert code == 1
    assert_clean(out, err, "nope.json: No such file or directory")


def test_order_start_from_stdin_that_is_not_utf8(
    run_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"{}\n\xfe")))
    code, out, err = run_cli("order", "start", "-")
    assert code == 1
    assert_clean(
        out, err, "standard input is not UTF-8 text: invalid start byte at byte 3 (line 2)"
    )


def test_a_real_backorder_process_reports_a_binary_order_file(tmp_path: Path) -> None:
    path = tmp_path / "order.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    proc = subprocess.run(
        [str(find_binary("backorder")), "order", "start", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"BACKORDER_TEMPORAL__TARGET": CLOSED_PORT, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1
    assert (
        proc.stderr
        == f"backorder: {path} is not UTF-8 text: invalid start byte at byte 0 (line 1)\n"
    )


# -- messages to an order are validated before anything is sent -----------------------------------

AT_LEAST_1 = "String should have at least 1 character"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["priority", "A-1", ""], f"priority change:\n  tier: {AT_LEAST_1}", id="tier"),
        pytest.param(
            ["priority", "A-1", "v" * 51], "tier: String should have at most 50", id="long"
        ),
        pytest.param(["priority", "A-1", "vip", "--reason", ""], f"reason: {AT_LEAST_1}", id="why"),
        pytest.param(
            ["check", "A-1", "--reason", ""], f"check:\n  reason: {AT_LEAST_1}", id="check"
        ),
        pytest.param(["check", "A-1", "--reason", "r" * 501], "at most 500", id="long-check"),
        pytest.param(["consent", "A-1", "--channel", ""], f"consent:\n  channel: {AT_LEAST_1}"),
        pytest.param(["cancel", "A-1", "--reason", ""], f"cancel request:\n  reason: {AT_LEAST_1}"),
        pytest.param(
            ["cancel", "A-1", "--by", "b" * 201], "requested_by: String should have at most"
        ),
    ],
)
def test_a_bad_message_names_the_field_before_temporal_is_reached(
    argv: list[str], expected: str, run_cli: Cli, nowhere: None
) -> None:
    code, out, err = run_cli("order", *argv)
    assert code == 1 and err.startswith("backorder: not a valid ")
    assert_clean(out, err, expected)


QUANTITY = "the quantity of line L2 must be a whole number above 0"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("L2:0", f"'L2:0': {QUANTITY}"),
        ("L2:x", f"'L2:x': {QUANTITY}"),
        ("L2:-1", f"'L2:-1': {QUANTITY}"),
        ("L2:", f"'L2:': {QUANTITY}"),
        ("L2:1.5", f"'L2:1.5': {QUANTITY}"),
        (":3", "':3': no line id (expected LINE or LINE:QUANTITY, QUANTITY a whole number above"),
        (" L2:1", "' L2:1': not a valid line id: String should match pattern"),
    ],
)
def test_a_bad_cancel_line_names_the_line_and_what_quantity_it_takes(
    line: str, expected: str, run_cli: Cli
) -> None:
    code, out, err = run_cli("order", "cancel", "A-1", f"--line={line}")
    assert code == 2
    assert_clean(out, err, f"Invalid value for '--line': {expected}")


# -- order status of a workflow that has no status ------------------------------------------------


@pytest.fixture
def on_dev_server(
    dev_env: WorkflowEnvironment, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI talks to the dev server, on the test's task queue, with a 1 s status query."""
    monkeypatch.setenv(
        "BACKORDER_TEMPORAL__TARGET", dev_env.client.service_client.config.target_host
    )
    monkeypatch.setenv("BACKORDER_TEMPORAL__TASK_QUEUE", settings.temporal.task_queue)
    monkeypatch.setattr(cli.order_status, "QUERY_TIMEOUT", dt.timedelta(seconds=1))


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("argv", "then"),
    [
        (["inventory", "receipt", "KTP", "DC", "1", "--id", "r-1"], "sending them again"),
        (["check", "--sku", "KTP"], "asking again is safe"),
    ],
)
async def test_an_allocator_nobody_serves_is_a_message_not_a_hang(
    argv: list[str],
    then: str,
    run_cli: Cli,
    on_dev_server: None,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No worker polls the site's task queue: the command gives up after its patience and
    says where the allocator should have been served, and that trying again is safe."""
    monkeypatch.setattr(cli.allocator, "ANSWER_WITHIN", 2.0)
    site = f"nobody-{uuid.uuid4().hex[:6]}"
    code, out, err = await asyncio.to_thread(run_cli, *argv, "--site", site)
    assert code == 1, (out, err)
    assert f"allocator-{site} did not answer within 2s" in err
    assert f"is a worker polling task queue {settings.temporal.allocator_queue}?" in err
    assert then in err and "Traceback" not in err


@pytest.mark.e2e
async def test_status_of_a_workflow_that_failed_validation_shows_why(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    settings: Settings,
    on_dev_server: None,
    run_cli: Cli,
) -> None:
    """Started raw with a zero quantity, the workflow failed at once: its status query cannot
    be answered (with a worker: the query fails; without: nobody answers), its failure can."""
    workflow_id = f"backorder-BAD-{uuid.uuid4().hex[:8]}"
    expected = (
        f"backorder: no status for {workflow_id}: workflow failed: invalid Order: "
        "lines.0.quantity: Input should be greater than 0 (InvalidInput)\n"
    )
    async with build_worker(dev_env.client, pg_pool, settings):
        handle = await dev_env.client.start_workflow(
            "BackorderWorkflow",
            ZERO_QUANTITY_ORDER,
            id=workflow_id,
            task_queue=settings.temporal.task_queue,
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        code, out, err = await asyncio.to_thread(run_cli, "order", "status", workflow_id)
        assert (code, out, err) == (1, "", expected)
        code, out, err = await asyncio.to_thread(run_cli, "order", "status", workflow_id, "--json")
    assert code == 1 and err == expected
    assert json.loads(out) == {
        "workflow_id": workflow_id,
        "workflow_status": "failed",
        "error": "invalid Order: lines.0.quantity: Input should be greater than 0 (InvalidInput)",
    }
    code, out, err = await asyncio.to_thread(run_cli, "order", "status", workflow_id)  # no worker
    assert (code, out, err) == (1, "", expected)


@pytest.mark.e2e
async def test_status_of_a_running_workflow_without_a_worker_says_nobody_answered(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    example_order: Order,
    on_dev_server: None,
    run_cli: Cli,
) -> None:
    order = example_order.model_copy(update={"order_id": f"NW-{uuid.uuid4().hex[:8]}"})
    handle = await dev_env.client.start_workflow(
        BackorderWorkflow.run, order, id=order.workflow_id, task_queue=settings.temporal.task_queue
    )
    try:
        code, out, err = await asyncio.to_thread(
            run_cli, "order", "status", order.order_id, "--json"
        )
    finally:
        await handle.terminate("test over")
    assert code == 1
    why = (
        "no worker answered the status query within 1s "
        f"(is a worker polling task queue {settings.temporal.task_queue}?)"
    )
    assert err == f"backorder: no status for {order.workflow_id}: workflow running: {why}\n"
    assert json.loads(out)["error"] == why


# -- a table of bad input, against the dev server -------------------------------------------------

X = f"NOPE-{uuid.uuid4().hex[:8]}"
"""An order no workflow was started for."""

BAD_INPUT: list[tuple[str, int, str]] = [
    # Click's usage error (exit 2): the option and why
    (f"order consent {X} --until 2026-13-01", 2, "'2026-13-01' is not a date YYYY-MM-DD (month"),
    (f"order consent {X} --until 1/12/2026", 2, "'--until': '1/12/2026' is not a date YYYY-MM-DD"),
    ("inventory po P-1 KTP DC 5 --date 2026-02-30", 2, "(day is out of range for month)"),
    ("inventory location DC --rank x", 2, "'--rank': 'x' is not a valid integer"),
    ("inventory receipt KTP DC many", 2, "'QUANTITY': 'many' is not a valid integer"),
    ("inventory load f.jsonl --chunk-size 0", 2, "'0': must be a whole number 1..1000"),
    ("inventory load f.jsonl --chunk-size x", 2, "'x': must be a whole number 1..1000"),
    ("setup temporal --retention-days 99999999999", 2, "must be a whole number 1..36500"),
    ("order status ''", 2, f"'ORDER': '' is not an order id: {AT_LEAST_1}"),
    ("order status backorder-", 2, f"'backorder-' is not an order id: {AT_LEAST_1}"),
    ("check --order ' A-1'", 2, "' A-1' is not an order id: String should match pattern"),
    ("order frobnicate", 2, "No such command 'frobnicate'"),
    ("frobnicate", 2, "No such command 'frobnicate'"),
    ("allocator status --site a/b", 2, "'--site': 'a/b': letters, digits, _ . - only"),
    (f"order cancel {X} --line L2:0", 2, QUANTITY),
    # the command's own message (exit 1)
    ("inventory receipt '' DC 1", 1, f"not a valid receipt event:\n  sku: {AT_LEAST_1}"),
    ("inventory adjust KTP DC 0 --reason r", 1, "(event): an adjustment's delta must not be 0"),
    ("check --sku ''", 1, f"not a valid check:\n  skus.0: {AT_LEAST_1}"),
    ("inventory load nope.jsonl", 1, "cannot read nope.jsonl: No such file or directory"),
    (f"order status {X}", 1, f"backorder: no workflow backorder-{X}"),
    (f"order status {X} --json", 1, f"backorder: no workflow backorder-{X}"),
    (f"order cancel {X} --line L1:2", 1, f"backorder: no workflow backorder-{X}"),
    (f"order consent {X} --until 2026-12-01", 1, f"backorder: no workflow backorder-{X}"),
    (f"order check {X}", 1, f"backorder: no workflow backorder-{X}"),
    (f"order priority {X} vip", 1, f"backorder: no workflow backorder-{X}"),
    (f"order priority {X} ''", 1, f"not a valid priority change:\n  tier: {AT_LEAST_1}"),
    (f"allocator status --site {X}", 1, f"no allocator for site {X} yet"),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("argv", "code", "expected"), BAD_INPUT, ids=[a for a, _, _ in BAD_INPUT])
async def test_bad_input_is_a_message_never_a_traceback(
    argv: str, code: int, expected: str, run_cli: Cli, on_dev_server: None, tmp_path: Path
) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        got, out, err = await asyncio.to_thread(run_cli, *shlex.split(argv))
    assert got == code, (out, err)
    assert_clean(out, err, expected)


@pytest.mark.e2e
async def test_a_namespace_temporal_does_not_have_is_not_a_missing_workflow(
    run_cli: Cli, on_dev_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Temporal's NOT_FOUND is about the namespace: said in its words, through main's net."""
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("BACKORDER_TEMPORAL__NAMESPACE", namespace)
    code, out, err = await asyncio.to_thread(run_cli, "order", "status", X)
    assert (code, out) == (1, "")
    assert err == (
        f"backorder: Temporal refused the request (not found): Namespace {namespace} is not "
        "found. (`backorder setup temporal` creates it)\n"
    )


# -- the safety net in main -----------------------------------------------------------------------


def bad_priority() -> ValidationError:
    try:
        PriorityChange.model_validate({"tier": ""})
    except ValidationError as err:
        return err
    raise AssertionError("an empty tier is valid")


def rpc(status: RPCStatusCode, message: str) -> RPCError:
    return RPCError(message, status, b"")


LATE = "Temporal did not answer in time"
REFUSED = "Temporal refused the request"


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (bad_priority(), f"not a valid PriorityChange:\n  tier: {AT_LEAST_1}"),
        (
            rpc(RPCStatusCode.PERMISSION_DENIED, "unauthorized"),
            f"{REFUSED} (permission denied): unauthorized",
        ),
        (
            rpc(RPCStatusCode.UNAVAILABLE, "connection reset"),
            f"{REFUSED} (unavailable): connection reset",
        ),
        (
            rpc(RPCStatusCode.INVALID_ARGUMENT, "id too long"),
            f"{REFUSED} (invalid argument): id too long",
        ),
        (rpc(RPCStatusCode.DEADLINE_EXCEEDED, "deadline exceeded"), f"{LATE}: deadline exceeded"),
        (
            WorkflowUpdateFailedError(ApplicationError("closing")),
            "the workflow refused the update: closing",
        ),
        (WorkflowQueryFailedError("unknown query"), "the workflow's query failed: unknown query"),
        (RPCTimeoutOrCancelledError("waiting for update"), f"{LATE}: waiting for update"),
        (TimeoutError(), LATE),
        (
            PermissionError(13, "Permission denied", "/etc/tls.key"),
            "/etc/tls.key: Permission denied",
        ),
        (OSError(98, "Address already in use"), "[Errno 98] Address already in use"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_main_turns_what_no_command_expects_into_one_message(
    failure: BaseException,
    expected: str,
    run_cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Raised where a command meets Temporal (connecting), it reaches main through asyncio."""

    async def connect(settings: Settings) -> None:
        raise failure

    monkeypatch.setattr(cli.common, "connect_temporal", connect)
    assert run_cli("order", "status", "A-1") == (1, "", f"backorder: {expected}\n")


def test_a_broken_pipe_is_left_to_run_and_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """`backorder ... | head`: not a failure; `run_and_exit` exits 0."""

    async def connect(settings: Settings) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli.common, "connect_temporal", connect)
    with pytest.raises(BrokenPipeError):
        starter.main(["order", "status", "A-1"])
