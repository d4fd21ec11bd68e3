"""`backorder order ...`: start an order's workflow and send it messages (cancel, consent,
check, priority); `order status` is in `cli.order_status`, `order list` in `cli.order_list`,
a JSON-lines batch of orders to start in `cli.order_batch`.

Each message is built and validated before anything is sent, even before Temporal is reached:
a bad value is reported with its field and why.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import UpdateMethodMultiParam

from cli.app import command, group, typed
from cli.common import (
    counted,
    date_arg,
    file_name,
    read_text,
    run_with_client,
    workflow_id_arg,
    workflow_state,
)
from cli.errors import (
    BadValue,
    CliError,
    first_reason,
    missing_as,
    refused_as,
    validated,
    validation_lines,
)
from cli.order_batch import batch_options, cmd_order_batch, is_batch, single_only
from cli.order_list import list_command
from cli.order_status import status_command
from cli.roles import require_check_role
from config import Settings
from domain.order import Order
from domain.order_book import CancelLine
from runtime.order_batch import WHOLE_ORDER, order_from_json, start_backorder
from workflows.backorder import BackorderWorkflow
from workflows.messages import (
    CancelRequest,
    CheckNow,
    ConsentSignal,
    PriorityChange,
)

T = TypeVar("T")
M = TypeVar("M")
R = TypeVar("R")


def read_order(path: Path) -> Order:
    """The order in a JSON file (`-`: standard input), checked as where an order enters:
    placed_at may not be more than a little after now."""
    text = read_text(path)
    if not text.strip():
        raise CliError(f"{file_name(path)} is empty: expected an order (a JSON object)")
    try:
        return order_from_json(text, datetime.now(UTC))
    except ValidationError as err:
        raise CliError(
            f"{file_name(path)} is not a valid order:\n{validation_lines(err, WHOLE_ORDER)}"
        ) from None


def cmd_order_start(settings: Settings, args: argparse.Namespace) -> None:
    """Validate the file first: a bad order is reported even when Temporal is down. A
    JSON-lines file (or `--batch`) is a batch: `cli.order_batch`."""
    if is_batch(args):
        cmd_order_batch(settings, args)
        return
    single_only(args)
    order = read_order(args.file)
    run_with_client(settings, lambda client: start_order(client, settings, order))


async def start_order(client: Client, settings: Settings, order: Order) -> None:
    """One workflow per order, ever: a second start is refused, not a second workflow."""
    try:
        handle = await start_backorder(client, settings, order)
    except WorkflowAlreadyStartedError:
        raise CliError(
            f"order {order.order_id} already has a workflow ({order.workflow_id}); "
            "an order is accepted once"
        ) from None
    print(f"started {handle.id} (run {handle.result_run_id}) for order {order.order_number}")


def cancel_line_arg(value: str) -> CancelLine:
    """`L1` (all of line L1 not shipped yet) or `L1:2` (two units of it)."""
    line_id, colon, quantity = value.partition(":")
    if not line_id:
        raise BadValue(
            f"{value!r}: no line id (expected LINE or LINE:QUANTITY, QUANTITY a whole number "
            "above 0)"
        )
    if colon and not (quantity.isascii() and quantity.isdigit() and int(quantity) > 0):
        raise BadValue(f"{value!r}: the quantity of line {line_id} must be a whole number above 0")
    try:
        return CancelLine(line_id=line_id, quantity=int(quantity) if colon else None)
    except ValidationError as err:
        raise BadValue(f"{value!r}: not a valid line id: {first_reason(err)}") from None


async def running_handle(client: Client, workflow_id: str) -> WorkflowHandle[Any, Any]:
    """The order's workflow, which must still be running to take a message."""
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id)
    with missing_as(f"no workflow {workflow_id}"):
        desc = await handle.describe()
    if desc.status is not WorkflowExecutionStatus.RUNNING:
        raise CliError(f"{workflow_id} is {workflow_state(desc)}; nothing to change")
    return handle


def send_to_order(
    settings: Settings, workflow_id: str, send: Callable[[WorkflowHandle[Any, Any]], Awaitable[T]]
) -> T:
    """Connect, find the order's running workflow and `send` it a message: its answer."""

    async def go(client: Client) -> T:
        return await send(await running_handle(client, workflow_id))

    return run_with_client(settings, go)


def ask_order(
    settings: Settings,
    workflow_id: str,
    update: UpdateMethodMultiParam[[Any, M], R],
    message: M,
    refused: str,
) -> R:
    """Send the order's running workflow an update: its answer, or `<refused> (<type>):
    <reason>` as a CliError (exit 1)."""
    with refused_as(refused):
        return send_to_order(settings, workflow_id, lambda h: h.execute_update(update, message))


def cmd_order_cancel(settings: Settings, args: argparse.Namespace) -> None:
    """Through the `cancel_order` update: the answer says what was cancelled and given back,
    or why nothing was."""
    request = validated(
        CancelRequest,
        "cancel request",
        lines=tuple(args.line),
        reason=args.reason,
        requested_by=args.by,
    )
    result = ask_order(
        settings, args.order, BackorderWorkflow.cancel_order, request, "cancel refused"
    )
    for part in result.cancelled:
        print(f"cancelled {part.quantity} x {part.sku} (line {part.line_id}), {part.amount}")
    if result.voided:
        print(f"released from the authorisation: {result.voided}")
    if result.refunded:
        print(f"refunded: {result.refunded}")


def cmd_order_consent(settings: Settings, args: argparse.Namespace) -> None:
    """The customer accepts the shipping delay: the `give_consent` update answers the FTC
    state it left, or why there was nothing to consent to (exit 1)."""
    consent = validated(ConsentSignal, "consent", until=args.until, channel=args.channel)
    result = ask_order(
        settings, args.order, BackorderWorkflow.give_consent, consent, "consent refused"
    )
    until = result.consented_until or "an open date"
    print(f"consent recorded for {args.order}: ship by {until} (FTC {result.ftc_state.value})")


def cmd_order_check(settings: Settings, args: argparse.Namespace) -> None:
    """Ask the allocator to look for stock for the order now (the `request_check` update)."""
    require_check_role(settings)
    check = validated(CheckNow, "check", reason=args.reason)
    result = ask_order(
        settings, args.order, BackorderWorkflow.request_check, check, "check refused"
    )
    print(
        f"check requested for {args.order}: {counted(result.backordered_units, 'unit')} of "
        f"{', '.join(result.skus)} waiting"
    )


def cmd_order_priority(settings: Settings, args: argparse.Namespace) -> None:
    """Serve the order as another customer tier (the `change_priority` update)."""
    change = validated(PriorityChange, "priority change", tier=args.tier, reason=args.reason)
    result = ask_order(
        settings, args.order, BackorderWorkflow.change_priority, change, "priority change refused"
    )
    print(f"{args.order} is served as {result.tier} from now on (was {result.previous_tier})")


def user_file() -> click.Path:
    """`type=` of a file the user names (`-`: standard input). Only its name is taken here:
    `read_text` reads it, and a file it cannot read is the command's failure (exit 1)."""
    return click.Path(path_type=Path, allow_dash=True, readable=False)


def order_argument() -> click.Argument:
    """The ORDER a message goes to: an order id or its workflow id (the workflow id)."""
    return click.Argument(
        ["order"], type=typed(workflow_id_arg, "order"), help="order id or workflow id"
    )


def order_commands() -> list[click.Command]:
    """`order start|status|list|cancel|consent|check|priority`."""
    order = group("order", "start, inspect and cancel order workflows")
    order.add_command(
        command(
            "start",
            cmd_order_start,
            "Start the workflow for the order in FILE (- = stdin). A .jsonl or .ndjson file, or "
            "--batch, holds one order a line (blank lines and # comments skipped): every line is "
            "checked first, bad lines are named with their number and not started, good lines "
            "are started, a few at a time, with a progress bar on a terminal (--all-or-nothing: "
            "nothing is started if any line is bad). An order already started is reported as "
            "such, never started twice, so starting a batch again is safe. Exit 0 when every "
            "order of the batch has its workflow.",
            click.Argument(
                ["file"],
                type=user_file(),
                help="an order JSON file, or a JSON-lines file of orders (- = stdin)",
            ),
            *batch_options(),
            short_help="start the workflow for an order JSON file, or one per line of a "
            "JSON-lines file (- = stdin)",
        )
    )
    order.add_command(status_command())
    order.add_command(list_command())
    order.add_command(
        command(
            "cancel",
            cmd_order_cancel,
            "cancel the order, or some of its lines",
            order_argument(),
            click.Option(
                ["--line"],
                type=typed(cancel_line_arg, "line"),
                multiple=True,
                help="LINE or LINE:QUANTITY to cancel (repeatable; none: the whole order)",
            ),
            click.Option(
                ["--reason"], metavar="REASON", default="customer request", show_default=True
            ),
            click.Option(
                ["--by"],
                metavar="BY",
                default="customer-service",
                show_default=True,
                help="who asks (for the log)",
            ),
        )
    )
    order.add_command(
        command(
            "consent",
            cmd_order_consent,
            "the customer accepts the shipping delay (FTC)",
            order_argument(),
            click.Option(
                ["--until"], type=typed(date_arg, "date"), help="YYYY-MM-DD (default: offered)"
            ),
            click.Option(
                ["--channel"], metavar="CHANNEL", default="customer-service", show_default=True
            ),
        )
    )
    order.add_command(
        command(
            "check",
            cmd_order_check,
            "ask the allocator to look at the order again",
            order_argument(),
            click.Option(
                ["--reason"], metavar="REASON", default="operator request", show_default=True
            ),
        )
    )
    order.add_command(
        command(
            "priority",
            cmd_order_priority,
            "serve the order as another customer tier",
            order_argument(),
            click.Argument(["tier"], help="e.g. vip"),
            click.Option(
                ["--reason"], metavar="REASON", default="customer service", show_default=True
            ),
        )
    )
    return [order]
