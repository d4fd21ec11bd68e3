"""What fulfilment tells the order about the shipments it was handed, where the site's
fulfilment reports back (`fulfilment_reports = "shipped"`): `shipped` (the units leave the
ledger, payment taken at shipment is captured, the customer gets the tracking number),
`short_pick` (units the picker did not find go back to backorder and are written off) and
`delivered`. One update, `report_fulfilment`, so the warehouse system gets an answer or a typed
refusal; its validator refuses before anything is recorded, the handler checks again under
the lock (the order may have changed since).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows import refusals as r
from workflows.order_views import notice_items
from workflows.shipping import Shipping

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.fulfilment import (
        FulfilmentRefused,
        FulfilmentReport,
        ShipmentDelivered,
        ShipmentShipped,
        ShortPick,
        apply_report,
    )
    from domain.order_book import BookedShipment
    from domain.planner import Allotment, StockSource
    from domain.schedule import record_still_waiting
    from workflows.calls import shielded
    from workflows.messages import FulfilmentAnswer


class FulfilmentSteps(Shipping):
    @workflow.update(name="report_fulfilment")
    async def report_fulfilment(self, report: FulfilmentReport) -> FulfilmentAnswer:
        """A shipment shipped, was short-picked or was delivered; answers the shipment as it
        is now and the order's status (`changed` false: the same report came before)."""
        await workflow.wait_condition(lambda: self._accepted)
        async with self._transition():
            refusal = self._report_refusal(report)
            if refusal is not None:
                raise refusal.error()
            return await shielded(self._apply_report(report))

    @report_fulfilment.validator
    def _validate_report(self, report: FulfilmentReport) -> None:
        refusal = self._report_refusal(report)
        if refusal is not None:
            raise refusal.error()

    def _report_refusal(self, report: FulfilmentReport) -> r.Refusal | None:
        if not self._reports():
            return r.Refusal(
                r.REPORTS_NOT_TAKEN,
                f"order {self._order.order_id} was accepted under fulfilment_reports = 'none': "
                "a ready shipment counts as shipped, and fulfilment reports are not taken",
                {"field": "type", "shipment_id": report.shipment_id},
            )
        try:
            apply_report(self._book, report)
        except FulfilmentRefused as err:
            return r.Refusal(r.REPORT_REFUSED, str(err), {"shipment_id": report.shipment_id})
        return None

    async def _apply_report(self, report: FulfilmentReport) -> FulfilmentAnswer:
        outcome = apply_report(self._book, report)
        if outcome.changed:
            self._book = outcome.book
            step = self._step(f"fulfilment-{report.type}")
            shipment = self._book.shipment(report.shipment_id)
            if isinstance(report, ShipmentShipped):
                await self._shipped(shipment, step)
            elif isinstance(report, ShortPick):
                await self._short_picked(shipment, outcome.missing, step)
            elif isinstance(report, ShipmentDelivered):
                self._note("delivered", f"{shipment.shipment_id} delivered")
                await self._publish(shipment, step)
            await self._changed()
        return FulfilmentAnswer(
            shipment=self._book.shipment(report.shipment_id),
            changed=outcome.changed,
            order_status=self._status,
        )

    async def _shipped(self, shipment: BookedShipment, step: str) -> None:
        """The units left: out of the ledger, captured (payment at shipment), and the customer
        told with the tracking number."""
        self._note(
            "shipped",
            f"{shipment.shipment_id} by {shipment.carrier}, tracking {shipment.tracking_number}",
        )
        self._pending.shipped_stock.append(
            c.ShipmentStock(
                key=self._key("ship-stock", shipment.shipment_id),
                order_id=self._order.order_id,
                shipment_id=shipment.shipment_id,
                allotments=on_hand(shipment.allotments),
            )
        )
        await self._publish(shipment, step)
        await self._capture(shipment)
        rest = self._book.unshipped_units or not self._book.fulfilled
        kind = c.NoticeKind.PARTLY_SHIPPED if rest else c.NoticeKind.SHIPPED
        items = notice_items((a.sku, a.quantity) for a in shipment.allotments)
        await self._notify(
            kind,
            f"{step}/shipped",
            items,
            expected_ship_date=self._schedule.expected_ship_date if rest else None,
            carrier=shipment.carrier,
            tracking_number=shipment.tracking_number,
            estimated_delivery=shipment.estimated_delivery,
            split_number=shipment.order_number,
        )

    async def _short_picked(
        self, shipment: BookedShipment, missing: tuple[Allotment, ...], step: str
    ) -> None:
        """Units the picker did not find: written off the ledger (they are not there), back
        on backorder with a fresh expected date, and the customer told."""
        units = sum(a.quantity for a in missing)
        self._note("short pick", f"{shipment.shipment_id}: {units} units not found, backordered")
        self._pending.short_picked_stock.append(
            c.ShipmentStock(
                key=self._key(step, "short-pick", shipment.shipment_id),
                order_id=self._order.order_id,
                shipment_id=shipment.shipment_id,
                allotments=on_hand(missing),
            )
        )
        await self._publish(shipment, step)
        soonest = workflow.now().date() + timedelta(days=self._policy.default_backorder_days)
        self._acceptance_eta = max(self._acceptance_eta or soonest, soonest)
        if not self._schedule.backordered:  # the timers that guard waiting units run again
            self._schedule = record_still_waiting(self._schedule)
        await self._update_demand()
        items = notice_items((a.sku, a.quantity) for a in missing)
        await self._notify(
            c.NoticeKind.SHORT_PICKED,
            f"{step}/short-picked",
            items,
            expected_ship_date=self._acceptance_eta,
        )


def on_hand(allotments: tuple[Allotment, ...]) -> tuple[Allotment, ...]:
    """The allotments as the ledger holds them once they are with fulfilment: units of a
    receipt that arrived are stock on hand now (the book keeps them as they were promised)."""
    return tuple(
        a
        if a.source is StockSource.CURRENT
        else a.model_copy(
            update={"source": StockSource.CURRENT, "receipt_id": None, "expected_date": None}
        )
        for a in allotments
    )
