"""Delivering a pass's allotments: a signal to each winning order, many at once, the outcomes
recorded in batches; an order whose workflow has ended gets its units released again.

Part of the allocator's activities (`AllocationActivities` takes these methods), kept apart
from the pass itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities import contracts as c
from activities.ledger import StockKey, add_reserved
from config import Settings
from domain.order import workflow_id_for
from domain.planner import StockSource
from workflows.allocator_messages import allocator_id
from workflows.messages import AllotmentSignal

DELIVERY_BATCH = 200
"""Delivered allotments recorded in one statement, at most."""
DELIVERY_RECORD_EVERY = 0.5
"""Seconds between recordings of delivered allotments while signals go out."""


def reservation_key(site: str, pass_id: str, order_id: str) -> str:
    """The reservations a pass made for one order: `allocator-<site>/<pass>/<order>`."""
    return c.step_key(allocator_id(site), pass_id, order_id)


async def lock_stock(
    conn: AsyncConnection[Any], skus: set[str], receipt_ids: Iterable[str]
) -> None:
    """Lock the stock rows of `skus`, then their open receipts and the named ones: the
    ledger's lock order, taken before any event touches a row."""
    ordered = sorted(skus)
    await conn.execute(
        "SELECT 1 FROM stock WHERE sku = ANY(%s) ORDER BY sku, location FOR UPDATE", (ordered,)
    )
    await conn.execute(
        """
        SELECT 1 FROM future_receipts
         WHERE (sku = ANY(%s) AND status = 'open') OR receipt_id = ANY(%s)
         ORDER BY receipt_id
           FOR UPDATE
        """,
        (ordered, sorted(receipt_ids)),
    )


class AllotmentDelivery:
    """`deliver_allotments`, on the worker's pool and Temporal client."""

    _pool: AsyncConnectionPool
    _settings: Settings
    _client: Client

    @activity.defn(name=c.DELIVER_ALLOTMENTS.name)
    async def deliver_allotments(self, request: c.DeliveryRequest) -> c.DeliveryReport:
        """Signal each winner of the pass that has not been signalled yet (a retry resumes);
        a signal delivered twice is applied once (the order keeps the pass ids it applied).

        `delivery_concurrency` signals are in flight at once; the deliveries are recorded in
        batches (at most DELIVERY_BATCH orders, every DELIVERY_RECORD_EVERY seconds, and what
        is left before returning or failing), not one statement per order. One that dies
        before recording signals those orders again on the retry, which they apply once."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """
                SELECT order_id, signal FROM allotment_deliveries
                 WHERE pass_id = %s AND outcome IS NULL
                 ORDER BY order_id
                """,
                (request.pass_id,),
            )
            pending = [(str(o), AllotmentSignal.model_validate(s)) for o, s in await cur.fetchall()]
        limit = asyncio.Semaphore(self._settings.allocator.delivery_concurrency)
        record = _DeliveryRecord(self._pool, request.pass_id)
        gone: list[str] = []
        freed: set[str] = set()
        delivered = 0

        async def deliver(order_id: str, signal: AllotmentSignal) -> None:
            nonlocal delivered
            async with limit:
                handle = self._client.get_workflow_handle(workflow_id_for(order_id))
                try:
                    await handle.signal("allotment", signal)
                except RPCError as err:
                    if err.status is not RPCStatusCode.NOT_FOUND:
                        raise
                    if not await self._applied(request.pass_id, order_id):
                        freed.update(await self._order_gone(request, order_id))
                        gone.append(order_id)
                        return
                record.add(order_id)
                delivered += 1
                activity.heartbeat(delivered + len(gone))

        async with record:
            tasks = [asyncio.create_task(deliver(o, s)) for o, s in pending]
            try:
                await asyncio.gather(*tasks)
            finally:  # on a failure, stop the rest (a retry sends them) before recording
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return c.DeliveryReport(
            delivered=delivered, gone=tuple(sorted(gone)), freed_skus=tuple(sorted(freed))
        )

    async def _applied(self, pass_id: str, order_id: str) -> bool:
        """Whether the order, now ended, had applied this pass: an earlier attempt signalled
        it and died before recording so, and the order shipped the allotment and completed.
        Its reservations then belong to its shipments and must stay. The evidence is the
        order's own step: shipments it published under `<workflow id>/pass-<pass id>/`. (A
        pass it refused it released itself; one it never saw it published nothing for.)"""
        prefix = f"{workflow_id_for(order_id)}/pass-{pass_id}/shipment/"
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """
                SELECT EXISTS (SELECT 1 FROM shipments s JOIN shipment_events e USING (shipment_id)
                                WHERE s.order_id = %s AND starts_with(e.key, %s))
                """,
                (order_id, prefix),
            )
            row = await cur.fetchone()
        return bool(row and row[0])

    async def _order_gone(self, request: c.DeliveryRequest, order_id: str) -> set[str]:
        """The order's workflow has ended: free what the pass reserved for it and drop its
        demand (nobody will update it again). The skus whose stock was freed."""
        key = reservation_key(request.site, request.pass_id, order_id)
        async with self._pool.connection() as conn, conn.transaction():
            # The order's demand rows before any stock row, as a pass takes them: a pass that
            # holds them and waits for the stock rows must not find them held the other way.
            await conn.execute(
                "SELECT 1 FROM demand WHERE order_id = %s ORDER BY line_id FOR UPDATE",
                (order_id,),
            )
            cur = await conn.execute(
                """
                SELECT DISTINCT sku, location FROM reservations
                 WHERE key = %s AND state = 'reserved' ORDER BY sku, location
                """,
                (key,),
            )
            keys = [(str(s), str(loc)) for s, loc in await cur.fetchall()]
            await lock_stock(conn, {s for s, _ in keys}, ())
            cur = await conn.execute(
                """
                UPDATE reservations
                   SET state = 'released', released_key = %s, released_at = now()
                 WHERE key = %s AND state = 'reserved'
                RETURNING sku, location, source, receipt_id, quantity
                """,
                (f"{key}/gone", key),
            )
            stock: dict[StockKey, int] = defaultdict(int)
            receipts: dict[str, int] = defaultdict(int)
            for sku, location, source, receipt_id, quantity in await cur.fetchall():
                if source == StockSource.FUTURE.value:
                    receipts[receipt_id] += quantity
                else:  # current, or future stock received meanwhile
                    stock[sku, location] += quantity
            await add_reserved(conn, stock, receipts, sign=-1)
            await conn.execute("DELETE FROM demand WHERE order_id = %s", (order_id,))
            await conn.execute(
                """
                UPDATE allotment_deliveries SET outcome = 'gone', delivered_at = now()
                 WHERE pass_id = %s AND order_id = %s
                """,
                (request.pass_id, order_id),
            )
        activity.logger.warning(
            "order %s has ended: pass %s's allotment released", order_id, request.pass_id
        )
        return {s for s, _ in keys}


class _DeliveryRecord:
    """Delivered allotments, recorded in batches by one background task while the signals go
    out: as soon as DELIVERY_BATCH are waiting, else every DELIVERY_RECORD_EVERY seconds; and
    what is left when the block ends, however it ends, so that a retry signals only the rest.
    A record that fails fails the block (and the activity, which Temporal retries)."""

    def __init__(self, pool: AsyncConnectionPool, pass_id: str) -> None:
        self._pool, self._pass_id = pool, pass_id
        self._waiting: list[str] = []
        self._wake = asyncio.Event()
        self._ending = False
        self._task: asyncio.Task[None] | None = None

    def add(self, order_id: str) -> None:
        """`order_id` has its signal; raises if recording has failed (stop signalling)."""
        if self._task is not None and self._task.done():
            self._task.result()
        self._waiting.append(order_id)
        if len(self._waiting) >= DELIVERY_BATCH:
            self._wake.set()

    async def __aenter__(self) -> _DeliveryRecord:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        assert self._task is not None
        self._ending = True
        self._wake.set()
        try:
            await self._task  # ends after the record it is making, if any
            await self._record()
        except Exception:
            if kind is None:
                raise
            activity.logger.warning(
                "pass %s: delivered allotments left unrecorded: a retry signals them again,"
                " and each order applies the pass once",
                self._pass_id,
                exc_info=True,
            )

    async def _run(self) -> None:
        while not self._ending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), DELIVERY_RECORD_EVERY)
            self._wake.clear()
            if not self._ending:
                await self._record()

    async def _record(self) -> None:
        while self._waiting:
            batch = self._waiting[:DELIVERY_BATCH]
            async with self._pool.connection() as conn:
                await conn.execute(
                    """
                    UPDATE allotment_deliveries
                       SET outcome = 'delivered', delivered_at = now()
                      FROM unnest(%s::text[]) AS d(order_id)
                     WHERE allotment_deliveries.pass_id = %s
                       AND allotment_deliveries.order_id = d.order_id
                       AND allotment_deliveries.outcome IS NULL
                    """,
                    (batch, self._pass_id),
                )
            del self._waiting[: len(batch)]
