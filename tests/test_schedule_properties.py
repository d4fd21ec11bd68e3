"""Properties of the schedule for any policy and state hypothesis can think of: the workflow
never sleeps through a duty, never wakes for nothing, and every life ends."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.policy import BackorderPolicy, PaymentTiming
from domain.schedule import (
    Authorisation,
    ConsentKind,
    DutyKind,
    FtcRecord,
    FtcState,
    ScheduleState,
    ScheduleSummary,
    due,
    next_wakeup,
    original_deadline,
    summary,
    upcoming,
)
from domain.schedule.days import end_of_day, last_day_before
from tests.test_schedule_life import Event, Life, consented, expected, live, shipped

EXAMPLES = settings(max_examples=200, deadline=None)
LIVES = settings(max_examples=100, deadline=None)
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
DAYS_90 = 90 * DAY


def after(
    start: dt.datetime, low: dt.timedelta, high: dt.timedelta
) -> st.SearchStrategy[dt.datetime]:
    return st.timedeltas(min_value=low, max_value=high).map(lambda offset: start + offset)


def days_from(start: dt.datetime, low: int, high: int) -> st.SearchStrategy[dt.date]:
    return st.integers(low, high).map(lambda n: start.date() + dt.timedelta(days=n))


@st.composite
def policies(draw: st.DrawFn, min_check_hours: int = 1) -> BackorderPolicy:
    return BackorderPolicy(
        payment_timing=draw(st.sampled_from(PaymentTiming)),
        reauth_interval_days=draw(st.integers(1, 30)),
        reauth_before_expiry_hours=draw(st.integers(1, 24 * 7)),
        customer_update_days=tuple(draw(st.lists(st.integers(1, 60), max_size=3))),
        ftc_shipping_days=draw(st.integers(1, 30)),
        ftc_notice_lead_days=draw(st.integers(1, 30)),
        ftc_exception_days=draw(st.none() | st.integers(1, 90)),
        auto_cancel_days=draw(st.none() | st.integers(1, 120)),
        check_interval_hours=draw(st.none() | st.integers(min_check_hours, 24 * 30)),
        default_backorder_days=draw(st.integers(0, 10)),
    )


@st.composite
def authorisations(draw: st.DrawFn, start: dt.datetime) -> Authorisation:
    at = draw(after(start, dt.timedelta(0), 40 * DAY))
    hold = draw(st.timedeltas(min_value=dt.timedelta(minutes=1), max_value=30 * DAY))
    return Authorisation(authorised_at=at, expires_at=at + hold)


@st.composite
def ftc_records(draw: st.DrawFn, start: dt.datetime) -> FtcRecord:
    maybe_day = st.none() | days_from(start, -5, 120)
    return FtcRecord(
        state=draw(st.sampled_from(FtcState)),
        notices=draw(st.integers(0, 4)),
        offered=draw(maybe_day),
        ship_by=draw(maybe_day),
        consent=draw(st.none() | st.sampled_from(ConsentKind)),
        refund_by=draw(maybe_day),
    )


@st.composite
def states(draw: st.DrawFn) -> ScheduleState:
    accepted = draw(after(START, dt.timedelta(0), 365 * DAY))
    return ScheduleState(
        accepted_at=accepted,
        stated_ship_date=draw(st.none() | days_from(accepted, -3, 60)),
        expected_ship_date=draw(st.none() | days_from(accepted, -10, 120)),
        backordered=draw(st.booleans()),
        authorisation=draw(st.none() | authorisations(accepted)),
        last_update_day=draw(st.integers(0, 30)),
        ftc=draw(ftc_records(accepted)),
        exception_raised=draw(st.booleans()),
        last_check_at=draw(st.none() | after(accepted, dt.timedelta(0), 40 * DAY)),
    )


@EXAMPLES
@given(
    policies(), states(), st.timedeltas(min_value=dt.timedelta(microseconds=1), max_value=90 * DAY)
)
def test_next_wakeup_is_the_first_instant_anything_is_due(
    policy: BackorderPolicy, state: ScheduleState, earlier: dt.timedelta
) -> None:
    wakeup = next_wakeup(state, policy)
    if wakeup is None:
        assert due(state, policy, state.accepted_at + 1_000 * DAY) == ()
        assert upcoming(state, policy) == ()
        return
    assert due(state, policy, wakeup) != ()
    assert due(state, policy, wakeup - earlier) == ()
    assert upcoming(state, policy)[0].at == wakeup


@EXAMPLES
@given(policies(), states(), st.timedeltas(min_value=dt.timedelta(0), max_value=200 * DAY))
def test_due_duties_come_one_per_kind_in_order_and_a_cancel_comes_alone(
    policy: BackorderPolicy, state: ScheduleState, offset: dt.timedelta
) -> None:
    now = state.accepted_at + offset
    duties = due(state, policy, now)
    assert all(duty.at <= now for duty in duties)
    ranks = [duty.kind.rank for duty in duties]
    assert ranks == sorted(set(ranks))
    if any(duty.kind.cancels for duty in duties):
        assert len(duties) == 1


@EXAMPLES
@given(policies(), states())
def test_the_state_and_the_summary_survive_json(
    policy: BackorderPolicy, state: ScheduleState
) -> None:
    """The state rides through continue-as-new, the summary through the `status` query."""
    assert ScheduleState.model_validate_json(state.model_dump_json()) == state
    view = summary(state, policy)
    assert ScheduleSummary.model_validate_json(view.model_dump_json()) == view


@dataclass(frozen=True)
class Setup:
    """A fresh backorder, what the workflow learns while it waits, and the gateway's hold."""

    policy: BackorderPolicy
    state: ScheduleState
    receipts: list[Event]
    consents: list[Event]
    shipment: list[Event]
    hold: dt.timedelta

    def live(self, *, consents: bool = True) -> Life:
        events = self.receipts + self.shipment + (self.consents if consents else [])
        return live(self.state, self.policy, events, hold=self.hold)


@st.composite
def setups(draw: st.DrawFn) -> Setup:
    policy = draw(policies(min_check_hours=24))
    accepted = draw(after(START, dt.timedelta(0), 30 * DAY))
    hold = draw(st.timedeltas(min_value=DAY, max_value=30 * DAY))
    when = after(accepted, dt.timedelta(0), 150 * DAY)
    ship_date = st.none() | days_from(accepted, 0, 150)
    receipts = draw(st.lists(st.tuples(when, ship_date), max_size=3))
    consents = draw(st.lists(st.tuples(when, ship_date), max_size=2))
    # An express consent may wait for ever: the stock arriving ends such a life.
    ships = bool(consents) or draw(st.booleans())
    shipment = [shipped(draw(when))] if ships else []
    return Setup(
        policy=policy,
        state=ScheduleState(
            accepted_at=accepted,
            stated_ship_date=draw(st.none() | days_from(accepted, 1, 45)),
            expected_ship_date=draw(st.none() | days_from(accepted, 0, 120)),
            authorisation=Authorisation(authorised_at=accepted, expires_at=accepted + hold),
        ),
        receipts=[expected(at, date) for at, date in receipts],
        consents=[consented(at, policy, until) for at, until in consents],
        shipment=shipment,
        hold=hold,
    )


@LIVES
@given(setups())
def test_every_life_ends_and_never_performs_a_duty_twice(setup: Setup) -> None:
    life = setup.live()
    keys = [p.duty.key for p in life.performed]
    assert len(keys) == len(set(keys))
    times = [p.now for p in life.performed]
    assert times == sorted(times)
    assert not life.end.backordered
    assert next_wakeup(life.end, setup.policy) is None


@LIVES
@given(setups())
def test_without_express_consent_nothing_waits_past_30_days_after_the_deadline(
    setup: Setup,
) -> None:
    life = setup.live(consents=False)
    deadline = original_deadline(setup.state, setup.policy)
    limit = end_of_day(last_day_before(deadline) + 30 * DAY)
    assert all(p.now <= limit for p in life.performed)
    assert not life.end.backordered


@LIVES
@given(setups())
def test_an_open_authorisation_never_lapses_and_is_renewed_within_the_interval(
    setup: Setup,
) -> None:
    life = setup.live()
    renewals = [setup.state.accepted_at, *life.times(DutyKind.REAUTHORISE)]
    for made, renewed in itertools.pairwise(renewals):
        assert renewed - made <= dt.timedelta(days=setup.policy.reauth_interval_days)
        assert renewed - made < setup.hold
