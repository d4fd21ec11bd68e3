"""`backorder dev` as an operator runs it: a real process with real child servers.

It comes up (in under 30 s), serves the UI and the sandbox gateway (the quick start's
authorisation, voided on cancel), keeps a sleeping workflow across a full stop and restart,
stops cleanly on SIGINT and SIGTERM, leaves no orphan even when killed outright, and refuses a
taken port with a clear message. Every port is a free one of the test's own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from embedded.process import free_port
from tests.conftest import EXAMPLE_ORDER

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
STARTUP_LIMIT_S = 30.0


@dataclass
class Ports:
    """Every port `backorder dev` listens on, free ones of the test's own: a `backorder dev`
    running on this machine on the default ports must not fail the suite."""

    temporal: int
    ui: int
    postgres: int
    payments: int

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BACKORDER_DEV__TEMPORAL_PORT": str(self.temporal),
            "BACKORDER_DEV__UI_PORT": str(self.ui),
            "BACKORDER_DEV__POSTGRES_PORT": str(self.postgres),
            "BACKORDER_DEV__PAYMENTS_PORT": str(self.payments),
        }


@dataclass
class DevRun:
    proc: subprocess.Popen[str]
    startup_s: float
    children: list[psutil.Process]


@pytest.fixture
def ports() -> Ports:
    return Ports(free_port(), free_port(), free_port(), free_port())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def runs() -> Iterator[list[DevRun]]:
    """Every dev process a test starts is killed at the end, whatever happened."""
    started: list[DevRun] = []
    yield started
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def start_dev(data_dir: Path, ports: Ports, runs: list[DevRun]) -> DevRun:
    began = time.monotonic()
    proc = subprocess.Popen(
        [str(BIN / "backorder"), "dev", "--data-dir", str(data_dir)],
        env=ports.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = DevRun(proc, 0.0, [])
    runs.append(run)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "is up in" in line:
            break
        assert time.monotonic() - began < 60, "".join(seen)
    else:
        pytest.fail(f"backorder dev exited {proc.wait()}:\n{''.join(seen)}")
    run.startup_s = time.monotonic() - began
    run.children = psutil.Process(proc.pid).children(recursive=True)
    return run


def stop_dev(run: DevRun, sig: int) -> str:
    run.proc.send_signal(sig)
    out, _ = run.proc.communicate(timeout=60)
    return out


def assert_gone(processes: list[psutil.Process], timeout: float = 15.0) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"left running: {[p.pid for p in alive]}"


def cli(ports: Ports, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "backorder"), *args],
        env=ports.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def status_showing(ports: Ports, order_id: str, text: str, within_s: float = 30.0) -> str:
    """`order status` once it shows `text`: the worker may still be busy with the order."""
    deadline = time.monotonic() + within_s
    while text not in (status := cli(ports, "order", "status", order_id)).stdout:
        assert time.monotonic() < deadline, status.stdout + status.stderr
        time.sleep(0.5)
    return status.stdout


def test_dev_survives_a_restart_and_stops_cleanly(
    data_dir: Path, ports: Ports, runs: list[DevRun], tmp_path: Path
) -> None:
    first = start_dev(data_dir, ports, runs)
    assert first.startup_s < STARTUP_LIMIT_S
    names = {p.name() for p in first.children}
    assert "temporal" in names and "postgres" in names, names

    ui = httpx.get(f"http://127.0.0.1:{ports.ui}/", timeout=10)
    assert ui.status_code == 200

    order_id = f"DEV-{uuid.uuid4().hex[:8]}"
    order = json.loads(EXAMPLE_ORDER.read_text()) | {"order_id": order_id}
    (tmp_path / "order.json").write_text(json.dumps(order))
    # the quick start: the checkout's authorisation at the sandbox dev serves, then the order
    paid = cli(ports, "payments", "authorise", "--order", str(tmp_path / "order.json"))
    assert paid.returncode == 0, paid.stderr
    (tmp_path / "paid.json").write_text(paid.stdout)
    started = cli(ports, "order", "start", str(tmp_path / "paid.json"))
    assert started.returncode == 0, started.stderr
    assert f"started backorder-{order_id}" in started.stdout

    out = stop_dev(first, signal.SIGINT)
    assert first.proc.returncode == 0, out
    assert "backorder dev stopped" in out and "Traceback" not in out
    assert_gone(first.children)
    assert (data_dir / "temporal.db").is_file() and (data_dir / "pg" / "PG_VERSION").is_file()

    second = start_dev(data_dir, ports, runs)
    status = status_showing(ports, order_id, "payment (at_ship)")  # once accepted
    assert "backordered, workflow running" in status
    assert "payment (at_ship): authorised 50.00, captured 0, voided 0," in status

    cancelled = cli(ports, "order", "cancel", order_id, "--reason", "test")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "released from the authorisation: 50.00" in cancelled.stdout
    status = status_showing(ports, order_id, "workflow completed")
    assert "cancelled" in status
    assert "payment (at_ship): authorised 0, captured 0, voided 50.00," in status

    out = stop_dev(second, signal.SIGTERM)
    assert second.proc.returncode == 0, out
    assert_gone(second.children)


def test_a_killed_dev_leaves_no_orphans_and_starts_again(
    data_dir: Path, ports: Ports, runs: list[DevRun]
) -> None:
    first = start_dev(data_dir, ports, runs)
    first.proc.kill()
    first.proc.wait()
    assert_gone(first.children)
    second = start_dev(data_dir, ports, runs)  # PostgreSQL recovers, SQLite is intact
    assert cli(ports, "order", "status", "nothing-here").returncode == 1
    stop_dev(second, signal.SIGINT)
    assert second.proc.returncode == 0
    assert_gone(second.children)


def test_a_taken_port_is_a_clear_error_and_starts_nothing(data_dir: Path, ports: Ports) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.postgres))
        taken.listen()
        proc = subprocess.run(
            [str(BIN / "backorder"), "dev", "--data-dir", str(data_dir)],
            env=ports.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 1
    assert f"port {ports.postgres} on 127.0.0.1 for the embedded PostgreSQL is already in use" in (
        proc.stderr
    )
    assert "BACKORDER_DEV__POSTGRES_PORT" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (data_dir / "temporal.db").exists()  # nothing was started before the check
