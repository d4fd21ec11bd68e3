"""Backorder limits: the room an order may take is claimed in PostgreSQL under a lock per sku
(real embedded PostgreSQL), and acceptance refuses the excess, cancelled, given back and told
with the reason (the order workflow on the time-skipping server)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from activities.backorder_limits import BackorderLimits
from activities.inventory import InventoryActivities
from domain.limits import BackorderAllowance, within_allowances
from domain.order import Fulfillment, FulfillmentType
from domain.planner import AcceptancePlan, Backorder, BackorderLine, LineOutcome
from domain.policy import BackorderPolicy
from tests.fakes import World
from tests.order_life import make_order, running, start, stock, task_queue
from tests.polling import eventually
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus

CAP_5 = BackorderPolicy(max_backordered_units_per_sku=5)
PER_CUSTOMER_3 = BackorderPolicy(max_backorder_per_customer=3)


def asking(order_id: str, customer: str, **wanted: int) -> c.AllowanceRequest:
    return c.AllowanceRequest(
        order_id=order_id,
        customer_id=customer,
        wanted=tuple(c.WantedUnits(sku=sku, quantity=q) for sku, q in wanted.items()),
    )


async def waiting(
    pool: AsyncConnectionPool, order_id: str, customer: str, sku: str, n: int, site: str
) -> None:
    """An order already accepted: its read-model row and its demand (what waits)."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO orders (order_id, workflow_id, order_number, site, customer_id,"
            " customer_tier, placed_at, currency, order_value, status, skus, status_since)"
            " VALUES (%s, %s, %s, %s, %s, 'standard', now(), 'USD', 1, 'backordered',"
            " ARRAY[%s], now())",
            (order_id, f"backorder-{order_id}", order_id, site, customer, sku),
        )
        await conn.execute(
            "INSERT INTO demand (order_id, line_id, sku, quantity_open, tier, placed_at,"
            " fulfillment_type, site) VALUES (%s, 'L1', %s, %s, 'standard', now(), 'sth', %s)",
            (order_id, sku, n, site),
        )


def backorder_of(order_id: str, *lines: tuple[str, str, int]) -> Backorder:
    return Backorder(
        order_id=order_id,
        placed_at=dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC),
        tier="standard",
        fulfillment=Fulfillment(type=FulfillmentType.SHIP_TO_HOME),
        lines=tuple(BackorderLine(line_id=i, sku=s, quantity=q) for i, s, q in lines),
    )


def units(allowances: tuple[BackorderAllowance, ...]) -> dict[str, int]:
    return {a.sku: a.units for a in allowances}


async def test_the_site_cap_counts_what_waits_and_what_others_claimed(
    pg_pool: AsyncConnectionPool,
) -> None:
    site, sku, tag = f"s-{uuid.uuid4().hex[:6]}", "CAP", uuid.uuid4().hex[:6]
    limits = BackorderLimits(pg_pool)
    await waiting(pg_pool, f"W-{tag}", "c0", sku, 2, site)
    first = await limits.claim(asking(f"A-{tag}", "c1", CAP=2), site, CAP_5)
    second = await limits.claim(asking(f"B-{tag}", "c2", CAP=4), site, CAP_5)
    assert units(first) == {"CAP": 2} and first[0].reason == ""
    assert units(second) == {"CAP": 1}  # 5 - 2 waiting - 2 claimed by A
    assert "at most 5 units of CAP may wait at the site, 4 do" in second[0].reason
    again = await limits.claim(asking(f"B-{tag}", "c2", CAP=4), site, CAP_5)
    assert again == second  # a retried acceptance gets the first answer
    other_site = await limits.claim(asking(f"C-{tag}", "c3", CAP=4), f"{site}-2", CAP_5)
    assert units(other_site) == {"CAP": 4}
    assert await limits.claim(asking(f"D-{tag}", "c4", CAP=4), site, BackorderPolicy()) == ()


async def test_a_customer_limit_counts_only_that_customers_orders(
    pg_pool: AsyncConnectionPool,
) -> None:
    site, tag = f"s-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    limits = BackorderLimits(pg_pool)
    await waiting(pg_pool, f"W1-{tag}", f"alice-{tag}", "KTP", 2, site)
    await waiting(pg_pool, f"W2-{tag}", f"bob-{tag}", "KTP", 3, site)
    alice_asks = asking(f"A-{tag}", f"alice-{tag}", KTP=4, MUG=1)
    alice = await limits.claim(alice_asks, site, PER_CUSTOMER_3)
    assert units(alice) == {"KTP": 1, "MUG": 1}
    assert "at most 3 units of KTP on backorder, 2 already are" in alice[0].reason
    carol = await limits.claim(asking(f"C-{tag}", f"carol-{tag}", KTP=3), site, PER_CUSTOMER_3)
    assert units(carol) == {"KTP": 3}


async def test_orders_claiming_the_last_room_at_once_never_both_get_it(
    pg_pool: AsyncConnectionPool,
) -> None:
    site, tag = f"s-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    limits = BackorderLimits(pg_pool)
    claims = await asyncio.gather(
        *(limits.claim(asking(f"R{i}-{tag}", f"c{i}", CAP=2), site, CAP_5) for i in range(4))
    )
    assert sorted(units(a)["CAP"] for a in claims) == [0, 1, 2, 2]  # 5 in all, never more


async def test_writing_the_orders_demand_hands_its_room_to_the_demand_rows(
    pg_pool: AsyncConnectionPool,
) -> None:
    site, tag = f"s-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    limits = BackorderLimits(pg_pool)
    order = f"A-{tag}"
    await limits.claim(asking(order, "c1", CAP=3), site, CAP_5)
    inventory = InventoryActivities(pg_pool)
    demand = c.DemandUpdate(
        key=f"backorder-{order}/demand-1",
        order_id=order,
        backorder=backorder_of(order, ("L1", "CAP", 3)),
        site=site,
    )
    async with pg_pool.connection() as conn, conn.transaction():
        await inventory.write_demand(conn, demand)
    async with pg_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM backorder_allowances WHERE order_id = %s", (order,)
        )
        assert await cur.fetchone() == (0,)
    later = await limits.claim(asking(f"B-{tag}", "c2", CAP=5), site, CAP_5)
    assert units(later) == {"CAP": 2}  # the 3 now wait as demand: counted once, not twice


def test_the_plan_keeps_what_ships_and_cancels_what_waits_beyond_the_room() -> None:
    plan = AcceptancePlan(
        order_id="A-1",
        shipments=(),
        lines=(
            LineOutcome(line_id="L1", sku="CAP", released=1, backordered=3, cancelled=0),
            LineOutcome(line_id="L2", sku="CAP", released=0, backordered=2, cancelled=0),
            LineOutcome(line_id="L3", sku="FREE", released=0, backordered=4, cancelled=0),
        ),
        backorder=backorder_of("A-1", ("L1", "CAP", 3), ("L2", "CAP", 2), ("L3", "FREE", 4)),
    )
    limited, reasons = within_allowances(
        plan, [BackorderAllowance(sku="CAP", units=2, reason="the cap")]
    )
    assert [(o.line_id, o.released, o.backordered, o.cancelled) for o in limited.lines] == [
        ("L1", 1, 2, 1),
        ("L2", 0, 0, 2),
        ("L3", 0, 4, 0),
    ]
    assert limited.backorder is not None
    assert [(ln.line_id, ln.quantity) for ln in limited.backorder.lines] == [
        ("L1", 2),
        ("L3", 4),
    ]
    assert reasons == ("3 x CAP not taken on backorder: the cap",)
    assert within_allowances(plan, [BackorderAllowance(sku="CAP", units=5)]) == (plan, ())


async def notices(world: World) -> list[c.NoticeKind]:
    return world.notices()


async def test_an_order_over_the_limit_has_the_excess_refused_and_is_told_why(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    order = make_order(t0, [("CAP", 5, "10.00"), ("MUG", 1, "4.00")], paid="54.00")
    world = World(
        policy=CAP_5,
        stock=stock({"MUG": 1}),
        allowances=(BackorderAllowance(sku="CAP", units=2, reason="the site's cap"),),
    )
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        view = await eventually(
            lambda: handle.query(BackorderWorkflow.status),
            lambda s: s.expected_ship_date is not None,
        )
        await eventually(lambda: notices(world), lambda kinds: c.NoticeKind.CANCELLED in kinds)
        # what is still running is cancelled when the worker goes (tests/leftovers.py)
    lines = [(ln.released, ln.backordered, ln.cancelled) for ln in view.lines]
    assert lines == [(0, 2, 3), (1, 0, 0)]  # what ships now is never touched
    cancelled = next(n for n in world.applied("send_notice") if n.kind is c.NoticeKind.CANCELLED)
    assert cancelled.reason == "3 x CAP not taken on backorder: the site's cap"
    assert [(i.sku, i.quantity) for i in cancelled.items] == [("CAP", 3)]
    assert ("void", Decimal("30.00"), "auth-0") in world.payments()
    assert view.status is BackorderStatus.BACKORDERED
    assert world.applied("update_demand")[0].backorder.lines[0].quantity == 2  # at acceptance


@pytest.mark.parametrize("field", ["max_backorder_per_customer", "max_backordered_units_per_sku"])
def test_a_negative_limit_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BackorderPolicy.model_validate({field: -1})
