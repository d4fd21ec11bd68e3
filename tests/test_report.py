"""`backorder report` against a real PostgreSQL read model and ledger.

A planted site (`east`) of orders in every state: waiting for stock or for a purchase order,
filled, cancelled (by the FTC rule and otherwise), never backordered, one written the way rows
were before 0010 (no history, no lines), and a second site whose demand shares the stock. Rows
go in through the real `record_order` activity (so the history and lines are its own) plus the
ledger and outbox rows the other activities write. Every expected figure is computed here, in
plain Python, from the planted `WORLD`, never copied from what the report printed.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import ActivityEnvironment

import starter
from activities.read_model import ReadModelActivities
from db.migrate import migrate
from domain.order import Order
from embedded.postgres import EmbeddedPostgres
from runtime.report import (
    AGE_BUCKETS,
    FTC_REASON,
    UNRECORDED_REASON,
    Report,
    ReportRequest,
    TargetCheck,
    check,
    read_report,
)
from runtime.report import FILL_TIME as FILL_TARGET
from runtime.report_html import AGE_TITLE, DAILY_TITLE, FILL_TITLE, VALUE_TITLE
from workflows.messages import BackorderStatus, OrderRecord

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()
SINCE, UNTIL = TODAY - timedelta(days=29), TODAY  # the default: the last 30 days
START = datetime.combine(SINCE, datetime.min.time(), UTC)
HORIZON = TODAY + timedelta(days=7)
ON = {"backordered", "awaiting_receipt"}
D, H, M = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)


@dataclass
class Planted:
    """One order as the test plants it; every time is an offset from when it was placed."""

    order_id: str
    placed_ago: timedelta
    lines: list[tuple[str, str, int, str]]
    """(line id, sku, quantity, unit price)."""
    statuses: list[tuple[str, timedelta]] = field(default_factory=list)
    """What `record_order` was told, in order."""
    site: str = "east"
    currency: str = "USD"
    before_0010: str | None = None
    """The status of a row written as before 0010: no history, no lines, no backordered_at."""
    waiting: list[tuple[str, str, int]] = field(default_factory=list)
    """Open demand: (line id, sku, units)."""
    promised: list[tuple[str, str, int, str, str]] = field(default_factory=list)
    """Reservations from a purchase order: (line id, sku, units, receipt, source)."""
    notices: list[tuple[str, str, timedelta, dict[str, Any]]] = field(default_factory=list)
    """(kind, key step, offset, payload)."""
    cancel_reason: str | None = None
    """The reason the workflow recorded with `cancelled` (None: one recorded before reasons)."""

    @property
    def placed(self) -> datetime:
        return NOW - self.placed_ago

    @property
    def status(self) -> str:
        return self.before_0010 or self.statuses[-1][0]

    @property
    def backordered_at(self) -> datetime | None:
        return min((self.placed + at for s, at in self.statuses if s in ON), default=None)

    @property
    def ended_at(self) -> datetime | None:
        return self.placed + self.statuses[-1][1] if self.status not in ON else None

    @property
    def skus(self) -> set[str]:
        return {sku for _, sku, _, _ in self.lines}

    def price(self, line_id: str) -> Decimal | None:
        if self.before_0010:
            return None
        return next(Decimal(p) for lid, _, _, p in self.lines if lid == line_id)


def items(*pairs: tuple[str, int]) -> dict[str, Any]:
    return {"items": [{"sku": sku, "quantity": q} for sku, q in pairs]}


def respond(at: datetime | None) -> dict[str, Any]:
    return {"respond_by": at.isoformat() if at else None, "items": []}


BO = "backordered"
AR = "awaiting_receipt"

WORLD = [
    # -- waiting now -----------------------------------------------------------------------------
    Planted(  # waits for 3 of 5; a purchase order due in exactly 7 days covers 2 of them
        "W1",
        10 * D + 3 * H,
        [("1", "KTP", 5, "10.00")],
        [(BO, 5 * M)],
        waiting=[("1", "KTP", 3)],
        notices=[("on_backorder", "accept/on-backorder", 5 * M, items(("KTP", 3)))],
    ),
    Planted(  # its mugs are promised from a purchase order due in 3 days
        "W2",
        20 * D + 3 * H,
        [("1", "MUG", 2, "25.00"), ("2", "KTP", 1, "10.00")],
        [(BO, 5 * M), (AR, 2 * D)],
        promised=[  # its KTP came on a purchase order and left: a release, not a wait
            ("1", "MUG", 2, "PO-SOON", "future"),
            ("2", "KTP", 1, "PO-OLD", "current"),
        ],
        notices=[("on_backorder", "accept/on-backorder", 5 * M, items(("MUG", 2)))],
    ),
    Planted(  # recorded by a worker from before 0010: no history, no lines
        "W3",
        5 * D + 3 * H,
        [("1", "TEA", 4, "500")],
        currency="JPY",
        before_0010=BO,
        waiting=[("1", "TEA", 4)],
    ),
    Planted(  # after another site's older order, 1 of the 2 free units due soon is its
        "W4",
        40 * D + 3 * H,
        [("1", "TEA", 3, "1000")],
        [(BO, 5 * M)],
        currency="JPY",
        waiting=[("1", "TEA", 3)],
        notices=[
            ("on_backorder", "accept/on-backorder", 5 * M, items(("TEA", 3))),
            ("ftc_delay_option", "ftc/1", 37 * D, respond(NOW + 27 * D)),
        ],
    ),
    Planted(  # promised from a purchase order due in 10 days: not expected soon
        "W5",
        65 * D + 3 * H,
        [("1", "KTP", 2, "10.00")],
        [(BO, 5 * M), (AR, 30 * D)],
        promised=[("1", "KTP", 2, "PO-LATE", "future")],
        notices=[
            ("on_backorder", "accept/on-backorder", 5 * M, items(("KTP", 2))),
            ("ftc_delay_option", "ftc/1", 27 * D, respond(None)),
            ("ftc_renewed_notice", "ftc/2", 60 * D, respond(NOW + 2 * D)),
        ],
    ),
    # -- ended in the period ---------------------------------------------------------------------
    Planted(  # filled in 4.5 days; its mug shipped at once
        "F1",
        15 * D + 3 * H,
        [("1", "KTP", 1, "10.00"), ("2", "MUG", 1, "25.00")],
        [(BO, 5 * M), ("completed", 5 * M + 4 * D + 12 * H)],
        notices=[("on_backorder", "accept/on-backorder", 5 * M, items(("KTP", 1)))],
    ),
    Planted(  # waited on a purchase order that came: filled in 12.25 days
        "F2",
        25 * D + 3 * H,
        [("1", "KTP", 2, "10.00")],
        [(BO, 5 * M), (AR, 3 * D), ("completed", 5 * M + 12 * D + 6 * H)],
        promised=[("1", "KTP", 2, "PO-OLD", "current")],
        notices=[("on_backorder", "accept/on-backorder", 5 * M, items(("KTP", 2)))],
    ),
    Planted(  # placed before the period, filled in it after 40 days; consented past the
        # FTC notice's date, and only its acceptance cancelled a line: not the rule's cancel
        "F3",
        60 * D + 3 * H,
        [("1", "MUG", 1, "25.00"), ("2", "INS", 1, "0.00")],
        [(BO, 5 * M), ("completed", 5 * M + 40 * D)],
        notices=[
            ("cancelled", "accept/cancelled", 4 * M, items(("INS", 1))),
            ("on_backorder", "accept/on-backorder", 5 * M, items(("MUG", 1))),
            ("ftc_delay_option", "ftc/1", 27 * D, respond(NOW - 25 * D)),
        ],
    ),
    Planted(  # filled before the period: in no figure of it
        "F4",
        70 * D + 3 * H,
        [("1", "KTP", 1, "10.00")],
        [(BO, 5 * M), ("completed", 30 * D)],
        notices=[("on_backorder", "accept/on-backorder", 5 * M, items(("KTP", 1)))],
    ),
    Planted(  # cancelled by the customer after 5 days
        "C1",
        12 * D + 3 * H,
        [("1", "MUG", 1, "25.00")],
        [(BO, 5 * M), ("cancelled", 5 * D)],
        notices=[
            ("on_backorder", "accept/on-backorder", 5 * M, items(("MUG", 1))),
            ("cancelled", "cancel-1/notice", 5 * D, items(("MUG", 1))),
        ],
        cancel_reason="changed my mind: found it elsewhere",
    ),
    Planted(  # cancelled by the FTC rule when its delay notice's date came
        "C2",
        61 * D + 3 * H,
        [("1", "TEA", 1, "9.00")],
        [(BO, 5 * M), ("cancelled", 60 * D)],
        notices=[
            ("on_backorder", "accept/on-backorder", 5 * M, items(("TEA", 1))),
            ("ftc_delay_option", "ftc/1", 27 * D, respond(NOW - 61 * D - 3 * H + 60 * D)),
            ("cancelled", "cancel-1/notice", 60 * D, items(("TEA", 1))),
        ],
        cancel_reason="FTC rule: not shipped by the deadline without consent; refund by x",
    ),
    Planted(  # part shipped; the FTC rule cancelled the rest: ends completed
        "C3",
        62 * D + 3 * H,
        [("1", "KTP", 3, "10.00")],
        [(BO, 5 * M), ("completed", 60 * D)],
        notices=[
            ("on_backorder", "accept/on-backorder", 5 * M, items(("KTP", 2))),
            ("ftc_delay_option", "ftc/1", 27 * D, respond(NOW - 62 * D - 3 * H + 60 * D)),
            ("cancelled", "cancel-1/notice", 60 * D, items(("KTP", 2))),
        ],
    ),
    Planted(  # consented to wait past its first notice's date, cancelled before the renewed
        # notice's: the customer's cancel, not the rule's
        "C4",
        45 * D + 3 * H,
        [("1", "MUG", 1, "25.00")],
        [(BO, 5 * M), ("cancelled", 40 * D)],
        notices=[
            ("on_backorder", "accept/on-backorder", 5 * M, items(("MUG", 1))),
            ("ftc_delay_option", "ftc/1", 27 * D, respond(NOW - 15 * D - 3 * H)),
            ("ftc_renewed_notice", "ftc/2", 35 * D, respond(NOW + 5 * D)),
            ("cancelled", "cancel-1/notice", 40 * D, items(("MUG", 1))),
        ],
    ),
    # -- never on backorder ----------------------------------------------------------------------
    Planted("N1", 8 * D + 3 * H, [("1", "KTP", 1, "10.00")], [("completed", 1 * M)]),
    Planted(
        "N2",
        3 * D + 3 * H,
        [("1", "KTP", 1, "10.00")],
        [("cancelled", 1 * M)],
        notices=[("cancelled", "accept/cancelled", 1 * M, items(("KTP", 1)))],
    ),
    # -- another site: not in east's figures, but its demand queues for the same stock ------------
    Planted(
        "X1",
        50 * D + 3 * H,
        [("1", "TEA", 1, "7.00")],
        [(BO, 5 * M)],
        site="west",
        waiting=[("1", "TEA", 1)],
        notices=[("on_backorder", "accept/on-backorder", 5 * M, items(("TEA", 1)))],
    ),
    Planted(
        "X2",
        9 * D + 3 * H,
        [("1", "KTP", 1, "10.00")],
        [(BO, 5 * M), ("cancelled", 1 * D)],
        site="west",
        notices=[("ftc_delay_option", "ftc/1", 1 * D, respond(None))],
    ),
]

# (receipt, sku, still to come, promised, expected date, status)
RECEIPTS = [
    ("PO-SOON", "MUG", 5, 2, TODAY + timedelta(days=3), "open"),
    ("PO-EDGE", "KTP", 2, 0, HORIZON, "open"),  # due on the horizon's last day: counts
    ("PO-LATE", "KTP", 10, 2, TODAY + timedelta(days=10), "open"),
    ("PO-TEA", "TEA", 10, 8, TODAY + timedelta(days=5), "open"),
    ("PO-UNDATED", "TEA", 50, 0, None, "open"),
    ("PO-CLOSED", "TEA", 9, 0, TODAY, "closed"),
    ("PO-OLD", "KTP", 0, 0, TODAY - timedelta(days=20), "received"),
]


# -- planting -------------------------------------------------------------------------------------


def record_of(o: Planted, status: str, at: timedelta) -> OrderRecord:
    order = Order.model_validate(
        {
            "order_id": o.order_id,
            "order_number": f"N-{o.order_id}",
            "placed_at": o.placed,
            "currency": o.currency,
            "customer": {"id": "c1", "email": "c@example.com", "tier": "standard"},
            "fulfillment": {"type": "sth"},
            "lines": [
                {"line_id": lid, "sku": sku, "quantity": q, "unit_price": price}
                for lid, sku, q, price in o.lines
            ],
        }
    )
    return OrderRecord(
        order=order,
        workflow_id=order.workflow_id,
        status=BackorderStatus(status),
        status_since=o.placed + at,
        site=o.site,
        cancel_reason=o.cancel_reason if status == "cancelled" else None,
    )


async def plant(pool: AsyncConnectionPool, world: Iterable[Planted]) -> None:
    record = ReadModelActivities(pool, "default").record_order
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO locations (location_id) VALUES ('DC')")
        for rid, sku, qty, reserved, due, status in RECEIPTS:
            await conn.execute(
                """INSERT INTO future_receipts (receipt_id, sku, location, quantity, reserved,
                                                expected_date, status, received)
                   VALUES (%s, %s, 'DC', %s, %s, %s, %s, %s)""",
                (rid, sku, qty, reserved, due, status, 2 if status == "received" else 0),
            )
    for o in world:
        if o.before_0010:
            await plant_old_row(pool, o)
        for status, at in o.statuses:
            await ActivityEnvironment().run(record, record_of(o, status, at))
        async with pool.connection() as conn:
            await plant_ledger(conn, o)


async def plant_old_row(pool: AsyncConnectionPool, o: Planted) -> None:
    value = sum(Decimal(p) * q for _, _, q, p in o.lines)
    async with pool.connection() as conn:
        await conn.execute(
            """INSERT INTO orders (order_id, workflow_id, order_number, site, customer_id,
                                   customer_tier, placed_at, currency, order_value, status, skus,
                                   status_since)
               VALUES (%s, %s, %s, %s, 'c1', 'standard', %s, %s, %s, %s, %s, %s)""",
            (
                o.order_id,
                f"backorder-{o.order_id}",
                f"N-{o.order_id}",
                o.site,
                o.placed,
                o.currency,
                value,
                o.before_0010,
                sorted(o.skus),
                o.placed + M,
            ),
        )


async def plant_ledger(conn: psycopg.AsyncConnection[Any], o: Planted) -> None:
    for lid, sku, units in o.waiting:
        await conn.execute(
            """INSERT INTO demand (order_id, line_id, sku, quantity_open, tier, placed_at,
                                   fulfillment_type, site)
               VALUES (%s, %s, %s, %s, 'standard', %s, 'sth', %s)""",
            (o.order_id, lid, sku, units, o.placed, o.site),
        )
    for lid, sku, units, receipt, source in o.promised:
        await conn.execute(
            """INSERT INTO reservations (key, order_id, line_id, sku, location, quantity,
                                         source, receipt_id)
               VALUES (%s, %s, %s, %s, 'DC', %s, %s, %s)""",
            (f"backorder-{o.order_id}/reserve", o.order_id, lid, sku, units, source, receipt),
        )
    for kind, step, at, payload in o.notices:
        await conn.execute(
            """INSERT INTO notices (key, order_id, kind, payload, created_at)
               VALUES (%s, %s, %s, %s, %s)""",
            (f"backorder-{o.order_id}/{step}", o.order_id, kind, Jsonb(payload), o.placed + at),
        )


@pytest.fixture(scope="module")
async def world(pg_pool: AsyncConnectionPool) -> AsyncIterator[None]:
    await plant(pg_pool, WORLD)
    yield


@pytest.fixture
def dsn(pg_dsn: str, world: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", pg_dsn)
    return pg_dsn


# -- the expected figures, from WORLD alone ----------------------------------------------------


def east(world: list[Planted] = WORLD) -> list[Planted]:
    return [o for o in world if o.site == "east"]


def in_period(t: datetime | None, since: date = SINCE, until: date = UNTIL) -> bool:
    return t is not None and since <= t.astimezone(UTC).date() <= until


def whole_days(span: timedelta) -> int:
    return math.floor(span / D)


def started(o: Planted) -> datetime:
    """When a waiting order went on backorder: placed, for a row without history."""
    return o.backordered_at or o.placed


def waiting_units(o: Planted) -> list[tuple[str, str, int, int]]:
    """(line, sku, units, of them expected within 7 days) of a waiting order."""
    due = {rid: (when, status) for rid, _, _, _, when, status in RECEIPTS}
    units = [(lid, sku, n, covered(o, lid, sku, n)) for lid, sku, n in o.waiting]
    for lid, sku, n, rid, source in o.promised:
        when, status = due[rid]
        if source == "future":
            soon = status == "open" and when is not None and when <= HORIZON
            units.append((lid, sku, n, n if soon else 0))
    return units


def covered(o: Planted, line_id: str, sku: str, units: int) -> int:
    """What is free on the sku's purchase orders due by the horizon, handed out to every
    site's waiting lines first placed first."""
    free = sum(
        qty - promised
        for _, s, qty, promised, when, status in RECEIPTS
        if s == sku and status == "open" and when is not None and when <= HORIZON
    )
    queue = sorted(
        (w.placed, w.order_id, lid, n) for w in WORLD for lid, s, n in w.waiting if s == sku
    )
    for _, order_id, lid, n in queue:
        if (order_id, lid) == (o.order_id, line_id):
            return min(units, free)
        free = max(free - n, 0)
    raise AssertionError(f"{o.order_id} line {line_id} is not in the queue")


def waited_skus(o: Planted) -> set[str]:
    """The skus that waited in the order: its acceptance notice, promises, demand."""
    noticed = {
        item["sku"]
        for kind, _, _, payload in o.notices
        if kind == "on_backorder"
        for item in payload["items"]
    }
    return noticed | {p[1] for p in o.promised} | {w[1] for w in o.waiting}


def by_ftc_rule(o: Planted) -> bool:
    """Ended with a cancel (not acceptance's) once its last FTC notice's date had come."""
    ftc = [
        (o.placed + at, payload["respond_by"])
        for kind, _, at, payload in o.notices
        if kind.startswith("ftc_")
    ]
    cancelled = any(k == "cancelled" and s != "accept/cancelled" for k, s, _, _ in o.notices)
    if not ftc or not cancelled or o.ended_at is None:
        return False
    respond_by = max(ftc)[1]
    return respond_by is not None and datetime.fromisoformat(respond_by) <= o.ended_at


def p90(values: list[float]) -> float:
    """Linear interpolation between the closest ranks (what percentile_cont does)."""
    ordered = sorted(values)
    rank = 0.9 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def fill_days(o: Planted) -> float:
    assert o.ended_at and o.backordered_at
    return (o.ended_at - o.backordered_at) / D


@dataclass
class Expected:
    orders: int
    units: int
    expected_units: int
    expected_orders: int
    unpriced: int
    oldest: int | None
    value: dict[str, Decimal]
    placed: int
    backordered: int
    fills: list[float]
    ended: int
    cancelled: int


def expected(
    world: list[Planted], sku: str | None = None, since: date = SINCE, until: date = UNTIL
) -> Expected:
    """The KPIs of `world` (or of the orders in which `sku` waited) for the period."""
    waiting = [o for o in world if o.status in ON]
    rows = [(o, u) for o in waiting for u in waiting_units(o) if sku is None or u[1] == sku]
    per_order: dict[str, list[tuple[int, int]]] = defaultdict(list)
    value: dict[str, Decimal] = defaultdict(Decimal)
    unpriced = set()
    for o, (lid, _, n, soon) in rows:
        per_order[o.order_id].append((n, soon))
        price = o.price(lid)
        if price is None:
            unpriced.add(o.order_id)
        else:
            value[o.currency] += price * n
    counted = waiting if sku is None else [o for o in waiting if o.order_id in per_order]
    placed = [
        o for o in world if in_period(o.placed, since, until) and (sku is None or sku in o.skus)
    ]
    went = [
        o
        for o in placed
        if (o.backordered_at or o.status in ON) and (sku is None or sku in waited_skus(o))
    ]
    ended = [
        o
        for o in world
        if o.backordered_at
        and in_period(o.ended_at, since, until)
        and (sku is None or sku in waited_skus(o))
    ]
    return Expected(
        orders=len(counted),
        units=sum(n for _, (_, _, n, _) in rows),
        expected_units=sum(soon for _, (_, _, _, soon) in rows),
        expected_orders=sum(
            1
            for units in per_order.values()
            if sum(n for n, _ in units) == sum(s for _, s in units)
        ),
        unpriced=len(unpriced),
        oldest=max((whole_days(NOW - started(o)) for o in counted), default=None),
        value=dict(value),
        placed=len(placed),
        backordered=len(went),
        fills=[fill_days(o) for o in ended if o.status == "completed"],
        ended=len(ended),
        cancelled=sum(1 for o in ended if o.status == "cancelled"),
    )


def pct(part: int, whole: int) -> float | None:
    return 100 * part / whole if whole else None


def near(value: float | None) -> Any:
    """`pytest.approx`, or None itself."""
    return None if value is None else pytest.approx(value)


def assert_figures(figures: dict[str, Any], want: Expected) -> None:
    backlog = figures["backlog"]
    assert (backlog["orders"], backlog["units"], backlog["unpriced_orders"]) == (
        want.orders,
        want.units,
        want.unpriced,
    )
    assert backlog["oldest_days"] == want.oldest
    assert {v["currency"]: Decimal(v["amount"]) for v in backlog["value"]} == want.value
    assert backlog["expected_units"] == {
        "part": want.expected_units,
        "whole": want.units,
        "pct": near(pct(want.expected_units, want.units)),
    }
    assert backlog["expected_orders"]["part"] == want.expected_orders
    assert figures["backorder_rate"] == {
        "part": want.backordered,
        "whole": want.placed,
        "pct": near(pct(want.backordered, want.placed)),
    }
    fill = figures["fill_time"]
    assert fill["filled"] == len(want.fills)
    if want.fills:
        assert fill["mean_days"] == pytest.approx(sum(want.fills) / len(want.fills))
        assert fill["p90_days"] == pytest.approx(p90(want.fills))
    else:
        assert (fill["mean_days"], fill["p90_days"]) == (None, None)
    assert figures["cancel_rate"] == {
        "part": want.cancelled,
        "whole": want.ended,
        "pct": near(pct(want.cancelled, want.ended)),
    }
    mean = sum(want.fills) / len(want.fills) if want.fills else None
    marks = {t["kpi"]: t["met"] for t in figures["targets"]}
    assert marks == {
        "backorder rate": judge(pct(want.backordered, want.placed), 5),
        "fill time (mean)": judge(mean, 14),
        "cancel rate": judge(pct(want.cancelled, want.ended), 20),
    }


def judge(value: float | None, limit: float) -> bool | None:
    return None if value is None else value < limit


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = starter.main(["report", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def reported(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "--site", "east", "--json", *argv)
    assert (code, err) == (0, "")
    result: dict[str, Any] = json.loads(out)
    return result


# -- every KPI on the planted site ---------------------------------------------------------------


def test_every_kpi_matches_the_planted_orders(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = reported(capsys)
    assert (report["site"], report["since"], report["until"]) == ("east", str(SINCE), str(UNTIL))
    assert_figures(report["figures"], expected(east()))


def test_the_planted_site_is_one_worth_checking() -> None:
    """The planted figures are not trivial: a guard against a world that tests nothing."""
    want = expected(east())
    assert (want.orders, want.unpriced, len(want.value)) == (5, 1, 2)
    assert 0 < want.expected_units < want.units and 0 < want.expected_orders < want.orders
    assert 0 < want.backordered < want.placed and 0 < want.cancelled < want.ended
    assert len(want.fills) >= 3


def test_age_buckets_fill_histogram_and_days(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = reported(capsys)
    ages = [whole_days(NOW - started(o)) for o in east() if o.status in ON]
    assert [b["orders"] for b in report["age_buckets"]] == [
        sum(1 for a in ages if first <= a and (last is None or a <= last))
        for first, last in AGE_BUCKETS
    ]
    fills = Counter(math.floor(d) for d in expected(east()).fills)
    assert {b["days"]: b["orders"] for b in report["fill_days"]} == dict(fills)

    days = {row["day"]: row for row in report["daily"]}
    assert list(days) == [str(SINCE + timedelta(days=i)) for i in range(30)]
    new = Counter(
        str(o.backordered_at.date())
        for o in east()
        if in_period(o.backordered_at) and o.backordered_at
    )
    ended = [o for o in east() if o.backordered_at and in_period(o.ended_at) and o.ended_at]
    released = Counter(
        str(o.ended_at.date()) for o in ended if o.status == "completed" and o.ended_at
    )
    cancelled = Counter(
        str(o.ended_at.date()) for o in ended if o.status == "cancelled" and o.ended_at
    )
    for day, row in days.items():
        assert (row["new"], row["released"], row["cancelled"]) == (
            new[day],
            released[day],
            cancelled[day],
        )
    assert report["new_backorders"] == sum(new.values())


def test_cancel_reasons_and_the_ftc_rule(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = reported(capsys)
    ended = [o for o in east() if o.backordered_at and in_period(o.ended_at)]
    by_rule = [o for o in ended if by_ftc_rule(o)]
    cancelled = [o for o in ended if o.status == "cancelled"]
    ruled = sum(1 for o in cancelled if o in by_rule)

    def reason_of(o: Planted) -> str:
        """The recorded reason's first clause; none recorded: the rule's if it was, else not
        recorded."""
        if o.cancel_reason:
            return o.cancel_reason.split(":")[0].strip()
        return FTC_REASON if o in by_rule else UNRECORDED_REASON

    want = Counter(reason_of(o) for o in cancelled)
    assert [(r["reason"], r["orders"]) for r in report["cancel_reasons"]] == sorted(
        want.items(), key=lambda item: (-item[1], item[0])
    )
    assert ruled and len(cancelled) > ruled  # the rule's and others' cancels are planted
    assert {"changed my mind", FTC_REASON, UNRECORDED_REASON} <= set(want)
    notices = [
        kind
        for o in east()
        for kind, _, at, _ in o.notices
        if kind.startswith("ftc_") and in_period(o.placed + at)
    ]
    assert report["ftc"] == {
        "delay_notices": notices.count("ftc_delay_option"),
        "renewed_notices": notices.count("ftc_renewed_notice"),
        "cancelled_orders": len(by_rule),
    }
    assert len(by_rule) > ruled  # the rule also ended one that had shipped a part


def test_by_sku_gives_the_same_kpis_per_sku(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = reported(capsys, "--by-sku")
    rows = {row["sku"]: row for row in report["by_sku"]}
    skus = {u[1] for o in east() if o.status in ON for u in waiting_units(o)}
    skus |= {s for o in east() if in_period(o.placed) for s in o.skus}
    skus |= {
        s for o in east() if o.backordered_at and in_period(o.ended_at) for s in waited_skus(o)
    }
    assert sorted(rows) == sorted(skus)
    for sku, row in rows.items():
        assert_figures(row, expected(east(), sku))
    # F1 ordered a mug that shipped at once: a placed order of MUG that did not wait for it
    mug = expected(east(), "MUG")
    assert mug.backordered < mug.placed


def test_without_by_sku_there_is_none(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert reported(capsys)["by_sku"] is None


def test_the_json_is_the_whole_report(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = reported(capsys, "--by-sku")
    assert Report.model_validate(report).site == "east"
    assert set(report) == {
        "site",
        "since",
        "until",
        "as_of",
        "figures",
        "new_backorders",
        "cancel_reasons",
        "ftc",
        "age_buckets",
        "fill_days",
        "daily",
        "by_sku",
        "orders_placed_given",
    }
    assert set(report["figures"]) == {
        "backlog",
        "backorder_rate",
        "fill_time",
        "cancel_rate",
        "targets",
    }
    amounts = {v["currency"]: v["amount"] for v in report["figures"]["backlog"]["value"]}
    assert re.fullmatch(r"\d+\.\d\d", amounts["USD"]) and re.fullmatch(r"\d+", amounts["JPY"])
    assert report["as_of"].endswith("Z")
    assert report["figures"]["targets"][0] == {
        "kpi": "backorder rate",
        "value": near(pct(expected(east()).backordered, expected(east()).placed)),
        "target": "< 5 %",
        "met": False,
    }


def test_the_period_flags(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--days` counts back from today or `--until`, forward from `--since`."""
    week = reported(capsys, "--days", "7")
    assert (week["since"], week["until"]) == (str(TODAY - timedelta(days=6)), str(TODAY))
    ago = TODAY - timedelta(days=40)
    back = reported(capsys, "--until", str(ago), "--days", "3")
    assert (back["since"], back["until"]) == (str(ago - timedelta(days=2)), str(ago))
    forth = reported(capsys, "--since", str(ago), "--days", "3")
    assert (forth["since"], forth["until"]) == (str(ago), str(ago + timedelta(days=2)))
    alone = reported(capsys, "--since", str(ago))
    assert (alone["since"], alone["until"]) == (str(ago), str(TODAY))


async def test_targets_met_in_a_period_that_meets_them(
    pg_pool: AsyncConnectionPool, world: None
) -> None:
    """The day F1 was filled (4.5 days; nothing else ended that day): fill time and cancel rate
    met."""
    f1 = next(o for o in WORLD if o.order_id == "F1")
    assert f1.ended_at
    day = f1.ended_at.date()
    async with pg_pool.connection() as conn:
        report = await read_report(conn, ReportRequest(site="east", since=day, until=day), NOW)
    want = expected(east(), since=day, until=day)
    assert want.fills == [fill_days(f1)] and want.ended == 1
    assert_figures(report.model_dump(mode="json")["figures"], want)
    marks = {t.kpi: t.met for t in report.figures.targets}
    assert (marks["fill time (mean)"], marks["cancel rate"]) == (True, True)


def test_a_target_is_met_only_below_its_limit() -> None:
    assert check(FILL_TARGET, 13.99) == TargetCheck(
        kpi="fill time (mean)", value=13.99, target="< 14 days", met=True
    )
    assert check(FILL_TARGET, 14).met is False
    assert check(FILL_TARGET, None).met is None


# -- the text and the page ------------------------------------------------------------------------


def test_text_output_is_aligned_tables(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--site", "east", "--by-sku")
    assert (code, err) == (0, "")
    want = expected(east())
    lines = out.splitlines()
    assert lines[0].startswith("backorder report: site east, as of ")
    line = next(x for x in lines if x.startswith("backorder rate "))
    share = f"({want.backordered} of {want.placed} orders placed)"
    rate = f"{pct(want.backordered, want.placed):.1f} % {share}"
    assert rate in line and "< 5 %" in line and line.endswith("missed")
    line = next(x for x in lines if x.startswith("cancel rate "))
    assert f"({want.cancelled} of {want.ended} backorders ended)" in line
    assert next(x for x in lines if x.startswith("value on backorder (USD)")).endswith(
        f"{want.value['USD']:,.2f} USD"
    )
    assert next(x for x in lines if x.startswith("oldest backorder")).endswith(
        f"{want.oldest} days"
    )
    # the columns line up: each value starts where its header does
    header = next(x for x in lines if x.startswith("KPI ") and "target" in x)
    assert line.index("< 20 %") == header.index("target")
    assert "orders on backorder recorded before line prices were kept: 1 " in out
    assert FTC_REASON in out and "per sku" in out


def test_html_is_one_self_contained_page(
    dsn: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "report.html"
    code, out, err = run(capsys, "--site", "east", "--html", "report.html")
    assert (code, err) == (0, "")
    assert out == f"wrote the report for site east to {page}\n"  # where, in full
    html = page.read_text()
    for title in (AGE_TITLE, FILL_TITLE, VALUE_TITLE, DAILY_TITLE):
        assert title in html
    assert html.count("plotly.js v") == 1 and len(html) > 1_000_000  # the bundle, once
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", html, flags=re.IGNORECASE)
    assert tags and not [t for t in tags if re.search(r"(src|href)\s*=", t, re.IGNORECASE)]
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", html)
    want = expected(east())
    rate = f"{pct(want.backordered, want.placed):.1f} % ({want.backordered} of {want.placed}"
    assert rate in html and '<td class="missed">missed</td>' in html
    assert "Per SKU" in html  # the page has the per-sku table without --by-sku


# -- the empty database and bad input -------------------------------------------------------------


@pytest.fixture
async def empty_dsn(pg_server: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch) -> str:
    await pg_server.create_database("t_report_empty")
    dsn = pg_server.dsn("t_report_empty")
    await migrate(dsn)
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", dsn)
    return dsn


def test_an_empty_database_gives_a_sensible_report(
    empty_dsn: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = reported(capsys, "--by-sku")
    assert_figures(report["figures"], expected([]))
    assert report["by_sku"] == [] and report["cancel_reasons"] == []
    assert [b["orders"] for b in report["age_buckets"]] == [0] * len(AGE_BUCKETS)
    assert report["fill_days"] == [] and len(report["daily"]) == 30

    code, out, err = run(capsys, "--site", "east", "--by-sku")
    assert (code, err) == (0, "")
    assert "0 orders, 0 units" in out and "- (no orders placed)" in out and "no data" in out

    page = tmp_path / "empty.html"
    assert run(capsys, "--site", "east", "--html", str(page))[0] == 0
    assert "no data in this period" in page.read_text()


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (
            ["--since", "2026-13-01"],
            "Invalid value for '--since': '2026-13-01' is not a date YYYY-MM-DD",
        ),
        (
            ["--until", "yesterday"],
            "Invalid value for '--until': 'yesterday' is not a date YYYY-MM-DD",
        ),
        (["--days", "0"], "Invalid value for '--days': '0': must be a whole number 1..3660"),
        (["--days", "x"], "Invalid value for '--days': 'x': must be a whole number 1..3660"),
        (["--site", "a b"], "Invalid value for '--site': 'a b': letters, digits, _ . - only"),
        (["--json", "--html", "x.html"], "--json and --html cannot be given together"),
    ],
)
def test_a_bad_flag_is_named(capsys: pytest.CaptureFixture[str], argv: list[str], why: str) -> None:
    assert starter.main(["report", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("Usage: backorder report ")
    assert f"Error: {why}" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--since", "2026-05-02", "--until", "2026-05-01"],
            "--since 2026-05-02 is after --until 2026-05-01",
        ),
        (
            ["--since", str(TODAY + timedelta(days=1))],
            f"--since {TODAY + timedelta(days=1)} is after --until {TODAY} (today, UTC)",
        ),
        (
            ["--since", "2026-05-01", "--until", "2026-05-02", "--days", "2"],
            "--since, --until and --days: give at most two of them",
        ),
    ],
)
def test_a_period_that_cannot_be_is_one_line(
    dsn: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(capsys, *argv) == (1, "", f"backorder: {message}\n")


def test_a_page_that_cannot_be_written_is_one_line(
    dsn: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    page = tmp_path / "missing" / "report.html"
    assert run(capsys, "--html", str(page)) == (
        1,
        "",
        f"backorder: cannot write {page}: No such file or directory\n",
    )


# -- what record_order and 0010 write ------------------------------------------------------------


async def history(dsn: str, order_id: str) -> tuple[list[tuple[str, datetime, bool]], Any]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT status, status_since, inferred FROM order_status_history"
            " WHERE order_id = %s ORDER BY status_since, status",
            (order_id,),
        )
        rows = await cur.fetchall()
        cur = await conn.execute(
            "SELECT backordered_at FROM orders WHERE order_id = %s", (order_id,)
        )
        (backordered_at,) = await cur.fetchone() or (None,)
    return rows, backordered_at


async def test_record_order_keeps_the_history_once_and_the_first_backorder(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    o = Planted("H-1", 9 * D, [("1", "KTP", 2, "10.00"), ("2", "MUG", 1, "4.50")])
    record = ReadModelActivities(pg_pool, "default").record_order
    env = ActivityEnvironment()
    waiting, awaiting, done = (
        record_of(o, BO, 1 * M),
        record_of(o, AR, 1 * D),
        record_of(o, "completed", 3 * D),
    )
    await env.run(record, awaiting)  # out of order: a later status first
    await env.run(record, waiting)
    await env.run(record, waiting)  # a retry
    await env.run(record, done)
    await env.run(record, awaiting)  # a late retry of an older status
    rows, backordered_at = await history(pg_dsn, "H-1")
    assert rows == [
        (BO, o.placed + M, False),
        (AR, o.placed + D, False),
        ("completed", o.placed + 3 * D, False),
    ]
    assert backordered_at == o.placed + M
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        cur = await conn.execute("SELECT status FROM orders WHERE order_id = 'H-1'")
        assert await cur.fetchone() == ("completed",)
        cur = await conn.execute(
            "SELECT line_id, sku, quantity, unit_price FROM order_lines"
            " WHERE order_id = 'H-1' ORDER BY line_id"
        )
        assert await cur.fetchall() == [
            ("1", "KTP", 2, Decimal("10.0000")),
            ("2", "MUG", 1, Decimal("4.5000")),
        ]


def test_the_order_systems_count_is_the_backorder_rates_denominator(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An order system that starts only backordered orders here gives its own count of the
    period's orders; fewer than the backorders already seen is refused, naming both."""
    own = reported(capsys)["figures"]["backorder_rate"]
    given = reported(capsys, "--orders-placed", "1000")
    rate = given["figures"]["backorder_rate"]
    assert given["orders_placed_given"] is True
    assert (rate["part"], rate["whole"]) == (own["part"], 1000)
    assert rate["pct"] == pytest.approx(100 * own["part"] / 1000)

    too_few = str(own["part"] - 1)
    code = starter.main(["report", "--orders-placed", too_few, "--site", "east", "--json"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"orders placed: {too_few} is fewer than the {own['part']} orders placed" in err
