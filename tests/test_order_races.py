"""The order workflow's races, told step by step: a gateway call is held at an exact point while
a message arrives, and the test goes on only once the workflow has seen it. Each of these lost
stock or money before the order's end ran under the lock with its inbox drained."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateStage
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from domain.order_book import CancelLine
from domain.policy import BackorderPolicy
from tests.fakes import Gate, World
from tests.order_life import (
    Handle,
    accepted,
    current,
    make_order,
    ready,
    release,
    running,
    seen,
    start,
    task_queue,
)
from workflows.backorder import BackorderWorkflow
from workflows.messages import AllotmentSignal, BackorderStatus, CancelRequest

pytestmark = pytest.mark.e2e


async def test_stock_allotted_while_a_cancel_is_voiding_goes_back_and_is_voided_once(
    dev_env: WorkflowEnvironment,
) -> None:
    """Issue items 1 and 2: the allocator reserves for X while X's cancel waits on a slow void.
    The allotment must be refused and its stock handed on at once, and the order's end must not
    void a second time what the cancel is still voiding."""
    env = dev_env
    now = await env.get_current_time()
    order = make_order(now, [("B", 2, "10.00")], paid="20.00")
    gate = Gate()
    world = World(gates={"void_payment": gate})
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await accepted(handle)
        cancel = await handle.start_update(
            BackorderWorkflow.cancel_order,
            CancelRequest(reason="changed my mind"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        await gate.entered.wait()  # the cancel's void is at the gateway
        two = release(order.order_id, [("L1", "B", 2, 0)], ready(current("L1", "B", 2)))
        await handle.signal(BackorderWorkflow.allotment, AllotmentSignal(pass_id="P1", release=two))
        await seen(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
        gate.opened.set()
        result = await cancel.result()
        summary = await handle.result()

    assert result.voided == Decimal("20.00")
    assert world.payments() == [("void", Decimal("20.00"), "auth-0")]  # one void, no second
    assert world.applied("raise_exception") == []  # a correct cancel raises nothing
    assert world.stock_moves() == [("release_stock", (("B", 2, "current"),))]
    assert any(check.skus == ("B",) for check in world.checks)  # handed on at once
    assert world.applied("publish_shipment") == []  # nothing ships for a cancelled order
    assert summary.status is BackorderStatus.CANCELLED


async def test_a_temporal_cancel_during_a_cancel_order_void_closes_the_payment_once(
    dev_env: WorkflowEnvironment,
) -> None:
    """An operator cancels the workflow while customer service's cancel of one line is voiding:
    compensation waits for it, voids only the rest, and nothing is voided twice."""
    env = dev_env
    now = await env.get_current_time()
    order = make_order(now, [("B", 2, "10.00"), ("C", 1, "15.00")], paid="35.00")
    gate = Gate()
    world = World(gates={"void_payment": gate})
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await accepted(handle)
        cancel = await handle.start_update(
            BackorderWorkflow.cancel_order,
            CancelRequest(lines=(CancelLine(line_id="L1"),)),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        await gate.entered.wait()
        await handle.cancel()
        await seen(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED)
        # give a compensation that does not wait for the cancel its chance to void meanwhile
        for _ in range(20):
            if sum(a.name == "void_payment" for a in world.attempts) >= 2:
                break
            await asyncio.sleep(0.05)
        gate.opened.set()
        result = await cancel.result()
        with pytest.raises(Exception) as ended:
            await handle.result()

    assert isinstance(ended.value.__cause__, CancelledError)
    assert result.voided == Decimal("20.00")
    voids = sorted(amount for step, amount, _ in world.payments() if step == "void")
    assert voids == [Decimal("15.00"), Decimal("20.00")]  # each unit's money once, no extra
    assert world.applied("raise_exception") == []


async def test_an_order_never_ends_with_an_allotment_unhandled(
    dev_env: WorkflowEnvironment,
) -> None:
    """A whole-order cancel and an allotment in one breath, many times over: every allotment
    that reached the workflow is answered (taken or given back), never left in the inbox."""
    env = dev_env
    now = await env.get_current_time()
    world = World(policy=BackorderPolicy())
    queue = task_queue()
    orders = [make_order(now, [("B", 1, "10.00")], paid="10.00") for _ in range(12)]
    async with running(env, world, queue):
        handles = [await start(env, order, queue) for order in orders]
        await asyncio.gather(*(accepted(h) for h in handles))

        async def race(handle: Handle, order_id: str, i: int) -> bool:
            """Whether the allotment reached the workflow (not: it had already ended, and the
            allocator's delivery would release the units itself)."""
            one = release(order_id, [("L1", "B", 1, 0)], ready(current("L1", "B", 1)))
            signal, _ = await asyncio.gather(
                handle.signal(
                    BackorderWorkflow.allotment, AllotmentSignal(pass_id=f"P{i}", release=one)
                ),
                handle.execute_update(BackorderWorkflow.cancel_order, CancelRequest()),
                return_exceptions=True,
            )
            return not isinstance(signal, BaseException)

        pairs = list(zip(handles, orders, strict=True))
        delivered = await asyncio.gather(
            *(race(h, o.order_id, i) for i, (h, o) in enumerate(pairs))
        )
        summaries = await asyncio.gather(*(h.result() for h in handles))

    shipped_orders = {r.order_id for r in world.applied("publish_shipment")}
    released = [r.order_id for r in world.applied("release_stock")]
    for order, summary, reached in zip(orders, summaries, delivered, strict=True):
        shipped = summary.status is BackorderStatus.COMPLETED
        assert shipped == (order.order_id in shipped_orders), order.order_id
        # an allotment that reached the order shipped (the cancel came too late) or went back
        assert (shipped or order.order_id in released) == reached, order.order_id
        assert released.count(order.order_id) <= 1
    assert world.applied("raise_exception") == []
