"""`backorder`: run the service locally and drive order workflows from the command line.

backorder dev                         embedded Temporal + PostgreSQL + worker
backorder order start FILE.json       start the workflow for an order (JSON contract)
backorder order status ORDER_ID       what the workflow knows about the order
backorder order cancel ORDER_ID       withdraw the order (customer service)
backorder db migrate                  apply schema migrations to BACKORDER_DATABASE__DSN
backorder schema NAME                 JSON Schema of a public payload
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from config import Settings, SettingsError, load_settings
from db.migrate import MigrationError, migrate
from domain.order import WORKFLOW_ID_PREFIX, Order, workflow_id_for
from domain.order_book import CancelLine
from embedded.process import EmbeddedError
from runtime.connections import ServiceUnreachable, connect_temporal
from runtime.process_exit import run_and_exit
from runtime.temporal_setup import setup_namespace
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
}


class CliError(Exception):
    """A user-facing failure: printed as one clear message, exit code 1."""


def workflow_id_arg(value: str) -> str:
    """Accept an order id (`A-1`) or a workflow id (`backorder-A-1`)."""
    return value if value.startswith(WORKFLOW_ID_PREFIX) else workflow_id_for(value)


def read_order(path: Path) -> Order:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror}") from None
    try:
        return Order.model_validate_json(text)
    except ValidationError as err:
        raise CliError(f"{path} is not a valid order:\n{validation_lines(err)}") from None


def validation_lines(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(order)"
        lines.append(f"  {field}: {e['msg']}")
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
    print(f"  expected ship date {expected}, FTC {status.ftc_state.value}")
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


def cmd_schema(settings: Settings, args: argparse.Namespace) -> None:
    print(json.dumps(SCHEMAS[args.name].model_json_schema(mode="validation"), indent=2))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="backorder", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, help="TOML settings file (default config/backorder.toml)")
    sub = p.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run Temporal, PostgreSQL and the worker locally")
    dev.add_argument("--data-dir", type=Path, help="state directory (default .backorder)")
    dev.add_argument("--temporal-port", type=int)
    dev.add_argument("--ui-port", type=int)
    dev.add_argument("--postgres-port", type=int)
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

    schema = sub.add_parser("schema", help="print the JSON Schema of a public payload")
    schema.add_argument("name", choices=sorted(SCHEMAS))
    schema.set_defaults(run=cmd_schema)
    return p


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given as command-line flags; validated like every other source."""
    dev = {
        name: value
        for name in ("temporal_port", "ui_port", "postgres_port")
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
