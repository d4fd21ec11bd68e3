"""`open_order`: acceptance's claim and reads in one call (lean-history-2).

Acceptance claims the order id, then reads the site's policy and the free stock of the order's
skus. As three local activities that was three markers in the order's history; as one, one. The
claim still comes first: a duplicate order is refused before anything is read. Where the site
limits backorders, the room the order may take is claimed last (activities/backorder_limits.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import activity

from activities import contracts as c
from activities.backorder_limits import BackorderLimits
from domain.limits import BackorderAllowance


class OpeningActivities:
    """`open_order`, made of the three activities it joins (the same code, the same errors)."""

    def __init__(
        self,
        claim: Callable[[c.OrderClaim], Awaitable[c.Empty]],
        load_policy: Callable[[c.PolicyRequest], Awaitable[c.SitePolicy]],
        check_availability: Callable[[c.AvailabilityRequest], Awaitable[c.Availability]],
        limits: BackorderLimits | None = None,
    ) -> None:
        self._claim = claim
        self._load_policy = load_policy
        self._check_availability = check_availability
        self._limits = limits

    def activities(self) -> list[Callable[..., Any]]:
        return [self.open_order]

    @activity.defn(name=c.OPEN_ORDER.name)
    async def open_order(self, opening: c.OrderOpening) -> c.OpenedOrder:
        """Claim the order id (`DuplicateOrder` if another run has it), then read the policy
        and the stock, then claim the backorder room the order may take where the policy
        limits it."""
        await self._claim(opening.claim)
        policy = await self._load_policy(opening.policy)
        availability = await self._check_availability(opening.availability)
        allowances: tuple[BackorderAllowance, ...] = ()
        if opening.allowance is not None and self._limits is not None:
            allowances = await self._limits.claim(opening.allowance, policy.site, policy.policy)
        return c.OpenedOrder(policy=policy, availability=availability, allowances=allowances)
