"""`backorder schema`: every public payload's JSON Schema is plain Draft 2020-12 and says what
the service accepts, no more, no less: good and bad examples are judged alike by the schema
(a maintained validator, formats checked) and by the model, except for the rules the schema's
description names as checked by the service alone."""

from __future__ import annotations

import copy
import datetime as dt
import json
import typing
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]
from jsonschema_specifications import REGISTRY as SPECIFICATIONS  # type: ignore[import-untyped]
from pydantic import BaseModel, TypeAdapter, ValidationError
from temporalio import workflow

import starter
from activities.contracts import DeliveryReport, PassReport
from cli.schema import DRAFT, PAYLOADS, STANDARD_KEYWORDS, public_schema
from domain.contract import LENIENT
from domain.inventory import EventOutcome, EventStatus, StockPosition
from domain.order import Order
from domain.order_book import BookedShipment, CancelledPart, ShipmentStatus
from domain.payment import PaymentBook
from domain.planner import Allotment, ShipmentKind
from domain.policy import BackorderPolicy, PaymentTiming
from domain.schedule import FtcState, ScheduleState, summary
from workflows.allocator import AllocatorWorkflow
from workflows.allocator_messages import AllocatorStatus, FeedResult, PassOutcome
from workflows.backorder import BackorderWorkflow
from workflows.messages import (
    BackorderStatus,
    CancelResult,
    CheckResult,
    ConsentResult,
    FulfilmentAnswer,
    OrderStatus,
    PriorityResult,
)
from workflows.order_views import line_statuses, order_summary, waiting_book

FORMATS = FormatChecker()
"""jsonschema checks `date` itself, but `date-time` only with rfc3339-validator, which is not
installed: the schema's pattern holds the RFC 3339 syntax, and this checker adds the calendar
(no 30 February, no year 0)."""


def _calendar_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(dt.datetime.fromisoformat(value.upper()))


FORMATS.checks("date-time", raises=ValueError)(_calendar_date_time)


def _draft_keywords() -> set[str]:
    """Every keyword of Draft 2020-12's vocabularies, read from their metaschemas (the
    deprecated `definitions`, `dependencies` and `$recursive*` are in none)."""
    meta = SPECIFICATIONS.contents(DRAFT)
    return {
        keyword
        for vocabulary in meta["allOf"]
        for keyword in SPECIFICATIONS.contents(urljoin(DRAFT, vocabulary["$ref"]))["properties"]
    }


STRICT_METASCHEMA = {
    "$schema": DRAFT,
    "$id": "urn:test:draft-2020-12-keywords-only",
    "$dynamicAnchor": "meta",
    "$ref": DRAFT,
    "propertyNames": {"enum": sorted(_draft_keywords())},
}
"""Draft 2020-12's metaschema refusing any keyword outside its vocabularies, at every depth:
the metaschema checks each subschema through `$dynamicRef: #meta`, which resolves to this
document's anchor."""


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(public_schema(name), format_checker=FORMATS)


@cache
def adapter(name: str) -> TypeAdapter[Any]:
    return TypeAdapter(PAYLOADS[name].type)


def model_accepts(name: str, text: str, **context: Any) -> bool:
    try:
        adapter(name).validate_json(text, context=context or None)
    except ValidationError:
        return False
    return True


# -- every schema is standard ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_every_schema_is_draft_2020_12_with_no_other_keyword(name: str) -> None:
    schema = public_schema(name)
    Draft202012Validator.check_schema(schema)
    foreign = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.instance}"
        for e in Draft202012Validator(STRICT_METASCHEMA).iter_errors(schema)
    ]
    assert foreign == []
    assert schema["$schema"] == DRAFT
    assert schema["$id"] == f"urn:backorder:schema:{name}"
    assert schema["title"] and schema["description"]


def test_a_foreign_keyword_is_caught_by_the_strict_metaschema() -> None:
    assert _draft_keywords() == STANDARD_KEYWORDS  # what cli.schema keeps
    strict = Draft202012Validator(STRICT_METASCHEMA)
    assert not strict.is_valid({"properties": {"n": {"type": "integer", "ge": 0}}})
    assert not strict.is_valid({"oneOf": [True], "discriminator": {"propertyName": "type"}})
    assert strict.is_valid({"properties": {"n": {"type": "integer", "minimum": 0}}})


def _message_types(workflow_class: type) -> set[Any]:
    """The types of every signal, update and query argument and answer, and of the workflow's
    input and result."""
    defn = workflow._Definition.must_from_class(workflow_class)
    hints = [*(defn.arg_types or ()), defn.ret_type]
    for table in (defn.signals, defn.updates, defn.queries):
        for handler in table.values():
            hints.extend(typing.get_type_hints(handler.fn).values())
    members = (m for h in hints for m in typing.get_args(h) or (h,))  # `X | None`: X
    return {m for m in members if isinstance(m, type) and issubclass(m, BaseModel)}


NOT_PUBLIC = {"CarriedState", "AllocatorStart", "QueueMove"}
"""Inputs a workflow hands its next run on continue-as-new (the allocator's also starts it
with a site from our own clients), and the signal our own worker sends an allocator to move
it to its task queue."""


def test_the_registry_covers_every_message_of_the_workflows() -> None:
    assert Order in _message_types(BackorderWorkflow)  # a union's members count
    registered = {p.type for p in PAYLOADS.values()}
    for workflow_class in (BackorderWorkflow, AllocatorWorkflow):
        missing = {t.__name__ for t in _message_types(workflow_class) - registered} - NOT_PUBLIC
        assert missing == set(), workflow_class.__name__


def test_a_tagged_union_requires_its_tag_instead_of_openapis_discriminator() -> None:
    event = public_schema("inventory-event")
    assert event["required"] == ["type"] and len(event["oneOf"]) == 9
    assert "discriminator" not in json.dumps(public_schema("allocator-inventory"))


# -- the table: schema and model judge alike -------------------------------------------------

DELETE = object()


def changed(base: dict[str, Any], *edits: tuple[str, Any]) -> dict[str, Any]:
    """`base` with each `path` (`lines.0.quantity`) set to its value (DELETE: removed; an
    index one past a list's end appends)."""
    data = copy.deepcopy(base)
    for path, value in edits:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last) : int(last) + 1] = [copy.deepcopy(value)]
        else:
            node[last] = copy.deepcopy(value)  # a later edit may change it inside
    return data


@dataclass(frozen=True)
class Case:
    payload: str
    label: str
    data: Any
    valid: bool
    service_only: str | None = None
    """A rule only the model checks: the schema accepts, the model refuses, and the schema's
    description names the rule (this text)."""
    pending: str | None = None
    """A model looser than the contract, waiting for the change named here."""

    @property
    def param(self) -> Any:
        marks = [pytest.mark.xfail(strict=True, reason=self.pending)] if self.pending else []
        return pytest.param(self, id=f"{self.payload}: {self.label}", marks=marks)


def good(payload: str, label: str, data: Any) -> Case:
    return Case(payload, label, data, valid=True)


def bad(payload: str, label: str, data: Any, pending: str | None = None) -> Case:
    return Case(payload, label, data, valid=False, pending=pending)


def service_only(payload: str, label: str, data: Any, rule: str) -> Case:
    return Case(payload, label, data, valid=False, service_only=rule)


ORDER: dict[str, Any] = {
    "order_id": "A-1",
    "order_number": "M9681118",
    "placed_at": "2026-11-20T10:00:00Z",
    "currency": "USD",
    "customer": {"id": "c1", "email": "c@example.com", "tier": "standard"},
    "fulfillment": {"type": "sth"},
    "lines": [{"line_id": "1", "sku": "KTP", "quantity": 5, "unit_price": "10.00"}],
    "stated_ship_date": "2026-12-20",
    "payment": {
        "reference": "auth-1",
        "amount": "50.00",
        "authorised_at": "2026-11-20T10:00:05Z",
        "expires_at": "2026-11-27T10:00:05Z",
    },
}
BOPIS = {"type": "bopis", "pickup_location": "STORE-1"}
SECOND_LINE = {"line_id": "2", "sku": "MUG", "quantity": 1, "unit_price": "4.5"}
INTEGERS = "without a fraction or exponent"


def order(*edits: tuple[str, Any]) -> dict[str, Any]:
    return changed(ORDER, *edits)


ORDER_CASES = [
    good("order", "the documented example", ORDER),
    good("order", "no payment, no stated date", order(
        ("payment", DELETE), ("stated_ship_date", None),
    )),
    good("order", "bopis with its store", order(("fulfillment", BOPIS))),
    good("order", "two lines, offset and fraction", order(
        ("lines.1", SECOND_LINE), ("placed_at", "2026-11-20T11:00:00.123+01:00"),
    )),
    good("order", "lower-case t and z (RFC 3339)", order(("placed_at", "2026-11-20t10:00:00z"))),
    good("order", "JPY in whole units", order(
        ("currency", "JPY"), ("lines.0.unit_price", "1000"), ("payment.amount", "5000.00"),
    )),
    good("order", "optional switches", order(
        ("lines.0.allow_backorder", False), ("applied_for_credit", True), ("site", None),
    )),
    bad("order", "currency XYZ", order(("currency", "XYZ"))),
    bad("order", "currency in lower case", order(("currency", "usd"))),
    bad("order", "price 5 as a JSON integer", order(("lines.0.unit_price", 5))),
    bad("order", "price 25.00 as a JSON number", order(("lines.0.unit_price", 25.0))),
    bad("order", 'price "abc"', order(("lines.0.unit_price", "abc"))),
    bad("order", 'price "-5"', order(("lines.0.unit_price", "-5"))),
    bad("order", 'price "1e3"', order(("lines.0.unit_price", "1e3"))),
    bad("order", "price with 5 decimals", order(("lines.0.unit_price", "10.00001"))),
    bad("order", "price with blanks", order(("lines.0.unit_price", " 10.00"))),
    bad("order", "payment amount as a number", order(("payment.amount", 50))),
    bad("order", 'quantity "2"', order(("lines.0.quantity", "2"))),
    bad("order", "quantity 0", order(("lines.0.quantity", 0))),
    bad("order", "quantity -1", order(("lines.0.quantity", -1))),
    bad("order", "quantity above a million", order(("lines.0.quantity", 1_000_001))),
    bad("order", "quantity true", order(("lines.0.quantity", True))),
    bad("order", "missing order_id", order(("order_id", DELETE))),
    bad("order", "missing placed_at", order(("placed_at", DELETE))),
    bad("order", "no lines", order(("lines", []))),
    bad("order", "blank order_id", order(("order_id", " A-1"))),
    bad("order", "unknown field", order(("gift_wrap", True))),
    bad("order", "unknown line field", order(("lines.0.colour", "red"))),
    bad("order", "fulfillment type drone", order(("fulfillment.type", "drone"))),
    bad("order", "bopis without a store", order(("fulfillment", {"type": "bopis"}))),
    bad("order", "bopis with a null store", order(
        ("fulfillment", BOPIS), ("fulfillment.pickup_location", None),
    )),
    bad("order", "email without @", order(("customer.email", "nope"))),
    bad("order", "empty tier", order(("customer.tier", ""))),
    bad("order", "placed_at as a number", order(("placed_at", 1_700_000_000))),
    bad("order", "placed_at as digits", order(("placed_at", "1700000000"))),
    bad("order", "placed_at without timezone", order(("placed_at", "2026-11-20T10:00:00"))),
    bad("order", "placed_at with a space", order(("placed_at", "2026-11-20 10:00:00Z"))),
    bad("order", "placed_at without seconds", order(("placed_at", "2026-11-20T10:00Z"))),
    bad("order", "placed_at on 30 February", order(("placed_at", "2026-02-30T10:00:00Z"))),
    bad("order", "placed_at at 24:00", order(("placed_at", "2026-11-20T24:00:00Z"))),
    bad("order", "authorised_at as a number", order(("payment.authorised_at", 1_700_000_000))),
    bad("order", "stated date as a date-time", order(("stated_ship_date", "2026-12-20T00:00:00Z"))),
    bad("order", "stated date as a number", order(("stated_ship_date", 0))),
    bad("order", "stated date 30 February", order(("stated_ship_date", "2027-02-30"))),
    bad("order", 'allow_backorder "yes"', order(("lines.0.allow_backorder", "yes"))),
    bad("order", "applied_for_credit 1", order(("applied_for_credit", 1))),
    good("order", "ship complete", order(("shipping_preference", "ship_complete"))),
    good("order", "ship what is ready", order(("shipping_preference", "ship_available"))),
    bad("order", "shipping_preference partial", order(("shipping_preference", "partial"))),
    service_only("order", "quantity 2.0", order(("lines.0.quantity", 2.0)), INTEGERS),
    service_only("order", "line ids repeated", order(
        ("lines.1", {**SECOND_LINE, "line_id": "1"}), ("payment", DELETE),
    ), "line ids are unique"),
    service_only("order", "payment above the value", order(("payment.amount", "50.01")),
                 "payment.amount is at most the order's value"),
    service_only("order", "cents in JPY", order(
        ("currency", "JPY"), ("lines.0.unit_price", "10.50"), ("payment", DELETE),
    ),
                 "the currency's minor units"),
    service_only("order", "placed in 1999", order(("placed_at", "1999-12-31T23:59:59Z")),
                 "placed_at lies between 2000-01-01"),
    service_only("order", "expiry before authorisation", order(
        ("payment.expires_at", "2026-11-20T10:00:00Z"),
    ), "expires_at is after"),
]  # fmt: skip

MESSAGE_CASES = [
    good("cancel", "the whole order", {}),
    good("cancel", "a whole line", {"lines": [{"line_id": "1"}]}),
    good("cancel", "units of a line", {
        "lines": [{"line_id": "1", "quantity": 2}], "reason": "duplicate", "requested_by": "cs",
    }),
    bad("cancel", 'quantity "2"', {"lines": [{"line_id": "1", "quantity": "2"}]}),
    bad("cancel", "quantity 0", {"lines": [{"line_id": "1", "quantity": 0}]}),
    bad("cancel", "a line without its id", {"lines": [{"quantity": 1}]}),
    bad("cancel", "lines as an object", {"lines": {"line_id": "1"}}),
    bad("cancel", "empty reason", {"reason": ""}),
    bad("cancel", "unknown field", {"refund": True}),
    service_only("cancel", "quantity 2.0", {"lines": [{"line_id": "1", "quantity": 2.0}]},
                 INTEGERS),
    good("consent", "the offered date", {}),
    good("consent", "a date and a channel", {"until": "2027-01-31", "channel": "email"}),
    bad("consent", "30 February", {"until": "2027-02-30"}),
    bad("consent", "empty channel", {"channel": ""}),
    bad("consent", "unknown field", {"until": "2027-01-31", "by": "phone"}),
    bad("consent", "until as a number", {"until": 0}),
    bad("consent", "until as a date-time", {"until": "2027-01-31T00:00:00Z"}),
    good("check-now", "no reason", {}),
    good("check-now", "a reason", {"reason": "customer called"}),
    bad("check-now", "empty reason", {"reason": ""}),
    bad("check-now", "reason as a number", {"reason": 5}),
    bad("check-now", "unknown field", {"urgent": True}),
    good("priority", "vip", {"tier": "vip", "reason": "complaint"}),
    bad("priority", "no tier", {}),
    bad("priority", "tier 5", {"tier": 5}),
    bad("priority", "empty tier", {"tier": ""}),
    bad("priority", "unknown field", {"tier": "vip", "until": "2027-01-31"}),
    good("exceptions-changed", "two open", {
        "open": 2, "as_of": "2026-12-01T09:00:00Z",
        "latest": [{"id": 7, "kind": "order_stuck", "severity": "high",
                    "raised_at": "2026-12-01T08:00:00Z"}],
    }),
    good("exceptions-changed", "none open", {"open": 0, "as_of": "2026-12-01T09:00:00Z"}),
    bad("exceptions-changed", "negative count", {"open": -1, "as_of": "2026-12-01T09:00:00Z"}),
    bad("exceptions-changed", "count as text", {"open": "2", "as_of": "2026-12-01T09:00:00Z"}),
    bad("exceptions-changed", "as_of without zone", {"open": 0, "as_of": "2026-12-01T09:00:00"}),
]  # fmt: skip

SHIPPED = {
    "type": "shipped",
    "shipment_id": "A-1-S1",
    "carrier": "UPS",
    "tracking_number": "1Z999AA1012345678",
    "shipped_at": "2026-12-01T09:00:00Z",
}
SHORT_PICK = {
    "type": "short_pick",
    "shipment_id": "A-1-S1",
    "lines": [{"line_id": "1", "found": 1}],
    "reported_at": "2026-12-01T09:00:00Z",
}
DELIVERED = {"type": "delivered", "shipment_id": "A-1-S1", "delivered_at": "2026-12-03T15:00:00Z"}
FULFILMENT_CASES = [
    good("fulfilment-report", "shipped", SHIPPED),
    good("fulfilment-report", "shipped with an estimate",
         {**SHIPPED, "estimated_delivery": "2026-12-04"}),
    good("fulfilment-report", "short pick", SHORT_PICK),
    good("fulfilment-report", "nothing found", {**SHORT_PICK, "lines": [{"line_id": "1",
                                                                           "found": 0}]}),
    good("fulfilment-report", "delivered", DELIVERED),
    bad("fulfilment-report", "no type", {k: v for k, v in SHIPPED.items() if k != "type"}),
    bad("fulfilment-report", "unknown type", {**SHIPPED, "type": "lost"}),
    bad("fulfilment-report", "no tracking number",
        {k: v for k, v in SHIPPED.items() if k != "tracking_number"}),
    bad("fulfilment-report", "empty carrier", {**SHIPPED, "carrier": ""}),
    bad("fulfilment-report", "shipped_at without zone",
        {**SHIPPED, "shipped_at": "2026-12-01T09:00:00"}),
    bad("fulfilment-report", "found -1", {**SHORT_PICK, "lines": [{"line_id": "1",
                                                                     "found": -1}]}),
    bad("fulfilment-report", 'found "1"', {**SHORT_PICK, "lines": [{"line_id": "1",
                                                                      "found": "1"}]}),
    bad("fulfilment-report", "no lines", {**SHORT_PICK, "lines": []}),
    bad("fulfilment-report", "unknown field", {**DELIVERED, "signed_by": "J. Doe"}),
    service_only("fulfilment-report", "estimate before shipping",
                 {**SHIPPED, "estimated_delivery": "2026-11-30"},
                 "estimated_delivery is not before the day of shipped_at"),
    service_only("fulfilment-report", "a line twice",
                 {**SHORT_PICK, "lines": [{"line_id": "1", "found": 1},
                                          {"line_id": "1", "found": 0}]},
                 "a short_pick names each line once"),
    good("fulfilment-shipped", "shipped", SHIPPED),
    bad("fulfilment-shipped", "a short pick", SHORT_PICK),
    good("fulfilment-short-pick", "short pick", SHORT_PICK),
    bad("fulfilment-short-pick", "delivered", DELIVERED),
    good("fulfilment-delivered", "delivered", DELIVERED),
    bad("fulfilment-delivered", "delivered_at as a number", {**DELIVERED, "delivered_at": 0}),
]  # fmt: skip

FUTURE_ALLOTMENT = {
    "line_id": "1",
    "sku": "KTP",
    "quantity": 2,
    "location": "DC",
    "source": "future",
    "expected_date": "2026-12-10",
    "receipt_id": "PO-7",
}
RELEASE = {
    "order_id": "A-1",
    "shipments": [
        {
            "kind": "future",
            "location": "DC",
            "expected_date": "2026-12-10",
            "allotments": [FUTURE_ALLOTMENT],
        }
    ],
    "lines": [{"line_id": "1", "sku": "KTP", "released": 2, "backordered": 3, "cancelled": 0}],
    "parent_status": "backordered",
}
ALLOTMENT = {"pass_id": "p-1", "release": RELEASE}


def allotment(*edits: tuple[str, Any]) -> dict[str, Any]:
    return changed(ALLOTMENT, *edits)


ALLOTMENT_CASES = [
    good("allotment", "a future shipment", ALLOTMENT),
    good("allotment", "receipt news only", {
        "pass_id": "p-1", "receipts": [{"receipt_id": "PO-7", "status": "slipped"}],
    }),
    bad("allotment", "no pass id", allotment(("pass_id", DELETE))),
    bad("allotment", "receipt status lost", {
        "pass_id": "p-1", "receipts": [{"receipt_id": "PO-7", "status": "lost"}],
    }),
    bad("allotment", 'released "2"', allotment(("release.lines.0.released", "2"))),
    bad("allotment", "allotted quantity 0", allotment(
        ("release.shipments.0.allotments.0.quantity", 0),
    )),
    bad("allotment", "expected date as a number", allotment(
        ("release.shipments.0.expected_date", 1_800_000_000),
    )),
    bad("allotment", "shipment kind drone", allotment(("release.shipments.0.kind", "drone"))),
    service_only("allotment", "allotted quantity 2.0", allotment(
        ("release.shipments.0.allotments.0.quantity", 2.0),
    ), INTEGERS),
    service_only("allotment", "a future shipment without a date", allotment(
        ("release.shipments.0.expected_date", None),
    ), "a future shipment, and only a future one, has an expected_date"),
    service_only("allotment", "reassigned while units wait", allotment(
        ("release.parent_status", "reassigned"),
    ), "reassigned` exactly when no line stays backordered"),
]  # fmt: skip

RECEIPT = {"event_id": "e-1", "type": "receipt", "sku": "KTP", "location": "DC", "quantity": 5}
EVENTS: list[dict[str, Any]] = [
    RECEIPT,
    {"event_id": "e-2", "type": "adjustment", "sku": "KTP", "location": "DC", "delta": -3,
     "reason": "count", "occurred_at": "2026-11-20T10:00:00+01:00"},
    {"event_id": "e-3", "type": "future_receipt", "receipt_id": "PO-7", "sku": "KTP",
     "location": "DC", "quantity": 25, "expected_date": "2026-12-10"},
    {"event_id": "e-4", "type": "future_receipt_update", "receipt_id": "PO-7", "quantity": 30},
    {"event_id": "e-5", "type": "future_receipt_cancel", "receipt_id": "PO-7"},
    {"event_id": "e-6", "type": "future_receipt_received", "receipt_id": "PO-7"},
    {"event_id": "e-7", "type": "future_receipt_close", "receipt_id": "PO-7", "reason": "short"},
    {"event_id": "e-8", "type": "location", "location_id": "DC", "rank": 0, "pickup": False},
    {"event_id": "e-9", "type": "product", "sku": "KTP", "insert": False},
]  # fmt: skip


def receipt(*edits: tuple[str, Any]) -> dict[str, Any]:
    return changed(RECEIPT, *edits)


INVENTORY_CASES = [
    *(good("inventory-event", f"a {e['type']} event", e) for e in EVENTS),
    bad("inventory-event", 'quantity "2"', receipt(("quantity", "2"))),
    bad("inventory-event", "quantity 0", receipt(("quantity", 0))),
    bad("inventory-event", "unknown type", receipt(("type", "teleport"))),
    bad("inventory-event", "no type", receipt(("type", DELETE))),
    bad("inventory-event", "no event id", receipt(("event_id", DELETE))),
    bad("inventory-event", "unknown field", receipt(("batch", "b-1"))),
    bad("inventory-event", "a field of another type", receipt(("receipt_id", "PO-7"))),
    bad("inventory-event", 'rank "1"', changed(EVENTS[7], ("rank", "1"))),
    bad("inventory-event", "occurred_at as a number", receipt(("occurred_at", 1_700_000_000))),
    bad("inventory-event", "expected_date as a number", changed(EVENTS[2], ("expected_date", 0))),
    bad("inventory-event", 'pickup "yes"', changed(EVENTS[7], ("pickup", "yes"))),
    good("inventory-event", "a pre-order product", changed(
        EVENTS[8], ("preorder_release", "2027-03-01"), ("preorder_end", "2027-02-15"),
    )),
    bad("inventory-event", "preorder_release as a date-time",
        changed(EVENTS[8], ("preorder_release", "2027-03-01T00:00:00Z"))),
    service_only("inventory-event", "pre-orders end after the release", changed(
        EVENTS[8], ("preorder_release", "2027-03-01"), ("preorder_end", "2027-03-02"),
    ), "a product's preorder_end is before its preorder_release"),
    service_only("inventory-event", "quantity 2.0", receipt(("quantity", 2.0)), INTEGERS),
    service_only("inventory-event", "delta 0", changed(EVENTS[1], ("delta", 0)),
                 "an adjustment's delta is not 0"),
    service_only("inventory-event", "an update that changes nothing",
                 changed(EVENTS[3], ("quantity", DELETE)),
                 "carries an expected_date or a quantity"),
    good("allocator-inventory", "every kind of event", {"events": EVENTS}),
    bad("allocator-inventory", "no events", {"events": []}),
    bad("allocator-inventory", "no events field", {}),
    bad("allocator-inventory", "a bad event", {"events": [receipt(("quantity", -1))]}),
    bad("allocator-inventory", "events as an object", {"events": RECEIPT}),
    service_only("allocator-inventory", "an event id twice", {"events": [RECEIPT, RECEIPT]},
                 "event ids are unique within the batch"),
    good("run-check", "a full pass", {}),
    good("run-check", "some skus and orders", {
        "skus": ["KTP"], "order_ids": ["A-1"], "reason": "operator",
    }),
    bad("run-check", "skus as a string", {"skus": "KTP"}),
    bad("run-check", "an empty sku", {"skus": [""]}),
    bad("run-check", "empty reason", {"reason": ""}),
    bad("run-check", "unknown field", {"site": "default"}),
]  # fmt: skip

CASES = [*ORDER_CASES, *MESSAGE_CASES, *FULFILMENT_CASES, *ALLOTMENT_CASES, *INVENTORY_CASES]


@pytest.mark.parametrize("case", [c.param for c in CASES])
def test_schema_and_model_judge_each_example_alike(case: Case) -> None:
    text = json.dumps(case.data)
    schema_errors = [e.message for e in validator(case.payload).iter_errors(case.data)]
    model = model_accepts(case.payload, text)
    if case.service_only is None:
        assert (not schema_errors, model) == (case.valid, case.valid), schema_errors
    else:
        assert (schema_errors, model) == ([], False)
        assert case.service_only in public_schema(case.payload)["description"]


def test_the_table_covers_every_payload_other_systems_send() -> None:
    sent_to_us = {name for name, p in PAYLOADS.items() if not p.sent}
    judged = {c.payload for c in CASES}
    assert sent_to_us <= judged
    assert {c.payload for c in CASES if not c.valid} == judged


@pytest.mark.parametrize(
    ("name", "path", "value"),
    [
        ("order", "placed_at", 1_700_000_000),
        ("order", "stated_ship_date", 0),
        ("order", "lines.0.quantity", "5"),
        ("order", "lines.0.allow_backorder", "yes"),
        ("allotment", "release.shipments.0.expected_date", "2026-12-10T00:00:00Z"),
    ],
)
def test_what_only_earlier_releases_accepted_still_decodes_leniently(
    name: str, path: str, value: Any
) -> None:
    """A history recorded before the contract was exact replays: the lenient context takes
    the old forms the exact contract refuses."""
    data = changed({"order": ORDER, "allotment": ALLOTMENT}[name], (path, value))
    assert not model_accepts(name, json.dumps(data))
    assert model_accepts(name, json.dumps(data), **{LENIENT: True})


# -- what the service sends meets its schema -------------------------------------------------

NOW = dt.datetime(2026, 11, 25, 9, 30, tzinfo=dt.UTC)


def _shipment() -> BookedShipment:
    return BookedShipment(
        shipment_id="A-1-S1",
        kind=ShipmentKind.FUTURE,
        status=ShipmentStatus.FUTURE,
        location="DC",
        expected_date=dt.date(2026, 12, 10),
        allotments=(Allotment.model_validate(FUTURE_ALLOTMENT),),
        amount=Decimal("20.00"),
        created_at=NOW,
    )


def _status() -> OrderStatus:
    placed = Order.model_validate(ORDER)
    book = waiting_book(placed)
    schedule = ScheduleState(accepted_at=NOW, ordered_at=placed.placed_at)
    return OrderStatus(
        order_id="A-1",
        order_number="M9681118",
        status=BackorderStatus.BACKORDERED,
        customer_tier="standard",
        order_value=placed.value,
        currency="USD",
        backordered_since=NOW,
        as_of=NOW + dt.timedelta(days=3),
        days_in_backorder=3,
        lines=line_statuses(book),
        shipments=(_shipment(),),
        payment=PaymentBook.from_order(placed, PaymentTiming.AT_SHIP),
        expected_ship_date=dt.date(2026, 12, 10),
        schedule=summary(schedule, BackorderPolicy()),
    )


def _summary() -> Any:
    placed = Order.model_validate(ORDER)
    book = waiting_book(placed)
    return order_summary(placed, book, BackorderStatus.CANCELLED, None, 4, NOW)


def _sent() -> list[tuple[str, BaseModel]]:
    outcome = EventOutcome(event_id="e-1", status=EventStatus.APPLIED)
    position = StockPosition(sku="KTP", location="DC", on_hand=5, reserved=2)
    part = CancelledPart(
        line_id="1", sku="KTP", from_backorder=1, from_future=(("A-1-S1", 2),), amount=Decimal(30)
    )
    return [
        ("cancel-result", CancelResult(cancelled=(part,), voided=Decimal("30.00"))),
        ("consent-result", ConsentResult(ftc_state=FtcState.NONE, consented_until=NOW.date())),
        ("priority-result", PriorityResult(previous_tier="standard", tier="vip")),
        ("check-result", CheckResult(skus=("KTP",), backordered_units=3)),
        (
            "fulfilment-result",
            FulfilmentAnswer(
                shipment=_shipment(),
                changed=True,
                order_status=BackorderStatus.AWAITING_RECEIPT,
            ),
        ),
        ("status", _status()),
        ("summary", _summary()),
        ("apply-inventory-result", FeedResult(pass_id="p-1", outcomes=(outcome,))),
        (
            "run-check-result",
            PassOutcome(
                report=PassReport(pass_id="p-1", site="default", positions=(position,)),
                delivery=DeliveryReport(delivered=1, gone=("A-9",)),
            ),
        ),
        (
            "allocator-status",
            AllocatorStatus(
                site="default",
                passes=4,
                pending_events=0,
                pending_check=False,
                batch_window=dt.timedelta(seconds=2),
                recent=(),
            ),
        ),
    ]


def test_every_payload_the_service_sends_has_an_example_here() -> None:
    assert {n for n, _ in _sent()} == {n for n, p in PAYLOADS.items() if p.sent}


@pytest.mark.parametrize(("name", "sent"), _sent(), ids=[n for n, _ in _sent()])
def test_what_the_service_sends_meets_its_schema_with_every_field(
    name: str, sent: BaseModel
) -> None:
    data = json.loads(sent.model_dump_json())
    assert [e.message for e in validator(name).iter_errors(data)] == []
    assert set(public_schema(name)["required"]) == set(data)  # every field, defaults too
    assert adapter(name).validate_json(sent.model_dump_json()) == sent


def test_money_in_a_result_is_a_decimal_string() -> None:
    result = json.loads(CancelResult(cancelled=(), refunded=Decimal("5.50")).model_dump_json())
    assert validator("cancel-result").is_valid(result)
    assert not validator("cancel-result").is_valid({**result, "refunded": 5.5})
    assert not model_accepts("cancel-result", json.dumps({**result, "refunded": 5.5}))


# -- the command -----------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`backorder schema ...`: (exit code, stdout, stderr)."""
    code = starter.main(["schema", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_backorder_schema_prints_lists_and_writes_every_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "order")
    assert (code, err) == (0, "") and json.loads(out) == public_schema("order")
    code, out, err = run(capsys, "inventory-batch")  # an earlier name of allocator-inventory
    assert (code, err) == (0, "")
    assert json.loads(out)["$id"] == "urn:backorder:schema:allocator-inventory"
    code, out, err = run(capsys, "--list")
    assert (code, err) == (0, "")
    assert [line.split()[0] for line in out.splitlines()] == list(PAYLOADS)
    code, out, err = run(capsys, "--all", str(tmp_path / "schemas"))
    assert (code, err) == (0, "")
    written = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert written == sorted(f"{name}.schema.json" for name in PAYLOADS)
    order = json.loads((tmp_path / "schemas" / "order.schema.json").read_text())
    assert order == public_schema("order")
    code, out, err = run(capsys, "nonsense")
    assert (code, out) == (2, "")
    assert "Invalid value for '[NAME]': 'nonsense' is not one of 'order', " in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "give NAME, --list or --all"),
        (["order", "--list"], "NAME and --list cannot be given together"),
        (["--list", "--all", "DIR"], "--list and --all cannot be given together"),
    ],
)
def test_backorder_schema_takes_exactly_one_of_name_list_all(
    argv: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *(str(tmp_path / "schemas") if a == "DIR" else a for a in argv))

    assert (code, out) == (2, "")
    assert err.startswith("Usage: backorder schema") and err.endswith(f"Error: {expected}\n")
    assert not (tmp_path / "schemas").exists()


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        (None, True),  # the order's own number, as every shipment recorded before
        ("M9681118-001", True),
        ("M9681118-backorder", True),
        ("N" * 200 + "-backorder", True),  # the longest order number and the longest suffix
        ("N" * 211, False),
        (" M9681118-001", False),
        ("", False),
    ],
)
def test_a_shipment_shows_its_split_number_in_status_and_summary(
    number: str | None, valid: bool
) -> None:
    shipment = json.loads(_shipment().model_dump_json())
    shipment["order_number"] = number
    status = json.loads(_status().model_dump_json())
    status["shipments"] = [shipment]
    ended = json.loads(_summary().model_dump_json())
    ended["shipments"] = [shipment]
    for name, data in (("status", status), ("summary", ended)):
        errors = list(validator(name).iter_errors(data))
        assert (errors == []) is valid, (name, errors)
        assert model_accepts(name, json.dumps(data)) is valid, name
