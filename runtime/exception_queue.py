"""The operators' exception queue in PostgreSQL (`exceptions`): what is open, one exception,
and resolving it. `backorder exceptions` prints what these functions return.

The activities write the rows, once per idempotency key; operators only read and resolve them.
A resolution records who and why and keeps the row: the allocator raises an exception again
only while none of the same cause is open for the order, so a resolved row is history. Each
function takes the caller's connection; values travel only as query parameters.
"""

from __future__ import annotations

from typing import Annotated, Any

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row, dict_row
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from activities.contracts import Severity
from runtime.read_rows import UtcInstant

SEVERITY_ORDER = (Severity.HIGH, Severity.MEDIUM, Severity.LOW)
"""How the queue is worked: the worst first."""

MAX_LIMIT = 10_000
"""The most exceptions one listing returns."""

_BIGINT_MAX = 2**63 - 1

ExceptionRef = int | str
"""An exception as an operator names it: its number (`42`) or its key."""


def exception_ref(text: str) -> ExceptionRef:
    """`42` is a number, anything else a key (keys are `<workflow id>/<step>...`, never all
    digits); a number past the column's range is refused (ValueError)."""
    if not (text.isascii() and text.isdigit()):
        return text
    number = int(text)
    if number > _BIGINT_MAX:
        raise ValueError(f"{text} is past the largest exception number")
    return number


_SAYS_SOMETHING = StringConstraints(strip_whitespace=True, min_length=1)


class QueuedException(BaseModel):
    """One exception, with what the read model knows of its order (None: the read model has no
    row for the order)."""

    model_config = ConfigDict(frozen=True)

    id: int
    key: str
    order_id: str
    kind: str
    severity: Severity
    detail: str
    raised_at: UtcInstant
    resolved_at: UtcInstant | None
    resolved_by: str | None
    resolution: str | None
    site: str | None
    order_number: str | None
    order_status: str | None

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class ExceptionFilter(BaseModel):
    """Which exceptions to list. A filter left at its default filters nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    severities: tuple[Severity, ...] = ()
    kinds: tuple[str, ...] = ()
    order_id: str | None = None
    site: str | None = None
    """The order's site in the read model (an order it does not know matches no site)."""
    include_resolved: bool = False
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 50


class QueueCounts(BaseModel):
    """How many exceptions match a filter, whatever its limit."""

    model_config = ConfigDict(frozen=True)

    by_severity: dict[Severity, int]
    open: int
    resolved: int

    @property
    def total(self) -> int:
        return self.open + self.resolved


class Resolution(BaseModel):
    """Who resolved and why: both required (so does the table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: Annotated[str, _SAYS_SOMETHING, Field(max_length=200)]
    note: Annotated[str, _SAYS_SOMETHING, Field(max_length=2000)]


class ResolveOutcome(BaseModel):
    """What resolving one exception did: `exception` as it is now (None: no such exception);
    `resolved` False when it had been resolved before (and was left as it was)."""

    model_config = ConfigDict(frozen=True)

    ref: ExceptionRef
    exception: QueuedException | None
    resolved: bool


_FROM = sql.SQL("FROM exceptions e LEFT JOIN orders o ON o.order_id = e.order_id")
"""Each exception with its order's read-model row, if the read model has one."""

_SELECT = sql.SQL("""
SELECT e.id, e.key, e.order_id, e.kind, e.severity, e.detail, e.raised_at,
       e.resolved_at, e.resolved_by, e.resolution,
       o.site, o.order_number, o.status AS order_status
  {from_}
""").format(from_=_FROM)

_CONDITIONS: dict[str, sql.SQL] = {
    "severities": sql.SQL("e.severity = ANY(%(severities)s)"),
    "kinds": sql.SQL("e.kind = ANY(%(kinds)s)"),
    "order_id": sql.SQL("e.order_id = %(order_id)s"),
    "site": sql.SQL("o.site = %(site)s"),
}
"""The WHERE clause of each filter, by its field in `ExceptionFilter`."""

_OPEN = sql.SQL("e.resolved_at IS NULL")

_WORK_ORDER = sql.SQL("""
e.resolved_at IS NOT NULL, array_position(%(rank)s::text[], e.severity), e.raised_at, e.id
""")
"""Open before resolved, the worst first (`rank`: SEVERITY_ORDER), then the oldest."""

_COUNTS = sql.SQL("""
SELECT e.severity, count(*) FILTER (WHERE e.resolved_at IS NULL)::int AS open,
       count(*) FILTER (WHERE e.resolved_at IS NOT NULL)::int AS resolved
  {from_}
 WHERE {where}
 GROUP BY e.severity
""")


def _where(wanted: ExceptionFilter) -> tuple[sql.Composable, dict[str, Any]]:
    """The filter's WHERE clause and its parameters (an empty filter: `true`)."""
    given = wanted.model_dump(mode="json", include=set(_CONDITIONS), exclude_defaults=True)
    tests = [_CONDITIONS[name] for name in given]
    if not wanted.include_resolved:
        tests.append(_OPEN)
    return sql.SQL(" AND ").join(tests) if tests else sql.SQL("true"), given


async def list_exceptions(
    conn: AsyncConnection[Any], wanted: ExceptionFilter
) -> list[QueuedException]:
    """The matching exceptions: open before resolved, then the worst severity first, then the
    oldest first (the order an operator works them in)."""
    where, params = _where(wanted)
    query = sql.SQL("{select} WHERE {where} ORDER BY {order} LIMIT %(limit)s").format(
        select=_SELECT, where=where, order=_WORK_ORDER
    )
    params |= {"limit": wanted.limit, "rank": [s.value for s in SEVERITY_ORDER]}
    async with conn.cursor(row_factory=class_row(QueuedException)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def count_exceptions(conn: AsyncConnection[Any], wanted: ExceptionFilter) -> QueueCounts:
    """How many match, by severity and open or resolved: the summary under a listing that its
    limit may have cut."""
    where, params = _where(wanted)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_COUNTS.format(from_=_FROM, where=where), params)
        rows = await cur.fetchall()
    return QueueCounts(
        by_severity={r["severity"]: r["open"] + r["resolved"] for r in rows},
        open=sum(r["open"] for r in rows),
        resolved=sum(r["resolved"] for r in rows),
    )


def _matches(ref: ExceptionRef) -> sql.SQL:
    """The test for one exception by its number or its key (parameter `ref`)."""
    return sql.SQL("e.id = %(ref)s" if isinstance(ref, int) else "e.key = %(ref)s")


async def find_exception(conn: AsyncConnection[Any], ref: ExceptionRef) -> QueuedException | None:
    """One exception, open or resolved; None if there is none by that number or key."""
    async with conn.cursor(row_factory=class_row(QueuedException)) as cur:
        await cur.execute(_SELECT + sql.SQL(" WHERE ") + _matches(ref), {"ref": ref})
        return await cur.fetchone()


async def resolve_exception(
    conn: AsyncConnection[Any], ref: ExceptionRef, resolution: Resolution
) -> ResolveOutcome:
    """Resolve one open exception now. On an idle connection this commits on its own, so
    resolving several never holds one row while waiting for another. One resolved before is
    left as it was: whoever resolved it first, even a moment ago in another session, keeps
    their resolution."""
    async with conn.transaction():
        cur = await conn.execute(
            sql.SQL(
                "UPDATE exceptions e SET resolved_at = now(), resolved_by = %(by)s,"
                " resolution = %(note)s WHERE {} AND e.resolved_at IS NULL"
            ).format(_matches(ref)),
            {"ref": ref, "by": resolution.by, "note": resolution.note},
        )
        resolved = cur.rowcount == 1
        after = await find_exception(conn, ref)
    return ResolveOutcome(ref=ref, exception=after, resolved=resolved)
