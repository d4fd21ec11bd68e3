"""Re-authorisation: every `reauth_interval_days`, and always before the gateway's expiry."""

from __future__ import annotations

import datetime as dt

import pytest

from domain.policy import PaymentTiming
from domain.schedule import (
    DutyKind,
    FtcRecord,
    FtcState,
    due,
    next_wakeup,
    record,
    record_authorisation,
    record_awaiting_capture,
    record_cleared,
    upcoming,
)
from tests.test_schedule_life import (
    ACCEPTED,
    POLICY,
    authorised,
    day,
    live,
    shipped,
    waiting,
)

CONSENTED_INDEFINITELY = FtcRecord(state=FtcState.CONSENTED, notices=1)
"""The customer expressly accepted an open-ended delay: the FTC rule cancels nothing."""


def reauth_days(hold_days: int) -> list[float]:
    """Days of the re-auths in a 90-day wait (shipped on day 89) with holds of `hold_days`."""
    state = waiting(
        authorisation=authorised(ACCEPTED, dt.timedelta(days=hold_days)),
        ftc=CONSENTED_INDEFINITELY,
    )
    life = live(state, POLICY, [shipped(day(89))], hold=dt.timedelta(days=hold_days))
    return [(t - ACCEPTED) / dt.timedelta(days=1) for t in life.times(DutyKind.REAUTHORISE)]


def test_seven_day_holds_are_renewed_a_day_before_each_expiry() -> None:
    assert reauth_days(7) == [6, 12, 18, 24, 30, 36, 42, 48, 54, 60, 66, 72, 78, 84]


def test_thirty_day_holds_are_renewed_every_ten_days() -> None:
    assert reauth_days(30) == [10, 20, 30, 40, 50, 60, 70, 80]


def test_a_hold_shorter_than_the_margin_is_renewed_halfway_through() -> None:
    state = waiting(authorisation=authorised(ACCEPTED, dt.timedelta(hours=20)))
    assert next_wakeup(state, POLICY) == ACCEPTED + dt.timedelta(hours=10)


def test_a_reauth_whose_time_has_passed_is_due_now() -> None:
    state = waiting(authorisation=authorised(ACCEPTED))
    (reauth,) = due(state, POLICY, day(6.5))
    assert (reauth.kind, reauth.at) == (DutyKind.REAUTHORISE, day(6))


def test_the_reauth_interval_and_margin_come_from_the_policy() -> None:
    policy = POLICY.override(reauth_interval_days=3, reauth_before_expiry_hours=48)
    assert next_wakeup(waiting(authorisation=authorised(ACCEPTED)), policy) == day(3)
    long_interval = POLICY.override(reauth_interval_days=30, reauth_before_expiry_hours=48)
    assert next_wakeup(waiting(authorisation=authorised(ACCEPTED)), long_interval) == day(5)


def test_no_reauth_when_payment_is_captured_at_order() -> None:
    policy = POLICY.override(payment_timing=PaymentTiming.AT_ORDER)
    state = waiting(authorisation=authorised(ACCEPTED))
    assert DutyKind.REAUTHORISE not in {d.kind for d in upcoming(state, policy)}


def test_no_reauth_without_an_open_authorisation() -> None:
    assert DutyKind.REAUTHORISE not in {d.kind for d in upcoming(waiting(), POLICY)}
    voided = record_authorisation(waiting(authorisation=authorised(ACCEPTED)), None)
    assert DutyKind.REAUTHORISE not in {d.kind for d in upcoming(voided, POLICY)}


def test_a_reauth_is_recorded_through_the_new_authorisation() -> None:
    state = waiting(authorisation=authorised(ACCEPTED))
    (reauth,) = due(state, POLICY, day(6))
    with pytest.raises(ValueError, match="record_authorisation"):
        record(state, reauth, day(6))
    renewed = record_authorisation(state, authorised(day(6)))
    assert next_wakeup(renewed, POLICY) == day(7)  # the day-7 customer update
    assert [d.at for d in upcoming(renewed, POLICY) if d.kind is DutyKind.REAUTHORISE] == [day(12)]


def test_only_the_reauth_runs_on_while_shipments_wait_to_be_confirmed_and_captured() -> None:
    state = waiting(authorisation=authorised(ACCEPTED), last_update_day=0)
    cleared = record_cleared(state)
    assert upcoming(cleared, POLICY) == () and next_wakeup(cleared, POLICY) is None
    awaiting = record_awaiting_capture(cleared, True)
    assert [d.kind for d in upcoming(awaiting, POLICY)] == [DutyKind.REAUTHORISE]
    assert [d.kind for d in due(awaiting, POLICY, day(40))] == [DutyKind.REAUTHORISE]
    assert record_cleared(awaiting).awaiting_capture is False  # the order's end stops it
    # while units are backordered every timer runs, as ever: the flag is only for after
    assert record_awaiting_capture(state, True).awaiting_capture is False
