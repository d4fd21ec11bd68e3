"""The operators' read model of orders in PostgreSQL, kept current by the order workflow, and
the claim that lets an order id be accepted once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import contracts as c
from domain.order import Order
from workflows.messages import BackorderStatus, OrderRecord

ON_BACKORDER = (BackorderStatus.BACKORDERED, BackorderStatus.AWAITING_RECEIPT)
"""The statuses in which an order waits for stock: `orders.backordered_at` is the first."""


class ReadModelActivities:
    """Activities that write the `orders` table (with its `order_status_history` and
    `order_lines`) and `order_claims`; they share the worker's connection pool."""

    def __init__(self, pool: AsyncConnectionPool, site: str) -> None:
        self._pool = pool
        self._site = site

    def activities(self) -> list[Callable[..., Any]]:
        return [self.claim_order, self.record_order]

    @activity.defn(name=c.CLAIM_ORDER.name)
    async def claim_order(self, claim: c.OrderClaim) -> c.Empty:
        """Claim the order id for this chain of runs, before acceptance does anything. A retry
        by the same chain finds its own claim; anyone else fails for good with
        `DuplicateOrder`, naming the workflow and run that own the order."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO order_claims (order_id, workflow_id, run_id) VALUES (%s, %s, %s) "
                "ON CONFLICT (order_id) DO NOTHING",
                (claim.order_id, claim.workflow_id, claim.run_id),
            )
            # a statement of its own: it sees a claim a concurrent start committed meanwhile
            cur = await conn.execute(
                "SELECT workflow_id, run_id, claimed_at FROM order_claims WHERE order_id = %s",
                (claim.order_id,),
            )
            workflow_id, run_id, claimed_at = await cur.fetchone() or ("?", "?", None)
        if (workflow_id, run_id) != (claim.workflow_id, claim.run_id):
            raise ApplicationError(
                f"order {claim.order_id} was already accepted by workflow {workflow_id} "
                f"(run {run_id}) at {claimed_at}; an order id is accepted once",
                workflow_id,
                run_id,
                type=c.DUPLICATE_ORDER,
                non_retryable=True,
            )
        return c.Empty()

    @activity.defn(name="record_order")
    async def record_order(self, record: OrderRecord) -> None:
        """Upsert the order's row, and add the status to its history and its lines if new (for
        `backorder report`), in one transaction. Idempotent, and a late retry of an older
        status (earlier `status_since`) never overwrites a newer one."""
        async with self._pool.connection() as conn, conn.transaction():
            await self.write_record(conn, record)

    async def write_record(self, conn: AsyncConnection[Any], record: OrderRecord) -> None:
        """`record_order`'s writes, in the caller's transaction (see there)."""
        order = record.order
        if order is None:
            await self._write_status(conn, record)
        else:
            await self._write_order(conn, record, order)
        await conn.execute(
            "INSERT INTO order_status_history (order_id, status, status_since, cancel_reason)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (record.id, record.status.value, record.status_since, record.cancel_reason),
        )
        if record.status in ON_BACKORDER:  # the earliest such row, whatever order they come
            await conn.execute(
                "UPDATE orders SET backordered_at = %s WHERE order_id = %s"
                " AND (backordered_at IS NULL OR backordered_at > %s)",
                (record.status_since, record.id, record.status_since),
            )

    async def _write_status(self, conn: AsyncConnection[Any], record: OrderRecord) -> None:
        """A later record of a run: the row exists (the run's first record wrote it), only its
        status, tier and site change, unless a newer status is there already."""
        cur = await conn.execute(
            """
            UPDATE orders
               SET status = %s, status_since = %s, site = COALESCE(%s, site),
                   customer_tier = COALESCE(%s, customer_tier), updated_at = now()
             WHERE order_id = %s AND status_since <= %s
            RETURNING 1
            """,
            (
                record.status.value,
                record.status_since,
                record.site,
                record.tier,
                record.id,
                record.status_since,
            ),
        )
        if await cur.fetchone() is not None:
            return
        cur = await conn.execute("SELECT 1 FROM orders WHERE order_id = %s", (record.id,))
        if await cur.fetchone() is None:
            raise ApplicationError(
                f"order {record.id} has no read-model row to update: its first record must "
                "carry the order",
                type=c.INVALID_REQUEST,
                non_retryable=True,
            )

    async def _write_order(
        self, conn: AsyncConnection[Any], record: OrderRecord, order: Order
    ) -> None:
        """A run's first record: the whole row, and the order's lines."""
        await conn.execute(
            """
            INSERT INTO orders (order_id, workflow_id, order_number, site, customer_id,
                                customer_tier, placed_at, currency, order_value, status,
                                skus, status_since)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (order_id) DO UPDATE
               SET status = EXCLUDED.status,
                   status_since = EXCLUDED.status_since,
                   site = EXCLUDED.site,
                   customer_tier = EXCLUDED.customer_tier,
                   updated_at = now()
             WHERE orders.status_since <= EXCLUDED.status_since
            """,
            (
                order.order_id,
                record.workflow_id,
                order.order_number,
                record.site or self._site,
                order.customer.id,
                record.tier or order.customer.tier,
                order.placed_at,
                order.currency,
                order.value,
                record.status.value,
                order.skus,
                record.status_since,
            ),
        )
        await conn.execute(
            """
            INSERT INTO order_lines (order_id, line_id, sku, quantity, unit_price)
            SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::int[], %s::numeric[])
            ON CONFLICT DO NOTHING
            """,
            (
                order.order_id,
                [line.line_id for line in order.lines],
                [line.sku for line in order.lines],
                [line.quantity for line in order.lines],
                [line.unit_price for line in order.lines],
            ),
        )
