"""The backorder KPIs of the seeds' "Backorder Metrics" for one site and period, from the
PostgreSQL read model (strongly consistent, unlike Temporal's visibility): what is on backorder
now, and what went on backorder, was filled or was cancelled in the period, each against the
seeds' target where they give one. `backorder report` prints what `read_report` returns; the
SQL and the exact definitions are in `runtime.report_queries`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Self

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from config.settings import SiteName
from runtime import report_queries as q
from runtime.order_list import in_minor_units
from runtime.read_rows import UtcInstant

EXPECTED_WITHIN_DAYS = 7
"""The seeds' dashboard: "Expected fulfillment: 80% within 7 days"."""

AGE_BUCKETS: tuple[tuple[int, int | None], ...] = ((0, 6), (7, 13), (14, 29), (30, 59), (60, None))
"""Days on backorder (first, last) per age bucket: within the fill target, past it, past the
FTC rule's usual 30 days, long past it."""

FTC_REASON = "FTC rule"
"""How the rule's cancels are grouped (the workflow records `FTC rule: not shipped by ...`)."""
UNRECORDED_REASON = "not recorded (cancelled before the service kept reasons)"
"""The read model keeps no cancel reason; only the FTC rule's cancels can be told, from the
notices (the `by_rule` step of `report_queries.PERIOD`)."""


@dataclass(frozen=True)
class Target:
    """One of the seeds' KPI targets: met while the figure stays below `limit`."""

    kpi: str
    limit: float
    unit: str

    def text(self) -> str:
        return f"< {self.limit:g} {self.unit}"


BACKORDER_RATE = Target("backorder rate", 5, "%")
FILL_TIME = Target("fill time (mean)", 14, "days")
CANCEL_RATE = Target("cancel rate", 20, "%")


class ReportRefused(ValueError):
    """The request contradicts the read model (the message says how)."""


class ReportRequest(BaseModel):
    """Which site and which days (UTC, both included)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: SiteName
    since: date
    until: date
    by_sku: bool = False
    orders_placed: int | None = Field(default=None, ge=1)
    """The site's orders in the period as the order system counts them (every order, not only
    those that reached this service): the backorder rate's denominator when given."""

    @model_validator(mode="after")
    def _in_order(self) -> Self:
        if self.since > self.until:
            raise ValueError(f"the period starts ({self.since}) after it ends ({self.until})")
        return self


class Share(BaseModel):
    """`part` of `whole`, as a percentage (None when there is no whole to take a share of)."""

    model_config = ConfigDict(frozen=True)

    part: int
    whole: int
    pct: float | None

    @classmethod
    def of(cls, part: int, whole: int) -> Share:
        return cls(part=part, whole=whole, pct=100 * part / whole if whole else None)


class Amount(BaseModel):
    """Money in one currency (amounts in different currencies are never added)."""

    model_config = ConfigDict(frozen=True)

    currency: str
    amount: Decimal

    @field_serializer("amount")
    def _amount_text(self, amount: Decimal) -> str:
        return str(in_minor_units(amount, self.currency))


class Backlog(BaseModel):
    """What is on backorder now (whatever the period)."""

    model_config = ConfigDict(frozen=True)

    orders: int
    units: int
    """Units waiting for stock (open demand) or for a purchase order promised them."""
    value: list[Amount]
    """Those units at their lines' prices, per currency."""
    unpriced_orders: int
    """Orders recorded before their lines were kept (0010): their units count, their value not."""
    oldest_days: int | None
    """Whole days the longest-waiting order has been on backorder."""
    expected_units: Share
    """Units a purchase order due within 7 days covers: promised from it, or free on it for
    the waiting lines first placed."""
    expected_orders: Share
    """Orders all of whose waiting units are expected so."""


class FillTime(BaseModel):
    """Days from going on backorder to filled (completed), of the backorders filled."""

    model_config = ConfigDict(frozen=True)

    filled: int
    mean_days: float | None
    p90_days: float | None


class TargetCheck(BaseModel):
    """A KPI against the seeds' target; `met` None: no figure to judge."""

    model_config = ConfigDict(frozen=True)

    kpi: str
    value: float | None
    target: str
    met: bool | None


class Figures(BaseModel):
    """The KPIs of a site, or of one sku of it."""

    model_config = ConfigDict(frozen=True)

    backlog: Backlog
    backorder_rate: Share
    """Of the orders placed in the period, those that went on backorder."""
    fill_time: FillTime
    """Of the backorders filled in the period."""
    cancel_rate: Share
    """Of the backorders that ended in the period (filled or cancelled), those cancelled."""
    targets: list[TargetCheck]


class SkuFigures(Figures):
    """The KPIs of the orders in which this sku waited."""

    sku: str


class CancelReason(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: str
    orders: int


class FtcFigures(BaseModel):
    """The FTC Mail Order Rule in the period."""

    model_config = ConfigDict(frozen=True)

    delay_notices: int
    renewed_notices: int
    cancelled_orders: int
    """Backorders the rule cancelled (all of them, or the part not shipped) that ended in it."""


class AgeBucket(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    min_days: int
    max_days: int | None
    orders: int


class FillBin(BaseModel):
    """Backorders filled after `days` to `days + 1` days."""

    model_config = ConfigDict(frozen=True)

    days: int
    orders: int


class DayCount(BaseModel):
    """One UTC day: orders that went on backorder, were filled, were cancelled."""

    model_config = ConfigDict(frozen=True)

    day: date
    new: int
    released: int
    cancelled: int


class Report(BaseModel):
    """Everything `backorder report` shows; `--json` prints it as it is."""

    model_config = ConfigDict(frozen=True)

    site: str
    since: date
    until: date
    as_of: UtcInstant
    figures: Figures
    new_backorders: int
    cancel_reasons: list[CancelReason]
    ftc: FtcFigures
    age_buckets: list[AgeBucket]
    fill_days: list[FillBin]
    daily: list[DayCount]
    by_sku: list[SkuFigures] | None
    """Only when asked for (`--by-sku`, and the page's value chart)."""
    orders_placed_given: bool = False
    """The backorder rate's denominator is the order system's count (`--orders-placed`)."""


# -- reading --------------------------------------------------------------------------------------


async def read_report(
    conn: AsyncConnection[Any], wanted: ReportRequest, as_of: datetime | None = None
) -> Report:
    """The report from one read-only snapshot (so its figures agree with each other). `conn`
    must have no transaction open: the snapshot is its own."""
    now = as_of or datetime.now(UTC)
    params = _params(wanted, now)
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        backlog = await _fetch(conn, q.BACKLOG, params)
        period = await _fetch(conn, q.PERIOD, params)
    amounts = backlog["amounts"]
    ended = period["ended"]
    placed = period["placed"]
    if wanted.orders_placed is not None:
        if wanted.orders_placed < placed["backordered"]:
            raise ReportRefused(
                f"orders placed: {wanted.orders_placed:,} is fewer than the "
                f"{placed['backordered']:,} orders placed in the period that went on backorder"
            )
        placed = {**placed, "placed": wanted.orders_placed}
    daily = [DayCount.model_validate(row) for row in period["daily"]]
    return Report(
        site=wanted.site,
        since=wanted.since,
        until=wanted.until,
        as_of=now,
        orders_placed_given=wanted.orders_placed is not None,
        figures=Figures(
            **_figures(
                backlog["backlog"],
                [a for a in amounts if a["sku"] is None],
                placed,
                ended,
            )
        ),
        new_backorders=sum(day.new for day in daily),
        cancel_reasons=[CancelReason.model_validate(r) for r in period["reasons"]],
        ftc=FtcFigures(**period["ftc"], cancelled_orders=ended["ended_by_rule"]),
        age_buckets=_age_buckets(backlog["ages"]),
        fill_days=[FillBin.model_validate(row) for row in period["fill_days"]],
        daily=daily,
        by_sku=_by_sku(backlog, period, amounts) if wanted.by_sku else None,
    )


def _params(wanted: ReportRequest, now: datetime) -> dict[str, Any]:
    return {
        "site": wanted.site,
        "since": wanted.since,
        "until": wanted.until,
        "start": datetime.combine(wanted.since, time(), UTC),
        "end": datetime.combine(wanted.until + timedelta(days=1), time(), UTC),
        "as_of": now,
        "horizon": now.astimezone(UTC).date() + timedelta(days=EXPECTED_WITHIN_DAYS),
        "buckets": [first for first, _ in AGE_BUCKETS],
        "by_sku": wanted.by_sku,
        "ftc_reason": FTC_REASON,
        "unrecorded": UNRECORDED_REASON,
    }


async def _fetch(
    conn: AsyncConnection[Any], query: sql.SQL, params: dict[str, Any]
) -> dict[str, Any]:
    """The statement's one row, as a dict whatever the connection's own row factory."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        row = await cur.fetchone()
    assert row is not None  # a SELECT of subqueries, without FROM: always one row
    return row


# -- assembling -----------------------------------------------------------------------------------

_NO_BACKLOG = {
    "orders": 0,
    "units": 0,
    "expected_units": 0,
    "expected_orders": 0,
    "unpriced_orders": 0,
    "oldest_days": None,
}
_NO_PLACED = {"placed": 0, "backordered": 0}
_NO_ENDED = {"filled": 0, "fill_mean": None, "fill_p90": None, "ended": 0, "cancelled": 0}


def _figures(
    backlog: dict[str, Any],
    amounts: list[dict[str, Any]],
    placed: dict[str, Any],
    ended: dict[str, Any],
) -> dict[str, Any]:
    """The fields of one set of KPIs, from the documents the statements return."""
    fill = FillTime(
        filled=ended["filled"], mean_days=ended["fill_mean"], p90_days=ended["fill_p90"]
    )
    rate = Share.of(placed["backordered"], placed["placed"])
    cancels = Share.of(ended["cancelled"], ended["ended"])
    return {
        "backlog": Backlog(
            orders=backlog["orders"],
            units=backlog["units"],
            value=[Amount(currency=a["currency"], amount=Decimal(a["amount"])) for a in amounts],
            unpriced_orders=backlog["unpriced_orders"],
            oldest_days=backlog["oldest_days"],
            expected_units=Share.of(backlog["expected_units"], backlog["units"]),
            expected_orders=Share.of(backlog["expected_orders"], backlog["orders"]),
        ),
        "backorder_rate": rate,
        "fill_time": fill,
        "cancel_rate": cancels,
        "targets": [
            check(BACKORDER_RATE, rate.pct),
            check(FILL_TIME, fill.mean_days),
            check(CANCEL_RATE, cancels.pct),
        ],
    }


def check(target: Target, value: float | None) -> TargetCheck:
    return TargetCheck(
        kpi=target.kpi,
        value=value,
        target=target.text(),
        met=None if value is None else value < target.limit,
    )


def _age_buckets(rows: list[dict[str, Any]]) -> list[AgeBucket]:
    """Every bucket, empty ones too (`width_bucket` numbers them from 1)."""
    orders = {row["bucket"]: row["orders"] for row in rows}
    return [
        AgeBucket(
            label=f"{first}-{last} days" if last is not None else f"{first}+ days",
            min_days=first,
            max_days=last,
            orders=orders.get(number, 0),
        )
        for number, (first, last) in enumerate(AGE_BUCKETS, 1)
    ]


def _by_sku(
    backlog: dict[str, Any], period: dict[str, Any], amounts: list[dict[str, Any]]
) -> list[SkuFigures]:
    """The same KPIs per sku, for every sku that waits now or had orders in the period."""
    waiting = {row["sku"]: row for row in backlog["backlog_by_sku"]}
    placed = {row["sku"]: row for row in period["placed_by_sku"]}
    ended = {row["sku"]: row for row in period["ended_by_sku"]}
    return [
        SkuFigures(
            sku=sku,
            **_figures(
                waiting.get(sku, _NO_BACKLOG),
                [a for a in amounts if a["sku"] == sku],
                placed.get(sku, _NO_PLACED),
                ended.get(sku, _NO_ENDED),
            ),
        )
        for sku in sorted(waiting.keys() | placed.keys() | ended.keys())
    ]
