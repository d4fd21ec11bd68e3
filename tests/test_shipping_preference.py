"""The customer's shipping preference (the glossary's options A, B and C): an order may ship
what is ready or ship complete whatever the site's split rules, through acceptance, the
allocator's demand and the release."""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from domain.order import ShippingPreference
from domain.order_book import ShipmentStatus
from domain.policy import AcceptanceSplit, BackorderPolicy, ReleaseMode
from tests.fakes import World
from tests.order_life import (
    current,
    make_order,
    ready,
    release,
    running,
    start,
    stock,
    task_queue,
)
from tests.polling import eventually
from workflows.backorder import BackorderWorkflow
from workflows.messages import AllotmentSignal, BackorderStatus

SHIP_COMPLETE = ShippingPreference.SHIP_COMPLETE
SHIP_AVAILABLE = ShippingPreference.SHIP_AVAILABLE


@pytest.mark.parametrize(
    ("site", "preference", "split", "mode"),
    [
        (BackorderPolicy(), None, AcceptanceSplit.ALL, ReleaseMode.FULL),
        (BackorderPolicy(), SHIP_COMPLETE, AcceptanceSplit.ENTIRE_ORDER, ReleaseMode.FULL),
        (
            BackorderPolicy(release_mode=ReleaseMode.QUANTITY),
            SHIP_COMPLETE,
            AcceptanceSplit.ENTIRE_ORDER,
            ReleaseMode.FULL,
        ),
        (
            BackorderPolicy(acceptance_split=AcceptanceSplit.ENTIRE_ORDER),
            SHIP_AVAILABLE,
            AcceptanceSplit.ON_ACCEPTANCE,
            ReleaseMode.FULL,
        ),
        (
            BackorderPolicy(release_mode=ReleaseMode.LINE_ITEM),
            SHIP_AVAILABLE,
            AcceptanceSplit.ALL,
            ReleaseMode.LINE_ITEM,
        ),
    ],
)
def test_the_preference_overrides_the_sites_split_and_release_rules(
    site: BackorderPolicy,
    preference: ShippingPreference | None,
    split: AcceptanceSplit,
    mode: ReleaseMode,
) -> None:
    policy = site.for_order(preference)
    assert (policy.acceptance_split, policy.release_mode) == (split, mode)
    assert policy.model_dump(exclude={"acceptance_split", "release_mode"}) == site.model_dump(
        exclude={"acceptance_split", "release_mode"}
    )


async def test_a_ship_complete_order_ships_nothing_until_all_of_it_can(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    lines = [("A", 2, "10.00"), ("B", 1, "5.00")]
    order = make_order(t0, lines, paid="25.00", shipping_preference="ship_complete")
    world = World(stock=stock({"A": 5}))  # the site ships what it can (acceptance_split all)
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        view = await eventually(
            lambda: handle.query(BackorderWorkflow.status),
            lambda s: s.expected_ship_date is not None,
        )
        assert view.shipments == ()  # line A is in stock, but the order waits whole
        assert [(ln.line_id, ln.backordered) for ln in view.lines] == [("L1", 2), ("L2", 1)]
        assert world.stock_moves() == []  # nothing reserved for a part
        demand = world.applied("update_demand")[-1].backorder
        assert demand.release_in_full  # the allocator releases it only whole
        both = release(
            order.order_id,
            [("L1", "A", 2, 0), ("L2", "B", 1, 0)],
            ready(current("L1", "A", 2), current("L2", "B", 1)),
        )
        await handle.signal(
            BackorderWorkflow.allotment, AllotmentSignal(pass_id="P1", release=both)
        )
        summary = await handle.result()
    assert summary.status is BackorderStatus.COMPLETED
    assert [s.status for s in summary.shipments] == [ShipmentStatus.READY]


async def updates(world: World) -> list[c.DemandUpdate]:
    return list(world.applied("update_demand"))


async def test_a_ship_available_order_ships_its_stock_where_the_site_holds_whole_orders(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    t0 = await env.get_current_time()
    order = make_order(
        t0,
        [("A", 2, "10.00"), ("B", 1, "5.00")],
        paid="25.00",
        shipping_preference="ship_available",
    )
    world = World(
        policy=BackorderPolicy(acceptance_split=AcceptanceSplit.ENTIRE_ORDER),
        stock=stock({"A": 5}),
    )
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        view = await eventually(
            lambda: handle.query(BackorderWorkflow.status), lambda s: len(s.shipments) == 1
        )
        assert [(ln.line_id, ln.released, ln.backordered) for ln in view.lines] == [
            ("L1", 2, 0),
            ("L2", 0, 1),
        ]
        demand = await eventually(lambda: updates(world), bool)  # acceptance's writes are in
        waiting = demand[-1].backorder
        assert waiting is not None and not waiting.release_in_full
