"""The order as the order system hands it to us: the public JSON contract.

Later versions may add optional fields; existing field names never change.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Hashable, Iterable
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")]
"""A non-empty id with no leading or trailing blanks (ids end up in workflow ids and keys)."""


def _no_float(value: object) -> object:
    if isinstance(value, float):
        raise ValueError('money must be a decimal string such as "10.00", not a JSON number')
    return value


Money = Annotated[Decimal, BeforeValidator(_no_float), Field(ge=0, max_digits=18, decimal_places=4)]
"""A non-negative amount; in JSON a decimal string such as "10.00" (a float is rejected: binary
floats cannot hold cents exactly)."""


def repeated(keys: Iterable[Hashable]) -> list[str]:
    """The keys that occur more than once, sorted (for messages that name them)."""
    return sorted(str(k) for k, n in Counter(keys).items() if n > 1)


def require_unique(what: str, keys: Iterable[Hashable], shown: int | None = None) -> None:
    """Raise `<what> must be unique; repeated: ...` naming the repeats (the first `shown`)."""
    twice = repeated(keys)
    if twice:
        raise ValueError(f"{what} must be unique; repeated: {', '.join(twice[:shown])}")


class Contract(BaseModel):
    """Base of every public model: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Customer(Contract):
    id: Identifier
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
    tier: Annotated[str, Field(min_length=1, max_length=50)] = "standard"


class FulfillmentType(StrEnum):
    SHIP_TO_HOME = "sth"
    PICKUP_IN_STORE = "bopis"


class Fulfillment(Contract):
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
    quantity: Annotated[int, Field(gt=0, le=1_000_000)]
    unit_price: Money
    allow_backorder: bool | None = None
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
    authorised_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    """When the gateway lets the authorisation lapse; unknown: `authorised_at` + 7 days (a
    card's usual hold)."""

    @model_validator(mode="after")
    def _expires_after_authorised(self) -> OrderPayment:
        if self.expires_at is not None and self.expires_at <= self.authorised_at:
            raise ValueError("expires_at must be after authorised_at")
        return self


class Order(Contract):
    order_id: Identifier
    order_number: Identifier
    placed_at: AwareDatetime
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    customer: Customer
    fulfillment: Fulfillment
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=1000)]
    site: Identifier | None = None
    """The storefront whose policy applies (`[sites.<name>]`); none: the worker's `site`."""
    stated_ship_date: dt.date | None = None
    """The ship date promised at checkout, if any: the FTC rule's deadline (else 30 days)."""
    payment: OrderPayment | None = None
    applied_for_credit: bool = False
    """The buyer applied to the merchant for credit to pay for this order: the FTC rule then
    allows 50 days to ship instead of 30 when no date was stated."""

    @model_validator(mode="after")
    def _line_ids_unique(self) -> Order:
        require_unique("line ids", (ln.line_id for ln in self.lines))
        if self.payment is not None and self.payment.amount > self.value:
            raise ValueError(
                f"payment.amount {self.payment.amount} is more than the order's value {self.value}"
            )
        return self

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
