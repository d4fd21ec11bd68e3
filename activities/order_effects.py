"""`apply_order_effects`: one transition of an order, written to PostgreSQL in one transaction.

A release used to write its shipment, its demand, its notice and its read-model row in four
activities, one after another: four round trips to Temporal and four to PostgreSQL, and a
moment where a notice said what the shipments table did not yet show. Here the same writes
(each still once per key, with the same refusals) commit together; what must follow a commit
(waking notice delivery, asking the allocator about stock free for the demand) follows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio import activity

from activities.contracts import Empty
from activities.effect_batch import APPLY_ORDER_EFFECTS, EffectBatch
from activities.fulfilment import write_shipment
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
    ) -> None:
        self._pool = pool
        self._inventory = inventory
        self._notices = notices
        self._read_model = read_model

    def activities(self) -> list[Callable[..., Any]]:
        return [self.apply_order_effects]

    @activity.defn(name=APPLY_ORDER_EFFECTS.name)
    async def apply_order_effects(self, batch: EffectBatch) -> Empty:
        """Shipments, demand, notices and records of the batch, in that order, in one
        transaction; nothing is written if any part is refused (`InvalidRequest`)."""
        activity.logger.info(
            "%s order=%s: %d shipments, %d demand, %d notices (%s), %d records",
            APPLY_ORDER_EFFECTS.name,
            batch.order_id,
            len(batch.shipments),
            len(batch.demand),
            len(batch.notices),
            ", ".join(n.kind for n in batch.notices),
            len(batch.records),
        )
        async with self._pool.connection() as conn:
            async with conn.transaction():
                for shipment in batch.shipments:
                    await write_shipment(conn, shipment)
                for demand in batch.demand:
                    await self._inventory.write_demand(conn, demand)
                for notice in batch.notices:
                    await self._notices.write_notice(conn, notice)
                for record in batch.records:
                    await self._read_model.write_record(conn, record)
            if batch.demand:
                await self._inventory.after_demand(conn, batch.demand[-1])
        if batch.notices:  # one wake reads every notice waiting
            await self._notices.wake_delivery(batch.notices[-1].key)
        return Empty()
