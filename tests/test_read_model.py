"""The `record_order` activity against real PostgreSQL: idempotent and order-safe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import ActivityEnvironment

from activities.read_model import ReadModelActivities
from domain.order import Order
from workflows.messages import BackorderStatus, OrderRecord

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


async def rows(dsn: str, order_id: str) -> list[tuple[str, datetime]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT status, status_since FROM orders WHERE order_id = %s", (order_id,)
        )
        return list(await cur.fetchall())


async def test_record_order_is_idempotent_and_never_goes_back_in_time(
    pg_pool: AsyncConnectionPool, pg_dsn: str, example_order: Order
) -> None:
    record = ReadModelActivities(pg_pool, "site-1").record_order
    env = ActivityEnvironment()
    waiting = OrderRecord(
        order=example_order,
        workflow_id=example_order.workflow_id,
        status=BackorderStatus.BACKORDERED,
        status_since=T0,
    )
    cancelled = waiting.model_copy(
        update={"status": BackorderStatus.CANCELLED, "status_since": T0 + timedelta(days=2)}
    )

    await env.run(record, waiting)
    await env.run(record, waiting)  # a retry of the same step
    assert await rows(pg_dsn, "A-1") == [("backordered", T0)]

    await env.run(record, cancelled)
    await env.run(record, waiting)  # a late, older write must not undo the cancel
    assert await rows(pg_dsn, "A-1") == [("cancelled", T0 + timedelta(days=2))]

    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        cur = await conn.execute(
            "SELECT site, order_value, skus, currency FROM orders WHERE order_id = 'A-1'"
        )
        site, value, skus, currency = await cur.fetchone() or ()
    assert (site, str(value), skus, currency) == ("site-1", "50.0000", ["KTP"], "USD")
