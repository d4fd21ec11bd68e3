"""Pre-orders: a product released on a day holds its stock back until then, at acceptance and in
the allocator's passes; after the last day pre-orders are taken it takes no backorder until its
release; the feed records the window, and the customer's notice speaks of a pre-order."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from activities.feed import apply_events
from activities.ledger import read_stock
from domain.inventory import LocationDefined, ProductDefined, StockReceived
from domain.planner import Catalog, Product, plan_acceptance, plan_release
from domain.policy import BackorderPolicy
from notifications.render import Storefront, render
from tests.fakes import World
from tests.order_life import make_order, running, start, stock, task_queue
from tests.planner_strategies import AS_OF, backorder, order
from tests.planner_strategies import stock as planner_stock
from tests.polling import eventually
from workflows.backorder import BackorderWorkflow

RELEASE = AS_OF + dt.timedelta(days=10)
GAME = Product(sku="GAME", preorder_release=RELEASE)
CLOSING = Product(sku="GAME", preorder_release=RELEASE, preorder_end=AS_OF - dt.timedelta(days=1))
IN_STOCK = planner_stock({("GAME", "A"): 5})


def test_a_preorder_ships_nothing_before_its_release_even_with_stock() -> None:
    o = order("o1", {"GAME": 2})
    before = plan_acceptance(o, IN_STOCK, Catalog(products=(GAME,)), BackorderPolicy(), AS_OF)
    assert [(ln.released, ln.backordered) for ln in before.lines] == [(0, 2)]
    on_the_day = plan_acceptance(o, IN_STOCK, Catalog(products=(GAME,)), BackorderPolicy(), RELEASE)
    assert [(ln.released, ln.backordered) for ln in on_the_day.lines] == [(2, 0)]
    # planned before pre-orders existed (no day given): as before
    assert plan_acceptance(o, IN_STOCK, Catalog(products=(GAME,)), BackorderPolicy()).shipments


def test_after_the_last_preorder_day_the_product_takes_no_backorder_until_its_release() -> None:
    o = order("o1", {"GAME": 2})
    plan = plan_acceptance(o, IN_STOCK, Catalog(products=(CLOSING,)), BackorderPolicy(), AS_OF)
    assert [(ln.released, ln.backordered, ln.cancelled) for ln in plan.lines] == [(0, 0, 2)]


def test_the_allocator_holds_a_preorders_stock_back_until_the_release_day() -> None:
    waiting = [backorder("b1", {"GAME": 2}), backorder("b2", {"MUG": 1})]
    both = planner_stock({("GAME", "A"): 5, ("MUG", "A"): 5})
    catalog = Catalog(products=(GAME,))
    early = plan_release(waiting, both, catalog, BackorderPolicy(), AS_OF)
    assert [r.order_id for r in early.releases] == ["b2"]  # other skus are served as ever
    due = plan_release(waiting, both, catalog, BackorderPolicy(), RELEASE)
    assert sorted(r.order_id for r in due.releases) == ["b1", "b2"]


def test_a_preorder_window_must_end_before_the_release() -> None:
    with pytest.raises(ValidationError, match="preorder_end needs a preorder_release after it"):
        ProductDefined(event_id="e", sku="GAME", preorder_end=RELEASE)
    with pytest.raises(ValidationError, match="preorder_end needs a preorder_release after it"):
        ProductDefined(event_id="e", sku="GAME", preorder_release=AS_OF, preorder_end=AS_OF)


async def test_the_feed_records_the_window_and_the_ledger_reads_it(
    pg_pool: AsyncConnectionPool,
) -> None:
    sku, tag = f"PRE-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    events = (
        LocationDefined(event_id=f"loc-{tag}", location_id="DC"),
        ProductDefined(event_id=f"p-{tag}", sku=sku, preorder_release=RELEASE, preorder_end=AS_OF),
        StockReceived(event_id=f"r-{tag}", sku=sku, location="DC", quantity=3),
    )
    async with pg_pool.connection() as conn, conn.transaction():
        await apply_events(conn, events, f"pass-{tag}")
    async with pg_pool.connection() as conn:
        _, catalog = await read_stock(conn, [sku])
    assert catalog.product(sku) == Product(sku=sku, preorder_release=RELEASE, preorder_end=AS_OF)


def test_the_notice_of_a_preorder_says_so_and_when_it_is_released() -> None:
    notice = c.Notice(
        key="backorder-A-1/accept/on-backorder",
        kind=c.NoticeKind.ON_BACKORDER,
        order_id="A-1",
        order_number="1001",
        email="c@example.com",
        items=(c.NoticeItem(sku="GAME", quantity=1),),
        expected_ship_date=dt.date(2027, 3, 1),
        preorder_release=dt.date(2027, 3, 1),
    )
    shown = render(notice, Storefront(date_format="%Y-%m-%d"))
    assert shown.subject == "Your pre-order 1001 is confirmed"
    assert "released on 2027-03-01" in shown.text
    plain = render(notice.model_copy(update={"preorder_release": None}), Storefront())
    assert plain.subject == "Your order 1001: some items are on backorder"


async def notices(world: World) -> list[c.NoticeKind]:
    return world.notices()


async def test_an_order_of_a_preorder_waits_for_the_release_and_is_told_so(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    release = (t0 + dt.timedelta(days=20)).date()
    order_ = make_order(t0, [("GAME", 1, "60.00")], paid="60.00")
    world = World(
        stock=stock({"GAME": 5}),
        catalog=Catalog(products=(Product(sku="GAME", preorder_release=release),)),
    )
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order_, queue)
        view = await eventually(
            lambda: handle.query(BackorderWorkflow.status),
            lambda s: s.expected_ship_date is not None,
        )
        await eventually(lambda: notices(world), bool)  # acceptance's writes are in
    assert view.shipments == ()  # in stock, but not released yet
    assert view.expected_ship_date == release
    notice = world.applied("send_notice")[0]
    assert (notice.kind, notice.preorder_release) == (c.NoticeKind.ON_BACKORDER, release)
    assert world.stock_moves() == []
