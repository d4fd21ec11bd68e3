"""News of the operators' exception queue for the order workflows.

The queue in PostgreSQL is the truth; each order's workflow mirrors what is open for it in the
`OpenExceptions` search attribute and its details, so operators can filter the Temporal UI on
it. Whoever changes the queue (an activity raising, the allocator setting an order aside, a
notice given up, an operator resolving) tells the order afterwards: the open exceptions read
*after* the change committed, stamped with the reading's statement time, sent as the
`exceptions_changed` signal. Readings may arrive out of order; the workflow keeps the newest.

Telling is best effort: the change itself is already committed, and the next change tells
again. An order whose workflow has ended cannot take news (its attribute keeps the count it
ended with); that is not a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.order import workflow_id_for
from runtime.exception_queue import SEVERITY_ORDER
from workflows.messages import EXCEPTIONS_SHOWN, ExceptionBrief, OpenExceptions

logger = logging.getLogger(__name__)

SIGNAL = "exceptions_changed"

_OPEN_FOR_ORDER = """
SELECT statement_timestamp() AS as_of, e.id, e.kind, e.severity, e.raised_at
  FROM (SELECT 1) AS one
  LEFT JOIN exceptions e ON e.order_id = %(order_id)s AND e.resolved_at IS NULL
 ORDER BY array_position(%(rank)s::text[], e.severity), e.raised_at, e.id
"""
"""Every open exception of the order, the worst and oldest first, each row stamped with the
statement's start (its snapshot): one row with no exception when none is open."""


async def read_open_exceptions(conn: AsyncConnection[Any], order_id: str) -> OpenExceptions:
    """What is open for the order now (run it outside the transaction that changed it)."""
    rank = [s.value for s in SEVERITY_ORDER]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_OPEN_FOR_ORDER, {"order_id": order_id, "rank": rank})
        rows = await cur.fetchall()
    found = [r for r in rows if r["id"] is not None]
    return OpenExceptions(
        open=len(found),
        latest=tuple(
            ExceptionBrief(
                id=r["id"], kind=r["kind"], severity=r["severity"], raised_at=r["raised_at"]
            )
            for r in found[:EXCEPTIONS_SHOWN]
        ),
        as_of=rows[0]["as_of"],
    )


async def tell_orders(
    client: Client, conn: AsyncConnection[Any], order_ids: Iterable[str]
) -> list[str]:
    """Send each order its open exceptions; the ids that could not be told (their workflow
    unreachable or failing). An order with no running workflow needs no news."""
    untold = []
    for order_id in dict.fromkeys(order_ids):
        news = await read_open_exceptions(conn, order_id)
        handle = client.get_workflow_handle(workflow_id_for(order_id))
        try:
            await handle.signal(SIGNAL, news)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                continue  # ended (or never started here): nothing to mirror
            logger.warning("could not tell order %s of its open exceptions: %s", order_id, err)
            untold.append(order_id)
    return untold


class ExceptionNews:
    """`tell_orders` for activities: on the worker's client and pool, never raising (the
    change it reports is committed; the next one tells again)."""

    def __init__(self, client: Client, pool: AsyncConnectionPool) -> None:
        self._client = client
        self._pool = pool

    async def __call__(self, order_ids: Iterable[str]) -> None:
        ids = list(order_ids)
        if not ids:
            return
        try:
            async with self._pool.connection() as conn:
                await tell_orders(self._client, conn, ids)
        except Exception as err:  # best effort, see the module docstring
            logger.warning("could not tell orders %s of their open exceptions: %s", ids, err)
