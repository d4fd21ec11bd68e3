"""Cancels racing allotments on real processes: `backorder-worker`, the allocator, the sandbox
gateway over HTTP with slow voids, PostgreSQL. Before the order's end ran under the lock with
its inbox drained, stock allotted to an order while its cancel was voiding stayed reserved for
the ended order for ever, and the end's second void raised a false `payment_void_failed`."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path

from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from domain.order import Order
from domain.order_book import CancelLine
from embedded.postgres import EmbeddedPostgres
from tests.reliability.harness import Stack, eventually, open_stack, scaled
from tests.reliability.invariants import check_invariants
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus, CancelRequest

VOID_HELD = 4.0
"""How long the sandbox holds a slow void before answering 504 (Temporal retries it)."""


async def test_stock_allotted_to_an_order_whose_cancel_is_voiding_goes_to_the_next(
    stack: Stack,
) -> None:
    """X and Y each wait for 2 units, X first. X is cancelled through `cancel_order` while its
    void is slow at the gateway; meanwhile a receipt of 2 arrives and the allocator reserves
    them for X. X must give them back at once, Y must get them, and X's cancel must void once
    with no exception."""
    await stack.start_worker()
    sku = stack.sku("RACE")
    await stack.define(sku)
    x = await stack.order([(sku, 2, "10.00")], prefix="X")
    await stack.start_orders([x])
    await stack.wait_accepted([x])
    y = await stack.order([(sku, 2, "10.00")], prefix="Y")
    await stack.start_orders([y])
    await stack.wait_accepted([y])

    await stack.sandbox.arm(
        operation="void", kind="timeout", delay_seconds=VOID_HELD, order_id=x.order_id
    )
    cancel = await stack.handle(x).start_update(
        BackorderWorkflow.cancel_order,
        CancelRequest(reason="changed my mind"),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
    )
    await eventually(  # X's void is being held at the gateway
        stack.sandbox.armed,
        lambda faults: not any(f["left"] for f in faults),
        within=30,
        what="X's void at the gateway",
    )
    await stack.feed(stack.receipt(sku, 2))  # the pass reserves both units for X
    reserved_for_x = await stack.scalar(
        "SELECT coalesce(sum(quantity), 0) FROM reservations WHERE order_id = %s",
        (x.order_id,),
    )
    result = await cancel.result()
    ended = await stack.wait_ended([x, y], within=90)

    assert reserved_for_x == 2, "the race did not happen: the pass did not serve X first"
    assert result.voided == 20
    assert [s.status for s in ended] == [BackorderStatus.CANCELLED, BackorderStatus.COMPLETED]
    await check_invariants(stack.dsn, stack.client, order_ids=[x.order_id, y.order_id])


async def test_receipts_and_cancels_interleaved_on_many_orders_strand_nothing(
    pg_server: EmbeddedPostgres, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Receipts and cancels (whole orders and single lines, through the update and the signal)
    interleaved on many waiting orders in quantity mode, with every third void slow: every unit
    ends reserved for a running order that wants it, shipped, or free; every cent once."""
    address = dev_env.client.service_client.config.target_host
    async with open_stack(
        pg_server, address, dev_env.client, tmp_path / "stack", policy={"release_mode": "quantity"}
    ) as s:
        started = time.monotonic()
        await s.start_worker()
        skus = [s.sku("A"), s.sku("B")]
        await s.define(*skus)
        rng = random.Random(12)
        n = scaled(40)
        orders: list[Order] = []
        for _ in range(n):
            lines = [
                (sku, rng.randint(1, 3), "4.00") for sku in rng.sample(skus, rng.randint(1, 2))
            ]
            orders.append(await s.order(lines, prefix="IL"))
        await s.start_orders(orders)
        await s.wait_accepted(orders)
        await s.sandbox.arm(operation="void", kind="timeout", delay_seconds=2.0, times=n // 3)

        cancelled = rng.sample(orders, n // 2)
        receipts = [s.receipt(rng.choice(skus), rng.randint(2, 6)) for _ in range(n // 3)]

        async def cancel(order: Order) -> None:
            await asyncio.sleep(rng.random() * 3)
            handle = s.handle(order)
            # refused when shipped, settled or ended meanwhile: nothing changes
            with contextlib.suppress(WorkflowUpdateFailedError, RPCError):
                if rng.random() < 0.3:  # customer service's signal: the whole order
                    await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="signal"))
                    return
                line = rng.choice([None, *order.lines])
                request = CancelRequest(lines=(CancelLine(line_id=line.line_id),) if line else ())
                await handle.execute_update(BackorderWorkflow.cancel_order, request)

        async def receive(i: int) -> None:
            await asyncio.sleep(i * 3 / len(receipts))
            await s.post(receipts[i])

        await asyncio.gather(
            *(cancel(o) for o in cancelled), *(receive(i) for i in range(len(receipts)))
        )
        ids = [o.order_id for o in orders]
        # a cancel signal that found its order ended, or nothing left to cancel, is refused on
        # the record: the operators hear of it (message_refused), nothing else changes
        refused = ("message_refused",)
        report = await check_invariants(
            s.dsn, s.client, order_ids=ids, settle=60, allowed_exceptions=refused
        )
        running = [
            o
            for o in orders
            if (await s.handle(o).describe()).status is WorkflowExecutionStatus.RUNNING
        ]
        for order in running:  # end the rest, then check once more
            with contextlib.suppress(RPCError):  # it may have completed since
                await s.handle(order).signal(BackorderWorkflow.cancel, CancelRequest(reason="end"))
        await s.wait_ended(orders, within=120)
        final = await check_invariants(
            s.dsn, s.client, order_ids=ids, settle=60, allowed_exceptions=refused
        )
        print(
            f"\ninterleaved: {n} orders, {len(cancelled)} cancels, {len(receipts)} receipts"
            f" ({sum(r.quantity for r in receipts)} units), {n // 3} slow voids;"
            f" {len(running)} still waiting at the first check; {time.monotonic() - started:.0f}s"
            f"\n{report}\n{final}"
        )
