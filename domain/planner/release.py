"""Release planning: serve open backorders greedily, in priority order, from the stock there is.

Each order in turn takes what its policy allows from what the orders ahead of it left. An order
that cannot be released takes nothing, so it blocks nobody behind it. Sorting the demand is the
only step that is not linear in the number of lines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from functools import partial

from domain.planner.catalog import Catalog
from domain.planner.demand import Backorder, queue_position
from domain.planner.plan import LineOutcome, OrderRelease, ParentStatus, ReleasePlan
from domain.planner.pool import Pool, Take
from domain.planner.rules import Split, inserts_in, pickup_location, release_mode_for, split
from domain.planner.shipments import count_shipments, shipments_for
from domain.planner.stock import Stock
from domain.policy import BackorderPolicy, ReleaseMode


class Decision:
    """What one order takes in a pass, before it is written out as models."""

    __slots__ = ("backorder", "cancelled", "takes")

    def __init__(self, backorder: Backorder, takes: list[list[Take]], cancelled: list[int]):
        self.backorder = backorder
        self.takes = takes
        """Per line, in line order."""
        self.cancelled = cancelled
        """Per line: missing insert units dropped so the rest could ship."""


class ReleasePass:
    """A decided pass in compact form: each order's release is written as models when asked for.

    The allocator plans while it holds the stock rows' locks, so deciding must be fast (see
    `bench/planner.py`); writing an order's `OrderRelease` costs a dozen models and is done as
    that order is dispatched (a signal per winner costs far more). `to_plan()` writes them all.
    """

    __slots__ = ("_by_order", "_written", "decisions")

    def __init__(self, decisions: list[Decision]) -> None:
        self.decisions = decisions
        """The winners in the order they were served."""
        self._by_order = {d.backorder.order_id: d for d in decisions}
        self._written: dict[str, OrderRelease] = {}

    def __len__(self) -> int:
        return len(self.decisions)

    def __iter__(self) -> Iterator[OrderRelease]:
        return (self._write(d) for d in self.decisions)

    @property
    def order_ids(self) -> tuple[str, ...]:
        """The orders that get stock (or drop inserts), in serving order."""
        return tuple(self._by_order)

    def release_for(self, order_id: str) -> OrderRelease | None:
        decision = self._by_order.get(order_id)
        return None if decision is None else self._write(decision)

    def to_plan(self) -> ReleasePlan:
        return ReleasePlan(releases=tuple(self))

    def _write(self, decision: Decision) -> OrderRelease:
        order_id = decision.backorder.order_id
        written = self._written.get(order_id)
        if written is None:
            written = self._written[order_id] = order_release(decision)
        return written


def plan_release(
    backorders: Sequence[Backorder],
    stock: Stock,
    catalog: Catalog,
    policy: BackorderPolicy,
    as_of: dt.date,
) -> ReleasePlan:
    """Decide what each open backorder gets from `stock` on `as_of` (for the future date limit),
    written out in full; for large passes use `decide_release` and write per order."""
    return decide_release(backorders, stock, catalog, policy, as_of).to_plan()


def decide_release(
    backorders: Sequence[Backorder],
    stock: Stock,
    catalog: Catalog,
    policy: BackorderPolicy,
    as_of: dt.date,
) -> ReleasePass:
    """The greedy pass itself, on plain objects; only the orders that get something."""
    if len({b.order_id for b in backorders}) != len(backorders):
        raise ValueError("each order may have only one open backorder in a pass")
    future_until = as_of + dt.timedelta(days=policy.future_date_limit_days)
    pool = Pool(
        stock,
        catalog,
        future_until if policy.future_inventory else None,
        withheld=catalog.on_preorder(as_of),  # pre-orders wait for their release day
    )
    inserts = inserts_in(catalog)
    decisions = []
    for backorder in sorted(backorders, key=partial(queue_position, policy=policy)):
        decision = _serve(backorder, pool, inserts, policy)
        if decision is not None:
            decisions.append(decision)
    return ReleasePass(decisions)


def _serve(
    backorder: Backorder, pool: Pool, inserts: frozenset[str], policy: BackorderPolicy
) -> Decision | None:
    """Take what this order may have, or nothing (and give back what it tried)."""
    mode = release_mode_for(backorder, policy)
    full = mode is ReleaseMode.FULL
    whole_lines = mode is not ReleaseMode.QUANTITY
    pickup = pickup_location(backorder.fulfillment)
    shipping_from: set[str] = set()
    takes_per_line: list[list[Take]] = []
    missing: list[int] = []
    taken = False
    for line in backorder.lines:
        takes: list[Take] = []
        short = pool.take(line.sku, line.quantity, pickup, whole_lines, shipping_from, takes)
        if short and full and line.sku not in inserts:
            pool.give_back(takes_per_line)
            return None
        if takes:
            taken = True
            first = takes[0][0]
            if first.receipt_id is None:
                shipping_from.add(first.location)
        takes_per_line.append(takes)
        missing.append(short)
    if not taken:
        return None
    cancelled = [0] * len(missing)
    if any(missing):
        verdict = split(
            (ln.sku for ln, m in zip(backorder.lines, missing, strict=True) if m),
            inserts,
            backorder.shipments,
            lambda: count_shipments(takes_per_line),
            policy,
        )
        if verdict is Split.HOLD:
            pool.give_back(takes_per_line)
            return None
        if verdict is Split.DROP_INSERTS:
            cancelled = missing
    return Decision(backorder, takes_per_line, cancelled)


def order_release(decision: Decision) -> OrderRelease:
    """Write one decision out as the models the workflow and the ledger consume."""
    backorder = decision.backorder
    lines = [(ln.line_id, ln.sku) for ln in backorder.lines]
    outcomes = []
    for ln, takes, cancelled in zip(
        backorder.lines, decision.takes, decision.cancelled, strict=True
    ):
        released = sum(q for _, q in takes)
        outcomes.append(
            LineOutcome(
                line_id=ln.line_id,
                sku=ln.sku,
                released=released,
                backordered=ln.quantity - released - cancelled,
                cancelled=cancelled,
            )
        )
    waiting = any(o.backordered for o in outcomes)
    return OrderRelease(
        order_id=backorder.order_id,
        shipments=shipments_for(lines, decision.takes),
        lines=tuple(outcomes),
        parent_status=ParentStatus.BACKORDERED if waiting else ParentStatus.REASSIGNED,
    )
