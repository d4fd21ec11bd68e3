"""The activities the order workflow calls: their names and payloads, and nothing else.

Pure pydantic, so the workflow imports this inside its sandbox and calls activities by name
with typed inputs and results; implementations live next to their I/O (inventory ledger,
payment gateway, notice outbox) and register under these names. Every call that touches
stock or money carries an idempotency `key` made of the workflow id and the step
(`backorder-A-1/capture/A-1-S2`), never the run id, so a retry or a replayed workflow cannot
reserve, capture or refund twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, Field

from domain.inventory import EventOutcome, InventoryEvent, StockPosition
from domain.limits import BackorderAllowance
from domain.order import Contract, Fulfillment, Identifier, Money
from domain.order_book import BookedShipment, SplitNumber
from domain.planner import Allotment, Backorder, Catalog, Stock
from domain.policy import BackorderPolicy

KEY_LIMIT = 255
"""The longest idempotency key a gateway takes (Stripe's limit)."""
IdempotencyKey = Annotated[str, Field(min_length=3, max_length=KEY_LIMIT, pattern=r"^\S+/\S+$")]


def step_key(workflow_id: str, step: str, *parts: str) -> str:
    """`<workflow id>/<step>[/<part>...]`: the same step of the same order is the same key.
    A key past `KEY_LIMIT` (the contract allows 200-character order ids, and shipment ids
    repeat them) keeps its readable start and ends in a digest of the whole key."""
    key = "/".join((workflow_id, step, *parts))
    if len(key) <= KEY_LIMIT:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"{key[: KEY_LIMIT - len(digest) - 1]}/{digest}"


In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


@dataclass(frozen=True)
class ActivityContract(Generic[In, Out]):
    """An activity's name with its input and result types, for typed calls by name."""

    name: str
    input: type[In]
    output: type[Out]


class Empty(Contract):
    """The result of an activity that returns nothing."""


# -- errors an activity raises as a non-retryable ApplicationError of this type ----------------

INSUFFICIENT_STOCK = "InsufficientStock"
"""reserve_stock: the free stock is no longer there (another order took it)."""
PAYMENT_DECLINED = "PaymentDeclined"
"""The gateway refused: card declined, authorisation expired, amount above what is open."""
INVALID_REQUEST = "InvalidRequest"
"""The request can never succeed as sent (unknown reference, currency mismatch...)."""
DUPLICATE_ORDER = "DuplicateOrder"
"""claim_order: another run (or another workflow) already accepted this order id."""


# -- site policy -------------------------------------------------------------------------------


class PolicyRequest(Contract):
    site: Identifier | None = None
    """None: the worker's own site."""


class SitePolicy(Contract):
    """The policy an order keeps for its whole life (read once, at acceptance)."""

    site: Identifier
    policy: BackorderPolicy


# -- acceptance --------------------------------------------------------------------------------


class OrderClaim(Contract):
    """Claim the order id for this chain of runs before acceptance does anything."""

    order_id: Identifier
    workflow_id: Annotated[str, Field(min_length=1, max_length=1000)]
    run_id: Identifier
    """The chain's first run id (kept across continue-as-new, new for a second start)."""


# -- inventory (ledger) ------------------------------------------------------------------------


class AvailabilityRequest(Contract):
    order_id: Identifier
    skus: Annotated[tuple[Identifier, ...], Field(min_length=1)]
    fulfillment: Fulfillment


class Availability(Contract):
    """Free stock (on hand less reserved) and incoming receipts for the asked skus."""

    stock: Stock
    catalog: Catalog


class WantedUnits(Contract):
    sku: Identifier
    quantity: Annotated[int, Field(gt=0)]


class AllowanceRequest(Contract):
    """The backorder room an order asks for, per sku (at most its quantity), where the site's
    policy limits backorders: claimed for it under a lock, so two orders accepted at once
    cannot both take the last of it."""

    order_id: Identifier
    customer_id: Identifier
    wanted: Annotated[tuple[WantedUnits, ...], Field(min_length=1)]


class OrderOpening(Contract):
    """Acceptance's first step in one call (lean-history-2): claim the order id, then read the
    site's policy and the stock of the order's skus (and claim backorder room where the
    policy limits it)."""

    claim: OrderClaim
    policy: PolicyRequest
    availability: AvailabilityRequest
    allowance: AllowanceRequest | None = None


class OpenedOrder(Contract):
    policy: SitePolicy
    availability: Availability
    allowances: tuple[BackorderAllowance, ...] = ()
    """The backorder room the order got, per limited sku (none: no limit applies)."""


class StockReservation(Contract):
    """Reserve the allotments of shipments created at acceptance (or free them: `release`)."""

    key: IdempotencyKey
    order_id: Identifier
    allotments: Annotated[tuple[Allotment, ...], Field(min_length=1)]


class DemandUpdate(Contract):
    """What the order still waits for, in the allocator's demand index (None: nothing)."""

    key: IdempotencyKey
    order_id: Identifier
    backorder: Backorder | None
    site: Identifier = "default"
    """The order's site: its allocator serves it."""


class CheckRequest(Contract):
    """Ask the allocator to re-check one order (the periodic safety net, `check_now`), or to
    look at skus whose stock the order just gave back."""

    order_id: Identifier
    reason: str
    site: Identifier | None = None
    """The order's site (its allocator); None: the worker's own site."""
    skus: tuple[Identifier, ...] = ()
    """Skus of stock the order freed: the allocator offers it to the next orders in line."""


# -- payments (gateway) ------------------------------------------------------------------------


class PaymentRequest(Contract):
    """Authorise, capture or refund `amount`; `reference` names what it applies to."""

    key: IdempotencyKey
    order_id: Identifier
    amount: Money
    currency: Currency
    reference: str | None = None
    """The authorisation to capture from or void, or the capture (or authorisation, for all its
    captures) to refund; for an authorisation, the one it renews (None: a first one)."""


class PaymentResult(Contract):
    reference: str
    """The gateway's id of the authorisation, capture, void or refund."""
    amount: Money
    expires_at: AwareDatetime | None = None
    """For an authorisation: when the gateway lets it lapse."""


# -- customer notices and operator exceptions ---------------------------------------------------


class NoticeKind(StrEnum):
    ON_BACKORDER = "on_backorder"
    STILL_WAITING = "still_waiting"
    FTC_DELAY_OPTION = "ftc_delay_option"
    FTC_RENEWED_NOTICE = "ftc_renewed_notice"
    SHIPPED = "shipped"
    PARTLY_SHIPPED = "partly_shipped"
    SHORT_PICKED = "short_picked"
    """Fulfilment found fewer units than were released: they wait for stock again."""
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    PAYMENT_PROBLEM = "payment_problem"


class NoticeItem(Contract):
    sku: Identifier
    quantity: Annotated[int, Field(gt=0)]


class Notice(Contract):
    """One customer message; rendered and delivered by the notices subsystem (outbox)."""

    key: IdempotencyKey
    kind: NoticeKind
    order_id: Identifier
    order_number: Identifier
    email: str
    items: tuple[NoticeItem, ...] = ()
    expected_ship_date: dt.date | None = None
    revised_ship_date: dt.date | None = None
    respond_by: AwareDatetime | None = None
    """FTC notices: the order is cancelled then unless the customer consents; None on a delay
    notice: silence is consent."""
    amount: Money | None = None
    currency: Currency | None = None
    preorder_release: dt.date | None = None
    """The "on backorder" notice of a pre-order: the day the product is released."""
    reason: Annotated[str, Field(max_length=2000)] | None = None
    """Why units were cancelled, where the customer did not ask (a backorder limit)."""
    carrier: Annotated[str, Field(max_length=100)] | None = None
    tracking_number: Annotated[str, Field(max_length=100)] | None = None
    estimated_delivery: dt.date | None = None
    """A shipment confirmed by fulfilment (`fulfilment_reports = "shipped"`): how it travels and
    when it should arrive."""
    split_number: SplitNumber | None = None
    """Shipped notices: the number of the split they announce (`<order number>-001`, the site's
    `split_numbering`); None: the order's own number."""


class ShipmentStock(Contract):
    """Units of one shipment leaving the ledger: shipped (fulfilment confirmed them), or not
    found by the picker (`short_pick`: released and written off). Keyed like every ledger
    step, so a retry or a replay applies it once."""

    key: IdempotencyKey
    order_id: Identifier
    shipment_id: Identifier
    allotments: Annotated[tuple[Allotment, ...], Field(min_length=1)]


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ExceptionReport(Contract):
    """A row in the operators' exception queue."""

    key: IdempotencyKey
    order_id: Identifier
    kind: Annotated[str, Field(min_length=1, max_length=100)]
    severity: Severity
    detail: str


class NoticeBatchRequest(Contract):
    """Deliver what is due in the notice outbox, at most `limit` notices."""

    limit: Annotated[int, Field(ge=1, le=10_000)] = 100


class NoticeDeliveryReport(Contract):
    """What one delivery round did; `next_due` tells the delivery workflow when to look again."""

    channel: str
    """`outbox` when nothing is sent (the notices stay in PostgreSQL)."""
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    """Failed this time; tried again at their next attempt."""
    failed: int = 0
    """Given up on (permanent refusal or too many tries): raised to an operator."""
    more: bool = False
    """The round was full: more may be due at once."""
    next_due: AwareDatetime | None = None
    """The earliest next attempt of a pending notice (None: nothing pending)."""


# -- fulfilment --------------------------------------------------------------------------------


class ShipmentRequest(Contract):
    """Tell fulfilment a shipment's state: hand it over (ready, transfer), announce it
    (future), or withdraw it (cancelled). The key names the shipment and its status."""

    key: IdempotencyKey
    order_id: Identifier
    shipment: BookedShipment
    order_number: Identifier | None = None
    """The order's own number: fulfilment's number for a shipment that has none of its own
    (None: a request made before; the read model's order row, else the order id, stands in)."""
    amount_due: Money | None = None
    """What the shipment is priced at on fulfilment's paperwork: 0 when the order was charged at
    order (`payment_timing = "at_order"`); None: the shipment's `amount`."""


# -- the allocator ------------------------------------------------------------------------------


class AllocationCheck(Contract):
    """Ask for an allocation pass: over some skus, the skus some orders wait for, or (neither
    given) every sku with open demand: the sweep, the seeds' "Backorder Check"."""

    reason: Annotated[str, Field(min_length=1, max_length=500)] = "operator request"
    skus: Annotated[tuple[Identifier, ...], Field(max_length=10_000)] = ()
    order_ids: Annotated[tuple[Identifier, ...], Field(max_length=10_000)] = ()

    @property
    def full(self) -> bool:
        return not self.skus and not self.order_ids


class NudgeRequest(Contract):
    """Wake (or start) a site's allocator with a check: from order workflows and the sweep."""

    site: Identifier | None = None
    """None: the worker's own site."""
    check: AllocationCheck


class PassRequest(Contract):
    """One allocation pass: apply the batch's events, then allot stock to waiting orders."""

    site: Identifier
    pass_id: Identifier
    reason: str
    as_of: dt.date
    """The allocator's today: future receipts expected by as_of + the future date limit count."""
    events: Annotated[tuple[InventoryEvent, ...], Field(max_length=100_000)] = ()
    skus: tuple[Identifier, ...] = ()
    order_ids: tuple[Identifier, ...] = ()
    full: bool = False
    """Look at every sku with open demand on the site (the sweep)."""


class PassReport(Contract):
    """What a pass did. A retried pass returns the report recorded the first time."""

    pass_id: Identifier
    site: Identifier
    outcomes: tuple[EventOutcome, ...] = ()
    skus: int = 0
    """Skus the pass looked at."""
    orders_waiting: int = 0
    """Orders whose demand the pass read: those waiting for those skus, as far into each
    sku's queue as its stock could reach (a full sweep reads every one)."""
    orders_released: int = 0
    units_released: int = 0
    receipt_notices: int = 0
    signals: int = 0
    """Allotment signals owed to order workflows (delivered next)."""
    positions: tuple[StockPosition, ...] = ()
    """Stock of the skus the events touched, after the pass (at most 200 rows)."""
    unknown_orders: tuple[Identifier, ...] = ()
    """Orders the check named that the service does not know (no claim, no demand)."""


class DeliveryRequest(Contract):
    site: Identifier
    pass_id: Identifier


class DeliveryReport(Contract):
    delivered: int = 0
    gone: tuple[Identifier, ...] = ()
    """Orders whose workflow had ended: their stock was released and their demand dropped."""
    freed_skus: tuple[Identifier, ...] = ()
    """Skus of that released stock: the allocator runs another pass for them."""


CLAIM_ORDER = ActivityContract("claim_order", OrderClaim, Empty)
LOAD_POLICY = ActivityContract("load_policy", PolicyRequest, SitePolicy)
CHECK_AVAILABILITY = ActivityContract("check_availability", AvailabilityRequest, Availability)
OPEN_ORDER = ActivityContract("open_order", OrderOpening, OpenedOrder)
RESERVE_STOCK = ActivityContract("reserve_stock", StockReservation, Empty)
RELEASE_STOCK = ActivityContract("release_stock", StockReservation, Empty)
UPDATE_DEMAND = ActivityContract("update_demand", DemandUpdate, Empty)
REQUEST_CHECK = ActivityContract("request_allocation_check", CheckRequest, Empty)
AUTHORISE_PAYMENT = ActivityContract("authorise_payment", PaymentRequest, PaymentResult)
CAPTURE_PAYMENT = ActivityContract("capture_payment", PaymentRequest, PaymentResult)
VOID_PAYMENT = ActivityContract("void_payment", PaymentRequest, PaymentResult)
REFUND_PAYMENT = ActivityContract("refund_payment", PaymentRequest, PaymentResult)
SEND_NOTICE = ActivityContract("send_notice", Notice, Empty)
RAISE_EXCEPTION = ActivityContract("raise_exception", ExceptionReport, Empty)
PUBLISH_SHIPMENT = ActivityContract("publish_shipment", ShipmentRequest, Empty)

ALL: tuple[ActivityContract[Any, Any], ...] = (
    CLAIM_ORDER,
    LOAD_POLICY,
    CHECK_AVAILABILITY,
    OPEN_ORDER,
    RESERVE_STOCK,
    RELEASE_STOCK,
    UPDATE_DEMAND,
    REQUEST_CHECK,
    AUTHORISE_PAYMENT,
    CAPTURE_PAYMENT,
    VOID_PAYMENT,
    REFUND_PAYMENT,
    SEND_NOTICE,
    RAISE_EXCEPTION,
    PUBLISH_SHIPMENT,
)
"""Every activity the order workflow may call; a worker must register each name."""

ALLOCATE = ActivityContract("allocate", PassRequest, PassReport)
DELIVER_ALLOTMENTS = ActivityContract("deliver_allotments", DeliveryRequest, DeliveryReport)
NUDGE_ALLOCATOR = ActivityContract("nudge_allocator", NudgeRequest, Empty)

ALLOCATOR: tuple[ActivityContract[Any, Any], ...] = (ALLOCATE, DELIVER_ALLOTMENTS, NUDGE_ALLOCATOR)
"""The activities of the allocator and its sweep."""

DELIVER_NOTICES = ActivityContract("deliver_notices", NoticeBatchRequest, NoticeDeliveryReport)

NOTICE_DELIVERY: tuple[ActivityContract[Any, Any], ...] = (DELIVER_NOTICES,)
"""The notice-delivery workflow's one activity: send what is due in the outbox."""
