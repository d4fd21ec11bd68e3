"""Acceptance planning: what of a new order ships now, what waits on backorder, what is cancelled.

Only current stock ships at acceptance; incoming stock is for the release passes that follow.
"""

from __future__ import annotations

import datetime as dt

from domain.order import Order
from domain.planner.catalog import Catalog
from domain.planner.demand import Backorder, BackorderLine
from domain.planner.plan import AcceptancePlan, LineOutcome
from domain.planner.pool import Pool, Take
from domain.planner.rules import Split, backorderable, inserts_in, pickup_location, split
from domain.planner.shipments import count_shipments, shipments_for
from domain.planner.stock import Stock
from domain.policy import AcceptanceSplit, BackorderPolicy, ReleaseMode


def plan_acceptance(
    order: Order,
    stock: Stock,
    catalog: Catalog,
    policy: BackorderPolicy,
    today: dt.date | None = None,
) -> AcceptancePlan:
    """Split `order` by `policy.acceptance_split` against the current stock in `stock`.
    `today`: pre-order products before their release ship nothing (None: no pre-orders, as
    acceptance planned before they existed)."""
    withheld = catalog.on_preorder(today) if today is not None else frozenset()
    pool = Pool(stock, catalog, future_until=None, withheld=withheld)
    whole_lines = policy.release_mode is not ReleaseMode.QUANTITY
    pickup = pickup_location(order.fulfillment)
    shipping_from: set[str] = set()
    takes_per_line: list[list[Take]] = []
    missing: list[int] = []
    cancelled: list[int] = []
    for line in order.lines:
        waits = backorderable(line, catalog, policy, today)
        takes: list[Take] = []
        short = pool.take(
            line.sku, line.quantity, pickup, whole_lines and waits, shipping_from, takes
        )
        if takes:
            shipping_from.add(takes[0][0].location)
        takes_per_line.append(takes)
        missing.append(short if waits else 0)
        cancelled.append(0 if waits else short)

    if any(missing) and any(takes_per_line):
        verdict = split(
            (ln.sku for ln, m in zip(order.lines, missing, strict=True) if m),
            inserts_in(catalog),
            0,
            lambda: count_shipments(takes_per_line),
            policy,
        )
        if verdict is Split.SPLIT and policy.acceptance_split is AcceptanceSplit.ENTIRE_ORDER:
            verdict = Split.HOLD
        if verdict is Split.DROP_INSERTS:
            cancelled = [c + m for c, m in zip(cancelled, missing, strict=True)]
            missing = [0] * len(missing)
        elif verdict is Split.HOLD:  # all of the order waits; nothing ships now
            missing = [ln.quantity - c for ln, c in zip(order.lines, cancelled, strict=True)]
            takes_per_line = [[] for _ in order.lines]

    shipments = shipments_for([(ln.line_id, ln.sku) for ln in order.lines], takes_per_line)
    outcomes = tuple(
        LineOutcome(
            line_id=ln.line_id,
            sku=ln.sku,
            released=ln.quantity - m - c,
            backordered=m,
            cancelled=c,
        )
        for ln, m, c in zip(order.lines, missing, cancelled, strict=True)
    )
    waiting = tuple(
        BackorderLine(line_id=o.line_id, sku=o.sku, quantity=o.backordered)
        for o in outcomes
        if o.backordered
    )
    backorder = (
        Backorder(
            order_id=order.order_id,
            placed_at=order.placed_at,
            tier=order.customer.tier,
            fulfillment=order.fulfillment,
            lines=waiting,
            shipments=len(shipments),
        )
        if waiting
        else None
    )
    return AcceptancePlan(
        order_id=order.order_id, shipments=shipments, lines=outcomes, backorder=backorder
    )
