"""Backorder limits (Magento's out-of-stock threshold, Saleor's pre-order threshold): how much of
a sku one customer may have waiting, and how much may wait at a site in all. An order over a
limit has the excess refused at acceptance, cancelled and given back with the reason, never
silently.

The room an order may take is decided where the totals are (PostgreSQL, under a lock per sku:
activities/backorder_limits.py) and handed to acceptance as allowances; here it is applied to
the acceptance plan. Pure and deterministic: the workflow runs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import Field, NonNegativeInt

from domain.order import Contract, Identifier
from domain.planner import AcceptancePlan, BackorderLine, LineOutcome


class BackorderAllowance(Contract):
    """How many units of a sku the order may put on backorder, and why not more."""

    sku: Identifier
    units: NonNegativeInt
    reason: Annotated[str, Field(max_length=500)] = ""
    """Empty when the order got all the room it asked for."""


def within_allowances(
    plan: AcceptancePlan, allowances: Iterable[BackorderAllowance]
) -> tuple[AcceptancePlan, tuple[str, ...]]:
    """The plan with what waits beyond the allowances cancelled instead (lines of a sku take
    its room in order), and the reasons of each cut. Skus without an allowance are not limited;
    what ships now is never touched."""
    room = {a.sku: a.units for a in allowances}
    why = {a.sku: a.reason for a in allowances}
    lines: list[LineOutcome] = []
    cut: dict[str, int] = {}
    for outcome in plan.lines:
        left = room.get(outcome.sku)
        if left is None or outcome.backordered <= left:
            if left is not None:
                room[outcome.sku] = left - outcome.backordered
            lines.append(outcome)
            continue
        over = outcome.backordered - left
        room[outcome.sku] = 0
        cut[outcome.sku] = cut.get(outcome.sku, 0) + over
        lines.append(
            outcome.model_copy(update={"backordered": left, "cancelled": outcome.cancelled + over})
        )
    if not cut:
        return plan, ()
    waiting = {o.line_id: o.backordered for o in lines}
    backorder = plan.backorder
    if backorder is not None:
        kept = tuple(
            BackorderLine(line_id=ln.line_id, sku=ln.sku, quantity=waiting[ln.line_id])
            for ln in backorder.lines
            if waiting.get(ln.line_id)
        )
        backorder = backorder.model_copy(update={"lines": kept}) if kept else None
    reasons = tuple(
        f"{units} x {sku} not taken on backorder: {why[sku] or 'over the limit'}"
        for sku, units in sorted(cut.items())
    )
    return plan.model_copy(update={"lines": tuple(lines), "backorder": backorder}), reasons
