"""`backorder payments sandbox` as a process of its own, as the compose stack runs it: it
migrates, serves the gateway over HTTP on the settings' database, and stops on SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

from embedded.process import free_port

ROOT = Path(__file__).parent.parent


def test_the_sandbox_serves_on_its_own_and_stops_on_sigint(pg_dsn: str) -> None:
    port = free_port()
    env = {**os.environ, "BACKORDER_DATABASE__DSN": pg_dsn}
    proc = subprocess.Popen(
        [sys.executable, "-m", "starter", "payments", "sandbox", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith(f"sandbox payment gateway on http://127.0.0.1:{port}"), banner
        url = f"http://127.0.0.1:{port}"
        body = {"order_id": "P-1", "amount": "12.50", "currency": "EUR"}
        answer = httpx.post(
            f"{url}/v1/authorisations", json=body, headers={"Idempotency-Key": "k/1"}
        )
        assert answer.status_code == 200, answer.text
        again = httpx.post(
            f"{url}/v1/authorisations", json=body, headers={"Idempotency-Key": "k/1"}
        )
        assert again.json() == answer.json()
        with psycopg.connect(pg_dsn) as conn:
            rows = conn.execute(
                "SELECT order_id, amount FROM payment_authorisations WHERE order_id = 'P-1'"
            ).fetchall()
        assert [(o, f"{a:.2f}") for o, a in rows] == [("P-1", "12.50")]
    finally:
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = proc.wait(timeout=20)
    assert code == 0 and time.monotonic() - started < 10
