"""`backorder payments`: the sandbox as a process of its own, as the compose stack runs it (it
migrates, serves the gateway over HTTP on the settings' database, and stops on SIGINT), and
`payments authorise`, a checkout against the sandbox served on loopback: its payment is one the
sandbox captures and voids, its order file one `order start` takes, and every bad input one
clear line with nothing authorised."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

import starter
from domain.order import Order, OrderPayment, at_boundary
from embedded.process import free_port
from payments.http_gateway import HttpGateway
from tests.conftest import EXAMPLE_ORDER
from tests.payment_servers import (
    AUTHORISATION_DAYS,
    SandboxServer,
    requests_of,
    totals,
    wall_clock_sandbox,
)

__all__ = ["wall_clock_sandbox"]  # fixtures

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


# -- `backorder payments authorise`: the checkout's authorisation ------------------------------


def new_order_id() -> str:
    return f"PA-{uuid.uuid4().hex[:10]}"


def example_order_file(directory: Path, order_id: str, **changes: Any) -> Path:
    """The quick start's order under a fresh id (with `changes`), written to `directory`."""
    order = json.loads(EXAMPLE_ORDER.read_text()) | {"order_id": order_id} | changes
    path = directory / f"{order_id}.json"
    path.write_text(json.dumps(order))
    return path


async def authorise_cli(
    capsys: pytest.CaptureFixture[str], *args: str | Path
) -> tuple[int, str, str]:
    """`backorder payments authorise ARGS` in-process (in a thread: the sandbox answers from
    this test's loop); its exit code, stdout and stderr."""
    argv = ["payments", "authorise", *map(str, args)]
    code = await asyncio.to_thread(starter.main, argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def at_sandbox(wall_clock_sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    """The settings point the CLI at the test's sandbox, as `payments.sandbox_url` would."""
    monkeypatch.setenv("BACKORDER_PAYMENTS__SANDBOX_URL", wall_clock_sandbox.url)
    return wall_clock_sandbox


async def test_an_authorised_amount_is_a_payment_the_sandbox_captures_and_voids(
    at_sandbox: SandboxServer, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    order_id = new_order_id()
    code, out, err = await authorise_cli(
        capsys, "--amount", "50.00", "--currency", "USD", "--order-id", order_id
    )
    assert code == 0, err
    payment = OrderPayment.model_validate_json(out)
    assert payment.amount == Decimal("50.00") and payment.reference.startswith("auth_")
    assert payment.expires_at == at_sandbox.clock.now + dt.timedelta(days=AUTHORISATION_DAYS)
    assert payment.authorised_at == at_sandbox.clock.now  # the gateway's own moment
    assert f"authorised 50.00 USD for order {order_id}" in err and payment.reference in err

    async with HttpGateway(at_sandbox.url) as gateway:  # as the worker will, at shipment
        await gateway.capture(
            "k/cap", payment.reference, Decimal("30.00"), order_id=order_id, currency="USD"
        )
        rest = await gateway.void(
            "k/void", payment.reference, None, order_id=order_id, currency="USD"
        )
    assert rest.amount == Decimal("20.00")
    assert await totals(pg_dsn, payment.reference) == ("50.00", "30.00", "20.00", "0.00")


async def test_an_authorised_order_file_is_the_same_order_with_its_payment_once(
    at_sandbox: SandboxServer, pg_dsn: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    order_id = new_order_id()
    path = example_order_file(tmp_path, order_id)
    code, out, err = await authorise_cli(capsys, "--order", path)
    assert code == 0, err
    paid = Order.model_validate_json(out, context=at_boundary(dt.datetime.now(dt.UTC)))
    given = Order.model_validate_json(path.read_text())
    assert paid.model_copy(update={"payment": None}) == given
    assert paid.payment is not None and paid.payment.amount == given.value == Decimal("50.00")
    assert await totals(pg_dsn, paid.payment.reference) == ("50.00", "0.00", "0.00", "0.00")

    # the checkout's key is the order's: authorising it again holds nothing more
    code, out, err = await authorise_cli(capsys, "--order", path)
    assert code == 0, err
    again = Order.model_validate_json(out).payment
    assert again is not None and again.reference == paid.payment.reference
    assert await requests_of(pg_dsn, order_id) == [("authorise", "50.00", None)]


async def test_the_command_as_a_process_pipes_an_order_to_start(
    at_sandbox: SandboxServer, tmp_path: Path
) -> None:
    """The README's `backorder payments authorise --order FILE > a1.json`, and a bad file."""
    path = example_order_file(tmp_path, new_order_id())
    env = {**os.environ, "BACKORDER_PAYMENTS__SANDBOX_URL": at_sandbox.url}
    code, out, err = await run_process(env, "payments", "authorise", "--order", str(path))
    assert code == 0, err
    paid = Order.model_validate_json(out)
    assert paid.payment is not None and paid.payment.amount == Decimal("50.00")
    assert "Traceback" not in err

    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"order_id": "Ä-1"}'.encode("latin-1"))
    code, out, err = await run_process(env, "payments", "authorise", "--order", str(latin1))
    assert (code, out) == (1, "")
    assert err.startswith(f"backorder: {latin1} is not UTF-8 text: invalid continuation byte")
    assert err.count("\n") == 1, err


async def run_process(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_refused(code: int, out: str, err: str, *expected: str) -> None:
    """Exit 1, nothing on stdout, and `backorder: <why>` (one line unless fields are listed)."""
    assert code == 1 and out == "", (code, out, err)
    assert err.startswith("backorder: ") and "Traceback" not in err, err
    for fragment in expected:
        assert fragment in err, err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--amount", "abc"], "Invalid value for '--amount': 'abc': money"),
        (["--amount", "-5"], "Invalid value for '--amount': '-5': money"),
        (["--amount", "1e3"], "Invalid value for '--amount': '1e3': money"),
        (["--amount", "0.00"], "Invalid value for '--amount': '0.00': nothing to authorise"),
        (["--amount", "5", "--currency", "XYZ"], "'--currency': 'XYZ': 'XYZ' is not an"),
        (["--amount", "5", "--currency", "usd"], "'--currency': 'usd': String should"),
        (["--amount", "5", "--order-id", " A-1"], "'--order-id': ' A-1' is not an order"),
        (["--amount", "5", "--order", "a.json"], "--order and --amount cannot be given together"),
        (["--currency", "USD"], "--order FILE.json or --amount is required"),
    ],
)
def test_a_bad_argument_is_a_usage_error_that_names_it(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = starter.main(["payments", "authorise", "--currency", "USD", "--order-id", "A-1", *args])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith("Usage: backorder payments authorise "), err
    assert err.splitlines()[-1].startswith("Error: "), err
    assert expected in err and "Traceback" not in err


def test_a_charge_or_order_file_no_order_could_carry_is_refused_before_any_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # nothing listens there: an input that reached the gateway would fail with another message
    monkeypatch.setenv("BACKORDER_PAYMENTS__SANDBOX_URL", f"http://127.0.0.1:{free_port()}")
    invalid = example_order_file(
        tmp_path, "BAD-1", lines=[{"line_id": "1", "sku": "KTP", "quantity": 0, "unit_price": "10"}]
    )
    paid = example_order_file(
        tmp_path,
        "PAID-1",
        payment={"reference": "auth_x", "amount": "50.00", "authorised_at": "2026-11-20T10:00:00Z"},
    )
    free = example_order_file(
        tmp_path, "FREE-1", lines=[{"line_id": "1", "sku": "KTP", "quantity": 1, "unit_price": "0"}]
    )
    (tmp_path / "binary.json").write_bytes(b'{"order_id": "\xff\xfe"}')
    (tmp_path / "text.json").write_text("not json")
    (tmp_path / "empty.json").write_text("")
    usd = ["--currency", "USD", "--order-id", "A-1"]
    cases: list[tuple[list[str | Path], str]] = [
        (["--amount", "1.234", *usd], "--amount: 1.234 has more decimals than USD"),
        (["--amount", "5.5", "--currency", "JPY", "--order-id", "A-1"], "than JPY"),
        (["--amount", "5", "--currency", "USD"], "--amount needs --currency and --order-id"),
        (["--order", invalid, "--currency", "EUR"], "--currency and --order-id go with --amount"),
        (["--order", tmp_path / "missing.json"], "missing.json: No such file or directory"),
        (["--order", tmp_path], f"cannot read {tmp_path}: Is a directory"),
        (["--order", tmp_path / "binary.json"], "binary.json is not UTF-8 text"),
        (["--order", tmp_path / "empty.json"], "empty.json is empty"),
        (["--order", tmp_path / "text.json"], "(order): Invalid JSON"),
        (["--order", invalid], "BAD-1.json is not a valid order:\n  lines.0.quantity: "),
        (["--order", paid], "order PAID-1 already carries a payment (auth_x)"),
        (["--order", free], "order FREE-1 is worth 0 USD"),
    ]
    for args, expected in cases:
        code = starter.main(["payments", "authorise", *map(str, args)])
        assert_refused(code, *capsys.readouterr(), expected)


async def test_an_unreachable_or_refusing_gateway_is_one_clear_line(
    at_sandbox: SandboxServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = new_order_id()
    amount = ["--amount", "50.00", "--currency", "USD", "--order-id", order_id]

    async def refused(*expected: str) -> None:
        code, out, err = await authorise_cli(capsys, *amount)
        assert_refused(code, out, err, *expected)
        assert err.count("\n") == 1, err

    await at_sandbox.arm(operation="authorise", kind="decline", order_id=order_id)
    await refused(
        f"the sandbox gateway {at_sandbox.url} refused authorising 50.00 USD for order {order_id}",
        "injected decline",
    )
    await at_sandbox.arm(operation="authorise", kind="error_500", order_id=order_id)
    await refused(
        f"the sandbox gateway {at_sandbox.url} did not answer: ",
        f"running the command again is safe (the same key, checkout/{order_id}, authorises once)",
    )
    code, _, err = await authorise_cli(capsys, *amount)  # as it says
    assert code == 0, err
    amount[1] = "60.00"  # the order's checkout key, now with another amount
    await refused("refused authorising 60.00 USD", "was used for another request")

    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("BACKORDER_PAYMENTS__SANDBOX_URL", closed)
    await refused(f"the sandbox gateway {closed} did not answer: ", "unreachable")
