"""What customer service asks of an order: cancel, consent to the delay, serve it as another
tier, look for stock again. Each comes two ways:

- an update (`cancel_order`, `give_consent`, `change_priority`, `request_check`), whose
  validator refuses at once what cannot be done, with a typed error naming the field, and whose
  answer says what was done;
- a signal (`cancel`, `consent`, `set_priority`, `check_now`) for fire-and-forget senders. A
  signal that cannot be applied (unreadable, under an unknown name, or refused) is never
  dropped silently: it is recorded in the order's log and raised to the operators' exception
  queue (patch `answer-every-message`: histories from before replay as they ran).

Both take the workflow's lock, so a message never interleaves with an allotment, a timer duty
or another message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RawValue

from workflows.cancels import Cancels
from workflows.patches import ANSWER_EVERY_MESSAGE, patched

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.contract import Message, contract_problems
    from domain.order_book import BookError
    from domain.schedule import record_consent
    from workflows import refusals as r
    from workflows.calls import call, shielded
    from workflows.messages import (
        CancelRequest,
        CancelResult,
        CheckNow,
        CheckResult,
        ConsentResult,
        ConsentSignal,
        PriorityChange,
        PriorityResult,
    )

M = TypeVar("M", bound=Message)
T = TypeVar("T")
STANDARD_TIER = "standard"
"""The tier of every order no rank lists: always known."""


@dataclass(frozen=True)
class RefusedMessage:
    """A signal the workflow could not even read (unknown name): refused in the main loop."""

    name: str
    refusal: r.Refusal


ServiceMessage = CancelRequest | ConsentSignal | PriorityChange | CheckNow
SIGNAL_NAMES: dict[type[Message], str] = {
    CancelRequest: "cancel",
    ConsentSignal: "consent",
    PriorityChange: "set_priority",
    CheckNow: "check_now",
}


class CustomerService(Cancels):
    _inbox: list[Any]

    # -- updates: answered -----------------------------------------------------------------

    @workflow.update
    async def cancel_order(self, request: CancelRequest) -> CancelResult:
        """Cancel the whole order or some lines; answers what was cancelled and given back."""
        return await self._answer(request, self._cancel)

    @cancel_order.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._refuse_now(self._refusal(request))

    @workflow.update
    async def give_consent(self, consent: ConsentSignal) -> ConsentResult:
        """The customer accepts the shipping delay (FTC rule); answers the FTC state."""
        return await self._answer(consent, self._consent)

    @give_consent.validator
    def _validate_consent(self, consent: ConsentSignal) -> None:
        self._refuse_now(self._refusal(consent))

    @workflow.update
    async def change_priority(self, change: PriorityChange) -> PriorityResult:
        """Serve the order as another tier from now on; answers the tier before and after."""
        return await self._answer(change, self._change_priority)

    @change_priority.validator
    def _validate_priority(self, change: PriorityChange) -> None:
        self._refuse_now(self._refusal(change))

    @workflow.update
    async def request_check(self, request: CheckNow) -> CheckResult:
        """Ask the allocator to look for stock for this order now; answers what it looks at."""
        return await self._answer(request, self._check)

    @request_check.validator
    def _validate_check(self, request: CheckNow) -> None:
        self._refuse_now(self._refusal(request))

    async def _answer(self, message: M, apply: Callable[[M], Awaitable[T]]) -> T:
        """After acceptance and under the lock, check again (the order may have changed since
        the validator ran), then apply."""
        await workflow.wait_condition(lambda: self._accepted)
        async with self._transition():
            self._refuse_now(self._refusal(message))
            return await shielded(apply(message))

    @staticmethod
    def _refuse_now(refusal: r.Refusal | None) -> None:
        if refusal is not None:
            raise refusal.error()

    # -- signals: fire and forget ----------------------------------------------------------

    @workflow.signal
    def cancel(self, request: CancelRequest | None = None) -> None:
        """Cancel the whole order, or given lines."""
        self._inbox.append(request or CancelRequest())

    @workflow.signal
    def consent(self, consent: ConsentSignal | None = None) -> None:
        """The customer accepts the shipping delay (FTC rule)."""
        self._inbox.append(consent or ConsentSignal())

    @workflow.signal
    def check_now(self, request: CheckNow | None = None) -> None:
        """Ask the allocator to look at this order again."""
        self._inbox.append(request or CheckNow())

    @workflow.signal
    def set_priority(self, change: PriorityChange) -> None:
        """Serve this order as another tier from now on."""
        self._inbox.append(change)

    @workflow.signal(dynamic=True)
    def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """A signal name this workflow does not have (a typo: `setpriority`)."""
        self._refuse_unknown(name)

    def _refuse_unknown(self, name: str) -> None:
        known = ", ".join(sorted(SIGNAL_NAMES.values()))
        refusal = r.Refusal(
            r.UNKNOWN_MESSAGE,
            f"no signal {name!r}: the order takes {known} (and allotment from the allocator)",
            {"name": name},
        )
        self._inbox.append(RefusedMessage(name, refusal))

    async def _serve(self, message: ServiceMessage | RefusedMessage) -> None:
        """A signal from the inbox (the caller holds the lock): applied, or refused on the
        record."""
        if not patched(ANSWER_EVERY_MESSAGE):
            await self._serve_as_before(message)
            return
        if isinstance(message, RefusedMessage):
            await self._record_refusal(message.name, message.refusal)
            return
        refusal = self._refusal(message)
        if refusal is not None:
            await self._record_refusal(SIGNAL_NAMES[type(message)], refusal)
            return
        match message:
            case CancelRequest():
                await self._cancel(message)
            case ConsentSignal():
                await self._consent(message)
            case PriorityChange():
                await self._change_priority(message)
            case CheckNow():
                await self._check(message)

    def _refusal(self, message: Message) -> r.Refusal | None:
        """Why `message` cannot be taken now, or None: unreadable, the order ended, or what
        the message itself asks cannot be done."""
        return self._unreadable(message) or self._ended() or self._why_not(message)

    def _why_not(self, message: Message) -> r.Refusal | None:
        match message:
            case CancelRequest():
                return self._why_not_cancel(message)
            case ConsentSignal():
                return self._why_not_consent(message)
            case PriorityChange():
                return self._why_not_priority(message)
            case CheckNow():
                return self._why_not_check(message)
        return None

    async def _record_refusal(self, name: str, refusal: r.Refusal) -> None:
        step = self._step("refused")
        detail = f"{name} not applied ({refusal.type}): {refusal.message}"
        self._note("message refused", detail)
        await call(
            c.RAISE_EXCEPTION,
            c.ExceptionReport(
                key=self._key(step),
                order_id=self._order.order_id,
                kind="message_refused",
                severity=c.Severity.MEDIUM,
                detail=detail,
            ),
        )

    # -- why a message cannot be taken -----------------------------------------------------

    def _why_not_cancel(self, request: CancelRequest) -> r.Refusal | None:
        try:
            plan = self._book.plan_cancel(request.lines)
        except BookError as err:
            details = {"field": "lines", "line_id": getattr(err, "line_id", None)}
            return r.Refusal(type(err).__name__, str(err), details)
        if not plan.parts:
            return r.Refusal(
                r.NOTHING_TO_CANCEL,
                f"order {self._order.order_id} has nothing left to cancel: every unit not "
                "cancelled is shipped or with fulfilment",
            )
        return None

    def _why_not_consent(self, consent: ConsentSignal) -> r.Refusal | None:
        after = record_consent(self._schedule, self._policy, workflow.now(), consent.until)
        if after.ftc == self._schedule.ftc:
            return r.Refusal(
                r.NOTHING_TO_CONSENT,
                f"order {self._order.order_id} has nothing to consent to (FTC state "
                f"{self._schedule.ftc.state.value}): no delay notice awaits an answer, or its "
                "cancel is already due",
                {"ftc_state": self._schedule.ftc.state.value},
            )
        return None

    def _why_not_priority(self, change: PriorityChange) -> r.Refusal | None:
        if change.tier == self._tier:
            return r.Refusal(
                r.NOTHING_TO_CHANGE,
                f"order {self._order.order_id} is already served as {change.tier}",
                {"field": "tier", "value": change.tier},
            )
        known = sorted({*self._policy.tier_ranks, STANDARD_TIER, self._order.customer.tier})
        if self._accepted and change.tier not in known:  # the site's policy comes on acceptance
            return r.Refusal(
                r.UNKNOWN_TIER,
                f"unknown tier {change.tier!r}: this site knows {', '.join(known)}",
                {"field": "tier", "value": change.tier, "known": known},
            )
        return None

    def _why_not_check(self, request: CheckNow) -> r.Refusal | None:
        if self._accepted and self._book.backordered_units == 0:
            return r.Refusal(
                r.NOTHING_TO_CHECK,
                f"order {self._order.order_id} has no unit waiting for stock: every unit is "
                "in a shipment or cancelled",
            )
        return None

    @staticmethod
    def _unreadable(message: Message) -> r.Refusal | None:
        problems = contract_problems(message)
        return None if problems is None else r.invalid(type(message).__name__, problems)

    def _ended(self) -> r.Refusal | None:
        if not self._book.settled:
            return None
        return r.Refusal(
            r.ORDER_ENDED,
            f"order {self._order.order_id} has ended ({self._status.value}): nothing is left "
            "to change",
        )

    # -- what each message does ------------------------------------------------------------

    async def _consent(self, consent: ConsentSignal) -> ConsentResult:
        self._schedule = record_consent(self._schedule, self._policy, workflow.now(), consent.until)
        ftc = self._schedule.ftc
        self._note("consent", f"recorded (via {consent.channel}, until {ftc.ship_by})")
        await self._changed()
        return ConsentResult(ftc_state=ftc.state, consented_until=ftc.ship_by)

    async def _change_priority(self, change: PriorityChange) -> PriorityResult:
        before = self._tier
        self._note("priority", f"{before} -> {change.tier}: {change.reason}")
        self._tier = change.tier
        await self._update_demand()
        await self._changed()
        return PriorityResult(previous_tier=before, tier=change.tier)

    async def _check(self, request: CheckNow) -> CheckResult:
        await self._request_check(request.reason)
        return CheckResult(
            skus=tuple(self._book.waiting_skus), backordered_units=self._book.backordered_units
        )

    async def _serve_as_before(self, message: ServiceMessage | RefusedMessage) -> None:
        """How signals were handled before every message was answered (for replays)."""
        if isinstance(message, RefusedMessage) or contract_problems(message) is not None:
            return  # such a signal never reached the handlers then: the SDK dropped it
        match message:
            case CancelRequest():
                try:
                    await self._cancel(message)
                except BookError as err:
                    self._note("cancel refused", f"{err} (from {message.requested_by})")
            case ConsentSignal():
                before = self._schedule.ftc
                self._schedule = record_consent(
                    self._schedule, self._policy, workflow.now(), message.until
                )
                taken = (
                    "recorded" if self._schedule.ftc != before else "ignored: nothing to consent to"
                )
                self._note("consent", f"{taken} (via {message.channel}, until {message.until})")
                await self._changed()
            case CheckNow():
                await self._request_check(message.reason)
            case PriorityChange():
                self._note("priority", f"{self._tier} -> {message.tier}: {message.reason}")
                self._tier = message.tier
                await self._update_demand()
                await self._changed()
