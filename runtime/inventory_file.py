"""Inventory feed files: one JSON event per line (`backorder inventory load FILE`).

Pure functions, no Temporal. Every line is judged on its own: a bad line is named with its
number and the reason, the good lines around it are kept and sent. A line is held to the exact
contract, as all new input is: a count is a JSON integer, so `"quantity": "2"` is refused
(`line 3: quantity: must be a JSON integer such as 2, not "2"`), never read as 2. Blank lines
and lines starting with `#` are skipped. An event id may occur once per file (the allocator
applies an id once, so a repeat is a mistake in the file, not a second event). Good events go
out in chunks, one `InventoryBatch` each, in file order; the allocator's outcomes come back by
event id and are matched to the lines they came from.

What the passes that applied the file released, and to which orders, is read back from each
pass's allotment signals (the `allotment_deliveries` outbox, written in the pass's own
transaction): `releases_of` turns those rows into one `Release` per order line and stock row.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from domain.inventory import (
    EVENT_TYPES,
    MAX_EVENTS_PER_BATCH,
    EventOutcome,
    EventStatus,
    InventoryBatch,
    InventoryEvent,
    validation_reason,
)
from workflows.messages import AllotmentSignal

EVENT: TypeAdapter[InventoryEvent] = TypeAdapter(InventoryEvent)
CHUNK_SIZE = 500
"""Events per batch sent: half the most a batch may hold."""
NO_OUTCOME = "the allocator returned no outcome for this event (send the file again)"


@dataclass(frozen=True)
class NumberedEvent:
    """A good line: the event and where it is in the file (1-based)."""

    line_no: int
    event: InventoryEvent


@dataclass(frozen=True)
class LineRejection:
    """A bad line, refused before sending: `line 7: quantity: Input should be greater than 0`."""

    line_no: int
    reason: str
    event_id: str | None = None
    """The line's event_id, when it has a string one."""

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.reason}"


@dataclass(frozen=True)
class LineOutcome:
    """What the allocator did with the event of one line."""

    line_no: int
    outcome: EventOutcome

    @property
    def event_id(self) -> str:
        return self.outcome.event_id

    @property
    def detail(self) -> str:
        """The allocator's reason, else its rejection code, else the status."""
        o = self.outcome
        return o.reason or (o.rejection.value if o.rejection else o.status.value)

    def __str__(self) -> str:
        return f"line {self.line_no} (event {self.event_id}): {self.detail}"


class BadLine(ValueError):
    """One line is not an event; the message says why."""


def parse_line(text: str) -> InventoryEvent:
    """The event on one line, or BadLine naming what is wrong with it."""
    return _validate(text, _decode(text))


def _decode(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise BadLine(f"malformed JSON: {err.msg} at column {err.colno}") from None
    except RecursionError:
        raise BadLine("malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise BadLine(f"not a JSON object but {_json_kind(data)}")
    return data


def _validate(text: str, data: dict[str, Any]) -> InventoryEvent:
    """Validated from the JSON text itself (as the allocator will read it), not from `data`."""
    try:
        return EVENT.validate_json(text)
    except ValidationError as err:
        raise BadLine(validation_reason(err, data.get("type"))) from None


def content_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Each line that holds something, with its number in the file (1-based, every line
    counted): a leading BOM and the line ending dropped, blank lines and `#` comments skipped.
    The line is otherwise kept as it is, so JSON columns in messages count from its first
    character. Order batches (`runtime.order_batch`) are read the same way."""
    for line_no, raw in enumerate(lines, start=1):
        text = (raw.removeprefix("\ufeff") if line_no == 1 else raw).rstrip("\r\n")
        if text.strip() and not text.lstrip().startswith("#"):
            yield line_no, text


def read_events(
    lines: Iterable[str],
) -> tuple[list[NumberedEvent], list[LineRejection]]:
    """The good lines as events, the bad ones as rejections; both in file order."""
    events: list[NumberedEvent] = []
    rejected: list[LineRejection] = []
    first_seen: dict[str, int] = {}
    for line_no, text in content_lines(lines):
        event_id: str | None = None
        try:
            data = _decode(text)
            if isinstance(data.get("event_id"), str):
                event_id = data["event_id"]
            event = _validate(text, data)
        except BadLine as err:
            rejected.append(LineRejection(line_no, str(err), event_id))
        else:
            seen = first_seen.get(event.event_id)
            if seen is not None:
                reason = f"event_id {event.event_id!r} repeats line {seen}; an id is applied once"
                rejected.append(LineRejection(line_no, reason, event.event_id))
            else:
                events.append(NumberedEvent(line_no, event))
        if event_id is not None:
            first_seen.setdefault(event_id, line_no)
    return events, rejected


def chunks(
    events: Sequence[NumberedEvent], size: int = CHUNK_SIZE
) -> Iterator[list[NumberedEvent]]:
    """`events` in file order, `size` at a time (the last chunk may be shorter)."""
    if not 1 <= size <= MAX_EVENTS_PER_BATCH:
        raise ValueError(f"chunk size must be 1..{MAX_EVENTS_PER_BATCH}, not {size}")
    for start in range(0, len(events), size):
        yield list(events[start : start + size])


def batch_of(chunk: Sequence[NumberedEvent]) -> InventoryBatch:
    return InventoryBatch(events=tuple(n.event for n in chunk))


def match_outcomes(
    sent: Sequence[NumberedEvent], outcomes: Iterable[EventOutcome]
) -> list[LineOutcome]:
    """The allocator's outcomes by line, in file order. An event the answer does not mention
    counts as rejected (it may or may not have been applied: sending it again is safe)."""
    by_id = {o.event_id: o for o in outcomes}
    matched = []
    for n in sent:
        outcome = by_id.get(n.event.event_id) or EventOutcome(
            event_id=n.event.event_id, status=EventStatus.REJECTED, reason=NO_OUTCOME
        )
        matched.append(LineOutcome(n.line_no, outcome))
    return matched


@dataclass(frozen=True)
class LoadSummary:
    applied: int
    duplicate: int
    rejected: int
    lines: int
    """Lines holding an event (blank and comment lines not counted)."""

    def __str__(self) -> str:
        return (
            f"applied {self.applied}, duplicate {self.duplicate}, rejected {self.rejected} "
            f"of {self.lines} lines"
        )


def summarise(bad: Sequence[LineRejection], outcomes: Sequence[LineOutcome]) -> LoadSummary:
    """Counts for the last line of `inventory load`: bad lines count as rejected."""
    status = [o.outcome.status for o in outcomes]
    return LoadSummary(
        applied=status.count(EventStatus.APPLIED),
        duplicate=status.count(EventStatus.DUPLICATE),
        rejected=status.count(EventStatus.REJECTED) + len(bad),
        lines=len(bad) + len(outcomes),
    )


class Release(BaseModel):
    """Units one pass released to one order line from one stock row (or purchase order)."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    line_id: str
    sku: str
    units: int
    location: str
    receipt_id: str | None = None
    """Promised from this purchase order (still to come unless received meanwhile)."""
    expected_date: dt.date | None = None
    """When that purchase order is expected: the units ship then, not now."""
    pass_id: str
    given_back: bool = False
    """The order's workflow had ended when the units reached it: they were freed again."""


def releases_of(deliveries: Iterable[tuple[str, str, Any, str | None]]) -> list[Release]:
    """The releases in allotment signals: rows of (pass id, order id, the signal as JSON, the
    delivery's outcome), as the `allotment_deliveries` table keeps them. A signal that only
    brings news of receipts releases nothing. Sorted by order, line and where from."""
    units: Counter[Release] = Counter()
    for pass_id, order_id, signal, outcome in deliveries:
        release = AllotmentSignal.model_validate(signal).release
        for a in release.allotments if release else ():
            where = Release(
                order_id=order_id, line_id=a.line_id, sku=a.sku, units=0, location=a.location,
                receipt_id=a.receipt_id, expected_date=a.expected_date, pass_id=pass_id,
                given_back=outcome == "gone",
            )  # fmt: skip
            units[where] += a.quantity
    return sorted(
        (r.model_copy(update={"units": n}) for r, n in units.items()),
        key=lambda r: (r.order_id, r.line_id, r.sku, r.location, r.receipt_id or "", r.pass_id),
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


__all__ = [
    "CHUNK_SIZE",
    "EVENT",
    "EVENT_TYPES",
    "BadLine",
    "LineOutcome",
    "LineRejection",
    "LoadSummary",
    "NumberedEvent",
    "Release",
    "batch_of",
    "chunks",
    "content_lines",
    "match_outcomes",
    "parse_line",
    "read_events",
    "releases_of",
    "summarise",
    "validation_reason",
]
