"""Duplicate starts: an order id is accepted once, whatever the entry point, the workflow id, or
how long ago its first run ended. The real worker on the dev server, the claim in PostgreSQL,
and the raw `temporal` CLI an order system without our Python would use."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from activities.read_model import ReadModelActivities
from config import Settings
from embedded.process import find_binary
from payments.sandbox import SandboxGateway
from tests.checkout import checked_out
from tests.reliability.invariants import check_invariants
from worker import build_worker
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus, CancelRequest
from workflows.refusals import WRONG_WORKFLOW_ID

pytestmark = pytest.mark.e2e

TABLES = (
    "reservations",
    "demand",
    "shipments",
    "notices",
    "exceptions",
    "payment_requests",
    "payment_captures",
    "stock_movements",
)
"""Every table an acceptance could leave a trace in."""


async def traces(dsn: str, order_id: str) -> dict[str, Any]:
    """What the order has in each table, plus its read-model row."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        found: dict[str, Any] = {}
        for table in TABLES:
            cur = await conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            )
            found[table] = (await cur.fetchone() or (0,))[0]
        cur = await conn.execute(
            "SELECT status, status_since FROM orders WHERE order_id = %s", (order_id,)
        )
        found["orders"] = await cur.fetchone()
        return found


async def failure(run: Any) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(run, timeout=30)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.non_retryable
    return cause


async def test_an_ended_order_started_again_is_refused_having_done_nothing(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str, settings: Settings
) -> None:
    now = await dev_env.get_current_time()
    checkout = await checked_out(pg_pool, SandboxGateway(pg_pool), now, "D")
    order = checkout.order
    queue = settings.temporal.task_queue
    async with build_worker(dev_env.client, pg_pool, settings):
        first = await dev_env.client.start_workflow(
            BackorderWorkflow.run, order, id=order.workflow_id, task_queue=queue
        )
        await first.signal(BackorderWorkflow.cancel, CancelRequest(reason="test"))
        assert (await first.result()).status is BackorderStatus.COMPLETED  # L1 shipped
        before = await traces(pg_dsn, order.order_id)

        # Temporal's default id-reuse policy lets a closed workflow id start again.
        again = await dev_env.client.start_workflow(
            BackorderWorkflow.run,
            order,
            id=order.workflow_id,
            task_queue=queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        duplicate = await failure(again.result())
        # The same order under a workflow id of its own choosing.
        elsewhere = await dev_env.client.start_workflow(
            BackorderWorkflow.run, order, id=f"import-{order.order_id}", task_queue=queue
        )
        wrong = await failure(elsewhere.result())

    assert duplicate.type == c.DUPLICATE_ORDER
    assert first.first_execution_run_id is not None
    assert first.first_execution_run_id in duplicate.message  # names the run that owns it
    assert f"order {order.order_id} was already accepted" in duplicate.message
    assert wrong.type == WRONG_WORKFLOW_ID
    assert f"must run as workflow {order.workflow_id}" in wrong.message
    assert await traces(pg_dsn, order.order_id) == before  # reserved, charged, told nothing
    await check_invariants(
        pg_dsn,
        dev_env.client,
        order_ids=[order.order_id],
        initial_stock={(checkout.in_stock, "DC"): 5},  # put on hand by SQL at checkout
    )


async def test_the_raw_temporal_cli_cannot_accept_an_order_twice(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str, settings: Settings
) -> None:
    """The README's own command, run twice (the second after the first run ended)."""
    now = await dev_env.get_current_time()
    order = (await checked_out(pg_pool, SandboxGateway(pg_pool), now, "R")).order
    order_json = order.model_dump_json()
    target = dev_env.client.service_client.config.target_host

    async def temporal(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            str(find_binary("temporal")),
            *args,
            "--address",
            target,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        assert process.returncode == 0, out.decode()
        return out.decode()

    start = ("workflow", "start", "--type", "BackorderWorkflow", "--task-queue")
    async with build_worker(dev_env.client, pg_pool, settings):
        queue = settings.temporal.task_queue
        await temporal(*start, queue, "--workflow-id", order.workflow_id, "--input", order_json)
        handle = dev_env.client.get_workflow_handle_for(BackorderWorkflow.run, order.workflow_id)
        await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="test"))
        await handle.result()
        before = await traces(pg_dsn, order.order_id)
        await temporal(*start, queue, "--workflow-id", order.workflow_id, "--input", order_json)
        second = dev_env.client.get_workflow_handle_for(BackorderWorkflow.run, order.workflow_id)
        refused = await failure(second.result())
        shown = json.loads(
            await temporal("workflow", "describe", "--workflow-id", order.workflow_id, "-o", "json")
        )

    assert refused.type == c.DUPLICATE_ORDER
    assert shown["workflowExecutionInfo"]["status"] == "WORKFLOW_EXECUTION_STATUS_FAILED"
    assert await traces(pg_dsn, order.order_id) == before


async def test_concurrent_claims_of_one_order_have_one_winner(pg_pool: AsyncConnectionPool) -> None:
    claims = ReadModelActivities(pg_pool, "test")
    order_id = f"C-{uuid.uuid4().hex[:8]}"
    runs = [
        c.OrderClaim(order_id=order_id, workflow_id=f"backorder-{order_id}", run_id=f"run-{i}")
        for i in range(12)
    ]
    outcomes = await asyncio.gather(*(claims.claim_order(r) for r in runs), return_exceptions=True)
    won = [r for r, o in zip(runs, outcomes, strict=True) if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, ApplicationError)]
    assert len(won) == 1 and len(refused) == 11
    assert all(o.type == c.DUPLICATE_ORDER and o.non_retryable for o in refused)
    assert all(won[0].run_id in o.message for o in refused)
    await claims.claim_order(won[0])  # the winner's retry finds its own claim
