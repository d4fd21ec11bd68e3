"""`backorder order status`: what the workflow knows about an order, or why it cannot say.

The status is a query, answered by a worker replaying the workflow. A workflow that failed as
it started (say, started by hand with an invalid order) has no status to give, and nothing
answers when no worker runs: the user is told the workflow's state and why (its failure, or
the unanswered query), exit 1; with `--json`, also as a JSON object (`NoStatus`) on stdout.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich import box
from rich.table import Table
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError

from cli.app import command, flag, typed
from cli.common import with_client, workflow_id_arg, workflow_state
from cli.database import database
from cli.errors import CliError, missing_as, rpc_message, timed_out
from cli.tables import show
from config import Settings
from runtime.exception_queue import ExceptionFilter, QueuedException, list_exceptions
from workflows.backorder import BackorderWorkflow
from workflows.messages import OrderStatus
from workflows.order_views import fulfilment_parts

QUERY_TIMEOUT = timedelta(seconds=10)
"""How long a worker has to answer the status query (Temporal's own limit is 30 s)."""

ENDED_BADLY = {
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.TERMINATED,
    WorkflowExecutionStatus.TIMED_OUT,
    WorkflowExecutionStatus.CANCELED,
}
"""Closed without a result: the failure says more than any query could."""


@dataclass(frozen=True)
class NoStatus:
    """Why a workflow gave no status (`--json` prints it as an object)."""

    workflow_id: str
    workflow_status: str
    error: str

    def __str__(self) -> str:
        return f"no status for {self.workflow_id}: workflow {self.workflow_status}: {self.error}"


async def order_status(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    """The status query's answer as a table (or JSON); no answer is a CliError saying why."""
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(args.order)
    with missing_as(f"no workflow {args.order}"):
        desc = await handle.describe()
    try:
        status = await handle.query(BackorderWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
    except (WorkflowQueryFailedError, RPCError) as err:
        none = await no_status(handle, desc, err)
        if args.json:
            print(json.dumps(asdict(none), indent=2))
        raise CliError(str(none)) from None
    if args.json:
        print(status.model_dump_json(indent=2))
    else:
        print_status(status, desc)
        print_open_exceptions(await open_exceptions(settings, status.order_id))


async def open_exceptions(settings: Settings, order_id: str) -> list[QueuedException] | str:
    """The order's open exceptions from the read model, or why they could not be read (the
    status itself comes from Temporal and is shown either way)."""
    try:
        async with database(settings) as conn:
            return await list_exceptions(conn, ExceptionFilter(order_id=order_id))
    except CliError as err:
        return str(err)


def print_open_exceptions(found: list[QueuedException] | str) -> None:
    """What an operator must look at, under the status: `backorder exceptions show ID`."""
    if isinstance(found, str):
        print(f"  open exceptions: unknown ({found})")
        return
    if not found:
        print("  open exceptions: none")
        return
    print(f"  open exceptions: {len(found)} (backorder exceptions show ID)")
    for e in found:
        detail = " ".join(e.detail.split())
        print(f"    {e.id} {e.severity} {e.kind}: {detail[:100]}{'…' if len(detail) > 100 else ''}")


async def no_status(
    handle: WorkflowHandle[Any, Any],
    desc: WorkflowExecutionDescription,
    err: WorkflowQueryFailedError | RPCError,
) -> NoStatus:
    """The workflow's state and why the query got no status: how the workflow ended if it
    ended badly, else what became of the query."""
    if desc.status in ENDED_BADLY:
        why = await how_it_ended(handle)
    elif isinstance(err, WorkflowQueryFailedError):
        why = f"the status query failed: {err.message}"
    elif timed_out(err):
        why = (
            f"no worker answered the status query within {QUERY_TIMEOUT.total_seconds():g}s "
            f"(is a worker polling task queue {desc.task_queue}?)"
        )
    else:
        why = rpc_message(err)
    return NoStatus(handle.id, workflow_state(desc), why)


async def how_it_ended(handle: WorkflowHandle[Any, Any]) -> str:
    """The failure of a workflow that ended badly, as its result reports it."""
    try:
        await handle.result(follow_runs=False, rpc_timeout=QUERY_TIMEOUT)
    except WorkflowFailureError as err:
        return failure_text(err.cause)
    return "it has a result but no status"


def failure_text(err: BaseException) -> str:
    """`message (Type)` and its causes: `Activity task failed: card declined (Declined)`."""
    parts: list[str] = []
    cause: BaseException | None = err
    while cause is not None:
        text = cause.message if isinstance(cause, FailureError) else str(cause)
        if isinstance(cause, ApplicationError) and cause.type:
            text += f" ({cause.type})"
        parts.append(text or type(cause).__name__)
        cause = cause.__cause__ if isinstance(cause, FailureError) else None
    return ": ".join(parts)


def print_status(status: OrderStatus, desc: WorkflowExecutionDescription) -> None:
    """The order, its lines and shipments, its payment and what the schedule holds next."""
    age = (datetime.now(UTC) - status.backordered_since).days
    print(
        f"order {status.order_number} ({status.order_id}): {status.status.value}, workflow "
        f"{workflow_state(desc)}\n  since {status.backordered_since:%Y-%m-%d %H:%M} UTC "
        f"({age} days), {status.order_value} {status.currency}, tier {status.customer_tier}"
    )
    if status.cancel_reason:
        print(f"  cancelled: {status.cancel_reason}")
    print_lines_and_shipments(status)
    print_payment_and_schedule(status)


def print_lines_and_shipments(status: OrderStatus) -> None:
    """Where each line's units are, then each shipment's."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=True)
    table.add_column("line", overflow="fold")
    table.add_column("sku", overflow="fold")
    for name in ("ordered", "released", "backordered", "cancelled"):
        table.add_column(name, justify="right")
    for ln in status.lines:
        figures = (ln.ordered, ln.released, ln.backordered, ln.cancelled)
        table.add_row(ln.line_id, ln.sku, *(str(n) for n in figures))
    show(table)
    for s in status.shipments:
        when = f" expected {s.expected_date}" if s.expected_date else ""
        units = ", ".join(f"{a.quantity} x {a.sku}" for a in s.allotments)
        extra = "".join(f"; {part}" for part in fulfilment_parts(s))
        print(
            f"  shipment {s.shipment_id}: {s.status.value} from {s.location}{when}: {units}{extra}"
        )


def print_payment_and_schedule(status: OrderStatus) -> None:
    """The money, the expected date against the FTC deadline, and the duties due next."""
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


def status_command() -> click.Command:
    """`order status ORDER [--json]`."""
    return command(
        "status",
        with_client(order_status),
        "query an order's status",
        click.Argument(
            ["order"], type=typed(workflow_id_arg, "order"), help="order id or workflow id"
        ),
        flag("--json", help="print the raw status JSON"),
    )
