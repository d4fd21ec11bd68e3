"""BackorderWorkflow on the time-skipping test server, with the real read-model activity."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import psycopg
from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from config import Settings
from domain.order import Order
from tests.polling import eventually
from worker import build_worker
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus, CancelRequest


def fresh(order: Order, placed_at: datetime) -> Order:
    """The example order under a unique id, so tests never share a workflow, placed at the test
    server's now (the session's earlier tests moved its clock; the FTC clock runs from here)."""
    return order.model_copy(
        update={"order_id": f"T-{uuid.uuid4().hex[:10]}", "placed_at": placed_at}
    )


async def read_row(dsn: str, order_id: str) -> tuple[str, str] | None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("SELECT status, site FROM orders WHERE order_id = %s", (order_id,))
        row = await cur.fetchone()
        return (row[0], row[1]) if row else None


async def test_order_waits_answers_status_and_ends_on_cancel(
    time_skipping_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    pg_dsn: str,
    settings: Settings,
    example_order: Order,
) -> None:
    order = fresh(example_order, await time_skipping_env.get_current_time())
    worker = build_worker(time_skipping_env.client, pg_pool, settings)
    async with worker:
        handle = await time_skipping_env.client.start_workflow(
            BackorderWorkflow.run, order, id=order.workflow_id, task_queue=worker.task_queue
        )
        status = await handle.query(BackorderWorkflow.status)
        assert status.status is BackorderStatus.BACKORDERED
        assert [(ln.line_id, ln.ordered, ln.backordered, ln.cancelled) for ln in status.lines] == [
            ("1", 5, 5, 0)
        ]
        assert str(status.order_value) == "50.00"

        await time_skipping_env.sleep(timedelta(days=3, hours=1))
        assert await read_row(pg_dsn, order.order_id) == ("backordered", "test")

        await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="found it cheaper"))
        await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="second click"))
        summary = await handle.result()
        final = await handle.query(BackorderWorkflow.status)

    assert summary.status is BackorderStatus.CANCELLED
    assert summary.days_in_backorder == 3
    assert [(ln.backordered, ln.cancelled) for ln in summary.lines] == [(0, 5)]
    assert final.cancel_reason == "found it cheaper"
    assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED
    assert await read_row(pg_dsn, order.order_id) == ("cancelled", "test")


async def test_orders_of_two_sites_on_one_worker_are_filed_under_their_own_site(
    time_skipping_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    pg_dsn: str,
    settings: Settings,
    example_order: Order,
) -> None:
    """One source for an order's site: the read model, demand and the allocator agree."""
    now = await time_skipping_env.get_current_time()
    north = fresh(example_order, now).model_copy(update={"site": "north"})
    default = fresh(example_order, now)  # no site: the worker's own (`test`)
    async with build_worker(time_skipping_env.client, pg_pool, settings) as worker:
        handles = [
            await time_skipping_env.client.start_workflow(
                BackorderWorkflow.run, order, id=order.workflow_id, task_queue=worker.task_queue
            )
            for order in (north, default)
        ]

        async def filed() -> dict[str, tuple[str, str]]:
            """Each order's read-model and demand sites, once acceptance's writes are in."""
            async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
                cur = await conn.execute(
                    "SELECT o.order_id, o.site, d.site FROM orders o JOIN demand d "
                    "USING (order_id) WHERE o.order_id = ANY(%s)",
                    ([north.order_id, default.order_id],),
                )
                return {row[0]: (row[1], row[2]) for row in await cur.fetchall()}

        sites = await eventually(filed, lambda found: len(found) == 2)
        for handle in handles:
            await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="test"))
            await handle.result()

    assert sites == {north.order_id: ("north", "north"), default.order_id: ("test", "test")}
    assert await read_row(pg_dsn, north.order_id) == ("cancelled", "north")
