"""The shipments handed to fulfilment: the current state of each, in PostgreSQL.

Fulfilment reads `shipments` (ready and transfer ones go out, future ones are announced,
cancelled ones withdrawn), each under the number it ships by (`order_number`: a split's own,
or the order's) and priced at `amount_due`; where it reports back, shipped and delivered ones
carry its carrier, tracking number and dates. Every applied `publish_shipment` key is recorded in
`shipment_events` in the same transaction as the upsert, so a retry does nothing twice and the
table doubles as the shipment's history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import INVALID_REQUEST, PUBLISH_SHIPMENT, Empty, ShipmentRequest
from domain.order_book import ShipmentStatus

S = ShipmentStatus
_NEXT: dict[ShipmentStatus, tuple[ShipmentStatus, ...]] = {
    S.FUTURE: tuple(S),
    S.READY: (S.READY, S.SHIPPED, S.CANCELLED),
    S.TRANSFER: (S.TRANSFER, S.SHIPPED, S.CANCELLED),
    S.SHIPPED: (S.SHIPPED, S.DELIVERED),
    S.DELIVERED: (S.DELIVERED,),
    S.CANCELLED: (S.CANCELLED,),
}
"""The states a shipment may move to. A ready or transfer shipment is fulfilment's: it stays
as it is (a short pick takes units out of it, or all of them: cancelled) until fulfilment
confirms it shipped; a shipped one can only be delivered; cancelled and delivered are final."""
_MOVES = [(a.value, b.value) for a, nexts in _NEXT.items() for b in nexts]


class FulfilmentActivities:
    """`publish_shipment`; shares the worker's connection pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    def activities(self) -> list[Callable[..., Any]]:
        return [self.publish_shipment]

    @activity.defn(name=PUBLISH_SHIPMENT.name)
    async def publish_shipment(self, request: ShipmentRequest) -> Empty:
        """Upsert the shipment's current state, once per key.

        Refused (non-retryable `InvalidRequest`, nothing written): the key already applied to
        another state of the shipment (it would be silently lost otherwise), a shipment id of
        another order, or a move `_NEXT` does not allow (a ready shipment is fulfilment's until
        it reports; cancelled and delivered are final).
        """
        s = request.shipment
        activity.logger.info(
            "%s key=%s order=%s shipment=%s status=%s",
            PUBLISH_SHIPMENT.name,
            request.key,
            request.order_id,
            s.shipment_id,
            s.status,
        )
        async with self._pool.connection() as conn, conn.transaction():
            await write_shipment(conn, request)
        return Empty()


async def write_shipment(conn: AsyncConnection[Any], request: ShipmentRequest) -> None:
    """`publish_shipment`'s writes, in the caller's transaction (see there). Fulfilment always
    reads an `order_number` (the split's, else the order's own: the request's, or for a request
    made before it carried one, the read model's, else the order id) and an `amount_due` (the
    request's, else the shipment's amount)."""
    s = request.shipment
    payload = {"order_id": request.order_id, "shipment": s.model_dump(mode="json")}
    cur = await conn.execute(
        """INSERT INTO shipment_events (key, shipment_id, status, payload)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (key) DO NOTHING
           RETURNING key""",
        (request.key, s.shipment_id, s.status.value, Jsonb(payload)),
    )
    if await cur.fetchone() is None:
        cur = await conn.execute(
            "SELECT payload FROM shipment_events WHERE key = %s", (request.key,)
        )
        row = await cur.fetchone()
        if row is not None and row[0] != payload:
            raise _invalid(
                f"key {request.key} was applied to another state of shipment "
                f"{s.shipment_id}; a new state needs a new key"
            )
        return
    cur = await conn.execute(
        """INSERT INTO shipments (shipment_id, order_id, kind, status, location,
                                  destination, expected_date, amount, allotments,
                                  created_at, carrier, tracking_number, shipped_at,
                                  estimated_delivery, delivered_at, order_number,
                                  amount_due)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                   COALESCE(%s, (SELECT order_number FROM orders WHERE order_id = %s), %s),
                   %s)
           ON CONFLICT (shipment_id) DO UPDATE
              SET kind = EXCLUDED.kind,
                  status = EXCLUDED.status,
                  location = EXCLUDED.location,
                  destination = EXCLUDED.destination,
                  expected_date = EXCLUDED.expected_date,
                  amount = EXCLUDED.amount,
                  allotments = EXCLUDED.allotments,
                  carrier = EXCLUDED.carrier,
                  tracking_number = EXCLUDED.tracking_number,
                  shipped_at = EXCLUDED.shipped_at,
                  estimated_delivery = EXCLUDED.estimated_delivery,
                  delivered_at = EXCLUDED.delivered_at,
                  order_number = EXCLUDED.order_number,
                  amount_due = EXCLUDED.amount_due,
                  updated_at = now()
            WHERE shipments.order_id = EXCLUDED.order_id
              AND (shipments.status, EXCLUDED.status) IN (
                      SELECT * FROM unnest(%s::text[], %s::text[]))
           RETURNING shipment_id""",
        (
            s.shipment_id,
            request.order_id,
            s.kind.value,
            s.status.value,
            s.location,
            s.destination,
            s.expected_date,
            s.amount,
            Jsonb([a.model_dump(mode="json") for a in s.allotments]),
            s.created_at,
            s.carrier,
            s.tracking_number,
            s.shipped_at,
            s.estimated_delivery,
            s.delivered_at,
            s.order_number or request.order_number,
            request.order_id,
            request.order_id,
            s.amount if request.amount_due is None else request.amount_due,
            [a for a, _ in _MOVES],
            [b for _, b in _MOVES],
        ),
    )
    if await cur.fetchone() is None:
        cur = await conn.execute(
            "SELECT order_id, status FROM shipments WHERE shipment_id = %s",
            (s.shipment_id,),
        )
        order_id, status = await cur.fetchone() or (None, None)
        raise _invalid(
            f"shipment {s.shipment_id} of order {order_id} is {status}: "
            f"cannot make it {s.status.value} for order {request.order_id}"
        )


def _invalid(message: str) -> ApplicationError:
    activity.logger.warning("%s refused: %s", PUBLISH_SHIPMENT.name, message)
    return ApplicationError(message, type=INVALID_REQUEST, non_retryable=True)
