"""The sweep schedules: one Temporal Schedule per site, created or updated at worker start.

Each runs a full check every `allocator.sweep_interval` and at each of `allocator.check_times`
(in `allocator.check_timezone`). Operators see them in the UI's Schedules page and may pause or
trigger them there or with `temporal schedule trigger --schedule-id allocator-sweep-<site>`.
"""

from __future__ import annotations

import dataclasses

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
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


def check_calendars(settings: Settings) -> list[ScheduleCalendarSpec]:
    """One calendar entry per `allocator.check_times` time: that hour and minute, every day
    (the zone is the spec's)."""
    calendars = []
    for at in settings.allocator.check_times:
        hour, minute = (int(part) for part in at.split(":"))
        calendars.append(
            ScheduleCalendarSpec(
                hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)], comment=f"check {at}"
            )
        )
    return calendars


def sweep_schedule(settings: Settings, site: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AllocatorSweepWorkflow.run,
            SweepRequest(site=site),
            id=schedule_id(site),
            task_queue=settings.temporal.task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=settings.allocator.sweep_interval)],
            calendars=check_calendars(settings),
            time_zone_name=settings.allocator.check_timezone,
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_sweep_schedules(client: Client, settings: Settings) -> list[str]:
    """Create each site's schedule, or bring an existing one to the current settings (its
    whole spec: check times removed from the settings leave the schedule too)."""
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
