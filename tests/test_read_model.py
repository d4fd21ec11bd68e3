"""The `record_order` activity against real PostgreSQL: idempotent and order-safe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import INVALID_REQUEST
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


async def test_a_later_record_names_the_order_and_changes_only_its_status(
    pg_pool: AsyncConnectionPool, pg_dsn: str, example_order: Order
) -> None:
    record = ReadModelActivities(pg_pool, "site-1").record_order
    env = ActivityEnvironment()
    example_order = example_order.model_copy(update={"order_id": "R-2"})
    first = OrderRecord(
        order=example_order,
        workflow_id=example_order.workflow_id,
        status=BackorderStatus.BACKORDERED,
        status_since=T0,
        tier="standard",
    )
    later = OrderRecord(
        order_id=example_order.order_id,
        workflow_id=example_order.workflow_id,
        status=BackorderStatus.CANCELLED,
        status_since=T0 + timedelta(days=1),
        tier="vip",
        cancel_reason="customer asked",
    )
    await env.run(record, first)
    await env.run(record, later)
    await env.run(record, later)  # a retry of the same step
    await env.run(record, first)  # a late retry of the first: no step back, no error
    assert await rows(pg_dsn, "R-2") == [("cancelled", T0 + timedelta(days=1))]
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        cur = await conn.execute(
            "SELECT o.customer_tier, o.site, o.order_value, count(l.*)"
            "  FROM orders o JOIN order_lines l USING (order_id) WHERE order_id = 'R-2'"
            " GROUP BY 1, 2, 3"
        )
        assert await cur.fetchone() == ("vip", "site-1", Decimal("50.0000"), 1)
        cur = await conn.execute(
            "SELECT status, cancel_reason FROM order_status_history WHERE order_id = 'R-2'"
            " ORDER BY status_since"
        )
        assert await cur.fetchall() == [("backordered", None), ("cancelled", "customer asked")]


async def test_a_status_for_an_order_never_written_is_refused_for_good(
    pg_pool: AsyncConnectionPool, example_order: Order
) -> None:
    record = ReadModelActivities(pg_pool, "site-1").record_order
    orphan = OrderRecord(
        order_id="NEVER-WRITTEN",
        workflow_id="backorder-NEVER-WRITTEN",
        status=BackorderStatus.COMPLETED,
        status_since=T0,
    )
    with pytest.raises(ApplicationError, match="no read-model row") as err:
        await ActivityEnvironment().run(record, orphan)
    assert err.value.non_retryable and err.value.type == INVALID_REQUEST


def test_a_record_names_its_order_once_and_consistently(example_order: Order) -> None:
    base = {"workflow_id": "w", "status": "completed", "status_since": T0}
    with pytest.raises(ValidationError, match="needs the order or its order_id"):
        OrderRecord.model_validate(base)
    with pytest.raises(ValidationError, match="differs"):
        OrderRecord.model_validate({**base, "order": example_order, "order_id": "B-9"})
    assert OrderRecord.model_validate({**base, "order": example_order}).id == "A-1"
