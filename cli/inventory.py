"""`backorder inventory ...`: one inventory event from the command line, sent to the site's
allocator (`inventory load` sends a feed file: `cli.feed`).

Each subcommand's options are named after its event's fields; the event is validated like one
from the feed before Temporal is reached, and its outcome printed with the stock it left.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import BaseModel

from cli.allocator import apply_batch
from cli.common import add_site, counted, date_arg, run_with_client, site_of
from cli.errors import CliError, validated
from cli.feed import add_load_command
from cli.stock import add_stock_command
from config import Settings
from domain.inventory import (
    EventStatus,
    FutureReceiptCancelled,
    FutureReceiptClosed,
    FutureReceiptPlanned,
    FutureReceiptReceived,
    FutureReceiptUpdated,
    InventoryBatch,
    InventoryEvent,
    LocationDefined,
    ProductDefined,
    StockAdjusted,
    StockPosition,
    StockReceived,
)
from workflows.allocator_messages import FeedResult

EVENTS: dict[str, tuple[type[BaseModel], tuple[str, ...]]] = {
    "receipt": (StockReceived, ("sku", "location", "quantity", "reason")),
    "adjust": (StockAdjusted, ("sku", "location", "delta", "reason")),
    "po": (FutureReceiptPlanned, ("receipt_id", "sku", "location", "quantity", "expected_date")),
    "po-update": (FutureReceiptUpdated, ("receipt_id", "expected_date", "quantity")),
    "po-cancel": (FutureReceiptCancelled, ("receipt_id", "reason")),
    "po-received": (FutureReceiptReceived, ("receipt_id", "quantity")),
    "po-close": (FutureReceiptClosed, ("receipt_id", "reason")),
    "location": (LocationDefined, ("location_id", "rank", "pickup")),
    "product": (ProductDefined, ("sku", "backorderable", "future_inventory", "insert")),
}
"""Each `inventory` subcommand's event and the arguments (named as its fields) it takes."""


def new_event_id() -> str:
    """A fresh id: each command line is a new event unless `--id` repeats one."""
    return f"cli-{uuid.uuid4().hex}"


def _given(**fields: Any) -> dict[str, Any]:
    """The options the user gave: the others keep the event's defaults."""
    return {name: value for name, value in fields.items() if value is not None}


def event_from_args(args: argparse.Namespace) -> InventoryEvent:
    """The event an `inventory` subcommand describes, validated like one from the feed."""
    command = args.inventory_command
    model, names = EVENTS[command]
    event = validated(
        model,
        f"{command} event",
        "(event)",
        event_id=args.id or new_event_id(),
        occurred_at=datetime.now(UTC),
        **_given(**{name: getattr(args, name) for name in names}),
    )
    return cast(InventoryEvent, event)


def describe_event(event: InventoryEvent) -> str:
    """What the event says, in a few words: `50 x KTP at DC`."""
    match event:
        case StockReceived():
            return f"{event.quantity} x {event.sku} at {event.location}"
        case StockAdjusted():
            return f"{event.delta:+d} x {event.sku} at {event.location} ({event.reason})"
        case FutureReceiptPlanned():
            when = f"expected {event.expected_date}" if event.expected_date else "not dated yet"
            return f"{event.receipt_id}, {event.quantity} x {event.sku} at {event.location} {when}"
        case FutureReceiptUpdated():
            changes = _given(expected=event.expected_date, quantity=event.quantity)
            return f"{event.receipt_id}, " + ", ".join(f"{k} {v}" for k, v in changes.items())
        case FutureReceiptCancelled():
            return f"{event.receipt_id} ({event.reason})"
        case FutureReceiptReceived():
            units = f"{event.quantity} units" if event.quantity else "all units still to come"
            return f"{event.receipt_id}, {units}"
        case FutureReceiptClosed():
            return f"{event.receipt_id} closed ({event.reason})"
        case LocationDefined():
            pickup = "pickup" if event.pickup else "no pickup"
            return f"{event.location_id}, rank {event.rank}, {pickup}"
        case ProductDefined():
            switches = [
                "backorderable" if event.backorderable else "not backorderable",
                "future inventory" if event.future_inventory else "no future inventory",
                *(["insert"] if event.insert else []),
            ]
            return f"{event.sku}, {', '.join(switches)}"
    raise AssertionError(f"unknown event {event!r}")


def stock_text(p: StockPosition) -> str:
    """`on hand 50, reserved 40, free 10`."""
    return f"on hand {p.on_hand}, reserved {p.reserved}, free {p.on_hand - p.reserved}"


SHOWN_POSITIONS = 10


def print_feed_result(event: InventoryEvent, result: FeedResult) -> None:
    """One event's outcome; a rejection is a CliError (exit 1), a redelivery is not."""
    outcome = next((o for o in result.outcomes if o.event_id == event.event_id), None)
    name = f"{event.type} {event.event_id}"
    if outcome is None:
        raise CliError(f"the allocator returned no outcome for {name} (pass {result.pass_id})")
    if outcome.status is EventStatus.REJECTED:
        reason = outcome.reason or (outcome.rejection.value if outcome.rejection else "rejected")
        raise CliError(f"rejected {name}: {reason}")
    if outcome.status is EventStatus.DUPLICATE:
        print(f"{name} was already applied (same event id); nothing changed")
        return
    sku, location = getattr(event, "sku", None), getattr(event, "location", None)
    here = [p for p in result.positions if p.sku == sku and p.location == location]
    print(
        f"applied {name}: {describe_event(event)}" + (f" ({stock_text(here[0])})" if here else "")
    )
    if not here and not isinstance(event, LocationDefined):
        shown = [p for p in result.positions if sku is None or p.sku == sku]
        for p in shown[:SHOWN_POSITIONS]:
            print(f"  {p.sku} at {p.location}: {stock_text(p)}")
        if len(shown) > SHOWN_POSITIONS:
            print(f"  ... {len(shown) - SHOWN_POSITIONS} more stock rows")
    if result.units_released:
        print(
            f"released {counted(result.units_released, 'unit')} to "
            f"{counted(result.orders_released, 'order')}"
        )


def cmd_inventory_event(settings: Settings, args: argparse.Namespace) -> None:
    """Validate first: a bad event is reported even when Temporal is down."""
    event = event_from_args(args)
    batch = InventoryBatch(events=(event,))
    site = site_of(settings, args)
    result = run_with_client(settings, lambda client: apply_batch(client, settings, site, batch))
    print_feed_result(event, result)


def add_inventory_commands(sub: Any) -> None:
    """`inventory receipt|adjust|po|po-update|po-cancel|po-received|po-close|location|product`
    and `inventory load`."""

    def event(name: str, about: str) -> argparse.ArgumentParser:
        p = add_site(isub.add_parser(name, help=about, description=about))
        p.add_argument(
            "--id", metavar="EVENT_ID", help="the event id (default: a fresh cli-<uuid>)"
        )
        p.set_defaults(run=cmd_inventory_event)
        return p

    inventory = sub.add_parser("inventory", help="send inventory events to the site's allocator")
    isub = inventory.add_subparsers(dest="inventory_command", required=True)

    receipt = event("receipt", "units arrived at a location")
    receipt.add_argument("sku", metavar="SKU")
    receipt.add_argument("location", metavar="LOCATION")
    receipt.add_argument("quantity", metavar="QUANTITY", type=int)
    receipt.add_argument("--reason", help="default: receipt")

    adjust = event(
        "adjust", "a count correction; a negative DELTA is fine (-5, or `-- -5` after options)"
    )
    adjust.add_argument("sku", metavar="SKU")
    adjust.add_argument("location", metavar="LOCATION")
    adjust.add_argument(
        "delta", metavar="DELTA", type=int, help="units to add (negative: to remove)"
    )
    adjust.add_argument("--reason", required=True)

    po = event("po", "a purchase order (future receipt) expected at a location")
    po.add_argument("receipt_id", metavar="RECEIPT_ID")
    po.add_argument("sku", metavar="SKU")
    po.add_argument("location", metavar="LOCATION")
    po.add_argument("quantity", metavar="QUANTITY", type=int)
    po.add_argument(
        "--date",
        dest="expected_date",
        metavar="YYYY-MM-DD",
        type=date_arg,
        help="expected date (none: undated)",
    )

    po_update = event("po-update", "a new expected date and/or quantity of a purchase order")
    po_update.add_argument("receipt_id", metavar="RECEIPT_ID")
    po_update.add_argument(
        "--date", dest="expected_date", metavar="YYYY-MM-DD", type=date_arg, help="YYYY-MM-DD"
    )
    po_update.add_argument(
        "--quantity", type=int, help="the purchase order's whole quantity, units received included"
    )

    po_cancel = event("po-cancel", "the purchase order will not arrive")
    po_cancel.add_argument("receipt_id", metavar="RECEIPT_ID")
    po_cancel.add_argument("--reason", help="default: purchase order cancelled")

    po_received = event(
        "po-received",
        "units of the purchase order arrived and are on hand; the rest stays open",
    )
    po_received.add_argument("receipt_id", metavar="RECEIPT_ID")
    po_received.add_argument(
        "--quantity", type=int, help="units received (default: all still to come)"
    )

    po_close = event(
        "po-close",
        "no more of the purchase order will come (closed short): orders promised the rest"
        " wait again",
    )
    po_close.add_argument("receipt_id", metavar="RECEIPT_ID")
    po_close.add_argument("--reason", help="default: purchase order closed short")

    location = event("location", "define a store or warehouse (the whole definition)")
    location.add_argument("location_id", metavar="LOCATION_ID")
    location.add_argument("--rank", type=int, help="serving order (default 0)")
    location.add_argument("--pickup", action="store_true", help="orders can be collected here")

    product = event("product", "define a product's backorder switches (the whole definition)")
    product.add_argument("sku", metavar="SKU")
    product.add_argument("--not-backorderable", dest="backorderable", action="store_false")
    product.add_argument("--no-future-inventory", dest="future_inventory", action="store_false")
    product.add_argument("--insert", action="store_true", help="a packing insert")

    add_load_command(isub)
    add_stock_command(isub)
