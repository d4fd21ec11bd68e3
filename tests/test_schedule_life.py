"""Whole order lives, driven as the order workflow will drive them: wake at `next_wakeup`,
perform every due duty, record it; signals arrive as events in between.

The driver is shared by the other `test_schedule_*` modules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from domain.policy import BackorderPolicy
from domain.schedule import (
    Authorisation,
    Due,
    DutyKind,
    ScheduleState,
    due,
    next_wakeup,
    record,
    record_authorisation,
    record_cleared,
    record_consent,
    record_expected_ship_date,
)

ACCEPTED = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
"""A Monday, 09:00 UTC: day 30 is Wednesday February 4, day 60 Friday March 6."""

POLICY = BackorderPolicy()
WEEK = dt.timedelta(days=7)


def day(n: float) -> dt.datetime:
    """`n` days after acceptance."""
    return ACCEPTED + dt.timedelta(days=n)


def midnight(iso: str) -> dt.datetime:
    """`"2026-03-02"` as 00:00 UTC that day."""
    return dt.datetime.fromisoformat(iso).replace(tzinfo=dt.UTC)


def waiting(**fields: object) -> ScheduleState:
    """A freshly accepted backorder (no authorisation unless given)."""
    return ScheduleState.model_validate({"accepted_at": ACCEPTED, **fields})


def authorised(at: dt.datetime, hold: dt.timedelta = WEEK) -> Authorisation:
    return Authorisation(authorised_at=at, expires_at=at + hold)


Event = tuple[dt.datetime, Callable[[ScheduleState, dt.datetime], ScheduleState]]
"""Something the workflow learns at a time (a signal, a receipt): a new state."""


def shipped(at: dt.datetime) -> Event:
    return at, lambda state, _now: record_cleared(state)


def consented(at: dt.datetime, policy: BackorderPolicy, until: dt.date | None = None) -> Event:
    return at, lambda state, now: record_consent(state, policy, now, until)


def expected(at: dt.datetime, ship_date: dt.date | None) -> Event:
    return at, lambda state, _now: record_expected_ship_date(state, ship_date)


@dataclass(frozen=True)
class Performed:
    now: dt.datetime
    """When the workflow performed it (its wake-up or signal time)."""
    duty: Due


@dataclass(frozen=True)
class Life:
    performed: list[Performed]
    end: ScheduleState

    def times(self, kind: DutyKind) -> list[dt.datetime]:
        return [p.now for p in self.performed if p.duty.kind is kind]

    def duties(self, kind: DutyKind) -> list[Due]:
        return [p.duty for p in self.performed if p.duty.kind is kind]

    @property
    def kinds(self) -> list[DutyKind]:
        return [p.duty.kind for p in self.performed]


def live(
    state: ScheduleState,
    policy: BackorderPolicy = POLICY,
    events: Sequence[Event] = (),
    *,
    hold: dt.timedelta = WEEK,
    max_steps: int = 5_000,
) -> Life:
    """Run a life to its end; a re-authorisation is granted for `hold` from when it is made."""
    clock = state.accepted_at
    pending = sorted(events, key=lambda event: event[0])
    performed: list[Performed] = []
    for _ in range(max_steps):
        wakeup = next_wakeup(state, policy)
        if pending and (wakeup is None or pending[0][0] < wakeup):
            at, learn = pending.pop(0)
            clock = max(clock, at)
            state = learn(state, clock)
            continue
        if wakeup is None:
            return Life(performed, state)
        clock = max(clock, wakeup)
        duties = due(state, policy, clock)
        assert duties, f"woke at {clock} and nothing was due"
        for duty in duties:
            performed.append(Performed(clock, duty))
            if duty.kind is DutyKind.REAUTHORISE:
                state = record_authorisation(state, authorised(clock, hold))
            else:
                state = record(state, duty, clock)
    raise AssertionError(f"the life did not end within {max_steps} steps")


def test_a_life_without_stock_ends_in_the_ftc_cancel_at_day_60() -> None:
    life = live(waiting(authorisation=authorised(ACCEPTED)))
    assert life.kinds == [
        DutyKind.REAUTHORISE,  # day 6
        DutyKind.CUSTOMER_UPDATE,  # day 7
        DutyKind.REAUTHORISE,  # day 12
        DutyKind.CUSTOMER_UPDATE,  # day 14
        DutyKind.REAUTHORISE,  # day 18
        DutyKind.REAUTHORISE,  # day 24
        DutyKind.FTC_EXCEPTION,  # day 25
        DutyKind.FTC_DELAY_NOTICE,  # day 27
        DutyKind.REAUTHORISE,  # day 30
        DutyKind.REAUTHORISE,  # day 36
        DutyKind.REAUTHORISE,  # day 42
        DutyKind.REAUTHORISE,  # day 48
        DutyKind.REAUTHORISE,  # day 54
        DutyKind.FTC_CANCEL,  # day 60
    ]
    assert life.performed[-1].now == day(60)
    assert not life.end.backordered


def test_nothing_happens_after_everything_shipped() -> None:
    policy = POLICY.override(auto_cancel_days=40, check_interval_hours=24)
    life = live(waiting(authorisation=authorised(ACCEPTED)), policy, [shipped(day(3.5))])
    assert [p.now for p in life.performed] == [day(1), day(2), day(3)]
    assert life.kinds == [DutyKind.SELF_CHECK] * 3
    assert next_wakeup(life.end, policy) is None
    assert due(life.end, policy, day(400)) == ()
