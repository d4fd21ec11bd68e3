"""The order as the order system hands it to us: the public JSON contract.

Later versions may add optional fields; existing field names never change.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from domain.contract import (
    JSON_INTEGER,
    Currency,
    Day,
    Flag,
    Instant,
    lenient,
    minor_units_problem,
)
from domain.contract import Contract as Contract
from domain.contract import Identifier as Identifier
from domain.contract import Money as Money
from domain.contract import repeated as repeated
from domain.contract import require_unique as require_unique


class Customer(Contract):
    id: Identifier
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
    tier: Annotated[str, Field(min_length=1, max_length=50)] = "standard"


class FulfillmentType(StrEnum):
    SHIP_TO_HOME = "sth"
    PICKUP_IN_STORE = "bopis"


class Fulfillment(Contract):
    model_config = ConfigDict(
        json_schema_extra={  # what _pickup_needs_location checks
            "if": {"properties": {"type": {"const": "bopis"}}, "required": ["type"]},
            "then": {
                "properties": {"pickup_location": {"type": "string"}},
                "required": ["pickup_location"],
            },
        }
    )

    type: FulfillmentType
    pickup_location: Identifier | None = None
    """The store a BOPIS order is collected from; BOPIS draws stock only there."""

    @model_validator(mode="after")
    def _pickup_needs_location(self) -> Fulfillment:
        if self.type is FulfillmentType.PICKUP_IN_STORE and self.pickup_location is None:
            raise ValueError("a bopis order needs a pickup_location")
        return self


class OrderLine(Contract):
    line_id: Identifier
    sku: Identifier
    quantity: Annotated[int, JSON_INTEGER, Field(gt=0, le=1_000_000)]
    unit_price: Money
    allow_backorder: Flag | None = None
    """Overrides the product's backorderable flag for this line (the OMS's allowBackorder)."""

    @property
    def amount(self) -> Decimal:
        return self.unit_price * self.quantity


class OrderPayment(Contract):
    """The payment the order system took at checkout: an authorisation where the site captures
    at shipment, a capture where it captures at order. No payment: the order is not paid through
    this service (invoiced, or paid elsewhere) and the workflow moves no money."""

    reference: Identifier
    """The gateway's id of the authorisation (or capture)."""
    amount: Money
    authorised_at: Instant
    expires_at: Instant | None = None
    """When the gateway lets the authorisation lapse; unknown: `authorised_at` + 7 days (a
    card's usual hold)."""

    @model_validator(mode="after")
    def _expires_after_authorised(self) -> OrderPayment:
        if self.expires_at is not None and self.expires_at <= self.authorised_at:
            raise ValueError("expires_at must be after authorised_at")
        return self


PLACED_AT_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
"""No order is older: an earlier placed_at is a broken clock or a typo (and would jump every
queue). A fixed bound, checked on every validation."""
PLACED_AT_LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
"""The far bound checked on every validation, with no clock: inside workflows too, where the
input is validated again on every replay (and a test server's clock may run decades ahead).
Every placed_at within the two fixed bounds is a timestamp that Python, PostgreSQL and Temporal
hold in any time zone (9999-12-31T23:00:00-05:00 is year 10000 in UTC). An order from the
future (year 2999, or next week) is refused against now where it enters: `at_boundary` in the
CLI and clients, and the workflow's own start against `workflow.now()`."""
PLACED_AT_SKEW = dt.timedelta(hours=1)
"""Where an order enters the service (`at_boundary(now)`), placed_at may be at most this far
after now: the order system's clock and ours may disagree a little, not more."""
PLACED_AT_TOO_EARLY = "placed_at_too_early"
PLACED_AT_IN_FUTURE = "placed_at_in_future"
"""The error types (pydantic's `type`) of a placed_at out of bounds."""
BOUNDARY_NOW = "now"
"""The validation context's key for the moment an order is received (`at_boundary`)."""


def at_boundary(now: dt.datetime) -> dict[str, Any]:
    """The validation context of an order entering the service at `now` (the CLI, a client, an
    activity): `Order.model_validate_json(text, context=at_boundary(now))` also refuses a
    placed_at more than PLACED_AT_SKEW after `now`. Without it (the data converter inside a
    workflow, where the wall clock must not be read and every replay validates the input
    again, months later) only the fixed bounds apply, so an order valid once stays valid."""
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    return {BOUNDARY_NOW: now}


def placed_at_problem(
    placed_at: dt.datetime, now: dt.datetime | None = None
) -> tuple[str, str] | None:
    """Why `placed_at` is out of bounds, as (error type, message), or None when it is within
    them. `now`: also bound it by now + PLACED_AT_SKEW (at a boundary; in a workflow,
    `workflow.now()`, which a replay sees again unchanged)."""
    if now is not None and placed_at > now + PLACED_AT_SKEW:
        return PLACED_AT_IN_FUTURE, (
            f"placed_at {_instant(placed_at)} is in the future: it may be at most "
            f"{_span(PLACED_AT_SKEW)} after now ({_instant(now, utc=True)})"
        )
    if placed_at > PLACED_AT_LATEST:
        return PLACED_AT_IN_FUTURE, (
            f"placed_at {_instant(placed_at)} is in the future: it may be no later than "
            f"{_instant(PLACED_AT_LATEST)}"
        )
    if placed_at < PLACED_AT_EARLIEST:
        return PLACED_AT_TOO_EARLY, (
            f"placed_at {_instant(placed_at)} is too long ago: it may be no earlier than "
            f"{_instant(PLACED_AT_EARLIEST)}"
        )
    return None


def _instant(t: dt.datetime, utc: bool = False) -> str:
    """ISO 8601 as given (UTC as `Z`); `utc`: in UTC, to the second."""
    if utc:
        t = t.astimezone(dt.UTC).replace(microsecond=0)
    text = t.isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def _span(d: dt.timedelta) -> str:
    minutes = int(d.total_seconds()) // 60
    n, unit = (minutes // 60, "hour") if minutes % 60 == 0 else (minutes, "minute")
    return f"{n} {unit}{'' if n == 1 else 's'}"


class ShippingPreference(StrEnum):
    """How the customer chose, at checkout, to receive an order not all in stock."""

    SHIP_AVAILABLE = "ship_available"
    """What is in stock ships now; the rest follows as it arrives."""
    SHIP_COMPLETE = "ship_complete"
    """Nothing ships until the whole order can: one delivery, later."""


class Order(Contract):
    order_id: Identifier
    order_number: Identifier
    placed_at: Instant
    currency: Currency
    customer: Customer
    fulfillment: Fulfillment
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=1000)]
    site: Identifier | None = None
    """The storefront whose policy applies (`[sites.<name>]`); none: the worker's `site`."""
    stated_ship_date: Day | None = None
    """The ship date promised at checkout, if any: the FTC rule's deadline (else 30 days)."""
    payment: OrderPayment | None = None
    applied_for_credit: Flag = False
    """The buyer applied to the merchant for credit to pay for this order: the FTC rule then
    allows 50 days to ship instead of 30 when no date was stated."""
    shipping_preference: ShippingPreference | None = None
    """The customer's choice between shipping what is ready and shipping complete; it overrides
    the site's `acceptance_split` and `release_mode` for this order. None: the site decides."""

    @field_validator("placed_at")
    @classmethod
    def _placed_at_in_bounds(cls, placed_at: dt.datetime, info: ValidationInfo) -> dt.datetime:
        context = info.context
        now = context.get(BOUNDARY_NOW) if isinstance(context, dict) else None
        problem = placed_at_problem(placed_at, now)
        if problem is not None:
            kind, message = problem
            raise PydanticCustomError(kind, "{reason}", {"reason": message})
        return placed_at

    @model_validator(mode="after")
    def _line_ids_unique(self, info: ValidationInfo) -> Order:
        require_unique("line ids", (ln.line_id for ln in self.lines))
        if not lenient(info):
            self._amounts_in_minor_units()
        if self.payment is not None and self.payment.amount > self.value:
            raise ValueError(
                f"payment.amount {self.payment.amount} is more than the order's value {self.value}"
            )
        return self

    def _amounts_in_minor_units(self) -> None:
        amounts = [(f"lines.{i}.unit_price", ln.unit_price) for i, ln in enumerate(self.lines)]
        if self.payment is not None:
            amounts.append(("payment.amount", self.payment.amount))
        for field, amount in amounts:
            problem = minor_units_problem(amount, self.currency)
            if problem is not None:
                raise ValueError(f"{field}: {problem}")

    @property
    def workflow_id(self) -> str:
        return workflow_id_for(self.order_id)

    @property
    def value(self) -> Decimal:
        return sum((ln.amount for ln in self.lines), Decimal(0))

    @property
    def skus(self) -> list[str]:
        return sorted({ln.sku for ln in self.lines})


WORKFLOW_ID_PREFIX = "backorder-"


def workflow_id_for(order_id: str) -> str:
    """The one workflow per order: `backorder-<order id>`."""
    return f"{WORKFLOW_ID_PREFIX}{order_id}"
