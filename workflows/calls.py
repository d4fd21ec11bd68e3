"""Typed activity calls by contract, with the timeouts and retries of each kind of work.

Ledger, outbox and fulfilment writes retry until their database answers (an outage delays an
order, never loses a step); payments retry for about half an hour and then let the workflow
raise an exception for an operator (a re-authorisation cannot wait forever: the hold lapses).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)
T = TypeVar("T")

UNTIL_IT_WORKS = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    # at most 10 s between tries: a step that failed while the database was away runs again
    # within seconds of its return, not a minute later (a retry policy is not replayed, so
    # changing it is safe for running workflows)
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=[c.INSUFFICIENT_STOCK, c.INVALID_REQUEST],
)
PAYMENT = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=10,
    non_retryable_error_types=[c.PAYMENT_DECLINED, c.INVALID_REQUEST],
)
_PAYMENTS = {
    c.AUTHORISE_PAYMENT.name,
    c.CAPTURE_PAYMENT.name,
    c.VOID_PAYMENT.name,
    c.REFUND_PAYMENT.name,
}


async def call(
    contract: c.ActivityContract[In, Out],
    arg: In,
    run_for: timedelta | None = None,
    heartbeat: timedelta | None = None,
) -> Out:
    """Run the activity named by `contract` and return its typed result; `run_for` for work
    longer than a single write (an allocation pass), `heartbeat` for work that reports progress."""
    payment = contract.name in _PAYMENTS
    result: Any = await workflow.execute_activity(
        contract.name,
        arg,
        result_type=contract.output,
        start_to_close_timeout=run_for or timedelta(seconds=30),
        heartbeat_timeout=heartbeat,
        retry_policy=PAYMENT if payment else UNTIL_IT_WORKS,
    )
    return result  # type: ignore[no-any-return]


async def shielded(work: Awaitable[T]) -> T:
    """Run `work` to the end even if the workflow is cancelled meanwhile: a half-done change
    (stock freed but money not given back) must never be left behind. The cancel is re-raised
    once the work is done."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
