"""The Temporal dev server (its own process, persisted to a SQLite file) stopped while orders
sleep on re-authorisation timers, kept down past their due time and started again: the worker
process reconnects by itself, every timer due during the outage fires once after it, the timers
due later fire on time, and the orders then complete normally."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest

from domain.order import Order
from embedded.postgres import EmbeddedPostgres
from tests.reliability.harness import OwnTemporal, Stack, open_stack, scaled, utc_now
from tests.reliability.invariants import check_invariants
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus

pytestmark = pytest.mark.e2e

REAUTHORISED = (
    "SELECT order_id, count(*) FROM payment_requests"
    " WHERE operation = 'authorise' AND key LIKE '%%/reauthorise/%%' AND order_id = ANY(%s)"
    " GROUP BY 1"
)
PREVIOUS_VOIDED = (
    "SELECT order_id, count(*) FROM payment_requests"
    " WHERE operation = 'void' AND key LIKE '%%/void-previous' AND order_id = ANY(%s)"
    " GROUP BY 1"
)


def setup_seconds(orders: int) -> float:
    """From creating the orders to their first timer: time to accept them all and stop the
    server before any is due (about 0.4 s per order here, when the machine is busy)."""
    return 10.0 + 0.5 * orders


async def test_timers_due_while_temporal_is_down_fire_once_after_it_restarts(
    pg_server: EmbeddedPostgres, own_server: OwnTemporal, tmp_path: Path
) -> None:
    # re-authorise at the latest an hour before the hold expires: an authorisation that the
    # order system reports as expiring in an hour and some seconds is renewed in some seconds
    policy = {"reauth_before_expiry_hours": 1, "reauth_interval_days": 10}
    async with open_stack(
        pg_server, own_server.address, own_server.client, tmp_path / "stack", policy=policy
    ) as s:
        started = time.monotonic()
        worker = await s.start_worker()
        sku = s.sku()
        await s.define(sku)

        n, m = scaled(8), scaled(2)
        now = utc_now()
        first_due = now + dt.timedelta(seconds=setup_seconds(n + m))
        during: list[tuple[Order, dt.datetime]] = []  # due while the server is down
        after: list[tuple[Order, dt.datetime]] = []  # due some seconds after it is back
        for i in range(n):  # spread over two seconds
            due = first_due + dt.timedelta(seconds=2 * i / n)
            during.append((await _order(s, sku, 1 + i % 2, now, due), due))
        last_due = during[-1][1]
        for i in range(m):
            due = last_due + dt.timedelta(seconds=10 + 2 * i / m)
            after.append((await _order(s, sku, 1, now, due), due))
        orders = [o for o, _ in (*during, *after)]
        ids = [o.order_id for o in orders]
        await s.start_orders(orders)
        await s.wait_accepted(orders, within=setup_seconds(n + m))
        assert await s.rows(REAUTHORISED, (ids,)) == []

        await own_server.stop()
        stopped = utc_now()
        assert stopped < first_due, f"accepting {len(orders)} orders took past the first timer"
        await asyncio.sleep((last_due - utc_now()).total_seconds() + 2)
        await own_server.start()
        restarted = utc_now()

        # the same worker process reconnects and fires every overdue timer, once
        assert worker.alive, worker.log()
        await s.wait_polling(worker, within=60)
        during_ids = [o.order_id for o, _ in during]
        await s.wait_until(
            "SELECT count(*) FROM payment_requests WHERE operation = 'void'"
            " AND key LIKE '%%/void-previous' AND order_id = ANY(%s)",
            (during_ids,),
            lambda c: c == len(during_ids),
            within=90,
            interval=0.5,
            what="the overdue re-authorisations",
        )
        overdue_done = utc_now() - restarted
        # and the timers due later fire on time, also once
        await s.wait_until(
            "SELECT count(*) FROM payment_requests WHERE operation = 'void'"
            " AND key LIKE '%%/void-previous' AND order_id = ANY(%s)",
            (ids,),
            lambda c: c == len(ids),
            within=90,
            interval=0.5,
            what="every re-authorisation",
        )
        assert dict(await s.rows(REAUTHORISED, (ids,))) == dict.fromkeys(ids, 1)
        assert dict(await s.rows(PREVIOUS_VOIDED, (ids,))) == dict.fromkeys(ids, 1)
        fired = await s.rows(
            "SELECT order_id, min(created_at) FROM payment_requests"
            " WHERE key LIKE '%%/reauthorise/%%' AND operation = 'authorise'"
            " AND order_id = ANY(%s) GROUP BY 1",
            (ids,),
        )
        at = dict(fired)
        for order, due in after:
            assert due <= at[order.order_id] < due + dt.timedelta(seconds=15), (due, at)
        for order in orders:
            status = await s.handle(order).query(BackorderWorkflow.status)
            assert [e.event for e in status.log].count("re-authorised") == 1, status.log
            assert status.payment is not None
            assert status.payment.authorisation != order.payment.reference  # type: ignore[union-attr]

        # the stock arrives: every order ships on its new authorisation and completes
        await s.feed(s.receipt(sku, sum(ln.quantity for o in orders for ln in o.lines)))
        summaries = await s.wait_ended(orders, within=120 + len(orders))
        assert {x.status for x in summaries} == {BackorderStatus.COMPLETED}
        report = await check_invariants(s.dsn, s.client, order_ids=ids)
        print(
            f"\ntemporal restart: {len(orders)} orders; down {restarted - stopped} over"
            f" {len(during)} due timers, fired {overdue_done} after the restart; done in"
            f" {time.monotonic() - started:.0f}s\n{report}"
        )


async def _order(
    s: Stack, sku: str, quantity: int, now: dt.datetime, reauthorise_at: dt.datetime
) -> Order:
    """An order whose checkout authorisation (as the order system reports it) was taken two
    hours ago and expires an hour after `reauthorise_at`."""
    return await s.order(
        [(sku, quantity, "12.00")],
        authorised_at=now - dt.timedelta(hours=2),
        expires_at=reauthorise_at + dt.timedelta(hours=1),
        prefix="TR",
    )
