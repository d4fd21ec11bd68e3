"""A morning's work, as an operator does it: every step through the `backorder` CLI, every
figure checked against the ledger and read model in PostgreSQL (queried here, apart from the
commands). On the dev server with the real worker, activities, sandbox gateway and allocator.

The night left 30 orders across 5 SKUs: some partly released from the stock there was, one
whose hold the card's issuer released overnight (its capture will fail), one placed four weeks
ago (two days before the FTC rule's 30-day deadline: its delay notice goes out at once). The
operator lists what waits on a SKU, loads the morning's receipts and sees who got them, finds
the problem orders through the exception queue, resolves one, checks stock and incoming
purchase orders, and produces the report.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

import starter
from config import Settings
from payments.http_gateway import HttpGateway
from tests.payment_servers import SandboxServer, wall_clock_sandbox
from tests.polling import eventually
from worker import build_worker

pytestmark = pytest.mark.e2e
__all__ = ["wall_clock_sandbox"]  # fixtures

SKUS = ("KTP", "MUG", "TEA", "LAMP", "BOLT")
ON_HAND = {"KTP": 6, "MUG": 3}
"""What the night's stock was: KTP and MUG orders are partly released at acceptance."""
PRICE = {"KTP": "10.00", "MUG": "7.50", "TEA": "4.00", "LAMP": "30.00", "BOLT": "0.25"}
SHORT_AUTH = "FAIL-1"
"""Authorised at checkout; most of the hold released at the gateway before its capture."""
LATE = "LATE-1"


class Shop:
    """The CLI on the test's services, and PostgreSQL read apart from it."""

    def __init__(self, dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.dsn, self.capsys = dsn, capsys

    async def cli(self, *argv: str, ok: bool = True) -> tuple[int, str, str]:
        code = await asyncio.to_thread(starter.main, list(argv))
        out, err = self.capsys.readouterr()
        if ok:
            assert code == 0, (argv, out, err)
        return code, out, err

    async def json(self, *argv: str) -> Any:
        return json.loads((await self.cli(*argv, "--json"))[1])

    async def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(self.dsn) as conn:
            cur = await conn.execute(sql.encode(), params or None)
            return list(await cur.fetchall())


def order(
    order_id: str, lines: list[tuple[str, int]], now: dt.datetime, **extra: Any
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "order_number": f"M-{order_id}",
        "placed_at": (now - dt.timedelta(hours=1)).isoformat(),
        "currency": "USD",
        "customer": {"id": f"c-{order_id}", "email": "c@example.com", "tier": "standard"},
        "fulfillment": {"type": "sth"},
        "lines": [
            {"line_id": f"L{i}", "sku": sku, "quantity": q, "unit_price": PRICE[sku]}
            for i, (sku, q) in enumerate(lines, 1)
        ],
        **extra,
    }


async def test_a_mornings_work_through_the_cli(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    pg_dsn: str,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    wall_clock_sandbox: SandboxServer,
) -> None:
    # a site of its own: its allocator (`allocator-<site>`) is this test's alone on the shared
    # dev server
    settings = Settings(site=f"morning-{uuid.uuid4().hex[:6]}", temporal=settings.temporal)
    target = dev_env.client.service_client.config.target_host
    monkeypatch.setenv("BACKORDER_TEMPORAL__TARGET", target)
    monkeypatch.setenv("BACKORDER_TEMPORAL__TASK_QUEUE", settings.temporal.task_queue)
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", pg_dsn)
    monkeypatch.setenv("BACKORDER_SITE", settings.site)
    monkeypatch.setenv("BACKORDER_PAYMENTS__SANDBOX_URL", wall_clock_sandbox.url)
    monkeypatch.setenv("COLUMNS", "200")
    shop = Shop(pg_dsn, capsys)
    now = dt.datetime.now(dt.UTC)
    today = now.date()

    async with build_worker(dev_env.client, pg_pool, settings):
        # -- the night: the catalogue, its stock, a purchase order, 30 orders -------------------
        await shop.cli("inventory", "location", "DC", "--rank", "0")
        for sku in SKUS:
            await shop.cli("inventory", "product", sku)
        for sku, units in ON_HAND.items():
            await shop.cli("inventory", "receipt", sku, "DC", str(units))
        await shop.cli(
            "inventory", "po", "PO-TEA", "TEA", "DC", "20", "--date", str(today + dt.timedelta(5))
        )
        _, payment, _ = await shop.cli(
            "payments", "authorise", "--amount", "60.00", "--currency", "USD",
            "--order-id", SHORT_AUTH,
        )  # fmt: skip
        # overnight the card's issuer released most of the hold (outside this service): the
        # capture of the whole 60.00 will be declined
        async with HttpGateway(wall_clock_sandbox.url, timeout=5.0) as gateway:
            reference = json.loads(payment)["reference"]
            await gateway.void(
                "issuer/FAIL-1", reference, Decimal("59.00"), order_id=SHORT_AUTH, currency="USD"
            )
        orders = [order(f"N-{i:02d}", [(SKUS[i % 5], 1 + i % 3)], now) for i in range(28)] + [
            order(SHORT_AUTH, [("LAMP", 2)], now, payment=json.loads(payment)),
            order(LATE, [("BOLT", 4)], now - dt.timedelta(days=28)),
        ]
        batch = tmp_path / "orders.jsonl"
        batch.write_text("".join(json.dumps(o) + "\n" for o in orders))
        started = await shop.json("order", "start", str(batch))
        assert started["started"] == 30, started
        await eventually(lambda: shop.rows("SELECT count(*) FROM orders"), lambda r: r[0][0] == 30)

        # -- what waits on LAMP? ------------------------------------------------------------------
        waiting = await shop.json("order", "list", "--waiting-on", "LAMP", "--limit", "100")
        lamp = await shop.rows("SELECT DISTINCT order_id FROM demand WHERE sku = 'LAMP'")
        assert sorted(o["order_id"] for o in waiting["orders"]) == sorted(r[0] for r in lamp)
        assert SHORT_AUTH in {o["order_id"] for o in waiting["orders"]}
        partly = await shop.rows(
            "SELECT DISTINCT order_id FROM reservations WHERE sku = ANY(%s)", list(ON_HAND)
        )
        assert partly  # the night's stock went to the first KTP and MUG orders

        # -- the morning's receipts: who got what -------------------------------------------------
        receipts = tmp_path / "receipts.jsonl"
        lamp_receipt = {"type": "receipt", "event_id": "m-1", "sku": "LAMP", "location": "DC"}
        receipts.write_text(json.dumps({**lamp_receipt, "quantity": 40}) + "\n")
        loaded = await shop.json("inventory", "load", str(receipts))
        assert loaded["applied"] == 1 and loaded["releases"]
        got = {(r["order_id"], r["sku"], r["units"]) for r in loaded["releases"]}
        reserved = await shop.rows(
            "SELECT order_id, sku, sum(quantity)::int FROM reservations WHERE sku = 'LAMP'"
            " GROUP BY 1, 2"
        )
        assert got == set(reserved)

        # -- the problem orders, through the exception queue --------------------------------------
        high = await eventually(
            lambda: shop.json("exceptions", "--severity", "high"),
            lambda rows: any(r["order_id"] == SHORT_AUTH for r in rows),
        )
        capture = next(r for r in high if r["order_id"] == SHORT_AUTH)
        assert capture["kind"] == "payment_capture_failed"
        late = await eventually(
            lambda: shop.json("order", "status", LATE),
            lambda s: s["schedule"]["ftc"]["notices"] == 1 and s["exceptions"]["open"] == 1,
        )
        assert late["status"] == "backordered"  # told of the delay; silence is consent
        assert [e["kind"] for e in late["exceptions"]["latest"]] == ["ftc_deadline"]
        assert ("ftc_deadline", LATE) in {
            (r["kind"], r["order_id"]) for r in await shop.json("exceptions", "--severity", "high")
        }

        async def flagged_and_open() -> tuple[set[Any], set[Any]]:
            """The list's open-exception counts, and the exception table's (a declined capture
            is followed by the void of what it left held, which may be declined too: counts
            settle once the order has ended)."""
            flagged = await shop.json("order", "list", "--with-exception", "--limit", "100")
            open_by_order = await shop.rows(
                "SELECT order_id, count(*)::int FROM exceptions WHERE resolved_at IS NULL"
                " GROUP BY 1"
            )
            listed = {(o["order_id"], o["open_exceptions"]) for o in flagged["orders"]}
            return listed, set(open_by_order)

        listed, _ = await eventually(
            flagged_and_open, lambda both: both[0] == both[1] and (SHORT_AUTH, 2) in both[0]
        )
        assert (LATE, 1) in listed

        _, said, _ = await shop.cli(
            "exceptions", "resolve", str(capture["id"]), "--note", "card updated by phone",
            "--by", "morning-shift",
        )  # fmt: skip
        assert f"resolved {capture['id']}" in said
        still = await shop.json("exceptions")
        assert capture["id"] not in {r["id"] for r in still}
        assert await shop.rows(
            "SELECT resolved_by, resolution FROM exceptions WHERE id = %s", capture["id"]
        ) == [("morning-shift", "card updated by phone")]

        # -- stock and what is coming, before calling a supplier ----------------------------------
        view = await shop.json("inventory", "stock")
        ledger = await shop.rows("SELECT sku, location, on_hand, reserved FROM stock")
        assert {
            (s["sku"], s["location"], s["on_hand"], s["reserved"]) for s in view["stock"]
        } == set(ledger)
        assert [(i["receipt_id"], i["to_come"]) for i in view["incoming"]] == [("PO-TEA", 20)]
        demand = await shop.rows(
            "SELECT sku, sum(quantity_open)::int FROM demand GROUP BY sku ORDER BY sku"
        )
        assert sorted((d["sku"], d["units"]) for d in view["demand"]) == demand

        # -- the report ---------------------------------------------------------------------------
        report = await shop.json("report", "--by-sku")
        backlog = report["figures"]["backlog"]
        waiting_orders = await shop.rows(
            "SELECT count(*)::int FROM orders WHERE status IN ('backordered', 'awaiting_receipt')"
        )
        assert backlog["orders"] == waiting_orders[0][0]
        assert report["ftc"]["delay_notices"] >= 1  # LATE-1's
        html = tmp_path / "report.html"
        _, wrote, _ = await shop.cli("report", "--html", str(html))
        assert html.stat().st_size > 100_000 and str(html) in wrote
