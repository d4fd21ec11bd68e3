"""Fixtures of the reliability suite: a stack per test on the session's PostgreSQL and dev
server (`stack`, default policy; `stack_factory` for a policy of the test's own), and a
Temporal dev server of the test's own that it may restart (`own_server`, for `open_stack`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from embedded.postgres import EmbeddedPostgres
from tests.reliability.harness import OwnTemporal, Stack, open_stack, own_temporal


@pytest.fixture
async def stack(
    pg_server: EmbeddedPostgres, dev_env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[Stack]:
    """A stack with the default policy on the session's dev server."""
    address = dev_env.client.service_client.config.target_host
    async with open_stack(pg_server, address, dev_env.client, tmp_path / "stack") as s:
        yield s


StackFactory = Callable[..., AbstractAsyncContextManager[Stack]]


@pytest.fixture
def stack_factory(
    pg_server: EmbeddedPostgres, dev_env: WorkflowEnvironment, tmp_path: Path
) -> StackFactory:
    """Stacks on the session's dev server with a policy of the test's choosing:
    `async with stack_factory(policy={"release_mode": "quantity"}) as s: ...`."""
    address = dev_env.client.service_client.config.target_host
    made = 0

    def make(
        policy: Mapping[str, Any] | None = None, **options: Any
    ) -> AbstractAsyncContextManager[Stack]:
        nonlocal made
        made += 1
        return open_stack(
            pg_server,
            address,
            dev_env.client,
            tmp_path / f"stack-{made}",
            policy=policy,
            **options,
        )

    return make


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[OwnTemporal]:
    """A dev server of the test's own, persisted to a SQLite file: the test may restart it."""
    async with own_temporal(tmp_path / "temporal") as server:
        yield server
