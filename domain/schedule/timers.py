"""Duties that fall due a number of days (or hours) after acceptance or after their last run."""

from __future__ import annotations

from datetime import timedelta

from domain.policy import BackorderPolicy
from domain.schedule.duties import Due, DutyKind
from domain.schedule.state import ScheduleState


def customer_updates(state: ScheduleState, policy: BackorderPolicy) -> tuple[Due, ...]:
    """The "still awaiting stock" notices not sent yet, one per `customer_update_days`."""
    return tuple(
        Due(kind=DutyKind.CUSTOMER_UPDATE, at=state.accepted_at + timedelta(days=day), day=day)
        for day in sorted(set(policy.customer_update_days))
        if day > state.last_update_day
    )


def exception_flag(state: ScheduleState, policy: BackorderPolicy) -> Due | None:
    """The operator's flag, once, `ftc_exception_days` into the FTC clock (placed, or accepted
    for orders from before it was kept)."""
    if policy.ftc_exception_days is None or state.exception_raised:
        return None
    at = state.ftc_clock_start + timedelta(days=policy.ftc_exception_days)
    return Due(kind=DutyKind.FTC_EXCEPTION, at=at)


def auto_cancel(state: ScheduleState, policy: BackorderPolicy) -> Due | None:
    if policy.auto_cancel_days is None or state.auto_cancelled:
        return None
    at = state.accepted_at + timedelta(days=policy.auto_cancel_days)
    return Due(kind=DutyKind.AUTO_CANCEL, at=at)


def self_check(state: ScheduleState, policy: BackorderPolicy) -> Due | None:
    """Every `check_interval_hours` since the last check (or since acceptance)."""
    if policy.check_interval_hours is None:
        return None
    since = state.last_check_at or state.accepted_at
    return Due(kind=DutyKind.SELF_CHECK, at=since + timedelta(hours=policy.check_interval_hours))
