"""Checks at set times of day: `allocator.check_times` become calendar entries of the site's
sweep schedule (in `allocator.check_timezone`), on the Temporal dev server, and a worker start
brings an existing schedule to the current times; bad times and zones stop the settings."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleDescription
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from config import Settings, SettingsError, load_settings
from runtime.sweep import ensure_sweep_schedules, schedule_id
from workflows.sweep import AllocatorSweepWorkflow


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray BACKORDER_* variables, and a working directory without config/backorder.toml."""
    for name in list(os.environ):
        if name.startswith("BACKORDER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def site(dev_env: WorkflowEnvironment) -> AsyncIterator[str]:
    """A site of this test's own; its sweep schedule is deleted after the test."""
    name = f"sweep-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        await dev_env.client.get_schedule_handle(schedule_id(name)).delete()
    except RPCError as err:  # never created: the test failed before, and says why
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise


def site_settings(site: str, **allocator: Any) -> Settings:
    return Settings(site=site, temporal={"task_queue": f"tq-{site}"}, allocator=allocator)


async def described(client: Client, site: str) -> ScheduleDescription:
    return await client.get_schedule_handle(schedule_id(site)).describe()


def times_of(desc: ScheduleDescription) -> list[tuple[int, int]]:
    """(hour, minute) of each calendar entry, every day of every month: how the check times
    read back from the server."""
    times = []
    for cal in desc.schedule.spec.calendars:
        assert [(r.start, r.end) for r in cal.second] == [(0, 0)]
        assert [(r.start, r.end) for r in cal.day_of_week] == [(0, 6)]
        assert [(r.start, r.end) for r in cal.day_of_month] == [(1, 31)]
        assert [(r.start, r.end) for r in cal.month] == [(1, 12)]
        (hour,), (minute,) = cal.hour, cal.minute
        assert hour.start == hour.end and minute.start == minute.end
        times.append((hour.start, minute.start))
    return times


async def test_check_times_become_calendar_entries_of_the_sweep_schedule(
    dev_env: WorkflowEnvironment, site: str
) -> None:
    client = dev_env.client
    settings = site_settings(site, check_times=["06:00", "14:30"], check_timezone="Europe/London")
    assert await ensure_sweep_schedules(client, settings) == [schedule_id(site)]

    desc = await described(client, site)
    spec = desc.schedule.spec
    assert times_of(desc) == [(6, 0), (14, 30)]
    assert spec.time_zone_name == "Europe/London"
    assert [i.every for i in spec.intervals] == [timedelta(hours=1)]  # the interval stays
    action = desc.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == AllocatorSweepWorkflow.__name__  # the same sweep, at those times


async def test_a_worker_start_brings_the_schedule_to_the_current_times(
    dev_env: WorkflowEnvironment, site: str
) -> None:
    """Times added, changed and taken out, the zone and interval with them; a pause an
    operator set (and its note) is kept."""
    client = dev_env.client
    await ensure_sweep_schedules(client, site_settings(site))
    desc = await described(client, site)
    assert times_of(desc) == []
    assert desc.schedule.spec.time_zone_name == "UTC"

    await ensure_sweep_schedules(
        client, site_settings(site, check_times=["21:45"], check_timezone="America/New_York")
    )
    desc = await described(client, site)
    assert times_of(desc) == [(21, 45)]
    assert desc.schedule.spec.time_zone_name == "America/New_York"

    await client.get_schedule_handle(schedule_id(site)).pause(note="stocktake")
    await ensure_sweep_schedules(
        client,
        site_settings(
            site,
            check_times=["07:05", "00:00", "23:59"],
            check_timezone="Asia/Tokyo",
            sweep_interval=timedelta(hours=3),
        ),
    )
    desc = await described(client, site)
    assert times_of(desc) == [(7, 5), (0, 0), (23, 59)]
    assert desc.schedule.spec.time_zone_name == "Asia/Tokyo"
    assert [i.every for i in desc.schedule.spec.intervals] == [timedelta(hours=3)]
    assert desc.schedule.state.paused and desc.schedule.state.note == "stocktake"

    await ensure_sweep_schedules(client, site_settings(site))  # the times taken out again
    desc = await described(client, site)
    assert times_of(desc) == []
    assert desc.schedule.spec.time_zone_name == "UTC"
    assert [i.every for i in desc.schedule.spec.intervals] == [timedelta(hours=1)]


# -- the settings ---------------------------------------------------------------------------------


def test_check_times_and_zone_load_from_the_environment_and_toml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert load_settings().allocator.check_times == ()
    assert load_settings().allocator.check_timezone == "UTC"
    cfg = tmp_path / "times.toml"
    cfg.write_text('[allocator]\ncheck_times = ["06:00", "18:30"]\ncheck_timezone = "Asia/Tokyo"\n')
    s = load_settings(cfg)
    assert (s.allocator.check_times, s.allocator.check_timezone) == (
        ("06:00", "18:30"),
        "Asia/Tokyo",
    )
    monkeypatch.setenv("BACKORDER_ALLOCATOR__CHECK_TIMES", '["23:59"]')
    monkeypatch.setenv("BACKORDER_ALLOCATOR__CHECK_TIMEZONE", "Europe/London")
    s = load_settings(cfg)
    assert (s.allocator.check_times, s.allocator.check_timezone) == (("23:59",), "Europe/London")


@pytest.mark.parametrize("bad", ["24:00", "6:00", "12:60", "06:00:00", "noon", "", " 06:00"])
def test_a_check_time_that_is_not_hh_mm_is_named(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKORDER_ALLOCATOR__CHECK_TIMES", f'["06:00", "{bad}"]')
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value).splitlines()[1:] == [
        f"  allocator.check_times.1 = {bad!r}: {bad!r} is not a time of day HH:MM (00:00 to "
        "23:59) [env BACKORDER_ALLOCATOR__CHECK_TIMES]"
    ]


def test_a_repeated_check_time_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "twice.toml"
    cfg.write_text('[allocator]\ncheck_times = ["06:00", "14:00", "06:00"]\n')
    with pytest.raises(SettingsError, match=r"check time 06:00 given more than once"):
        load_settings(cfg)


@pytest.mark.parametrize(
    "bad", ["Mars/Olympus_Mons", "europe/london", "localtime", "/etc/localtime", "../UTC", ""]
)
def test_a_check_timezone_that_is_not_an_iana_name_is_named(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKORDER_ALLOCATOR__CHECK_TIMEZONE", bad)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value).splitlines()[1:] == [
        f"  allocator.check_timezone = {bad!r}: {bad!r} is not an IANA time zone name "
        "(e.g. Europe/London) [env BACKORDER_ALLOCATOR__CHECK_TIMEZONE]"
    ]
