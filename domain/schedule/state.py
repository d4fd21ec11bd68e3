"""What the schedule remembers of one order: plain data that survives continue-as-new as JSON."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import AwareDatetime, NonNegativeInt, model_validator

from domain.order import Contract


class Authorisation(Contract):
    """The open payment authorisation, as the gateway returned it."""

    authorised_at: AwareDatetime
    expires_at: AwareDatetime
    """The gateway's own expiry of the hold (cards typically hold 7 days)."""

    @model_validator(mode="after")
    def _expires_after_authorised(self) -> Authorisation:
        if self.expires_at <= self.authorised_at:
            raise ValueError("an authorisation must expire after it was made")
        return self


class FtcState(StrEnum):
    """Where the order stands under the FTC Mail, Internet, or Telephone Order Rule (16 CFR 435);
    the values are what operators see in the `FtcState` search attribute."""

    NONE = "none"
    """No notice yet: the shipping deadline is not at hand."""
    FLAGGED = "flagged"
    """No notice yet, but in the exception queue (severity high) for an operator."""
    NOTICE_SENT = "notice_sent"
    """Delay notice sent with a revised date beyond 30 days (or unknown): cancelled at the
    deadline + 30 days unless the customer expressly consents."""
    CONSENTED = "consented"
    """The customer consents to ship by `ship_by` (by silence within 30 days, or expressly);
    no `ship_by`: an express consent to an indefinite delay."""
    RENEWAL_SENT = "renewal_sent"
    """Renewed notice sent: cancelled when `ship_by` passes unless the customer expressly
    consents."""
    CANCELLED = "cancelled"
    """The unshipped part was cancelled under the rule; refund by `refund_by`."""


class ConsentKind(StrEnum):
    SILENCE = "silence"
    """No answer to a notice whose revised date is within 30 days of the deadline."""
    EXPRESS = "express"
    """The customer said yes (the `consent` signal)."""


class FtcRecord(Contract):
    """The order's FTC notices and consents so far."""

    state: FtcState = FtcState.NONE
    notices: NonNegativeInt = 0
    """Notices sent so far (the delay notice, then renewed ones)."""
    offered: date | None = None
    """The revised ship date in the latest notice (None: none sent, or the date was unknown)."""
    ship_by: date | None = None
    """consented: the date consented to; renewal_sent: the date that will be missed."""
    consent: ConsentKind | None = None
    refund_by: date | None = None
    """cancelled: the day the refund must be issued by."""


class ScheduleState(Contract):
    """Everything the timers of one backordered order depend on, besides the policy and the
    time."""

    accepted_at: AwareDatetime
    ordered_at: AwareDatetime | None = None
    """When the seller received the properly completed order (`placed_at`): the FTC clock runs
    from here, not from acceptance. None for orders accepted before it was kept: acceptance."""
    applied_for_credit: bool = False
    """The buyer applied to the merchant for credit to pay: 20 more days to ship (16 CFR
    435.1(a)(1)(ii): 50 instead of 30)."""
    stated_ship_date: date | None = None
    """The ship date stated to the customer at order time, if any (the FTC deadline)."""
    expected_ship_date: date | None = None
    """The best known date the backorder can ship (from incoming receipts); None: unknown."""
    backordered: bool = True
    """Anything still waiting; once nothing is (all shipped or cancelled) every timer stops."""
    awaiting_capture: bool = False
    """Nothing waits for stock, but shipments with fulfilment are captured only when it
    confirms them (`fulfilment_reports = "shipped"`): the re-authorisation timer alone runs on,
    so the hold does not lapse before they ship."""
    authorisation: Authorisation | None = None
    """The open payment authorisation, if any."""
    last_update_day: NonNegativeInt = 0
    """The day of the last customer update; earlier update days are never sent late."""
    ftc: FtcRecord = FtcRecord()
    exception_raised: bool = False
    auto_cancelled: bool = False
    """The merchant's cut-off passed and cancelled what was backordered (once per order)."""
    last_check_at: AwareDatetime | None = None
    """When the allocator was last asked to re-check this order."""

    @property
    def ftc_clock_start(self) -> datetime:
        """Where the FTC rule's days are counted from."""
        return self.ordered_at or self.accepted_at
