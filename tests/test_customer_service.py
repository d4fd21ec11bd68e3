"""Customer-service messages on the time-skipping server, activities faked in one world: every
update answers what it did or refuses with a typed, non-retryable error naming the field (and
changes nothing); every signal that cannot be applied (unreadable, unknown name, refused) is in
the order's log and the operators' exception queue, never dropped silently; and messages racing
a cancel that holds the lock are told apart step by step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from domain.order import Order
from domain.order_book import CancelLine
from domain.schedule import FtcState
from tests.fakes import Gate, World
from tests.order_life import Clock, Handle, make_order, running, start, task_queue
from workflows import refusals as r
from workflows.backorder import BackorderWorkflow
from workflows.messages import (
    CancelRequest,
    CheckNow,
    CheckResult,
    ConsentSignal,
    OrderStatus,
    PriorityChange,
    PriorityResult,
)


async def refused(update: Any) -> ApplicationError:
    """The typed refusal an update came back with (which must be non-retryable)."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await update
    cause = info.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.non_retryable, cause
    return cause


def unchanged(before: OrderStatus, after: OrderStatus) -> bool:
    return (before.lines, before.customer_tier, before.ftc_state, before.log) == (
        after.lines,
        after.customer_tier,
        after.ftc_state,
        after.log,
    )


async def until_logged(handle: Handle, event: str, count: int = 1) -> OrderStatus:
    for _ in range(200):
        status = await handle.query(BackorderWorkflow.status)
        if sum(e.event == event for e in status.log) >= count:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {count} {event!r} in the log")


@asynccontextmanager
async def waiting_half_a_day(
    env: WorkflowEnvironment, world: World
) -> AsyncIterator[tuple[Order, Handle]]:
    """An order of 3 x B, accepted with nothing in stock, half a day into its wait."""
    t0 = await env.get_current_time()
    order = make_order(t0, [("B", 3, "5.00")])
    queue = task_queue()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        await Clock(env, t0).until(0.5)
        yield order, handle


async def test_updates_answer_what_they_did_or_refuse_with_a_typed_error(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    world = World()
    async with waiting_half_a_day(time_skipping_env, world) as (order, handle):
        before = await handle.query(BackorderWorkflow.status)

        no_notice = await refused(
            handle.execute_update(BackorderWorkflow.give_consent, ConsentSignal())
        )
        gold = await refused(
            handle.execute_update(BackorderWorkflow.change_priority, PriorityChange(tier="gold"))
        )
        same = await refused(
            handle.execute_update(
                BackorderWorkflow.change_priority, PriorityChange(tier="standard")
            )
        )
        unreadable = await refused(handle.execute_update("change_priority", {"tier": 5}))
        untyped = await refused(
            handle.execute_update("cancel_order", {"lines": [{"line_id": "L9"}]})
        )
        too_many = await refused(
            handle.execute_update("cancel_order", {"lines": [{"line_id": "L1", "quantity": 4}]})
        )
        after_refusals = await handle.query(BackorderWorkflow.status)

        vip = await handle.execute_update(
            BackorderWorkflow.change_priority, PriorityChange(tier="vip", reason="complaint")
        )
        check = await handle.execute_update(BackorderWorkflow.request_check, CheckNow())
        await handle.terminate("test over")

    assert (no_notice.type, gold.type, same.type) == (
        r.NOTHING_TO_CONSENT,
        r.UNKNOWN_TIER,
        r.NOTHING_TO_CHANGE,
    )
    assert "nothing to consent to (FTC state none)" in no_notice.message
    assert (
        gold.message == "unknown tier 'gold': this site knows expedited, standard, vip, wholesale"
    )
    assert gold.details[0]["field"] == "tier" and gold.details[0]["value"] == "gold"
    assert unreadable.type == r.INVALID_INPUT
    assert unreadable.message == "invalid PriorityChange: tier: Input should be a valid string"
    assert (untyped.type, untyped.message) == (
        r.UNKNOWN_LINE,
        f"order {order.order_id} has no line 'L9'",
    )
    assert too_many.type == r.CANCEL_REJECTED and "4 to cancel but only 3" in too_many.message
    assert unchanged(before, after_refusals)  # a refused update changes nothing
    assert vip == PriorityResult(previous_tier="standard", tier="vip")
    assert check == CheckResult(skus=("B",), backordered_units=3)
    assert [d.backorder.tier for d in world.applied("update_demand")] == ["standard", "vip"]
    assert [(q.order_id, q.reason) for q in world.checks][-1] == (
        order.order_id,
        "operator request",
    )
    assert world.applied("raise_exception") == []  # updates are answered, not raised


async def test_a_signal_that_cannot_be_applied_is_logged_and_raised_never_dropped(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    world = World()
    async with waiting_half_a_day(time_skipping_env, world) as (order, handle):
        await handle.signal("set_priority", {"tier": 5})  # malformed
        await handle.signal("setpriority", {"tier": "vip"})  # misspelled
        await handle.signal(BackorderWorkflow.set_priority, PriorityChange(tier="gold"))
        await handle.signal(BackorderWorkflow.consent, ConsentSignal())  # no notice yet
        await handle.signal(BackorderWorkflow.set_priority, PriorityChange(tier="vip"))
        status = await until_logged(handle, "priority")
        await handle.terminate("test over")

    refusals = [e.detail for e in status.log if e.event == "message refused"]
    assert refusals == [
        "set_priority not applied (InvalidInput): invalid PriorityChange: tier: Input should be a "
        "valid string",
        "setpriority not applied (UnknownMessage): no signal 'setpriority': the order takes "
        "cancel, check_now, consent, set_priority (and allotment from the allocator)",
        "set_priority not applied (UnknownTier): unknown tier 'gold': this site knows "
        "expedited, standard, vip, wholesale",
        f"consent not applied (NothingToConsent): order {order.order_id} has nothing to consent "
        "to (FTC state none): no delay notice awaits an answer, or its cancel is already due",
    ]
    raised = world.applied("raise_exception")
    assert [(x.kind, x.severity, x.detail) for x in raised] == [
        ("message_refused", c.Severity.MEDIUM, detail) for detail in refusals
    ]
    assert len({x.key for x in raised}) == 4  # one exception per refusal, keyed by step
    assert status.customer_tier == "vip"  # the good signal after them still applied
    assert status.ftc_state is FtcState.NONE


async def test_a_message_racing_a_cancel_that_holds_the_lock(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """While a partial cancel voids (held at the gateway), a priority change passes its
    validator and waits for the lock: applied after the cancel. While a whole-order cancel
    voids, the order is already settled in its book: a priority change is refused at once
    (OrderEnded) and nothing changes."""
    env = time_skipping_env
    t0 = await env.get_current_time()
    order = make_order(t0, [("B", 3, "5.00"), ("C", 1, "2.00")], paid="17.00")
    world, queue = World(), task_queue()
    world.gates["void_payment"] = Gate()
    async with running(env, world, queue):
        handle = await start(env, order, queue)
        # no clock skipped here: the update waits for acceptance itself, and a long skip on the
        # suite's shared time-skipping server can time out while other work holds its time
        partial = asyncio.ensure_future(
            handle.execute_update(
                BackorderWorkflow.cancel_order,
                CancelRequest(lines=(CancelLine(line_id="L2"),)),
            )
        )
        await world.gates["void_payment"].entered.wait()
        vip = asyncio.ensure_future(
            handle.execute_update(BackorderWorkflow.change_priority, PriorityChange(tier="vip"))
        )
        await asyncio.sleep(0.5)
        assert not vip.done()  # accepted, waiting for the lock the cancel holds
        world.gates["void_payment"].opened.set()
        cancelled = await partial
        changed = await vip

        world.gates["void_payment"] = Gate()
        whole = asyncio.ensure_future(
            handle.execute_update(BackorderWorkflow.cancel_order, CancelRequest())
        )
        await world.gates["void_payment"].entered.wait()
        ended = await refused(
            handle.execute_update(
                BackorderWorkflow.change_priority, PriorityChange(tier="expedited")
            )
        )
        world.gates["void_payment"].opened.set()
        await whole
        summary = await handle.result()

    assert [p.line_id for p in cancelled.cancelled] == ["L2"]
    assert changed == PriorityResult(previous_tier="standard", tier="vip")
    tiers = [d.backorder.tier if d.backorder else None for d in world.applied("update_demand")]
    assert tiers == ["standard", "standard", "vip", None]  # accepted, cancel L2, vip, cancel
    assert ended.type == r.ORDER_ENDED
    assert summary.status.value == "cancelled"


async def test_an_update_its_validator_took_is_checked_again_under_the_lock(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Two identical priority changes sent before the order is accepted: both validators pass
    (the order is standard), both handlers wait for acceptance and the lock. The first applies;
    the second finds the order already vip and is refused: applied once, never twice."""
    env = time_skipping_env
    t0 = await env.get_current_time()
    order = make_order(t0, [("B", 3, "5.00")])
    world, queue = World(), task_queue()
    handle = await start(env, order, queue)  # no worker yet: the updates wait for one

    async def vip() -> PriorityResult | ApplicationError:
        try:
            return await handle.execute_update(
                BackorderWorkflow.change_priority, PriorityChange(tier="vip")
            )
        except WorkflowUpdateFailedError as err:
            assert isinstance(err.cause, ApplicationError)
            return err.cause

    first, second = asyncio.ensure_future(vip()), asyncio.ensure_future(vip())
    await asyncio.sleep(1)
    async with running(env, world, queue):
        answers = await asyncio.gather(first, second)
        await handle.terminate("test over")
    applied = [a for a in answers if isinstance(a, PriorityResult)]
    refusals = [a for a in answers if isinstance(a, ApplicationError)]
    assert applied == [PriorityResult(previous_tier="standard", tier="vip")]
    assert [(e.type, e.non_retryable) for e in refusals] == [(r.NOTHING_TO_CHANGE, True)]
    assert [d.backorder.tier for d in world.applied("update_demand")] == ["standard", "vip"]
