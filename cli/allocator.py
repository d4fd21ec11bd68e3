"""The site's allocator: `backorder check` (an allocation pass now), `backorder allocator
status`, and `apply_batch`, how the inventory commands send it events."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import click
from rich import box
from rich.table import Table
from temporalio.client import Client

from activities.contracts import AllocationCheck
from cli.app import command, flag, group, typed
from cli.common import counted, order_id_arg, run_with_client, site_of, site_option, with_client
from cli.errors import CliError, missing_as, refused_as, validated
from cli.roles import require_check_role
from cli.tables import show
from config import Settings
from domain.inventory import InventoryBatch
from runtime.allocator import allocator_status, run_check, send_inventory
from workflows.allocator_messages import AllocatorStatus, FeedResult, PassOutcome, allocator_id

T = TypeVar("T")


ANSWER_WITHIN = 120.0
"""Seconds a command waits for the allocator's pass before it gives up and says why (no worker
polls the site's task queue, or a pass is stuck): never a command that hangs."""


async def answered(settings: Settings, site: str, work: Awaitable[T], what: str) -> T:
    """`work`'s answer, or after ANSWER_WITHIN a CliError naming the allocator, the task queue
    that should serve it, and that asking again is safe."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=ANSWER_WITHIN)
    if task in done:
        return task.result()
    # the command ends here: stop what it started (its update in flight) before the loop does
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in others:
        t.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    raise CliError(
        f"{allocator_id(site)} did not answer within {ANSWER_WITHIN:g}s (is a worker "
        f"polling task queue {settings.temporal.allocator_queue}?); {what}"
    )


async def apply_batch(
    client: Client, settings: Settings, site: str, batch: InventoryBatch
) -> FeedResult:
    """Send events and wait for the pass that applied them; a refusal names the allocator."""
    with refused_as(f"{allocator_id(site)} refused the events"):
        return await answered(
            settings,
            site,
            send_inventory(client, settings, site, batch),
            "the events may still be applied: sending them again with the same ids is safe",
        )


def allocation_check(args: argparse.Namespace) -> AllocationCheck:
    """The check the arguments ask for (nothing named: every sku)."""
    return validated(
        AllocationCheck,
        "check",
        reason=args.reason,
        skus=tuple(args.sku),
        order_ids=tuple(args.order),
    )


def print_pass(outcome: PassOutcome) -> None:
    """What the pass looked at, released and delivered."""
    r, d = outcome.report, outcome.delivery
    print(
        f"pass {r.pass_id} on {r.site}: looked at {counted(r.skus, 'sku')}, "
        f"{counted(r.orders_waiting, 'order')} waiting\n"
        f"  released {counted(r.units_released, 'unit')} to "
        f"{counted(r.orders_released, 'order')}, {counted(r.receipt_notices, 'receipt notice')}\n"
        f"  delivered {d.delivered} of {counted(r.signals, 'allotment signal')}; "
        f"{counted(len(d.gone), 'order')} gone" + (f": {', '.join(d.gone)}" if d.gone else "")
    )
    rejected = [o for o in (*r.outcomes, *outcome.refused) if not o.ok]
    if r.unknown_orders:
        print(f"  no such order: {', '.join(r.unknown_orders)}")
    if rejected:
        print(f"  {len(rejected)} pending inventory events were rejected in this pass")


def cmd_check(settings: Settings, args: argparse.Namespace) -> None:
    """Validate first: a user without a check role, or a bad check, is refused even when
    Temporal is down."""
    require_check_role(settings)
    check = allocation_check(args)
    site = site_of(settings, args)
    with refused_as("check refused"):
        outcome = run_with_client(
            settings,
            lambda c: answered(
                settings,
                site,
                run_check(c, settings, site, check),
                "the check may still run: asking again is safe",
            ),
        )
    unknown = outcome.report.unknown_orders
    if unknown and set(unknown) == set(check.order_ids) and not check.skus:
        raise CliError(f"no such order: {', '.join(unknown)} (nothing was checked)")
    print_pass(outcome)


def print_allocator_status(status: AllocatorStatus) -> None:
    """Totals, then a table of the recent passes."""
    check = "a check pending" if status.pending_check else "no check pending"
    print(
        f"{allocator_id(status.site)}: {status.passes} passes, {status.pending_events} events "
        f"and {check}, batch window {status.batch_window.total_seconds():g}s"
    )
    if not status.recent:
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("pass", overflow="fold")
    table.add_column("at (UTC)")
    for name in ("events", "rej.", "orders", "units", "notices", "deliv.", "gone"):
        table.add_column(name, justify="right")
    table.add_column("reason")
    for p in status.recent:
        figures = (p.events, p.rejected, p.orders_released, p.units_released)
        table.add_row(
            p.pass_id,
            f"{p.at:%Y-%m-%d %H:%M}",
            *(str(n) for n in (*figures, p.receipt_notices, p.delivered, p.gone)),
            p.reason,
        )
    show(table)


async def show_allocator(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    """The allocator's status; no allocator yet is said with how one starts."""
    site = site_of(settings, args)
    with missing_as(
        f"no allocator for site {site} yet ({allocator_id(site)}); the first inventory "
        f"event or `backorder check --site {site}` starts it"
    ):
        status = await allocator_status(client, site)
    if args.json:
        print(status.model_dump_json(indent=2))
    else:
        print_allocator_status(status)


def allocator_commands() -> list[click.Command]:
    """`check` and `allocator status`."""
    check = command(
        "check",
        cmd_check,
        "run an allocation pass now (nothing named: every sku)",
        site_option(),
        click.Option(["--sku"], multiple=True, help="a sku to look at (repeatable)"),
        click.Option(
            ["--order"],
            type=typed(order_id_arg, "order_id"),
            multiple=True,
            help="an order whose skus to look at (repeatable)",
        ),
        click.Option(["--reason"], default="operator request", show_default=True),
    )
    allocator = group("allocator", "inspect a site's allocator")
    allocator.add_command(
        command(
            "status",
            with_client(show_allocator),
            "passes run, pending work, recent passes",
            site_option(),
            flag("--json", help="print the raw status JSON"),
        )
    )
    return [check, allocator]
