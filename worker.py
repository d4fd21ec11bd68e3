"""`backorder-worker`: the worker that runs every workflow and activity of the service.

Two Temporal workers in one process: the orders' on `temporal.task_queue` and the allocators'
on their own queue (`temporal.allocator_queue`), so an allocation pass and its answer to the
feed never wait behind thousands of orders' tasks. The orders' worker still serves allocators
started on its queue before they had their own, until they move (`move_to_its_queue`).

In production it joins a real Temporal cluster (or Temporal Cloud) and a real PostgreSQL named
in the settings; `backorder dev` runs the same worker against the embedded servers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.allocation import AllocationActivities
from activities.backorder_limits import BackorderLimits
from activities.fulfilment import FulfilmentActivities
from activities.inventory import InventoryActivities
from activities.notice_delivery import NoticeDeliveryActivities
from activities.notices import NoticeActivities
from activities.opening import OpeningActivities
from activities.order_effects import OrderEffectActivities
from activities.payments import PaymentActivities
from activities.policy import PolicyActivities
from activities.read_model import ReadModelActivities
from activities.stuck_steps import StuckSteps
from config import Settings, SettingsError, load_settings
from db.migrate import MigrationError, migrate
from notifications.channels import channel_for
from notifications.message import Channel
from payments.choice import gateway_for
from payments.gateway import PaymentGateway
from payments.sandbox import SandboxGateway
from payments.server import sandbox_gateway_server
from runtime.allocator import move_to_its_queue
from runtime.connections import ServiceUnreachable, connect_temporal, open_pool
from runtime.exception_news import ExceptionNews
from runtime.notice_delivery import ensure_notice_delivery
from runtime.process_exit import run_and_exit
from runtime.sweep import ensure_sweep_schedules
from runtime.temporal_setup import missing_search_attributes
from workflows.allocator import AllocatorWorkflow
from workflows.backorder import BackorderWorkflow
from workflows.notice_delivery import NoticeDeliveryWorkflow
from workflows.sweep import AllocatorSweepWorkflow

logger = logging.getLogger(__name__)

WORKFLOWS: list[type] = [
    BackorderWorkflow,
    AllocatorWorkflow,
    AllocatorSweepWorkflow,
    NoticeDeliveryWorkflow,
]


WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "domain", "workflows", "activities"
    )
)
"""The sandbox, with our own deterministic modules passed through: imported once per worker,
not again for every workflow it runs (that cost the worker 500 KB per cached workflow and most
of its CPU per order). They keep no state between calls but pure caches."""


def activities(
    pool: AsyncConnectionPool,
    settings: Settings,
    client: Client,
    *,
    gateway: PaymentGateway | None = None,
    channel: Channel | None = None,
    allocation: AllocationActivities | None = None,
) -> list[Callable[..., Any]]:
    """Every activity the workflows call, on the worker's one connection pool.

    `gateway`: where payments go; None is the sandbox called in process (tests that are not
    about the transport). `channel`: how notices leave the outbox; None keeps them there."""
    gateway = gateway or SandboxGateway(pool, settings.payments.sandbox_authorisation_days)
    wake = partial(ensure_notice_delivery, client, settings, wake=True) if channel else None
    allocation = allocation or AllocationActivities(pool, settings, client)
    news = ExceptionNews(client, pool)
    read_model = ReadModelActivities(pool, settings.site)
    inventory = InventoryActivities(pool, allocation.nudge_allocator)
    notices = NoticeActivities(pool, settings.notifications.storefront, wake, news)
    payments = PaymentActivities(gateway)
    policy = PolicyActivities(settings)
    return [
        *allocation.activities(),
        *read_model.activities(),
        policy.load_policy,
        *inventory.activities(),
        *OpeningActivities(
            read_model.claim_order,
            policy.load_policy,
            inventory.check_availability,
            BackorderLimits(pool),
        ).activities(),
        *payments.activities(),
        *notices.activities(),
        *NoticeDeliveryActivities(pool, settings.notifications, channel, news).activities(),
        *FulfilmentActivities(pool).activities(),
        *OrderEffectActivities(
            pool, inventory, notices, read_model, payments.capture_payment
        ).activities(),
    ]


class ServiceWorkers:
    """The orders' worker and the allocators' worker, run together (`async with`)."""

    def __init__(self, orders: Worker, allocators: Worker | None) -> None:
        self.orders, self.allocators = orders, allocators

    @property
    def task_queue(self) -> str:
        """The orders' task queue."""
        return self.orders.task_queue

    async def __aenter__(self) -> ServiceWorkers:
        async with AsyncExitStack() as stack:
            for worker in (self.orders, self.allocators):
                if worker is not None:
                    await stack.enter_async_context(worker)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()


def build_worker(
    client: Client,
    pool: AsyncConnectionPool,
    settings: Settings,
    *,
    gateway: PaymentGateway | None = None,
    channel: Channel | None = None,
) -> ServiceWorkers:
    """The service's workers on the worker's one pool: the orders' (every workflow and activity)
    and, unless configured to share it, the allocators' on their own queue."""
    allocation = AllocationActivities(pool, settings, client)
    common: dict[str, Any] = {
        "interceptors": [StuckSteps(pool, ExceptionNews(client, pool))],
        "graceful_shutdown_timeout": timedelta(seconds=10),
        "workflow_runner": WORKFLOW_RUNNER,
    }
    orders = Worker(
        client,
        task_queue=settings.temporal.task_queue,
        workflows=WORKFLOWS,
        activities=activities(
            pool, settings, client, gateway=gateway, channel=channel, allocation=allocation
        ),
        **common,
    )
    allocators = None
    if settings.temporal.allocator_queue != settings.temporal.task_queue:
        allocators = Worker(
            client,
            task_queue=settings.temporal.allocator_queue,
            workflows=[AllocatorWorkflow],
            activities=[allocation.allocate, allocation.deliver_allotments],
            **common,
        )
    return ServiceWorkers(orders, allocators)


def serves_sandbox(settings: Settings) -> bool:
    """`backorder dev` serves the sandbox gateway itself unless one is configured."""
    return settings.payments.gateway == "sandbox" and not settings.payments.sandbox_url


async def serve(
    settings: Settings,
    dsn: str,
    stop: asyncio.Event,
    on_ready: Callable[[], None] | None = None,
    *,
    with_sandbox: bool = False,
) -> None:
    """Migrate, connect and poll until `stop` is set; then drain and close. `with_sandbox`:
    also serve the sandbox payment gateway on `dev.host:dev.payments_port` (`backorder dev`)."""
    try:
        await migrate(dsn)
    except psycopg.OperationalError as err:
        raise ServiceUnreachable(f"cannot connect to PostgreSQL: {err}") from None
    client = await connect_temporal(settings)
    await check_search_attributes(client, settings.temporal.namespace)
    await ensure_sweep_schedules(client, settings)
    pool = await open_pool(dsn, settings)
    try:
        async with AsyncExitStack() as stack:
            if with_sandbox:
                await stack.enter_async_context(
                    sandbox_gateway_server(
                        pool,
                        settings.dev.host,
                        settings.dev.payments_port,
                        settings.payments.sandbox_authorisation_days,
                    )
                )
            gateway = gateway_for(settings)
            stack.push_async_callback(gateway.aclose)
            channel = channel_for(settings.notifications)
            if channel is not None:
                stack.push_async_callback(channel.aclose)
                await ensure_notice_delivery(client, settings)
            worker = build_worker(client, pool, settings, gateway=gateway, channel=channel)
            async with worker:
                try:
                    await move_to_its_queue(client, settings, settings.site)
                except RPCError as err:  # the next start asks again; nothing is lost meanwhile
                    logger.warning("could not move the allocator to its task queue: %s", err)
                if on_ready is not None:
                    on_ready()
                await stop.wait()
    finally:
        await pool.close()


async def check_search_attributes(client: Client, namespace: str) -> None:
    """Refuse to start on a namespace without our search attributes (orders setting one would
    fail every task): say which, and how to add them."""
    missing = await missing_search_attributes(client, namespace)
    if missing is None:
        logger.warning("namespace %s does not list its search attributes; not checked", namespace)
    elif missing:
        raise ServiceUnreachable(
            f"Temporal namespace {namespace} lacks the search attributes {', '.join(missing)}: "
            "run `backorder setup temporal` (Temporal Cloud: add them in the Cloud UI or with "
            "tcld), then start the worker again"
        )


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="backorder-worker",
        description="Run the backorder worker against the Temporal cluster and PostgreSQL "
        "named in the settings (production mode).",
    )
    parser.add_argument("--config", type=Path, help="TOML settings file")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    missing = [
        env
        for env, empty in (
            ("BACKORDER_TEMPORAL__TARGET", settings.embedded_temporal),
            ("BACKORDER_DATABASE__DSN", settings.embedded_database),
            (
                "BACKORDER_PAYMENTS__GATEWAY=stripe or BACKORDER_PAYMENTS__SANDBOX_URL",
                serves_sandbox(settings),
            ),
        )
        if empty
    ]
    if missing:
        print(
            f"backorder-worker needs {' and '.join(missing)} (or the same in the config file); "
            "for the embedded servers run `backorder dev` instead",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings)

    async def run() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await serve(settings, settings.database.dsn.get_secret_value(), stop)

    try:
        asyncio.run(run())
    except (ServiceUnreachable, MigrationError) as err:
        print(f"backorder-worker: {err}", file=sys.stderr)
        return 1
    return 0


def cli() -> None:
    """Console-script entry point (`backorder-worker`)."""
    run_and_exit(main)


if __name__ == "__main__":
    cli()
