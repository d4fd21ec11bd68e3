"""The end-to-end tests' one order as the order system hands it over: two lines, the first in
stock at DC (5 on hand, 2 ordered), the second not (3 ordered), 35.00 USD authorised at
checkout through the gateway the test runs."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

from psycopg_pool import AsyncConnectionPool

from domain.order import Order
from payments.gateway import AuthorisationResult, PaymentGateway
from tests.order_life import make_order


@dataclass(frozen=True)
class Checkout:
    order: Order
    auth: AuthorisationResult
    in_stock: str
    """The sku of line L1 (2 of 5 on hand); line L2's sku has no stock."""


async def checked_out(
    pool: AsyncConnectionPool, gateway: PaymentGateway, now: dt.datetime, prefix: str
) -> Checkout:
    sku_a, sku_b = f"A-{uuid.uuid4().hex[:6]}", f"B-{uuid.uuid4().hex[:6]}"
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO locations (location_id, rank) VALUES ('DC', 0) ON CONFLICT DO NOTHING"
        )
        await conn.execute(
            "INSERT INTO stock (sku, location, on_hand) VALUES (%s, 'DC', 5)", (sku_a,)
        )
    order_id = f"{prefix}-{uuid.uuid4().hex[:10]}"
    auth = await gateway.authorise(f"checkout/{order_id}", order_id, Decimal("35.00"), "USD")
    payment = {
        "reference": auth.reference,
        "amount": "35.00",
        "authorised_at": now.isoformat(),
        "expires_at": auth.expires_at.isoformat(),
    }
    order = make_order(
        now, [(sku_a, 2, "10.00"), (sku_b, 3, "5.00")], order_id=order_id, payment=payment
    )
    return Checkout(order, auth, sku_a)
