"""The operators' read model of orders in PostgreSQL, kept current by the order workflow."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool
from temporalio import activity

from workflows.messages import OrderRecord


class ReadModelActivities:
    """Activities that write the `orders` table; they share the worker's connection pool."""

    def __init__(self, pool: AsyncConnectionPool, site: str) -> None:
        self._pool = pool
        self._site = site

    @activity.defn(name="record_order")
    async def record_order(self, record: OrderRecord) -> None:
        """Upsert the order's row. Idempotent, and a late retry of an older status (earlier
        `status_since`) never overwrites a newer one."""
        order = record.order
        async with self._pool.connection() as conn:
            await conn.execute(
                """
                INSERT INTO orders (order_id, workflow_id, order_number, site, customer_id,
                                    customer_tier, placed_at, currency, order_value, status,
                                    skus, status_since)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (order_id) DO UPDATE
                   SET status = EXCLUDED.status,
                       status_since = EXCLUDED.status_since,
                       customer_tier = EXCLUDED.customer_tier,
                       updated_at = now()
                 WHERE orders.status_since <= EXCLUDED.status_since
                """,
                (
                    order.order_id,
                    record.workflow_id,
                    order.order_number,
                    self._site,
                    order.customer.id,
                    order.customer.tier,
                    order.placed_at,
                    order.currency,
                    order.value,
                    record.status.value,
                    order.skus,
                    record.status_since,
                ),
            )
