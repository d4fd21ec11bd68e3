"""The `load_policy` activity: the site's backorder policy from the worker's settings.

An order reads its policy once, at acceptance, and keeps it (it is in the workflow's history and
carried through continue-as-new): a changed setting applies to new orders, and never changes the
rules half-way through a running one.
"""

from __future__ import annotations

from temporalio import activity

from activities.contracts import LOAD_POLICY, PolicyRequest, SitePolicy
from config import Settings


class PolicyActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name=LOAD_POLICY.name)
    async def load_policy(self, request: PolicyRequest) -> SitePolicy:
        site = request.site or self._settings.site
        return SitePolicy(site=site, policy=self._settings.policy_for(site))
