"""`backorder`: run the service locally and drive order workflows from the command line.

backorder dev                                 embedded Temporal + PostgreSQL + worker
backorder order start FILE.json               start the workflow for an order (JSON contract)
backorder order status ORDER_ID               what the workflow knows about the order
backorder order cancel ORDER_ID               withdraw the order (customer service)
backorder inventory receipt SKU LOC QTY       units arrived at a location
backorder inventory adjust SKU LOC DELTA      count correction (DELTA may be negative: -5)
backorder inventory po PO SKU LOC QTY         a purchase order expected [--date YYYY-MM-DD]
backorder inventory po-update PO              new --date and/or --quantity of a purchase order
backorder inventory po-cancel PO              the purchase order will not arrive
backorder inventory po-received PO            units of the purchase order arrived [--quantity N]
backorder inventory po-close PO               no more of the purchase order will come [--reason R]
backorder inventory location ID               define a store or warehouse [--rank N] [--pickup]
backorder inventory product SKU               define a product's backorder switches
backorder inventory load FILE.jsonl           send a feed file, one JSON event a line (- = stdin)
backorder check [--sku S]... [--order ID]...  run an allocation pass (none named: every sku)
backorder allocator status                    the site's allocator: passes, pending work
backorder notifications [--order ID]          customer notices in the outbox (show, retry)
backorder payments sandbox [--port P]        serve the sandbox payment gateway on its own
backorder db migrate                          apply schema migrations to BACKORDER_DATABASE__DSN
backorder schema NAME                         JSON Schema of a public payload

Inventory, check and allocator commands take --site (default: the `site` setting); inventory
events take --id EVENT_ID (default: a fresh `cli-<uuid>`; the same id again is applied once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import AllocationCheck
from cli.errors import CliError
from cli.notifications import add_notification_commands
from cli.payments import add_payment_commands
from config import Settings, SettingsError, load_settings
from config.settings import SiteName
from db.migrate import MigrationError, migrate
from domain.inventory import (
    MAX_EVENTS_PER_BATCH,
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
from domain.order import WORKFLOW_ID_PREFIX, Order, at_boundary, workflow_id_for
from domain.order_book import CancelLine
from embedded.process import EmbeddedError
from runtime.allocator import allocator_status, run_check, send_inventory
from runtime.connections import ServiceUnreachable, connect_temporal
from runtime.inventory_file import (
    CHUNK_SIZE,
    EVENT,
    LineOutcome,
    LineRejection,
    NumberedEvent,
    batch_of,
    chunks,
    match_outcomes,
    read_events,
    summarise,
)
from runtime.process_exit import run_and_exit
from runtime.temporal_setup import setup_namespace
from workflows.allocator_messages import AllocatorStatus, FeedResult, PassOutcome, allocator_id
from workflows.backorder import BackorderWorkflow
from workflows.messages import (
    AllotmentSignal,
    BackorderSummary,
    CancelRequest,
    CancelResult,
    CheckNow,
    ConsentSignal,
    OrderStatus,
    PriorityChange,
)
from workflows.search_attributes import SEARCH_ATTRIBUTE_TYPES

SCHEMAS: dict[str, type[BaseModel]] = {
    "order": Order,
    "cancel": CancelRequest,
    "cancel-result": CancelResult,
    "allotment": AllotmentSignal,
    "consent": ConsentSignal,
    "check-now": CheckNow,
    "priority": PriorityChange,
    "status": OrderStatus,
    "summary": BackorderSummary,
    "inventory-batch": InventoryBatch,
}
UNION_SCHEMAS: dict[str, TypeAdapter[Any]] = {
    "inventory-event": EVENT,
}
"""Payloads that are a union of models (one `type` field tells which), not one model."""


def workflow_id_arg(value: str) -> str:
    """Accept an order id (`A-1`) or a workflow id (`backorder-A-1`)."""
    return value if value.startswith(WORKFLOW_ID_PREFIX) else workflow_id_for(value)


def read_order(path: Path) -> Order:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror}") from None
    try:
        # where an order enters: placed_at may not be more than a little after now
        return Order.model_validate_json(text, context=at_boundary(datetime.now(UTC)))
    except ValidationError as err:
        raise CliError(f"{path} is not a valid order:\n{validation_lines(err)}") from None


def validation_lines(err: ValidationError, whole: str = "(order)") -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or whole
        lines.append(f"  {field}: {e['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def cmd_order_start(settings: Settings, args: argparse.Namespace) -> None:
    """Validate the file first: a bad order is reported even when Temporal is down."""
    order = read_order(args.file)

    async def go() -> None:
        await start_order(await connect_temporal(settings), settings, order)

    asyncio.run(go())


async def start_order(client: Client, settings: Settings, order: Order) -> None:
    try:
        handle = await client.start_workflow(
            BackorderWorkflow.run,
            order,
            id=order.workflow_id,
            task_queue=settings.temporal.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError:
        raise CliError(
            f"order {order.order_id} already has a workflow ({order.workflow_id}); "
            "an order is accepted once"
        ) from None
    print(f"started {handle.id} (run {handle.result_run_id}) for order {order.order_number}")


async def order_status(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(args.order)
    try:
        status = await handle.query(BackorderWorkflow.status)
        desc = await handle.describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise CliError(f"no workflow {args.order}") from None
        raise
    if args.json:
        print(status.model_dump_json(indent=2))
        return
    state = desc.status.name if desc.status else "UNKNOWN"
    age = (datetime.now(UTC) - status.backordered_since).days
    print(
        f"order {status.order_number} ({status.order_id}): {status.status.value}, workflow "
        f"{state.lower()}\n  since {status.backordered_since:%Y-%m-%d %H:%M} UTC "
        f"({age} days), {status.order_value} {status.currency}, tier {status.customer_tier}"
    )
    if status.cancel_reason:
        print(f"  cancelled: {status.cancel_reason}")
    print(
        f"  {'line':<8} {'sku':<16} {'ordered':>8} {'released':>9} {'backord.':>9} {'cancel.':>8}"
    )
    for ln in status.lines:
        print(
            f"  {ln.line_id:<8} {ln.sku:<16} {ln.ordered:>8} {ln.released:>9} "
            f"{ln.backordered:>9} {ln.cancelled:>8}"
        )
    for s in status.shipments:
        when = f" expected {s.expected_date}" if s.expected_date else ""
        units = ", ".join(f"{a.quantity} x {a.sku}" for a in s.allotments)
        print(f"  shipment {s.shipment_id}: {s.status.value} from {s.location}{when}: {units}")
    if status.payment is not None:
        p = status.payment
        print(
            f"  payment ({p.timing.value}): authorised {p.authorised}, captured {p.captured}, "
            f"voided {p.voided}, refunded {p.refunded}"
            + (f"; PROBLEM: {p.problem}" if p.problem else "")
        )
    expected = status.expected_ship_date or "unknown"
    deadline = ""
    if status.schedule is not None:  # the deadline the FTC rule measures the order against
        deadline = f" (shipping deadline {status.schedule.ftc_deadline:%Y-%m-%d %H:%M} UTC)"
    print(f"  expected ship date {expected}, FTC {status.ftc_state.value}{deadline}")
    if status.schedule is not None:
        for duty in status.schedule.upcoming:
            print(f"  next {duty.kind.value}: {duty.at:%Y-%m-%d %H:%M} UTC")


def cancel_line_arg(value: str) -> CancelLine:
    """`L1` (all of line L1 not shipped yet) or `L1:2` (two units of it)."""
    line_id, _, quantity = value.partition(":")
    try:
        return CancelLine(line_id=line_id, quantity=int(quantity) if quantity else None)
    except (ValueError, ValidationError):
        raise argparse.ArgumentTypeError(f"{value!r}: expected LINE or LINE:QUANTITY") from None


async def running_handle(client: Client, workflow_id: str) -> WorkflowHandle[Any, Any]:
    """The order's workflow, which must still be running to take a message."""
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise CliError(f"no workflow {workflow_id}") from None
        raise
    if desc.status is not WorkflowExecutionStatus.RUNNING:
        state = desc.status.name.lower() if desc.status else "unknown"
        raise CliError(f"{workflow_id} is {state}; nothing to change")
    return handle


async def order_cancel(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    """Through the `cancel_order` update: the answer says what was cancelled and given back,
    or why nothing was."""
    handle = await running_handle(client, args.order)
    request = CancelRequest(lines=tuple(args.line), reason=args.reason, requested_by=args.by)
    try:
        result = await handle.execute_update(BackorderWorkflow.cancel_order, request)
    except WorkflowUpdateFailedError as err:
        raise CliError(f"cancel refused: {err.cause}") from None
    for part in result.cancelled:
        print(f"cancelled {part.quantity} x {part.sku} (line {part.line_id}), {part.amount}")
    if result.voided:
        print(f"released from the authorisation: {result.voided}")
    if result.refunded:
        print(f"refunded: {result.refunded}")


async def order_consent(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    handle = await running_handle(client, args.order)
    await handle.signal(
        BackorderWorkflow.consent, ConsentSignal(until=args.until, channel=args.channel)
    )
    print(f"consent sent to {args.order}")


async def order_check(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    handle = await running_handle(client, args.order)
    await handle.signal(BackorderWorkflow.check_now, CheckNow(reason=args.reason))
    print(f"check requested for {args.order}")


async def order_priority(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    handle = await running_handle(client, args.order)
    await handle.signal(
        BackorderWorkflow.set_priority, PriorityChange(tier=args.tier, reason=args.reason)
    )
    print(f"{args.order} is served as {args.tier} from now on")


def with_client(
    fn: Callable[[Client, Settings, argparse.Namespace], Awaitable[None]],
) -> Callable[[Settings, argparse.Namespace], None]:
    def run(settings: Settings, args: argparse.Namespace) -> None:
        async def go() -> None:
            await fn(await connect_temporal(settings), settings, args)

        asyncio.run(go())

    return run


def cmd_dev(settings: Settings, args: argparse.Namespace) -> None:
    from runtime.dev import banner, run_dev
    from worker import configure_logging, stop_on_signals

    started = time.monotonic()
    configure_logging(settings)

    async def go() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await run_dev(settings, stop, lambda ep: print(banner(ep, settings, started), flush=True))
        print("backorder dev stopped", flush=True)

    print(f"starting backorder dev in {settings.data_dir.resolve()} ...", flush=True)
    asyncio.run(go())


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> None:
    if settings.embedded_database:
        raise CliError("set BACKORDER_DATABASE__DSN (`backorder dev` migrates its own database)")
    applied = asyncio.run(migrate(settings.database.dsn.get_secret_value()))
    print(f"applied {', '.join(applied)}" if applied else "schema is up to date")


async def setup_temporal(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    namespace = settings.temporal.namespace
    created = await setup_namespace(client, namespace, timedelta(days=args.retention_days))
    print(
        f"namespace {namespace} {'created' if created else 'exists'}; search attributes "
        f"registered: {', '.join(SEARCH_ATTRIBUTE_TYPES)}"
    )


def json_schema(name: str) -> dict[str, Any]:
    if name in UNION_SCHEMAS:
        return UNION_SCHEMAS[name].json_schema(mode="validation")
    return SCHEMAS[name].model_json_schema(mode="validation")


def cmd_schema(settings: Settings, args: argparse.Namespace) -> None:
    print(json.dumps(json_schema(args.name), indent=2))


# -- the inventory feed and the allocator ------------------------------------------------------

SITE = TypeAdapter(SiteName)


def site_arg(value: str) -> str:
    try:
        return SITE.validate_python(value)
    except ValidationError:
        raise argparse.ArgumentTypeError(f"{value!r}: letters, digits, _ . - only") from None


def order_id_arg(value: str) -> str:
    """Accept an order id (`A-1`) or its workflow id (`backorder-A-1`)."""
    return value.removeprefix(WORKFLOW_ID_PREFIX)


def new_event_id() -> str:
    return f"cli-{uuid.uuid4().hex}"


def site_of(settings: Settings, args: argparse.Namespace) -> str:
    site: str = args.site or settings.site
    return site


def _given(**fields: Any) -> dict[str, Any]:
    """The options the user gave: the others keep the event's defaults."""
    return {name: value for name, value in fields.items() if value is not None}


def event_from_args(args: argparse.Namespace) -> InventoryEvent:
    """The event an `inventory` subcommand describes, validated like one from the feed."""
    common = {"event_id": args.id or new_event_id(), "occurred_at": datetime.now(UTC)}
    command = args.inventory_command
    try:
        match command:
            case "receipt":
                return StockReceived.model_validate(
                    common
                    | _given(
                        sku=args.sku,
                        location=args.location,
                        quantity=args.quantity,
                        reason=args.reason,
                    )
                )
            case "adjust":
                return StockAdjusted.model_validate(
                    common
                    | _given(
                        sku=args.sku, location=args.location, delta=args.delta, reason=args.reason
                    )
                )
            case "po":
                return FutureReceiptPlanned.model_validate(
                    common
                    | _given(
                        receipt_id=args.receipt_id,
                        sku=args.sku,
                        location=args.location,
                        quantity=args.quantity,
                        expected_date=args.date,
                    )
                )
            case "po-update":
                return FutureReceiptUpdated.model_validate(
                    common
                    | _given(
                        receipt_id=args.receipt_id, expected_date=args.date, quantity=args.quantity
                    )
                )
            case "po-cancel":
                return FutureReceiptCancelled.model_validate(
                    common | _given(receipt_id=args.receipt_id, reason=args.reason)
                )
            case "po-received":
                return FutureReceiptReceived.model_validate(
                    common | _given(receipt_id=args.receipt_id, quantity=args.quantity)
                )
            case "po-close":
                return FutureReceiptClosed.model_validate(
                    common | _given(receipt_id=args.receipt_id, reason=args.reason)
                )
            case "location":
                return LocationDefined.model_validate(
                    common
                    | _given(location_id=args.location_id, rank=args.rank, pickup=args.pickup)
                )
            case "product":
                return ProductDefined.model_validate(
                    common
                    | _given(
                        sku=args.sku,
                        backorderable=not args.not_backorderable,
                        future_inventory=not args.no_future_inventory,
                        insert=args.insert,
                    )
                )
    except ValidationError as err:
        raise CliError(
            f"not a valid {command} event:\n{validation_lines(err, '(event)')}"
        ) from None
    raise CliError(f"unknown inventory command {command!r}")


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


async def apply_batch(
    client: Client, settings: Settings, site: str, batch: InventoryBatch
) -> FeedResult:
    try:
        return await send_inventory(client, settings, site, batch)
    except WorkflowUpdateFailedError as err:
        raise CliError(f"{allocator_id(site)} refused the events: {err.cause}") from None


def cmd_inventory_event(settings: Settings, args: argparse.Namespace) -> None:
    """Validate first: a bad event is reported even when Temporal is down."""
    event = event_from_args(args)

    async def go() -> FeedResult:
        client = await connect_temporal(settings)
        return await apply_batch(
            client, settings, site_of(settings, args), InventoryBatch(events=(event,))
        )

    print_feed_result(event, asyncio.run(go()))


def read_feed_file(path: Path) -> tuple[list[NumberedEvent], list[LineRejection]]:
    try:
        if str(path) == "-":
            return read_events(sys.stdin)
        with path.open(encoding="utf-8") as lines:
            return read_events(lines)
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise CliError(f"{path} is not UTF-8 text: {err.reason} at byte {err.start}") from None


async def send_feed(
    client: Client,
    settings: Settings,
    site: str,
    events: Sequence[NumberedEvent],
    size: int,
    done: list[LineOutcome],
) -> None:
    """Send `events` in file order, one batch (and one allocator pass) at a time; each
    rejection is printed as it comes back and every outcome is added to `done`."""
    for chunk in chunks(events, size):
        result = await apply_batch(client, settings, site, batch_of(chunk))
        for line in match_outcomes(chunk, result.outcomes):
            if line.outcome.status is EventStatus.REJECTED:
                print(line, file=sys.stderr)
            done.append(line)


def cmd_inventory_load(settings: Settings, args: argparse.Namespace) -> None:
    """Bad lines are named and skipped; good lines are sent in order, in batches. Sending the
    file again is safe: lines already applied come back as duplicates."""
    events, bad = read_feed_file(args.file)
    for line in bad:
        print(line, file=sys.stderr)
    done: list[LineOutcome] = []
    failure: str | None = None

    async def go() -> None:
        client = await connect_temporal(settings)
        await send_feed(client, settings, site_of(settings, args), events, args.chunk_size, done)

    if events:
        try:
            asyncio.run(go())
        except (CliError, RPCError) as err:
            if not done:
                raise
            failure = f"sending stopped at line {events[len(done)].line_no}: {err}"
    summary = summarise(bad, done)
    print(summary)
    if failure:
        raise CliError(
            f"{failure}\nthe lines from there on were not sent; loading the file "
            "again is safe (applied lines come back as duplicates)"
        )
    if summary.rejected:
        raise CliError(
            f"{summary.rejected} of {summary.lines} lines rejected; fix them and load the file "
            "again (applied lines come back as duplicates)"
        )


def allocation_check(args: argparse.Namespace) -> AllocationCheck:
    try:
        return AllocationCheck(
            reason=args.reason, skus=tuple(args.sku), order_ids=tuple(args.order)
        )
    except ValidationError as err:
        raise CliError(f"not a valid check:\n{validation_lines(err, '(check)')}") from None


def counted(n: int, noun: str) -> str:
    """`1 order`, `2 orders`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def print_pass(outcome: PassOutcome) -> None:
    r, d = outcome.report, outcome.delivery
    print(
        f"pass {r.pass_id} on {r.site}: looked at {counted(r.skus, 'sku')}, "
        f"{counted(r.orders_waiting, 'order')} waiting\n"
        f"  released {counted(r.units_released, 'unit')} to "
        f"{counted(r.orders_released, 'order')}, {counted(r.receipt_notices, 'receipt notice')}\n"
        f"  delivered {d.delivered} of {counted(r.signals, 'allotment signal')}; "
        f"{counted(len(d.gone), 'order')} gone" + (f": {', '.join(d.gone)}" if d.gone else "")
    )
    rejected = [o for o in r.outcomes if not o.ok]
    if rejected:
        print(f"  {len(rejected)} pending inventory events were rejected in this pass")


def cmd_check(settings: Settings, args: argparse.Namespace) -> None:
    check = allocation_check(args)

    async def go() -> PassOutcome:
        client = await connect_temporal(settings)
        try:
            return await run_check(client, settings, site_of(settings, args), check)
        except WorkflowUpdateFailedError as err:
            raise CliError(f"check refused: {err.cause}") from None

    print_pass(asyncio.run(go()))


def print_allocator_status(status: AllocatorStatus) -> None:
    check = "a check pending" if status.pending_check else "no check pending"
    print(
        f"{allocator_id(status.site)}: {status.passes} passes, {status.pending_events} events "
        f"and {check}, batch window {status.batch_window.total_seconds():g}s"
    )
    if not status.recent:
        return
    print(
        f"  {'pass':<24} {'at (UTC)':<16} {'events':>6} {'rej.':>5} {'orders':>6} "
        f"{'units':>7} {'notices':>7} {'deliv.':>6} {'gone':>5}  reason"
    )
    for p in status.recent:
        print(
            f"  {p.pass_id:<24} {p.at:%Y-%m-%d %H:%M} {p.events:>6} {p.rejected:>5} "
            f"{p.orders_released:>6} {p.units_released:>7} {p.receipt_notices:>7} "
            f"{p.delivered:>6} {p.gone:>5}  {p.reason}"
        )


async def show_allocator(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    site = site_of(settings, args)
    try:
        status = await allocator_status(client, site)
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise CliError(
                f"no allocator for site {site} yet ({allocator_id(site)}); the first inventory "
                f"event or `backorder check --site {site}` starts it"
            ) from None
        raise
    if args.json:
        print(status.model_dump_json(indent=2))
    else:
        print_allocator_status(status)


def chunk_size_arg(value: str) -> int:
    size = int(value)
    if not 1 <= size <= MAX_EVENTS_PER_BATCH:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_EVENTS_PER_BATCH}")
    return size


def add_inventory_commands(sub: Any) -> None:
    """`inventory ...`, `check` and `allocator status`."""

    def with_site(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--site", type=site_arg, help="the allocator's site (default: settings)")
        return p

    def event(name: str, about: str) -> argparse.ArgumentParser:
        p = with_site(isub.add_parser(name, help=about, description=about))
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
        metavar="YYYY-MM-DD",
        type=date.fromisoformat,
        help="expected date (none: undated)",
    )

    po_update = event("po-update", "a new expected date and/or quantity of a purchase order")
    po_update.add_argument("receipt_id", metavar="RECEIPT_ID")
    po_update.add_argument(
        "--date", metavar="YYYY-MM-DD", type=date.fromisoformat, help="YYYY-MM-DD"
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
    product.add_argument("--not-backorderable", action="store_true")
    product.add_argument("--no-future-inventory", action="store_true")
    product.add_argument("--insert", action="store_true", help="a packing insert")

    load = with_site(
        isub.add_parser("load", help="send a JSON-lines feed file (- = stdin), one event a line")
    )
    load.add_argument("file", metavar="FILE", type=Path)
    load.add_argument(
        "--chunk-size", type=chunk_size_arg, default=CHUNK_SIZE, help="events per batch"
    )
    load.set_defaults(run=cmd_inventory_load)

    check = with_site(
        sub.add_parser("check", help="run an allocation pass now (nothing named: every sku)")
    )
    check.add_argument("--sku", action="append", default=[], help="a sku to look at (repeatable)")
    check.add_argument(
        "--order",
        metavar="ORDER_ID",
        type=order_id_arg,
        action="append",
        default=[],
        help="an order whose skus to look at (repeatable)",
    )
    check.add_argument("--reason", default="operator request")
    check.set_defaults(run=cmd_check)

    allocator = sub.add_parser("allocator", help="inspect a site's allocator")
    asub = allocator.add_subparsers(dest="allocator_command", required=True)
    status = with_site(asub.add_parser("status", help="passes run, pending work, recent passes"))
    status.add_argument("--json", action="store_true", help="print the raw status JSON")
    status.set_defaults(run=with_client(show_allocator))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="backorder", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, help="TOML settings file (default config/backorder.toml)")
    sub = p.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run Temporal, PostgreSQL and the worker locally")
    dev.add_argument("--data-dir", type=Path, help="state directory (default .backorder)")
    dev.add_argument("--temporal-port", type=int)
    dev.add_argument("--ui-port", type=int)
    dev.add_argument("--postgres-port", type=int)
    dev.add_argument("--payments-port", type=int, help="the sandbox payment gateway's port")
    dev.set_defaults(run=cmd_dev)

    order = sub.add_parser("order", help="start, inspect and cancel order workflows")
    osub = order.add_subparsers(dest="order_command", required=True)
    start = osub.add_parser("start", help="start the workflow for an order JSON file (- = stdin)")
    start.add_argument("file", type=Path)
    start.set_defaults(run=cmd_order_start)
    status = osub.add_parser("status", help="query an order's status")
    status.add_argument("order", type=workflow_id_arg, help="order id or workflow id")
    status.add_argument("--json", action="store_true", help="print the raw status JSON")
    status.set_defaults(run=with_client(order_status))
    cancel = osub.add_parser("cancel", help="cancel the order, or some of its lines")
    cancel.add_argument("order", type=workflow_id_arg, help="order id or workflow id")
    cancel.add_argument(
        "--line",
        type=cancel_line_arg,
        action="append",
        default=[],
        help="LINE or LINE:QUANTITY to cancel (repeatable; none: the whole order)",
    )
    cancel.add_argument("--reason", default="customer request")
    cancel.add_argument("--by", default="customer-service", help="who asks (for the log)")
    cancel.set_defaults(run=with_client(order_cancel))
    consent = osub.add_parser("consent", help="the customer accepts the shipping delay (FTC)")
    consent.add_argument("order", type=workflow_id_arg, help="order id or workflow id")
    consent.add_argument("--until", type=date.fromisoformat, help="YYYY-MM-DD (default: offered)")
    consent.add_argument("--channel", default="customer-service")
    consent.set_defaults(run=with_client(order_consent))
    check = osub.add_parser("check", help="ask the allocator to look at the order again")
    check.add_argument("order", type=workflow_id_arg, help="order id or workflow id")
    check.add_argument("--reason", default="operator request")
    check.set_defaults(run=with_client(order_check))
    priority = osub.add_parser("priority", help="serve the order as another customer tier")
    priority.add_argument("order", type=workflow_id_arg, help="order id or workflow id")
    priority.add_argument("tier", help="e.g. vip")
    priority.add_argument("--reason", default="customer service")
    priority.set_defaults(run=with_client(order_priority))

    db = sub.add_parser("db", help="database maintenance")
    dsub = db.add_subparsers(dest="db_command", required=True)
    dsub.add_parser("migrate", help="apply schema migrations").set_defaults(run=cmd_migrate)

    setup = sub.add_parser("setup", help="prepare a self-hosted Temporal cluster")
    ssub = setup.add_subparsers(dest="setup_command", required=True)
    temporal = ssub.add_parser("temporal", help="create the namespace and search attributes")
    temporal.add_argument(
        "--retention-days", type=int, default=30, help="closed-workflow retention"
    )
    temporal.set_defaults(run=with_client(setup_temporal))

    add_inventory_commands(sub)
    add_notification_commands(sub)
    add_payment_commands(sub)

    schema = sub.add_parser("schema", help="print the JSON Schema of a public payload")
    schema.add_argument("name", choices=sorted({*SCHEMAS, *UNION_SCHEMAS}))
    schema.set_defaults(run=cmd_schema)
    return p


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given as command-line flags; validated like every other source."""
    dev = {
        name: value
        for name in ("temporal_port", "ui_port", "postgres_port", "payments_port")
        if (value := getattr(args, name, None)) is not None
    }
    overrides: dict[str, Any] = {"dev": dev} if dev else {}
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = args.data_dir
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings(args.config, **flag_overrides(args))
        args.run(settings, args)
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    except (CliError, EmbeddedError, ServiceUnreachable, MigrationError) as err:
        print(f"backorder: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def cli() -> None:
    """Console-script entry point (`backorder`)."""
    run_and_exit(main)


if __name__ == "__main__":
    cli()
