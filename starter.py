"""`backorder`: run the service locally and drive order workflows from the command line.

backorder dev                                 embedded Temporal + PostgreSQL + worker
backorder order start FILE.json               start the workflow for an order (JSON contract)
backorder order status ORDER_ID               what the workflow knows about the order
backorder order list [--status S] [--sku S]... orders in the read model, filtered and sorted
backorder order cancel ORDER_ID               withdraw the order (customer service)
backorder inventory receipt SKU LOC QTY       units arrived at a location
backorder inventory adjust SKU LOC DELTA      count correction (DELTA may be negative: -5)
backorder inventory po PO SKU LOC QTY         a purchase order expected [--date YYYY-MM-DD]
backorder inventory po-update PO              new --date and/or --quantity of a purchase order
backorder inventory po-cancel PO              the purchase order will not arrive
backorder inventory po-received PO            units of the purchase order arrived [--quantity N]
backorder inventory po-close PO               no more of the purchase order will come [--reason R]
backorder inventory location ID               define a store or warehouse [--rank N] [--pickup]
backorder inventory product SKU               define a product's backorder switches
backorder inventory load FILE.jsonl           send a feed file, one JSON event a line (- = stdin)
backorder check [--sku S]... [--order ID]...  run an allocation pass (none named: every sku)
backorder allocator status                    the site's allocator: passes, pending work
backorder notifications [--order ID]          customer notices in the outbox (show, retry)
backorder exceptions [--severity S]...        the operators' exception queue (show, resolve)
backorder payments authorise --order F.json  the checkout: hold the money, print the order
backorder payments sandbox [--port P]        serve the sandbox payment gateway on its own
backorder db migrate                          apply schema migrations to BACKORDER_DATABASE__DSN
backorder schema NAME                         JSON Schema of a public payload

Inventory, check and allocator commands take --site (default: the `site` setting); inventory
events take --id EVENT_ID (default: a fresh `cli-<uuid>`; the same id again is applied once).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli.allocator import add_allocator_commands
from cli.errors import UNEXPECTED, CliError, failure_message
from cli.exceptions import add_exception_commands
from cli.inventory import add_inventory_commands
from cli.notifications import add_notification_commands
from cli.orders import add_order_commands
from cli.payments import add_payment_commands
from cli.report import add_report_command
from cli.schema import add_schema_command
from cli.service import add_dev_command, add_maintenance_commands
from config import SettingsError, load_settings
from db.migrate import MigrationError
from embedded.process import EmbeddedError
from runtime.connections import ServiceUnreachable
from runtime.process_exit import run_and_exit


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="backorder", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, help="TOML settings file (default config/backorder.toml)")
    sub = p.add_subparsers(dest="command", required=True)
    add_dev_command(sub)
    add_order_commands(sub)
    add_maintenance_commands(sub)
    add_inventory_commands(sub)
    add_allocator_commands(sub)
    add_notification_commands(sub)
    add_exception_commands(sub)
    add_payment_commands(sub)
    add_schema_command(sub)
    add_report_command(sub)
    return p


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given as command-line flags; validated like every other source."""
    dev = {
        name: value
        for name in ("temporal_port", "ui_port", "postgres_port", "payments_port")
        if (value := getattr(args, name, None)) is not None
    }
    overrides: dict[str, Any] = {"dev": dev} if dev else {}
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = args.data_dir
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Whatever a user can type ends in a message, never a traceback: a
    command's own (CliError...) or, for failures no command words itself, `failure_message`."""
    args = parser().parse_args(argv)
    try:
        settings = load_settings(args.config, **flag_overrides(args))
        args.run(settings, args)
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    except (CliError, EmbeddedError, ServiceUnreachable, MigrationError) as err:
        print(f"backorder: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise  # `backorder ... | head`: not a failure (`run_and_exit`)
    except UNEXPECTED as err:
        print(f"backorder: {failure_message(err)}", file=sys.stderr)
        return 1
    return 0


def cli() -> None:
    """Console-script entry point (`backorder`)."""
    run_and_exit(main)


if __name__ == "__main__":
    cli()
