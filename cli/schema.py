"""`backorder schema NAME`: the JSON Schema of every payload other systems exchange with us.

Order systems and inventory feeds talk to the workflows through Temporal in plain JSON, in any
language, so these schemas are the integration contract: Draft 2020-12 and nothing else (no
OpenAPI `discriminator`, no pydantic keywords), money a decimal string, counts integers,
times RFC 3339 strings, enums listed, unknown fields refused. A payload we accept is described
as the service validates it; one we send (a result, a query's answer) as the service writes it,
every field present. Rules a schema cannot state (unique ids, sums) are named in its
description.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import click
from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from activities.contracts import AllocationCheck
from cli.app import command, flag
from cli.errors import CliError
from domain.contract import DAY_SCHEMA, INSTANT_SCHEMA
from domain.fulfilment import FulfilmentReport, ShipmentDelivered, ShipmentShipped, ShortPick
from domain.inventory import InventoryBatch, InventoryEvent
from domain.order import Order
from workflows.allocator_messages import AllocatorStatus, FeedResult, PassOutcome
from workflows.messages import (
    AllotmentSignal,
    BackorderSummary,
    CancelRequest,
    CancelResult,
    CheckNow,
    CheckResult,
    ConsentResult,
    ConsentSignal,
    FulfilmentAnswer,
    OpenExceptions,
    OrderStatus,
    PriorityChange,
    PriorityResult,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX = "urn:backorder:schema:"
ORDER = "BackorderWorkflow (`backorder-<order id>`)"
ALLOCATOR = "AllocatorWorkflow (`allocator-<site>`)"

INTEGERS = (
    "Counts are JSON integers written without a fraction or exponent: the service refuses 2.0, "
    "which JSON Schema cannot tell from 2."
)
ORDER_RULES = (
    "line ids are unique within the order",
    "payment.amount is at most the order's value (the sum of quantity x unit_price)",
    "unit prices and payment.amount carry at most the currency's minor units (USD 2 decimals, "
    "JPY none, KWD 3; trailing zeros aside)",
    "placed_at lies between 2000-01-01T00:00:00Z and 9000-01-01T00:00:00Z, and at most an hour "
    "after the moment the order enters the service",
    "payment.expires_at is after payment.authorised_at",
)
ALLOTMENT_RULES = (
    "a transfer shipment, and only a transfer, has a destination",
    "a future shipment, and only a future one, has an expected_date, shared by its allotments",
    "a shipment's allotments are of its location, from current stock (future stock for a "
    "future shipment)",
    "release.parent_status is `reassigned` exactly when no line stays backordered",
)
EVENT_RULES = (
    "an adjustment's delta is not 0",
    "a future_receipt_update carries an expected_date or a quantity",
    "a product's preorder_end is before its preorder_release",
)
BATCH_RULES = ("event ids are unique within the batch", *EVENT_RULES)
REPORT_RULES = (
    "a short_pick names each line once",
    "estimated_delivery is not before the day of shipped_at",
    'the order must have been accepted with fulfilment_reports = "shipped"; the shipment '
    "must be the order's and in a state the report can move (ready or transfer to shipped or "
    "short-picked, shipped to delivered)",
)


@dataclass(frozen=True)
class Payload:
    """One public payload: what `backorder schema NAME` prints for NAME."""

    name: str
    type: Any
    """The model (or union) the service validates the payload with, or writes it from."""
    workflow: str
    message: str
    """What carries it to or from the workflow: `signal cancel, update cancel_order`."""
    sent: bool = False
    """Written by the service (a result, a query's answer): described as it is written."""
    rules: tuple[str, ...] = ()
    """What the service checks that JSON Schema cannot express."""
    title: str | None = None
    """Default: the model's name."""

    @property
    def mode(self) -> JsonSchemaMode:
        return "serialization" if self.sent else "validation"

    @property
    def role(self) -> str:
        return f"{self.workflow}: {self.message}"


def accepted(
    name: str,
    type_: Any,
    workflow: str,
    message: str,
    rules: tuple[str, ...] = (),
    title: str | None = None,
) -> Payload:
    """A payload other systems send us."""
    return Payload(name, type_, workflow, message, rules=rules, title=title)


def answered(name: str, type_: Any, workflow: str, message: str) -> Payload:
    """A payload the service sends back."""
    return Payload(name, type_, workflow, message, sent=True)


def _registry(*payloads: Payload) -> dict[str, Payload]:
    return {p.name: p for p in payloads}


PAYLOADS = _registry(
    accepted("order", Order, ORDER, "start input", rules=ORDER_RULES),
    accepted("allotment", AllotmentSignal, ORDER, "signal allotment", rules=ALLOTMENT_RULES),
    accepted("cancel", CancelRequest, ORDER, "signal cancel, update cancel_order"),
    answered("cancel-result", CancelResult, ORDER, "result of update cancel_order"),
    accepted("consent", ConsentSignal, ORDER, "signal consent, update give_consent"),
    answered("consent-result", ConsentResult, ORDER, "result of update give_consent"),
    accepted("check-now", CheckNow, ORDER, "signal check_now, update request_check"),
    answered("check-result", CheckResult, ORDER, "result of update request_check"),
    accepted("priority", PriorityChange, ORDER, "signal set_priority, update change_priority"),
    answered("priority-result", PriorityResult, ORDER, "result of update change_priority"),
    accepted(
        "exceptions-changed",
        OpenExceptions,
        ORDER,
        "signal exceptions_changed (what is open for the order on the exception queue)",
    ),
    accepted(
        "fulfilment-report",
        FulfilmentReport,
        ORDER,
        "update report_fulfilment (one of shipped, short_pick, delivered, told apart by type)",
        rules=REPORT_RULES,
        title="FulfilmentReport",
    ),
    accepted("fulfilment-shipped", ShipmentShipped, ORDER, "update report_fulfilment"),
    accepted("fulfilment-short-pick", ShortPick, ORDER, "update report_fulfilment"),
    accepted("fulfilment-delivered", ShipmentDelivered, ORDER, "update report_fulfilment"),
    answered("fulfilment-result", FulfilmentAnswer, ORDER, "result of update report_fulfilment"),
    answered("status", OrderStatus, ORDER, "answer of query status"),
    answered("summary", BackorderSummary, ORDER, "workflow result"),
    accepted(
        "allocator-inventory",
        InventoryBatch,
        ALLOCATOR,
        "signal inventory, update apply_inventory",
        rules=BATCH_RULES,
    ),
    answered("apply-inventory-result", FeedResult, ALLOCATOR, "result of update apply_inventory"),
    accepted("run-check", AllocationCheck, ALLOCATOR, "signal check, update run_check"),
    answered("run-check-result", PassOutcome, ALLOCATOR, "result of update run_check"),
    answered("allocator-status", AllocatorStatus, ALLOCATOR, "answer of query status"),
    accepted(
        "inventory-event",
        InventoryEvent,
        ALLOCATOR,
        "one of the events of allocator-inventory; a line of `backorder inventory load`",
        rules=EVENT_RULES,
        title="InventoryEvent",
    ),
)
"""Every public payload by name, after its message. Add one line per payload."""
ALIASES = {"inventory-batch": "allocator-inventory"}
"""Names of earlier releases."""

STANDARD_KEYWORDS = frozenset(
    {
        # core
        *("$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor"),
        *("$vocabulary", "$comment", "$defs"),
        # applicator and unevaluated
        *("prefixItems", "items", "contains", "additionalProperties", "properties"),
        *("patternProperties", "dependentSchemas", "propertyNames", "if", "then", "else"),
        *("allOf", "anyOf", "oneOf", "not", "unevaluatedItems", "unevaluatedProperties"),
        # validation
        *("type", "const", "enum", "multipleOf", "maximum", "exclusiveMaximum", "minimum"),
        *("exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems"),
        *("uniqueItems", "maxContains", "minContains", "maxProperties", "minProperties"),
        *("required", "dependentRequired"),
        # meta-data, format, content
        *("title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples"),
        *("format", "contentEncoding", "contentMediaType", "contentSchema"),
    }
)
"""The keywords of JSON Schema Draft 2020-12's vocabularies: all a schema of ours may use."""
_SUBSCHEMA = frozenset(
    {"items", "contains", "additionalProperties", "propertyNames", "if", "then", "else", "not"}
    | {"unevaluatedItems", "unevaluatedProperties", "contentSchema"}
)
_SUBSCHEMA_LISTS = frozenset({"prefixItems", "allOf", "anyOf", "oneOf"})
_SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs"})


PYDANTIC_KEYWORDS = {
    "gt": "exclusiveMinimum",
    "ge": "minimum",
    "lt": "exclusiveMaximum",
    "le": "maximum",
    "multiple_of": "multipleOf",
}
"""Constraints pydantic writes under its own names when a validator wraps the type (a count's
`JSON_INTEGER`), and their Draft 2020-12 keywords. Others (`max_digits`) are dropped: Money's
pattern says them."""
DECIMAL_SCHEMA = {
    "type": "string",
    "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
    "description": 'A decimal string such as "50.00".',
}


def standard(schema: Any) -> Any:
    """`schema` with only Draft 2020-12 keywords, at every depth: pydantic's own translated,
    the rest dropped (values such as `default`, `enum` or `const` are data, kept as they are).
    Descriptions (docstrings) are unwrapped: one line per paragraph."""
    if not isinstance(schema, dict):
        return schema  # a boolean schema
    kept: dict[str, Any] = {}
    for name, value in schema.items():
        key = PYDANTIC_KEYWORDS.get(name, name)
        if key not in STANDARD_KEYWORDS:
            continue
        if key == "description":
            value = re.sub(r"(?<!\n)\n(?!\n)", " ", value)
        elif key in _SUBSCHEMA:
            value = standard(value)
        elif key in _SUBSCHEMA_LISTS:
            value = [standard(s) for s in value]
        elif key in _SUBSCHEMA_MAPS:
            value = {k: standard(s) for k, s in value.items()}
        kept[key] = value
    return kept


class ContractSchema(GenerateJsonSchema):
    """Pydantic's generator, held to the contract: every date-time and date is an RFC 3339
    string (as `Instant` and `Day` validate), a decimal (a result's sum) a decimal string, a
    tagged union requires its tag (instead of OpenAPI's `discriminator`), and nothing but
    Draft 2020-12 keywords remain. Properties carry no generated titles (`Order Id`)."""

    def generate(self, schema: CoreSchema, mode: JsonSchemaMode = "validation") -> JsonSchemaValue:
        return cast(JsonSchemaValue, standard(super().generate(schema, mode)))

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        return dict(INSTANT_SCHEMA)

    def date_schema(self, schema: core_schema.DateSchema) -> JsonSchemaValue:
        return dict(DAY_SCHEMA)

    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        return dict(DECIMAL_SCHEMA)

    def tagged_union_schema(self, schema: core_schema.TaggedUnionSchema) -> JsonSchemaValue:
        union = super().tagged_union_schema(schema)
        tag = union.pop("discriminator", {}).get("propertyName")
        if tag is not None:
            union["required"] = [tag]
        return union

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _has_integers(schema: Any) -> bool:
    if isinstance(schema, list):
        return any(_has_integers(s) for s in schema)
    if not isinstance(schema, dict):
        return False
    return schema.get("type") == "integer" or _has_integers(list(schema.values()))


def _description(payload: Payload, schema: dict[str, Any]) -> str:
    """The model's own description, then where the payload travels and what only the service
    checks."""
    notes = [f"{payload.role}."]
    if not payload.sent and _has_integers(schema):
        notes.append(INTEGERS)
    if payload.rules:
        notes.append(f"The service also checks: {'; '.join(payload.rules)}.")
    return "\n\n".join(p for p in (schema.get("description"), " ".join(notes)) if p)


def public_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of the public payload `name` (or an earlier name of it)."""
    payload = PAYLOADS[ALIASES.get(name, name)]
    adapter: TypeAdapter[Any] = TypeAdapter(payload.type)
    body = adapter.json_schema(mode=payload.mode, schema_generator=ContractSchema)
    head = {
        "$schema": DRAFT,
        "$id": f"{ID_PREFIX}{payload.name}",
        "title": payload.title or body.get("title") or payload.name,
        "description": _description(payload, body),
    }
    return head | {k: v for k, v in body.items() if k not in head}


def _write_all(directory: Path) -> Iterable[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    for name in PAYLOADS:
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(public_schema(name), indent=2) + "\n")
        yield path


def cmd_schema(settings: Any, args: argparse.Namespace) -> None:
    """Print one schema or the list, or write them all (no settings needed)."""
    what_to_print(args)
    if args.list:
        for name, payload in PAYLOADS.items():
            print(f"{name:24} {payload.role}")
    elif args.all is not None:
        try:
            for path in _write_all(args.all):
                print(path)
        except OSError as err:
            raise CliError(f"cannot write the schemas to {args.all}: {err.strerror}") from None
    else:
        print(json.dumps(public_schema(args.name), indent=2))


def what_to_print(args: argparse.Namespace) -> None:
    """Exactly one of NAME, --list and --all: a usage error otherwise (exit 2)."""
    given = [
        shown
        for shown, value in (("NAME", args.name), ("--list", args.list), ("--all", args.all))
        if value not in (None, False)
    ]
    if len(given) > 1:
        raise click.UsageError(f"{' and '.join(given)} cannot be given together")
    if not given:
        raise click.UsageError("give NAME, --list or --all")


def schema_commands() -> list[click.Command]:
    """`schema NAME`, `schema --list`, `schema --all DIR`."""
    return [
        command(
            "schema",
            cmd_schema,
            "print the JSON Schema (Draft 2020-12) of a public payload",
            click.Argument(
                ["name"],
                required=False,
                type=click.Choice([*PAYLOADS, *ALIASES]),
                metavar="[NAME]",
                help="see --list",
            ),
            flag("--list", help="name every payload and its message"),
            click.Option(
                ["--all"],
                type=click.Path(path_type=Path),
                metavar="DIR",
                help="write DIR/NAME.schema.json for each",
            ),
        )
    ]
