"""`backorder inventory load` ends with what was released to which orders: one row per order
line and stock row, which must be what the ledger reserved in those passes (read here from
`reservations`, independently of the allotment signals the command reads)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import cli.allocator
import cli.app
import cli.common
import starter
from config import Settings
from domain.planner import OrderRelease
from runtime.inventory_file import releases_of
from tests.test_allocator_e2e import released, rows, shop
from tests.test_inventory_cli import FakeAllocator
from workflows.messages import AllotmentSignal

Cli = Callable[..., tuple[int, str, str]]
Ledger = Counter[tuple[str, str, str, str]]
"""Units reserved per (order, line, sku, location)."""


def event(event_id: str, kind: str, **fields: object) -> str:
    return json.dumps({"type": kind, "event_id": event_id, **fields})


async def ledger(dsn: str, site: str) -> Ledger:
    """What the site's allocator reserved, whatever became of it since (a row split by a later
    release keeps its key)."""
    found = await rows(
        dsn,
        "SELECT order_id, line_id, sku, location, sum(quantity) FROM reservations"
        " WHERE starts_with(key, %s) GROUP BY 1, 2, 3, 4",
        f"allocator-{site}/",
    )
    return Counter({(o, ln, s, loc): int(q) for o, ln, s, loc, q in found})


def table_rows(out: str) -> Ledger:
    """The release table of the text output: `order line sku units from`."""
    shown: Ledger = Counter()
    for line in out.split("released", 1)[1].splitlines()[3:]:
        if line.strip():
            order_id, line_id, sku, units, location = line.split()
            shown[order_id, line_id, sku, location] += int(units)
    return shown


@pytest.mark.e2e
async def test_load_reports_each_release_as_the_ledger_has_it(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    pg_dsn: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three orders wait (4, 3 and 5 units); 5 + 3 units arrive at two warehouses, then 10 more:
    each load names who got what, from where, as the ledger reserved it."""
    async with shop(dev_env, pg_pool, pg_dsn, release_mode="quantity") as s:
        for name, value in {
            "BACKORDER_TEMPORAL__TARGET": dev_env.client.service_client.config.target_host,
            "BACKORDER_TEMPORAL__TASK_QUEUE": s.settings.temporal.task_queue,
            "BACKORDER_DATABASE__DSN": pg_dsn,
            "BACKORDER_SITE": s.site,
        }.items():
            monkeypatch.setenv(name, value)

        async def cli(*argv: str) -> tuple[int, str, str]:
            code = await asyncio.to_thread(starter.main, list(argv))
            out, err = capsys.readouterr()
            return code, out, err

        await s.define()
        now = await dev_env.get_current_time()
        orders = []  # placed a minute apart, in this order
        for minutes, units in ((3, 4), (2, 3), (1, 5)):
            orders.append(await s.place(now - dt.timedelta(minutes=minutes), units))
        other = f"{s.location}-2"
        first = tmp_path / "first.jsonl"
        first.write_text(
            "\n".join(
                [
                    event(f"{s.sku}-l", "location", location_id=other, rank=1),
                    event(f"{s.sku}-1", "receipt", sku=s.sku, location=s.location, quantity=5),
                    event(f"{s.sku}-2", "receipt", sku=s.sku, location=other, quantity=3),
                ]
            )
        )
        code, out, err = await cli("inventory", "load", str(first), "--json")
        assert code == 0, err
        report = json.loads(out)
        reserved = await ledger(pg_dsn, s.site)
        shown: Ledger = Counter()
        for r in report["releases"]:
            assert r["pass_id"] in report["passes"] and not r["given_back"]
            shown[r["order_id"], r["line_id"], r["sku"], r["location"]] += r["units"]
        assert shown == reserved and sum(reserved.values()) == 8
        assert report["units_released"] == 8
        assert report["orders_released"] == len({o for o, *_ in reserved})
        assert {loc for *_, loc in reserved} == {s.location, other}  # both warehouses served
        assert (report["applied"], report["rejected"], report["releases_unread"]) == (3, 0, None)

        for handle in orders:  # what the orders themselves applied
            order_id = handle.id.removeprefix("backorder-")
            await released(handle, sum(q for (o, *_), q in reserved.items() if o == order_id))
        more = tmp_path / "more.jsonl"
        more.write_text(event(f"{s.sku}-3", "receipt", sku=s.sku, location=s.location, quantity=10))
        code, out, err = await cli("inventory", "load", str(more))
        assert (code, err) == (0, ""), out
        assert "\x1b" not in out
        now_reserved = await ledger(pg_dsn, s.site)
        assert out.startswith(
            "applied 1, duplicate 0, rejected 0 of 1 lines\nreleased 4 units to 1 order:\n"
        )
        assert table_rows(out) == now_reserved - reserved
        assert sum((now_reserved - reserved).values()) == 4  # the rest of the third order

        code, out, err = await cli("inventory", "load", str(first))
        assert (code, out, err) == (0, "applied 0, duplicate 3, rejected 0 of 3 lines\n", "")


def allotment(order_id: str, units: int, location: str) -> dict[str, object]:
    """An allotment signal, as `allotment_deliveries` keeps it, releasing one ready line."""
    release = OrderRelease.model_validate(
        {
            "order_id": order_id,
            "shipments": [
                {
                    "kind": "ready",
                    "location": location,
                    "allotments": [
                        {"line_id": "1", "sku": "KTP", "quantity": units, "location": location,
                         "source": "current"},
                    ],
                }
            ],
            "lines": [{"line_id": "1", "sku": "KTP", "released": units, "backordered": 0,
                       "cancelled": 0}],
            "parent_status": "reassigned",
        }
    )  # fmt: skip
    return AllotmentSignal(pass_id="p-1", release=release).model_dump(mode="json")


def test_releases_name_the_orders_whose_workflow_had_ended() -> None:
    found = releases_of(
        [
            ("p-1", "B", allotment("B", 2, "DC"), "gone"),
            ("p-1", "A", allotment("A", 3, "DC"), "delivered"),
            ("p-1", "C", AllotmentSignal(pass_id="p-1").model_dump(mode="json"), None),
        ]
    )
    assert [(r.order_id, r.units, r.location, r.given_back) for r in found] == [
        ("A", 3, "DC", False),
        ("B", 2, "DC", True),
    ]


@pytest.fixture
def allocator(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeAllocator]:
    """The allocator faked at `send_inventory`, and a database no one listens on."""
    settings = Settings(site="test", database={"dsn": "postgresql://postgres@127.0.0.1:1/none"})

    async def connect(s: Settings) -> Client:
        return None  # type: ignore[return-value]

    monkeypatch.setattr(cli.common, "connect_temporal", connect)
    monkeypatch.setattr(cli.app, "load_settings", lambda *a, **kw: settings)

    def install(**kw: object) -> FakeAllocator:
        fake = FakeAllocator(**kw)  # type: ignore[arg-type]
        monkeypatch.setattr(cli.allocator, "send_inventory", fake.send)
        return fake

    return install


def test_totals_stay_when_who_got_them_cannot_be_read(
    allocator: Callable[..., FakeAllocator], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    allocator(released=(2, 7))
    feed = tmp_path / "feed.jsonl"
    feed.write_text(
        event("a", "receipt", sku="KTP", location="DC", quantity=1)
        + "\n"
        + event("b", "receipt", sku="KTP", location="DC", quantity=1)
    )
    assert starter.main(["inventory", "load", str(feed), "--chunk-size", "1"]) == 0
    out, err = capsys.readouterr()
    assert out == "applied 2, duplicate 0, rejected 0 of 2 lines\nreleased 14 units to 4 orders\n"
    assert re.fullmatch(
        r"backorder: which orders got them could not be read: cannot reach PostgreSQL: .*\n", err
    )
    assert starter.main(["inventory", "load", str(feed), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["units_released"], report["releases"]) == (7, None)
    assert report["releases_unread"].startswith("cannot reach PostgreSQL")
