"""Day arithmetic of the schedule: promised dates last all day (UTC), refunds count working days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

_INSTANT = timedelta(microseconds=1)


def end_of_day(day: date) -> datetime:
    """The first instant after `day` in UTC: a date promised to a customer lasts the whole day."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def utc_day(instant: datetime) -> date:
    """The UTC calendar day of an instant."""
    return instant.astimezone(UTC).date()


def last_day_before(deadline: datetime) -> date:
    """The last calendar day (UTC) that still meets a deadline: `end_of_day` reversed."""
    return utc_day(deadline - _INSTANT)


def add_working_days(day: date, count: int) -> date:
    """`count` working days after `day`, skipping Saturdays and Sundays (holidays are not known)."""
    while count > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            count -= 1
    return day
