"""No workflow outlives its test on the shared time-skipping server.

The test server locks time skipping while any workflow or activity task is outstanding. A
workflow a test leaves behind (its worker gone) gets a workflow task the moment a later test
skips past one of its timers; with no worker to take it, time is locked for the rest of the
session and every later skip waits in real time. Terminating a leftover *before* its timers
fire is safe; afterwards the lock stays even then. So every workflow started through the
time-skipping client is recorded, terminated when its test ends, and the server is checked to
skip time again, failing the test that left it locked rather than the ones after it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from temporalio.client import (
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment


class StartedWorkflows(Interceptor):
    """Records the id of every workflow started through the client it intercepts."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Recorder(next, self.ids)


class _Recorder(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, ids: list[str]) -> None:
        super().__init__(next)
        self._ids = ids

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        self._ids.append(input.id)
        return await super().start_workflow(input)


STARTED = StartedWorkflows()
"""What the session's time-skipping client started (tests/conftest.py installs it)."""


async def wind_down(env: WorkflowEnvironment, task_queue: str, within: float = 10) -> None:
    """Before a worker leaves: cancel what is still running on its task queue and let it end
    (an order compensates), so no workflow or activity task is left in flight; the test
    server never unlocks time for a task its worker dropped, even when the workflow is then
    terminated. What does not end `within` seconds is terminated."""
    for workflow_id in dict.fromkeys(STARTED.ids):
        handle = env.client.get_workflow_handle(workflow_id)
        try:
            desc = await handle.describe()
            if desc.status is not WorkflowExecutionStatus.RUNNING or desc.task_queue != task_queue:
                continue
            await handle.cancel()
            await asyncio.wait_for(handle.result(), within)
        except TimeoutError:
            await handle.terminate("did not end when cancelled as its test ended")
        except Exception:
            pass


async def end_leftovers(env: WorkflowEnvironment, started: StartedWorkflows) -> list[str]:
    """Terminate what the test left running; the ids of those that were."""
    ids, started.ids[:] = list(dict.fromkeys(started.ids)), []
    left = []
    for workflow_id in ids:
        handle = env.client.get_workflow_handle(workflow_id)
        try:
            if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
                await handle.terminate("the test that started it is over")
                left.append(workflow_id)
        except RPCError:
            pass  # never started (a refused start) or already gone
    return left


async def skips_time(env: WorkflowEnvironment) -> bool:
    """Whether a day still passes at once (not in real time) on the test server."""
    try:
        await asyncio.wait_for(env.sleep(dt.timedelta(days=1)), timeout=10)
    except TimeoutError:
        return False
    return True
