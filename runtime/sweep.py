"""The sweep schedules: one Temporal Schedule per site, created or updated at worker start.

Operators see them in the UI's Schedules page and may pause or trigger them there or with
`temporal schedule trigger --schedule-id allocator-sweep-<site>`.
"""

from __future__ import annotations

import dataclasses

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from config import Settings
from workflows.sweep import AllocatorSweepWorkflow, SweepRequest


def schedule_id(site: str) -> str:
    return f"allocator-sweep-{site}"


def sites(settings: Settings) -> list[str]:
    """The deployment's own site and every site it has settings for."""
    return sorted({settings.site, *settings.sites})


def sweep_schedule(settings: Settings, site: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AllocatorSweepWorkflow.run,
            SweepRequest(site=site),
            id=schedule_id(site),
            task_queue=settings.temporal.task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=settings.allocator.sweep_interval)]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_sweep_schedules(client: Client, settings: Settings) -> list[str]:
    """Create each site's schedule, or bring an existing one to the current settings."""
    ids = []
    for site in sites(settings):
        schedule = sweep_schedule(settings, site)
        try:
            await client.create_schedule(schedule_id(site), schedule)
        except ScheduleAlreadyRunningError:

            def replace(current: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                # keep what operators set (paused, with their note)
                state = current.description.schedule.state
                return ScheduleUpdate(schedule=dataclasses.replace(new, state=state))

            await client.get_schedule_handle(schedule_id(site)).update(replace)
        ids.append(schedule_id(site))
    return ids
