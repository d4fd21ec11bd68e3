"""The backorder room an order may take under the site's limits, claimed in PostgreSQL.

What waits is in `demand` (per order line and sku, with the site) and the read model's
`orders` (the customer); what orders being accepted right now have claimed is in
`backorder_allowances`. A claim takes a transaction-scoped advisory lock per (site, sku), in sku
order, so concurrent acceptances of the same sku queue and each sees the others' claims. The
claim is keyed by the order: asked again (a retried acceptance), it answers what it answered.
Part of `open_order` (activities/opening.py), so its answer is recorded in the order's history
and a replay decides as the first run did.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from activities.contracts import AllowanceRequest
from domain.limits import BackorderAllowance
from domain.policy import BackorderPolicy

WAITING = """
SELECT d.sku, sum(d.quantity_open)
  FROM demand d
 WHERE d.site = %(site)s AND d.sku = ANY(%(skus)s) AND d.order_id <> %(order)s
 GROUP BY d.sku
"""
CLAIMED = """
SELECT a.sku, sum(a.units)
  FROM backorder_allowances a
 WHERE a.site = %(site)s AND a.sku = ANY(%(skus)s) AND a.order_id <> %(order)s
 GROUP BY a.sku
"""
CUSTOMER_WAITING = """
SELECT d.sku, sum(d.quantity_open)
  FROM demand d JOIN orders o USING (order_id)
 WHERE d.site = %(site)s AND d.sku = ANY(%(skus)s) AND d.order_id <> %(order)s
   AND o.customer_id = %(customer)s
 GROUP BY d.sku
"""
CUSTOMER_CLAIMED = CLAIMED.replace("GROUP BY", "AND a.customer_id = %(customer)s\n GROUP BY")


class BackorderLimits:
    """Claims backorder room on the worker's connection pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def claim(
        self, request: AllowanceRequest, site: str, policy: BackorderPolicy
    ) -> tuple[BackorderAllowance, ...]:
        """The room per sku (none when the policy sets no limit)."""
        if not policy.limits_backorders:
            return ()
        async with self._pool.connection() as conn, conn.transaction():
            return await claim_allowances(conn, request, site, policy)


async def claim_allowances(
    conn: AsyncConnection[Any], request: AllowanceRequest, site: str, policy: BackorderPolicy
) -> tuple[BackorderAllowance, ...]:
    """See the module; in the caller's transaction."""
    wanted: dict[str, int] = {}
    for w in request.wanted:
        wanted[w.sku] = wanted.get(w.sku, 0) + w.quantity
    skus = sorted(wanted)
    for sku in skus:  # one order of locks for everyone: concurrent claims queue, never deadlock
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"backorder-limit/{site}/{sku}",),
        )
    cur = await conn.execute(
        "SELECT sku, units, reason FROM backorder_allowances WHERE order_id = %s ORDER BY sku",
        (request.order_id,),
    )
    known = await cur.fetchall()
    if known:  # asked before: the same answer
        return tuple(BackorderAllowance(sku=s, units=u, reason=r) for s, u, r in known)
    args = {"site": site, "skus": skus, "order": request.order_id, "customer": request.customer_id}
    at_site = await _totals(conn, args, WAITING, CLAIMED)
    for_customer = await _totals(conn, args, CUSTOMER_WAITING, CUSTOMER_CLAIMED)
    allowances = []
    for sku in skus:
        room, reason = wanted[sku], ""
        cap = policy.max_backordered_units_per_sku
        if cap is not None and cap - at_site.get(sku, 0) < room:
            room = max(cap - at_site.get(sku, 0), 0)
            reason = f"at most {cap} units of {sku} may wait at the site, {at_site.get(sku, 0)} do"
        limit = policy.max_backorder_per_customer
        if limit is not None and limit - for_customer.get(sku, 0) < room:
            room = max(limit - for_customer.get(sku, 0), 0)
            reason = (
                f"a customer may have at most {limit} units of {sku} on backorder, "
                f"{for_customer.get(sku, 0)} already are"
            )
        allowances.append(BackorderAllowance(sku=sku, units=room, reason=reason))
    async with conn.cursor() as cur2:
        await cur2.executemany(
            "INSERT INTO backorder_allowances (order_id, sku, site, customer_id, units, reason)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (request.order_id, a.sku, site, request.customer_id, a.units, a.reason)
                for a in allowances
            ],
        )
    return tuple(allowances)


async def _totals(
    conn: AsyncConnection[Any], args: dict[str, Any], *queries: str
) -> dict[str, int]:
    totals: dict[str, int] = {}
    for query in queries:
        cur = await conn.execute(query, args)
        for sku, units in await cur.fetchall():
            totals[sku] = totals.get(sku, 0) + int(units)
    return totals
