"""`backorder shipment shipped|short-pick|delivered`: what fulfilment reports of a shipment, for
a warehouse or an operator without an integration (`report_fulfilment` update of the order's
workflow; see the README's "Fulfilment reports").

The shipment's order is read from the read model (`shipments`, written when the shipment was
handed to fulfilment), so a warehouse needs only the shipment id it was given; `--order` says
it outright. Every report is built and checked before anything is sent.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import click
from pydantic import TypeAdapter, ValidationError

from cli.app import command, group, typed
from cli.common import date_arg, run_with_client, workflow_id_arg
from cli.database import database
from cli.errors import BadValue, CliError, first_reason, invalid, refused_as
from cli.fulfilment_feed import load_command
from cli.orders import running_handle
from config import Settings
from domain.fulfilment import FulfilmentReport, PickedLine
from workflows.messages import FulfilmentAnswer

REPORT: TypeAdapter[Any] = TypeAdapter(FulfilmentReport)


def found_arg(value: str) -> PickedLine:
    """`L1:2`: two units of line L1 were found for the shipment (0: none)."""
    line_id, colon, found = value.partition(":")
    if not (line_id and colon and found.isascii() and found.isdigit()):
        raise BadValue(f"{value!r}: expected LINE:FOUND, FOUND a whole number (0 or more)")
    try:
        return PickedLine(line_id=line_id, found=int(found))
    except ValidationError as err:
        raise BadValue(f"{value!r}: {first_reason(err)}") from None


def instant_arg(value: str) -> datetime:
    """An ISO 8601 instant with its zone (`2026-12-02T16:00:00Z`)."""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise BadValue(f"{value!r}: expected an instant like 2026-12-02T16:00:00Z") from None
    if at.tzinfo is None:
        raise BadValue(f"{value!r}: say the zone (Z or +01:00)")
    return at


def _report(fields: dict[str, Any]) -> Any:
    try:
        return REPORT.validate_python(fields)
    except ValidationError as err:
        raise invalid(err, f"{fields['type']} report") from None


async def _order_of(settings: Settings, shipment_id: str) -> str:
    async with database(settings) as conn:
        cur = await conn.execute(
            "SELECT order_id FROM shipments WHERE shipment_id = %s", (shipment_id,)
        )
        row = await cur.fetchone()
    if row is None:
        raise CliError(
            f"no shipment {shipment_id}: fulfilment has not been handed it (or give --order)"
        )
    return str(row["order_id"])


def _send(settings: Settings, args: argparse.Namespace, report: Any) -> FulfilmentAnswer:
    async def go(client: Any) -> FulfilmentAnswer:
        order = args.order or await _order_of(settings, args.shipment)
        handle = await running_handle(client, workflow_id_arg(order))
        answer: FulfilmentAnswer = await handle.execute_update(
            "report_fulfilment", report, result_type=FulfilmentAnswer
        )
        return answer

    with refused_as(f"{report.type} report refused"):
        return run_with_client(settings, go)


def _say(answer: FulfilmentAnswer, what: str) -> None:
    s = answer.shipment
    news = what if answer.changed else f"{what} already (nothing changed)"
    units = sum(a.quantity for a in s.allotments)
    print(f"{s.shipment_id}: {news}; {units} units, {s.status.value}")
    print(f"order is {answer.order_status.value}")


def cmd_shipped(settings: Settings, args: argparse.Namespace) -> None:
    report = _report(
        {
            "type": "shipped",
            "shipment_id": args.shipment,
            "carrier": args.carrier,
            "tracking_number": args.tracking,
            "shipped_at": args.at or datetime.now(UTC),
            "estimated_delivery": args.estimated_delivery,
        }
    )
    answer = _send(settings, args, report)
    _say(answer, f"shipped by {args.carrier}, tracking {args.tracking}")


def cmd_short_pick(settings: Settings, args: argparse.Namespace) -> None:
    if not args.found:
        raise click.UsageError("say what was found: --found LINE:FOUND (repeatable)")
    report = _report(
        {
            "type": "short_pick",
            "shipment_id": args.shipment,
            "lines": [line.model_dump() for line in args.found],
            "reported_at": args.at or datetime.now(UTC),
        }
    )
    answer = _send(settings, args, report)
    _say(answer, "short-picked: what was not found waits for stock again")


def cmd_delivered(settings: Settings, args: argparse.Namespace) -> None:
    report = _report(
        {
            "type": "delivered",
            "shipment_id": args.shipment,
            "delivered_at": args.at or datetime.now(UTC),
        }
    )
    _say(_send(settings, args, report), "delivered")


def shipment_commands() -> list[click.Command]:
    """`shipment shipped|short-pick|delivered`."""
    shipment = group(
        "shipment",
        'what fulfilment reports of a shipment (sites with fulfilment_reports = "shipped")',
    )

    def common(*params: click.Parameter) -> list[click.Parameter]:
        return [
            click.Argument(["shipment"], help="the shipment id, e.g. A-1-S1"),
            *params,
            click.Option(
                ["--at"], type=typed(instant_arg, "instant"), help="when (default: now), ISO 8601"
            ),
            click.Option(
                ["--order"],
                metavar="ORDER",
                help="the shipment's order (default: read from the shipments table)",
            ),
        ]

    shipment.add_command(
        command(
            "shipped",
            cmd_shipped,
            "the shipment left: its units leave the ledger, it is captured (payment at "
            "shipment) and the customer gets the tracking number",
            *common(
                click.Option(["--carrier"], required=True, metavar="CARRIER"),
                click.Option(["--tracking"], required=True, metavar="NUMBER"),
                click.Option(
                    ["--estimated-delivery"],
                    type=typed(date_arg, "date"),
                    help="YYYY-MM-DD, told to the customer",
                ),
            ),
        )
    )
    shipment.add_command(
        command(
            "short-pick",
            cmd_short_pick,
            "the picker found fewer units: what was not found goes back to backorder and is "
            "written off the ledger",
            *common(
                click.Option(
                    ["--found"],
                    type=typed(found_arg, "line"),
                    multiple=True,
                    help="LINE:FOUND, the units of the line found in all (repeatable)",
                ),
            ),
        )
    )
    shipment.add_command(
        command("delivered", cmd_delivered, "the carrier delivered the shipment", *common())
    )
    shipment.add_command(load_command())
    return [shipment]
