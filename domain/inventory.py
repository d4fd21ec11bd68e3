"""Inventory feed events: what the warehouse, the ERP or an operator tells us about stock.

The public contract of the feed (`backorder schema inventory-event`). Every event carries an
`event_id` chosen by the sender: feeds deliver at least once, and an id seen before is applied
once. The allocator applies events in one transaction with the allocation pass they trigger, so
new stock is never visible to a new order before the orders already waiting for it.

An event id is an idempotency key: the same event sent again is a `duplicate`, but the same id
with other content (`id_conflict`) is rejected, naming what differs, so a change is never
silently dropped. Content is everything but the id and `occurred_at` (when it happened at the
source: audit metadata that a feed re-exporting an event may stamp again; the ledger does not
act on it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from domain.contract import (
    JSON_INTEGER,
    Contract,
    Count,
    Day,
    Flag,
    Identifier,
    Instant,
    lenient,
    mark_lenient,
    require_unique,
)

Units = Annotated[int, JSON_INTEGER, Field(gt=0, le=10_000_000)]
Reason = Annotated[str, Field(min_length=1, max_length=500)]
MAX_EVENTS_PER_BATCH = 1000
"""Events per signal or update: keeps each message well under Temporal's payload limit."""


class _Event(Contract):
    event_id: Identifier
    """The sender's id of this event; the same id again is a redelivery, applied once."""
    occurred_at: Instant | None = None
    """When it happened at the source (kept for the audit trail)."""

    @model_validator(mode="wrap")
    @classmethod
    def _note_inexact(
        cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo
    ) -> Self:
        """Decoded leniently (a payload only the rules of earlier releases accept), the event
        records what the exact contract refuses in it (`contract_problems`), so that the
        allocator can refuse it alone and apply the exact events of its batch."""
        event = handler(data)
        if lenient(info):
            try:
                cls.model_validate(data)
            except ValidationError as err:
                mark_lenient(event, validation_reason(err))
        return event


class StockReceived(_Event):
    """Units arrived at a location (a delivery, a return to stock, a transfer in)."""

    type: Literal["receipt"] = "receipt"
    sku: Identifier
    location: Identifier
    quantity: Units
    reason: Reason = "receipt"


class StockAdjusted(_Event):
    """A count correction: positive adds units, negative removes them. A negative adjustment
    that would leave fewer units on hand than orders hold is rejected, never applied in part."""

    type: Literal["adjustment"] = "adjustment"
    sku: Identifier
    location: Identifier
    delta: Annotated[int, JSON_INTEGER, Field(ge=-10_000_000, le=10_000_000)]
    reason: Reason

    @model_validator(mode="after")
    def _changes_something(self) -> StockAdjusted:
        if self.delta == 0:
            raise ValueError("an adjustment's delta must not be 0")
        return self


class FutureReceiptPlanned(_Event):
    """A purchase order or inbound transfer: units expected at a location on a date (no date:
    they exist but cannot be promised yet)."""

    type: Literal["future_receipt"] = "future_receipt"
    receipt_id: Identifier
    sku: Identifier
    location: Identifier
    quantity: Units
    expected_date: Day | None = None


class FutureReceiptUpdated(_Event):
    """A new expected date and/or quantity for an open future receipt."""

    type: Literal["future_receipt_update"] = "future_receipt_update"
    receipt_id: Identifier
    expected_date: Day | None = None
    quantity: Units | None = None
    """The purchase order's whole quantity, units already received included."""

    @model_validator(mode="after")
    def _changes_something(self) -> FutureReceiptUpdated:
        if self.expected_date is None and self.quantity is None:
            raise ValueError("a future receipt update needs an expected_date or a quantity")
        return self


class FutureReceiptCancelled(_Event):
    """The purchase order will not arrive; orders promised its units wait again."""

    type: Literal["future_receipt_cancel"] = "future_receipt_cancel"
    receipt_id: Identifier
    reason: Reason = "purchase order cancelled"


class FutureReceiptReceived(_Event):
    """Units of the future receipt arrived: they become stock on hand. A receipt may come in
    parts: each part turns the promises of the orders it covers in full (first promised, first
    served) into stock and their future shipments ready; the rest stays open with its date and
    keeps its promises. More than is still to come is rejected (`over_receipt`)."""

    type: Literal["future_receipt_received"] = "future_receipt_received"
    receipt_id: Identifier
    quantity: Units | None = None
    """Units received this time; None: everything still to come."""


class FutureReceiptClosed(_Event):
    """No more units of the future receipt will come (a purchase order closed short, after
    none, some or most of it arrived): orders promised units of the open rest wait again."""

    type: Literal["future_receipt_close"] = "future_receipt_close"
    receipt_id: Identifier
    reason: Reason = "purchase order closed short"


class LocationDefined(_Event):
    """A store or warehouse (created, or its rank and pickup switch changed)."""

    type: Literal["location"] = "location"
    location_id: Identifier
    rank: Count = 0
    pickup: Flag = False


class ProductDefined(_Event):
    """A product's backorder switches (created or changed); stock needs the product first."""

    type: Literal["product"] = "product"
    sku: Identifier
    backorderable: Flag = True
    future_inventory: Flag = True
    insert: Flag = False
    preorder_release: Day | None = None
    """On pre-order until this day: orders taken before it wait for it, even when stock
    arrives earlier (none: not a pre-order)."""
    preorder_end: Day | None = None
    """The last day pre-orders are taken; after it the product takes no backorder until its
    release (none: until the release)."""

    @model_validator(mode="after")
    def _window_before_release(self) -> ProductDefined:
        if self.preorder_end is not None and (
            self.preorder_release is None or self.preorder_end >= self.preorder_release
        ):
            raise ValueError("preorder_end needs a preorder_release after it")
        return self


InventoryEvent = Annotated[
    StockReceived
    | StockAdjusted
    | FutureReceiptPlanned
    | FutureReceiptUpdated
    | FutureReceiptCancelled
    | FutureReceiptReceived
    | FutureReceiptClosed
    | LocationDefined
    | ProductDefined,
    Field(discriminator="type"),
]
EVENT_TYPES: tuple[str, ...] = tuple(
    cls.model_fields["type"].default for cls in get_args(get_args(InventoryEvent)[0])
)
"""The `type` of every event, in the order of the union."""


class InventoryBatch(Contract):
    """Events to apply in one allocation pass (the allocator's `inventory` signal and
    `apply_inventory` update)."""

    events: Annotated[
        tuple[InventoryEvent, ...], Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)
    ]

    @model_validator(mode="after")
    def _ids_unique(self) -> InventoryBatch:
        require_unique("event ids in a batch", (e.event_id for e in self.events), shown=10)
        return self


class EventStatus(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    """Applied before (same event id): nothing changed this time."""
    REJECTED = "rejected"
    """Not applied; `reason` says why. The same id may be sent again once fixed."""


class Rejection(StrEnum):
    UNKNOWN_SKU = "unknown_sku"
    UNKNOWN_LOCATION = "unknown_location"
    UNKNOWN_RECEIPT = "unknown_receipt"
    RECEIPT_CLOSED = "receipt_closed"
    """The future receipt was already received in full, closed or cancelled."""
    OVER_RECEIPT = "over_receipt"
    """More units than the future receipt still has to come: a receipt above its open
    quantity, or a new quantity that leaves nothing to come after what was received."""
    RECEIPT_EXISTS = "receipt_exists"
    """A future receipt with this id exists for another sku or location."""
    WOULD_TAKE_RESERVED = "would_take_reserved"
    """The change would leave fewer units than orders hold."""
    MALFORMED = "malformed"
    """Not a valid event (bad JSON, a missing or wrong field): the line is named. Also an
    event of an `inventory` signal that only the rules of earlier releases accept (a quantity
    of `"2"`): the field is named."""
    ID_CONFLICT = "id_conflict"
    """The event id was used before for another event (applied, or waiting for the pass):
    the reason names the fields that differ. Send a new event with a new id."""


class EventOutcome(Contract):
    event_id: str
    status: EventStatus
    rejection: Rejection | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not EventStatus.REJECTED


class StockPosition(Contract):
    """One stock row after a pass, for reports: units on hand and the part orders hold."""

    sku: Identifier
    location: Identifier
    on_hand: Count
    reserved: Count


class ReceiptStatus(StrEnum):
    """What became of a future receipt, as told to the orders promised its units."""

    ARRIVED = "arrived"
    """Every unit the order was promised from it is on hand now."""
    CANCELLED = "cancelled"
    """The units the order was promised from it will never come (cancelled, or closed short)."""
    SLIPPED = "slipped"
    """Now expected later than promised (or no longer dated)."""


class ReceiptNotice(Contract):
    """News for one order about a future receipt its units were promised from."""

    order_id: Identifier
    receipt_id: Identifier
    status: ReceiptStatus


def validation_reason(err: ValidationError, tag: object = None) -> str:
    """pydantic's errors as `field: message; ...`, without the union's tag (`tag`, the event's
    `type`) in the location."""
    parts = []
    for e in err.errors(include_url=False):
        loc = list(e["loc"])
        if loc and isinstance(tag, str) and loc[0] == tag:
            loc = loc[1:]
        field = ".".join(str(p) for p in loc)
        if e["type"] == "union_tag_not_found":
            field, msg = "type", f"missing (one of {', '.join(EVENT_TYPES)})"
        elif e["type"] == "union_tag_invalid":
            field = "type"
            msg = f"unknown event type {tag!r} (one of {', '.join(EVENT_TYPES)})"
        else:
            msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {msg}" if field else msg)
    return "; ".join(parts)


# -- an event id used again ----------------------------------------------------------------------

NOT_CONTENT = frozenset({"event_id", "occurred_at"})
"""Fields of an event's JSON that are not what it says (see the module)."""
_WHAT = {
    "receipt": "a receipt of {quantity} x {sku} at {location}",
    "adjustment": "an adjustment of {delta} x {sku} at {location}",
    "future_receipt": "future receipt {receipt_id} of {quantity} x {sku} at {location}",
    "future_receipt_update": "an update of future receipt {receipt_id}",
    "future_receipt_cancel": "a cancel of future receipt {receipt_id}",
    "future_receipt_received": "a delivery of future receipt {receipt_id}",
    "future_receipt_close": "a close of future receipt {receipt_id}",
    "location": "location {location_id}",
    "product": "product {sku}",
}
"""How a message names an event, from its JSON."""


def id_conflict(
    before: Mapping[str, Any], event: InventoryEvent, known: str = "was applied before"
) -> str | None:
    """Why `event` may not reuse the id of `before` (the JSON of the event first sent with the
    id), naming each field that differs; None when it says the same (a redelivery). A field
    only one of them has (one a later release added) is not compared, and `before` without a
    type (recorded before payloads were kept) is taken as the same."""
    if "type" not in before:
        return None
    now = event.model_dump(mode="json")
    lead = f"event id {event.event_id} {known} as {_what(before)}"
    if before["type"] != now["type"]:
        return f"{lead}; this one is {_what(now)}"
    differ = [k for k, v in now.items() if k not in NOT_CONTENT and k in before and before[k] != v]
    if not differ:
        return None
    changes = ", ".join(f"{k} {_json(now[k])} (not {_json(before[k])})" for k in differ)
    return f"{lead}; this one has {changes}"


def _what(payload: Mapping[str, Any]) -> str:
    """`a receipt of 5 x KTP at DC`: an event's JSON in a few words."""
    kind = str(payload.get("type"))
    try:
        return _WHAT[kind].format_map(payload)
    except KeyError:  # a type or field this release does not know
        return f"a {kind} event"


def _json(value: object) -> str:
    return json.dumps(value, default=str)[:60]
