"""The order's JSON form is the public contract: what it accepts, what it rejects, and why."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.contract import contract_problems, iso_currencies
from domain.order import (
    PLACED_AT_IN_FUTURE,
    PLACED_AT_TOO_EARLY,
    Order,
    at_boundary,
    placed_at_problem,
    workflow_id_for,
)
from tests.conftest import EXAMPLE_ORDER
from workflows.backorder import BackorderWorkflow
from workflows.converter import INVALID_INPUT, decode
from workflows.messages import CarriedState


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
        (lambda d: d["lines"][0].update(unit_price="-1.00"), "lines.0.unit_price", "negative"),
        (lambda d: d["lines"][0].update(unit_price=5), "lines.0.unit_price", "not a JSON number"),
        (lambda d: d["lines"][0].update(unit_price="1e3"), "lines.0.unit_price", "no sign, exp"),
        (lambda d: d["lines"][0].update(quantity="2"), "lines.0.quantity", 'not "2"'),
        (lambda d: d["lines"][0].update(quantity=True), "lines.0.quantity", "JSON integer"),
        (lambda d: d.update(currency="XYZ"), "currency", "'XYZ' is not an ISO 4217 currency"),
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


def test_the_signal_payloads_round_trip() -> None:
    """(Every payload's JSON Schema is checked in test_schemas.)"""
    from workflows.messages import AllotmentSignal, ConsentSignal, PriorityChange

    signal = AllotmentSignal.model_validate_json(
        '{"pass_id": "p-1", "receipts": [{"receipt_id": "po-7", "status": "slipped"}]}'
    )
    assert AllotmentSignal.model_validate_json(signal.model_dump_json()) == signal
    assert ConsentSignal.model_validate_json('{"until": "2027-01-31"}').until is not None
    with pytest.raises(ValidationError, match="tier"):
        PriorityChange.model_validate_json("{}")


# -- placed_at is bounded: an impossible time once stalled a whole site's allocator -----------

NOW = dt.datetime(2026, 12, 1, 23, 40, tzinfo=dt.UTC)


def placed_at_errors(placed_at: str, context: dict[str, Any] | None = None) -> list[Any]:
    data = dict(example(), placed_at=placed_at)
    try:
        Order.model_validate_json(json.dumps(data), context=context)
    except ValidationError as err:
        return [(e["loc"], e["type"], e["msg"]) for e in err.errors()]
    return []


@pytest.mark.parametrize(
    ("placed_at", "kind", "message"),
    [
        (
            "9999-12-31T23:00:00-05:00",  # year 10000 in UTC: PostgreSQL stored it, no one read it
            PLACED_AT_IN_FUTURE,
            "placed_at 9999-12-31T23:00:00-05:00 is in the future:"
            " it may be no later than 9000-01-01T00:00:00Z",
        ),
        (
            "1999-12-31T23:59:59Z",
            PLACED_AT_TOO_EARLY,
            "placed_at 1999-12-31T23:59:59Z is too long ago:"
            " it may be no earlier than 2000-01-01T00:00:00Z",
        ),
        (
            "0001-01-01T00:00:00+01:00",
            PLACED_AT_TOO_EARLY,
            "placed_at 0001-01-01T00:00:00+01:00 is too long ago:"
            " it may be no earlier than 2000-01-01T00:00:00Z",
        ),
    ],
)
def test_placed_at_out_of_the_fixed_bounds_is_rejected_everywhere(
    placed_at: str, kind: str, message: str
) -> None:
    """The fixed bounds need no clock: they hold in workflows (and their replays) too."""
    assert placed_at_errors(placed_at) == [(("placed_at",), kind, message)]
    assert placed_at_errors(placed_at, at_boundary(NOW))[0][1] == kind


def test_at_a_boundary_placed_at_may_be_at_most_an_hour_after_now() -> None:
    assert placed_at_errors("9999-12-31T23:00:00-05:00", at_boundary(NOW)) == [
        (
            ("placed_at",),
            PLACED_AT_IN_FUTURE,
            "placed_at 9999-12-31T23:00:00-05:00 is in the future: it may be at most 1 hour"
            " after now (2026-12-01T23:40:00Z)",
        )
    ]
    assert placed_at_errors("2026-12-02T00:40:00Z", at_boundary(NOW)) == []  # the clocks' skew
    assert placed_at_errors("2026-12-01T19:40:00-05:00", at_boundary(NOW)) == []
    [(_, kind, message)] = placed_at_errors("2026-12-02T00:40:01Z", at_boundary(NOW))
    assert kind == PLACED_AT_IN_FUTURE and "at most 1 hour after now" in message
    # without the boundary's clock (a workflow validating its input): the fixed bounds only
    assert placed_at_errors("2027-06-01T00:00:00Z") == []


def test_an_order_accepted_long_ago_stays_valid() -> None:
    """A replay validates the input again months or years later: what was valid stays so."""
    placed = "2026-11-20T10:00:00Z"
    assert placed_at_errors(placed, at_boundary(NOW)) == []
    later = NOW + dt.timedelta(days=3 * 365)
    assert placed_at_errors(placed, at_boundary(later)) == []
    assert placed_at_errors(placed) == []
    assert placed_at_problem(dt.datetime(2000, 1, 1, tzinfo=dt.UTC), later) is None


def test_the_boundary_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="time zone"):
        at_boundary(dt.datetime(2026, 12, 1, 23, 40))


@pytest.mark.parametrize("placed_at", ["2999-01-01T00:00:00Z", "9999-12-31T23:00:00-05:00"])
def test_backorder_order_start_refuses_an_impossible_placed_at_before_calling_temporal(
    placed_at: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import starter

    path = tmp_path / "order.json"
    path.write_text(json.dumps(dict(example(), placed_at=placed_at)))
    assert starter.main(["order", "start", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path} is not a valid order" in err
    assert f"placed_at: placed_at {placed_at} is in the future" in err


@pytest.mark.parametrize("placed_at", ["2999-01-01T00:00:00Z", "9999-12-31T23:00:00-05:00"])
async def test_a_raw_temporal_start_with_an_impossible_placed_at_fails_at_once_with_invalid_input(
    time_skipping_env: WorkflowEnvironment, placed_at: str
) -> None:
    """`temporal workflow start --input ...` sends plain JSON: no Python of ours checks it
    before the workflow's data converter, which fails the workflow with `InvalidInput`."""
    data = dict(example(), order_id=f"raw-{uuid.uuid4().hex[:8]}", placed_at=placed_at)
    cause = await raw_start_failure(time_skipping_env, data)
    assert f"placed_at: placed_at {placed_at} is in the future" in cause.message


def test_backorder_order_start_refuses_an_order_placed_days_from_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import starter

    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
    path = tmp_path / "order.json"
    path.write_text(json.dumps(dict(example(), placed_at=ahead)))
    assert starter.main(["order", "start", str(path)]) == 1
    assert "is in the future: it may be at most 1 hour after now" in capsys.readouterr().err


async def test_a_raw_temporal_start_of_an_order_placed_days_ahead_fails_before_any_step(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Within the contract's fixed bounds, but days after the workflow's start: the workflow
    checks it against its own clock before it claims anything (no activity is registered
    here: a workflow that went on would wait for one)."""
    ahead = await time_skipping_env.get_current_time() + dt.timedelta(days=3)
    data = dict(example(), order_id=f"ahead-{uuid.uuid4().hex[:8]}", placed_at=ahead.isoformat())
    cause = await raw_start_failure(time_skipping_env, data)
    assert "is in the future: it may be at most 1 hour after now" in cause.message


async def raw_start_failure(env: WorkflowEnvironment, data: dict[str, Any]) -> ApplicationError:
    """Start the workflow with plain JSON, as `temporal workflow start --input` does, on a
    worker with no activity (a workflow that went on would wait for one); its failure, which
    must be a non-retryable `InvalidInput`."""
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=queue, workflows=[BackorderWorkflow]):
        handle = await env.client.start_workflow(
            "BackorderWorkflow",
            data,
            id=workflow_id_for(data["order_id"]),
            task_queue=queue,
            result_type=dict,
        )
        with pytest.raises(WorkflowFailureError) as info:
            await asyncio.wait_for(handle.result(), timeout=30)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == INVALID_INPUT and cause.non_retryable
    return cause


# -- currencies are ISO 4217, amounts within their minor units ---------------------------------


@pytest.mark.parametrize(
    ("currency", "price", "accepted"),
    [
        ("USD", "10.25", True),
        ("USD", "10.125", False),
        ("JPY", "1500", True),
        ("JPY", "1500.00", True),  # trailing zeros are no minor units
        ("JPY", "1500.50", False),
        ("KWD", "1.125", True),
        ("KWD", "1.1255", False),
    ],
)
def test_amounts_carry_at_most_the_currencys_minor_units(
    currency: str, price: str, accepted: bool
) -> None:
    data = example()
    data.update(currency=currency)
    data["lines"][0].update(unit_price=price)
    if accepted:
        assert Order.model_validate_json(json.dumps(data)).lines[0].unit_price == Decimal(price)
    else:
        assert f"has more decimals than {currency} allows" in errors_of(data)[""]


def test_the_currency_table_is_babels_not_ours() -> None:
    from babel.numbers import get_currency_precision

    table = iso_currencies()
    assert {"USD", "EUR", "GBP", "JPY", "KWD", "CHF"} <= set(table)
    assert not {"XYZ", "XXX", "DEM"} & set(table)  # made up, "no currency", withdrawn
    assert all(table[code] == get_currency_precision(code) for code in table)


def test_an_order_an_earlier_release_took_still_decodes_leniently_for_its_replay() -> None:
    """A running order accepted with a number for a price (before the rule was enforced)
    must not fail when its history replays: the converter takes it leniently and says why."""
    data = example()
    data.update(currency="XYZ")
    data["lines"][0].update(unit_price=5, quantity="2")
    order = decode(json.dumps(data).encode(), Order | CarriedState)
    assert isinstance(order, Order) and order.lines[0].quantity == 2
    problems = contract_problems(order)
    assert problems is not None
    assert "currency: 'XYZ'" in problems and "lines.0.unit_price" in problems
    assert contract_problems(Order.model_validate_json(EXAMPLE_ORDER.read_text())) is None


async def test_a_raw_start_names_the_orders_field_not_every_union_member(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    data = dict(example(), order_id=f"zero-{uuid.uuid4().hex[:8]}")
    data["lines"][0].update(quantity=0)
    cause = await raw_start_failure(time_skipping_env, data)
    assert cause.message == "invalid Order: lines.0.quantity: Input should be greater than 0"
    assert cause.details[0] == {
        "payload": "Order",
        "errors": [
            {
                "field": "lines.0.quantity",
                "problem": "greater_than",
                "message": "Input should be greater than 0",
            }
        ],
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"currency": "XYZ"}, "currency: 'XYZ' is not an ISO 4217 currency code"),
        ({"lines": [{"line_id": "1", "sku": "KTP", "quantity": 5, "unit_price": 5}]},
         "lines.0.unit_price: money must be a decimal string"),
        ({"lines": [{"line_id": "1", "sku": "KTP", "quantity": "5", "unit_price": "5"}]},
         'lines.0.quantity: must be a JSON integer such as 2, not "5"'),
    ],
)  # fmt: skip
async def test_a_raw_start_the_exact_contract_refuses_fails_with_invalid_input(
    time_skipping_env: WorkflowEnvironment, change: dict[str, Any], expected: str
) -> None:
    data = dict(example(), order_id=f"strict-{uuid.uuid4().hex[:8]}") | change
    cause = await raw_start_failure(time_skipping_env, data)
    assert cause.message.startswith("invalid Order: ") and expected in cause.message
