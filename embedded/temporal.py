"""The Temporal CLI dev server (real server + Web UI) persisted to a SQLite file."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from embedded.process import (
    ensure_port_free,
    find_binary,
    free_port,
    spawn,
    stop,
    wait_until_ready,
)
from workflows.search_attributes import SEARCH_ATTRIBUTE_TYPES

# Measured: default SQLite settings make the dev server ~3.5x slower than in memory; WAL with
# normal sync brings it back to in-memory speed while keeping the file durable across restarts.
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


@dataclass
class TemporalDevServer:
    """One `temporal server start-dev` child process."""

    db_file: Path
    host: str = "127.0.0.1"
    port: int = 7233
    ui_port: int = 8233
    namespace: str = "default"
    log_level: str = "warn"
    log_file: Path | None = None
    startup_timeout: float = 30.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @classmethod
    def on_free_ports(cls, workdir: Path, *, log: bool = True) -> TemporalDevServer:
        """A quiet server of its own for tests and benchmarks: free ports (two different
        ones), its database (and, with `log`, its log) in `workdir`."""
        port = free_port()
        ui_port = free_port()
        while ui_port == port:
            ui_port = free_port()
        return cls(
            db_file=workdir / "temporal.db",
            port=port,
            ui_port=ui_port,
            log_level="error",
            log_file=workdir / "temporal.log" if log else None,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        cmd = [
            str(find_binary("temporal")),
            "server",
            "start-dev",
            "--db-filename",
            str(self.db_file),
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--ui-disable-news-fetch",
            "--log-level",
            self.log_level,
        ]
        if self.namespace != "default":
            cmd += ["--namespace", self.namespace]
        for pragma in SQLITE_PRAGMAS:
            cmd += ["--sqlite-pragma", pragma]
        for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        return cmd

    def check_ports(self) -> None:
        ensure_port_free(self.host, self.port, "Temporal frontend", "BACKORDER_DEV__TEMPORAL_PORT")
        ensure_port_free(self.host, self.ui_port, "Temporal Web UI", "BACKORDER_DEV__UI_PORT")

    async def start(self) -> None:
        self.check_ports()
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file or self.db_file.with_name("temporal.log")
        self._proc = spawn(self.command(), log_file=log)
        await wait_until_ready(
            self._proc,
            self._namespace_answers,
            what="the Temporal dev server",
            where=self.address,
            log_file=log,
            within_s=self.startup_timeout,
            interval=0.2,
        )

    async def _namespace_answers(self) -> None:
        client = await Client.connect(self.address, namespace=self.namespace)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=self.namespace)
        )

    def stop(self) -> None:
        if self._proc is not None:
            stop(self._proc)
            self._proc = None
