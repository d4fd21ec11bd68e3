"""The FTC Mail, Internet, or Telephone Order Rule (16 CFR 435) as a state machine.

Ship by the stated date, or within `ftc_shipping_days` when none was stated. Before that
deadline the customer gets a delay notice with a revised date and the right to cancel. Silence is
consent only when the revised date is within 30 days of the deadline; otherwise the order is
cancelled 30 days after the deadline unless the customer expressly consents. Before a consented
date is missed a renewed notice asks again, and only express consent keeps the order past it.
An order cancelled under the rule is refunded within 7 working days.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from domain.policy import BackorderPolicy
from domain.schedule.days import add_working_days, end_of_day, last_day_before, utc_day
from domain.schedule.duties import Due, DutyKind
from domain.schedule.state import ConsentKind, FtcRecord, FtcState, ScheduleState

CONSENT_WINDOW = timedelta(days=30)
"""Fixed by the rule (not a policy field): the longest delay silence may consent to."""

REFUND_WORKING_DAYS = 7

CREDIT_EXTRA_DAYS = 20
"""Fixed by the rule: a buyer's application for credit gives the seller 50 days, not 30."""

_AWAITING_CONSENT = (FtcState.NOTICE_SENT, FtcState.CONSENTED, FtcState.RENEWAL_SENT)
"""States in which a notice was sent and a consent means something."""


def original_deadline(state: ScheduleState, policy: BackorderPolicy) -> datetime:
    """The end of the stated ship date, or `ftc_shipping_days` (20 more when the buyer applied
    for credit) after the order was placed: the rule counts from when the seller received a
    properly completed order (16 CFR 435.1(c), 435.2(a)), however late it reached us."""
    if state.stated_ship_date is not None:
        return end_of_day(state.stated_ship_date)
    days = policy.ftc_shipping_days + (CREDIT_EXTRA_DAYS if state.applied_for_credit else 0)
    return state.ftc_clock_start + timedelta(days=days)


def ftc_duties(state: ScheduleState, policy: BackorderPolicy) -> tuple[Due, ...]:
    """The rule's next notice and cancel in the order's FTC state (its deadline as a cancel)."""
    record = state.ftc
    deadline = original_deadline(state, policy)
    match record.state:
        case FtcState.NONE | FtcState.FLAGGED:
            return _delay_notice(state, policy, deadline), _cancel(deadline)
        case FtcState.NOTICE_SENT:
            return (_cancel(deadline + CONSENT_WINDOW),)
        case FtcState.CONSENTED if record.ship_by is not None:
            ship_by = end_of_day(record.ship_by)
            return _renewed_notice(state, policy, ship_by), _cancel(ship_by)
        case FtcState.RENEWAL_SENT if record.ship_by is not None:
            return (_cancel(end_of_day(record.ship_by)),)
    return ()


def revised_date(state: ScheduleState, policy: BackorderPolicy, missed: date) -> date | None:
    """The date to offer when `missed` will be missed: the expected ship date, but at least
    `default_backorder_days` (one at the least) later than `missed`, as stock due in time may
    still slip. Unknown when no date is expected: the rule then has the notice say so."""
    if state.expected_ship_date is None:
        return None
    margin = timedelta(days=max(policy.default_backorder_days, 1))
    return max(state.expected_ship_date, missed + margin)


def _delay_notice(state: ScheduleState, policy: BackorderPolicy, deadline: datetime) -> Due:
    last_day = last_day_before(deadline)
    revised = revised_date(state, policy, last_day)
    silence_consents = revised is not None and revised <= last_day + CONSENT_WINDOW
    return Due(
        kind=DutyKind.FTC_DELAY_NOTICE,
        at=deadline - timedelta(days=policy.ftc_notice_lead_days),
        notice=state.ftc.notices + 1,
        revised_date=revised,
        cancel_at=None if silence_consents else deadline + CONSENT_WINDOW,
    )


def _renewed_notice(state: ScheduleState, policy: BackorderPolicy, ship_by: datetime) -> Due:
    return Due(
        kind=DutyKind.FTC_RENEWED_NOTICE,
        at=ship_by - timedelta(days=policy.ftc_notice_lead_days),
        notice=state.ftc.notices + 1,
        revised_date=revised_date(state, policy, last_day_before(ship_by)),
        cancel_at=ship_by,
    )


def _cancel(at: datetime) -> Due:
    return Due(
        kind=DutyKind.FTC_CANCEL,
        at=at,
        refund_by=add_working_days(utc_day(at), REFUND_WORKING_DAYS),
    )


def after_notice(record: FtcRecord, notice: Due) -> FtcRecord:
    """A delay notice within 30 days is consented to by silence; any other notice awaits an
    express consent."""
    sent = {"notices": record.notices + 1, "offered": notice.revised_date}
    if notice.kind is DutyKind.FTC_RENEWED_NOTICE:
        return record.model_copy(update={**sent, "state": FtcState.RENEWAL_SENT, "consent": None})
    if notice.cancel_at is None:
        return record.model_copy(
            update={
                **sent,
                "state": FtcState.CONSENTED,
                "consent": ConsentKind.SILENCE,
                "ship_by": notice.revised_date,
            }
        )
    return record.model_copy(update={**sent, "state": FtcState.NOTICE_SENT})


def after_consent(record: FtcRecord, until: date | None) -> FtcRecord:
    """Express consent to the latest notice: to ship by `until` when given, else by the date
    offered (or already consented to); without any date, to an indefinite delay. Before any
    notice there is nothing to consent to."""
    if record.state not in _AWAITING_CONSENT:
        return record
    if until is None:
        until = record.ship_by if record.state is FtcState.CONSENTED else record.offered
    return record.model_copy(
        update={"state": FtcState.CONSENTED, "consent": ConsentKind.EXPRESS, "ship_by": until}
    )


def after_cancel(record: FtcRecord, cancel: Due) -> FtcRecord:
    return record.model_copy(update={"state": FtcState.CANCELLED, "refund_by": cancel.refund_by})


def after_exception(record: FtcRecord) -> FtcRecord:
    """The exception flag shows in `FtcState` only while no notice has been sent."""
    if record.state is FtcState.NONE:
        return record.model_copy(update={"state": FtcState.FLAGGED})
    return record
