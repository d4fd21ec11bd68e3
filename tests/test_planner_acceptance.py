"""Acceptance: the three split modes of the printIQ document, and who may backorder at all."""

from __future__ import annotations

import pytest

from domain.order import Order
from domain.planner import (
    AcceptancePlan,
    Catalog,
    ParentStatus,
    Stock,
    plan_acceptance,
    plan_release,
    remaining_backorder,
)
from domain.policy import AcceptanceSplit, BackorderPolicy, ReleaseMode
from tests.planner_strategies import AS_OF, backorder, bopis, catalog, order, stock

Outcome = tuple[int, int, int]
"""(released, backordered, cancelled) of a line."""


def accept(
    order: Order, stock: Stock, policy: BackorderPolicy, products: Catalog | None = None
) -> AcceptancePlan:
    return plan_acceptance(order, stock, products or Catalog(), policy)


def outcomes(plan: AcceptancePlan) -> dict[str, Outcome]:
    return {ln.line_id: (ln.released, ln.backordered, ln.cancelled) for ln in plan.lines}


def waiting(plan: AcceptancePlan) -> dict[str, int]:
    return (
        {} if plan.backorder is None else {ln.line_id: ln.quantity for ln in plan.backorder.lines}
    )


IN_STOCK_AND_NOT = order("o1", {"P1": 2, "P2": 3})
ONLY_P1 = stock({("P1", "A"): 2})


@pytest.mark.parametrize(
    ("split", "mode", "expected"),
    [
        pytest.param("entire_order", "full", {"P1": (0, 2, 0), "P2": (0, 3, 0)}, id="entire-order"),
        pytest.param(
            "on_acceptance", "full", {"P1": (2, 0, 0), "P2": (0, 3, 0)}, id="on-acceptance"
        ),
        pytest.param("all", "line_item", {"P1": (2, 0, 0), "P2": (0, 3, 0)}, id="all"),
    ],
)
def test_acceptance_split_modes(split: str, mode: str, expected: dict[str, Outcome]) -> None:
    policy = BackorderPolicy(acceptance_split=split, release_mode=mode)
    plan = accept(IN_STOCK_AND_NOT, ONLY_P1, policy)
    assert outcomes(plan) == expected
    assert waiting(plan) == {k: v[1] for k, v in expected.items() if v[1]}
    assert len(plan.shipments) == (0 if split == "entire_order" else 1)


def test_entire_order_ships_nothing_until_all_can_ship() -> None:
    policy = BackorderPolicy(acceptance_split="entire_order")
    plan = accept(IN_STOCK_AND_NOT, ONLY_P1, policy)
    assert plan.backorder is not None
    assert plan_release([plan.backorder], ONLY_P1, Catalog(), policy, AS_OF).releases == ()
    both = stock({("P1", "A"): 2, ("P2", "B"): 3})
    (release,) = plan_release([plan.backorder], both, Catalog(), policy, AS_OF).releases
    assert [ln.released for ln in release.lines] == [2, 3]
    assert release.parent_status is ParentStatus.REASSIGNED


def test_on_acceptance_backorder_is_released_only_in_full() -> None:
    policy = BackorderPolicy(acceptance_split="on_acceptance")
    plan = accept(order("o1", {"P1": 1, "P2": 1, "P3": 1}), stock({("P1", "A"): 1}), policy)
    assert plan.backorder is not None
    assert waiting(plan) == {"P2": 1, "P3": 1}
    assert plan.backorder.shipments == 1
    half = stock({("P2", "A"): 1})
    assert plan_release([plan.backorder], half, Catalog(), policy, AS_OF).releases == ()
    whole = stock({("P2", "A"): 1, ("P3", "A"): 1})
    (release,) = plan_release([plan.backorder], whole, Catalog(), policy, AS_OF).releases
    assert release.parent_status is ParentStatus.REASSIGNED


def test_all_mode_splits_at_acceptance_and_again_at_every_check() -> None:
    policy = BackorderPolicy(release_mode="line_item")
    plan = accept(order("o1", {"P1": 1, "P2": 1, "P3": 1}), stock({("P1", "A"): 1}), policy)
    bo = plan.backorder
    assert bo is not None and waiting(plan) == {"P2": 1, "P3": 1}
    (release,) = plan_release([bo], stock({("P2", "A"): 1}), Catalog(), policy, AS_OF).releases
    assert [ln.line_id for ln in release.lines if ln.released] == ["P2"]
    rest = remaining_backorder(bo, release)
    assert rest is not None
    assert [(ln.line_id, ln.quantity) for ln in rest.lines] == [("P3", 1)]
    assert rest.shipments == 2


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("quantity", (3, 2, 0)), ("line_item", (0, 5, 0)), ("full", (0, 5, 0))],
)
def test_a_partly_stocked_line_ships_its_stock_only_when_releasing_by_quantity(
    mode: str, expected: Outcome
) -> None:
    plan = accept(order("o1", {"A": 5}), stock({("A", "B"): 3}), BackorderPolicy(release_mode=mode))
    assert outcomes(plan) == {"A": expected}


# --- Who may backorder: the site switch, the product, the order line ---


@pytest.mark.parametrize(
    ("enabled", "product", "line", "expected"),
    [
        pytest.param(True, None, None, (0, 4, 0), id="default-every-product-backorderable"),
        pytest.param(False, None, True, (0, 0, 4), id="site-switch-off-cancels"),
        pytest.param(True, False, None, (0, 0, 4), id="product-not-backorderable-cancels"),
        pytest.param(True, False, True, (0, 4, 0), id="line-allows-backorder"),
        pytest.param(True, True, False, (0, 0, 4), id="line-forbids-backorder"),
    ],
)
def test_out_of_stock_lines_that_may_not_backorder_are_cancelled(
    enabled: bool, product: bool | None, line: bool | None, expected: Outcome
) -> None:
    products = catalog(Z={"backorderable": product}) if product is not None else None
    the_order = order("o1", {"Z": 4}, allow={} if line is None else {"Z": line})
    plan = accept(the_order, stock(), BackorderPolicy(backorders_enabled=enabled), products)
    assert outcomes(plan) == {"Z": expected}
    assert (plan.backorder is None) == (expected[1] == 0)


def test_a_line_that_may_not_backorder_ships_what_is_on_hand_and_cancels_the_rest() -> None:
    the_order = order("o1", {"Z": 4, "Y": 1}, allow={"Z": False})
    plan = accept(the_order, stock({("Z", "A"): 1}), BackorderPolicy())
    assert outcomes(plan) == {"Z": (1, 0, 3), "Y": (0, 1, 0)}


def test_bopis_acceptance_sees_only_the_pickup_store() -> None:
    plan = accept(
        order("o1", {"A": 1}, fulfillment=bopis("B")), stock({("A", "A"): 1}), BackorderPolicy()
    )
    assert outcomes(plan) == {"A": (0, 1, 0)}


def test_acceptance_ignores_future_inventory() -> None:
    policy = BackorderPolicy(future_inventory=True)
    plan = accept(order("o1", {"A": 1}), stock(receipts=[("A", "A", 1, "2026-04-21")]), policy)
    assert outcomes(plan) == {"A": (0, 1, 0)}


# --- The shipment cap and inserts at acceptance ---


@pytest.mark.parametrize(
    ("max_shipments", "expected"),
    [
        pytest.param(1, {"P1": (0, 2, 0), "P2": (0, 3, 0)}, id="one-shipment-holds-the-order"),
        pytest.param(2, {"P1": (2, 0, 0), "P2": (0, 3, 0)}, id="two-allow-one-split"),
    ],
)
def test_max_shipments_at_acceptance(max_shipments: int, expected: dict[str, Outcome]) -> None:
    plan = accept(IN_STOCK_AND_NOT, ONLY_P1, BackorderPolicy(max_shipments=max_shipments))
    assert outcomes(plan) == expected


def test_everything_in_stock_ships_even_past_the_cap() -> None:
    """The cap limits splitting for backorders; a complete order may still ship from two places."""
    plan = accept(
        order("o1", {"X": 1, "Y": 1}),
        stock({("X", "A"): 1, ("Y", "B"): 1}),
        BackorderPolicy(max_shipments=1),
    )
    assert plan.backorder is None
    assert [s.location for s in plan.shipments] == ["A", "B"]


@pytest.mark.parametrize(
    ("inserts", "expected"),
    [
        pytest.param(
            "ship_with_order", {"X": (0, 1, 0), "FLYER": (0, 1, 0)}, id="whole-order-waits"
        ),
        pytest.param("drop", {"X": (1, 0, 0), "FLYER": (0, 0, 1)}, id="inserts-dropped"),
    ],
)
def test_an_order_cannot_be_split_when_only_inserts_are_out_of_stock(
    inserts: str, expected: dict[str, Outcome]
) -> None:
    policy = BackorderPolicy(inserts=inserts)
    the_order = order("o1", {"X": 1, "FLYER": 1})
    plan = accept(the_order, stock({("X", "A"): 1}), policy, catalog(FLYER={"insert": True}))
    assert outcomes(plan) == expected


def test_inserts_stay_with_the_backorder_when_other_items_are_missing_too() -> None:
    policy = BackorderPolicy(inserts="drop")
    the_order = order("o1", {"X": 1, "Y": 1, "FLYER": 1})
    plan = accept(the_order, stock({("X", "A"): 1}), policy, catalog(FLYER={"insert": True}))
    assert outcomes(plan) == {"X": (1, 0, 0), "Y": (0, 1, 0), "FLYER": (0, 1, 0)}


def test_the_backorder_carries_what_release_needs() -> None:
    vip = order("o1", {"P1": 2, "P2": 3}, tier="vip", fulfillment=bopis("A"))
    plan = accept(vip, ONLY_P1, BackorderPolicy())
    assert plan.backorder == backorder(
        "o1", {"P2": 3}, tier="vip", fulfillment=bopis("A"), shipments=1
    )


def test_release_mode_other_than_full_needs_acceptance_split_all() -> None:
    with pytest.raises(ValueError, match="use acceptance_split 'all'"):
        BackorderPolicy(
            acceptance_split=AcceptanceSplit.ON_ACCEPTANCE, release_mode=ReleaseMode.QUANTITY
        )
