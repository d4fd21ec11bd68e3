"""The planner's boundary: policy defaults and validation, input checks, output consistency."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from domain.planner import (
    AcceptancePlan,
    Allotment,
    Catalog,
    LineOutcome,
    OrderRelease,
    ParentStatus,
    Product,
    Shipment,
    ShipmentKind,
    StockSource,
    plan_acceptance,
    remaining_backorder,
)
from domain.policy import (
    AcceptanceSplit,
    BackorderPolicy,
    FulfilmentReports,
    InsertHandling,
    PaymentTiming,
    ReleaseMode,
    SplitNumbering,
)
from tests.planner_strategies import backorder, order, stock
from tests.sandbox import io_packages_imported_by


def test_void_and_reauth_on_release_needs_full_release_and_capture_at_ship() -> None:
    with pytest.raises(ValidationError, match="needs release_mode 'full'"):
        BackorderPolicy(void_and_reauth_on_release=True, release_mode=ReleaseMode.QUANTITY)
    with pytest.raises(ValidationError, match="payment_timing 'at_ship'"):
        BackorderPolicy(void_and_reauth_on_release=True, payment_timing=PaymentTiming.AT_ORDER)
    assert BackorderPolicy(void_and_reauth_on_release=True).void_and_reauth_on_release


def test_policy_defaults_follow_the_most_common_setup_in_the_seeds() -> None:
    assert BackorderPolicy().model_dump() == {
        "backorders_enabled": True,
        "release_mode": ReleaseMode.FULL,
        "acceptance_split": AcceptanceSplit.ALL,
        "max_shipments": None,
        "future_inventory": False,
        "future_date_limit_days": 30,
        "tier_ranks": {"vip": 1, "expedited": 2, "wholesale": 3},
        "inserts": InsertHandling.SHIP_WITH_ORDER,
        "default_backorder_days": 2,
        "payment_timing": PaymentTiming.AT_SHIP,
        "reauth_interval_days": 10,
        "reauth_before_expiry_hours": 24,
        "void_and_reauth_on_release": False,
        "customer_update_days": (7, 14),
        "ftc_shipping_days": 30,
        "ftc_notice_lead_days": 3,
        "ftc_exception_days": 25,
        "auto_cancel_days": None,
        "check_interval_hours": None,
        "max_backorder_per_customer": None,
        "max_backordered_units_per_sku": None,
        "fulfilment_reports": FulfilmentReports.NONE,
        "split_numbering": SplitNumbering.NONE,
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("future_date_limit_days", -1, "greater than or equal to 0"),
        ("default_backorder_days", -3, "greater than or equal to 0"),
        ("max_shipments", 0, "greater than or equal to 1"),
        ("tier_ranks", {"vip": -1}, "greater than or equal to 0"),
        ("tier_ranks", {"": 1}, "at least 1 character"),
        ("release_mode", "partial", "'full', 'line_item' or 'quantity'"),
        ("inserts", "keep", "'ship_with_order' or 'drop'"),
        ("surprise", True, "Extra inputs are not permitted"),
    ],
)
def test_policy_rejects_bad_settings_with_a_clear_message(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        BackorderPolicy.model_validate({field: value})
    assert caught.value.errors()[0]["loc"][0] == field


def test_partial_release_needs_a_backorder_that_may_be_split_again() -> None:
    with pytest.raises(ValidationError, match="'entire_order' releases a backorder only in full"):
        BackorderPolicy(acceptance_split="entire_order", release_mode="line_item")


def test_override_gives_a_validated_copy_for_one_site() -> None:
    base = BackorderPolicy(future_inventory=True)
    site = base.override(release_mode="quantity", max_shipments=3)
    assert (site.future_inventory, site.release_mode, site.max_shipments) == (
        True,
        ReleaseMode.QUANTITY,
        3,
    )
    assert base.release_mode is ReleaseMode.FULL
    with pytest.raises(ValidationError):
        base.override(max_shipments=0)


@pytest.mark.parametrize(
    ("tier", "rank"), [("vip", 1), ("expedited", 2), ("wholesale", 3), ("standard", 1001)]
)
def test_unlisted_tiers_queue_after_every_listed_one(tier: str, rank: int) -> None:
    assert BackorderPolicy().tier_rank(tier) == rank


def test_catalog_defaults_an_unlisted_product_to_backorderable() -> None:
    products = Catalog(products=(Product(sku="A", backorderable=False),))
    assert products.product("A").backorderable is False
    assert products.product("B") == Product(sku="B", backorderable=True)
    with pytest.raises(ValidationError, match="unique skus; repeated: A"):
        Catalog(products=(Product(sku="A"), Product(sku="A", insert=True)))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"on_hand": {("A", "X"): 1}}, "stock at unknown locations: X"),
        ({"locations": ["A", "A"]}, "location ids must be unique"),
        ({"receipts": [("A", "Z", 1, None)]}, "stock at unknown locations: Z"),
    ],
)
def test_stock_must_name_known_locations_once(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        stock(**changes)


def test_a_backorder_needs_distinct_line_ids() -> None:
    bo = backorder("1", {"A": 1})
    with pytest.raises(ValidationError, match="line ids must be unique; repeated: A"):
        type(bo).model_validate({**bo.model_dump(), "lines": [bo.lines[0], bo.lines[0]]})


def _allotment(**changes: object) -> Allotment:
    fields: dict[str, object] = {
        "line_id": "1",
        "sku": "A",
        "quantity": 1,
        "location": "L1",
        "source": StockSource.CURRENT,
    }
    return Allotment.model_validate(fields | changes)


@pytest.mark.parametrize(
    ("kind", "extra", "allotment", "message"),
    [
        (ShipmentKind.READY, {"destination": "L2"}, _allotment(), "only a transfer"),
        (ShipmentKind.TRANSFER, {}, _allotment(), "only a transfer"),
        (ShipmentKind.FUTURE, {}, _allotment(), "only one, has an expected date"),
        (ShipmentKind.READY, {}, _allotment(location="L2"), "does not belong"),
        (
            ShipmentKind.FUTURE,
            {"expected_date": dt.date(2026, 5, 1)},
            _allotment(source="future", expected_date=dt.date(2026, 5, 2), receipt_id="r"),
            "another date",
        ),
    ],
)
def test_a_shipment_holds_only_allotments_that_belong_in_it(
    kind: ShipmentKind, extra: dict[str, object], allotment: Allotment, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Shipment.model_validate(
            {"kind": kind, "location": "L1", "allotments": [allotment], **extra}
        )


def test_the_parent_is_reassigned_exactly_when_nothing_stays_backordered() -> None:
    line = LineOutcome(line_id="1", sku="A", released=1, backordered=1, cancelled=0)
    with pytest.raises(ValidationError, match="exactly when nothing stays backordered"):
        OrderRelease(order_id="1", shipments=(), lines=(line,), parent_status="reassigned")


def test_remaining_backorder_belongs_to_the_same_order() -> None:
    line = LineOutcome(line_id="A", sku="A", released=1, backordered=0, cancelled=0)
    release = OrderRelease(
        order_id="2", shipments=(), lines=(line,), parent_status=ParentStatus.REASSIGNED
    )
    with pytest.raises(ValueError, match="release of order 2 applied to 1"):
        remaining_backorder(backorder("1", {"A": 1}), release)


def test_an_acceptance_plan_survives_a_json_round_trip() -> None:
    accepted = plan_acceptance(
        order("o1", {"A": 2, "B": 1}),
        stock({("A", "A"): 1, ("A", "B"): 1}),
        Catalog(),
        BackorderPolicy(),
    )
    assert [s.kind for s in accepted.shipments] == [ShipmentKind.READY, ShipmentKind.TRANSFER]
    assert AcceptancePlan.model_validate_json(accepted.model_dump_json()) == accepted


def test_the_planner_imports_nothing_a_workflow_sandbox_would_refuse() -> None:
    """Workflows call the planner: stdlib, pydantic and domain only."""
    modules = ("domain.planner", "domain.policy")
    assert io_packages_imported_by(*modules, also=frozenset({"activities"})) == []
