"""The vendor documents' release examples, one table row or test per rule.

Expected outcomes are written out by hand from the documents' text, never computed.
"""

from __future__ import annotations

import datetime as dt

import pytest

from domain.order import Fulfillment
from domain.planner import (
    Backorder,
    Catalog,
    OrderRelease,
    ParentStatus,
    ReleasePlan,
    Stock,
    plan_release,
    remaining_backorder,
)
from domain.policy import BackorderPolicy, ReleaseMode
from tests.planner_strategies import AS_OF, STH, backorder, bopis, catalog, stock

FULL = BackorderPolicy()
FUTURE = BackorderPolicy(future_inventory=True, future_date_limit_days=30)
BY_LINE = BackorderPolicy(release_mode=ReleaseMode.LINE_ITEM)
BY_QUANTITY = BackorderPolicy(release_mode=ReleaseMode.QUANTITY)
MODES = {"full": FULL, "line_item": BY_LINE, "quantity": BY_QUANTITY}

Shape = tuple[str, str, str | None, str | None, tuple[tuple[str, int], ...]]
"""A shipment as (kind, location, destination, expected date, ((line, units), ...))."""


def plan(
    backorders: list[Backorder],
    stock: Stock,
    policy: BackorderPolicy = FULL,
    products: Catalog | None = None,
) -> ReleasePlan:
    return plan_release(backorders, stock, products or Catalog(), policy, AS_OF)


def only(plan: ReleasePlan) -> OrderRelease:
    assert len(plan.releases) == 1
    return plan.releases[0]


def shapes(release: OrderRelease) -> list[Shape]:
    return [
        (
            s.kind.value,
            s.location,
            s.destination,
            None if s.expected_date is None else s.expected_date.isoformat(),
            tuple((a.line_id, a.quantity) for a in s.allotments),
        )
        for s in release.shipments
    ]


def released(plan: ReleasePlan) -> dict[str, int]:
    return {r.order_id: sum(ln.released for ln in r.lines) for r in plan.releases}


# --- Current inventory only: a shipment is released only when all of it can be assigned ---


def test_full_release_assigns_every_item_and_splits_by_location() -> None:
    release = only(
        plan([backorder("1", {"KTP": 5, "KTP2": 5})], stock({("KTP", "A"): 5, ("KTP2", "B"): 5}))
    )
    assert shapes(release) == [
        ("ready", "A", None, None, (("KTP", 5),)),
        ("ready", "B", None, None, (("KTP2", 5),)),
    ]
    assert release.parent_status is ParentStatus.REASSIGNED
    assert [(ln.line_id, ln.released, ln.backordered) for ln in release.lines] == [
        ("KTP", 5, 0),
        ("KTP2", 5, 0),
    ]


def test_full_release_keeps_the_shipment_backordered_when_an_item_is_nowhere() -> None:
    assert plan([backorder("1", {"KTP": 5, "KTP2": 5})], stock({("KTP", "A"): 5})).releases == ()


# --- Future inventory: needs the site and product switches, and dates within the limit ---


def test_future_only_release_creates_future_children_and_reassigns_the_parent() -> None:
    receipts = [
        ("KTP", "A", 2, "2026-05-01"),
        ("KTP", "A", 3, "2026-05-10"),
        ("KTP2", "B", 5, "2026-05-15"),
    ]
    release = only(plan([backorder("1", {"KTP": 5, "KTP2": 5})], stock(receipts=receipts), FUTURE))
    assert shapes(release) == [
        ("future", "A", None, "2026-05-01", (("KTP", 2),)),
        ("future", "A", None, "2026-05-10", (("KTP", 3),)),
        ("future", "B", None, "2026-05-15", (("KTP2", 5),)),
    ]
    assert release.parent_status is ParentStatus.REASSIGNED


def test_future_release_waits_for_an_item_without_an_expected_date() -> None:
    receipts = [("KTP", "A", 5, "2026-05-01"), ("KTP2", "B", 5, None)]
    assert (
        plan([backorder("1", {"KTP": 5, "KTP2": 5})], stock(receipts=receipts), FUTURE).releases
        == ()
    )


def test_current_and_future_mix_is_released_as_ready_and_future_children() -> None:
    on_hand = {("KTP2", "B"): 5}
    receipts = [("KTP", "A", 5, "2026-05-01"), ("KTP3", "B", 5, "2026-05-05")]
    release = only(
        plan([backorder("1", {"KTP": 5, "KTP2": 5, "KTP3": 5})], stock(on_hand, receipts), FUTURE)
    )
    assert shapes(release) == [
        ("ready", "B", None, None, (("KTP2", 5),)),
        ("future", "A", None, "2026-05-01", (("KTP", 5),)),
        ("future", "B", None, "2026-05-05", (("KTP3", 5),)),
    ]
    assert release.parent_status is ParentStatus.REASSIGNED


def test_current_and_future_mix_waits_when_one_item_has_no_expected_date() -> None:
    on_hand = {("KTP2", "B"): 5}
    receipts = [("KTP", "A", 5, "2026-05-01"), ("KTP3", "B", 5, None)]
    bo = backorder("1", {"KTP": 5, "KTP2": 5, "KTP3": 5})
    assert plan([bo], stock(on_hand, receipts), FUTURE).releases == ()


@pytest.mark.parametrize(
    ("policy", "products", "expected_date", "releases"),
    [
        pytest.param(FUTURE, None, "2026-05-20", True, id="enabled-on-the-limit-day"),
        pytest.param(FUTURE, None, "2026-05-21", False, id="a-day-past-the-limit"),
        pytest.param(FULL, None, "2026-05-01", False, id="site-switch-off"),
        pytest.param(
            FUTURE,
            {"KTP": {"future_inventory": False}},
            "2026-05-01",
            False,
            id="product-opted-out",
        ),
        pytest.param(
            FUTURE.override(future_date_limit_days=0), None, "2026-04-20", True, id="limit-0-today"
        ),
    ],
)
def test_future_inventory_needs_site_and_product_switch_and_the_date_limit(
    policy: BackorderPolicy,
    products: dict[str, dict[str, bool]] | None,
    expected_date: str,
    releases: bool,
) -> None:
    """AS_OF is April 20; a 30-day limit reaches May 20."""
    result = plan(
        [backorder("1", {"KTP": 5})],
        stock(receipts=[("KTP", "A", 5, expected_date)]),
        policy,
        catalog(**products) if products else None,
    )
    assert released(result) == ({"1": 5} if releases else {})


def test_current_inventory_is_used_before_future_inventory() -> None:
    receipts = [("KTP", "A", 10, "2026-05-01")]
    release = only(plan([backorder("1", {"KTP": 5})], stock({("KTP", "B"): 3}, receipts), FUTURE))
    assert shapes(release) == [
        ("ready", "B", None, None, (("KTP", 3),)),
        ("future", "A", None, "2026-05-01", (("KTP", 2),)),
    ]


# --- Partial release: by line item or by quantity ---


@pytest.mark.parametrize(
    ("mode", "released_now", "still_backordered"),
    [("quantity", 3, 2), ("line_item", 0, 5), ("full", 0, 5)],
)
def test_five_backordered_three_arrive(
    mode: str, released_now: int, still_backordered: int
) -> None:
    result = plan(
        [backorder("1", {"A": 5})], stock({("A", "L1"): 3}, locations=["L1"]), MODES[mode]
    )
    if not released_now:
        assert result.releases == ()
        return
    release = only(result)
    (line,) = release.lines
    assert (line.released, line.backordered, line.cancelled) == (released_now, still_backordered, 0)
    assert shapes(release) == [("ready", "L1", None, None, (("A", 3),))]
    assert release.parent_status is ParentStatus.BACKORDERED


@pytest.mark.parametrize("mode", sorted(MODES))
def test_stock_split_over_two_locations_ships_from_one_with_a_transfer_from_the_other(
    mode: str,
) -> None:
    on_hand = {("A", "L1"): 2, ("A", "L2"): 3}
    release = only(
        plan([backorder("1", {"A": 5})], stock(on_hand, locations=["L1", "L2"]), MODES[mode])
    )
    assert shapes(release) == [
        ("ready", "L1", None, None, (("A", 2),)),
        ("transfer", "L2", "L1", None, (("A", 3),)),
    ]
    assert release.parent_status is ParentStatus.REASSIGNED


def test_partial_release_with_future_inventory_creates_a_future_shipment() -> None:
    policy = BY_QUANTITY.override(future_inventory=True)
    release = only(
        plan([backorder("1", {"A": 5})], stock(receipts=[("A", "B", 3, "2026-05-01")]), policy)
    )
    assert shapes(release) == [("future", "B", None, "2026-05-01", (("A", 3),))]
    assert release.parent_status is ParentStatus.BACKORDERED


# --- Priority: FIFO, tiers ahead of FIFO, order id on ties ---

FIFO_ORDERS = [
    backorder("102", {"W": 20}, day="2026-01-08"),
    backorder("100", {"W": 20}, day="2026-01-05"),
    backorder("101", {"W": 20}, day="2026-01-06"),
]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("quantity", {"100": 20, "101": 20, "102": 10}),
        ("line_item", {"100": 20, "101": 20}),
        ("full", {"100": 20, "101": 20}),
    ],
)
def test_fifo_fifty_units_serve_the_oldest_orders_first(
    mode: str, expected: dict[str, int]
) -> None:
    result = plan(FIFO_ORDERS, stock({("W", "A"): 50}), MODES[mode])
    assert released(result) == expected
    assert [r.order_id for r in result.releases] == sorted(expected)


@pytest.mark.parametrize(
    ("tiers", "ranks", "expected"),
    [
        pytest.param(
            {"102": "vip"}, None, {"102": 20, "100": 20, "101": 10}, id="vip-jumps-the-queue"
        ),
        pytest.param(
            {"100": "wholesale", "101": "expedited"},
            None,
            {"101": 20, "100": 20, "102": 10},
            id="expedited-before-wholesale",
        ),
        pytest.param(
            {"100": "wholesale", "101": "expedited"},
            {"wholesale": 0, "expedited": 5},
            {"100": 20, "101": 20, "102": 10},
            id="ranks-are-configurable",
        ),
        pytest.param(
            {"101": "gold"}, None, {"100": 20, "101": 20, "102": 10}, id="unlisted-tier-is-fifo"
        ),
    ],
)
def test_priority_tiers_go_ahead_of_fifo(
    tiers: dict[str, str], ranks: dict[str, int] | None, expected: dict[str, int]
) -> None:
    orders = [b.model_copy(update={"tier": tiers.get(b.order_id, "standard")}) for b in FIFO_ORDERS]
    policy = BY_QUANTITY if ranks is None else BY_QUANTITY.override(tier_ranks=ranks)
    result = plan(orders, stock({("W", "A"): 50}), policy)
    assert released(result) == expected
    assert [r.order_id for r in result.releases] == list(expected)


def test_equal_placed_at_is_broken_by_order_id() -> None:
    orders = [backorder(i, {"W": 20}, day="2026-01-05T09:00") for i in ("b", "c", "a")]
    assert released(plan(orders, stock({("W", "A"): 30}), BY_QUANTITY)) == {"a": 20, "b": 10}


def test_an_order_that_cannot_be_released_takes_nothing_and_blocks_nobody_behind_it() -> None:
    orders = [
        backorder("100", {"X": 4, "Y": 1}, day="2026-01-05"),
        backorder("101", {"X": 4}, day="2026-01-06"),
    ]
    result = plan(orders, stock({("X", "A"): 4}))
    assert released(result) == {"101": 4}


# --- Fulfilment: BOPIS only at the pickup location; STH anywhere, by routing preference ---


@pytest.mark.parametrize(
    ("fulfillment", "expected"),
    [
        pytest.param(bopis("B"), {}, id="bopis-elsewhere"),
        pytest.param(bopis("A"), {"1": 5}, id="bopis-here"),
        pytest.param(STH, {"1": 5}, id="sth"),
    ],
)
def test_bopis_draws_only_on_the_pickup_location(
    fulfillment: Fulfillment, expected: dict[str, int]
) -> None:
    bo = backorder("1", {"KTP": 5}, fulfillment=fulfillment)
    assert released(plan([bo], stock({("KTP", "A"): 5, ("KTP", "B"): 2}))) == expected


def test_bopis_future_stock_only_at_the_pickup_location() -> None:
    receipts = [("KTP", "A", 5, "2026-05-01"), ("KTP", "B", 5, "2026-05-02")]
    release = only(
        plan([backorder("1", {"KTP": 5}, fulfillment=bopis("B"))], stock(receipts=receipts), FUTURE)
    )
    assert shapes(release) == [("future", "B", None, "2026-05-02", (("KTP", 5),))]


def test_ship_to_home_prefers_one_location_that_covers_the_line() -> None:
    release = only(plan([backorder("1", {"K": 5})], stock({("K", "A"): 3, ("K", "B"): 5})))
    assert shapes(release) == [("ready", "B", None, None, (("K", 5),))]


def test_ship_to_home_keeps_an_order_together_where_it_can() -> None:
    on_hand = {("X", "B"): 1, ("Y", "A"): 1, ("Y", "B"): 1}
    release = only(plan([backorder("1", {"X": 1, "Y": 1})], stock(on_hand)))
    assert shapes(release) == [("ready", "B", None, None, (("X", 1), ("Y", 1)))]


# --- Splitting again, the cap on shipments, and release in full ---


def test_all_mode_splits_a_backorder_as_many_times_as_required() -> None:
    bo: Backorder | None = backorder("1", {"P1": 1, "P2": 1, "P3": 1})
    arrivals = [{("P2", "A"): 1}, {("P1", "A"): 1}, {("P3", "A"): 1}]
    history = []
    for arrival in arrivals:
        assert bo is not None
        release = only(plan([bo], stock(arrival), BY_LINE))
        history.append(([ln.line_id for ln in release.lines if ln.released], release.parent_status))
        bo = remaining_backorder(bo, release)
    assert history == [
        (["P2"], ParentStatus.BACKORDERED),
        (["P1"], ParentStatus.BACKORDERED),
        (["P3"], ParentStatus.REASSIGNED),
    ]
    assert bo is None


@pytest.mark.parametrize(
    ("max_shipments", "shipments_so_far", "released_now"),
    [
        pytest.param(None, 5, 3, id="no-cap"),
        pytest.param(3, 1, 3, id="room-for-this-and-the-rest"),
        pytest.param(3, 2, 0, id="at-the-cap-only-in-full"),
        pytest.param(1, 0, 0, id="cap-of-one-never-splits"),
    ],
)
def test_max_shipments_caps_splitting_and_the_rest_is_released_only_in_full(
    max_shipments: int | None, shipments_so_far: int, released_now: int
) -> None:
    policy = BY_QUANTITY.override(max_shipments=max_shipments)
    bo = backorder("1", {"A": 5}, shipments=shipments_so_far)
    partial = plan([bo], stock({("A", "L1"): 3}, locations=["L1"]), policy)
    assert released(partial) == ({"1": released_now} if released_now else {})
    complete = plan([bo], stock({("A", "L1"): 5}, locations=["L1"]), policy)
    assert released(complete) == {"1": 5}


def test_a_partial_release_that_needs_too_many_shipments_waits() -> None:
    policy = BY_QUANTITY.override(max_shipments=2)
    on_hand = {("A", "L1"): 1, ("A", "L2"): 1}
    assert (
        plan([backorder("1", {"A": 5})], stock(on_hand, locations=["L1", "L2"]), policy).releases
        == ()
    )
    one_place = stock({("A", "L1"): 2}, locations=["L1", "L2"])
    assert released(plan([backorder("1", {"A": 5})], one_place, policy)) == {"1": 2}


def test_a_backorder_marked_release_in_full_is_not_split() -> None:
    bo = backorder("1", {"A": 5}, release_in_full=True)
    assert plan([bo], stock({("A", "L1"): 3}, locations=["L1"]), BY_QUANTITY).releases == ()


# --- Inserts: an order is not split only because inserts are missing ---


@pytest.mark.parametrize(
    ("inserts", "expected"),
    [
        pytest.param("ship_with_order", None, id="waits-with-its-inserts"),
        pytest.param("drop", (1, 0, 0, 0, 0, 2, ParentStatus.REASSIGNED), id="drops-them"),
    ],
)
def test_an_order_missing_only_inserts_is_not_split_for_them(
    inserts: str, expected: tuple[int, int, int, int, int, int, ParentStatus] | None
) -> None:
    policy = BY_QUANTITY.override(inserts=inserts)
    result = plan(
        [backorder("1", {"X": 1, "FLYER": 2})],
        stock({("X", "A"): 1}),
        policy,
        catalog(FLYER={"insert": True}),
    )
    if expected is None:
        assert result.releases == ()
        return
    release = only(result)
    x, flyer = release.lines
    got = (
        x.released,
        x.backordered,
        x.cancelled,
        flyer.released,
        flyer.backordered,
        flyer.cancelled,
    )
    assert (*got, release.parent_status) == expected


def test_missing_inserts_ride_along_when_other_items_are_missing_too() -> None:
    policy = BY_QUANTITY.override(inserts="drop")
    bo = backorder("1", {"X": 1, "Y": 1, "FLYER": 1})
    release = only(plan([bo], stock({("X", "A"): 1}), policy, catalog(FLYER={"insert": True})))
    assert [(ln.line_id, ln.released, ln.backordered, ln.cancelled) for ln in release.lines] == [
        ("X", 1, 0, 0),
        ("Y", 0, 1, 0),
        ("FLYER", 0, 1, 0),
    ]


def test_full_mode_with_dropped_inserts_releases_once_everything_else_is_there() -> None:
    policy = FULL.override(inserts="drop")
    bo = backorder("1", {"X": 2, "FLYER": 3})
    release = only(
        plan(
            [bo], stock({("X", "A"): 2, ("FLYER", "A"): 1}), policy, catalog(FLYER={"insert": True})
        )
    )
    assert [(ln.line_id, ln.released, ln.cancelled) for ln in release.lines] == [
        ("X", 2, 0),
        ("FLYER", 0, 3),
    ]


# --- Inputs ---


def test_an_order_may_have_only_one_open_backorder_in_a_pass() -> None:
    with pytest.raises(ValueError, match="only one open backorder"):
        plan([backorder("1", {"A": 1}), backorder("1", {"B": 1})], stock())


def test_the_planning_date_moves_the_future_date_limit() -> None:
    bo, receipts = backorder("1", {"A": 1}), stock(receipts=[("A", "A", 1, "2026-06-01")])
    early = plan_release([bo], receipts, Catalog(), FUTURE, dt.date(2026, 4, 20))
    late = plan_release([bo], receipts, Catalog(), FUTURE, dt.date(2026, 5, 2))
    assert (released(early), released(late)) == ({}, {"1": 1})
