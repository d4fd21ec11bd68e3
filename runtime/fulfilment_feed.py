"""A warehouse's JSON-lines feed of fulfilment reports (`backorder shipment load FILE`).

Read like an inventory feed file (`runtime.inventory_file.content_lines`): one report a line,
exactly the `FulfilmentReport` contract, every line judged on its own and named by its number;
blank lines and `#` comments skipped. No Temporal and no database for that, so a bad file is
named before anything is sent.

A report names only its shipment (the contract has no order id), so the orders are read from
the read model in one query for the whole file (`orders_of`). Reports of one order go one after
another in file order (a short pick must reach the workflow before the shipped that follows
it); different orders go a few at a time (`send_reports`), so a day's file of 10,000 reports
never has 10,000 updates in flight. Reports are idempotent, so sending a file again is safe.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, get_args

import psycopg
from pydantic import BaseModel, ValidationError

from domain.fulfilment import FulfilmentReport, ShipmentDelivered, ShipmentShipped, ShortPick
from runtime.inventory_file import content_lines

REPORTS_IN_FLIGHT = 8
"""Orders a feed sends reports to at a time, by default."""

Report = ShipmentShipped | ShortPick | ShipmentDelivered
MODELS: dict[str, type[BaseModel]] = {
    m.model_fields["type"].default: m for m in get_args(get_args(FulfilmentReport)[0])
}
"""Each report type's model, read off the contract's union (a new type is picked up)."""
DONE = {"shipped": "shipped", "short_pick": "short-picked", "delivered": "delivered"}
"""How an outcome line says what a report did."""


# -- reading and checking ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReportLine:
    """A good line: the report and where it is in the file (1-based)."""

    line_no: int
    report: Report


@dataclass(frozen=True)
class BadLine:
    """A line refused before anything is sent: why, and the fields at fault when the JSON was
    an object of a known type (`fields`, pydantic's error, for `cli.errors.validation_lines`)."""

    line_no: int
    reason: str
    fields: ValidationError | None = None
    shipment_id: str | None = None


def read_reports(lines: Iterable[str]) -> tuple[list[ReportLine], list[BadLine]]:
    """The good lines as reports, the bad ones as refusals; both in file order."""
    good: list[ReportLine] = []
    bad: list[BadLine] = []
    for line_no, text in content_lines(lines):
        checked = check_line(line_no, text)
        if isinstance(checked, ReportLine):
            good.append(checked)
        else:
            bad.append(checked)
    return good, bad


def check_line(line_no: int, text: str) -> ReportLine | BadLine:
    """One line against the contract. The JSON text itself is validated (as the workflow will
    read it: a count is a JSON integer), by the model its `type` names, so a field's problem is
    named by the field (`carrier`), not by the union's tag."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        return BadLine(line_no, f"malformed JSON: {err.msg} at column {err.colno}")
    except RecursionError:
        return BadLine(line_no, "malformed JSON: nested too deeply")
    if not isinstance(data, dict):
        return BadLine(line_no, f"not a JSON object but {_json_kind(data)}")
    shipment = data.get("shipment_id")
    shipment_id = shipment if isinstance(shipment, str) else None
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in MODELS:
        known = ", ".join(MODELS)
        why = "missing" if kind is None else f"unknown report type {json.dumps(kind)}"
        return BadLine(line_no, f"type: {why} (one of {known})", None, shipment_id)
    try:
        report: Report = MODELS[kind].model_validate_json(text)  # type: ignore[assignment]
    except ValidationError as err:
        return BadLine(line_no, f"not a valid {kind} report", err, shipment_id)
    return ReportLine(line_no, report)


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return json.dumps(value) if value is None or isinstance(value, bool) else "a number"


# -- where each report goes -------------------------------------------------------------------


async def orders_of(
    conn: psycopg.AsyncConnection[dict[str, Any]], shipment_ids: Collection[str]
) -> dict[str, str]:
    """Each shipment's order, from the shipments fulfilment was handed (one query); a shipment
    the read model does not have is left out."""
    cur = await conn.execute(
        "SELECT shipment_id, order_id FROM shipments WHERE shipment_id = ANY(%s)",
        (sorted(shipment_ids),),
    )
    return {str(r["shipment_id"]): str(r["order_id"]) for r in await cur.fetchall()}


class Outcome(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    """The shipment already said so (the same report came before)."""
    REFUSED = "refused"
    """The order refused it (typed), or its workflow is not running."""
    UNKNOWN_SHIPMENT = "unknown_shipment"
    """Fulfilment was never handed the shipment: nothing to send it to."""
    NOT_SENT = "not_sent"
    """Held back: sending stopped, or --all-or-nothing and a bad line."""


@dataclass(frozen=True)
class LineResult:
    """What became of one good line."""

    line_no: int
    report: Report
    outcome: Outcome
    refusal: str | None = None
    """The refusal's type (`FulfilmentReportRefused`)."""
    reason: str = ""

    def __str__(self) -> str:
        shipment, done = self.report.shipment_id, DONE.get(self.report.type, self.report.type)
        said = {
            Outcome.APPLIED: done,
            Outcome.UNCHANGED: f"{done} already (nothing changed)",
            Outcome.REFUSED: f"refused ({self.refusal}): {self.reason}",
            Outcome.NOT_SENT: f"not sent ({self.reason})",
        }
        if self.outcome is Outcome.UNKNOWN_SHIPMENT:
            return f"line {self.line_no}: no shipment {shipment}: fulfilment has not been handed it"
        return f"line {self.line_no}: {shipment}: {said[self.outcome]}"


def by_order(
    reports: Sequence[ReportLine], orders: Mapping[str, str]
) -> tuple[dict[str, list[ReportLine]], list[LineResult]]:
    """The reports per order, each order's in file order; the reports of unknown shipments."""
    groups: dict[str, list[ReportLine]] = {}
    unknown: list[LineResult] = []
    for r in reports:
        order_id = orders.get(r.report.shipment_id)
        if order_id is None:
            unknown.append(LineResult(r.line_no, r.report, Outcome.UNKNOWN_SHIPMENT))
        else:
            groups.setdefault(order_id, []).append(r)
    return groups, unknown


def not_sent(r: ReportLine, why: str) -> LineResult:
    return LineResult(r.line_no, r.report, Outcome.NOT_SENT, reason=why)


# -- sending ------------------------------------------------------------------------------------


class Stopped(Exception):
    """Sending cannot go on: every report would fail as this one did (Temporal unreachable,
    timed out, the namespace missing). `result` is the line's own result."""

    def __init__(self, result: LineResult, why: str) -> None:
        super().__init__(why)
        self.result, self.why = result, why


Send = Callable[[str, ReportLine], Awaitable[LineResult]]
"""Sends one report to its order (the order id) and says what became of it."""


async def send_reports(
    groups: Mapping[str, Sequence[ReportLine]],
    send: Send,
    concurrency: int,
    each: Callable[[LineResult], None],
) -> tuple[list[LineResult], str | None]:
    """`send` each order's reports one after another in file order, `concurrency` orders at a
    time, telling `each` result as it comes. Once a send raises Stopped, no report is sent any
    more. The results in file order, and why sending stopped (None: everything was offered)."""
    waiting = iter(groups.items())
    results: list[LineResult] = []
    stopped: str | None = None
    halted = "not sent"  # what a report held back says: where sending stopped

    async def sender() -> None:
        nonlocal stopped, halted
        while stopped is None and (group := next(waiting, None)) is not None:
            order_id, lines = group
            for r in lines:
                if stopped is not None:
                    result = not_sent(r, halted)
                else:
                    try:
                        result = await send(order_id, r)
                    except Stopped as err:
                        halted = f"sending stopped at line {r.line_no}"
                        stopped = f"{halted}: {err.why}"
                        result = err.result
                results.append(result)
                each(result)

    await asyncio.gather(*(sender() for _ in range(min(concurrency, len(groups)))))
    results += [not_sent(r, halted) for _, lines in waiting for r in lines]
    return sorted(results, key=lambda x: x.line_no), stopped


# -- the tally ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedSummary:
    applied: int
    unchanged: int
    refused: int
    unknown: int
    not_sent: int
    bad: int

    @classmethod
    def of(cls, results: Sequence[LineResult], bad: int) -> FeedSummary:
        count = [r.outcome for r in results].count
        return cls(
            applied=count(Outcome.APPLIED),
            unchanged=count(Outcome.UNCHANGED),
            refused=count(Outcome.REFUSED),
            unknown=count(Outcome.UNKNOWN_SHIPMENT),
            not_sent=count(Outcome.NOT_SENT),
            bad=bad,
        )

    @property
    def sent(self) -> int:
        return self.applied + self.unchanged + self.refused

    @property
    def lines(self) -> int:
        """Lines holding something (blank and comment lines not counted)."""
        return self.sent + self.unknown + self.not_sent + self.bad

    @property
    def all_in(self) -> bool:
        """Every line's report is in its order's book (applied now or before)."""
        return self.applied + self.unchanged == self.lines

    def __str__(self) -> str:
        def n(count: int, noun: str) -> str:
            return f"{count} {noun}{'' if count == 1 else 's'}"

        held = f", {self.not_sent} not sent" if self.not_sent else ""
        return (
            f"{self.sent} sent: {self.applied} applied, {self.unchanged} unchanged, "
            f"{self.refused} refused; {n(self.unknown, 'unknown shipment')}, "
            f"{n(self.bad, 'bad line')}{held}"
        )
