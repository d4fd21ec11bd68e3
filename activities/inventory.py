"""The inventory ledger's activities: read free stock, reserve and release it, keep demand.

The ledger in PostgreSQL is shared by every order workflow (and, later, the allocator), so each
change runs in one transaction that locks the stock rows it touches in a fixed order (stock by
(sku, location), then receipts by receipt_id, then reservations) and records its idempotency
key in `ledger_operations` together with its effect: a retried or replayed call is a no-op, two
orders after the same units queue instead of over-reserving, and nothing deadlocks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import contracts
from activities.contracts import (
    Availability,
    AvailabilityRequest,
    DemandUpdate,
    Empty,
    StockReservation,
)
from activities.ledger import (
    HeldKey,
    Short,
    StockKey,
    add_reserved,
    claim,
    end_held,
    insert_reservations,
    invalid,
    lock_held,
    lock_receipts,
    lock_stock,
    read_stock,
)
from domain.planner import Allotment
from domain.planner.plan import StockSource


def _check_sources(allotments: Iterable[Allotment]) -> None:
    """A future allotment names its receipt and a current one does not (the ledger's CHECK)."""
    for a in allotments:
        if (a.source is StockSource.FUTURE) != (a.receipt_id is not None):
            rule = "needs a" if a.source is StockSource.FUTURE else "must not name a"
            raise invalid(
                f"allotment of line {a.line_id} (sku {a.sku} at {a.location}):"
                f" a {a.source.value} allotment {rule} receipt_id"
            )


def _stock_wanted(allotments: Iterable[Allotment]) -> dict[StockKey, int]:
    wanted: dict[StockKey, int] = defaultdict(int)
    for a in allotments:
        if a.source is StockSource.CURRENT:
            wanted[a.sku, a.location] += a.quantity
    return dict(sorted(wanted.items()))


def _receipts_wanted(allotments: Iterable[Allotment]) -> dict[str, list[Allotment]]:
    wanted: dict[str, list[Allotment]] = defaultdict(list)
    for a in allotments:
        if a.receipt_id is not None:
            wanted[a.receipt_id].append(a)
    return dict(sorted(wanted.items()))


class InventoryActivities:
    """The ledger activities of the order workflow; they share the worker's connection pool."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        nudge: Callable[[contracts.NudgeRequest], Awaitable[Empty]] | None = None,
    ) -> None:
        """`nudge`: how to ask the site's allocator for a pass (None: never, in tests of the
        ledger alone)."""
        self._pool = pool
        self._nudge = nudge

    def activities(self) -> list[Callable[..., Any]]:
        """The bound activities, for the worker to register under their contract names."""
        return [
            self.check_availability,
            self.reserve_stock,
            self.release_stock,
            self.update_demand,
        ]

    @activity.defn(name=contracts.CHECK_AVAILABILITY.name)
    async def check_availability(self, request: AvailabilityRequest) -> Availability:
        """Free stock and open receipts of the asked skus, every location, and their products.

        Read in one repeatable-read snapshot so the rows agree with each other (no stock at a
        location the location list does not have yet).
        """
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            stock, catalog = await read_stock(conn, request.skus)
        return Availability(stock=stock, catalog=catalog)

    @activity.defn(name=contracts.RESERVE_STOCK.name)
    async def reserve_stock(self, request: StockReservation) -> Empty:
        """Reserve every allotment or none of them; a retry with the same key does nothing.

        Current allotments take free units of their stock row, future ones free units of their
        open receipt. When any is short (another order took the units since the plan was made)
        this raises a non-retryable `InsufficientStock` naming each shortfall, so the workflow
        plans again instead of retrying.
        """
        _check_sources(request.allotments)
        stock_wanted = _stock_wanted(request.allotments)
        receipts_wanted = _receipts_wanted(request.allotments)
        name = contracts.RESERVE_STOCK.name
        async with self._pool.connection() as conn, conn.transaction():
            if not await claim(conn, request.key, name, request.order_id):
                return Empty()
            free_stock = await lock_stock(conn, stock_wanted)
            receipts = await lock_receipts(conn, receipts_wanted)

            short = [
                Short(sku, location, wanted, free_stock.get((sku, location), 0))
                for (sku, location), wanted in stock_wanted.items()
                if free_stock.get((sku, location), 0) < wanted
            ]
            for receipt_id, allotments in receipts_wanted.items():
                found = receipts.get(receipt_id)
                if found is None:
                    raise invalid(f"unknown receipt {receipt_id}")
                sku, location, status, free = found
                for a in allotments:
                    if (a.sku, a.location) != (sku, location):
                        raise invalid(
                            f"receipt {receipt_id} is for sku {sku} at {location},"
                            f" not sku {a.sku} at {a.location} (line {a.line_id})"
                        )
                wanted = sum(a.quantity for a in allotments)
                free = free if status == "open" else 0
                if free < wanted:
                    short.append(Short(sku, location, wanted, free, receipt_id))
            if short:
                raise ApplicationError(
                    f"insufficient stock for order {request.order_id}: "
                    + "; ".join(str(s) for s in short),
                    *(asdict(s) for s in short),
                    type=contracts.INSUFFICIENT_STOCK,
                    non_retryable=True,
                )

            receipts_reserved = {
                r: sum(a.quantity for a in al) for r, al in receipts_wanted.items()
            }
            await add_reserved(conn, stock_wanted, receipts_reserved)
            await insert_reservations(
                conn, ((request.key, request.order_id, a) for a in request.allotments)
            )
        return Empty()

    @activity.defn(name=contracts.RELEASE_STOCK.name)
    async def release_stock(self, request: StockReservation) -> Empty:
        """Give back what this order reserved for the allotments; a retry does nothing.

        Only the order's own reservations of the same line, sku, location, source and receipt
        are freed, at most each allotment's quantity, so a release can never hand out another
        order's units. What is no longer reserved (already released, never reserved) is skipped
        with a warning rather than failing the workflow's cleanup.
        """
        _check_sources(request.allotments)
        held: dict[HeldKey, int] = defaultdict(int)
        for a in request.allotments:
            held[a.line_id, a.sku, a.location, a.source.value, a.receipt_id] += a.quantity
        name = contracts.RELEASE_STOCK.name
        async with self._pool.connection() as conn, conn.transaction():
            if not await claim(conn, request.key, name, request.order_id):
                return Empty()
            # The same lock order as reserve_stock: stock rows, receipts, then reservations.
            # A future allotment's stock row too: its receipt may have been received since.
            await lock_stock(conn, sorted({(a.sku, a.location) for a in request.allotments}))
            await lock_receipts(conn, _receipts_wanted(request.allotments))
            freed_stock: dict[StockKey, int] = defaultdict(int)
            freed_receipts: dict[str, int] = defaultdict(int)
            for (line_id, sku, location, source, receipt_id), wanted in sorted(
                held.items(), key=lambda item: tuple(str(k) for k in item[0])
            ):
                rows = await lock_held(
                    conn, request.order_id, (line_id, sku, location, source, receipt_id)
                )
                freed, on_hand = await end_held(conn, rows, wanted, request.key, "released")
                if freed < wanted:
                    activity.logger.warning(
                        "release_stock %s: order %s line %s held %d of %d %s unit(s) of sku %s"
                        " at %s%s; releasing what it held",
                        request.key,
                        request.order_id,
                        line_id,
                        freed,
                        wanted,
                        source,
                        sku,
                        location,
                        "" if receipt_id is None else f" (receipt {receipt_id})",
                    )
                if source == StockSource.CURRENT.value:
                    freed_stock[sku, location] += freed
                elif freed and receipt_id is not None:  # on hand: received since
                    freed_receipts[receipt_id] += freed - on_hand
                    freed_stock[sku, location] += on_hand
            await add_reserved(conn, freed_stock, freed_receipts, sign=-1)
        return Empty()

    @activity.defn(name=contracts.UPDATE_DEMAND.name)
    async def update_demand(self, request: DemandUpdate) -> Empty:
        """Replace the order's rows in the demand index with what it still waits for (None:
        nothing), so the allocator sees each open line once and in its priority."""
        async with self._pool.connection() as conn:
            async with conn.transaction():
                await self.write_demand(conn, request)
            await self.after_demand(conn, request)
        return Empty()

    async def write_demand(self, conn: AsyncConnection[Any], request: DemandUpdate) -> None:
        """`update_demand`'s writes, once per key, in the caller's transaction (see there)."""
        backorder = request.backorder
        if backorder is not None and backorder.order_id != request.order_id:
            raise invalid(
                f"demand update for order {request.order_id} carries the backorder of"
                f" order {backorder.order_id}"
            )
        if await claim(conn, request.key, contracts.UPDATE_DEMAND.name, request.order_id):
            await self._replace_demand(conn, request)

    async def after_demand(self, conn: AsyncConnection[Any], request: DemandUpdate) -> None:
        """After the demand's commit (and again on a retry: the first may have died)."""
        free = await _free_stock(conn, request)
        if free and self._nudge is not None:
            # Stock that came in after the order read it, before its demand was written: the
            # pass that handled it did not see this order. Ask for another at once (not: wait
            # for the sweep); the allocator batches such asks into one pass.
            check = contracts.AllocationCheck(
                reason=f"order {request.order_id}: demand written with stock free",
                order_ids=(request.order_id,),
                skus=free,
            )
            await self._nudge(contracts.NudgeRequest(site=request.site, check=check))

    async def _replace_demand(self, conn: AsyncConnection[Any], request: DemandUpdate) -> None:
        await conn.execute("DELETE FROM demand WHERE order_id = %s", (request.order_id,))
        # the backorder room claimed at acceptance is held by the demand rows from here on
        await conn.execute(
            "DELETE FROM backorder_allowances WHERE order_id = %s", (request.order_id,)
        )
        backorder = request.backorder
        if backorder is None:
            return
        fulfillment = backorder.fulfillment
        async with conn.cursor() as cur:
            await cur.executemany(
                """
                INSERT INTO demand (order_id, line_id, sku, quantity_open, tier, placed_at,
                                    fulfillment_type, pickup_location, shipments,
                                    release_in_full, site)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                [
                    (
                        backorder.order_id,
                        ln.line_id,
                        ln.sku,
                        ln.quantity,
                        backorder.tier,
                        backorder.placed_at,
                        fulfillment.type.value,
                        fulfillment.pickup_location,
                        backorder.shipments,
                        backorder.release_in_full,
                        request.site,
                    )
                    for ln in backorder.lines
                ],
            )


async def _free_stock(conn: AsyncConnection[Any], request: DemandUpdate) -> tuple[str, ...]:
    """The skus the order still waits for that have free units on hand somewhere (a pass may
    take them for it)."""
    if request.backorder is None:
        return ()
    cur = await conn.execute(
        "SELECT DISTINCT sku FROM stock WHERE sku = ANY(%s) AND on_hand > reserved ORDER BY sku",
        (sorted({ln.sku for ln in request.backorder.lines}),),
    )
    return tuple(row[0] for row in await cur.fetchall())
