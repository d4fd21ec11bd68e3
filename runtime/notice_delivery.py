"""Reaching the notice-delivery workflow: started with the worker, woken by `send_notice`.

Both go through start-with-signal and `USE_EXISTING`, so whichever comes first starts it and
the rest find it; a terminated delivery workflow comes back with the next notice.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from config import Settings
from workflows.notice_delivery import NoticeDeliveryState, NoticeDeliveryWorkflow, delivery_id


def delivery_state(settings: Settings) -> NoticeDeliveryState:
    n = settings.notifications
    return NoticeDeliveryState(poll_interval=n.poll_interval, batch_size=n.batch_size)


async def ensure_notice_delivery(client: Client, settings: Settings, *, wake: bool = False) -> None:
    """Start the delivery workflow unless it runs; `wake` also makes it look at the outbox now."""
    await client.start_workflow(
        NoticeDeliveryWorkflow.run,
        delivery_state(settings),
        id=delivery_id(settings.temporal.task_queue),
        task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal="wake" if wake else None,
    )


async def delivery_status(client: Client, settings: Settings) -> NoticeDeliveryState:
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(
        delivery_id(settings.temporal.task_queue)
    )
    return await handle.query(NoticeDeliveryWorkflow.status)
