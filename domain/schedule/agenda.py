"""What is due now, when to wake up next, and what is coming: the workflow's view of its timers.

A workflow loop: `for duty in due(state, policy, now)`: perform it, then `record` it (recompute
`due` after each record to be safe: a record can make later duties moot); then sleep until
`next_wakeup` (which may already be past: act at once) or a signal.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import AwareDatetime

from domain.order import Contract
from domain.policy import BackorderPolicy
from domain.schedule.duties import Due, DutyKind
from domain.schedule.ftc import ftc_duties, original_deadline
from domain.schedule.payment import reauthorisation
from domain.schedule.state import FtcRecord, ScheduleState
from domain.schedule.timers import auto_cancel, customer_updates, exception_flag, self_check


def scheduled(state: ScheduleState, policy: BackorderPolicy) -> tuple[Due, ...]:
    """Every duty armed in this state, whenever it falls due; none once nothing is backordered
    (but the re-authorisation while shipments wait to be confirmed and captured)."""
    if not state.backordered:
        renewal = reauthorisation(state, policy) if state.awaiting_capture else None
        return () if renewal is None else (renewal,)
    single = (
        reauthorisation(state, policy),
        exception_flag(state, policy),
        auto_cancel(state, policy),
        self_check(state, policy),
    )
    return (
        *customer_updates(state, policy),
        *ftc_duties(state, policy),
        *(duty for duty in single if duty is not None),
    )


def due(state: ScheduleState, policy: BackorderPolicy, now: datetime) -> tuple[Due, ...]:
    """Every duty due at or before `now`, in the order to perform them (`DutyKind` order).

    A cancel makes every other duty moot, so when one is due it comes alone (the earlier of the
    two cancels; the FTC one on a tie, as it carries the refund deadline). Of several customer
    updates due together (a late wake-up) only the latest is sent: older news is stale.
    """
    ready: dict[DutyKind, Due] = {}
    for duty in sorted(scheduled(state, policy), key=_when):
        if duty.at <= now:
            ready[duty.kind] = duty
    cancels = [duty for duty in ready.values() if duty.kind.cancels]
    if cancels:
        return (min(cancels, key=_when),)
    return tuple(sorted(ready.values(), key=lambda duty: duty.kind.rank))


def next_wakeup(state: ScheduleState, policy: BackorderPolicy) -> datetime | None:
    """The earliest instant a duty falls due (perhaps already past); None: nothing is armed."""
    return min((duty.at for duty in scheduled(state, policy)), default=None)


def upcoming(state: ScheduleState, policy: BackorderPolicy) -> tuple[Due, ...]:
    """The next duty of each kind, soonest first."""
    return tuple(sorted(_first_of_each_kind(scheduled(state, policy)), key=_when))


class ScheduleSummary(Contract):
    """The order's timers at a glance, for the `status` query."""

    ftc: FtcRecord
    ftc_deadline: AwareDatetime
    """The original FTC shipping deadline."""
    upcoming: tuple[Due, ...]


def summary(state: ScheduleState, policy: BackorderPolicy) -> ScheduleSummary:
    return ScheduleSummary(
        ftc=state.ftc,
        ftc_deadline=original_deadline(state, policy),
        upcoming=upcoming(state, policy),
    )


def _when(duty: Due) -> tuple[datetime, int]:
    return duty.at, duty.kind.rank


def _first_of_each_kind(duties: Iterable[Due]) -> list[Due]:
    first: dict[DutyKind, Due] = {}
    for duty in sorted(duties, key=_when):
        first.setdefault(duty.kind, duty)
    return list(first.values())
