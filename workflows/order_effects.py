"""The order's effects outside the workflow: stock, shipments, demand, notices, allocator checks,
the read model and what operators see. Each is an idempotent activity keyed by workflow id and
step, run after the pure order book, schedule and payment book have taken the change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from typing import Any

from temporalio import workflow

from workflows import search_attributes as sa
from workflows.order_state import OrderState, PendingCapture, PendingEffects
from workflows.order_views import current_details, search_attributes, status_of
from workflows.patches import NUDGE_WHEN_FREED, lean, patched

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from activities.effect_batch import APPLY_ORDER_EFFECTS, CaptureOutcome
    from domain.order_book import BookedShipment
    from domain.planner import Allotment
    from domain.policy import PaymentTiming
    from domain.schedule import (
        record_awaiting_capture,
        record_cleared,
        record_expected_ship_date,
    )
    from workflows.calls import call, run_step, shielded
    from workflows.messages import BackorderStatus, OrderRecord


class OrderEffects(OrderState):
    async def _free(self, allotments: Iterable[Allotment], step: str) -> None:
        """Release the stock, and offer it to the orders next in line at once (not at the next
        sweep)."""
        freed = tuple(allotments)
        if freed:
            await self._stock(c.RELEASE_STOCK, freed, step, "release-stock")
            if patched(NUDGE_WHEN_FREED):
                skus = tuple(sorted({a.sku for a in freed}))
                await self._request_check(f"stock freed ({step})", skus)

    async def _stock(
        self,
        contract: c.ActivityContract[c.StockReservation, c.Empty],
        allotments: tuple[Allotment, ...],
        *key: str,
    ) -> None:
        reservation = c.StockReservation(
            key=self._key(*key), order_id=self._order.order_id, allotments=allotments
        )
        await call(contract, reservation)

    def _transition(self) -> AbstractAsyncContextManager[None]:
        """One change of the order at a time (signals, updates, timers and the main loop take
        turns), and its writes applied before the next may start."""
        return self._locked_transition()

    @asynccontextmanager
    async def _locked_transition(self) -> AsyncIterator[None]:
        async with self._lock:
            yield
            await shielded(self.flush_effects())

    async def flush_effects(self) -> None:
        """Apply the writes waiting since the last activity, as one (lean-history); `call`
        asks for this before any other step, so writes keep their order with the ledger's."""
        if not self._pending:
            return
        pending, self._pending = self._pending, PendingEffects()
        outcome = await call(APPLY_ORDER_EFFECTS, pending.batch(self._order.order_id))
        if pending.captures:
            await self._record_captures(pending.captures, outcome.captures)

    async def _record_captures(
        self, pending: list[PendingCapture], outcomes: tuple[CaptureOutcome, ...]
    ) -> None:
        """Record what became of the captures made with the writes (see PaymentSteps)."""
        raise NotImplementedError

    async def _write(self, waiting: list[Any], step: str, request: Any) -> None:
        """One write of the transition: kept in `waiting` for the transition's one write step
        (lean-history), or, in runs from before, the activity `step` of its own."""
        if lean():
            waiting.append(request)
        else:
            await run_step(step, request, None)

    async def _publish(self, shipment: BookedShipment, step: str) -> None:
        """Hand fulfilment the shipment's state, with the order's number (for a shipment that
        has no split number of its own) and what it is priced at: nothing more to pay for
        goods charged at order."""
        payment = self._payment
        charged = payment is not None and payment.timing is PaymentTiming.AT_ORDER
        request = c.ShipmentRequest(
            key=self._key(step, "shipment", shipment.shipment_id),
            order_id=self._order.order_id,
            shipment=shipment,
            order_number=self._order.order_number,
            amount_due=Decimal(0) if charged else None,
        )
        await self._write(self._pending.shipments, c.PUBLISH_SHIPMENT.name, request)

    async def _update_demand(self) -> None:
        """What still waits, for the allocator (None once nothing does)."""
        update = c.DemandUpdate(
            key=self._key(self._step("demand")),
            order_id=self._order.order_id,
            backorder=self._book.open_backorder(self._order, self._tier),
            site=self._site,
        )
        await self._write(self._pending.demand, c.UPDATE_DEMAND.name, update)

    async def _notify(
        self,
        kind: c.NoticeKind,
        step: str,
        items: tuple[c.NoticeItem, ...],
        **details: object,
    ) -> None:
        order = self._order
        notice = c.Notice.model_validate(
            {
                "key": self._key(step),
                "kind": kind,
                "order_id": order.order_id,
                "order_number": order.order_number,
                "email": order.customer.email,
                "items": items,
                "currency": order.currency,
                **details,
            }
        )
        await self._write(self._pending.notices, c.SEND_NOTICE.name, notice)

    async def _request_check(self, reason: str, skus: tuple[str, ...] = ()) -> None:
        await call(
            c.REQUEST_CHECK,
            c.CheckRequest(
                order_id=self._order.order_id, reason=reason, site=self._site, skus=skus
            ),
        )
        self._note("check", f"allocator asked to re-check: {reason}")

    async def _changed(self, *, accepted: bool = False) -> None:
        """After any change: the expected date, timers, status, search attributes, read model
        (written on acceptance and on every change of status)."""
        book = self._book
        dates = [s.expected_date for s in book.future_shipments if s.expected_date]
        if book.backordered_units and self._acceptance_eta is not None:
            dates.append(self._acceptance_eta)
        expected = max(dates, default=None)
        if expected != self._schedule.expected_ship_date:
            self._schedule = record_expected_ship_date(self._schedule, expected)
        if book.settled and self._schedule.backordered:
            self._schedule = record_cleared(self._schedule)
        awaiting = self._reports() and book.settled and not book.fulfilled
        if awaiting != self._schedule.awaiting_capture:  # the hold must outlast fulfilment
            self._schedule = record_awaiting_capture(self._schedule, awaiting)
        status = status_of(book, self._reports())
        moved = status is not self._status
        if moved or accepted:
            self._status, self._status_since = status, workflow.now()
        self._publish_attributes()
        if moved or accepted:
            await self._record()

    def _publish_attributes(self) -> None:
        """Search attributes and current details: what operators see in the Temporal UI."""
        attributes = search_attributes(
            self._order, self._book, self._status, self._schedule, self._tier
        )
        if self._exceptions.as_of is not None:  # news came (open-exceptions-news)
            attributes.append(sa.OPEN_EXCEPTIONS.value_set(self._exceptions.open))
        if lean():  # only what changed: each upsert is a history event
            now = workflow.info().typed_search_attributes
            attributes = [a for a in attributes if now.get(a.key) != a.value]
        if attributes:
            workflow.upsert_search_attributes(attributes)
        workflow.set_current_details(
            current_details(
                self._order,
                self._book,
                self._status,
                self._status_since,
                self._tier,
                self._schedule,
                self._policy,
                self._payment,
                accepted=self._accepted,
                log=self._log,
                exceptions=self._exceptions,
            )
        )

    async def _record(self) -> None:
        """The read model's row: the whole order the first time in a run, then the status."""
        record = OrderRecord(
            order=None if self._row_written else self._order,
            order_id=self._order.order_id,
            workflow_id=workflow.info().workflow_id,
            status=self._status,
            status_since=self._status_since,
            site=self._site,
            tier=self._tier,
            cancel_reason=(
                self._cancel_reason if self._status is BackorderStatus.CANCELLED else None
            ),
        )
        self._row_written = True
        await self._write(self._pending.records, "record_order", record)
