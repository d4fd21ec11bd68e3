"""Notice delivery: one long-running workflow per deployment that empties the notice outbox.

`send_notice` wakes it (signal-with-start) after each notice it commits; besides, it looks at
the outbox every `poll_interval`, and at the moment the earliest failed notice is due again.
So a wake-up lost in a crash only delays a notice, and retries wait on durable timers, visible
in the Web UI, instead of in a worker's memory. Each round is one activity (claim, send,
record); the workflow continues as new when Temporal suggests it, carrying its totals.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from pydantic import Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.order import Contract
    from workflows.calls import call


def delivery_id(task_queue: str) -> str:
    """One delivery workflow per deployment (its workers' task queue)."""
    return f"notice-delivery-{task_queue}"


ROUND_TIMEOUT = timedelta(minutes=5)
ROUND_HEARTBEAT = timedelta(seconds=30)
SOONEST = timedelta(seconds=1)


class NoticeDeliveryState(Contract):
    """The workflow's input and its `status`: the settings it runs with and what it did."""

    poll_interval: timedelta = Field(default=timedelta(minutes=1), ge=timedelta(seconds=1))
    batch_size: int = Field(default=100, ge=1, le=10_000)
    rounds: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    last: c.NoticeDeliveryReport | None = None

    def after(self, report: c.NoticeDeliveryReport) -> NoticeDeliveryState:
        return self.model_copy(
            update={
                "rounds": self.rounds + 1,
                "delivered": self.delivered + report.delivered,
                "retried": self.retried + report.retrying,
                "failed": self.failed + report.failed,
                "last": report,
            }
        )


@workflow.defn(name="NoticeDeliveryWorkflow")
class NoticeDeliveryWorkflow:
    @workflow.init
    def __init__(self, state: NoticeDeliveryState) -> None:
        self._state = state
        self._woken = False

    @workflow.run
    async def run(self, state: NoticeDeliveryState) -> None:
        while True:
            self._woken = False
            report = await call(
                c.DELIVER_NOTICES,
                c.NoticeBatchRequest(limit=self._state.batch_size),
                run_for=ROUND_TIMEOUT,
                heartbeat=ROUND_HEARTBEAT,
            )
            self._state = self._state.after(report)
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(self._state)
            if report.more:
                continue
            with contextlib.suppress(TimeoutError):  # the poll: look again anyway
                await workflow.wait_condition(lambda: self._woken, timeout=self._wait(report))

    def _wait(self, report: c.NoticeDeliveryReport) -> timedelta:
        """Until the next poll, or the earliest pending notice's next try if sooner."""
        wait = self._state.poll_interval
        if report.next_due is not None:
            wait = min(wait, max(report.next_due - workflow.now(), SOONEST))
        return wait

    @workflow.signal
    def wake(self) -> None:
        """A notice was written: deliver it now."""
        self._woken = True

    @workflow.query
    def status(self) -> NoticeDeliveryState:
        return self._state
