"""`backorder inventory stock` against a real PostgreSQL ledger: on hand, reserved and free per
location, backordered demand per sku and site, open purchase orders (dated, undated, partly
received; cancelled, closed and fully received ones left out), every filter, the tables and
`--json`, and one clear message for an empty answer, an unknown name, a bad flag or a database
that is not there. The ledger is written by the real feed (`apply_events`) and the real ledger
activities (`reserve_stock`, `update_demand`), so the figures are the ledger's own."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import ActivityEnvironment

import starter
from activities import contracts
from activities.contracts import DemandUpdate, StockReservation
from activities.feed import apply_events
from activities.inventory import InventoryActivities
from activities.ledger import read_stock
from db.migrate import migrate
from domain.inventory import (
    EventStatus,
    FutureReceiptCancelled,
    FutureReceiptClosed,
    FutureReceiptPlanned,
    FutureReceiptReceived,
    InventoryEvent,
    LocationDefined,
    ProductDefined,
    StockReceived,
)
from domain.order import Fulfillment, FulfillmentType
from domain.planner import Allotment, Backorder, BackorderLine
from domain.planner.plan import StockSource
from embedded.postgres import EmbeddedPostgres
from embedded.process import free_port
from runtime.stock_view import StockFilter, read_stock_view

DEC_1 = dt.date(2026, 12, 1)
DEC_10 = dt.date(2026, 12, 10)
PLACED = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
OLDEST = dt.datetime(2026, 11, 2, 8, 30, tzinfo=dt.UTC)
env = ActivityEnvironment()
ODD = "[b]:smile:" + "-7" * 60
"""Rich markup, an emoji code and longer than any terminal column: printed as it is."""

STOCK = [
    {"sku": "KTP", "location": "DC", "on_hand": 50, "reserved": 40, "free": 10},
    {"sku": "KTP", "location": "STORE", "on_hand": 5, "reserved": 0, "free": 5},
    {"sku": "MUG", "location": "DC", "on_hand": 50, "reserved": 0, "free": 50},  # 10 + 30 + 10 in
    {"sku": "TEA", "location": "DC", "on_hand": 5, "reserved": 0, "free": 5},
]
INCOMING = [
    {
        "receipt_id": "PO-DATED",
        "sku": "KTP",
        "location": "DC",
        "to_come": 30,
        "received": 0,
        "promised": 25,
        "promised_orders": 2,
        "expected_date": "2026-12-01",
        "status": "open",
    },
    {
        "receipt_id": "PO-UNDATED",
        "sku": "KTP",
        "location": "STORE",
        "to_come": 20,
        "received": 0,
        "promised": 0,
        "promised_orders": 0,
        "expected_date": None,
        "status": "open",
    },
    {
        "receipt_id": "PO-PART",
        "sku": "MUG",
        "location": "DC",
        "to_come": 20,
        "received": 30,
        "promised": 8,
        "promised_orders": 1,
        "expected_date": "2026-12-10",
        "status": "open",
    },
]
DEMAND = [
    {
        "sku": "GHOST",
        "site": "east",
        "units": 7,
        "lines": 1,
        "orders": 1,
        "oldest_placed_at": "2026-11-20T10:00:00Z",
    },
    {
        "sku": "KTP",
        "site": "east",
        "units": 15,
        "lines": 2,
        "orders": 2,
        "oldest_placed_at": "2026-11-02T08:30:00Z",
    },
    {
        "sku": "KTP",
        "site": "west",
        "units": 4,
        "lines": 1,
        "orders": 1,
        "oldest_placed_at": "2026-11-20T10:00:00Z",
    },
    {
        "sku": "MUG",
        "site": "east",
        "units": 2,
        "lines": 1,
        "orders": 1,
        "oldest_placed_at": "2026-11-20T10:00:00Z",
    },
]


# -- the ledger, through the feed and the ledger activities ---------------------------------------


async def feed(conn: AsyncConnection[Any], pass_id: str, *events: InventoryEvent) -> None:
    """Apply one batch as an allocation pass does, in its transaction; every event applies."""
    async with conn.transaction():
        outcomes, _ = await apply_events(conn, events, pass_id)
    assert [o.status for o in outcomes] == [EventStatus.APPLIED] * len(events), outcomes


def po(
    receipt_id: str, sku: str, location: str, quantity: int, day: dt.date | None
) -> FutureReceiptPlanned:
    return FutureReceiptPlanned(
        event_id=f"plan-{receipt_id}",
        receipt_id=receipt_id,
        sku=sku,
        location=location,
        quantity=quantity,
        expected_date=day,
    )


def received(receipt_id: str, quantity: int | None = None) -> FutureReceiptReceived:
    return FutureReceiptReceived(
        event_id=f"in-{receipt_id}", receipt_id=receipt_id, quantity=quantity
    )


def reservation(order_id: str, *allotments: Allotment) -> StockReservation:
    return StockReservation(
        key=contracts.step_key(f"backorder-{order_id}", "reserve"),
        order_id=order_id,
        allotments=allotments,
    )


def promise(line: str, sku: str, location: str, quantity: int, receipt: str) -> Allotment:
    """Units of a purchase order promised to an order line."""
    return Allotment(
        line_id=line,
        sku=sku,
        quantity=quantity,
        location=location,
        source=StockSource.FUTURE,
        expected_date=DEC_1,
        receipt_id=receipt,
    )


def waiting(
    order_id: str, site: str, *lines: tuple[str, int], placed: dt.datetime = PLACED
) -> DemandUpdate:
    """The order's open backordered lines, for the demand index."""
    return DemandUpdate(
        key=contracts.step_key(f"backorder-{order_id}", "demand"),
        order_id=order_id,
        site=site,
        backorder=Backorder(
            order_id=order_id,
            placed_at=placed,
            fulfillment=Fulfillment(type=FulfillmentType.SHIP_TO_HOME),
            lines=tuple(
                BackorderLine(line_id=str(i), sku=sku, quantity=q)
                for i, (sku, q) in enumerate(lines, 1)
            ),
        ),
    )


@pytest.fixture(scope="module")
async def ledger(pg_pool: AsyncConnectionPool) -> None:
    """The module's ledger: stock, purchase orders in every state, promises and demand."""
    async with pg_pool.connection() as conn:
        await feed(
            conn,
            "define",
            LocationDefined(event_id="loc-DC", location_id="DC", rank=0),
            LocationDefined(event_id="loc-STORE", location_id="STORE", rank=1, pickup=True),
            LocationDefined(event_id="loc-EMPTY", location_id="EMPTY", rank=2),
            *(
                ProductDefined(event_id=f"prod-{sku}", sku=sku)
                for sku in ("KTP", "MUG", "TEA", "LONE")
            ),
        )
        await feed(
            conn,
            "stock",
            StockReceived(event_id="r-1", sku="KTP", location="DC", quantity=50),
            StockReceived(event_id="r-2", sku="KTP", location="STORE", quantity=5),
            StockReceived(event_id="r-3", sku="MUG", location="DC", quantity=10),
            po("PO-DATED", "KTP", "DC", 30, DEC_1),
            po("PO-UNDATED", "KTP", "STORE", 20, None),
            po("PO-PART", "MUG", "DC", 50, DEC_10),
            po("PO-CANCEL", "KTP", "DC", 10, DEC_1),
            po("PO-CLOSE", "MUG", "DC", 40, DEC_1),
            po("PO-FULL", "TEA", "DC", 5, DEC_1),
        )
        await feed(
            conn,
            "arrivals",
            received("PO-PART", 30),  # 20 still to come
            FutureReceiptCancelled(event_id="x-PO-CANCEL", receipt_id="PO-CANCEL"),
            received("PO-CLOSE", 10),
            FutureReceiptClosed(event_id="close-PO-CLOSE", receipt_id="PO-CLOSE"),
            received("PO-FULL"),
        )
    activities = InventoryActivities(pg_pool)
    now = Allotment(line_id="1", sku="KTP", quantity=40, location="DC", source=StockSource.CURRENT)
    for held in (
        reservation("O-1", now, promise("1", "KTP", "DC", 20, "PO-DATED")),
        reservation("O-2", promise("1", "KTP", "DC", 5, "PO-DATED")),
        reservation("O-3", promise("1", "MUG", "DC", 8, "PO-PART")),
    ):
        await env.run(activities.reserve_stock, held)
    for update in (
        waiting("D-1", "east", ("KTP", 12), ("MUG", 2)),
        waiting("D-2", "west", ("KTP", 4)),
        waiting("D-3", "east", ("KTP", 3), placed=OLDEST),
        waiting("D-4", "east", ("GHOST", 7)),  # a sku with demand and nothing else
    ):
        await env.run(activities.update_demand, update)


@pytest.fixture
def dsn(pg_dsn: str, ledger: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", pg_dsn)
    return pg_dsn


# -- running the command --------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`backorder inventory stock ...`: (exit code, stdout, stderr)."""
    code = starter.main(["inventory", "stock", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def viewed(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "--json", *argv)
    assert (code, err) == (0, "")
    result: dict[str, Any] = json.loads(out)
    return result


def only(rows: Sequence[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [row for row in rows if all(row[k] == v for k, v in match.items())]


# -- the figures ----------------------------------------------------------------------------------


def test_json_is_the_whole_ledger_view(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    view = viewed(capsys)

    assert list(view) == ["stock", "incoming", "demand"]
    assert view["stock"] == STOCK  # free is on hand - reserved; rows in serving order
    assert view["incoming"] == INCOMING  # no cancelled, closed or fully received PO
    assert view["demand"] == DEMAND


@pytest.mark.parametrize(
    ("argv", "skus", "locations", "sites"),
    [
        (("--sku", "KTP"), {"KTP"}, {"DC", "STORE"}, {"east", "west"}),
        (("--sku", "KTP", "--sku", "MUG"), {"KTP", "MUG"}, {"DC", "STORE"}, {"east", "west"}),
        (("--sku", "MUG", "--sku", "MUG"), {"MUG"}, {"DC"}, {"east"}),  # once, however often named
        (("--location", "STORE"), {"KTP"}, {"STORE"}, {"east", "west"}),
        (("--location", "DC", "--sku", "MUG"), {"MUG"}, {"DC"}, {"east"}),
        (("--location", "STORE", "--location", "DC"), {"KTP", "MUG", "TEA"}, {"DC", "STORE"}, None),
        (("--site", "west"), None, {"DC", "STORE"}, {"west"}),
        (("--sku", "GHOST"), {"GHOST"}, set(), {"east"}),
    ],
)
def test_filters(
    dsn: str,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    skus: set[str] | None,
    locations: set[str],
    sites: set[str] | None,
) -> None:
    """Stock and purchase orders by sku and location; demand by sku and site, and (with a
    location) for the skus stocked or expected there."""
    view = viewed(capsys, *argv)

    def wanted(row: dict[str, Any]) -> bool:
        return (skus is None or row["sku"] in skus) and row["location"] in locations

    assert view["stock"] == [row for row in STOCK if wanted(row)]
    assert view["incoming"] == [row for row in INCOMING if wanted(row)]
    shown = (
        {row["sku"] for row in view["stock"] + view["incoming"]} if "--location" in argv else None
    )
    assert view["demand"] == [
        row
        for row in DEMAND
        if (skus is None or row["sku"] in skus)
        and (sites is None or row["site"] in sites)
        and (shown is None or row["sku"] in shown)
    ]


async def test_the_figures_are_the_ledgers(pg_pool: AsyncConnectionPool, ledger: None) -> None:
    """What the planner reads as free (on hand and on each PO) is what the view shows free, and
    each PO's promise is the units its orders' future reservations hold."""
    async with pg_pool.connection() as conn:  # tuple rows: the view reads its own way
        view, unknown = await read_stock_view(conn, StockFilter())
        stock, _ = await read_stock(conn, view.skus())
        cur = await conn.execute(
            """SELECT receipt_id, sum(quantity) FROM reservations
                WHERE source = 'future' AND state = 'reserved' GROUP BY receipt_id"""
        )
        held: dict[str, int] = dict(await cur.fetchall())
    assert (unknown.skus, unknown.locations) == ([], [])
    assert {(s.sku, s.location): s.quantity for s in stock.on_hand} == {
        (r.sku, r.location): r.free for r in view.stock if r.free
    }
    assert {r.receipt_id: r.quantity for r in stock.receipts} == {
        r.receipt_id: r.to_come - r.promised for r in view.incoming
    }
    assert {r.receipt_id: r.promised for r in view.incoming if r.promised} == held
    assert view.demand[1].oldest_placed_at == OLDEST


# -- text -----------------------------------------------------------------------------------------


def test_tables_are_aligned_plain_text(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)

    assert (code, err) == (0, "")
    assert "\x1b" not in out
    assert all(line == line.rstrip() for line in out.splitlines())
    lines = out.splitlines()
    assert lines[0] == "stock"
    assert lines[1].split() == [
        "sku", "location", "on", "hand", "reserved", "free", "backordered", "by", "site",
    ]  # fmt: skip
    note = lines.index(
        "backordered: units of open backordered lines per sku and site (demand has no location)"
    )
    assert [line.split() for line in lines[3:note]] == [
        ["GHOST", "no", "stock", "0", "0", "0", "7", "east", "7"],
        ["KTP", "DC", "50", "40", "10"],
        ["KTP", "STORE", "5", "0", "5"],
        ["KTP", "total", "55", "40", "15", "19", "east", "15,", "west", "4"],
        ["MUG", "DC", "50", "0", "50"],
        ["MUG", "total", "50", "0", "50", "2", "east", "2"],
        ["TEA", "DC", "5", "0", "5"],
        ["TEA", "total", "5", "0", "5", "0", "-"],
    ]
    free_ends = lines[1].index("free") + len("free")
    for row, free in zip(lines[3:note], ["0", "10", "5", "15", "50", "50", "5", "5"], strict=True):
        assert row[:free_ends].split()[-1] == free  # figures right-aligned under their heading
        assert row[free_ends : free_ends + 1] in ("", " ")
    assert lines[note + 1 : note + 3] == ["", "incoming purchase orders (3 open)"]
    po_header, _, *pos = lines[note + 3 :]
    assert po_header.split() == [
        "receipt", "sku", "location", "to", "come", "promised", "expected", "status",
    ]  # fmt: skip
    assert [row.split() for row in pos] == [
        ["PO-DATED", "KTP", "DC", "30", "25", "(2", "orders)", "2026-12-01", "open"],
        ["PO-UNDATED", "KTP", "STORE", "20", "0", "undated", "open"],
        ["PO-PART", "MUG", "DC", "20", "8", "(1", "order)", "2026-12-10", "open,", "30", "of",
         "50", "received"],
    ]  # fmt: skip
    for row, expected in zip(pos, ["2026-12-01", "undated", "2026-12-10"], strict=True):
        assert row.index(expected) == po_header.index("expected")  # left-aligned, at its heading
        assert row.index(" open") + 1 == po_header.index("status")


def test_a_terminal_gets_rich_styles(
    dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")

    code, out, _ = run(capsys, "--sku", "KTP")

    assert code == 0
    assert "\x1b[1m" in out  # bold headings and total rows
    assert "PO-UNDATED" in out


def test_no_purchase_orders_is_said(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--sku", "TEA")

    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "no open purchase orders"


# -- nothing, unknown names, bad flags, no database ----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--sku", "LONE"), "--sku LONE"),  # a product with no stock, PO or demand
        (("--location", "EMPTY"), "--location EMPTY"),  # a location with nothing at it
        (("--sku", "TEA", "--location", "STORE"), "--sku TEA --location STORE"),
        (("--sku", "TEA", "--site", "west"), None),  # TEA's stock shows, with no demand
        (("--sku", "GHOST", "--site", "west"), "--sku GHOST --site west"),
    ],
)
def test_nothing_matches_is_one_line(
    dsn: str, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str | None
) -> None:
    code, out, err = run(capsys, *argv)

    assert (code, err) == (0, "")
    if message is not None:
        assert out == f"no stock, open purchase orders or backordered demand match {message}\n"
        assert viewed(capsys, *argv) == {"stock": [], "incoming": [], "demand": []}
    else:
        assert "TEA" in out


async def fresh_database(server: EmbeddedPostgres, name: str) -> str:
    """A database of its own with the schema and nothing in it."""
    await server.create_database(name)
    dsn = server.dsn(name)
    await migrate(dsn)
    return dsn


@pytest.fixture(scope="module")
async def empty_dsn(pg_server: EmbeddedPostgres) -> str:
    return await fresh_database(pg_server, "t_stock_cli_empty")


@pytest.fixture(scope="module")
async def odd_dsn(pg_server: EmbeddedPostgres) -> str:
    """A ledger whose sku, location and purchase order ids are longer than any terminal and
    look like Rich markup and emoji codes."""
    dsn = await fresh_database(pg_server, "t_stock_cli_odd")
    async with await AsyncConnection.connect(dsn) as conn:
        await feed(
            conn,
            "odd",
            LocationDefined(event_id="odd-loc", location_id=f"L{ODD}"),
            ProductDefined(event_id="odd-prod", sku=f"S{ODD}"),
        )
        await feed(
            conn,
            "odd-stock",
            StockReceived(event_id="odd-in", sku=f"S{ODD}", location=f"L{ODD}", quantity=3),
            po(f"P{ODD}", f"S{ODD}", f"L{ODD}", 4, None),
        )
    return dsn


def test_an_empty_ledger_says_so(
    empty_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", empty_dsn)
    assert run(capsys) == (0, "no stock, open purchase orders or backordered demand yet\n", "")
    assert viewed(capsys) == {"stock": [], "incoming": [], "demand": []}


def test_ids_are_printed_whole(
    odd_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off a terminal nothing is wrapped or cut, and nothing is read as markup."""
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", odd_dsn)
    code, out, err = run(capsys, "--sku", f"S{ODD}")

    assert (code, err) == (0, "")
    rows = [line.split() for line in out.splitlines() if line.startswith("S[")]
    assert rows == [
        [f"S{ODD}", f"L{ODD}", "3", "0", "3"],
        [f"S{ODD}", "total", "3", "0", "3", "0", "-"],
    ]
    assert [f"P{ODD}", f"S{ODD}", f"L{ODD}", "4", "0", "undated", "open"] in [
        line.split() for line in out.splitlines()
    ]


def test_some_unknown_names_are_named(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--json", "--sku", "KTP", "--sku", "NOPE", "--location", "MARS",
                         "--location", "DC")  # fmt: skip

    assert code == 0
    assert err.splitlines() == [
        "backorder: unknown sku NOPE (no product, stock, purchase order or demand)",
        "backorder: unknown location MARS (not defined)",
    ]
    assert json.loads(out)["stock"] == STOCK[:1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--sku", "NOPE"), "unknown sku NOPE (no product, stock, purchase order or demand)"),
        (
            ("--sku", "NOPE", "--sku", "KTP' OR true --"),  # a value, never SQL
            "unknown sku NOPE (no product, stock, purchase order or demand); "
            "unknown sku KTP' OR true -- (no product, stock, purchase order or demand)",
        ),
        (("--sku", "KTP", "--location", "MARS"), "unknown location MARS (not defined)"),
    ],
)
def test_every_name_unknown_is_a_failure(
    dsn: str, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    """Nothing could match: most likely a typo, so exit 1 (with `--json` too)."""
    assert run(capsys, *argv) == (1, "", f"backorder: {message}\n")
    assert run(capsys, "--json", *argv) == (1, "", f"backorder: {message}\n")


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (("--sku", ""), "Invalid value for '--sku': '': String should have at least 1 character"),
        (("--sku", " KTP"), "Invalid value for '--sku': ' KTP': String should match pattern"),
        (
            ("--location", "DC "),
            "Invalid value for '--location': 'DC ': String should match pattern",
        ),
        (("--site", "a b"), "Invalid value for '--site': 'a b': letters, digits, _ . - only"),
        (("--sku",), "Option '--sku' requires an argument."),
        (("--limit", "3"), "No such option '--limit'."),
    ],
)
def test_a_bad_flag_is_named(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], why: str
) -> None:
    code, out, err = run(capsys, *argv)

    assert (code, out) == (2, "")
    assert f"Error: {why}" in err and "Traceback" not in err


def test_an_unreachable_database_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "BACKORDER_DATABASE__DSN", f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    )
    code, out, err = run(capsys, "--sku", "KTP")

    assert (code, out) == (1, "")
    assert err.startswith("backorder: cannot reach PostgreSQL: ")
    assert err.count("\n") == 1
