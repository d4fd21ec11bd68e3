"""A pass reads the demand it can serve, and delivery records its outcomes in batches. Real
PostgreSQL, no Temporal (delivery signals a stand-in client that counts what it is sent).

- A one-unit receipt with thousands of orders waiting plans a handful of them: the head of the
  sku's queue in priority order (tier rank, placed_at, order id), read from the index.
- For generated queues (several skus, multi-line orders, tiers listed and not, ties in
  placed_at broken by order ids whose code point order is not the locale's, orders released
  only in full that must be skipped, pickup orders, split caps, inserts, future receipts near
  and beyond the date limit, every release mode), a pass that pages through each queue with
  tiny pages hands out exactly what the same pass reading every waiting order hands out.
- What paging must not lose: an order named by a check is read wherever it stands; the sweep
  still reads every waiting order; an order whose rows disagree on its place in the queue is
  set aside.
- Delivery: every outcome recorded, in batches of at most DELIVERY_BATCH; a delivery that
  fails half-way records what it delivered, and its retry signals only the rest; an ended
  order's units go back, as before.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities import allotment_delivery, demand_queue
from activities.allocation import DEMAND_INVALID, AllocationActivities
from activities.contracts import DeliveryRequest, PassReport, PassRequest
from activities.demand_queue import DemandQueue
from config import Settings
from domain.inventory import (
    FutureReceiptPlanned,
    InventoryEvent,
    LocationDefined,
    ProductDefined,
    StockReceived,
)
from domain.order import workflow_id_for
from domain.planner import Backorder, decide_release
from tests.test_allocation_pass import PLACED, TODAY, env

SITE = "s"


def uid() -> str:
    return uuid.uuid4().hex[:8]


def ev() -> str:
    return uuid.uuid4().hex


async def pass_(pool: AsyncConnectionPool, *events: InventoryEvent, **more: Any) -> PassReport:
    policy = more.pop("policy", {})
    run = AllocationActivities(pool, Settings(site=SITE, policy=policy), cast(Client, object()))
    request = PassRequest(
        site=SITE,
        pass_id=more.pop("pass_id", f"p-{uid()}"),
        reason="test",
        as_of=TODAY,
        events=events,
        **more,
    )
    return await env.run(run.allocate, request)


def setup(*skus: str, insert: str = "", no_future: str = "") -> list[InventoryEvent]:
    return [
        LocationDefined(event_id=ev(), location_id="DC", rank=0),
        LocationDefined(event_id=ev(), location_id="ST", rank=1, pickup=True),
        *(
            ProductDefined(
                event_id=ev(), sku=s, insert=s == insert, future_inventory=s != no_future
            )
            for s in skus
        ),
    ]


@dataclass
class Line:
    line_id: str
    sku: str
    quantity: int


@dataclass
class Order:
    order_id: str
    lines: list[Line]
    tier: str = "standard"
    minutes: int = 0
    in_full: bool = False
    pickup: str | None = None
    shipments: int = 0


async def write(pool: AsyncConnectionPool, orders: list[Order]) -> None:
    """Demand rows as the order workflows write them (all lines repeat the order's fields)."""
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO demand (order_id, line_id, sku, quantity_open, tier, placed_at,
                                fulfillment_type, pickup_location, shipments, release_in_full,
                                site)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    o.order_id,
                    ln.line_id,
                    ln.sku,
                    ln.quantity,
                    o.tier,
                    PLACED + dt.timedelta(minutes=o.minutes),
                    "sth" if o.pickup is None else "bopis",
                    o.pickup,
                    o.shipments,
                    o.in_full,
                    SITE,
                )
                for o in orders
                for ln in o.lines
            ],
        )


async def queue_of(pool: AsyncConnectionPool, sku: str, n: int, prefix: str) -> list[str]:
    """`n` orders waiting for one unit of `sku` each, a minute apart."""
    ids = [f"{prefix}-{i:05d}" for i in range(n)]
    async with pool.connection() as conn:
        await conn.execute(
            """
            INSERT INTO demand (order_id, line_id, sku, quantity_open, tier, placed_at,
                                fulfillment_type, site)
            SELECT o, 'L1', %s, 1, 'standard', %s + make_interval(mins => n::int), 'sth', %s
              FROM unnest(%s::text[]) WITH ORDINALITY AS w(o, n)
            """,
            (sku, PLACED, SITE, ids),
        )
    return ids


@contextmanager
def planned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The orders the planner is given, per call (by the pass under test)."""
    calls: list[list[str]] = []

    def spy(backorders: list[Backorder], *args: Any) -> Any:
        calls.append([b.order_id for b in backorders])
        return decide_release(backorders, *args)

    with monkeypatch.context() as m:
        m.setattr("activities.allocation.decide_release", spy)
        yield calls


async def held(pool: AsyncConnectionPool, pass_id: str) -> dict[str, int]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT order_id, sum(quantity) FROM reservations"
            " WHERE key LIKE %s AND state = 'reserved' GROUP BY 1",
            (f"%/{pass_id}/%",),
        )
        return {str(o): int(q) for o, q in await cur.fetchall()}


# -- a pass reads the head of the queue ----------------------------------------------------------


async def test_a_one_unit_pass_plans_only_the_head_of_a_long_queue(
    pg_pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    sku = f"LONG-{uid()}"
    await pass_(pg_pool, *setup(sku))
    waiting = await queue_of(pg_pool, sku, 3000, f"q-{sku}")
    vip = f"vip-{sku}"  # placed after everyone, served before everyone
    await write(pg_pool, [Order(vip, [Line("L1", sku, 1)], tier="vip", minutes=10_000)])

    first = max(demand_queue.FIRST_PAGE, 1 + demand_queue.PAGE_MARGIN)
    with planned(monkeypatch) as calls:
        report = await pass_(
            pg_pool, StockReceived(event_id=ev(), sku=sku, location="DC", quantity=1)
        )
        head = await pass_(pg_pool, skus=(sku,))  # a check of the sku reads its first page
    # one unit: that many rows of the queue and a few more, in priority order
    assert len(calls) == 2 and set(calls[0]) == {vip, *waiting[: demand_queue.PAGE_MARGIN]}
    assert (report.orders_waiting, report.units_released) == (len(calls[0]), 1)
    assert await held(pg_pool, report.pass_id) == {vip: 1}
    assert set(calls[1]) == set(waiting[:first]) and head.orders_waiting == first

    with planned(monkeypatch) as calls:
        second = await pass_(
            pg_pool, StockReceived(event_id=ev(), sku=sku, location="DC", quantity=2)
        )
    assert len(calls) == 1 and set(calls[0]) == set(waiting[: 2 + demand_queue.PAGE_MARGIN])
    assert await held(pg_pool, second.pass_id) == {waiting[0]: 1, waiting[1]: 1}


async def test_a_pass_reads_further_while_the_orders_it_read_leave_stock(
    pg_pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first 40 orders want all of a sku (release in full) and cannot have it: the pass
    reads on until orders that can take the units, in a few rounds, not the whole queue."""
    sku = f"SKIP-{uid()}"
    await pass_(pg_pool, *setup(sku))
    blocked = [
        Order(f"a-{i:03d}-{sku}", [Line("L1", sku, 50)], minutes=i - 100, in_full=True)
        for i in range(40)
    ]
    await write(pg_pool, blocked)
    takers = await queue_of(pg_pool, sku, 2000, f"z-{sku}")  # placed after the blocked ones

    with planned(monkeypatch) as calls:
        report = await pass_(
            pg_pool, StockReceived(event_id=ev(), sku=sku, location="DC", quantity=3)
        )
    assert await held(pg_pool, report.pass_id) == {o: 1 for o in takers[:3]}
    assert 1 < len(calls) <= 4 and len(calls[-1]) < 200
    assert set(calls[-1]) >= {o.order_id for o in blocked} | set(takers[:3])


async def test_an_order_named_by_a_check_is_read_wherever_it_stands_and_the_sweep_reads_all(
    pg_pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    sku = f"NAMED-{uid()}"
    await pass_(pg_pool, *setup(sku))
    waiting = await queue_of(pg_pool, sku, 300, f"n-{sku}")
    deep = waiting[250]
    await rows_of(pg_pool, "UPDATE demand SET placed_at = 'infinity' WHERE order_id = %s", deep)

    receipt = await pass_(pg_pool, StockReceived(event_id=ev(), sku=sku, location="DC", quantity=1))
    assert await exceptions(pg_pool, deep) == []  # not read: not in the way of anyone
    assert await held(pg_pool, receipt.pass_id) == {waiting[0]: 1}

    with planned(monkeypatch) as calls:
        check = await pass_(pg_pool, order_ids=(deep,))
    assert await exceptions(pg_pool, deep) == ["demand_unreadable"]
    assert deep not in calls[0] and check.orders_waiting == len(calls[0]) < 100

    with planned(monkeypatch) as calls:
        sweep = await pass_(pg_pool, full=True)
    assert set(waiting[1:]) - {deep} <= set(calls[0])
    assert sweep.orders_waiting >= 298


async def test_an_order_whose_rows_disagree_on_its_place_in_the_queue_is_set_aside(
    pg_pool: AsyncConnectionPool,
) -> None:
    a, b = f"DIS-A-{uid()}", f"DIS-B-{uid()}"
    await pass_(pg_pool, *setup(a, b))
    torn, fine = f"torn-{a}", f"fine-{a}"
    await write(
        pg_pool,
        [
            Order(torn, [Line("L1", a, 1), Line("L2", b, 1)]),
            Order(fine, [Line("L1", a, 1)], minutes=5),
        ],
    )
    await rows_of(
        pg_pool, "UPDATE demand SET tier = 'vip' WHERE order_id = %s AND line_id = 'L2'", torn
    )
    report = await pass_(pg_pool, StockReceived(event_id=ev(), sku=a, location="DC", quantity=1))
    assert await held(pg_pool, report.pass_id) == {fine: 1}
    assert await exceptions(pg_pool, torn) == [DEMAND_INVALID]


async def rows_of(pool: AsyncConnectionPool, sql: str, *params: Any) -> None:
    async with pool.connection() as conn:
        await conn.execute(sql.encode(), params)


async def exceptions(pool: AsyncConnectionPool, order_id: str) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT kind FROM exceptions WHERE order_id = %s ORDER BY kind", (order_id,)
        )
        return [str(k) for (k,) in await cur.fetchall()]


# -- paging gives what the whole queue gives -------------------------------------------------------

TIERS = ["vip", "expedited", "wholesale", "standard", "standard", "standard", "gold", "silver"]
"""gold and silver are unlisted: they queue together with standard (rank 1001)."""
ID_CHARS = "aAbBzZ09_-."
"""Order ids whose code point order differs from most locales' (case, punctuation)."""


@dataclass
class Scenario:
    """One generated queue and the pass that serves it, written for one world (prefix)."""

    skus: int
    insert: int | None
    no_future: int | None
    orders: list[Order]
    stock: list[tuple[int, str, int]]
    """Before the pass: (sku, location, units)."""
    receipts: list[tuple[int, str, int]]
    """In the pass."""
    planned: list[tuple[int, str, int, int | None]]
    """Future receipts in the pass: (sku, location, units, days from today or None)."""
    check: str
    """"events": the skus of the events only; "all": every sku; "named": and some orders."""
    named: list[str] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)


def scenario(rnd: random.Random) -> Scenario:
    skus = rnd.randint(2, 4)
    orders = []
    for i in range(rnd.randint(30, 110)):
        n = rnd.choice([1, 1, 1, 2, 2, 3])
        lines = [
            Line(f"L{j}", f"K{rnd.randrange(skus)}", rnd.choice([1, 1, 1, 2, 3, 5]))
            for j in range(1, n + 1)
        ]
        order_id = "".join(rnd.choice(ID_CHARS) for _ in range(3)) + f"{i:03d}"
        orders.append(
            Order(
                order_id,
                lines,
                tier=rnd.choice(TIERS),
                minutes=rnd.randint(0, 20),  # many ties: the order id decides
                in_full=rnd.random() < 0.25,
                pickup="ST" if rnd.random() < 0.15 else None,
                shipments=rnd.choice([0, 0, 0, 1, 2]),
            )
        )
    check = rnd.choice(["events", "all", "named"])
    stock = []
    if check != "events":  # (a sku outside the pass has no stock: see demand_queue)
        stock = [(s, loc, rnd.randint(0, 6)) for s in range(skus) for loc in ("DC", "ST")]
    receipts = [
        (rnd.randrange(skus), rnd.choice(["DC", "DC", "ST"]), rnd.randint(1, 25))
        for _ in range(rnd.randint(1, 3))
    ]
    planned_ = [
        (
            rnd.randrange(skus),
            rnd.choice(["DC", "ST"]),
            rnd.randint(1, 15),
            rnd.choice([3, 20, 60, None]),
        )
        for _ in range(rnd.randint(0, 2))
    ]
    mode = rnd.choice(["full", "line_item", "quantity"])
    policy: dict[str, Any] = {
        "release_mode": mode,
        "future_inventory": rnd.random() < 0.6,
        "max_shipments": rnd.choice([None, None, 2, 3]),
        "inserts": rnd.choice(["ship_with_order", "drop"]),
    }
    return Scenario(
        skus=skus,
        insert=rnd.choice([None, None, skus - 1]),
        no_future=rnd.choice([None, 0]),
        orders=orders,
        stock=stock,
        receipts=receipts,
        planned=planned_,
        check=check,
        named=[o.order_id for o in rnd.sample(orders, 3)] if check == "named" else [],
        policy=policy,
    )


@dataclass
class Outcome:
    report: PassReport
    reserved: list[tuple[Any, ...]]
    demand: list[tuple[Any, ...]]
    signals: list[tuple[str, Any]]


async def serve(pool: AsyncConnectionPool, sc: Scenario, world: str) -> Outcome:
    """Write the scenario under this world's names (a prefix keeps every order's place), run
    its pass; what the pass reserved, what demand is left, who is signalled, unprefixed."""
    tag = f"{world}{uid()}-"
    sku = [f"{tag}K{i}" for i in range(sc.skus)]
    await pass_(
        pool,
        *setup(
            *sku,
            insert="" if sc.insert is None else sku[sc.insert],
            no_future="" if sc.no_future is None else sku[sc.no_future],
        ),
        *(
            StockReceived(event_id=ev(), sku=sku[s], location=loc, quantity=q)
            for s, loc, q in sc.stock
            if q
        ),
    )
    await write(
        pool,
        [
            Order(
                tag + o.order_id,
                [Line(ln.line_id, tag + ln.sku, ln.quantity) for ln in o.lines],
                o.tier,
                o.minutes,
                o.in_full,
                o.pickup,
                o.shipments,
            )
            for o in sc.orders
        ],
    )
    events: list[InventoryEvent] = [
        StockReceived(event_id=ev(), sku=sku[s], location=loc, quantity=q)
        for s, loc, q in sc.receipts
    ]
    events += [
        FutureReceiptPlanned(
            event_id=ev(),
            receipt_id=f"{tag}PO{i}",
            sku=sku[s],
            location=loc,
            quantity=q,
            expected_date=None if days is None else TODAY + dt.timedelta(days=days),
        )
        for i, (s, loc, q, days) in enumerate(sc.planned)
    ]
    more: dict[str, Any] = {}
    if sc.check != "events":
        more["skus"] = tuple(sku)
    if sc.named:
        more["order_ids"] = tuple(tag + o for o in sc.named)
    report = await pass_(pool, *events, policy=sc.policy, **more)

    def bare(v: Any) -> Any:
        return v.removeprefix(tag) if isinstance(v, str) else v

    async with pool.connection() as conn:
        cur = await conn.execute(
            """
            SELECT order_id, line_id, sku, location, source, receipt_id, sum(quantity)
              FROM reservations WHERE key LIKE %s
             GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
            """,
            (f"%/{report.pass_id}/%",),
        )
        reserved = [tuple(bare(v) for v in r) for r in await cur.fetchall()]
        cur = await conn.execute(
            """
            SELECT order_id, line_id, sku, quantity_open, shipments FROM demand
             WHERE starts_with(order_id, %s) ORDER BY 1, 2
            """,
            (tag,),
        )
        demand = [tuple(bare(v) for v in r) for r in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT order_id, signal FROM allotment_deliveries WHERE pass_id = %s ORDER BY 1",
            (report.pass_id,),
        )
        signals = []
        for order_id, signal in await cur.fetchall():
            release = signal.get("release") or {}
            lines = [
                (ln["line_id"], ln["released"], ln["backordered"], ln["cancelled"])
                for ln in release.get("lines", [])
            ]
            signals.append((bare(order_id), (lines, len(release.get("shipments", [])))))
    return Outcome(report, reserved, demand, signals)


@pytest.mark.parametrize("seed", range(12))
async def test_paging_releases_what_reading_the_whole_queue_releases(
    pg_pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    sc = scenario(random.Random(seed))

    async def whole(self: DemandQueue, *_: Any) -> None:
        await self.read_all()

    with monkeypatch.context() as m:  # the pass as it was: every order waiting on the skus
        m.setattr(DemandQueue, "read_first", whole)
        reference = await serve(pg_pool, sc, "W")
    with monkeypatch.context() as m:
        tiny_pages(m)
        with planned(m) as calls:
            paged = await serve(pg_pool, sc, "P")

    assert paged.reserved == reference.reserved
    assert paged.signals == reference.signals
    assert paged.demand == reference.demand
    r, p = reference.report, paged.report
    assert (p.orders_released, p.units_released) == (r.orders_released, r.units_released)
    assert p.orders_waiting <= r.orders_waiting and calls


def tiny_pages(m: pytest.MonkeyPatch) -> None:
    """Pages as small as they go, growing slowly: many rounds."""
    m.setattr(demand_queue, "FIRST_PAGE", 1)
    m.setattr(demand_queue, "PAGE_MARGIN", 0)
    m.setattr(demand_queue, "LARGEST_FIRST_PAGE", 2)
    m.setattr(demand_queue, "GROWTH_CAP", 2)


async def test_the_generated_queues_are_served_from_a_part_of_the_queue_in_rounds(
    pg_pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison above means something: across the seeds, passes read in several rounds,
    leave orders unread and still hand out units (not: every pass reads everything at once,
    or releases nothing)."""
    unread = released = rounds = 0
    for seed in range(12):
        sc = scenario(random.Random(seed))
        in_play = set(range(sc.skus))
        if sc.check == "events":
            in_play = {s for s, _, _ in sc.receipts} | {s for s, _, _, _ in sc.planned}
        waiting = sum(1 for o in sc.orders if any(int(ln.sku[1:]) in in_play for ln in o.lines))
        with monkeypatch.context() as m:
            tiny_pages(m)
            with planned(m) as calls:
                out = await serve(pg_pool, sc, "Q")
        unread += out.report.orders_waiting < waiting
        released += out.report.units_released > 0
        rounds += len(calls) >= 3
    assert unread >= 4 and released >= 8 and rounds >= 4, (unread, released, rounds)


# -- delivery ------------------------------------------------------------------------------------


class Handle:
    def __init__(self, client: FakeClient, workflow_id: str) -> None:
        self._client, self._id = client, workflow_id

    async def signal(self, name: str, arg: Any) -> None:
        assert name == "allotment"
        await asyncio.sleep(self._client.delay)
        if self._id in self._client.gone:
            raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
        if self._id in self._client.fail:
            self._client.fail.discard(self._id)
            raise RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")
        self._client.signalled.append(self._id)


class FakeClient:
    """Counts the signals it is sent; `gone` workflows are not found, `fail` ones fail once."""

    def __init__(
        self, gone: set[str] | None = None, fail: set[str] | None = None, delay: float = 0
    ) -> None:
        self.gone, self.fail, self.delay = gone or set(), fail or set(), delay
        self.signalled: list[str] = []

    def get_workflow_handle(self, workflow_id: str) -> Handle:
        return Handle(self, workflow_id)


async def winners(pool: AsyncConnectionPool, n: int) -> tuple[str, list[str]]:
    """A pass that allots one unit to each of `n` orders; its id and the orders."""
    sku = f"DLV-{uid()}"
    await pass_(pool, *setup(sku))
    orders = await queue_of(pool, sku, n, f"d-{sku}")
    report = await pass_(pool, StockReceived(event_id=ev(), sku=sku, location="DC", quantity=n))
    assert report.signals == n
    return report.pass_id, orders


async def deliveries(pool: AsyncConnectionPool, pass_id: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT order_id, outcome, delivered_at FROM allotment_deliveries"
            " WHERE pass_id = %s ORDER BY order_id",
            (pass_id,),
        )
        return list(await cur.fetchall())


def deliver(pool: AsyncConnectionPool, client: FakeClient) -> AllocationActivities:
    return AllocationActivities(pool, Settings(site=SITE), cast(Client, client))


async def test_delivery_records_every_outcome_in_batches(pg_pool: AsyncConnectionPool) -> None:
    pass_id, orders = await winners(pg_pool, 450)
    gone = set(orders[100:103])
    client = FakeClient(gone={workflow_id_for(o) for o in gone}, delay=0.002)

    report = await env.run(
        deliver(pg_pool, client).deliver_allotments, DeliveryRequest(site=SITE, pass_id=pass_id)
    )

    assert (report.delivered, set(report.gone)) == (447, gone)
    assert sorted(client.signalled) == sorted(workflow_id_for(o) for o in orders if o not in gone)
    found = await deliveries(pg_pool, pass_id)
    assert {o: outcome for o, outcome, _ in found} == {
        o: "gone" if o in gone else "delivered" for o in orders
    }
    batches: dict[Any, int] = {}
    for _, outcome, at in found:
        if outcome == "delivered":
            batches[at] = batches.get(at, 0) + 1
    assert max(batches.values()) <= allotment_delivery.DELIVERY_BATCH
    assert len(batches) <= 10  # not one statement per order
    assert await held(pg_pool, pass_id) == {o: 1 for o in orders if o not in gone}
    async with pg_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM demand WHERE order_id = ANY(%s)", (list(gone),)
        )
        assert await cur.fetchone() == (0,)


async def test_a_delivery_that_fails_records_what_it_delivered_and_the_retry_sends_the_rest(
    pg_pool: AsyncConnectionPool,
) -> None:
    pass_id, orders = await winners(pg_pool, 300)
    broken = workflow_id_for(orders[150])
    first = FakeClient(fail={broken}, delay=0.002)

    with pytest.raises(RPCError):
        await env.run(
            deliver(pg_pool, first).deliver_allotments, DeliveryRequest(site=SITE, pass_id=pass_id)
        )
    after_first = await deliveries(pg_pool, pass_id)
    recorded = {workflow_id_for(o) for o, outcome, _ in after_first if outcome == "delivered"}
    assert recorded == set(first.signalled) and 0 < len(recorded) < 300
    assert broken not in recorded

    again = FakeClient(delay=0.001)
    report = await env.run(
        deliver(pg_pool, again).deliver_allotments, DeliveryRequest(site=SITE, pass_id=pass_id)
    )
    assert sorted(again.signalled) == sorted({workflow_id_for(o) for o in orders} - recorded)
    assert report.delivered == 300 - len(recorded)
    assert all(outcome == "delivered" for _, outcome, _ in await deliveries(pg_pool, pass_id))


async def test_paged_passes_order_writes_and_gone_orders_run_together_without_deadlock(
    pg_pool: AsyncConnectionPool, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Passes of two sites reading their queues in many rounds, the orders rewriting their
    demand, and deliveries releasing ended orders' units (demand rows, then stock rows, as a
    pass takes them), all at once on one sku: every one of them commits, and the stock's
    reserved units are exactly its open reservations."""
    tiny_pages(monkeypatch)
    sku = f"RACE-{uid()}"
    await pass_(pg_pool, *setup(sku))
    orders = {
        site: [Order(f"{site}{i:03d}-{sku}", [Line("L1", sku, 2)], minutes=i) for i in range(60)]
        for site in ("s", "t")
    }
    for site, queue in orders.items():
        await write_site(pg_pool, queue, site)
    big = AsyncConnectionPool(pg_dsn, min_size=4, max_size=16, open=False)
    await big.open(wait=True)
    try:
        everyone_gone = FakeClient(
            gone={workflow_id_for(o.order_id) for q in orders.values() for o in q}
        )

        async def a_pass(site: str) -> None:
            run = AllocationActivities(
                big,
                Settings(site=site, policy={"release_mode": "quantity"}),
                cast(Client, everyone_gone),
            )
            report = await env.run(
                run.allocate,
                PassRequest(
                    site=site,
                    pass_id=f"{site}-{uid()}",
                    reason="race",
                    as_of=TODAY,
                    events=(StockReceived(event_id=ev(), sku=sku, location="DC", quantity=3),),
                ),
            )
            await env.run(
                run.deliver_allotments, DeliveryRequest(site=site, pass_id=report.pass_id)
            )

        async def rewrite(order: Order, site: str) -> None:
            await write_site(big, [order], site, replace=True)

        work = [a_pass(site) for _ in range(8) for site in orders]
        work += [rewrite(o, site) for site, q in orders.items() for o in q[::3]]
        random.Random(7).shuffle(work)
        await asyncio.gather(*work)
    finally:
        await big.close()
    async with pg_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT on_hand, reserved FROM stock WHERE sku = %s AND location = 'DC'", (sku,)
        )
        on_hand, reserved = await cur.fetchone() or (0, 0)
        cur = await conn.execute(
            "SELECT coalesce(sum(quantity), 0) FROM reservations"
            " WHERE sku = %s AND state = 'reserved'",
            (sku,),
        )
        (open_reservations,) = await cur.fetchone() or (0,)
    assert on_hand == 48 and reserved == open_reservations


async def write_site(
    pool: AsyncConnectionPool, orders: list[Order], site: str, replace: bool = False
) -> None:
    """Demand rows of `site`, replaced as the order's own update replaces them (delete, insert,
    in one transaction)."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        if replace:
            await cur.execute(
                "DELETE FROM demand WHERE order_id = ANY(%s)", ([o.order_id for o in orders],)
            )
        await cur.executemany(
            """
            INSERT INTO demand (order_id, line_id, sku, quantity_open, tier, placed_at,
                                fulfillment_type, site)
            VALUES (%s, %s, %s, %s, 'standard', %s, 'sth', %s)
            """,
            [
                (
                    o.order_id,
                    ln.line_id,
                    ln.sku,
                    ln.quantity,
                    PLACED + dt.timedelta(minutes=o.minutes),
                    site,
                )
                for o in orders
                for ln in o.lines
            ],
        )
