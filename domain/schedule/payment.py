"""When a waiting order's payment authorisation must be renewed (`payment_timing = "at_ship"`)."""

from __future__ import annotations

from datetime import timedelta

from domain.policy import BackorderPolicy, PaymentTiming
from domain.schedule.duties import Due, DutyKind
from domain.schedule.state import ScheduleState


def reauthorisation(state: ScheduleState, policy: BackorderPolicy) -> Due | None:
    """Every `reauth_interval_days`, and always `reauth_before_expiry_hours` before the gateway's
    expiry. A hold shorter than that margin is renewed halfway through instead, so that a fresh
    authorisation is never due at once again (the workflow would spin)."""
    auth = state.authorisation
    if policy.payment_timing is not PaymentTiming.AT_SHIP or auth is None:
        return None
    before_expiry = max(
        auth.expires_at - timedelta(hours=policy.reauth_before_expiry_hours),
        auth.authorised_at + (auth.expires_at - auth.authorised_at) / 2,
    )
    at = min(auth.authorised_at + timedelta(days=policy.reauth_interval_days), before_expiry)
    return Due(kind=DutyKind.REAUTHORISE, at=at)
