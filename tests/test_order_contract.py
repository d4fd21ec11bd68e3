"""The order's JSON form is the public contract: what it accepts, what it rejects, and why."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from domain.order import Order, workflow_id_for
from tests.conftest import EXAMPLE_ORDER


def example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE_ORDER.read_text())
    return data


def errors_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        Order.model_validate_json(json.dumps(data))
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in info.value.errors()}


def test_the_documented_example_is_accepted_and_round_trips_exactly() -> None:
    order = Order.model_validate_json(EXAMPLE_ORDER.read_text())
    assert order.workflow_id == "backorder-A-1" == workflow_id_for("A-1")
    assert order.value == Decimal("50.00")
    assert order.skus == ["KTP"]
    dumped = json.loads(order.model_dump_json())
    assert dumped["lines"][0]["unit_price"] == "10.00"  # money stays a decimal string
    assert dumped["placed_at"] == "2026-11-20T10:00:00Z"
    assert Order.model_validate_json(order.model_dump_json()) == order


def test_value_sums_lines_exactly() -> None:
    data = example()
    data["lines"] = [
        {"line_id": "1", "sku": "A", "quantity": 3, "unit_price": "0.10"},
        {"line_id": "2", "sku": "B", "quantity": 1, "unit_price": "0.20"},
    ]
    assert Order.model_validate(data).value == Decimal("0.50")


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda d: d["lines"][0].update(quantity=0), "lines.0.quantity", "greater than 0"),
        (lambda d: d["lines"][0].update(quantity=2.5), "lines.0.quantity", "integer"),
        (
            lambda d: d["lines"][0].update(unit_price="-1.00"),
            "lines.0.unit_price",
            "greater than or equal to 0",
        ),
        (lambda d: d["lines"][0].update(unit_price=10.1), "lines.0.unit_price", "decimal string"),
        (lambda d: d["lines"][0].update(unit_price="ten"), "lines.0.unit_price", "decimal"),
        (lambda d: d.update(placed_at="2026-11-20T10:00:00"), "placed_at", "timezone"),
        (lambda d: d.update(currency="usd"), "currency", "pattern"),
        (lambda d: d.update(lines=[]), "lines", "at least 1"),
        (lambda d: d.update(order_id=""), "order_id", "at least 1"),
        (lambda d: d.update(order_id=" A-1"), "order_id", "pattern"),
        (lambda d: d["customer"].update(email="nobody"), "customer.email", "pattern"),
        (lambda d: d.update(fulfillment={"type": "drone"}), "fulfillment.type", "'sth' or 'bopis'"),
        (lambda d: d.update(fulfillment={"type": "bopis"}), "fulfillment", "pickup_location"),
        (lambda d: d.update(shipping_speed="fast"), "shipping_speed", "Extra inputs"),
    ],
)
def test_bad_input_is_rejected_naming_the_field(change: Any, field: str, message: str) -> None:
    data = example()
    change(data)
    errors = errors_of(data)
    assert field in errors, errors
    assert message in errors[field]


def test_line_ids_must_be_unique() -> None:
    data = example()
    data["lines"].append(dict(data["lines"][0], sku="OTHER"))
    errors = errors_of(data)
    assert "repeated: 1" in errors[""]


def test_optional_fields_have_safe_defaults() -> None:
    order = Order.model_validate(example())
    assert order.lines[0].allow_backorder is None
    assert order.fulfillment.pickup_location is None
    data = example()
    del data["customer"]["tier"]
    assert Order.model_validate(data).customer.tier == "standard"


def test_json_schema_names_the_required_contract_fields() -> None:
    schema = Order.model_json_schema()
    assert set(schema["required"]) == {
        "order_id", "order_number", "placed_at", "currency", "customer", "fulfillment", "lines",
    }  # fmt: skip
    assert schema["additionalProperties"] is False


def test_every_public_payload_has_a_json_schema_and_round_trips() -> None:
    import starter

    for name, model in starter.SCHEMAS.items():
        schema = model.model_json_schema()
        assert schema["type"] == "object", name
        assert schema.get("additionalProperties") is False, name
    from workflows.messages import AllotmentSignal, ConsentSignal, PriorityChange

    signal = AllotmentSignal.model_validate_json(
        '{"pass_id": "p-1", "receipts": [{"receipt_id": "po-7", "status": "slipped"}]}'
    )
    assert AllotmentSignal.model_validate_json(signal.model_dump_json()) == signal
    assert ConsentSignal.model_validate_json('{"until": "2027-01-31"}').until is not None
    with pytest.raises(ValidationError, match="tier"):
        PriorityChange.model_validate_json("{}")
