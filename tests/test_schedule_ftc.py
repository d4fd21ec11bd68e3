"""The FTC Mail, Internet, or Telephone Order Rule (16 CFR 435), one test per clause.

Acceptance is Monday January 5, 2026, 09:00 UTC: day 27 is February 1, day 30 (the deadline
without a stated date) February 4, day 60 (30 days later) Friday March 6.
"""

from __future__ import annotations

import datetime as dt

import pytest

from domain.policy import BackorderPolicy
from domain.schedule import (
    ConsentKind,
    DutyKind,
    FtcState,
    ScheduleState,
    due,
    original_deadline,
    record,
    record_cleared,
    record_consent,
    summary,
    upcoming,
)
from domain.schedule.days import add_working_days
from tests.test_schedule_life import (
    ACCEPTED,
    Life,
    consented,
    day,
    expected,
    live,
    midnight,
    shipped,
    waiting,
)

FTC_ONLY = BackorderPolicy(customer_update_days=(), ftc_exception_days=None)
FTC_KINDS = {
    DutyKind.FTC_DELAY_NOTICE,
    DutyKind.FTC_RENEWED_NOTICE,
    DutyKind.FTC_CANCEL,
    DutyKind.FTC_EXCEPTION,
}


def date(iso: str) -> dt.date:
    return dt.date.fromisoformat(iso)


def noticed(state: ScheduleState) -> ScheduleState:
    """The state after the delay notice went out on time."""
    (notice,) = due(state, FTC_ONLY, original_deadline(state, FTC_ONLY) - dt.timedelta(days=3))
    assert notice.kind is DutyKind.FTC_DELAY_NOTICE
    return record(state, notice, notice.at)


def ftc_log(life: Life) -> list[tuple[DutyKind, dt.datetime]]:
    return [(p.duty.kind, p.now) for p in life.performed if p.duty.kind in FTC_KINDS]


def test_without_a_stated_date_the_deadline_is_day_30_and_the_notice_goes_out_on_day_27() -> None:
    assert original_deadline(waiting(), FTC_ONLY) == day(30)
    assert due(waiting(), FTC_ONLY, day(27) - dt.timedelta(microseconds=1)) == ()
    (notice,) = due(waiting(), FTC_ONLY, day(27))
    assert (notice.kind, notice.at, notice.notice) == (DutyKind.FTC_DELAY_NOTICE, day(27), 1)


def test_a_stated_ship_date_earlier_than_30_days_is_the_deadline() -> None:
    state = waiting(stated_ship_date=date("2026-01-20"), expected_ship_date=date("2026-02-19"))
    assert original_deadline(state, FTC_ONLY) == midnight("2026-01-21")
    (notice,) = due(state, FTC_ONLY, midnight("2026-01-18"))
    assert notice.at == midnight("2026-01-18")
    assert (notice.revised_date, notice.cancel_at) == (date("2026-02-19"), None)
    beyond = state.model_copy(update={"expected_ship_date": date("2026-02-20")})
    (notice,) = due(beyond, FTC_ONLY, midnight("2026-01-18"))
    assert notice.cancel_at == midnight("2026-02-20")


def test_a_revised_date_within_30_days_is_consented_to_by_silence() -> None:
    state = waiting(expected_ship_date=date("2026-02-20"))
    (notice,) = due(state, FTC_ONLY, day(27))
    assert (notice.revised_date, notice.cancel_at) == (date("2026-02-20"), None)
    after = record(state, notice, day(27)).ftc
    assert (after.state, after.consent, after.ship_by) == (
        FtcState.CONSENTED,
        ConsentKind.SILENCE,
        date("2026-02-20"),
    )
    life = live(state, FTC_ONLY, [shipped(day(43))])  # February 17, before the renewed notice
    assert ftc_log(life) == [(DutyKind.FTC_DELAY_NOTICE, day(27))]


def test_silence_consents_up_to_exactly_30_days_after_the_deadline() -> None:
    (last_day,) = due(waiting(expected_ship_date=date("2026-03-06")), FTC_ONLY, day(27))
    assert last_day.cancel_at is None
    (one_more,) = due(waiting(expected_ship_date=date("2026-03-07")), FTC_ONLY, day(27))
    assert one_more.cancel_at == day(60)


def test_a_revised_date_beyond_30_days_cancels_on_day_60_without_express_consent() -> None:
    state = waiting(expected_ship_date=date("2026-03-21"))
    (notice,) = due(state, FTC_ONLY, day(27))
    assert (notice.revised_date, notice.cancel_at) == (date("2026-03-21"), day(60))
    assert record(state, notice, day(27)).ftc.state is FtcState.NOTICE_SENT
    life = live(state, FTC_ONLY)
    assert ftc_log(life) == [(DutyKind.FTC_DELAY_NOTICE, day(27)), (DutyKind.FTC_CANCEL, day(60))]
    (cancel,) = life.duties(DutyKind.FTC_CANCEL)
    assert cancel.refund_by == date("2026-03-17")
    assert (life.end.ftc.state, life.end.ftc.refund_by) == (FtcState.CANCELLED, date("2026-03-17"))
    assert not life.end.backordered


def test_express_consent_keeps_the_order_past_day_60() -> None:
    state = waiting(expected_ship_date=date("2026-03-21"))
    life = live(state, FTC_ONLY, [consented(day(40), FTC_ONLY), shipped(day(70))])
    assert ftc_log(life) == [(DutyKind.FTC_DELAY_NOTICE, day(27))]
    assert (life.end.ftc.state, life.end.ftc.consent, life.end.ftc.ship_by) == (
        FtcState.CONSENTED,
        ConsentKind.EXPRESS,
        date("2026-03-21"),
    )


def test_consent_until_a_date_is_renewed_before_it_and_cancelled_when_it_passes() -> None:
    state = waiting(expected_ship_date=date("2026-03-21"))
    life = live(state, FTC_ONLY, [consented(day(40), FTC_ONLY, until=date("2026-03-01"))])
    assert ftc_log(life) == [
        (DutyKind.FTC_DELAY_NOTICE, day(27)),
        (DutyKind.FTC_RENEWED_NOTICE, midnight("2026-02-27")),
        (DutyKind.FTC_CANCEL, midnight("2026-03-02")),
    ]
    (renewed,) = life.duties(DutyKind.FTC_RENEWED_NOTICE)
    assert (renewed.notice, renewed.revised_date, renewed.cancel_at) == (
        2,
        date("2026-03-21"),
        midnight("2026-03-02"),
    )
    (cancel,) = life.duties(DutyKind.FTC_CANCEL)
    assert cancel.refund_by == date("2026-03-11")


def test_a_new_express_consent_after_a_renewed_notice_keeps_the_order() -> None:
    events = [
        consented(day(40), FTC_ONLY, until=date("2026-03-01")),
        consented(midnight("2026-02-28"), FTC_ONLY),
        shipped(midnight("2026-03-18")),
    ]
    life = live(waiting(expected_ship_date=date("2026-03-21")), FTC_ONLY, events)
    assert ftc_log(life) == [
        (DutyKind.FTC_DELAY_NOTICE, day(27)),
        (DutyKind.FTC_RENEWED_NOTICE, midnight("2026-02-27")),
    ]
    assert (life.end.ftc.state, life.end.ftc.ship_by) == (FtcState.CONSENTED, date("2026-03-21"))


def test_silence_never_answers_a_renewed_notice() -> None:
    life = live(waiting(expected_ship_date=date("2026-02-20")), FTC_ONLY)
    assert ftc_log(life) == [
        (DutyKind.FTC_DELAY_NOTICE, day(27)),
        (DutyKind.FTC_RENEWED_NOTICE, midnight("2026-02-18")),
        (DutyKind.FTC_CANCEL, midnight("2026-02-21")),
    ]
    (renewed,) = life.duties(DutyKind.FTC_RENEWED_NOTICE)
    assert renewed.revised_date == date("2026-02-22")
    assert life.end.ftc.refund_by == date("2026-03-03")


def test_an_unknown_expected_date_is_said_and_needs_express_consent() -> None:
    (notice,) = due(waiting(), FTC_ONLY, day(27))
    assert (notice.revised_date, notice.cancel_at) == (None, day(60))
    assert ftc_log(live(waiting(), FTC_ONLY))[-1] == (DutyKind.FTC_CANCEL, day(60))


def test_express_consent_to_an_unknown_date_is_an_indefinite_delay() -> None:
    indefinite = record_consent(noticed(waiting()), FTC_ONLY, day(40))
    assert (indefinite.ftc.state, indefinite.ftc.ship_by) == (FtcState.CONSENTED, None)
    assert upcoming(indefinite, FTC_ONLY) == ()
    until = record_consent(noticed(waiting()), FTC_ONLY, day(40), date("2026-04-30"))
    assert [(d.kind, d.at) for d in upcoming(until, FTC_ONLY)] == [
        (DutyKind.FTC_RENEWED_NOTICE, midnight("2026-04-28")),
        (DutyKind.FTC_CANCEL, midnight("2026-05-01")),
    ]


def test_a_receipt_learned_before_the_notice_sets_its_revised_date() -> None:
    life = live(waiting(), FTC_ONLY, [expected(day(20), date("2026-02-20")), shipped(day(43))])
    (notice,) = life.duties(DutyKind.FTC_DELAY_NOTICE)
    assert (notice.revised_date, notice.cancel_at) == (date("2026-02-20"), None)


@pytest.mark.parametrize(
    ("expected_date", "default_days", "revised"),
    [
        ("2026-01-20", 2, "2026-02-06"),  # stock due in time but not shipped: deadline + 2 days
        ("2026-02-05", 2, "2026-02-06"),
        ("2026-02-10", 2, "2026-02-10"),
        ("2026-01-20", 0, "2026-02-05"),  # at least one day
    ],
)
def test_the_revised_date_is_the_expected_date_but_after_the_missed_date(
    expected_date: str, default_days: int, revised: str
) -> None:
    policy = FTC_ONLY.override(default_backorder_days=default_days)
    (notice,) = due(waiting(expected_ship_date=date(expected_date)), policy, day(27))
    assert notice.revised_date == date(revised)


def test_a_deadline_passed_without_a_notice_cancels_the_order() -> None:
    late = waiting(stated_ship_date=date("2026-01-04"))
    (cancel,) = due(late, FTC_ONLY, ACCEPTED)
    assert (cancel.kind, cancel.at) == (DutyKind.FTC_CANCEL, midnight("2026-01-05"))


@pytest.mark.parametrize(
    ("cancelled_on", "refund_by"),
    [
        ("2026-03-02", "2026-03-11"),  # Monday
        ("2026-03-06", "2026-03-17"),  # Friday: two weekends skipped
        ("2026-02-21", "2026-03-03"),  # Saturday
        ("2026-02-22", "2026-03-03"),  # Sunday
    ],
)
def test_the_refund_is_due_within_seven_working_days(cancelled_on: str, refund_by: str) -> None:
    assert add_working_days(date(cancelled_on), 7) == date(refund_by)


def test_a_consent_after_the_cancel_fell_due_is_too_late() -> None:
    sent = noticed(waiting(expected_ship_date=date("2026-03-21")))
    assert record_consent(sent, FTC_ONLY, day(60)) == sent
    assert record_consent(sent, FTC_ONLY, day(59.9)).ftc.state is FtcState.CONSENTED


def test_a_consent_before_any_notice_changes_nothing() -> None:
    assert record_consent(waiting(), FTC_ONLY, day(10), date("2026-06-01")) == waiting()


def test_nothing_happens_once_everything_shipped() -> None:
    sent = record_cleared(noticed(waiting(expected_ship_date=date("2026-03-21"))))
    assert due(sent, FTC_ONLY, day(365)) == ()
    assert record_consent(sent, FTC_ONLY, day(40)) == sent
    assert sent.ftc.state is FtcState.NOTICE_SENT  # the record of what happened stays


def test_the_summary_shows_the_ftc_state_deadline_and_next_duties() -> None:
    view = summary(noticed(waiting(expected_ship_date=date("2026-03-21"))), FTC_ONLY)
    assert (view.ftc.state, view.ftc.offered, view.ftc_deadline) == (
        FtcState.NOTICE_SENT,
        date("2026-03-21"),
        day(30),
    )
    assert [(d.kind, d.at, d.refund_by) for d in view.upcoming] == [
        (DutyKind.FTC_CANCEL, day(60), date("2026-03-17"))
    ]


# -- the clock runs from when the order was placed (16 CFR 435.1(c), 435.2(a)) -------------------


def test_the_deadline_counts_from_placed_at_not_from_acceptance() -> None:
    placed = ACCEPTED - dt.timedelta(days=11)  # the order system handed it over late
    state = ScheduleState(accepted_at=ACCEPTED, ordered_at=placed)
    assert original_deadline(state, FTC_ONLY) == placed + dt.timedelta(days=30)
    assert summary(state, FTC_ONLY).ftc_deadline == placed + dt.timedelta(days=30)


def test_a_late_order_whose_notice_is_already_due_gets_it_at_once() -> None:
    placed = ACCEPTED - dt.timedelta(days=28)  # notice 3 days before day 30: already past
    state = ScheduleState(accepted_at=ACCEPTED, ordered_at=placed)
    duties = [d for d in due(state, FTC_ONLY, ACCEPTED) if d.kind in FTC_KINDS]
    assert [d.kind for d in duties] == [DutyKind.FTC_DELAY_NOTICE]
    assert duties[0].at == placed + dt.timedelta(days=27)


def test_a_credit_application_gives_fifty_days() -> None:
    placed = ACCEPTED - dt.timedelta(days=2)
    state = ScheduleState(accepted_at=ACCEPTED, ordered_at=placed, applied_for_credit=True)
    assert original_deadline(state, FTC_ONLY) == placed + dt.timedelta(days=50)
    stated = state.model_copy(update={"stated_ship_date": date("2026-01-20")})
    assert original_deadline(stated, FTC_ONLY) == midnight("2026-01-21")  # stated wins


def test_orders_accepted_before_placed_at_was_kept_keep_their_acceptance_clock() -> None:
    state = ScheduleState(accepted_at=ACCEPTED)
    assert original_deadline(state, FTC_ONLY) == ACCEPTED + dt.timedelta(days=30)


def test_the_operator_flag_runs_on_the_ftc_clock() -> None:
    placed = ACCEPTED - dt.timedelta(days=20)
    state = ScheduleState(accepted_at=ACCEPTED, ordered_at=placed)
    flag = next(d for d in upcoming(state, BackorderPolicy()) if d.kind is DutyKind.FTC_EXCEPTION)
    assert flag.at == placed + dt.timedelta(days=25)
