"""Payloads of the order workflow's signals, queries and results: part of the public contract.

Every model has a JSON Schema (`Model.model_json_schema()`), so systems in any language can
send signals through Temporal without our Python code.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field

from domain.order import Contract, Identifier, Order


class BackorderStatus(StrEnum):
    """The order's place in its life; also the `BackorderStatus` search attribute."""

    BACKORDERED = "backordered"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class CancelRequest(Contract):
    """The `cancel` signal: customer service (or the customer) withdraws the order."""

    reason: Annotated[str, Field(min_length=1, max_length=500)] = "customer request"
    requested_by: Annotated[str, Field(min_length=1, max_length=200)] = "customer-service"


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
