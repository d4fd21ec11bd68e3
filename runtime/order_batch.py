"""Orders entering the service from outside: the check and the start every order gets, alone
(`backorder order start FILE.json`) or as one line of a JSON-lines batch (`FILE.jsonl`).

An order is checked where it enters (`order_from_json`: the contract, and a placed_at at most
a little after now) and started once per order id, ever (`start_backorder`). A batch is read
like an inventory feed file (`runtime.inventory_file.content_lines`): every line is judged on
its own and named by its number, blank lines and `#` comments are skipped, and an order id may
occur once per file (a repeat is a mistake in the file, not a second order). Starts run a few
at a time (`start_orders`), so a file of 10,000 orders never has 10,000 calls in flight.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from config import Settings
from domain.contract import faults
from domain.order import Order, at_boundary
from runtime.inventory_file import content_lines
from workflows.backorder import BackorderWorkflow
from workflows.order_views import static_details, static_summary

STARTS_IN_FLIGHT = 8
"""Starts a batch keeps in flight by default: enough to keep Temporal busy, few enough not to
crowd out everyone else's calls."""
WHOLE_ORDER = "(order)"
"""How a problem of the whole order (malformed JSON, a rule across fields) names its field."""


def order_from_json(text: str, now: dt.datetime) -> Order:
    """The order in `text`, checked as where an order enters at `now` (placed_at may not be
    more than a little after it); a ValidationError names each bad field."""
    return Order.model_validate_json(text, context=at_boundary(now))


def order_problems(err: ValidationError) -> tuple[str, ...]:
    """`lines.0.quantity: Input should be greater than 0`: each problem of an order, one line
    each, named as the single start names them."""
    return tuple(f"{f['field'] or WHOLE_ORDER}: {f['message']}" for f in faults(err))


async def start_backorder(
    client: Client, settings: Settings, order: Order
) -> WorkflowHandle[Any, Any]:
    """Start the order's workflow. One workflow per order id, ever: a second start raises
    WorkflowAlreadyStartedError, whether the first is still running or long ended."""
    return await client.start_workflow(
        BackorderWorkflow.run,
        order,
        id=order.workflow_id,
        task_queue=settings.temporal.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        static_summary=static_summary(order),
        static_details=static_details(order),
    )


# -- reading a batch ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumberedOrder:
    """A good line: the order and where it is in the file (1-based)."""

    line_no: int
    order: Order


@dataclass(frozen=True)
class RefusedLine:
    """A bad line, refused before anything is started: each of its problems."""

    line_no: int
    problems: tuple[str, ...]
    order_id: str | None = None
    """The line's order_id, when it has a string one."""

    def __str__(self) -> str:
        return "\n".join(f"line {self.line_no}: {p}" for p in self.problems)


def read_orders(
    lines: Iterable[str], now: dt.datetime
) -> tuple[list[NumberedOrder], list[RefusedLine]]:
    """The good lines as orders, the bad ones as refusals; both in file order."""
    orders: list[NumberedOrder] = []
    refused: list[RefusedLine] = []
    first_seen: dict[str, int] = {}
    for line_no, text in content_lines(lines):
        try:
            order = order_from_json(text, now)
        except ValidationError as err:
            order_id = _order_id(text)
            refused.append(RefusedLine(line_no, order_problems(err), order_id))
        else:
            order_id = order.order_id
            seen = first_seen.get(order_id)
            if seen is None:
                orders.append(NumberedOrder(line_no, order))
            else:
                why = f"order_id {order_id!r} repeats line {seen}; an order is accepted once"
                refused.append(RefusedLine(line_no, (why,), order_id))
        if order_id is not None:
            first_seen.setdefault(order_id, line_no)
    return orders, refused


def _order_id(text: str) -> str | None:
    """The order_id of a line that is no valid order, when one can be read (for messages)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    order_id = data.get("order_id") if isinstance(data, dict) else None
    return order_id if isinstance(order_id, str) else None


# -- starting a batch -----------------------------------------------------------------------------


class Outcome(StrEnum):
    STARTED = "started"
    ALREADY_STARTED = "already_started"
    """The order id has a workflow already (this file's earlier run, or another way in)."""
    REFUSED = "refused"
    """A bad line, or a start Temporal refused: see the reasons."""
    NOT_SENT = "not_sent"
    """Never offered to Temporal: starting stopped, or --all-or-nothing held it back."""


class LineResult(BaseModel):
    """What became of one line of the batch."""

    line: int
    order_id: str | None
    outcome: Outcome
    workflow_id: str | None = None
    run_id: str | None = None
    reasons: tuple[str, ...] = ()


def refused_result(line: RefusedLine) -> LineResult:
    return LineResult(
        line=line.line_no, order_id=line.order_id, outcome=Outcome.REFUSED, reasons=line.problems
    )


def not_sent(n: NumberedOrder, why: str) -> LineResult:
    return LineResult(
        line=n.line_no,
        order_id=n.order.order_id,
        outcome=Outcome.NOT_SENT,
        workflow_id=n.order.workflow_id,
        reasons=(why,),
    )


class Stopped(Exception):
    """Starting cannot go on: every start would fail as this one did (Temporal unreachable, the
    namespace missing...). `result` is the line's own result."""

    def __init__(self, result: LineResult, why: str) -> None:
        super().__init__(why)
        self.result, self.why = result, why


async def start_orders(
    orders: Sequence[NumberedOrder],
    start: Callable[[NumberedOrder], Awaitable[LineResult]],
    concurrency: int,
    each: Callable[[LineResult], None],
) -> tuple[list[LineResult], str | None]:
    """`start` each order, `concurrency` at a time, telling `each` result as it comes. Once a
    start raises Stopped, no line is offered any more: the rest are not sent. The results in
    file order, and why starting stopped (None: every line was offered)."""
    waiting = iter(orders)
    results: list[LineResult] = []
    stopped: str | None = None

    async def starter() -> None:
        nonlocal stopped
        while stopped is None and (n := next(waiting, None)) is not None:
            try:
                result = await start(n)
            except Stopped as err:
                stopped = stopped or f"starting stopped at line {n.line_no}: {err.why}"
                result = err.result
            results.append(result)
            each(result)

    await asyncio.gather(*(starter() for _ in range(min(concurrency, len(orders)))))
    results += [not_sent(n, stopped or "not sent") for n in waiting]
    return sorted(results, key=lambda r: r.line), stopped


class BatchSummary(BaseModel):
    """What became of every line of the batch; `order start FILE.jsonl --json` prints it."""

    file: str
    lines: int
    """Lines holding an order (blank and comment lines not counted)."""
    started: int
    already_started: int
    refused: int
    not_sent: int
    stopped: str | None = None
    """Why starting stopped before the end of the file (starting it again is safe)."""
    results: list[LineResult]

    @classmethod
    def of(cls, file: str, results: Sequence[LineResult], stopped: str | None) -> BatchSummary:
        count = [r.outcome for r in results].count
        return cls(
            file=file,
            lines=len(results),
            started=count(Outcome.STARTED),
            already_started=count(Outcome.ALREADY_STARTED),
            refused=count(Outcome.REFUSED),
            not_sent=count(Outcome.NOT_SENT),
            stopped=stopped,
            results=sorted(results, key=lambda r: r.line),
        )

    @property
    def all_in(self) -> bool:
        """Every order of the file has its workflow (started now or before)."""
        return self.started + self.already_started == self.lines
