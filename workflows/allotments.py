"""Allotments and receipts: stock the allocator reserved for the order ships (or goes back when
the order has moved on), and news of awaited receipts ships the shipments waiting on them or
sends them back to backorder."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from temporalio import workflow

from workflows.order_views import cancelled_in
from workflows.patches import NUDGE_WHEN_FREED, RECEIPT_NEWS_PER_SHIPMENT, patched
from workflows.shipping import Shipping

with workflow.unsafe.imports_passed_through():
    from domain.order_book import BookedShipment, StaleRelease
    from domain.planner import OrderRelease, ParentStatus
    from domain.policy import SplitNumbering
    from domain.split_numbers import number_release
    from workflows.messages import AllotmentSignal, ReceiptChange, ReceiptStatus

PASSES_KEPT = 500


class Allotments(Shipping):
    async def _allot(self, signal: AllotmentSignal) -> None:
        if signal.pass_id in self._passes:
            self._note("allotment ignored", f"pass {signal.pass_id} was already applied")
            return
        self._passes = [*self._passes, signal.pass_id][-PASSES_KEPT:]
        if signal.release is not None:
            await self._release(signal.release, f"pass-{signal.pass_id}")
        for change in signal.receipts:
            await self._receipt(change, signal.pass_id)

    async def _release(self, release: OrderRelease, step: str) -> None:
        before = self._book
        try:
            self._book = before.release(release, workflow.now())
        except StaleRelease as err:
            self._note("allotment refused", f"{step}: {err}; its stock goes back")
            await self._free(release.allotments, f"{step}/refused")
            if patched(NUDGE_WHEN_FREED):
                await self._update_demand()  # the allocator's index may have drifted
            return
        new = self._book.shipments[len(before.shipments) :]
        if self._policy.split_numbering is not SplitNumbering.NONE:
            # the split's number travels in the shipment (book, fulfilment, notice payloads):
            # no new command, so no patch; with `none` (every order before) nothing changes
            new = number_release(
                self._order.order_number, self._policy.split_numbering, before, new
            )
            self._book = self._book.model_copy(
                update={"shipments": before.shipments + new}
            )._checked()
        self._note(
            "allotment",
            f"{step}: {sum(o.released for o in release.lines)} units in "
            f"{len(new)} shipments; {self._book.backordered_units} still backordered",
        )
        if self._policy.void_and_reauth_on_release and (
            release.parent_status is ParentStatus.REASSIGNED
        ):
            value = sum((s.amount for s in new), Decimal(0))
            await self._reauthorise(value, f"{step}/reauthorise")
        await self._ship(new, step)
        amount, dropped = cancelled_in(self._book, release.lines)
        if dropped:
            await self._give_back(amount, f"{step}/dropped")
        await self._update_demand()
        await self._changed()

    async def _receipt(self, change: ReceiptChange, pass_id: str) -> None:
        awaiting = [
            s
            for s in self._book.future_shipments
            if any(a.receipt_id == change.receipt_id for a in s.allotments)
        ]
        if not awaiting:
            self._note("receipt", f"{change.receipt_id} {change.status.value}: no shipment waits")
            return
        step = f"receipt-{change.receipt_id}-{change.status.value}"
        per_shipment = patched(RECEIPT_NEWS_PER_SHIPMENT)
        if per_shipment:
            step = f"pass-{pass_id}/{step}"
        if change.status is ReceiptStatus.ARRIVED:
            if per_shipment:
                self._arrived.update(f"{s.shipment_id}/{change.receipt_id}" for s in awaiting)
            else:
                self._arrived.add(change.receipt_id)
            for s in awaiting:
                if all(self._has_arrived(s, a.receipt_id) for a in s.allotments):
                    self._book = self._book.receipt_arrived(s.shipment_id)
                    self._note("receipt", f"{change.receipt_id} arrived: {s.shipment_id} ships")
                    await self._ship([self._book.shipment(s.shipment_id)], step)
        else:
            # the date promised at acceptance may be past by now: wait the policy's default
            soonest = workflow.now().date() + timedelta(days=self._policy.default_backorder_days)
            self._acceptance_eta = max(self._acceptance_eta or soonest, soonest)
            for s in awaiting:
                self._book = self._book.back_to_backorder(s.shipment_id)
                self._note(
                    "receipt",
                    f"{change.receipt_id} {change.status.value}: {s.shipment_id} waits again",
                )
                await self._free(s.allotments, f"{step}/{s.shipment_id}")
                await self._publish(self._book.shipment(s.shipment_id), step)
            await self._update_demand()
        await self._changed()

    def _has_arrived(self, shipment: BookedShipment, receipt_id: str | None) -> bool:
        """Whether the receipt arrived for this shipment (plain receipt ids: news recorded
        before `receipt-news-per-shipment`, which counted for every shipment)."""
        return (
            receipt_id in self._arrived or f"{shipment.shipment_id}/{receipt_id}" in self._arrived
        )
