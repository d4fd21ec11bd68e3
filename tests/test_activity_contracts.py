"""The order workflow's activity contracts: names, payloads and idempotency keys."""

from __future__ import annotations

from typing import Any, cast

import pytest
from pydantic import ValidationError

from activities import contracts as c
from activities.effect_batch import APPLY_ORDER_EFFECTS
from tests.sandbox import io_packages_imported_by

TOUCH_STOCK_OR_MONEY: set[c.ActivityContract[Any, Any]] = {
    c.RESERVE_STOCK, c.RELEASE_STOCK, c.UPDATE_DEMAND, c.AUTHORISE_PAYMENT, c.CAPTURE_PAYMENT,
    c.VOID_PAYMENT, c.REFUND_PAYMENT, c.SEND_NOTICE, c.RAISE_EXCEPTION, c.PUBLISH_SHIPMENT,
}  # fmt: skip


def test_names_are_unique_and_every_contract_is_listed() -> None:
    names = [contract.name for contract in (*c.ALL, *c.ALLOCATOR, *c.NOTICE_DELIVERY)]
    assert len(names) == len(set(names)) == 19
    listed = {v for v in vars(c).values() if isinstance(v, c.ActivityContract)}
    assert listed == {*c.ALL, *c.ALLOCATOR, *c.NOTICE_DELIVERY}


def test_every_side_effect_carries_an_idempotency_key() -> None:
    for contract in TOUCH_STOCK_OR_MONEY:
        assert "key" in contract.input.model_fields, contract.name
        assert contract.input.model_fields["key"].is_required(), contract.name


def test_step_keys_are_made_of_workflow_id_and_step() -> None:
    key = c.step_key("backorder-A-1", "capture", "A-1-S2")
    assert key == "backorder-A-1/capture/A-1-S2"
    request = c.PaymentRequest(key=key, order_id="A-1", amount="20.00", currency="USD")
    assert request.key == key
    with pytest.raises(ValidationError, match="key"):
        c.PaymentRequest(key="no-step", order_id="A-1", amount="1.00", currency="USD")


def test_contracts_import_nothing_a_workflow_sandbox_would_refuse() -> None:
    assert io_packages_imported_by("activities.contracts") == []


def test_the_worker_registers_every_contract_by_name() -> None:
    from psycopg_pool import AsyncConnectionPool
    from temporalio import activity
    from temporalio.client import Client

    from config import Settings
    from worker import activities

    pool = AsyncConnectionPool("postgresql://unused", open=False)
    client = cast(Client, object())  # stored by the allocator's activities, not used here
    registered = activities(pool, Settings(), client)
    names = {activity._Definition.must_from_callable(fn).name for fn in registered}
    every = (*c.ALL, *c.ALLOCATOR, *c.NOTICE_DELIVERY)
    wanted = {contract.name for contract in every} | {"record_order", APPLY_ORDER_EFFECTS.name}
    assert wanted == names
