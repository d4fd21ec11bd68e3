"""`backorder-worker` in production mode: settings name an external Temporal and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from temporalio.testing import WorkflowEnvironment

from config import Settings
from domain.order import Order
from embedded.postgres import EmbeddedPostgres
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus, CancelRequest

pytestmark = pytest.mark.e2e


async def test_worker_joins_external_services_migrates_and_drains_on_sigterm(
    dev_env: WorkflowEnvironment,
    pg_server: EmbeddedPostgres,
    settings: Settings,
    example_order: Order,
    tmp_path: Path,
) -> None:
    await pg_server.create_database("t_worker_process")
    env = {
        **os.environ,
        "BACKORDER_TEMPORAL__TARGET": dev_env.client.service_client.config.target_host,
        "BACKORDER_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
        "BACKORDER_DATABASE__DSN": pg_server.dsn("t_worker_process"),
        "BACKORDER_SITE": "prod-test",
        "BACKORDER_PAYMENTS__SANDBOX_URL": "http://127.0.0.1:9/staging-sandbox",
    }
    worker = await asyncio.create_subprocess_exec(
        Path(sys.executable).parent / "backorder-worker",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        order = example_order.model_copy(update={"order_id": f"W-{uuid.uuid4().hex[:8]}"})
        handle = await dev_env.client.start_workflow(
            BackorderWorkflow.run,
            order,
            id=order.workflow_id,
            task_queue=settings.temporal.task_queue,
        )
        await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="test"))
        summary = await asyncio.wait_for(handle.result(), timeout=60)
        assert summary.status is BackorderStatus.CANCELLED
    finally:
        worker.send_signal(signal.SIGTERM)
        out = (await asyncio.wait_for(worker.communicate(), timeout=60))[0].decode()
    assert worker.returncode == 0, out
    assert "Traceback" not in out

    async with await psycopg.AsyncConnection.connect(pg_server.dsn("t_worker_process")) as conn:
        cur = await conn.execute(
            "SELECT status, site FROM orders WHERE order_id = %s", (order.order_id,)
        )
        assert await cur.fetchone() == ("cancelled", "prod-test")  # migrated by the worker itself


async def test_worker_refuses_to_start_without_a_payment_gateway(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BACKORDER_TEMPORAL__TARGET": "127.0.0.1:9",
        "BACKORDER_DATABASE__DSN": "postgresql://postgres@127.0.0.1:9/none",
    }
    worker = await asyncio.create_subprocess_exec(
        Path(sys.executable).parent / "backorder-worker",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await asyncio.wait_for(worker.communicate(), timeout=30))[0].decode()
    assert worker.returncode == 2, out
    assert out.startswith(
        "backorder-worker needs BACKORDER_PAYMENTS__GATEWAY=stripe or "
        "BACKORDER_PAYMENTS__SANDBOX_URL (or the same in the config file)"
    ), out
