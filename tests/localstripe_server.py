"""localstripe, a Stripe-compatible fake server, for the Stripe adapter's tests.

localstripe is GPL: it is only ever run as a separate process (the `localstripe` script our test
extra installs next to the interpreter), never imported. It is a test dependency: if it is
missing, the tests fail, they do not skip.

It keeps its objects in memory (`--from-scratch`: nothing is loaded), but it also pickles them to
`/tmp/localstripe.pickle` after every write, a fixed path of its own: harmless here, since no
instance started by us reads it back.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from embedded.process import find_binary, free_port, log_tail, spawn, stop

API_KEY = "sk_test_backorder"
"""localstripe takes any secret key that starts with `sk_`."""


@contextmanager
def running_localstripe(log_dir: Path, *, within_s: float = 30.0) -> Iterator[str]:
    """Start localstripe on a free loopback port, wait until it answers, yield its base URL, and
    stop it (kill it if it lingers) at the end."""
    port = free_port()
    log_file = log_dir / "localstripe.log"
    proc = spawn(
        [find_binary("localstripe"), "--port", str(port), "--from-scratch"],
        log_file=log_file,
        cwd=log_dir,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(proc, url, log_file, within_s)
        yield url
    finally:
        stop(proc, timeout=10)


def _wait_until_ready(
    proc: subprocess.Popen[bytes], url: str, log_file: Path, within_s: float
) -> None:
    deadline = time.monotonic() + within_s
    with httpx.Client(timeout=2.0) as client:
        while True:
            code = proc.poll()
            if code is not None:
                raise RuntimeError(f"localstripe exited with code {code}:\n{log_tail(log_file)}")
            try:
                answer = client.get(
                    f"{url}/v1/payment_intents",
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )
                if answer.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"localstripe did not answer on {url} within {within_s:.0f}s; "
                    f"see {log_file}:\n{log_tail(log_file)}"
                )
            time.sleep(0.1)
