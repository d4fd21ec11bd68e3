"""The bench's own servers and worker processes, on free ports and in a temp dir.

One Temporal dev server (SQLite, as `backorder dev` runs it), one embedded PostgreSQL (durable,
as `backorder dev` runs it), the sandbox payment gateway served from this process, and worker
OS processes started per scenario, so each one's CPU and memory are its own. Nothing here sets
a service setting: a worker gets only the addresses it needs, plus what a scenario asks for.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from config import Settings
from db.migrate import migrate
from embedded.postgres import EmbeddedPostgres
from embedded.process import _die_with_parent, free_port, log_tail
from embedded.temporal import TemporalDevServer
from payments.http_gateway import HttpGateway
from payments.sandbox import SandboxGateway
from payments.sandbox_app import SandboxApp
from payments.server import serve_asgi
from runtime.sweep import schedule_id
from workflows.converter import data_converter

ROOT = Path(__file__).resolve().parent.parent
WORKER_BINARY = Path(sys.executable).parent / "backorder-worker"


def tag() -> str:
    return uuid.uuid4().hex[:6]


@dataclass
class WorkerProcess:
    """One worker OS process (ours or the baseline's), logging to its own file."""

    name: str
    log_file: Path
    proc: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def stop(self, within: float = 20.0) -> None:
        """SIGTERM (the worker drains), then SIGKILL if it takes too long."""
        if self.alive:
            with suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), within)
            except TimeoutError:
                with suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()

    def log(self, lines: int = 30) -> str:
        return log_tail(self.log_file, lines)


@dataclass
class Servers:
    """Everything the scenarios share; workers come and go (`start_worker`)."""

    workdir: Path
    pg: EmbeddedPostgres
    temporal: TemporalDevServer
    client: Client
    dsn: str
    pool: AsyncConnectionPool
    sandbox_url: str
    gateway: HttpGateway
    workers: list[WorkerProcess] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)

    def settings(self, site: str, task_queue: str, batch_window: timedelta | None) -> Settings:
        """The order system's and the feed's settings: where things are, and the allocator's
        batch window (None: the service's default) for an allocator this side starts."""
        allocator = {} if batch_window is None else {"batch_window": batch_window}
        return Settings(
            site=site,
            temporal={"target": self.temporal.address, "task_queue": task_queue},
            database={"dsn": self.dsn},
            payments={"sandbox_url": self.sandbox_url},
            allocator=allocator,
        )

    def worker_env(self, site: str, task_queue: str, extra: Mapping[str, str]) -> dict[str, str]:
        """A `backorder-worker`'s environment: addresses only (the caller's BACKORDER_*
        variables are dropped so the service runs with its defaults), plus `extra`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDER_")}
        env.update(
            {
                "BACKORDER_TEMPORAL__TARGET": self.temporal.address,
                "BACKORDER_TEMPORAL__TASK_QUEUE": task_queue,
                "BACKORDER_DATABASE__DSN": self.dsn,
                "BACKORDER_SITE": site,
                "BACKORDER_PAYMENTS__SANDBOX_URL": self.sandbox_url,
                "PYTHONUNBUFFERED": "1",
                **extra,
            }
        )
        return env

    async def start_backorder_worker(
        self, site: str, task_queue: str, **extra: str
    ) -> WorkerProcess:
        self.sites.append(site)
        env = self.worker_env(site, task_queue, extra)
        return await self._start(f"backorder-{task_queue}", [str(WORKER_BINARY)], env, task_queue)

    async def start_baseline_worker(self, task_queue: str) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDER_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        argv = [sys.executable, "-m", "bench.baseline", "--target", self.temporal.address]
        argv += ["--task-queue", task_queue]
        return await self._start(f"baseline-{task_queue}", argv, env, task_queue)

    async def _start(
        self, name: str, argv: list[str], env: dict[str, str], task_queue: str
    ) -> WorkerProcess:
        log_file = self.workdir / f"{name}.log"
        with log_file.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=self.workdir,  # no config/backorder.toml here: the defaults apply
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches us, not it
                preexec_fn=_die_with_parent(signal.SIGKILL),
            )
        worker = WorkerProcess(name, log_file, proc)
        self.workers.append(worker)
        await self._wait_polling(worker, task_queue)
        return worker

    async def _wait_polling(self, worker: WorkerProcess, task_queue: str) -> None:
        """Until the worker polls its task queue for workflow and activity tasks."""
        me = f"{worker.pid}@"
        kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while True:
            if not worker.alive:
                raise RuntimeError(f"{worker.name} exited at start:\n{worker.log()}")
            found = []
            for kind in kinds:
                described = await self.client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=self.client.namespace,
                        task_queue=TaskQueue(name=task_queue),
                        task_queue_type=kind,
                    )
                )
                found.append(any(p.identity.startswith(me) for p in described.pollers))
            if all(found):
                return
            if loop.time() > deadline:
                raise RuntimeError(f"{worker.name} not polling after 90 s:\n{worker.log()}")
            await asyncio.sleep(0.2)

    async def scalar(self, sql: str, params: Any = None) -> Any:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql.encode(), params)
            row = await cur.fetchone()
            return row[0] if row else None

    async def rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql.encode(), params)
            return list(await cur.fetchall())


@asynccontextmanager
async def open_servers(workdir: Path) -> AsyncIterator[Servers]:
    """Start PostgreSQL, Temporal and the sandbox; on exit (error and Ctrl-C included) stop
    every worker, then the sandbox, Temporal and PostgreSQL, in that order."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        pg = EmbeddedPostgres(pgdata=workdir / "pg", port=free_port(), database="backorder")
        stack.callback(pg.stop)
        await pg.start()
        temporal = TemporalDevServer.on_free_ports(workdir)
        stack.callback(temporal.stop)
        await temporal.start()
        dsn = pg.dsn()
        await migrate(dsn)
        client = await Client.connect(temporal.address, data_converter=data_converter)
        pool = AsyncConnectionPool(dsn, min_size=2, max_size=16, open=False)
        await pool.open(wait=True)
        stack.push_async_callback(pool.close)
        app = SandboxApp(SandboxGateway(pool, authorisation_days=7))
        url = await stack.enter_async_context(serve_asgi(app, graceful_seconds=1))
        gateway = HttpGateway(url, timeout=30.0)
        stack.push_async_callback(gateway.aclose)
        servers = Servers(workdir, pg, temporal, client, dsn, pool, url, gateway)
        stack.push_async_callback(_stop_workers, servers)
        yield servers


async def _stop_workers(servers: Servers) -> None:
    await asyncio.gather(*(w.stop(within=15) for w in servers.workers), return_exceptions=True)
    for site in servers.sites:  # the sweep schedules the workers created
        with suppress(Exception):
            await asyncio.wait_for(
                servers.client.get_schedule_handle(schedule_id(site)).delete(), 5
            )


def pg_postmaster_pid(servers: Servers) -> int:
    pid = servers.pg.pid
    if pid is None:
        raise RuntimeError("PostgreSQL is not running")
    return pid


def temporal_pid(servers: Servers) -> int:
    pid = servers.temporal.pid
    if pid is None:
        raise RuntimeError("the Temporal dev server is not running")
    return pid
