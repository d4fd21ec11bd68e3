"""`backorder`: run the service locally and drive order workflows from the command line.

The commands live in `cli/`, one module per subsystem, declared with Click (`cli.app`); this
module gathers them under the root and is the one place failures become messages.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from cli import (
    allocator,
    exceptions,
    inventory,
    notifications,
    orders,
    payments,
    report,
    schema,
    service,
    shipments,
)
from cli.app import Resolved, resolve, root
from cli.errors import UNEXPECTED, CliError, failure_message
from config import SettingsError
from db.migrate import MigrationError
from embedded.process import EmbeddedError
from runtime.connections import ServiceUnreachable
from runtime.process_exit import run_and_exit

ABOUT = "Durable backorder release for online merchants, on Temporal."
EPILOG = (
    "Inventory, check, allocator and report commands take --site (default: the `site` "
    "setting); inventory events take --id EVENT_ID (default: a fresh `cli-<uuid>`; the same id "
    "again is applied once). Every read command has --json. `backorder COMMAND --help` for more."
)


def app() -> click.Group:
    """`backorder` with every command, one module per subsystem."""
    return root(
        ABOUT,
        EPILOG,
        [
            *service.service_commands(),
            *orders.order_commands(),
            *shipments.shipment_commands(),
            *inventory.inventory_commands(),
            *allocator.allocator_commands(),
            *notifications.notification_commands(),
            *exceptions.exception_commands(),
            *payments.payment_commands(),
            *schema.schema_commands(),
            *report.report_commands(),
        ],
    )


def parse(argv: Sequence[str]) -> Resolved:
    """The handler and values a command line names, without running it."""
    return resolve(app(), argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Whatever a user can type ends in a message, never a traceback: a
    usage error (exit 2), a command's own failure (CliError..., exit 1) or, for failures no
    command words itself, `failure_message`."""
    command = app()
    try:  # not `command.main`: it turns a closed pipe into exit 1 (`run_and_exit` makes it 0)
        with command.make_context("backorder", list(sys.argv[1:] if argv is None else argv)) as ctx:
            code = command.invoke(ctx)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.Abort:
        return 130
    except click.ClickException as err:  # a usage error: the option and why, exit 2
        err.show()
        return err.exit_code
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
    return code if isinstance(code, int) else 0


def cli() -> None:
    """Console-script entry point (`backorder`)."""
    run_and_exit(main)


if __name__ == "__main__":
    cli()
