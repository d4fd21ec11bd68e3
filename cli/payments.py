"""`backorder payments`: the sandbox gateway on its own, and a checkout's authorisation.

`backorder payments sandbox` serves the sandbox gateway: `backorder dev` serves it in-process; a
deployment without real money (a staging stack) runs it as a service of its own against the
application's PostgreSQL and points the workers' `payments.sandbox_url` at it.

`backorder payments authorise` plays the storefront's checkout against the gateway the settings
configure (the one the worker will capture from): it authorises an order's value, or an amount,
and prints the `payment` object an order carries, or the whole order with it filled in.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import click
from pydantic import TypeAdapter, ValidationError

from cli.app import command, group, one_of, typed
from cli.common import order_id_arg, whole_number
from cli.errors import BadValue, CliError, first_reason, invalid, validated
from cli.orders import read_order, user_file
from config import Settings
from db.migrate import migrate
from domain.contract import Currency, Money, minor_units_problem
from domain.order import Order, OrderPayment, at_boundary
from payments.choice import gateway_for
from payments.gateway import AuthorisationResult, GatewayUnavailable, PaymentError
from payments.http_gateway import UnexpectedGatewayResponse
from payments.server import sandbox_gateway_server
from runtime.connections import open_pool


async def serve_sandbox(settings: Settings, host: str, port: int, stop: asyncio.Event) -> None:
    dsn = settings.database_dsn
    await migrate(dsn)
    pool = await open_pool(dsn, settings)
    try:
        days = settings.payments.sandbox_authorisation_days
        async with sandbox_gateway_server(pool, host, port, days) as url:
            print(f"sandbox payment gateway on {url} (authorisations hold {days} days)", flush=True)
            await stop.wait()
    finally:
        await pool.close()


def cmd_sandbox(settings: Settings, args: argparse.Namespace) -> None:
    from worker import configure_logging, stop_on_signals

    configure_logging(settings)

    async def go() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await serve_sandbox(settings, args.host, args.port or settings.dev.payments_port, stop)

    asyncio.run(go())


# -- the checkout's authorisation --------------------------------------------------------------

MONEY = TypeAdapter(Money)
CURRENCY = TypeAdapter(Currency)


@dataclass(frozen=True)
class Charge:
    """What a checkout authorises: the order it is for (the gateway refuses a capture for
    another order), an amount and its currency."""

    order_id: str
    amount: Decimal
    currency: str

    @property
    def key(self) -> str:
        """One key per order: authorising an order again returns its first authorisation."""
        return f"checkout/{self.order_id}"


def amount_arg(value: str) -> Decimal:
    """An amount as the order contract writes money ("50.00"), more than zero."""
    try:
        amount = MONEY.validate_python(value)
    except ValidationError as err:
        raise BadValue(f"{value!r}: {first_reason(err)}") from None
    if amount <= 0:
        raise BadValue(f"{value!r}: nothing to authorise")
    return amount


def currency_arg(value: str) -> str:
    """An ISO 4217 code the order contract accepts."""
    try:
        return CURRENCY.validate_python(value)
    except ValidationError as err:
        raise BadValue(f"{value!r}: {first_reason(err)}") from None


def charge_for_order(order: Order) -> Charge:
    """The order's whole value, unless it is already paid for or worth nothing."""
    if order.payment is not None:
        raise CliError(
            f"order {order.order_id} already carries a payment ({order.payment.reference})"
        )
    if order.value <= 0:
        raise CliError(f"order {order.order_id} is worth {order.value} {order.currency}")
    return Charge(order.order_id, order.value, order.currency)


def charge_from_args(args: argparse.Namespace) -> Charge:
    """`--amount` in `--currency` for `--order-id`, in the currency's minor units as an
    order's payment must be."""
    if args.currency is None or args.order_id is None:
        raise CliError("--amount needs --currency and --order-id (the order it pays for)")
    if (problem := minor_units_problem(args.amount, args.currency)) is not None:
        raise CliError(f"--amount: {problem}")
    return Charge(args.order_id, args.amount, args.currency)


async def authorise(settings: Settings, charge: Charge) -> OrderPayment:
    """Hold the charge at the configured gateway, as the storefront's checkout would, and
    return it as the order's `payment`."""
    # the gateway's answer says when the hold ends, not when it began: the moment before the
    # request is the earliest it can have begun (re-authorisation falls due no later for it)
    asked_at = datetime.now(UTC).replace(microsecond=0)
    with _gateway_log_muted():
        async with gateway_for(settings) as gateway:
            try:
                auth = await gateway.authorise(
                    charge.key, charge.order_id, charge.amount, charge.currency
                )
            except (PaymentError, GatewayUnavailable, UnexpectedGatewayResponse) as err:
                raise gateway_failure(settings, charge, err) from None
    return order_payment(charge, auth, asked_at)


@contextmanager
def _gateway_log_muted() -> Iterator[None]:
    """The gateways log every call for the worker's log; a command's one error line says the
    same, so an unconfigured logging must not print it a second time."""
    logger, muted = logging.getLogger("payments"), logging.NullHandler()
    logger.addHandler(muted)
    try:
        yield
    finally:
        logger.removeHandler(muted)


def order_payment(charge: Charge, auth: AuthorisationResult, asked_at: datetime) -> OrderPayment:
    """The gateway's answer as the order contract's `payment`, if an order can carry it."""
    if auth.amount != charge.amount:
        raise CliError(
            f"the gateway authorised {auth.amount} {charge.currency} ({auth.reference}), "
            f"not {charge.amount}"
        )
    if auth.expires_at <= asked_at:  # a key used long ago: its stored answer has lapsed
        raise CliError(
            f"order {charge.order_id} was authorised before ({auth.reference}, key "
            f"{charge.key}) and that authorisation lapsed at {auth.expires_at:%Y-%m-%d %H:%M} UTC"
        )
    return validated(
        OrderPayment,
        "payment",
        reference=auth.reference,
        amount=charge.amount,
        authorised_at=auth.authorised_at or asked_at,
        expires_at=auth.expires_at,
    )


def gateway_failure(settings: Settings, charge: Charge, err: Exception) -> CliError:
    """One line saying what the gateway answered, and whether trying again can help."""
    where = gateway_name(settings)
    if isinstance(err, PaymentError):
        what = f"authorising {charge.amount} {charge.currency} for order {charge.order_id}"
        return CliError(f"{where} refused {what}: {err}")
    hint = ""
    if settings.payments.gateway == "sandbox" and not settings.payments.sandbox_url:
        hint = " (is `backorder dev` running?)"
    return CliError(
        f"{where} did not answer{hint}: {err}; running the command again is safe "
        f"(the same key, {charge.key}, authorises once)"
    )


def gateway_name(settings: Settings) -> str:
    """The configured gateway, for messages."""
    if settings.payments.gateway == "stripe":
        return f"Stripe ({settings.payments.stripe_base_url})"
    return f"the sandbox gateway {settings.sandbox_url}"


def paid_order(order: Order, payment: OrderPayment) -> Order:
    """The order as it was given, with its `payment`, checked again as an order."""
    given = order.model_dump(mode="json", exclude_unset=True)
    given["payment"] = payment.model_dump(mode="json", exclude_none=True)
    try:
        return Order.model_validate(given, context=at_boundary(datetime.now(UTC)))
    except ValidationError as err:
        raise invalid(err, "order with its payment") from None


def cmd_authorise(settings: Settings, args: argparse.Namespace) -> None:
    """Everything is checked before the gateway is asked: a bad input authorises nothing.
    The JSON goes to stdout (to redirect into a file), what happened to stderr."""
    one_of(args, "order", "amount")
    if args.order is None and args.amount is None:
        raise click.UsageError("--order FILE.json or --amount is required")
    if args.order is not None and (args.currency or args.order_id):
        raise CliError("--currency and --order-id go with --amount; --order takes the order's")
    order = read_order(args.order) if args.order is not None else None
    charge = charge_for_order(order) if order is not None else charge_from_args(args)
    payment = asyncio.run(authorise(settings, charge))
    print(
        f"authorised {charge.amount} {charge.currency} for order {charge.order_id} at "
        f"{gateway_name(settings)}: {payment.reference}, held until "
        f"{payment.expires_at:%Y-%m-%d %H:%M} UTC",
        file=sys.stderr,
    )
    paid = payment if order is None else paid_order(order, payment)
    print(paid.model_dump_json(exclude_unset=True, indent=2))


def payment_commands() -> list[click.Command]:
    """`payments sandbox` and `payments authorise`."""
    payments = group("payments", "the payment gateway: serve the sandbox, authorise a checkout")
    payments.add_command(
        command(
            "sandbox",
            cmd_sandbox,
            "serve the sandbox gateway (books in the settings' PostgreSQL)",
            click.Option(
                ["--host"],
                metavar="HOST",
                default="127.0.0.1",
                show_default=True,
                help="address to listen on",
            ),
            click.Option(
                ["--port"],
                type=typed(whole_number(1, 65535), "port"),
                help="default: dev.payments_port (8470)",
            ),
        )
    )
    payments.add_command(
        command(
            "authorise",
            cmd_authorise,
            "Authorise at the configured gateway (payments.gateway) as a checkout does, under "
            "the key checkout/<order id> (again: the same authorisation). With --order, print "
            "the order with its payment; with --amount, the payment object.",
            click.Option(
                ["--order"],
                type=user_file(),
                metavar="FILE.json",
                help="an order (- = stdin): its whole value",
            ),
            click.Option(
                ["--amount"],
                type=typed(amount_arg, "amount"),
                help='an amount such as "50.00" (with --currency, --order-id)',
            ),
            click.Option(
                ["--currency"],
                type=typed(currency_arg, "currency"),
                help="ISO 4217 code of --amount, e.g. USD",
            ),
            click.Option(
                ["--order-id"],
                type=typed(order_id_arg, "order_id"),
                help="the order --amount pays for",
            ),
            short_help="authorise a checkout at the configured gateway; print the order's payment",
        )
    )
    return [payments]
