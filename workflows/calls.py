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
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from workflows.failures import cause_of, error_type_of
from workflows.patches import lean

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from activities.effect_batch import APPLY_ORDER_EFFECTS

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
_UNORDERED = _PAYMENTS | {APPLY_ORDER_EFFECTS.name}
"""Steps the waiting writes need not precede: the gateway reads none of them (a release
captures, then writes its shipment and the notice that says it shipped, together)."""
LOCAL_FIRST = frozenset(
    {c.CLAIM_ORDER.name, c.LOAD_POLICY.name, c.CHECK_AVAILABILITY.name, c.OPEN_ORDER.name}
)
"""Steps tried first as local activities: acceptance's reads, and its claim of the order id for
this very run. A local activity acts before the workflow task that asked for it is recorded;
if that task fails and runs again with new events (a signal, an update), the workflow may
decide otherwise, and a write it made (a void, a shipment, a notice) would be orphaned. These
change nothing another decision could contradict (`open_order` is the other three in one), so
they may run early."""
LOCAL_TRIES = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=3,
    non_retryable_error_types=[c.DUPLICATE_ORDER, c.INVALID_REQUEST],
)
LOCAL_BUDGET = timedelta(seconds=20)
"""How long a step may take as a local activity (all its tries) before it becomes a regular
activity: an outage then waits in the activity's retries, which add nothing to the history."""


async def call(
    contract: c.ActivityContract[In, Out],
    arg: In,
    run_for: timedelta | None = None,
    heartbeat: timedelta | None = None,
) -> Out:
    """Run the activity named by `contract` and return its typed result; `run_for` for work
    longer than a single write (an allocation pass), `heartbeat` for work that reports progress."""
    flush = getattr(workflow.instance(), FLUSH, None)
    if flush is not None and contract.name not in _UNORDERED:
        await flush()  # the writes waiting go first: steps keep their order
    result: Out = await run_step(contract.name, arg, contract.output, run_for, heartbeat)
    return result


FLUSH = "flush_effects"
"""What a workflow that keeps its writes until the end of a transition (the order's, since
lean-history) names the method that applies them: `call` has them applied before any other
step."""


async def run_step(
    name: str,
    arg: Any,
    output: type[Any] | None,
    run_for: timedelta | None = None,
    heartbeat: timedelta | None = None,
) -> Any:
    """Run activity `name` (see `call`).

    A step of `LOCAL_FIRST` runs first as a local activity (`lean-history`): a marker event in
    the workflow task that asked for it, instead of an activity's three events and a workflow
    task of its own. If its local tries fail (an outage), it runs again as a regular activity
    with the durable retry policy. A refusal (a duplicate order, a bad request) is final."""
    retries = PAYMENT if name in _PAYMENTS else UNTIL_IT_WORKS
    timeout = run_for or timedelta(seconds=30)
    if name in LOCAL_FIRST and heartbeat is None and lean():
        try:
            return await workflow.execute_local_activity(
                name,
                arg,
                result_type=output,
                start_to_close_timeout=timeout,
                schedule_to_close_timeout=LOCAL_BUDGET,
                retry_policy=LOCAL_TRIES,
            )
        except FailureError as err:
            failure = _as_activity_error(err, name)
            cause = failure.cause
            final = isinstance(cause, ApplicationError) and cause.non_retryable
            if final or error_type_of(failure) in (retries.non_retryable_error_types or ()):
                raise failure from err
            workflow.logger.info("%s: local tries failed (%s)", name, cause_of(failure))
    return await workflow.execute_activity(
        name,
        arg,
        result_type=output,
        start_to_close_timeout=timeout,
        heartbeat_timeout=heartbeat,
        retry_policy=retries,
    )


def _as_activity_error(err: FailureError, name: str) -> ActivityError:
    """A local activity's failure as its callers know an activity's: an `ActivityError` whose
    cause says why (the SDK may hand over the activity's own `ApplicationError` unwrapped)."""
    if isinstance(err, ActivityError):
        return err
    wrapped = ActivityError(
        "local activity error",
        scheduled_event_id=0,
        started_event_id=0,
        identity="",
        activity_type=name,
        activity_id="",
        retry_state=None,
    )
    wrapped.__cause__ = err
    return wrapped


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
