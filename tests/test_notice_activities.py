"""The notice outbox, the exception queue and the shipments table, against real PostgreSQL:
each written once per idempotency key, so a retried activity has no second effect."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import (
    INVALID_REQUEST,
    ExceptionReport,
    Notice,
    NoticeItem,
    NoticeKind,
    Severity,
    ShipmentRequest,
)
from activities.fulfilment import FulfilmentActivities
from activities.notices import NoticeActivities
from domain.order_book import BookedShipment, ShipmentStatus
from domain.planner import Allotment, ShipmentKind
from domain.planner.plan import StockSource

T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


def new_order_id() -> str:
    return f"N-{uuid.uuid4().hex[:10]}"


async def fetch(dsn: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(sql.encode(), params)
        return list(await cur.fetchall())


async def test_a_retried_notice_is_written_once_with_its_payload(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    order_id = new_order_id()
    notice = Notice(
        key=f"backorder-{order_id}/notice/on_backorder",
        kind=NoticeKind.ON_BACKORDER,
        order_id=order_id,
        order_number="1001",
        email="ann@example.com",
        items=(NoticeItem(sku="KTP", quantity=2),),
        expected_ship_date=dt.date(2026, 12, 1),
        amount=Decimal("50.00"),
        currency="USD",
    )
    send = NoticeActivities(pg_pool).send_notice
    env = ActivityEnvironment()
    await env.run(send, notice)
    await env.run(send, notice)  # a retry
    # a replay that (wrongly) changed the notice keeps the first one
    await env.run(send, notice.model_copy(update={"email": "bob@example.com"}))

    rows = await fetch(
        pg_dsn,
        "SELECT key, kind, payload, delivered_at, recipient, subject, body, status, attempts"
        " FROM notices WHERE order_id = %s",
        order_id,
    )
    assert len(rows) == 1
    key, kind, payload, delivered_at, recipient, subject, body, status, attempts = rows[0]
    assert (key, kind, delivered_at) == (notice.key, "on_backorder", None)
    assert Notice.model_validate(payload) == notice
    assert payload["items"] == [{"sku": "KTP", "quantity": 2}]
    # rendered when written: the outbox holds what the customer gets
    assert (recipient, status, attempts) == ("ann@example.com", "pending", 0)
    assert "1001" in subject
    assert "KTP" in body and "2" in body


async def test_a_written_notice_wakes_delivery_and_a_lost_wake_up_loses_nothing(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    order_id = new_order_id()
    woken: list[str] = []

    async def wake() -> None:
        woken.append(order_id)

    async def unreachable() -> None:
        raise ConnectionError("Temporal is down")

    def notice(step: str) -> Notice:
        return Notice(
            key=f"backorder-{order_id}/{step}",
            kind=NoticeKind.STILL_WAITING,
            order_id=order_id,
            order_number="1002",
            email="ann@example.com",
            items=(NoticeItem(sku="KTP", quantity=1),),
        )

    env = ActivityEnvironment()
    await env.run(NoticeActivities(pg_pool, wake=wake).send_notice, notice("a"))
    await env.run(NoticeActivities(pg_pool, wake=unreachable).send_notice, notice("b"))

    assert woken == [order_id]
    rows = await fetch(
        pg_dsn, "SELECT key, status FROM notices WHERE order_id = %s ORDER BY key", order_id
    )
    assert rows == [(f"backorder-{order_id}/a", "pending"), (f"backorder-{order_id}/b", "pending")]


async def test_an_exception_is_queued_once_and_open(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    order_id = new_order_id()
    report = ExceptionReport(
        key=f"backorder-{order_id}/exception/ftc",
        order_id=order_id,
        kind="ftc_consent_missing",
        severity=Severity.HIGH,
        detail="no consent to the delay before the deadline",
    )
    raise_exception = NoticeActivities(pg_pool).raise_exception
    env = ActivityEnvironment()
    await env.run(raise_exception, report)
    await env.run(raise_exception, report)

    rows = await fetch(
        pg_dsn,
        "SELECT key, kind, severity, detail, resolved_at FROM exceptions"
        " WHERE order_id = %s AND resolved_at IS NULL",
        order_id,
    )
    assert rows == [(report.key, report.kind, "high", report.detail, None)]


def shipment(order_id: str, status: ShipmentStatus, quantity: int = 2) -> BookedShipment:
    future = status is ShipmentStatus.FUTURE
    return BookedShipment(
        shipment_id=f"{order_id}-S1",
        kind=ShipmentKind.FUTURE if future else ShipmentKind.READY,
        status=status,
        location="DC1",
        expected_date=dt.date(2026, 12, 1) if future else None,
        allotments=(
            Allotment(
                line_id="L1",
                sku="KTP",
                quantity=quantity,
                location="DC1",
                source=StockSource.FUTURE if future else StockSource.CURRENT,
                expected_date=dt.date(2026, 12, 1) if future else None,
                receipt_id="PO-1" if future else None,
            ),
        ),
        amount=Decimal(25) * quantity,
        created_at=T0,
    )


def publish(order_id: str, booked: BookedShipment, step: str | None = None) -> ShipmentRequest:
    return ShipmentRequest(
        key=f"backorder-{order_id}/shipment/{booked.shipment_id}/{step or booked.status.value}",
        order_id=order_id,
        shipment=booked,
    )


async def shipment_rows(dsn: str, order_id: str) -> list[tuple[Any, ...]]:
    return await fetch(
        dsn,
        "SELECT status, kind, expected_date, amount, allotments FROM shipments WHERE order_id = %s",
        order_id,
    )


async def test_publish_shipment_upserts_from_future_to_ready_once_per_key(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    order_id = new_order_id()
    activities = FulfilmentActivities(pg_pool)
    env = ActivityEnvironment()
    future = publish(order_id, shipment(order_id, ShipmentStatus.FUTURE))
    ready = publish(order_id, shipment(order_id, ShipmentStatus.READY))

    await env.run(activities.publish_shipment, future)
    rows = await shipment_rows(pg_dsn, order_id)
    assert [r[:4] for r in rows] == [("future", "future", dt.date(2026, 12, 1), Decimal(50))]
    assert rows[0][4][0]["receipt_id"] == "PO-1"

    await env.run(activities.publish_shipment, ready)
    await env.run(activities.publish_shipment, ready)  # a retry
    await env.run(activities.publish_shipment, future)  # a late retry of the older step
    rows = await shipment_rows(pg_dsn, order_id)
    assert [r[:4] for r in rows] == [("ready", "ready", None, Decimal(50))]
    assert rows[0][4][0]["source"] == "current"

    events = await fetch(
        pg_dsn,
        "SELECT key, status FROM shipment_events WHERE shipment_id = %s ORDER BY at, status",
        f"{order_id}-S1",
    )
    assert events == [(future.key, "future"), (ready.key, "ready")]


async def test_publish_shipment_refuses_what_would_be_lost_or_undone(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    order_id = new_order_id()
    activities = FulfilmentActivities(pg_pool)
    env = ActivityEnvironment()
    await env.run(
        activities.publish_shipment, publish(order_id, shipment(order_id, ShipmentStatus.FUTURE))
    )

    # the same key for a changed shipment (a unit cancelled out of it) would be dropped silently
    smaller = publish(order_id, shipment(order_id, ShipmentStatus.FUTURE, quantity=1))
    with pytest.raises(ApplicationError) as caught:
        await env.run(activities.publish_shipment, smaller)
    assert caught.value.type == INVALID_REQUEST and caught.value.non_retryable

    await env.run(
        activities.publish_shipment, publish(order_id, shipment(order_id, ShipmentStatus.READY))
    )
    with pytest.raises(ApplicationError) as caught:  # fulfilment has it: no way back
        await env.run(
            activities.publish_shipment,
            publish(order_id, shipment(order_id, ShipmentStatus.FUTURE), "S1-again"),
        )
    assert caught.value.type == INVALID_REQUEST and caught.value.non_retryable
    assert "is ready" in str(caught.value)

    rows = await shipment_rows(pg_dsn, order_id)
    assert [r[:4] for r in rows] == [("ready", "ready", None, Decimal(50))]
    events = await fetch(
        pg_dsn, "SELECT status FROM shipment_events WHERE shipment_id = %s", f"{order_id}-S1"
    )
    assert sorted(e[0] for e in events) == ["future", "ready"]

    # fulfilment reports it shipped, then delivered: delivered is final
    left = shipment(order_id, ShipmentStatus.READY).model_copy(
        update={"status": ShipmentStatus.SHIPPED, "carrier": "UPS", "tracking_number": "1Z",
                "shipped_at": T0}
    )  # fmt: skip
    await env.run(activities.publish_shipment, publish(order_id, left, "shipped"))
    arrived = left.model_copy(update={"status": ShipmentStatus.DELIVERED, "delivered_at": T0})
    await env.run(activities.publish_shipment, publish(order_id, arrived, "delivered"))
    with pytest.raises(ApplicationError, match="is delivered"):
        await env.run(activities.publish_shipment, publish(order_id, left, "shipped-again"))
    rows = await fetch(
        pg_dsn,
        "SELECT status, carrier, tracking_number FROM shipments WHERE shipment_id = %s",
        f"{order_id}-S1",
    )
    assert rows == [("delivered", "UPS", "1Z")]


async def numbered_rows(dsn: str, order_id: str) -> list[tuple[Any, ...]]:
    return await fetch(
        dsn,
        "SELECT shipment_id, order_number, amount, amount_due FROM shipments"
        " WHERE order_id = %s ORDER BY shipment_id",
        order_id,
    )


async def test_publish_shipment_writes_the_number_and_the_price_fulfilment_ships_by(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    activities = FulfilmentActivities(pg_pool)
    env = ActivityEnvironment()

    # paid at shipment, no split number: the order's own number, priced at its amount
    order_id = new_order_id()
    first = shipment(order_id, ShipmentStatus.READY)
    request = publish(order_id, first).model_copy(update={"order_number": "1001"})
    await env.run(activities.publish_shipment, request)
    # a split of it, charged at order: its own number, nothing due
    split = first.model_copy(update={"shipment_id": f"{order_id}-S2", "order_number": "1001-001"})
    charged = ShipmentRequest(
        key=f"backorder-{order_id}/shipment/{order_id}-S2/ready",
        order_id=order_id,
        shipment=split,
        order_number="1001",
        amount_due=Decimal(0),
    )
    await env.run(activities.publish_shipment, charged)
    assert await numbered_rows(pg_dsn, order_id) == [
        (f"{order_id}-S1", "1001", Decimal(50), Decimal(50)),
        (f"{order_id}-S2", "1001-001", Decimal(50), Decimal(0)),
    ]
    # its next state keeps both (the book carries the number; the request the price)
    shipped = split.model_copy(
        update={"status": ShipmentStatus.SHIPPED, "carrier": "UPS", "tracking_number": "1Z",
                "shipped_at": T0}
    )  # fmt: skip
    later = charged.model_copy(update={"key": f"{charged.key}/shipped", "shipment": shipped})
    await env.run(activities.publish_shipment, later)
    rows = await numbered_rows(pg_dsn, order_id)
    assert rows[1] == (f"{order_id}-S2", "1001-001", Decimal(50), Decimal(0))

    # a request made before it carried the order's number: the read model's, else the order id
    unread = new_order_id()
    await env.run(
        activities.publish_shipment, publish(unread, shipment(unread, ShipmentStatus.READY))
    )
    assert await numbered_rows(pg_dsn, unread) == [
        (f"{unread}-S1", unread, Decimal(50), Decimal(50))
    ]
    known = new_order_id()
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        await conn.execute(
            "INSERT INTO orders (order_id, workflow_id, order_number, site, customer_id,"
            " customer_tier, placed_at, currency, order_value, status, skus, status_since)"
            " VALUES (%s, %s, '2002', 'test', 'cust-1', 'standard', now(), 'USD', 50,"
            " 'backordered', '{KTP}', now())",
            (known, f"backorder-{known}"),
        )
    await env.run(
        activities.publish_shipment, publish(known, shipment(known, ShipmentStatus.READY))
    )
    assert [r[1] for r in await numbered_rows(pg_dsn, known)] == ["2002"]
