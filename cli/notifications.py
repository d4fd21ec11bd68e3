"""`backorder notifications`: what customers were (or will be) told, read from the outbox.

backorder notifications [--order ID] [--status S] [--kind K] [--limit N] [--json]
backorder notifications show KEY        the rendered message and its delivery
backorder notifications retry KEY...    send failed notices again (--failed: all of them)
backorder notifications delivery        the delivery workflow's totals
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import click
from rich import box
from rich.table import Table

from cli.app import command, flag, group
from cli.database import database
from cli.errors import CliError
from cli.tables import show
from config import Settings
from runtime.connections import connect_temporal
from runtime.notice_delivery import delivery_status, ensure_notice_delivery

STATUSES = ("pending", "delivered", "failed")
_COLUMNS = """key, order_id, kind, recipient, subject, body, status, attempts, channel,
              last_error, delivery_ref, created_at, delivered_at, next_attempt_at"""


async def list_notices(settings: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    where, params = [], []
    for column, value in (("order_id", args.order), ("status", args.status), ("kind", args.kind)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    sql = f"SELECT {_COLUMNS} FROM notices"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, key LIMIT %s"
    async with database(settings) as conn:
        cur = await conn.execute(sql, (*params, args.limit))
        return await cur.fetchall()


def _state(n: dict[str, Any]) -> str:
    state: str = n["status"]
    if state == "pending" and n["attempts"]:
        return f"pending (try {n['attempts']} failed: {n['last_error']})"
    if state == "failed":
        return f"FAILED after {n['attempts']}: {n['last_error']}"
    return state


def notices_table(rows: list[dict[str, Any]]) -> Table:
    """Newest first: when, which order, what kind, to whom, how its delivery stands, its
    subject and key (the key is what `show` and `retry` take)."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("created (UTC)", "order", "kind", "to", "delivery", "subject", "key"):
        table.add_column(name, overflow="fold")
    for n in rows:
        table.add_row(
            f"{n['created_at']:%Y-%m-%d %H:%M}",
            n["order_id"],
            n["kind"],
            n["recipient"],
            _state(n),
            n["subject"],
            n["key"],
        )
    return table


def cmd_list(settings: Settings, args: argparse.Namespace) -> None:
    rows = asyncio.run(list_notices(settings, args))
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        print("no notices" + (" match" if args.order or args.status or args.kind else ""))
        return
    show(notices_table(rows))


async def _one(settings: Settings, key: str) -> dict[str, Any]:
    async with database(settings) as conn:
        cur = await conn.execute(f"SELECT {_COLUMNS} FROM notices WHERE key = %s", (key,))
        row = await cur.fetchone()
    if row is None:
        raise CliError(f"no notice with key {key}")
    return row


def cmd_show(settings: Settings, args: argparse.Namespace) -> None:
    n = asyncio.run(_one(settings, args.key))
    delivered = f", delivered {n['delivered_at']:%Y-%m-%d %H:%M:%S}" if n["delivered_at"] else ""
    print(f"To: {n['recipient']}\nSubject: {n['subject']}\n\n{n['body']}")
    print(
        f"-- {n['kind']} for order {n['order_id']}, key {n['key']}: {n['status']}, "
        f"{n['attempts']} tries{delivered}"
        + (f" via {n['channel']} ({n['delivery_ref']})" if n["delivery_ref"] else "")
        + (f"; last error: {n['last_error']}" if n["last_error"] else "")
    )


async def retry_notices(settings: Settings, keys: list[str], every_failed: bool) -> list[str]:
    """Make failed notices due again with a fresh count of tries; the keys requeued."""
    async with database(settings) as conn:
        cur = await conn.execute(
            """UPDATE notices SET status = 'pending', attempts = 0, next_attempt_at = now()
                WHERE status = 'failed' AND (%s OR key = ANY(%s))
            RETURNING key""",
            (every_failed, keys),
        )
        requeued = [row["key"] for row in await cur.fetchall()]
    unknown = sorted(set(keys) - set(requeued))
    if unknown:
        print(f"not requeued (no such notice, or not failed): {', '.join(unknown)}")
    if requeued and settings.notifications.channel != "outbox":
        await ensure_notice_delivery(await connect_temporal(settings), settings, wake=True)
    return requeued


def cmd_retry(settings: Settings, args: argparse.Namespace) -> None:
    if not args.keys and not args.failed:
        raise CliError("name the notices to retry, or --failed for every failed one")
    requeued = asyncio.run(retry_notices(settings, list(args.keys), args.failed))
    print(f"requeued {len(requeued)} notice{'s' if len(requeued) != 1 else ''}")
    if requeued and settings.notifications.channel == "outbox":
        print("notifications.channel is outbox: they stay in the outbox, nothing is sent")


def cmd_delivery(settings: Settings, args: argparse.Namespace) -> None:
    if settings.notifications.channel == "outbox":
        print("notifications.channel is outbox: notices are kept, not delivered (no delivery)")
        return

    async def go() -> None:
        state = await delivery_status(await connect_temporal(settings), settings)
        print(
            f"notice delivery: {state.rounds} rounds, {state.delivered} delivered, "
            f"{state.retried} tries failed and retried, {state.failed} given up; polls every "
            f"{state.poll_interval.total_seconds():g}s"
        )
        if state.last is not None:
            last = state.last
            print(
                f"  last round via {last.channel}: {last.claimed} claimed, {last.delivered} "
                f"delivered; next due {last.next_due or 'nothing pending'}"
            )

    try:
        asyncio.run(go())
    except Exception as err:
        if isinstance(err, CliError):
            raise
        raise CliError(f"no notice delivery to ask: {err}") from None


def notification_commands() -> list[click.Command]:
    """`notifications` (lists), `notifications show`, `retry` and `delivery`."""
    notifications = group(
        "notifications",
        "list customer notices in the outbox, show, retry",
        click.Option(["--order"], metavar="ORDER", help="only this order's notices"),
        click.Option(["--status"], type=click.Choice(STATUSES)),
        click.Option(
            ["--kind"], metavar="KIND", help="on_backorder, still_waiting, ftc_delay_option, ..."
        ),
        click.Option(
            ["--limit"], type=int, metavar="LIMIT", default=50, help="newest first (default 50)"
        ),
        flag("--json", help="machine-readable rows"),
        handler=cmd_list,
    )
    notifications.add_command(
        command(
            "show",
            cmd_show,
            "the rendered message and how its delivery went",
            click.Argument(["key"]),
        )
    )
    notifications.add_command(
        command(
            "retry",
            cmd_retry,
            "send failed notices again",
            click.Argument(["keys"], nargs=-1, metavar="[KEY]..."),
            flag("--failed", help="every failed notice"),
        )
    )
    notifications.add_command(command("delivery", cmd_delivery, "the delivery workflow's totals"))
    return [notifications]
