"""End to end on the Temporal dev server: other systems integrate through Temporal itself."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

import starter
from activities.contracts import Severity
from activities.notices import queue_exception
from config import Settings
from domain.order import Order
from embedded.process import find_binary
from payments.sandbox import SandboxGateway
from tests.checkout import checked_out
from tests.polling import eventually
from worker import build_worker
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus
from workflows.search_attributes import SEARCH_ATTRIBUTE_TYPES

pytestmark = pytest.mark.e2e

ZERO_QUANTITY_ORDER = {
    "order_id": "BAD", "order_number": "N", "placed_at": "2026-11-20T10:00:00Z",
    "currency": "USD", "customer": {"id": "c", "email": "c@example.com"},
    "fulfillment": {"type": "sth"},
    "lines": [{"line_id": "1", "sku": "S", "quantity": 0, "unit_price": "1.00"}],
}  # fmt: skip


def temporal_cli(env: WorkflowEnvironment, *args: str) -> subprocess.CompletedProcess[str]:
    address = env.client.service_client.config.target_host
    return subprocess.run(
        [str(find_binary("temporal")), *args, "--address", address, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def order_json(example: Order, order_id: str) -> str:
    return example.model_copy(update={"order_id": order_id}).model_dump_json()


async def test_temporal_cli_starts_with_plain_json_and_reads_status(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    settings: Settings,
    example_order: Order,
) -> None:
    order_id = f"CLI-{uuid.uuid4().hex[:8]}"
    async with build_worker(dev_env.client, pg_pool, settings):
        started = await asyncio.to_thread(
            temporal_cli,
            dev_env,
            "workflow", "start",
            "--type", "BackorderWorkflow",
            "--task-queue", settings.temporal.task_queue,
            "--workflow-id", f"backorder-{order_id}",
            "--input", order_json(example_order, order_id),
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        query = await asyncio.to_thread(
            temporal_cli, dev_env, "workflow", "query",
            "--workflow-id", f"backorder-{order_id}", "--name", "status",
        )  # fmt: skip
        assert query.returncode == 0, query.stderr
        result = json.loads(query.stdout)["queryResult"][0]
        assert result["order_id"] == order_id
        assert result["status"] == "backordered"
        assert result["order_value"] == "50.00"
        assert result["lines"][0] == {
            "line_id": "1", "sku": "KTP", "ordered": 5, "released": 0, "backordered": 5,
            "cancelled": 0,
        }  # fmt: skip

        handle = dev_env.client.get_workflow_handle_for(
            BackorderWorkflow.run, f"backorder-{order_id}"
        )
        described = await handle.describe()
        attrs = described.typed_search_attributes
        from workflows import search_attributes as sa

        assert attrs.get(sa.BACKORDER_STATUS) == "backordered"
        assert attrs.get(sa.BACKORDER_SKUS) == ["KTP"]
        assert attrs.get(sa.ORDER_VALUE) == 50.0
        assert attrs.get(sa.CUSTOMER_TIER) == "standard"

        signal = await asyncio.to_thread(
            temporal_cli, dev_env, "workflow", "signal",
            "--workflow-id", f"backorder-{order_id}", "--name", "cancel",
            "--input", '{"reason": "duplicate order"}',
        )  # fmt: skip
        assert signal.returncode == 0, signal.stderr
        summary = await handle.result()
        assert summary.status is BackorderStatus.CANCELLED


async def test_backorder_cli_start_status_cancel(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    pg_dsn: str,
    settings: Settings,
    example_order: Order,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order_id = f"OC-{uuid.uuid4().hex[:8]}"
    order_file = tmp_path / "order.json"
    order_file.write_text(order_json(example_order, order_id))
    monkeypatch.setenv(
        "BACKORDER_TEMPORAL__TARGET", dev_env.client.service_client.config.target_host
    )
    monkeypatch.setenv("BACKORDER_TEMPORAL__TASK_QUEUE", settings.temporal.task_queue)
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", pg_dsn)  # the read model the worker writes

    def cli(*args: str) -> tuple[int, str, str]:
        code = starter.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    async with build_worker(dev_env.client, pg_pool, settings):
        code, out, _ = await asyncio.to_thread(cli, "order", "start", str(order_file))
        assert code == 0 and f"started backorder-{order_id}" in out
        code, _, err = await asyncio.to_thread(cli, "order", "start", str(order_file))
        assert code == 1 and "already has a workflow" in err

        code, out, _ = await asyncio.to_thread(cli, "order", "status", order_id, "--json")
        assert code == 0 and json.loads(out)["status"] == "backordered"
        code, out, _ = await asyncio.to_thread(cli, "order", "status", f"backorder-{order_id}")
        assert code == 0 and "backordered, workflow running" in out
        assert "open exceptions: none" in out
        async with pg_pool.connection() as conn:
            await queue_exception(
                conn, f"backorder-{order_id}/test", order_id, "ftc_deadline", Severity.HIGH, "look"
            )
        code, out, _ = await asyncio.to_thread(cli, "order", "status", order_id)
        assert code == 0 and "open exceptions: 1" in out and "high ftc_deadline: look" in out

        code, _, err = await asyncio.to_thread(cli, "order", "cancel", order_id, "--line", "9")
        assert code == 1 and "cancel refused" in err and "has no line '9'" in err
        code, out, err = await asyncio.to_thread(cli, "order", "consent", order_id)
        assert code == 1 and "consent refused (NothingToConsent)" in err  # no notice yet
        code, out, _ = await asyncio.to_thread(cli, "order", "priority", order_id, "vip")
        assert code == 0 and "served as vip from now on (was standard)" in out
        code, _, err = await asyncio.to_thread(cli, "order", "priority", order_id, "vip")
        assert code == 1 and "(NothingToChange)" in err and "already served as vip" in err
        code, _, err = await asyncio.to_thread(cli, "order", "priority", order_id, "gold")
        assert code == 1 and "(UnknownTier): unknown tier 'gold'" in err
        code, out, _ = await asyncio.to_thread(cli, "order", "check", order_id)
        assert code == 0 and "check requested" in out and "5 units of KTP waiting" in out
        nope = f"NOPE-{order_id}"
        code, _, err = await asyncio.to_thread(cli, "check", "--order", nope)
        assert code == 1 and f"no such order: {nope} (nothing was checked)" in err
        code, out, _ = await asyncio.to_thread(cli, "check", "--order", nope, "--order", order_id)
        assert code == 0 and f"no such order: {nope}" in out  # the known one is looked at
        code, out, _ = await asyncio.to_thread(cli, "order", "cancel", order_id, "--line", "1:2")
        assert code == 0 and "cancelled 2 x KTP (line 1), 20.00" in out
        code, out, _ = await asyncio.to_thread(cli, "order", "status", order_id)
        assert code == 0 and "tier vip" in out and "next customer_update" in out
        code, out, _ = await asyncio.to_thread(cli, "order", "cancel", order_id, "--reason", "oops")
        assert code == 0 and "cancelled 3 x KTP (line 1), 30.00" in out
        handle = dev_env.client.get_workflow_handle_for(
            BackorderWorkflow.run, f"backorder-{order_id}"
        )
        await handle.result()
        assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED
        code, _, err = await asyncio.to_thread(cli, "order", "cancel", order_id)
        assert code == 1 and "is completed; nothing to change" in err
        code, _, err = await asyncio.to_thread(cli, "order", "status", "no-such-order")
        assert code == 1 and "no workflow backorder-no-such-order" in err


def test_cli_rejects_an_invalid_order_file_with_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(ZERO_QUANTITY_ORDER))
    assert starter.main(["order", "start", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "is not a valid order" in err and "lines.0.quantity" in err


async def test_an_invalid_order_from_the_temporal_cli_fails_the_workflow_clearly(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, settings: Settings
) -> None:
    """Not a workflow task retried forever: a failed workflow whose error names the field."""
    workflow_id = f"backorder-BAD-{uuid.uuid4().hex[:8]}"
    async with build_worker(dev_env.client, pg_pool, settings):
        started = await asyncio.to_thread(
            temporal_cli, dev_env, "workflow", "start",
            "--type", "BackorderWorkflow", "--task-queue", settings.temporal.task_queue,
            "--workflow-id", workflow_id, "--input", json.dumps(ZERO_QUANTITY_ORDER),
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        handle = dev_env.client.get_workflow_handle_for(BackorderWorkflow.run, workflow_id)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidInput" and cause.non_retryable
    assert "lines.0.quantity: Input should be greater than 0" in cause.message
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED


async def test_setup_temporal_creates_namespace_and_search_attributes_idempotently(
    dev_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    namespace = f"shop-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        "BACKORDER_TEMPORAL__TARGET", dev_env.client.service_client.config.target_host
    )
    monkeypatch.setenv("BACKORDER_TEMPORAL__NAMESPACE", namespace)
    code = await asyncio.to_thread(starter.main, ["setup", "temporal", "--retention-days", "7"])
    assert code == 0
    assert f"namespace {namespace} created" in capsys.readouterr().out
    code = await asyncio.to_thread(starter.main, ["setup", "temporal"])
    assert code == 0
    assert f"namespace {namespace} exists" in capsys.readouterr().out

    listed = await dev_env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    assert {
        name: IndexedValueType.Name(kind).removeprefix("INDEXED_VALUE_TYPE_")
        for name, kind in listed.custom_attributes.items()
        if name in SEARCH_ATTRIBUTE_TYPES
    } == {
        "BackorderStatus": "KEYWORD",
        "BackorderSkus": "KEYWORD_LIST",
        "BackorderSince": "DATETIME",
        "CustomerTier": "KEYWORD",
        "OrderValue": "DOUBLE",
        "FtcState": "KEYWORD",
        "OpenExceptions": "INT",
    }


def test_output_piped_into_a_reader_that_stops_early_is_not_an_error() -> None:
    """`backorder order status A-1 | head`: the reader is gone before the output is written."""
    proc = subprocess.run(
        f"{find_binary('backorder')} schema status | true; echo ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == "0" and "Traceback" not in proc.stderr, proc.stderr


async def test_backorder_cli_feeds_inventory_and_runs_a_check(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tag = uuid.uuid4().hex[:8]
    site, sku = f"cli-{tag}", f"SKU-{tag}"
    env = {
        "BACKORDER_TEMPORAL__TARGET": dev_env.client.service_client.config.target_host,
        "BACKORDER_TEMPORAL__TASK_QUEUE": f"tq-{tag}",
        "BACKORDER_SITE": site,
        "BACKORDER_ALLOCATOR__BATCH_WINDOW": "PT0.2S",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    feed = tmp_path / "feed.jsonl"
    feed.write_text(
        "# opening stock\n"
        f'{{"type": "receipt", "event_id": "{tag}-1", "sku": "{sku}", "location": "WH",'
        ' "quantity": 5}\n'
        '{"type": "receipt", "event_id": "broken"\n'
        f'{{"type": "receipt", "event_id": "{tag}-3", "sku": "NOPE", "location": "WH",'
        ' "quantity": 1}\n'
        "\n"
        f'{{"type": "receipt", "event_id": "{tag}-5", "sku": "{sku}", "location": "WH",'
        ' "quantity": -2}\n'
        f'{{"type": "adjustment", "event_id": "{tag}-6", "sku": "{sku}", "location": "WH",'
        ' "delta": -1, "reason": "count"}\n'
    )

    def cli(*args: str) -> tuple[int, str, str]:
        code = starter.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    async with build_worker(dev_env.client, pg_pool, settings):
        code, out, err = await asyncio.to_thread(cli, "inventory", "location", "WH", "--rank", "1")
        assert code == 0, err
        code, out, err = await asyncio.to_thread(cli, "inventory", "product", sku)
        assert code == 0, err
        code, out, err = await asyncio.to_thread(cli, "inventory", "load", str(feed))
        assert code == 1
        assert "line 3: malformed JSON" in err and "line 6: quantity: " in err
        assert "line 4 (event " in err and "unknown sku NOPE" in err
        assert "applied 2, duplicate 0, rejected 3" in out
        code, out, err = await asyncio.to_thread(
            cli, "inventory", "receipt", sku, "WH", "3", "--id", f"{tag}-r"
        )
        assert code == 0 and "on hand 7" in out, (out, err)
        code, out, err = await asyncio.to_thread(
            cli, "inventory", "receipt", sku, "WH", "3", "--id", f"{tag}-r"
        )
        assert code == 0 and "already applied" in out, (out, err)
        code, out, err = await asyncio.to_thread(
            cli, "inventory", "adjust", sku, "WH", "-8", "--reason", "shrinkage"
        )
        assert code == 1 and "would leave -1 on hand" in err + out, (out, err)
        code, out, err = await asyncio.to_thread(cli, "check", "--reason", "morning check")
        assert code == 0 and "pass" in out, (out, err)
        code, out, err = await asyncio.to_thread(cli, "allocator", "status")
        assert code == 0 and site in out and "morning check" in out, (out, err)


async def test_backorder_cli_reports_what_fulfilment_did_with_a_shipment(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    pg_dsn: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`backorder shipment short-pick|shipped|delivered` find the shipment's order in the read
    model and answer what changed; a bad value or a refused report is one line, exit 1 or 2."""
    queue = f"tq-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(
        "BACKORDER_TEMPORAL__TARGET", dev_env.client.service_client.config.target_host
    )
    monkeypatch.setenv("BACKORDER_TEMPORAL__TASK_QUEUE", queue)
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", pg_dsn)
    monkeypatch.setenv("BACKORDER_POLICY__FULFILMENT_REPORTS", "shipped")
    settings = Settings(site="test")
    now = await dev_env.get_current_time()
    checkout = await checked_out(pg_pool, SandboxGateway(pg_pool), now, "FC")
    order = checkout.order
    s1 = f"{order.order_id}-S1"

    def cli(*args: str) -> tuple[int, str, str]:
        code = starter.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    async with build_worker(dev_env.client, pg_pool, settings):
        handle = await dev_env.client.start_workflow(
            BackorderWorkflow.run, order, id=order.workflow_id, task_queue=queue
        )
        await eventually(
            lambda: handle.query(BackorderWorkflow.status), lambda s: len(s.shipments) == 1
        )
        code, _, err = await asyncio.to_thread(cli, "shipment", "short-pick", s1, "--found", "L1")
        assert code == 2 and "expected LINE:FOUND" in err
        code, _, err = await asyncio.to_thread(cli, "shipment", "delivered", "NOPE-S1")
        assert code == 1 and "no shipment NOPE-S1" in err
        code, _, err = await asyncio.to_thread(cli, "shipment", "delivered", s1)
        assert code == 1 and "delivered report refused (FulfilmentReportRefused)" in err
        code, out, _ = await asyncio.to_thread(cli, "shipment", "short-pick", s1, "--found", "L1:1")
        assert code == 0 and "1 units, ready" in out and "order is backordered" in out, out
        code, out, err = await asyncio.to_thread(
            cli, "shipment", "shipped", s1, "--carrier", "DHL", "--tracking", "JD0001",
            "--estimated-delivery", "2999-01-01",
        )  # fmt: skip
        assert code == 0 and "shipped by DHL, tracking JD0001" in out, (out, err)
        code, out, _ = await asyncio.to_thread(cli, "order", "status", order.order_id)
        assert code == 0 and f"shipment {s1}: shipped" in out, out
        assert "DHL JD0001; delivery expected 2999-01-01" in out, out
        code, out, _ = await asyncio.to_thread(
            cli, "shipment", "shipped", s1, "--carrier", "DHL", "--tracking", "JD0001"
        )
        assert code == 0 and "already (nothing changed)" in out
        code, _, err = await asyncio.to_thread(
            cli, "shipment", "shipped", s1, "--carrier", " ", "--tracking", "JD0001"
        )
        assert code == 1 and "not a valid shipped report" in err and "carrier" in err, err
        code, out, _ = await asyncio.to_thread(cli, "shipment", "delivered", s1)
        assert code == 0 and "delivered; 1 units, delivered" in out
        await handle.terminate("test over")
