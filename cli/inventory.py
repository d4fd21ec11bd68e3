"""`backorder inventory ...`: one inventory event from the command line, sent to the site's
allocator (`inventory load` sends a feed file: `cli.feed`).

Each subcommand's options are named after its event's fields; the event is validated like one
from the feed before Temporal is reached, and its outcome printed with the stock it left.
"""

from __future__ import annotations

import argparse
import re
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import click
from pydantic import BaseModel

from cli.allocator import apply_batch
from cli.app import command, flag, group, typed
from cli.common import counted, date_arg, run_with_client, site_of, site_option
from cli.errors import CliError, validated
from cli.feed import load_command
from cli.stock import stock_command
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
    "product": (
        ProductDefined,
        ("sku", "backorderable", "future_inventory", "insert", "preorder_release", "preorder_end"),
    ),
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
                *(
                    [f"on pre-order until {event.preorder_release}"]
                    if event.preorder_release
                    else []
                ),
                *([f"pre-orders taken until {event.preorder_end}"] if event.preorder_end else []),
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


NUMBER = re.compile(r"-\d+|-\d*\.\d+")
"""A negative number (`-5`, `-1.5`): a value, never an option (argparse's rule)."""


class EventCommand(click.Command):
    """An `inventory` event's command. Its name is `args.inventory_command` (the event
    `event_from_args` builds), and a negative number is a value where an argument is expected
    (`adjust KTP DC -5`, as with argparse); any other unknown option is refused as usual."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, context_settings={"ignore_unknown_options": True}, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:
            self.refuse_unknown_options(ctx, args)
        rest = super().parse_args(ctx, args)
        ctx.params["inventory_command"] = self.name
        return rest

    def refuse_unknown_options(self, ctx: click.Context, args: list[str]) -> None:
        """What Click refuses without `ignore_unknown_options` (which lets `-5` through)."""
        takes_value = {
            name: not (p.is_flag or p.count)
            for p in self.get_params(ctx)
            if isinstance(p, click.Option)
            for name in (*p.opts, *p.secondary_opts)
        }
        words = iter(args)
        for word in words:
            if word == "--":
                return
            if not word.startswith("-") or word == "-" or NUMBER.fullmatch(word):
                continue
            name, given, _ = word.partition("=")
            if name not in takes_value:
                near = [n for n in takes_value if n.startswith("--")]  # as Click suggests
                raise click.NoSuchOption(name, possibilities=near, ctx=ctx)
            if takes_value[name] and not given:
                next(words, None)  # the option's value, whatever it looks like


def event_command(name: str, about: str, *params: click.Parameter, **extra: Any) -> EventCommand:
    """One event's command: its arguments, `--site` and `--id`."""
    made = command(
        name,
        cmd_inventory_event,
        about,
        *params,
        site_option(),
        click.Option(
            ["--id"], metavar="EVENT_ID", help="the event id (default: a fresh cli-<uuid>)"
        ),
    )
    return EventCommand(
        name, callback=made.callback, params=made.params, help=about, short_help=about, **extra
    )


def argument(name: str, type: Any = None) -> click.Argument:
    """A positional argument, named as the event's field (`SKU` in the usage line)."""
    return click.Argument([name], type=type)


def expected_date(help: str) -> click.Option:
    return click.Option(
        ["--date", "expected_date"], type=typed(date_arg, "date"), metavar="YYYY-MM-DD", help=help
    )


def switched_off(name: str, field: str) -> click.Option:
    """`--not-backorderable`: the field, true unless given."""
    return click.Option([name, field], is_flag=True, flag_value=False, default=True)


def inventory_commands() -> list[click.Command]:
    """`inventory receipt|adjust|po|po-update|po-cancel|po-received|po-close|location|product`,
    `inventory load` and `inventory stock`."""
    inventory = group("inventory", "send inventory events to the site's allocator")
    for cmd in (
        event_command(
            "receipt",
            "units arrived at a location",
            argument("sku"),
            argument("location"),
            argument("quantity", int),
            click.Option(["--reason"], help="default: receipt"),
        ),
        event_command(
            "adjust",
            "a count correction; a negative DELTA is fine (-5, or `-- -5` after options)",
            argument("sku"),
            argument("location"),
            argument("delta", int),
            click.Option(["--reason"], required=True),
            epilog="DELTA: units to add (negative: to remove)",
        ),
        event_command(
            "po",
            "a purchase order (future receipt) expected at a location",
            argument("receipt_id"),
            argument("sku"),
            argument("location"),
            argument("quantity", int),
            expected_date("expected date (none: undated)"),
        ),
        event_command(
            "po-update",
            "a new expected date and/or quantity of a purchase order",
            argument("receipt_id"),
            expected_date("YYYY-MM-DD"),
            click.Option(
                ["--quantity"],
                type=int,
                help="the purchase order's whole quantity, units received included",
            ),
        ),
        event_command(
            "po-cancel",
            "the purchase order will not arrive",
            argument("receipt_id"),
            click.Option(["--reason"], help="default: purchase order cancelled"),
        ),
        event_command(
            "po-received",
            "units of the purchase order arrived and are on hand; the rest stays open",
            argument("receipt_id"),
            click.Option(
                ["--quantity"], type=int, help="units received (default: all still to come)"
            ),
        ),
        event_command(
            "po-close",
            "no more of the purchase order will come (closed short): orders promised the rest"
            " wait again",
            argument("receipt_id"),
            click.Option(["--reason"], help="default: purchase order closed short"),
        ),
        event_command(
            "location",
            "define a store or warehouse (the whole definition)",
            argument("location_id"),
            click.Option(["--rank"], type=int, help="serving order (default 0)"),
            flag("--pickup", help="orders can be collected here"),
        ),
        event_command(
            "product",
            "define a product's backorder switches (the whole definition)",
            argument("sku"),
            switched_off("--not-backorderable", "backorderable"),
            switched_off("--no-future-inventory", "future_inventory"),
            flag("--insert", help="a packing insert"),
            click.Option(
                ["--preorder-release", "preorder_release"],
                type=typed(date_arg, "date"),
                metavar="YYYY-MM-DD",
                help="on pre-order until this day: orders wait for it even when stock comes",
            ),
            click.Option(
                ["--preorder-end", "preorder_end"],
                type=typed(date_arg, "date"),
                metavar="YYYY-MM-DD",
                help="the last day pre-orders are taken (default: until the release)",
            ),
        ),
        load_command(),
        stock_command(),
    ):
        inventory.add_command(cmd)
    return [inventory]
