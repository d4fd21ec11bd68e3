"""What the feed's stock events and its purchase-order events both need: the rejection that rolls
an event back, the record of what an event changed, and the checks and rows that put units on hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from domain.inventory import ReceiptStatus, Rejection


class Rejected(Exception):
    """Raised inside an event's savepoint so that everything the event did is rolled back."""

    def __init__(self, rejection: Rejection, reason: str) -> None:
        super().__init__(reason)
        self.rejection = rejection
        self.reason = reason


@dataclass
class Change:
    """What one event changed, kept apart until its savepoint is released."""

    skus: set[str] = field(default_factory=set)
    notices: list[tuple[str, str, ReceiptStatus]] = field(default_factory=list)
    """(order_id, receipt_id, status)"""


async def require_product(conn: AsyncConnection[Any], sku: str) -> None:
    cur = await conn.execute("SELECT 1 FROM products WHERE sku = %s", (sku,))
    if await cur.fetchone() is None:
        raise Rejected(Rejection.UNKNOWN_SKU, f"unknown sku {sku}: define the product first")


async def require_location(conn: AsyncConnection[Any], location: str) -> None:
    cur = await conn.execute("SELECT 1 FROM locations WHERE location_id = %s", (location,))
    if await cur.fetchone() is None:
        raise Rejected(
            Rejection.UNKNOWN_LOCATION, f"unknown location {location}: define the location first"
        )


async def add_stock(
    conn: AsyncConnection[Any], sku: str, location: str, on_hand: int, reserved: int = 0
) -> None:
    """Add units on hand (and the part of them orders hold) to a stock row, creating it."""
    await conn.execute(
        """
        INSERT INTO stock (sku, location, on_hand, reserved) VALUES (%s, %s, %s, %s)
        ON CONFLICT (sku, location) DO UPDATE
           SET on_hand = stock.on_hand + EXCLUDED.on_hand,
               reserved = stock.reserved + EXCLUDED.reserved,
               updated_at = now()
        """,
        (sku, location, on_hand, reserved),
    )


async def movement(
    conn: AsyncConnection[Any], event_id: str, sku: str, location: str, delta: int, reason: str
) -> None:
    await conn.execute(
        """
        INSERT INTO stock_movements (event_id, sku, location, delta, reason)
        VALUES (%s, %s, %s, %s, %s)
        """,
        (event_id, sku, location, delta, reason),
    )
