"""A stack for fault experiments on real processes, and the helpers to drive it.

One `Stack` per test: a fresh migrated database on an embedded PostgreSQL, a Temporal server
(the session's dev server, or a `TemporalDevServer` of the test's own when the test restarts
it), the sandbox payment gateway served over HTTP from this process (its books in the same
database, its faults armed over HTTP), a site and a task queue of the test's own, and
`backorder-worker` processes started, killed and replaced on demand.

    async with open_stack(pg_server, temporal_address, client, tmp_path, policy={...}) as s:
        worker = await s.start_worker()
        await s.define(sku)
        orders = [await s.order([(sku, 2, "10.00")]) for _ in range(10)]
        await s.start_orders(orders)
        await s.wait_accepted(orders)
        await s.post(s.receipt(sku, 20))          # no waiting for the pass
        await s.wait_until("SELECT count(*) FROM payment_captures", (), lambda n: n >= 3)
        await worker.kill()                       # SIGKILL
        await s.start_worker()
        await s.wait_ended(orders)
        await check_invariants(s.dsn, s.client, order_ids=[o.order_id for o in orders])

Sizes scale with `BACKORDER_CHAOS_SCALE` (an integer, default 1): `scaled(20)`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from config import Settings
from db.migrate import migrate
from domain.inventory import (
    EventStatus,
    InventoryBatch,
    InventoryEvent,
    LocationDefined,
    ProductDefined,
    StockReceived,
)
from domain.order import Order
from embedded.postgres import EmbeddedPostgres
from embedded.process import _die_with_parent, log_tail
from embedded.temporal import TemporalDevServer
from payments.http_gateway import HttpGateway
from payments.sandbox import SandboxGateway
from payments.sandbox_app import SandboxApp
from payments.server import serve_asgi
from runtime import allocator
from runtime.allocator import start_input
from runtime.sweep import schedule_id
from workflows.allocator import AllocatorWorkflow
from workflows.allocator_messages import FeedResult, allocator_id
from workflows.backorder import BackorderWorkflow
from workflows.converter import data_converter
from workflows.messages import BackorderSummary

T = TypeVar("T")
OrderHandle = WorkflowHandle[BackorderWorkflow, BackorderSummary]

SCALE = max(1, int(os.environ.get("BACKORDER_CHAOS_SCALE", "1") or "1"))
"""`make chaos` runs the suite with 10: every size below is multiplied by it."""

WORKER_BINARY = Path(sys.executable).parent / "backorder-worker"
BATCH_WINDOW = dt.timedelta(milliseconds=300)


def scaled(n: int) -> int:
    """`n` times BACKORDER_CHAOS_SCALE."""
    return n * SCALE


def tag() -> str:
    return uuid.uuid4().hex[:8]


# -- polling ------------------------------------------------------------------------------------


async def eventually(
    probe: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool],
    *,
    within: float = 60.0,
    interval: float = 0.2,
    what: str = "the condition",
) -> T:
    """Poll `probe` until `ok(value)`; fail with the last value after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await probe()
        if ok(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what}: still not there after {within:.0f}s (last: {value!r})")
        await asyncio.sleep(interval)


async def rows(dsn: str, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
    """Every row of one query, on a connection of its own."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(sql.encode(), params or None)
        return list(await cur.fetchall())


async def scalar(dsn: str, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
    found = await rows(dsn, sql, params)
    return found[0][0] if found else None


# -- worker processes ---------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """One `backorder-worker` OS process, logging to its own file."""

    name: str
    log_file: Path
    proc: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL: no drain, no goodbye; in-flight activities are lost to their timeouts."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self, within: float = 20.0) -> int:
        """SIGTERM (drain in-flight activities), then SIGKILL if it takes too long."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), within)
            except TimeoutError:
                await self.kill()
        code = self.proc.returncode
        assert code is not None
        return code

    def log(self, lines: int = 40) -> str:
        return log_tail(self.log_file, lines)

    def count(self, pattern: str) -> int:
        """Lines of the log that match a regular expression."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if re.search(pattern, line))


async def pollers(client: Client, task_queue: str, kind: TaskQueueType.ValueType) -> list[str]:
    """Identities (`<pid>@<host>`) polling the task queue now."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=kind,
        )
    )
    return [p.identity for p in response.pollers]


# -- the sandbox gateway ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    """The sandbox gateway served from the test's process over HTTP."""

    url: str
    app: SandboxApp

    async def arm(self, **fault: Any) -> None:
        """Arm a fault, as an operator would: `arm(operation="void", kind="timeout",
        delay_seconds=5, times=3, order_id=...)` (see `payments.sandbox_app.Fault`)."""
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{self.url}/_sandbox/faults", json=fault)
        assert response.status_code == 200, response.text

    async def clear(self) -> None:
        async with httpx.AsyncClient() as http:
            response = await http.delete(f"{self.url}/_sandbox/faults")
        assert response.status_code == 200, response.text

    async def armed(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{self.url}/_sandbox/faults")
        faults: list[dict[str, Any]] = response.json()["faults"]
        return faults


# -- the stack ----------------------------------------------------------------------------------


@dataclass
class Stack:
    """Everything one experiment runs on. Create it with `open_stack`."""

    dsn: str
    pool: AsyncConnectionPool
    client: Client
    temporal_address: str
    sandbox: Sandbox
    site: str
    task_queue: str
    workdir: Path
    policy: Mapping[str, Any]
    location: str
    worker_env_extra: Mapping[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)
    _gateway: HttpGateway | None = None

    # -- settings and workers ----------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The test side's settings (the feed and order starts use them)."""
        return Settings(
            site=self.site,
            temporal={"target": self.temporal_address, "task_queue": self.task_queue},
            database={"dsn": self.dsn},
            payments={"sandbox_url": self.sandbox.url},
            allocator={"batch_window": BATCH_WINDOW},
            sites={self.site: {"policy": dict(self.policy)}},
        )

    def write_config(self) -> Path:
        """The workers' TOML settings file: the site's policy as `[sites.<site>.policy]`."""
        path = self.workdir / "backorder.toml"
        lines = [f"[sites.{_toml_key(self.site)}.policy]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in self.policy.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    def worker_env(self, **extra: str) -> dict[str, str]:
        """The environment of a `backorder-worker` for this stack (inherited BACKORDER_*
        variables are dropped so nothing from the caller's shell leaks in)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDER_")}
        env.update(
            {
                "BACKORDER_CONFIG": str(self.write_config()),
                "BACKORDER_TEMPORAL__TARGET": self.temporal_address,
                "BACKORDER_TEMPORAL__TASK_QUEUE": self.task_queue,
                "BACKORDER_DATABASE__DSN": self.dsn,
                "BACKORDER_SITE": self.site,
                "BACKORDER_PAYMENTS__SANDBOX_URL": self.sandbox.url,
                "BACKORDER_ALLOCATOR__BATCH_WINDOW": f"PT{BATCH_WINDOW.total_seconds()}S",
                "BACKORDER_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.worker_env_extra)
        env.update(extra)
        return env

    async def start_worker(self, *, ready_within: float = 60.0, **env: str) -> WorkerProcess:
        """Start one more `backorder-worker` and wait until it polls both task queue kinds."""
        name = f"worker-{len(self.workers) + 1}"
        log_file = self.workdir / f"{name}.log"
        with log_file.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                WORKER_BINARY,
                env=self.worker_env(**env),
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(signal.SIGKILL),
            )
        worker = WorkerProcess(name, log_file, proc)
        self.workers.append(worker)
        await self.wait_polling(worker, within=ready_within)
        return worker

    async def wait_polling(self, worker: WorkerProcess, within: float = 60.0) -> None:
        """Until the worker polls the stack's task queue for workflow and activity tasks."""
        me = f"{worker.pid}@"
        kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if not worker.alive:
                raise AssertionError(
                    f"{worker.name} (pid {worker.pid}) exited with {worker.proc.returncode}:\n"
                    + worker.log()
                )
            with suppress(Exception):  # the server may be restarting
                found = [await pollers(self.client, self.task_queue, k) for k in kinds]
                if all(any(i.startswith(me) for i in ids) for ids in found):
                    return
            if loop.time() > deadline:
                raise AssertionError(
                    f"{worker.name} (pid {worker.pid}) not polling {self.task_queue} after "
                    f"{within:.0f}s:\n{worker.log()}"
                )
            await asyncio.sleep(0.2)

    def alive_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive]

    # -- inventory -----------------------------------------------------------------------------

    def event_id(self) -> str:
        return f"ev-{uuid.uuid4().hex[:12]}"

    async def feed(self, *events: InventoryEvent) -> FeedResult:
        """Apply events through the site's allocator and wait for the pass (update-with-start,
        exactly as `runtime.allocator.send_inventory`); every event must be applied."""
        result = await allocator.send_inventory(
            self.client, self.settings, self.site, InventoryBatch(events=events)
        )
        bad = [o for o in result.outcomes if o.status is EventStatus.REJECTED]
        assert not bad, f"events rejected: {bad}"
        return result

    async def post(self, *events: InventoryEvent) -> None:
        """Hand events to the allocator without waiting for their pass (the `inventory`
        signal, with start), as a feed that fires and forgets."""
        await self.client.start_workflow(
            AllocatorWorkflow.run,
            start_input(self.settings, self.site),
            id=allocator_id(self.site),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="inventory",
            start_signal_args=[InventoryBatch(events=events)],
        )

    async def define(self, *skus: str, location: str | None = None, rank: int = 0) -> None:
        """The location and the products, through the feed."""
        await self.feed(
            LocationDefined(
                event_id=self.event_id(), location_id=location or self.location, rank=rank
            ),
            *(ProductDefined(event_id=self.event_id(), sku=sku) for sku in skus),
        )

    def receipt(self, sku: str, quantity: int, location: str | None = None) -> StockReceived:
        return StockReceived(
            event_id=self.event_id(),
            sku=sku,
            location=location or self.location,
            quantity=quantity,
        )

    def sku(self, prefix: str = "SKU") -> str:
        return f"{prefix}-{tag()}"

    # -- orders --------------------------------------------------------------------------------

    @property
    def gateway(self) -> HttpGateway:
        """The order system's client of the sandbox (checkout authorisations)."""
        if self._gateway is None:
            self._gateway = HttpGateway(self.sandbox.url, timeout=30.0)
        return self._gateway

    async def order(
        self,
        lines: Sequence[tuple[str, int, str]],
        *,
        placed_at: dt.datetime | None = None,
        paid: bool = True,
        captured: bool = False,
        authorised_at: dt.datetime | None = None,
        expires_at: dt.datetime | None = None,
        prefix: str = "R",
        **extra: Any,
    ) -> Order:
        """An order of this site with lines (sku, quantity, unit price), ids L1, L2...; `paid`:
        its full value authorised at checkout through the sandbox (key `checkout/<order id>`),
        with the authorisation's times as the order system reports them (defaults: now and
        the gateway's expiry); `captured`: also captured at checkout, for a site that takes
        payment at order (`payment_timing = "at_order"`): the order carries the capture."""
        now = dt.datetime.now(dt.UTC)
        order_id = extra.pop("order_id", f"{prefix}-{uuid.uuid4().hex[:10]}")
        data: dict[str, Any] = {
            "order_id": order_id,
            "order_number": f"N{order_id[-8:]}",
            "placed_at": (placed_at or now).isoformat(),
            "currency": "USD",
            "customer": {"id": f"c-{order_id}", "email": "c@example.com"},
            "fulfillment": {"type": "sth"},
            "lines": [
                {"line_id": f"L{i}", "sku": sku, "quantity": q, "unit_price": price}
                for i, (sku, q, price) in enumerate(lines, start=1)
            ],
            "site": self.site,
            **extra,
        }
        if paid:
            value = sum((Decimal(p) * q for _, q, p in lines), Decimal(0))
            auth = await self.gateway.authorise(f"checkout/{order_id}", order_id, value, "USD")
            reference = auth.reference
            if captured:
                capture = await self.gateway.capture(
                    f"checkout/{order_id}/capture",
                    auth.reference,
                    value,
                    order_id=order_id,
                    currency="USD",
                )
                reference = capture.reference
            data["payment"] = {
                "reference": reference,
                "amount": f"{value:.2f}",
                "authorised_at": (authorised_at or now).isoformat(),
                "expires_at": (expires_at or auth.expires_at).isoformat(),
            }
        return Order.model_validate(data)

    def handle(self, order: Order | str) -> OrderHandle:
        order_id = order if isinstance(order, str) else order.order_id
        return self.client.get_workflow_handle_for(BackorderWorkflow.run, f"backorder-{order_id}")

    async def start_orders(
        self, orders: Iterable[Order], concurrency: int = 20
    ) -> list[OrderHandle]:
        """Start each order's workflow through the Temporal client, as the order system does."""
        limit = asyncio.Semaphore(concurrency)

        async def start(order: Order) -> OrderHandle:
            async with limit:
                return await self.client.start_workflow(
                    BackorderWorkflow.run,
                    order,
                    id=order.workflow_id,
                    task_queue=self.task_queue,
                )

        return list(await asyncio.gather(*(start(o) for o in orders)))

    async def wait_accepted(self, orders: Sequence[Order], within: float = 120.0) -> None:
        """Until every order is accepted (its read-model row, written last at acceptance)."""
        ids = [o.order_id for o in orders]
        await self.wait_until(
            "SELECT count(*) FROM orders WHERE order_id = ANY(%s)",
            (ids,),
            lambda n: n == len(ids),
            within=within,
            what=f"{len(ids)} orders accepted",
        )

    async def wait_ended(
        self, orders: Sequence[Order], within: float = 180.0
    ) -> list[BackorderSummary]:
        """Every order's workflow result (fails after `within` naming those still running)."""
        handles = [self.handle(o) for o in orders]
        try:
            return list(
                await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), within)
            )
        except TimeoutError:
            running = [
                h.id
                for h in handles
                if (await h.describe()).status is WorkflowExecutionStatus.RUNNING
            ]
            raise AssertionError(
                f"{len(running)} of {len(handles)} orders still running after {within:.0f}s: "
                f"{running[:20]}\n" + self.worker_logs()
            ) from None

    async def pending_activities(self, workflow_id: str) -> list[str]:
        """The activity types a workflow has scheduled or running now (from `describe`)."""
        described = await self.client.get_workflow_handle(workflow_id).describe()
        return [a.activity_type.name for a in described.raw_description.pending_activities]

    async def wait_activity(
        self, workflow_id: str, activity_type: str, within: float = 60.0
    ) -> None:
        """Until the workflow has `activity_type` pending (scheduled, running or retrying):
        to fault a process at a known step of a workflow."""
        await eventually(
            lambda: self.pending_activities(workflow_id),
            lambda pending: activity_type in pending,
            within=within,
            interval=0.01,
            what=f"{workflow_id} running {activity_type}",
        )

    # -- PostgreSQL ----------------------------------------------------------------------------

    async def rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql.encode(), params or None)
            return list(await cur.fetchall())

    async def scalar(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        found = await self.rows(sql, params)
        return found[0][0] if found else None

    async def wait_until(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any],
        ok: Callable[[Any], bool],
        *,
        within: float = 60.0,
        interval: float = 0.05,
        what: str | None = None,
    ) -> Any:
        """Poll a one-value query until `ok(value)` (every `interval`, for timing a fault)."""
        return await eventually(
            lambda: self.scalar(sql, params),
            ok,
            within=within,
            interval=interval,
            what=what or sql,
        )

    def worker_logs(self, lines: int = 15) -> str:
        return "\n".join(f"--- {w.name} (pid {w.pid}):\n{w.log(lines)}" for w in self.workers)


@asynccontextmanager
async def open_stack(
    pg: EmbeddedPostgres,
    temporal_address: str,
    client: Client,
    workdir: Path,
    *,
    policy: Mapping[str, Any] | None = None,
    name: str = "rel",
    worker_env: Mapping[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """A fresh database `<name>_<tag>` on `pg` (migrated), the sandbox over HTTP on it, a site
    and task queue of the test's own; on exit every worker still running is stopped."""
    t = tag()
    database = re.sub(r"\W", "_", f"{name}_{t}").lower()
    await pg.create_database(database)
    dsn = pg.dsn(database)
    await migrate(dsn)
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        pool = AsyncConnectionPool(dsn, min_size=2, max_size=16, open=False)
        await pool.open(wait=True)
        stack.push_async_callback(pool.close)
        app = SandboxApp(SandboxGateway(pool, authorisation_days=7))
        url = await stack.enter_async_context(serve_asgi(app, graceful_seconds=1))
        s = Stack(
            dsn=dsn,
            pool=pool,
            client=client,
            temporal_address=temporal_address,
            sandbox=Sandbox(url, app),
            site=f"rel-{t}",
            task_queue=f"rel-tq-{t}",
            workdir=workdir,
            policy=dict(policy or {}),
            location=f"DC-{t}",
            worker_env_extra=dict(worker_env or {}),
        )
        stack.push_async_callback(_teardown, s)
        yield s


async def _teardown(s: Stack) -> None:
    await asyncio.gather(*(w.stop(within=15) for w in s.workers), return_exceptions=True)
    if s._gateway is not None:
        await s._gateway.aclose()
    with suppress(Exception):
        await asyncio.wait_for(s.client.get_schedule_handle(schedule_id(s.site)).delete(), 5)


# -- a Temporal dev server of the test's own ----------------------------------------------------


@dataclass
class OwnTemporal:
    """`temporal server start-dev` persisted to a SQLite file, which a test may stop and start
    again on the same port (every workflow, timer and task survives)."""

    server: TemporalDevServer
    client: Client

    @property
    def address(self) -> str:
        return self.server.address

    async def stop(self) -> None:
        await asyncio.to_thread(self.server.stop)

    async def start(self) -> None:
        await self.server.start()

    async def restart(self, down_for: float = 0.0) -> None:
        await self.stop()
        await asyncio.sleep(down_for)
        await self.start()


@asynccontextmanager
async def own_temporal(workdir: Path) -> AsyncIterator[OwnTemporal]:
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    server = TemporalDevServer.on_free_ports(workdir)
    await server.start()
    try:
        client = await Client.connect(server.address, data_converter=data_converter)
        yield OwnTemporal(server, client)
    finally:
        await asyncio.to_thread(server.stop)


# -- small helpers ------------------------------------------------------------------------------


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
