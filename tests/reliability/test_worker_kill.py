"""`backorder-worker` SIGKILLed in the middle of a release pass and in the middle of a run of
captures, a new worker started each time: every order completes, every unit and every cent
moves exactly once.

One experiment, two kills whose recoveries overlap (each activity the dead worker had in hand
waits for its start-to-close timeout, 60 s for a payment): the first worker dies the moment the
pass that released a receipt to the waiting orders commits, while its allotments are signalled
and applied (shipments, captures); the second while a burst of in-stock orders captures at
acceptance. (A kill inside the pass's own transaction is left out: the pass activity has no
heartbeat, so its retry waits out the 5-minute pass timeout, too long for CI.)
"""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from activities.contracts import DELIVER_ALLOTMENTS
from domain.order import Order
from tests.reliability.harness import Stack, scaled
from tests.reliability.invariants import check_invariants
from workflows.allocator_messages import allocator_id
from workflows.messages import BackorderStatus

pytestmark = pytest.mark.e2e

CAPTURES = (
    "SELECT count(*) FROM payment_requests WHERE operation = 'capture' AND order_id = ANY(%s)"
)


async def test_worker_killed_mid_pass_and_mid_captures_every_order_completes_once(
    stack: Stack,
) -> None:
    started = time.monotonic()
    first = await stack.start_worker()
    waiting_sku, in_stock_sku = stack.sku("WAIT"), stack.sku("HAVE")
    await stack.define(waiting_sku, in_stock_sku)
    n = scaled(16)
    burst = scaled(16)
    await stack.feed(stack.receipt(in_stock_sku, 2 * burst + n))  # before anyone orders it

    # n orders wait for 1-3 units each; some also take an in-stock unit of another sku at once
    waiting: list[Order] = []
    for i in range(n):
        lines = [(waiting_sku, 1 + i % 3, "7.50")]
        if i % 4 == 0:
            lines.append((in_stock_sku, 1, "3.25"))
        waiting.append(await stack.order(lines, prefix="WK"))
    await stack.start_orders(waiting)
    await stack.wait_accepted(waiting)
    wanted = sum(ln.quantity for o in waiting for ln in o.lines if ln.sku == waiting_sku)
    ids = [o.order_id for o in waiting]
    before = await stack.scalar(CAPTURES, (ids,))

    # kill 1: the pass has committed the reservations for every waiting order, and its
    # allotments are being signalled (and applied by the orders: shipments, captures)
    await stack.post(stack.receipt(waiting_sku, wanted))
    await stack.wait_activity(allocator_id(stack.site), DELIVER_ALLOTMENTS.name)
    await first.kill()
    at_kill = await stack.scalar(CAPTURES, (ids,))
    undelivered = await stack.scalar(
        "SELECT count(*) FROM allotment_deliveries d JOIN allocation_passes p USING (pass_id)"
        " WHERE p.site = %s AND d.outcome IS NULL",
        (stack.site,),
    )
    assert at_kill - before < n, "the whole release was captured before the kill"
    second = await stack.start_worker()

    # kill 2: a burst of orders for stock on hand, each captured at acceptance
    burst_orders = [
        await stack.order([(in_stock_sku, 2, "4.00")], prefix="WB") for _ in range(burst)
    ]
    burst_ids = [o.order_id for o in burst_orders]
    # half the burst's captures are slow at the gateway (held 2 s, then 504, retried 5 s
    # later): however loaded the machine, the kill lands before the last of them is applied
    await stack.sandbox.arm(operation="capture", kind="timeout", delay_seconds=2, times=burst // 2)
    await stack.start_orders(burst_orders)
    at_second_kill = await stack.wait_until(
        CAPTURES,
        (burst_ids,),
        lambda c: c >= burst // 4,
        within=float(scaled(60)),  # a burst ten times larger takes longer to reach the gateway
        what="the burst's captures",
    )
    await second.kill()
    at_second_kill = await stack.scalar(CAPTURES, (burst_ids,))
    assert at_second_kill < burst, "the whole burst was captured before the kill"
    await stack.start_worker()

    everyone = [*waiting, *burst_orders]
    summaries = await stack.wait_ended(everyone, within=180 + 2 * len(everyone))
    assert [s.status for s in summaries] == [BackorderStatus.COMPLETED] * len(everyone)
    for s in summaries:  # everything released and shipped, once
        assert all(ln.released == ln.ordered for ln in s.lines), s
    all_ids = [o.order_id for o in everyone]
    per_order = dict(
        await stack.rows(
            "SELECT order_id, count(*) FROM notices"
            " WHERE kind IN ('shipped', 'partly_shipped') AND order_id = ANY(%s) GROUP BY 1",
            (all_ids,),
        )
    )
    shipments = dict(
        await stack.rows(
            "SELECT order_id, count(*) FROM shipments WHERE order_id = ANY(%s) GROUP BY 1",
            (all_ids,),
        )
    )
    captures = dict(
        await stack.rows(
            "SELECT order_id, count(*) FROM payment_requests"
            " WHERE operation = 'capture' AND order_id = ANY(%s) GROUP BY 1",
            (all_ids,),
        )
    )
    assert captures == shipments, "one capture per shipment"
    assert all(per_order.get(i, 0) == shipments[i] for i in all_ids), per_order
    report = await check_invariants(stack.dsn, stack.client, order_ids=all_ids)
    print(
        f"\nworker kill: {n} waiting + {burst} in-stock orders; first kill after"
        f" {at_kill - before}/{n} captures ({undelivered} allotments undelivered), second"
        f" after {at_second_kill}/{burst}; all done in {time.monotonic() - started:.0f}s\n{report}"
    )


async def test_worker_killed_inside_a_pass_transaction_is_replaced_within_a_minute(
    stack: Stack,
) -> None:
    """The pass is one PostgreSQL transaction that waits on locks: a worker that dies inside it
    must not stall the site for the pass's whole 5-minute timeout. The pass heartbeats, so the
    next worker runs it again within seconds of the heartbeat timeout (20 s)."""
    worker = await stack.start_worker()
    sku = stack.sku("HB")
    await stack.define(sku)
    order = await stack.order([(sku, 2, "5.00")], prefix="HB")
    await stack.start_orders([order])
    await stack.wait_accepted([order])
    async with await psycopg.AsyncConnection.connect(stack.dsn, autocommit=True) as holder:
        # the site's pass lock: the next pass waits inside its transaction
        await holder.execute(
            "SELECT pg_advisory_lock(hashtextextended(%s, 0))", (f"allocator:{stack.site}",)
        )
        await stack.post(stack.receipt(sku, 2))
        await stack.wait_activity(allocator_id(stack.site), "allocate")
        await asyncio.sleep(1)  # inside the transaction, waiting on the lock
        await worker.kill()
        killed = time.monotonic()
    await stack.start_worker()
    summary = (await stack.wait_ended([order], within=120))[0]
    recovered = time.monotonic() - killed

    assert summary.status is BackorderStatus.COMPLETED
    assert recovered < 60, f"the pass came back {recovered:.0f}s after the kill"
    await check_invariants(stack.dsn, stack.client, order_ids=[order.order_id])
    print(f"\nkilled inside a pass: the order completed {recovered:.0f}s after the kill")
