"""The refusals an integrator can meet, each a non-retryable `ApplicationError` of a stable type
whose details name the field and the value: the README's table of errors lists them all.

A refusal means nothing changed: retrying the same message gets the same answer, so none is
retryable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.contracts import DUPLICATE_ORDER as DUPLICATE_ORDER
from workflows.converter import INVALID_INPUT as INVALID_INPUT

WRONG_WORKFLOW_ID = "WrongWorkflowId"
"""An order started under another workflow id than `backorder-<order_id>`."""
ORDER_ENDED = "OrderEnded"
"""A message to an order with nothing left to ship, cancel or wait for."""
NOTHING_TO_CANCEL = "NothingToCancel"
"""A cancel of an order with no unit left to cancel (all shipped, with fulfilment, cancelled)."""
CANCEL_REJECTED = "CancelRejected"
"""A cancel of more units than a line has left to cancel, or naming a line twice."""
UNKNOWN_LINE = "UnknownLine"
"""A cancel naming a line the order does not have."""
UNKNOWN_TIER = "UnknownTier"
"""A priority change to a tier the site's policy does not know."""
NOTHING_TO_CHANGE = "NothingToChange"
"""A priority change to the tier the order is already served as."""
NOTHING_TO_CONSENT = "NothingToConsent"
"""A consent with no delay notice awaiting one (or after the FTC cancel fell due)."""
NOTHING_TO_CHECK = "NothingToCheck"
"""A check of an order none of whose units waits for stock."""
REPORTS_NOT_TAKEN = "FulfilmentReportsNotTaken"
"""A fulfilment report to an order accepted under `fulfilment_reports = "none"`."""
REPORT_REFUSED = "FulfilmentReportRefused"
"""A fulfilment report the shipment's state refuses (unknown shipment, not with fulfilment,
more units found than it holds, shipped already under another tracking number...)."""
UNKNOWN_MESSAGE = "UnknownMessage"
"""A signal name the order workflow does not have (recorded, never applied)."""


@dataclass(frozen=True)
class Refusal:
    """Why a message is not taken: its error type, a sentence, and the field at fault."""

    type: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def error(self) -> ApplicationError:
        return ApplicationError(self.message, self.details, type=self.type, non_retryable=True)


def invalid(name: str, problems: str) -> Refusal:
    """A payload that does not meet the contract: `invalid CancelRequest: lines.0: ...`."""
    return Refusal(INVALID_INPUT, f"invalid {name}: {problems}", {"problems": problems})
