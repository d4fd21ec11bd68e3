"""`apply_order_effects`: one transition of an order, written to PostgreSQL in one transaction.

A release used to write its shipment, its demand, its notice and its read-model row in four
activities, one after another: four round trips to Temporal and four to PostgreSQL, and a
moment where a notice said what the shipments table did not yet show. Here the same writes
(each still once per key, with the same refusals) commit together; what must follow a commit
(waking notice delivery, asking the allocator about stock free for the demand) follows it.

A release's captures ride along (`lean-history-2`): made after the commit, each
under its own key, so a retry writes nothing twice and the gateway captures once. A decline is
an outcome, not a failure: the workflow records it and calls an operator, as it did when the
capture was a step of its own. A gateway that keeps failing is retried for as long as a payment
step was (CAPTURE_PATIENCE), then reported the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import PaymentRequest, PaymentResult
from activities.effect_batch import APPLY_ORDER_EFFECTS, CaptureOutcome, EffectBatch, EffectOutcome
from activities.fulfilment import write_shipment
from activities.fulfilment_ledger import ship_stock, short_pick_stock
from activities.inventory import InventoryActivities
from activities.notices import NoticeActivities
from activities.read_model import ReadModelActivities


class OrderEffectActivities:
    """`apply_order_effects`, on the worker's pool and the activities whose writes it joins."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        inventory: InventoryActivities,
        notices: NoticeActivities,
        read_model: ReadModelActivities,
        capture: Callable[[PaymentRequest], Awaitable[PaymentResult]],
    ) -> None:
        self._pool = pool
        self._inventory = inventory
        self._notices = notices
        self._read_model = read_model
        self._capture = capture

    def activities(self) -> list[Callable[..., Any]]:
        return [self.apply_order_effects]

    @activity.defn(name=APPLY_ORDER_EFFECTS.name)
    async def apply_order_effects(self, batch: EffectBatch) -> EffectOutcome:
        """Shipments, demand, the stock of shipments fulfilment confirmed or short-picked,
        notices and records of the batch, in that order, in one transaction; nothing is
        written if any part is refused (`InvalidRequest`). Then the captures, each one's
        outcome reported."""
        activity.logger.info(
            "%s order=%s: %d shipments, %d demand, %d notices (%s), %d records, %d captures",
            APPLY_ORDER_EFFECTS.name,
            batch.order_id,
            len(batch.shipments),
            len(batch.demand),
            len(batch.notices),
            ", ".join(n.kind for n in batch.notices),
            len(batch.records),
            len(batch.captures),
        )
        async with self._pool.connection() as conn:
            async with conn.transaction():
                for shipment in batch.shipments:
                    await write_shipment(conn, shipment)
                for demand in batch.demand:
                    await self._inventory.write_demand(conn, demand)
                for gone in batch.shipped_stock:  # after demand: the lock order of a pass
                    await ship_stock(
                        conn, gone.key, gone.order_id, gone.shipment_id, gone.allotments
                    )
                for lost in batch.short_picked_stock:
                    await short_pick_stock(
                        conn, lost.key, lost.order_id, lost.shipment_id, lost.allotments
                    )
                for notice in batch.notices:
                    await self._notices.write_notice(conn, notice)
                for record in batch.records:
                    await self._read_model.write_record(conn, record)
            if batch.demand:
                await self._inventory.after_demand(conn, batch.demand[-1])
        if batch.notices:  # one wake reads every notice waiting
            await self._notices.wake_delivery(batch.notices[-1].key)
        return EffectOutcome(captures=tuple([await self._captured(r) for r in batch.captures]))

    async def _captured(self, request: PaymentRequest) -> CaptureOutcome:
        """One capture's outcome; a gateway error is raised (Temporal retries the whole batch,
        whose writes are then no-ops) until CAPTURE_PATIENCE has passed since the first try."""
        try:
            return CaptureOutcome(key=request.key, result=await self._capture(request))
        except ApplicationError as err:
            if not err.non_retryable:
                raise
            return CaptureOutcome(key=request.key, failure=str(err))
        except Exception as err:
            info = activity.info()
            if datetime.now(UTC) - info.scheduled_time < CAPTURE_PATIENCE:
                raise
            failure = f"{err} (gave up after {info.attempt} tries)"
            return CaptureOutcome(key=request.key, failure=failure)


CAPTURE_PATIENCE = timedelta(minutes=30)
"""How long a capture keeps being tried before an operator is called: about as long as a
payment step's own retries (workflows/calls.py PAYMENT)."""
