"""Customer updates, the exception flag, auto-cancel, self-checks, and the order of duties due
together."""

from __future__ import annotations

import datetime as dt

from domain.policy import BackorderPolicy
from domain.schedule import (
    DutyKind,
    FtcState,
    due,
    next_wakeup,
    record,
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

UPDATES_ONLY = BackorderPolicy(ftc_exception_days=None, ftc_shipping_days=365)
"""Nothing but the day 7 and day 14 updates within the first months."""


def test_customer_updates_go_out_on_day_7_and_14_once_each() -> None:
    life = live(waiting(), UPDATES_ONLY, [shipped(day(40))])
    assert life.times(DutyKind.CUSTOMER_UPDATE) == [day(7), day(14)]
    assert [d.day for d in life.duties(DutyKind.CUSTOMER_UPDATE)] == [7, 14]
    assert {d.key for d in life.duties(DutyKind.CUSTOMER_UPDATE)} == {
        "customer_update/day-7",
        "customer_update/day-14",
    }


def test_no_customer_update_once_nothing_is_backordered() -> None:
    life = live(waiting(), UPDATES_ONLY, [shipped(day(10))])
    assert life.times(DutyKind.CUSTOMER_UPDATE) == [day(7)]


def test_a_late_wakeup_sends_only_the_latest_update() -> None:
    (update,) = due(waiting(), UPDATES_ONLY, day(15))
    assert (update.kind, update.day, update.at) == (DutyKind.CUSTOMER_UPDATE, 14, day(14))
    after = record(waiting(), update, day(15))
    assert DutyKind.CUSTOMER_UPDATE not in {d.kind for d in upcoming(after, UPDATES_ONLY)}


def test_update_days_come_from_the_policy() -> None:
    policy = UPDATES_ONLY.override(customer_update_days=(3, 10, 21))
    life = live(waiting(), policy, [shipped(day(40))])
    assert life.times(DutyKind.CUSTOMER_UPDATE) == [day(3), day(10), day(21)]
    assert live(waiting(), policy.override(customer_update_days=()), [shipped(day(40))]).kinds == []


def test_the_exception_flag_is_raised_on_ftc_exception_days_exactly_once() -> None:
    life = live(waiting())
    assert life.times(DutyKind.FTC_EXCEPTION) == [day(25)]
    (flag,) = life.duties(DutyKind.FTC_EXCEPTION)
    assert flag.key == "ftc_exception"


def test_the_exception_flag_shows_in_ftc_state_until_a_notice_is_sent() -> None:
    policy = POLICY.override(customer_update_days=())
    (flag,) = due(waiting(), policy, day(25))
    flagged = record(waiting(), flag, day(25))
    assert (flagged.ftc.state, flagged.exception_raised) == (FtcState.FLAGGED, True)
    (notice,) = due(flagged, policy, day(27))
    assert record(flagged, notice, day(27)).ftc.state is FtcState.NOTICE_SENT


def test_no_exception_flag_when_shipped_first_or_switched_off() -> None:
    assert live(waiting(), POLICY, [shipped(day(24))]).times(DutyKind.FTC_EXCEPTION) == []
    off = POLICY.override(ftc_exception_days=None)
    assert live(waiting(), off).times(DutyKind.FTC_EXCEPTION) == []


def test_auto_cancel_ends_the_backorder_and_makes_duties_due_with_it_moot() -> None:
    policy = POLICY.override(auto_cancel_days=14)
    (cancel,) = due(waiting(), policy, day(14))
    assert (cancel.kind, cancel.at, cancel.key) == (DutyKind.AUTO_CANCEL, day(14), "auto_cancel")
    life = live(waiting(authorisation=authorised(ACCEPTED)), policy)
    assert life.kinds[-1] is DutyKind.AUTO_CANCEL
    assert life.times(DutyKind.CUSTOMER_UPDATE) == [day(7)]
    assert not life.end.backordered


def test_self_checks_run_every_interval_since_the_last_check() -> None:
    policy = UPDATES_ONLY.override(customer_update_days=(), check_interval_hours=5 * 24)
    life = live(waiting(), policy, [shipped(day(23))])
    assert life.times(DutyKind.SELF_CHECK) == [day(5), day(10), day(15), day(20)]
    late = record(waiting(), due(waiting(), policy, day(7))[0], day(7))
    assert next_wakeup(late, policy) == day(12)


def test_duties_due_together_are_performed_payment_first_and_checks_last() -> None:
    policy = POLICY.override(
        customer_update_days=(27,), ftc_exception_days=27, check_interval_hours=27 * 24
    )
    state = waiting(authorisation=authorised(day(17), dt.timedelta(days=30)))
    assert [d.kind for d in due(state, policy, day(27))] == [
        DutyKind.REAUTHORISE,
        DutyKind.FTC_DELAY_NOTICE,
        DutyKind.FTC_EXCEPTION,
        DutyKind.CUSTOMER_UPDATE,
        DutyKind.SELF_CHECK,
    ]


def test_the_earlier_cancel_wins_and_the_ftc_cancel_on_a_tie() -> None:
    # Nothing recorded: the FTC deadline (day 30) passed without the delay notice.
    at_deadline = POLICY.override(auto_cancel_days=30)
    assert [d.kind for d in due(waiting(), at_deadline, day(31))] == [DutyKind.FTC_CANCEL]
    earlier = POLICY.override(auto_cancel_days=29)
    assert [d.kind for d in due(waiting(), earlier, day(31))] == [DutyKind.AUTO_CANCEL]


def test_upcoming_lists_the_next_duty_of_each_kind_soonest_first() -> None:
    state = waiting(authorisation=authorised(ACCEPTED))
    assert [(d.kind, d.at) for d in upcoming(state, POLICY)] == [
        (DutyKind.REAUTHORISE, day(6)),
        (DutyKind.CUSTOMER_UPDATE, day(7)),
        (DutyKind.FTC_EXCEPTION, day(25)),
        (DutyKind.FTC_DELAY_NOTICE, day(27)),
        (DutyKind.FTC_CANCEL, day(30)),
    ]
