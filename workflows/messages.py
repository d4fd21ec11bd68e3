"""Payloads of the order workflow's signals, queries and results: part of the public contract.

Every model has a JSON Schema (`Model.model_json_schema()`), so systems in any language can
send signals through Temporal without our Python code.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, model_validator

from domain.contract import Count, Currency, Day, Instant, Message
from domain.inventory import ReceiptStatus as ReceiptStatus  # part of this contract
from domain.order import Contract, Identifier, Money, Order
from domain.order_book import BookedShipment, BookStatus, CancelledPart, CancelLine, OrderBook
from domain.payment import PaymentBook
from domain.planner import OrderRelease
from domain.policy import BackorderPolicy
from domain.schedule import FtcState, ScheduleState, ScheduleSummary


class BackorderStatus(StrEnum):
    """The order's place in its life; also the `BackorderStatus` search attribute."""

    BACKORDERED = "backordered"
    """Units wait for stock."""
    AWAITING_RECEIPT = "awaiting_receipt"
    """Every unit is assigned, but some wait in future shipments for incoming stock."""
    AWAITING_SHIPMENT = "awaiting_shipment"
    """Every unit is with fulfilment (or cancelled), and fulfilment has yet to confirm some
    shipments (`fulfilment_reports = "shipped"`)."""
    COMPLETED = "completed"
    """Nothing is left to ship; at least part of the order shipped."""
    CANCELLED = "cancelled"
    """Nothing shipped: the whole order was cancelled."""


class CancelRequest(Message):
    """The `cancel` signal and `cancel_order` update: withdraw the whole order (no `lines`), or
    the given lines (all of a line not shipped yet, or `quantity` units of it)."""

    lines: Annotated[tuple[CancelLine, ...], Field(max_length=1000)] = ()
    reason: Annotated[str, Field(min_length=1, max_length=500)] = "customer request"
    requested_by: Annotated[str, Field(min_length=1, max_length=200)] = "customer-service"


class CancelResult(Contract):
    """The `cancel_order` update's answer: what was cancelled and the money given back."""

    cancelled: tuple[CancelledPart, ...]
    voided: Money = Decimal(0)
    """Released from the open authorisation (payment taken at shipment)."""
    refunded: Money = Decimal(0)
    """Refunded from captured money (payment taken at order)."""


class ConsentResult(Contract):
    """The `give_consent` update's answer: the FTC state the consent left the order in."""

    ftc_state: FtcState
    consented_until: Day | None = None
    """The date the customer accepted shipping by (None: the notice's revised date)."""


class PriorityResult(Contract):
    """The `change_priority` update's answer: the tier the order was and is served as."""

    previous_tier: str
    tier: str


class CheckResult(Contract):
    """The `request_check` update's answer: what the allocator was asked to look at."""

    skus: tuple[str, ...]
    backordered_units: Count
    """Units of the order waiting for stock when the check was asked for."""


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


class ConsentSignal(Message):
    """The `consent` signal and `give_consent` update: the customer accepts the shipping delay
    (FTC rule)."""

    until: Day | None = None
    """Up to this date; none: the revised date of the last notice."""
    channel: Annotated[str, Field(min_length=1, max_length=100)] = "customer"


class CheckNow(Message):
    """The `check_now` signal and `request_check` update: ask the allocator to look at this
    order again at once."""

    reason: Annotated[str, Field(min_length=1, max_length=500)] = "operator request"


class PriorityChange(Message):
    """The `set_priority` signal and `change_priority` update: serve this order as `tier` from
    now on (e.g. `vip`; a tier the site's policy ranks, or `standard`)."""

    tier: Annotated[str, Field(min_length=1, max_length=50)]
    reason: Annotated[str, Field(min_length=1, max_length=500)] = "customer service"


class LineStatus(Contract):
    line_id: Identifier
    sku: Identifier
    ordered: Count
    released: Count
    backordered: Count
    cancelled: Count


class LogEntry(Contract):
    """One thing that happened to the order: an allotment, a check, a notice, a cancel..."""

    at: Instant
    event: str
    detail: str


class ExceptionBrief(Contract):
    """One open exception on the operators' queue, as the order's details name it."""

    id: int
    kind: Annotated[str, Field(max_length=100)]
    severity: Annotated[str, Field(max_length=20)]
    raised_at: Instant


class OpenExceptions(Contract):
    """The `exceptions_changed` signal: what is open for the order on the operators' queue, read
    from PostgreSQL at `as_of` after each change (raised, resolved). The queue is the truth;
    the workflow mirrors it in the `OpenExceptions` search attribute and its details, keeping
    the newest reading (signals may arrive out of order). `as_of` None: never read."""

    open: Count = 0
    latest: tuple[ExceptionBrief, ...] = ()
    """The worst and oldest first, at most `EXCEPTIONS_SHOWN`."""
    as_of: Instant | None = None


EXCEPTIONS_SHOWN = 5


class OrderStatus(Contract):
    """The `status` query: what an operator or customer-service agent needs at a glance."""

    order_id: Identifier
    order_number: Identifier
    status: BackorderStatus
    customer_tier: str
    order_value: Decimal
    currency: Currency
    backordered_since: Instant
    as_of: Instant
    """Workflow time of this answer: the workflow's last activity. An idle workflow does not
    run, so compare `backordered_since` with your own clock for its age right now."""
    days_in_backorder: Count
    """Whole days between `backordered_since` and `as_of`."""
    lines: list[LineStatus]
    parent: BookStatus = BookStatus.BACKORDERED
    """The backordered parent shipment: `reassigned` once every unit is in a child shipment or
    cancelled."""
    shipments: tuple[BookedShipment, ...] = ()
    payment: PaymentBook | None = None
    expected_ship_date: Day | None = None
    ftc_state: FtcState = FtcState.NONE
    schedule: ScheduleSummary | None = None
    """The FTC deadline and the next timer of each kind (None: nothing is armed)."""
    log: tuple[LogEntry, ...] = ()
    """The latest events, oldest first (at most the last 200)."""
    cancel_reason: str | None = None
    exceptions: OpenExceptions = OpenExceptions()
    """What was open on the operators' queue at its last news (`backorder exceptions` reads
    the queue itself)."""


class BackorderSummary(Contract):
    """The workflow's result: how the order ended."""

    order_id: Identifier
    status: BackorderStatus
    lines: list[LineStatus]
    shipments: tuple[BookedShipment, ...] = ()
    payment: PaymentBook | None = None
    days_in_backorder: Count
    ended_at: Instant


class FulfilmentAnswer(Contract):
    """The `report_fulfilment` update's answer: the shipment as it is now, whether the report
    changed it (false: the same report came before), and the order's status."""

    shipment: BookedShipment
    changed: bool
    order_status: BackorderStatus


class OrderRecord(Contract):
    """Input of the `record_order` activity: the read-model row for one order.

    The whole order comes with a run's first record, which writes the row (and its lines); a
    later record of the run names the order by id and changes only its status, tier and site,
    so a release does not repeat the order in the history (about 0.7 KB a record)."""

    order: Order | None = None
    order_id: Identifier | None = None
    """The order, when `order` is not sent (the row was written by an earlier record)."""
    workflow_id: str
    status: BackorderStatus
    status_since: AwareDatetime
    site: str | None = None
    """The site the order was accepted under (its policy, demand and allocator); None (records
    written before it was carried): the worker's own site."""
    tier: str | None = None
    """The tier the order is served as now (a priority change moves it); None: the order's."""
    cancel_reason: Annotated[str, Field(max_length=2000)] | None = None
    """Why the order was cancelled (status `cancelled`); None otherwise, or before it was sent."""

    @model_validator(mode="after")
    def _names_the_order(self) -> OrderRecord:
        if self.order is None and self.order_id is None:
            raise ValueError("a record needs the order or its order_id")
        if self.order is not None and self.order_id not in (None, self.order.order_id):
            raise ValueError("order_id differs from the order's")
        return self

    @property
    def id(self) -> str:
        """The order's id, whichever way the record names it."""
        return self.order.order_id if self.order is not None else str(self.order_id)


class CarriedState(Contract):
    """Everything a running order hands to its next run on continue-as-new (the workflow's
    input is an `Order` at the start, this afterwards)."""

    order: Order
    site: Identifier
    policy: BackorderPolicy
    book: OrderBook
    schedule: ScheduleState
    payment: PaymentBook | None
    tier: str
    status: BackorderStatus
    status_since: AwareDatetime
    acceptance_eta: dt.date | None
    passes: tuple[str, ...]
    """The latest allocation passes applied (a redelivered pass is recognised)."""
    arrived: tuple[str, ...]
    """Receipts that arrived for future shipments still waiting on others: `<shipment id>/<receipt
    id>` (a plain receipt id: news recorded before the receipt-news-per-shipment patch)."""
    steps: int
    """Numbered steps taken so far (idempotency keys of cancels and demand updates)."""
    log: tuple[LogEntry, ...]
    cancel_reason: str | None
    exceptions: OpenExceptions = OpenExceptions()
