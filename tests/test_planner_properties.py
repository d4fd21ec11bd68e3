"""Conservation and priority, for any small merchant hypothesis can think of."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.order import FulfillmentType, Order
from domain.planner import (
    Backorder,
    Catalog,
    ParentStatus,
    ReleasePlan,
    ShipmentKind,
    Stock,
    StockSource,
    decide_release,
    plan_acceptance,
    plan_release,
    queue_position,
)
from domain.policy import AcceptanceSplit, BackorderPolicy, InsertHandling, ReleaseMode
from tests.planner_strategies import AS_OF, backorders, catalogs, orders, policies, stocks

EXAMPLES = settings(max_examples=150, deadline=None)


def plan(
    bos: list[Backorder], stock: Stock, catalog: Catalog, policy: BackorderPolicy
) -> ReleasePlan:
    return plan_release(bos, stock, catalog, policy, AS_OF)


def by_order(bos: list[Backorder]) -> dict[str, Backorder]:
    return {b.order_id: b for b in bos}


def served_in_order(bos: list[Backorder], policy: BackorderPolicy) -> list[Backorder]:
    """Priority order written out from its definition: tier rank, placed at, order id."""

    def rank(b: Backorder) -> tuple[int, dt.datetime, str]:
        return (policy.tier_ranks.get(b.tier, 10_000), b.placed_at, b.order_id)

    return sorted(bos, key=rank)


def assert_within_stock(allotments: Counter[tuple[str, str, str | None]], stock: Stock) -> None:
    rows: dict[tuple[str, str, str | None], int] = {
        (s.sku, s.location, None): s.quantity for s in stock.on_hand
    }
    rows.update({(r.sku, r.location, r.receipt_id): r.quantity for r in stock.receipts})
    for key, units in allotments.items():
        assert units <= rows.get(key, 0), key


@EXAMPLES
@given(backorders(), stocks(), catalogs(), policies())
def test_never_more_assigned_than_available_per_stock_row(
    bos: list[Backorder], stock: Stock, catalog: Catalog, policy: BackorderPolicy
) -> None:
    taken: Counter[tuple[str, str, str | None]] = Counter()
    for release in plan(bos, stock, catalog, policy).releases:
        for a in release.allotments:
            taken[a.sku, a.location, a.receipt_id] += a.quantity
    assert_within_stock(taken, stock)


@EXAMPLES
@given(backorders(), stocks(), catalogs(), policies())
def test_allotments_respect_fulfilment_and_the_future_rules(
    bos: list[Backorder], stock: Stock, catalog: Catalog, policy: BackorderPolicy
) -> None:
    receipts = {r.receipt_id: r for r in stock.receipts}
    orders = by_order(bos)
    for release in plan(bos, stock, catalog, policy).releases:
        fulfillment = orders[release.order_id].fulfillment
        for shipment in release.shipments:
            for a in shipment.allotments:
                if fulfillment.type is FulfillmentType.PICKUP_IN_STORE:
                    assert a.location == fulfillment.pickup_location
                if a.source is StockSource.FUTURE:
                    assert a.receipt_id is not None
                    receipt = receipts[a.receipt_id]
                    assert policy.future_inventory and catalog.product(a.sku).future_inventory
                    assert receipt.expected_date is not None
                    assert receipt.expected_date <= AS_OF + dt.timedelta(
                        policy.future_date_limit_days
                    )
                    assert (receipt.sku, receipt.location) == (a.sku, a.location)
                    assert shipment.kind is ShipmentKind.FUTURE
                else:
                    assert a.receipt_id is None and shipment.kind is not ShipmentKind.FUTURE


@EXAMPLES
@given(backorders(), stocks(), catalogs(), policies())
def test_a_line_ships_from_one_location_and_transfers_feed_that_location(
    bos: list[Backorder], stock: Stock, catalog: Catalog, policy: BackorderPolicy
) -> None:
    for release in plan(bos, stock, catalog, policy).releases:
        kinds = [(s.kind, s.location, s.destination, s.expected_date) for s in release.shipments]
        assert len(set(kinds)) == len(kinds), "one shipment per location (and date)"
        ships_from: dict[str, str] = {}
        for s in release.shipments:
            for a in s.allotments:
                if s.kind is ShipmentKind.READY:
                    assert a.line_id not in ships_from
                    ships_from[a.line_id] = s.location
        for s in release.shipments:
            if s.kind is ShipmentKind.TRANSFER:
                assert s.destination != s.location
                assert all(ships_from[a.line_id] == s.destination for a in s.allotments)


@EXAMPLES
@given(backorders(), stocks(), catalogs(), policies())
def test_an_order_that_gets_nothing_blocks_nobody(
    bos: list[Backorder], stock: Stock, catalog: Catalog, policy: BackorderPolicy
) -> None:
    """Orders a pass leaves untouched could as well not exist: they hold no stock back."""
    first = plan(bos, stock, catalog, policy)
    served = {r.order_id for r in first.releases}
    assert plan([b for b in bos if b.order_id in served], stock, catalog, policy) == first


@EXAMPLES
@given(backorders(), stocks(), catalogs(), policies())
def test_every_unit_is_released_backordered_or_cancelled_and_never_more_than_ordered(
    bos: list[Backorder], stock: Stock, catalog: Catalog, policy: BackorderPolicy
) -> None:
    orders = by_order(bos)
    for release in plan(bos, stock, catalog, policy).releases:
        open_lines = {ln.line_id: ln for ln in orders[release.order_id].lines}
        assert [ln.line_id for ln in release.lines] == list(open_lines)
        assigned: Counter[str] = Counter()
        for a in release.allotments:
            assigned[a.line_id] += a.quantity
            assert a.sku == open_lines[a.line_id].sku
        for ln in release.lines:
            assert ln.released + ln.backordered + ln.cancelled == open_lines[ln.line_id].quantity
            assert ln.released == assigned[ln.line_id] <= open_lines[ln.line_id].quantity
        assert sum(ln.released + ln.cancelled for ln in release.lines) > 0
        done = all(ln.backordered == 0 for ln in release.lines)
        assert release.parent_status is (
            ParentStatus.REASSIGNED if done else ParentStatus.BACKORDERED
        )


@EXAMPLES
@given(backorders(), stocks(), catalogs(), policies())
def test_each_order_is_released_only_as_its_policy_allows(
    bos: list[Backorder], stock: Stock, catalog: Catalog, policy: BackorderPolicy
) -> None:
    inserts = {p.sku for p in catalog.products if p.insert}
    orders = by_order(bos)
    for release in plan(bos, stock, catalog, policy).releases:
        bo = orders[release.order_id]
        cap = policy.max_shipments
        partial = release.parent_status is ParentStatus.BACKORDERED
        if partial:
            assert policy.release_mode is not ReleaseMode.FULL and not bo.release_in_full
            assert cap is None or bo.shipments + len(release.shipments) + 1 <= cap
            assert not all(ln.sku in inserts for ln in release.lines if ln.backordered)
        if policy.release_mode is not ReleaseMode.QUANTITY:
            assert all(ln.released in (0, ln.quantity) for ln in release.lines)
        for ln in release.lines:
            if ln.cancelled:
                assert ln.sku in inserts and policy.inserts is InsertHandling.DROP and not partial


@EXAMPLES
@given(backorders(), stocks(), catalogs(), policies(), st.randoms(use_true_random=False))
def test_the_same_input_gives_the_same_plan_in_any_input_order(
    bos: list[Backorder], stock: Stock, catalog: Catalog, policy: BackorderPolicy, rnd: Random
) -> None:
    first = plan(bos, stock, catalog, policy)
    assert plan(bos, stock, catalog, policy) == first
    shuffled_bos, on_hand, receipts = list(bos), list(stock.on_hand), list(stock.receipts)
    rnd.shuffle(shuffled_bos)
    rnd.shuffle(on_hand)
    rnd.shuffle(receipts)
    shuffled = Stock(
        locations=stock.locations[::-1], on_hand=tuple(on_hand), receipts=tuple(receipts)
    )
    assert plan(shuffled_bos, shuffled, catalog, policy) == first
    assert ReleasePlan.model_validate_json(first.model_dump_json()) == first


@EXAMPLES
@given(backorders(), stocks(), catalogs(), policies(), st.integers(0, 6))
def test_orders_further_back_in_the_queue_never_change_what_earlier_orders_get(
    bos: list[Backorder], stock: Stock, catalog: Catalog, policy: BackorderPolicy, keep: int
) -> None:
    """Greedy in priority order: an order's outcome depends only on the orders ahead of it."""
    queue = served_in_order(bos, policy)
    assert [queue_position(b, policy) for b in queue] == sorted(
        queue_position(b, policy) for b in bos
    )
    releases = plan(bos, stock, catalog, policy).releases
    released = {r.order_id for r in releases}
    assert [r.order_id for r in releases] == [b.order_id for b in queue if b.order_id in released]
    ahead = {b.order_id for b in queue[:keep]}
    assert plan(queue[:keep], stock, catalog, policy).releases == tuple(
        r for r in releases if r.order_id in ahead
    )


@EXAMPLES
@given(backorders(), stocks(), catalogs(), policies())
def test_no_later_order_gets_stock_an_earlier_order_could_use_unit_by_unit(
    bos: list[Backorder], stock: Stock, catalog: Catalog, policy: BackorderPolicy
) -> None:
    """Releasing by quantity, an order still short of a sku would have taken any usable unit.

    So nobody behind it may get a unit of that sku from a stock row it can draw on.
    """
    policy = policy.override(
        acceptance_split=AcceptanceSplit.ALL, release_mode=ReleaseMode.QUANTITY, max_shipments=None
    )
    catalog = Catalog(
        products=tuple(p.model_copy(update={"insert": False}) for p in catalog.products)
    )
    bos = [b.model_copy(update={"release_in_full": False}) for b in bos]
    releases = {r.order_id: r for r in plan(bos, stock, catalog, policy).releases}
    short: list[tuple[Backorder, set[str]]] = []
    for bo in served_in_order(bos, policy):
        release = releases.get(bo.order_id)
        for a in () if release is None else release.allotments:
            for earlier, skus in short:
                if a.sku in skus:  # then the earlier order may not draw on that location
                    pickup = earlier.fulfillment.pickup_location
                    assert pickup is not None and pickup != a.location, (earlier.order_id, a)
        if release is None:
            short.append((bo, {ln.sku for ln in bo.lines}))
        else:
            short.append((bo, {ln.sku for ln in release.lines if ln.backordered}))


@EXAMPLES
@given(orders(), stocks(), catalogs(), policies())
def test_acceptance_conserves_every_unit_and_ships_only_current_stock(
    order: Order, stock: Stock, catalog: Catalog, policy: BackorderPolicy
) -> None:
    accepted = plan_acceptance(order, stock, catalog, policy)
    taken: Counter[tuple[str, str, str | None]] = Counter()
    for a in accepted.allotments:
        assert a.source is StockSource.CURRENT
        taken[a.sku, a.location, a.receipt_id] += a.quantity
    assert_within_stock(taken, stock)
    assert [ln.line_id for ln in accepted.lines] == [ln.line_id for ln in order.lines]
    for ordered, ln in zip(order.lines, accepted.lines, strict=True):
        assert ln.released + ln.backordered + ln.cancelled == ordered.quantity
        allowed = catalog.product(ordered.sku).backorderable
        if ordered.allow_backorder is not None:
            allowed = ordered.allow_backorder
        if ln.backordered:
            assert policy.backorders_enabled
        if ln.cancelled and not catalog.product(ordered.sku).insert:
            assert not (policy.backorders_enabled and allowed)
        assert ln.released == sum(
            a.quantity for a in accepted.allotments if a.line_id == ln.line_id
        )
    if not policy.backorders_enabled:
        assert accepted.backorder is None
    if policy.acceptance_split is AcceptanceSplit.ENTIRE_ORDER and accepted.backorder is not None:
        assert accepted.shipments == ()
    waiting = (
        {}
        if accepted.backorder is None
        else {ln.line_id: ln.quantity for ln in accepted.backorder.lines}
    )
    assert waiting == {ln.line_id: ln.backordered for ln in accepted.lines if ln.backordered}
    assert plan_acceptance(order, stock, catalog, policy) == accepted


@settings(max_examples=60, deadline=None)
@given(backorders(), stocks(), catalogs(), policies())
def test_a_pass_writes_each_order_on_demand_exactly_as_the_full_plan(
    bos: list[Backorder], stock: Stock, catalog: Catalog, policy: BackorderPolicy
) -> None:
    """The allocator dispatches winners one by one from `decide_release`; what each gets must
    be what the fully written plan says, in the same serving order."""
    full = plan(bos, stock, catalog, policy)
    decided = decide_release(bos, stock, catalog, policy, AS_OF)
    assert decided.order_ids == tuple(r.order_id for r in full.releases)
    assert len(decided) == len(full.releases)
    for release in reversed(full.releases):  # any order of asking gives the same answers
        assert decided.release_for(release.order_id) == release
    assert tuple(decided) == full.releases
    assert decided.to_plan() == full
    assert all(decided.release_for(b.order_id) is None for b in bos if b.order_id not in
               decided.order_ids)  # fmt: skip
