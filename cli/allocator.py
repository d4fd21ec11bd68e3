"""The site's allocator: `backorder check` (an allocation pass now), `backorder allocator
status`, and `apply_batch`, how the inventory commands send it events."""

from __future__ import annotations

import argparse
from typing import Any

from temporalio.client import Client

from activities.contracts import AllocationCheck
from cli.common import add_site, counted, order_id_arg, run_with_client, site_of, with_client
from cli.errors import CliError, missing_as, refused_as, validated
from config import Settings
from domain.inventory import InventoryBatch
from runtime.allocator import allocator_status, run_check, send_inventory
from workflows.allocator_messages import AllocatorStatus, FeedResult, PassOutcome, allocator_id


async def apply_batch(
    client: Client, settings: Settings, site: str, batch: InventoryBatch
) -> FeedResult:
    """Send events and wait for the pass that applied them; a refusal names the allocator."""
    with refused_as(f"{allocator_id(site)} refused the events"):
        return await send_inventory(client, settings, site, batch)


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
    """Validate first: a bad check is reported even when Temporal is down."""
    check = allocation_check(args)
    site = site_of(settings, args)
    with refused_as("check refused"):
        outcome = run_with_client(settings, lambda c: run_check(c, settings, site, check))
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
    print(
        f"  {'pass':<24} {'at (UTC)':<16} {'events':>6} {'rej.':>5} {'orders':>6} "
        f"{'units':>7} {'notices':>7} {'deliv.':>6} {'gone':>5}  reason"
    )
    for p in status.recent:
        print(
            f"  {p.pass_id:<24} {p.at:%Y-%m-%d %H:%M} {p.events:>6} {p.rejected:>5} "
            f"{p.orders_released:>6} {p.units_released:>7} {p.receipt_notices:>7} "
            f"{p.delivered:>6} {p.gone:>5}  {p.reason}"
        )


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


def add_allocator_commands(sub: Any) -> None:
    """`check` and `allocator status`."""
    check = add_site(
        sub.add_parser("check", help="run an allocation pass now (nothing named: every sku)")
    )
    check.add_argument("--sku", action="append", default=[], help="a sku to look at (repeatable)")
    check.add_argument(
        "--order",
        metavar="ORDER_ID",
        type=order_id_arg,
        action="append",
        default=[],
        help="an order whose skus to look at (repeatable)",
    )
    check.add_argument("--reason", default="operator request")
    check.set_defaults(run=cmd_check)

    allocator = sub.add_parser("allocator", help="inspect a site's allocator")
    asub = allocator.add_subparsers(dest="allocator_command", required=True)
    status = add_site(asub.add_parser("status", help="passes run, pending work, recent passes"))
    status.add_argument("--json", action="store_true", help="print the raw status JSON")
    status.set_defaults(run=with_client(show_allocator))
