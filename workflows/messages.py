"""Payloads of the order workflow's signals, queries and results: part of the public contract.

Every model has a JSON Schema (`Model.model_json_schema()`), so systems in any language can
send signals through Temporal without our Python code.
"""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field

from domain.order import Contract, Identifier, Money, Order
from domain.order_book import CancelledPart
from domain.planner import OrderRelease


class BackorderStatus(StrEnum):
    """The order's place in its life; also the `BackorderStatus` search attribute."""

    BACKORDERED = "backordered"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class CancelRequest(Contract):
    """The `cancel` signal: withdraw the whole order. (Cancelling given lines and quantities,
    `lines: [CancelLine]`, arrives with the workflow that can honour it.)"""

    reason: Annotated[str, Field(min_length=1, max_length=500)] = "customer request"
    requested_by: Annotated[str, Field(min_length=1, max_length=200)] = "customer-service"


class CancelResult(Contract):
    """The `cancel_order` update's answer: what was cancelled and the money given back."""

    cancelled: tuple[CancelledPart, ...]
    voided: Money = Decimal(0)
    """Released from the open authorisation (payment taken at shipment)."""
    refunded: Money = Decimal(0)
    """Refunded from captured money (payment taken at order)."""


class ReceiptStatus(StrEnum):
    ARRIVED = "arrived"
    CANCELLED = "cancelled"
    SLIPPED = "slipped"
    """Now expected past the future-date limit."""


class ReceiptChange(Contract):
    receipt_id: Identifier
    status: ReceiptStatus


class AllotmentSignal(Contract):
    """The `allotment` signal from the allocator: stock reserved for this order in one pass,
    and/or news of receipts its future shipments wait for."""

    pass_id: Identifier
    """The allocation pass; a pass delivered twice is applied once."""
    release: OrderRelease | None = None
    receipts: tuple[ReceiptChange, ...] = ()


class ConsentSignal(Contract):
    """The `consent` signal: the customer accepts the shipping delay (FTC rule)."""

    until: dt.date | None = None
    """Up to this date; none: the revised date of the last notice."""
    channel: Annotated[str, Field(min_length=1, max_length=100)] = "customer"


class PriorityChange(Contract):
    """The `set_priority` signal: serve this order as `tier` from now on (e.g. `vip`)."""

    tier: Annotated[str, Field(min_length=1, max_length=50)]
    reason: Annotated[str, Field(min_length=1, max_length=500)] = "customer service"


class LineStatus(Contract):
    line_id: Identifier
    sku: Identifier
    ordered: int
    released: int
    backordered: int
    cancelled: int


class OrderStatus(Contract):
    """The `status` query: what an operator or customer-service agent needs at a glance."""

    order_id: Identifier
    order_number: Identifier
    status: BackorderStatus
    customer_tier: str
    order_value: Decimal
    currency: str
    backordered_since: AwareDatetime
    as_of: AwareDatetime
    """Workflow time of this answer: the workflow's last activity. An idle workflow does not
    run, so compare `backordered_since` with your own clock for its age right now."""
    days_in_backorder: int
    """Whole days between `backordered_since` and `as_of`."""
    lines: list[LineStatus]
    cancel_reason: str | None = None


class BackorderSummary(Contract):
    """The workflow's result: how the order ended."""

    order_id: Identifier
    status: BackorderStatus
    lines: list[LineStatus]
    days_in_backorder: int
    ended_at: datetime


class OrderRecord(Contract):
    """Input of the `record_order` activity: the read-model row for one order."""

    order: Order
    workflow_id: str
    status: BackorderStatus
    status_since: AwareDatetime
