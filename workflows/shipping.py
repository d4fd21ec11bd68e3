"""Shipping what the order was released: the one way out for stock, whether it was in hand at
acceptance, allotted by the allocator later or waited for on a receipt."""

from __future__ import annotations

from collections.abc import Iterable

from temporalio import workflow

from workflows.order_views import notice_items
from workflows.payment_steps import PaymentSteps

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.order_book import BookedShipment, ShipmentStatus


class Shipping(PaymentSteps):
    async def _ship(self, shipments: Iterable[BookedShipment], step: str) -> None:
        """Hand new or newly ready shipments to fulfilment, capture them, tell the customer.
        Where fulfilment reports back, capture and notice wait for its `shipped`."""
        going = []
        for s in shipments:
            await self._publish(s, step)
            if s.status in (ShipmentStatus.READY, ShipmentStatus.TRANSFER) and not self._reports():
                await self._capture(s)
                going.append(s)
        if going:
            kind = (
                c.NoticeKind.PARTLY_SHIPPED if self._book.unshipped_units else c.NoticeKind.SHIPPED
            )
            items = notice_items((a.sku, a.quantity) for s in going for a in s.allotments)
            # one split per notice: a release's shipments share their number (none at acceptance)
            numbers = {s.order_number for s in going}
            split = numbers.pop() if len(numbers) == 1 else None
            details = {} if split is None else {"split_number": split}
            await self._notify(kind, f"{step}/shipped", items, **details)
