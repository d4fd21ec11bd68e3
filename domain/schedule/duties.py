"""What the order workflow must do at a given moment: one `Due` per timed duty."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import AwareDatetime, PositiveInt

from domain.order import Contract


class DutyKind(StrEnum):
    """A timed duty of a waiting order, declared in the order `due()` performs them."""

    FTC_CANCEL = "ftc_cancel"
    """Cancel and refund the unshipped part: a deadline of the FTC rule passed without consent."""
    AUTO_CANCEL = "auto_cancel"
    """Cancel and refund what is still backordered: the merchant's `auto_cancel_days` passed."""
    REAUTHORISE = "reauthorise"
    """Authorise the payment anew before the open authorisation lapses (`at_ship` only)."""
    FTC_DELAY_NOTICE = "ftc_delay_notice"
    """The FTC delay-option notice: revised ship date and the right to cancel."""
    FTC_RENEWED_NOTICE = "ftc_renewed_notice"
    """The FTC renewed option: the revised date will be missed too; only express consent keeps
    the order."""
    FTC_EXCEPTION = "ftc_exception"
    """Flag the order for an operator in the exception queue, severity high."""
    CUSTOMER_UPDATE = "customer_update"
    """A "still awaiting stock" courtesy notice."""
    SELF_CHECK = "self_check"
    """Ask the allocator to re-check this order: a safety net for a missed signal."""

    @property
    def rank(self) -> int:
        """Position among the duties that fall due together (the declaration order)."""
        return _RANKS[self]

    @property
    def cancels(self) -> bool:
        """A cancel ends the backorder, so every other duty due with it is moot."""
        return self in (DutyKind.FTC_CANCEL, DutyKind.AUTO_CANCEL)


_RANKS = {kind: rank for rank, kind in enumerate(DutyKind)}


class Due(Contract):
    """One timed duty and what performing it needs; only the fields of its kind are set."""

    kind: DutyKind
    at: AwareDatetime
    """When it falls due; a duty found due later than this is performed at once."""
    day: PositiveInt | None = None
    """customer_update: the day after acceptance it is for."""
    notice: PositiveInt | None = None
    """FTC notices: the notice's number in this order's life (1 is the delay notice)."""
    revised_date: date | None = None
    """FTC notices: the revised ship date to offer; None says the delay is unknown."""
    cancel_at: AwareDatetime | None = None
    """FTC notices: the order is cancelled then unless the customer expressly consents
    (None: silence is consent, the notice must say so)."""
    refund_by: date | None = None
    """ftc_cancel: the refund must be issued by this day (7 working days)."""

    @property
    def key(self) -> str:
        """The duty's step, unique in one order's life: `<workflow id>/<key>` is an idempotency
        key for the activity that performs it."""
        match self.kind:
            case DutyKind.CUSTOMER_UPDATE:
                return f"{self.kind}/day-{self.day}"
            case DutyKind.FTC_DELAY_NOTICE | DutyKind.FTC_RENEWED_NOTICE:
                return f"{self.kind}/{self.notice}"
            case DutyKind.REAUTHORISE | DutyKind.SELF_CHECK:
                return f"{self.kind}/{self.at.isoformat()}"
            case _:
                return str(self.kind)
