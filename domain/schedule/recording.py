"""New schedule states after the workflow did something, or learned something (models are
frozen: every function returns a new state)."""

from __future__ import annotations

from datetime import date, datetime

from domain.policy import BackorderPolicy
from domain.schedule.duties import Due, DutyKind
from domain.schedule.ftc import (
    after_cancel,
    after_consent,
    after_exception,
    after_notice,
    ftc_duties,
)
from domain.schedule.state import Authorisation, ScheduleState


def record(state: ScheduleState, done: Due, now: datetime) -> ScheduleState:
    """`done` was performed at `now` (once: recording a duty twice counts it twice).

    A re-authorisation is recorded with `record_authorisation`, as its outcome is the gateway's.
    """
    match done.kind:
        case DutyKind.CUSTOMER_UPDATE:
            day = max(state.last_update_day, done.day or 0)
            return state.model_copy(update={"last_update_day": day})
        case DutyKind.FTC_DELAY_NOTICE | DutyKind.FTC_RENEWED_NOTICE:
            return state.model_copy(update={"ftc": after_notice(state.ftc, done)})
        case DutyKind.FTC_CANCEL:
            ftc = after_cancel(state.ftc, done)
            return state.model_copy(update={"ftc": ftc, "backordered": False})
        case DutyKind.AUTO_CANCEL:
            return record_cleared(state).model_copy(update={"auto_cancelled": True})
        case DutyKind.FTC_EXCEPTION:
            ftc = after_exception(state.ftc)
            return state.model_copy(update={"ftc": ftc, "exception_raised": True})
        case DutyKind.SELF_CHECK:
            return state.model_copy(update={"last_check_at": now})
        case DutyKind.REAUTHORISE:
            raise ValueError("record a re-authorisation with record_authorisation")


def record_authorisation(
    state: ScheduleState, authorisation: Authorisation | None
) -> ScheduleState:
    """The gateway authorised the payment (at acceptance or on a re-auth, `authorised_at` being
    when it was made); None: no authorisation is open any more (captured in full, voided or
    declined)."""
    return state.model_copy(update={"authorisation": authorisation})


def record_consent(
    state: ScheduleState, policy: BackorderPolicy, now: datetime, until: date | None = None
) -> ScheduleState:
    """The customer's express consent to the delay (`consent` signal), up to `until` if given.

    A consent received after the order fell due for an FTC cancel is too late: the rule wants it
    "prior to the expiration" of the period, so it is ignored (as is one before any notice).
    """
    if not state.backordered or any(
        duty.kind is DutyKind.FTC_CANCEL and duty.at <= now for duty in ftc_duties(state, policy)
    ):
        return state
    return state.model_copy(update={"ftc": after_consent(state.ftc, until)})


def record_expected_ship_date(state: ScheduleState, expected: date | None) -> ScheduleState:
    """The best known ship date changed (a receipt was scheduled, moved or cancelled)."""
    return state.model_copy(update={"expected_ship_date": expected})


def record_cleared(state: ScheduleState) -> ScheduleState:
    """Nothing is backordered any more (all shipped or cancelled): every timer stops for good."""
    return state.model_copy(update={"backordered": False, "awaiting_capture": False})


def record_awaiting_capture(state: ScheduleState, awaiting: bool) -> ScheduleState:
    """Whether shipments with fulfilment still wait for their capture (see `awaiting_capture`);
    only once nothing is backordered."""
    return state.model_copy(update={"awaiting_capture": awaiting and not state.backordered})


def record_still_waiting(state: ScheduleState) -> ScheduleState:
    """Units still wait after an auto-cancel took what was backordered (they are in future
    shipments): the timers that guard them (re-authorisation, FTC rule) run on; auto-cancel
    does not fire again."""
    return state.model_copy(update={"backordered": True})
