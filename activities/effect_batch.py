"""The contract of `apply_order_effects` (activities/order_effects.py): apart from the other
contracts, because it carries the read model's `OrderRecord`, which the workflows' messages
define."""

from __future__ import annotations

from activities.contracts import (
    ActivityContract,
    DemandUpdate,
    Notice,
    PaymentRequest,
    PaymentResult,
    ShipmentRequest,
    ShipmentStock,
)
from domain.order import Contract, Identifier
from workflows.messages import OrderRecord


class EffectBatch(Contract):
    """Input of `apply_order_effects`: what one transition of an order writes to PostgreSQL
    (shipments for fulfilment, its demand, notices, read-model rows), applied in one
    transaction in this order. Each part keeps the key it has as an activity of its own, so a
    retry, or the same part sent alone, is applied once."""

    order_id: Identifier
    shipments: tuple[ShipmentRequest, ...] = ()
    demand: tuple[DemandUpdate, ...] = ()
    notices: tuple[Notice, ...] = ()
    records: tuple[OrderRecord, ...] = ()
    shipped_stock: tuple[ShipmentStock, ...] = ()
    """Units that left with a shipment fulfilment confirmed: on hand and reserved go down."""
    short_picked_stock: tuple[ShipmentStock, ...] = ()
    """Units the picker did not find: released, and on hand corrected down."""
    captures: tuple[PaymentRequest, ...] = ()
    """Captures of the transition's shipments, made once the writes are committed (each under
    its own key, as `capture_payment` makes it)."""


class CaptureOutcome(Contract):
    """What became of one capture of the batch: the gateway's result, or why there is none (a
    decline, a refused request, or a gateway that failed for longer than a payment waits)."""

    key: str
    result: PaymentResult | None = None
    failure: str | None = None


class EffectOutcome(Contract):
    """Output of `apply_order_effects`: each capture's outcome, in the batch's order (nothing
    else: the writes either all committed or the activity failed)."""

    captures: tuple[CaptureOutcome, ...] = ()


APPLY_ORDER_EFFECTS = ActivityContract("apply_order_effects", EffectBatch, EffectOutcome)
