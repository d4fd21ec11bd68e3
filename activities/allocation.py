"""The allocator's activities: one allocation pass, the delivery of its allotments, and nudges.

A pass is one PostgreSQL transaction: it reads the open demand for the skus involved in
priority order, locks their stock (in the ledger's one lock order), applies the batch's
inventory events, runs the planner, records the reservations, shrinks the demand index and
writes one allotment signal per winning order into an outbox. It reads each sku's queue only
as far as the stock goes, a page at a time (`activities.demand_queue`: why that gives what
reading every waiting order gives); reading a further page first rolls back to before the
stock locks and the events. Stock reaches waiting orders in the same commit that makes it
visible, so a new order can never take units that older orders were waiting for. Delivery then
signals only those winners, many at once, and records the outcomes in batches; an order whose
workflow has ended gets its units released again for the next pass.

An order whose demand cannot be read or planned (a row written by hand, or by a version that
let an impossible placed_at through) is set aside, never in the way: the pass serves every
other order and raises one operator exception per order and cause (`demand_unreadable`,
`demand_invalid`, `demand_unplannable`), not one per pass. Passes skip the order until its
rows are fixed or removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from temporalio import activity
from temporalio.client import Client

from activities import contracts as c
from activities.allotment_delivery import AllotmentDelivery, lock_stock
from activities.allotment_delivery import reservation_key as reservation_key
from activities.demand_queue import DEMAND_INVALID as DEMAND_INVALID
from activities.demand_queue import DEMAND_UNREADABLE as DEMAND_UNREADABLE
from activities.demand_queue import DemandQueue, SetAside
from activities.feed import apply_events
from activities.ledger import StockKey, add_reserved, insert_reservations, read_stock
from config import Settings
from domain.inventory import (
    FutureReceiptCancelled,
    FutureReceiptPlanned,
    FutureReceiptReceived,
    FutureReceiptUpdated,
    InventoryEvent,
    ProductDefined,
    ReceiptNotice,
    StockAdjusted,
    StockPosition,
    StockReceived,
)
from domain.planner import (
    Backorder,
    Catalog,
    OrderRelease,
    Stock,
    decide_release,
)
from domain.policy import BackorderPolicy
from runtime import allocator
from runtime.exception_news import ExceptionNews
from workflows.allocator_messages import allocator_id
from workflows.messages import AllotmentSignal, ReceiptChange

POSITIONS_SHOWN = 200

DEMAND_UNPLANNABLE = "demand_unplannable"
"""Set aside: the planner fails on the order."""


class _ReadMore(Exception):
    """The pass must read further into some skus' queues before it may decide."""

    def __init__(self, skus: list[str]) -> None:
        super().__init__(", ".join(skus))
        self.skus = skus


class AllocationActivities(AllotmentDelivery):
    """The allocator's activities; they share the worker's pool and Temporal client."""

    def __init__(self, pool: AsyncConnectionPool, settings: Settings, client: Client) -> None:
        self._pool = pool
        self._settings = settings
        self._client = client

    def activities(self) -> list[Callable[..., Any]]:
        return [self.allocate, self.deliver_allotments, self.nudge_allocator, self.request_check]

    # -- the pass ------------------------------------------------------------------------------

    @activity.defn(name=c.ALLOCATE.name)
    async def allocate(self, request: c.PassRequest) -> c.PassReport:
        """Apply the events and allot stock in one transaction; a retry returns the first
        attempt's report (the pass id is recorded with its effects)."""
        policy = self._settings.policy_for(request.site)
        async with _heartbeating(), self._pool.connection() as conn, conn.transaction():
            # One pass of a site at a time, even when a timed-out attempt is still running.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"allocator:{request.site}",),
            )
            done = await _recorded(conn, request.pass_id)
            if done is not None:
                return done
            skus = await _skus_in_play(conn, request)
            unknown = await unknown_orders(conn, request.order_ids)
            queue = DemandQueue(conn, request.site, skus, policy)
            if request.full:
                await queue.read_all()
            else:
                await queue.read_first(request.order_ids, _units_arriving(request.events))
            while True:
                backorders, aside = queue.backorders, list(queue.aside)
                in_play = skus | {ln.sku for b in backorders for ln in b.lines}
                try:
                    # Locks are taken demand rows first, then stock: reading further into the
                    # queue first rolls back to here, which undoes the events and lets go of
                    # the stock rows (see _order_gone), and the next try takes them again.
                    async with _savepoint(conn, unless=queue.complete):
                        await lock_stock(conn, in_play, _receipts_named(request.events))
                        outcomes, effects = await apply_events(
                            conn, request.events, request.pass_id
                        )
                        stock, catalog = await read_stock(conn, in_play | effects.skus)
                        releases, unplannable = _plan(
                            backorders, stock, catalog, policy, request.as_of
                        )
                        unserved = queue.unserved(stock, catalog, request.as_of, releases)
                        if unserved:
                            raise _ReadMore(unserved)
                except _ReadMore as more:
                    await queue.read_more(more.skus)
                    continue
                break
            skus = in_play
            aside += unplannable
            await _reserve(conn, request.site, request.pass_id, releases)
            await _shrink_demand(conn, releases)
            signals = _signals(request.pass_id, releases, effects.notices)
            report = c.PassReport(
                pass_id=request.pass_id,
                site=request.site,
                outcomes=tuple(outcomes),
                skus=len(skus | effects.skus),
                orders_waiting=len(backorders) - len(unplannable),
                orders_released=sum(1 for r in releases if r.shipments),
                units_released=sum(ln.released for r in releases for ln in r.lines),
                receipt_notices=len(effects.notices),
                signals=len(signals),
                positions=await _positions(conn, effects.skus),
                unknown_orders=unknown,
            )
            await _record(conn, request, report, signals)
            raised = await _raise_set_aside(conn, request, aside)
        await ExceptionNews(self._client, self._pool)(sorted(raised))  # after the commit
        for a in aside:
            activity.logger.warning(
                "pass %s: order %s set aside (%s): %s%s",
                request.pass_id,
                a.order_id,
                a.kind,
                a.reason,
                "" if a.order_id in raised else " (its exception is already open)",
            )
        activity.logger.info(
            "pass %s: %d events, %d orders waiting, %d released (%d units), %d signals",
            request.pass_id,
            len(request.events),
            report.orders_waiting,
            report.orders_released,
            report.units_released,
            report.signals,
        )
        return report

    # -- nudges --------------------------------------------------------------------------------

    @activity.defn(name=c.NUDGE_ALLOCATOR.name)
    async def nudge_allocator(self, request: c.NudgeRequest) -> c.Empty:
        """Wake the site's allocator (starting it if need be) with a check."""
        site = request.site or self._settings.site
        await allocator.nudge(self._client, self._settings, site, request.check)
        return c.Empty()

    @activity.defn(name=c.REQUEST_CHECK.name)
    async def request_check(self, request: c.CheckRequest) -> c.Empty:
        """An order asks its allocator to look at it again, or at the stock it freed. A retry
        only asks twice, which costs the allocator nothing more than one pass."""
        check = c.AllocationCheck(
            reason=f"order {request.order_id}: {request.reason}"[:500],
            order_ids=(request.order_id,),
            skus=request.skus,
        )
        return await self.nudge_allocator(c.NudgeRequest(site=request.site, check=check))


@contextlib.asynccontextmanager
async def _heartbeating(every: float = 5.0) -> AsyncIterator[None]:
    """Heartbeat in the background while the body runs (a pass waits on locks and reads and
    writes many rows, with no natural point to report from)."""

    async def beat() -> None:
        while activity.in_activity():  # (not: a pass run directly, as tests of the pass do)
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def _savepoint(conn: AsyncConnection[Any], unless: bool) -> AsyncIterator[None]:
    """A savepoint around the body (an exception rolls back to it), or nothing when `unless`."""
    if unless:
        yield
        return
    async with conn.transaction():
        yield


# -- the pass, step by step --------------------------------------------------------------------


async def _recorded(conn: AsyncConnection[Any], pass_id: str) -> c.PassReport | None:
    cur = await conn.execute("SELECT report FROM allocation_passes WHERE pass_id = %s", (pass_id,))
    row = await cur.fetchone()
    return None if row is None else c.PassReport.model_validate(row[0])


def _units_arriving(events: Iterable[InventoryEvent]) -> dict[str, int]:
    """Units the events add per sku (received, adjusted up, planned to arrive)."""
    units: dict[str, int] = defaultdict(int)
    for e in events:
        if isinstance(e, StockReceived | FutureReceiptPlanned):
            units[e.sku] += e.quantity
        elif isinstance(e, StockAdjusted) and e.delta > 0:
            units[e.sku] += e.delta
    return units


def _receipts_named(events: Iterable[InventoryEvent]) -> set[str]:
    named = (FutureReceiptUpdated, FutureReceiptCancelled, FutureReceiptReceived)
    return {e.receipt_id for e in events if isinstance(e, named)}


async def _skus_in_play(conn: AsyncConnection[Any], request: c.PassRequest) -> set[str]:
    """The skus the events touch, the skus asked for, and those the named orders wait for
    (every sku with open demand on the site for a sweep)."""
    skus = set(request.skus)
    for e in request.events:
        if isinstance(e, StockReceived | StockAdjusted | FutureReceiptPlanned | ProductDefined):
            skus.add(e.sku)
    receipts = _receipts_named(request.events)
    if receipts:
        cur = await conn.execute(
            "SELECT DISTINCT sku FROM future_receipts WHERE receipt_id = ANY(%s)",
            (sorted(receipts),),
        )
        skus.update(str(s) for (s,) in await cur.fetchall())
    if request.full:
        cur = await conn.execute("SELECT DISTINCT sku FROM demand WHERE site = %s", (request.site,))
        skus.update(str(s) for (s,) in await cur.fetchall())
    elif request.order_ids:
        cur = await conn.execute(
            "SELECT DISTINCT sku FROM demand WHERE site = %s AND order_id = ANY(%s)",
            (request.site, list(request.order_ids)),
        )
        skus.update(str(s) for (s,) in await cur.fetchall())
    return skus


async def unknown_orders(conn: AsyncConnection[Any], order_ids: Iterable[str]) -> tuple[str, ...]:
    """The orders among `order_ids` this service does not know, sorted: no claim (every order
    accepted claims its id) and no demand row (one written by hand counts as known). A check
    of only such orders looks at nothing; its answer should say so, not "0 skus"."""
    wanted = sorted(set(order_ids))
    if not wanted:
        return ()
    cur = await conn.execute(
        """
        SELECT w.order_id FROM unnest(%s::text[]) AS w(order_id)
         WHERE NOT EXISTS (SELECT 1 FROM order_claims c WHERE c.order_id = w.order_id)
           AND NOT EXISTS (SELECT 1 FROM demand d WHERE d.order_id = w.order_id)
        """,
        (wanted,),
    )
    return tuple(sorted(str(o) for (o,) in await cur.fetchall()))


def _plan(
    backorders: Sequence[Backorder],
    stock: Stock,
    catalog: Catalog,
    policy: BackorderPolicy,
    as_of: dt.date,
) -> tuple[list[OrderRelease], list[SetAside]]:
    """The pass's releases. Should the planner fail, each order is planned alone to find the
    ones it fails on: those are set aside and the others planned again. A failure that no
    single order explains fails the pass (Temporal retries it), as before."""
    try:
        return list(decide_release(backorders, stock, catalog, policy, as_of)), []
    except Exception as err:
        failure = err
    fine, aside = [], []
    for b in backorders:
        try:
            list(decide_release([b], stock, catalog, policy, as_of))
        except Exception as err:
            reason = f"makes the planner fail: {type(err).__name__}: {err}"
            aside.append(SetAside(b.order_id, DEMAND_UNPLANNABLE, reason[:1000]))
        else:
            fine.append(b)
    if not aside:
        raise failure
    return list(decide_release(fine, stock, catalog, policy, as_of)), aside


async def _raise_set_aside(
    conn: AsyncConnection[Any], request: c.PassRequest, aside: Sequence[SetAside]
) -> set[str]:
    """An operator exception (severity high) for each order set aside, unless one of the same
    kind is still open for it: one open exception per order and cause, however many passes
    skip the order. Passes of a site never overlap (the advisory lock), so the check cannot
    race. The orders whose exception was raised now."""
    raised = set()
    for a in aside:
        detail = (
            f"order {a.order_id}'s demand on site {request.site} {a.reason}. Allocation passes"
            " set the order aside (every other order is still served) until its demand rows"
            " are fixed or removed; then resolve this exception."
            f" First seen by pass {request.pass_id}."
        )
        cur = await conn.execute(
            """
            INSERT INTO exceptions (key, order_id, kind, severity, detail)
            SELECT %s, %s, %s, %s, %s
             WHERE NOT EXISTS (SELECT 1 FROM exceptions
                                WHERE order_id = %s AND kind = %s AND resolved_at IS NULL)
            ON CONFLICT (key) DO NOTHING
            """,
            (
                c.step_key(allocator_id(request.site), request.pass_id, a.order_id, a.kind),
                a.order_id,
                a.kind,
                c.Severity.HIGH.value,
                detail,
                a.order_id,
                a.kind,
            ),
        )
        if cur.rowcount:
            raised.add(a.order_id)
    return raised


async def _reserve(
    conn: AsyncConnection[Any], site: str, pass_id: str, releases: Sequence[OrderRelease]
) -> None:
    """Record every allotment of the pass as a reservation and count it on its stock row or
    receipt (whose rows this transaction holds locked)."""
    stock: dict[StockKey, int] = defaultdict(int)
    receipts: dict[str, int] = defaultdict(int)
    held = []
    for release in releases:
        key = reservation_key(site, pass_id, release.order_id)
        for a in release.allotments:
            if a.receipt_id is None:
                stock[a.sku, a.location] += a.quantity
            else:
                receipts[a.receipt_id] += a.quantity
            held.append((key, release.order_id, a))
    await add_reserved(conn, stock, receipts)
    await insert_reservations(conn, held)


async def _shrink_demand(conn: AsyncConnection[Any], releases: Sequence[OrderRelease]) -> None:
    """What each winner still waits for: released lines leave the index, the rest shrink, and
    the new shipments count towards the order's cap. The order's own update, once it has
    applied the allotment, writes the same."""
    done, left, shipped = [], [], []
    for release in releases:
        for ln in release.lines:
            if ln.backordered:
                left.append((ln.backordered, release.order_id, ln.line_id))
            else:
                done.append((release.order_id, ln.line_id))
        if release.shipments:
            shipped.append((len(release.shipments), release.order_id))
    async with conn.cursor() as cur:
        if done:
            await cur.executemany("DELETE FROM demand WHERE order_id = %s AND line_id = %s", done)
        if left:
            await cur.executemany(
                """
                UPDATE demand SET quantity_open = %s, updated_at = now()
                 WHERE order_id = %s AND line_id = %s
                """,
                left,
            )
        if shipped:
            await cur.executemany(
                "UPDATE demand SET shipments = shipments + %s WHERE order_id = %s", shipped
            )


def _signals(
    pass_id: str, releases: Iterable[OrderRelease], notices: Iterable[ReceiptNotice]
) -> dict[str, AllotmentSignal]:
    """One allotment signal per order: its release and its news of receipts."""
    by_order: dict[str, list[ReceiptChange]] = defaultdict(list)
    for n in notices:
        by_order[n.order_id].append(ReceiptChange(receipt_id=n.receipt_id, status=n.status))
    released = {r.order_id: r for r in releases}
    return {
        order_id: AllotmentSignal(
            pass_id=pass_id,
            release=released.get(order_id),
            receipts=tuple(by_order.get(order_id, ())),
        )
        for order_id in sorted(released.keys() | by_order.keys())
    }


async def _positions(conn: AsyncConnection[Any], skus: set[str]) -> tuple[StockPosition, ...]:
    if not skus:
        return ()
    cur = await conn.execute(
        """
        SELECT sku, location, on_hand, reserved FROM stock
         WHERE sku = ANY(%s) ORDER BY sku, location LIMIT %s
        """,
        (sorted(skus), POSITIONS_SHOWN),
    )
    return tuple(
        StockPosition(sku=s, location=loc, on_hand=h, reserved=r)
        for s, loc, h, r in await cur.fetchall()
    )


async def _record(
    conn: AsyncConnection[Any],
    request: c.PassRequest,
    report: c.PassReport,
    signals: dict[str, AllotmentSignal],
) -> None:
    await conn.execute(
        "INSERT INTO allocation_passes (pass_id, site, reason, report) VALUES (%s, %s, %s, %s)",
        (request.pass_id, request.site, request.reason, Jsonb(report.model_dump(mode="json"))),
    )
    if signals:
        async with conn.cursor() as cur:
            await cur.executemany(
                """
                INSERT INTO allotment_deliveries (pass_id, order_id, signal)
                VALUES (%s, %s, %s)
                """,
                [
                    (request.pass_id, o, Jsonb(s.model_dump(mode="json")))
                    for o, s in signals.items()
                ],
            )
