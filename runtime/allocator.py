"""Reaching a site's allocator from outside it: the CLI, order activities and the sweep.

Every way in starts the allocator if it is not running (signal-with-start, update-with-start),
so no one has to create it first, and a terminated allocator comes back with the next event.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from activities.contracts import AllocationCheck
from config import Settings
from domain.inventory import InventoryBatch
from workflows.allocator import AllocatorWorkflow
from workflows.allocator_messages import (
    AllocatorStart,
    AllocatorStatus,
    FeedResult,
    PassOutcome,
    allocator_id,
)


def start_input(settings: Settings, site: str) -> AllocatorStart:
    return AllocatorStart(site=site, batch_window=settings.allocator.batch_window)


def _start_operation(
    settings: Settings, site: str
) -> WithStartWorkflowOperation[AllocatorWorkflow, None]:
    return WithStartWorkflowOperation(
        AllocatorWorkflow.run,
        start_input(settings, site),
        id=allocator_id(site),
        task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def send_inventory(
    client: Client, settings: Settings, site: str, batch: InventoryBatch
) -> FeedResult:
    """Apply a batch of events and wait for the pass that applied them."""
    return await client.execute_update_with_start_workflow(
        AllocatorWorkflow.apply_inventory,
        batch,
        start_workflow_operation=_start_operation(settings, site),
    )


async def run_check(
    client: Client, settings: Settings, site: str, check: AllocationCheck
) -> PassOutcome:
    """Run a check (a full sweep unless skus or orders are named) and wait for its pass."""
    return await client.execute_update_with_start_workflow(
        AllocatorWorkflow.run_check,
        check,
        start_workflow_operation=_start_operation(settings, site),
    )


async def nudge(client: Client, settings: Settings, site: str, check: AllocationCheck) -> None:
    """Ask for a check without waiting for it (order workflows, the scheduled sweep)."""
    await client.start_workflow(
        AllocatorWorkflow.run,
        start_input(settings, site),
        id=allocator_id(site),
        task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal="check",
        start_signal_args=[check],
    )


async def allocator_status(client: Client, site: str) -> AllocatorStatus:
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(allocator_id(site))
    return await handle.query(AllocatorWorkflow.status)
