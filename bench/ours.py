"""Our side of each scenario, driven only through the service's public entry points.

Orders are started with the Temporal client as the order system does (one line, one unit, paid:
authorised at the sandbox beforehand, like a checkout), stock arrives through the allocator feed
(`runtime.allocator.send_inventory`), and readings come from PostgreSQL (the read model,
`shipments`, `shipment_events`) and Temporal (histories, visibility).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from temporalio.client import Client

from bench.cpu import Sampler
from bench.histories import lives, map_limited
from bench.measure import distribution, fanout, intake, poll_until
from bench.stack import Servers, tag
from config import Settings
from domain.inventory import (
    InventoryBatch,
    InventoryEvent,
    LocationDefined,
    ProductDefined,
    StockReceived,
)
from domain.order import Order
from runtime.allocator import allocator_status, send_inventory
from workflows.backorder import BackorderWorkflow

PRICE = Decimal("10.00")
READY = """SELECT count(*) FROM shipments WHERE order_id = ANY(%s) AND status = 'ready'"""
READY_AT = """SELECT s.order_id, extract(epoch FROM min(e.at))::float8
                FROM shipments s JOIN shipment_events e USING (shipment_id)
               WHERE s.order_id = ANY(%s) AND e.status = 'ready'
               GROUP BY s.order_id"""


@dataclass
class OurSite:
    """One site with its own worker, task queue, location and allocator."""

    servers: Servers
    site: str
    task_queue: str
    batch_window: timedelta | None
    """The allocator's window as the feed starts it (None: the service's default)."""

    @property
    def client(self) -> Client:
        return self.servers.client

    @property
    def settings(self) -> Settings:
        return self.servers.settings(self.site, self.task_queue, self.batch_window)

    @property
    def location(self) -> str:
        return f"DC-{self.site}"

    async def feed(self, *events: InventoryEvent) -> None:
        result = await send_inventory(
            self.client, self.settings, self.site, InventoryBatch(events=events)
        )
        bad = [o for o in result.outcomes if not o.ok]
        if bad:
            raise RuntimeError(f"events rejected: {bad}")

    async def define(self, *skus: str) -> None:
        await self.feed(
            LocationDefined(event_id=_event(), location_id=self.location, rank=0),
            *(ProductDefined(event_id=_event(), sku=sku) for sku in skus),
        )

    def receipt(self, sku: str, quantity: int) -> StockReceived:
        return StockReceived(event_id=_event(), sku=sku, location=self.location, quantity=quantity)

    async def orders(self, sku: str, n: int) -> list[Order]:
        """n one-unit orders of `sku`, each authorised at the sandbox as at checkout."""
        prefix = f"B{tag()}"
        return await map_limited(lambda i: self._order(f"{prefix}-{i:05}", sku), range(n), 20)

    async def _order(self, order_id: str, sku: str) -> Order:
        now = dt.datetime.now(dt.UTC)
        auth = await self.servers.gateway.authorise(f"checkout/{order_id}", order_id, PRICE, "USD")
        return Order.model_validate(
            {
                "order_id": order_id,
                "order_number": f"N{order_id}",
                "placed_at": now.isoformat(),
                "currency": "USD",
                "customer": {"id": f"c-{order_id}", "email": "c@example.com"},
                "fulfillment": {"type": "sth"},
                "lines": [{"line_id": "1", "sku": sku, "quantity": 1, "unit_price": str(PRICE)}],
                "site": self.site,
                "payment": {
                    "reference": auth.reference,
                    "amount": str(PRICE),
                    "authorised_at": now.isoformat(),
                    "expires_at": auth.expires_at.isoformat(),
                },
            }
        )

    async def start(self, order: Order) -> None:
        await self.client.start_workflow(
            BackorderWorkflow.run, order, id=order.workflow_id, task_queue=self.task_queue
        )

    async def accepted(self, orders: Sequence[Order]) -> int:
        """Orders whose read-model row is written: the last step of acceptance."""
        ids = [o.order_id for o in orders]
        n: int = await self.servers.scalar(
            "SELECT count(*) FROM orders WHERE order_id = ANY(%s)", (ids,)
        )
        return n

    async def ready(self, orders: Sequence[Order]) -> int:
        n: int = await self.servers.scalar(READY, ([o.order_id for o in orders],))
        return n

    async def completed(self) -> int:
        query = (
            f'WorkflowType="BackorderWorkflow" AND TaskQueue="{self.task_queue}" '
            'AND ExecutionStatus="Completed"'
        )
        return (await self.client.count_workflows(query)).count

    async def close_times(self, orders: Sequence[Order]) -> list[float]:
        wanted = {o.workflow_id for o in orders}
        query = f'TaskQueue="{self.task_queue}" AND ExecutionStatus="Completed"'
        found = [
            w.close_time.timestamp()
            async for w in self.client.list_workflows(query)
            if w.id in wanted and w.close_time is not None
        ]
        return found

    async def ready_times(self, orders: Sequence[Order]) -> list[float]:
        got = await self.servers.rows(READY_AT, ([o.order_id for o in orders],))
        return [float(at) for _, at in got]

    async def waiting(self, sku: str, n: int, within: float = 600) -> list[Order]:
        """n orders of `sku` started and accepted, not timed (a population to measure on)."""
        orders = await self.orders(sku, n)
        await map_limited(self.start, orders)
        await poll_until(lambda: self.accepted(orders), n, within=within, what="accepted")
        return orders

    async def warm_up(self, n: int = 5) -> None:
        """A few orders through their whole life: the worker's first sandbox compile, the
        allocator's start and the pools are not what the scenarios measure."""
        sku = f"WARM-{tag()}"
        await self.define(sku)
        orders = await self.waiting(sku, n, within=90)  # a worker that cannot run orders
        await self.feed(self.receipt(sku, n))
        await poll_until(lambda: self.ready(orders), n, within=90, what="warm-up")
        handles = [self.client.get_workflow_handle(o.workflow_id) for o in orders]
        await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 90)


async def measure_intake(s: OurSite, sampler: Sampler, orders: Sequence[Order]) -> dict[str, Any]:
    return await intake(
        s.client,
        sampler,
        [o.workflow_id for o in orders],
        lambda i: s.start(orders[i]),
        lambda: s.accepted(orders),
    )


async def measure_fanout(
    s: OurSite, sampler: Sampler, sku: str, orders: Sequence[Order]
) -> dict[str, Any]:
    """One receipt covering every waiting order: receipt sent → each ready shipment and each
    order closed."""
    before = await s.completed()
    tasks: list[asyncio.Task[None]] = []

    async def send() -> None:
        tasks.append(asyncio.create_task(s.feed(s.receipt(sku, len(orders)))))

    async def closed() -> int:
        return await s.completed() - before

    result = await fanout(
        sampler,
        len(orders),
        send,
        {
            "ready": (lambda: s.ready(orders), lambda: s.ready_times(orders)),
            "closed": (closed, lambda: s.close_times(orders)),
        },
    )
    await asyncio.gather(*tasks)
    return result


async def measure_latency(
    s: OurSite, orders: Sequence[Order], receipts: int, sku: str
) -> dict[str, Any]:
    """One-unit receipts one at a time, each released to the next order in line: receipt sent
    → that order's shipment ready (`shipment_events.at`; polled every 10 ms to go on)."""
    exact: list[float] = []
    polled: list[float] = []
    seen: set[str] = set()
    ids = ([o.order_id for o in orders],)
    for _ in range(receipts):
        t0 = time.time()
        task = asyncio.create_task(s.feed(s.receipt(sku, 1)))
        polled.append(
            await poll_until(
                lambda: s.ready(orders), len(seen) + 1, within=120, what="latency", interval=0.01
            )
        )
        new = [(o, at) for o, at in await s.servers.rows(READY_AT, ids) if o not in seen]
        if len(new) != 1:
            raise RuntimeError(f"one receipt released {len(new)} orders")
        seen.add(new[0][0])
        exact.append(float(new[0][1]) - t0)
        await task
        await asyncio.sleep(0.05)  # the next receipt is a pass of its own
    status = await allocator_status(s.client, s.site)
    return {
        **distribution(exact, polled),
        "waiting_before": len(orders),
        "batch_window_seconds": status.batch_window.total_seconds(),
    }


async def measure_events(s: OurSite, orders: Sequence[Order], sample: int) -> dict[str, Any]:
    picked = [o.workflow_id for o in orders[:: max(1, len(orders) // sample)][:sample]]
    return await lives(s.client, picked, "allotment")


def _event() -> str:
    return f"bench-{uuid.uuid4().hex[:12]}"
