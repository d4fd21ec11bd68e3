"""The scheduled sweep: a Temporal Schedule starts this every `allocator.sweep_interval`.

A schedule can only start workflows, and the allocator is already running, so the sweep is a
one-activity workflow that asks the allocator for a full check (starting it if need be). The
pass itself stays in the allocator, so a sweep never runs beside another pass of the site.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.order import Contract, Identifier
    from workflows.calls import call


class SweepRequest(Contract):
    site: Identifier


@workflow.defn(name="AllocatorSweepWorkflow")
class AllocatorSweepWorkflow:
    @workflow.run
    async def run(self, request: SweepRequest) -> None:
        check = c.AllocationCheck(reason="scheduled sweep")
        await call(c.NUDGE_ALLOCATOR, c.NudgeRequest(site=request.site, check=check))
