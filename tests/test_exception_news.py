"""An order shows its open exceptions where operators look: the `OpenExceptions` search
attribute, its status and its details in the Temporal UI, kept from the queue in PostgreSQL by
whoever changes it. On the dev server with the real worker and activities:

- a refused signal is raised by the real `raise_exception` activity, and the order's attribute
  and status count it; an operator resolving it with the CLI takes it off again;
- news arriving out of order never sets an older reading over a newer one;
- a step that keeps failing is raised as `order_stuck` and resolved by itself once it succeeds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import starter
from activities.stuck_steps import KIND, RESOLVER, StuckSteps
from config import Settings
from domain.order import workflow_id_for
from embedded.process import find_binary
from payments.sandbox import SandboxGateway
from runtime.connections import ServiceUnreachable
from runtime.exception_news import ExceptionNews, read_open_exceptions
from runtime.temporal_setup import register_search_attributes
from tests.checkout import checked_out
from tests.polling import eventually
from worker import build_worker, check_search_attributes
from workflows import search_attributes as sa
from workflows.backorder import BackorderWorkflow
from workflows.converter import data_converter
from workflows.messages import ExceptionBrief, OpenExceptions

pytestmark = pytest.mark.e2e


async def open_count(client: Client, workflow_id: str) -> int | None:
    desc = await client.get_workflow_handle(workflow_id).describe()
    return desc.typed_search_attributes.get(sa.OPEN_EXCEPTIONS)


async def queue(dsn: str, order_id: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT id, kind, resolved_by FROM exceptions WHERE order_id = %s ORDER BY id",
            (order_id,),
        )
        return list(await cur.fetchall())


async def test_an_order_counts_its_open_exceptions_until_an_operator_resolves_them(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    pg_dsn: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = dev_env.client
    now = await dev_env.get_current_time()
    order = (await checked_out(pg_pool, SandboxGateway(pg_pool), now, "X")).order
    monkeypatch.setenv("BACKORDER_TEMPORAL__TARGET", client.service_client.config.target_host)
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", pg_dsn)

    async with build_worker(client, pg_pool, settings):
        handle = await client.start_workflow(
            BackorderWorkflow.run,
            order,
            id=order.workflow_id,
            task_queue=settings.temporal.task_queue,
        )
        await eventually(lambda: handle.query(BackorderWorkflow.status), lambda s: bool(s.log))
        assert await open_count(client, handle.id) is None  # no news yet: not set
        # two signals customer service mistyped: each raised by the real activity, then news
        await handle.signal("setpriority", {"tier": "vip"})
        await handle.signal("set_priority", {"tier": "platinum"})
        await eventually(lambda: open_count(client, handle.id), lambda n: n == 2)
        status = await handle.query(BackorderWorkflow.status)
        rows = await queue(pg_dsn, order.order_id)

        code = await asyncio.to_thread(
            starter.main, ["exceptions", "resolve", str(rows[0][0]), "--note", "told CS"]
        )
        assert code == 0
        await eventually(lambda: open_count(client, handle.id), lambda n: n == 1)
        after = await handle.query(BackorderWorkflow.status)
        await handle.cancel()

    assert [kind for _, kind, _ in rows] == ["message_refused", "message_refused"]
    assert status.exceptions.open == 2
    assert [e.id for e in status.exceptions.latest] == [r[0] for r in rows]
    assert after.exceptions.open == 1 and [e.id for e in after.exceptions.latest] == [rows[1][0]]
    assert after.exceptions.as_of is not None and status.exceptions.as_of is not None
    assert after.exceptions.as_of > status.exceptions.as_of


async def test_older_news_never_overwrites_newer(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    settings: Settings,
) -> None:
    client = dev_env.client
    now = await dev_env.get_current_time()
    order = (await checked_out(pg_pool, SandboxGateway(pg_pool), now, "Y")).order
    t0 = dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)
    brief = ExceptionBrief(id=1, kind="order_stuck", severity="high", raised_at=t0)
    newer = OpenExceptions(open=3, latest=(brief,), as_of=t0 + timedelta(minutes=5))
    older = OpenExceptions(open=0, as_of=t0)

    async with build_worker(client, pg_pool, settings):
        handle = await client.start_workflow(
            BackorderWorkflow.run,
            order,
            id=order.workflow_id,
            task_queue=settings.temporal.task_queue,
        )
        await handle.signal(BackorderWorkflow.exceptions_changed, newer)
        await handle.signal(BackorderWorkflow.exceptions_changed, older)  # overtaken
        await handle.signal(BackorderWorkflow.exceptions_changed, OpenExceptions(open=9))  # unread
        status = await eventually(
            lambda: handle.query(BackorderWorkflow.status), lambda s: s.exceptions.open > 0
        )
        count = await eventually(lambda: open_count(client, handle.id), lambda n: n is not None)
        await handle.cancel()

    assert status.exceptions == newer and count == 3


# -- a step that keeps failing ------------------------------------------------------------------

FAILURES_BEFORE_SUCCESS = 3
_attempts: dict[str, int] = {}


@activity.defn(name="flaky_capture")
async def flaky_capture(name: str) -> str:
    """Fails its first attempts (a gateway away), then succeeds."""
    _attempts[name] = _attempts.get(name, 0) + 1
    if _attempts[name] <= FAILURES_BEFORE_SUCCESS:
        raise RuntimeError("gateway unreachable")
    return "captured"


@workflow.defn(name="StuckStepProbe", sandboxed=False)  # a probe in a test module
class StuckStepProbe:
    """Stands for an order's workflow: what counts is its id, `backorder-<order id>`."""

    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            flaky_capture,
            name,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200)),
        )


async def test_a_step_that_keeps_failing_is_raised_once_then_resolved_when_it_succeeds(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    order_id = f"STUCK-{uuid.uuid4().hex[:6]}"
    real = ExceptionNews(dev_env.client, pg_pool)
    told: list[list[str]] = []

    async def news(order_ids: Iterable[str]) -> None:
        told.append(list(order_ids))
        await real(order_ids)

    watch = StuckSteps(pg_pool, news, after=timedelta(0), at_attempt=2)
    queue_name = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(
        dev_env.client,
        task_queue=queue_name,
        workflows=[StuckStepProbe],
        activities=[flaky_capture],
        interceptors=[watch],
    ):
        result = await dev_env.client.execute_workflow(
            StuckStepProbe.run, order_id, id=workflow_id_for(order_id), task_queue=queue_name
        )
    async with pg_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT kind, severity, detail, resolved_by, resolution FROM exceptions"
            " WHERE order_id = %s",
            (order_id,),
        )
        rows = await cur.fetchall()
        still_open = await read_open_exceptions(conn, order_id)

    assert result == "captured"
    assert len(rows) == 1  # attempts 2, 3 and 4 were stuck: one exception
    kind, severity, detail, by, resolution = rows[0]
    assert (kind, severity, by) == (KIND, "high", RESOLVER)
    assert "step flaky_capture has been failing since" in detail
    assert resolution == f"flaky_capture succeeded at attempt {FAILURES_BEFORE_SUCCESS + 1}"
    assert still_open.open == 0
    assert told == [[order_id], [order_id]]  # raised once (attempts 2-4), resolved once


async def test_steps_of_other_workflows_and_early_attempts_are_not_watched(
    pg_pool: AsyncConnectionPool,
) -> None:
    watch = StuckSteps(pg_pool, after=timedelta(minutes=10), at_attempt=3)
    t0 = dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)

    def info(workflow_id: str, attempt: int, waited: timedelta) -> Any:
        class Info:
            pass

        i = Info()
        i.workflow_id, i.attempt = workflow_id, attempt  # type: ignore[attr-defined]
        i.scheduled_time, i.current_attempt_scheduled_time = t0, t0 + waited  # type: ignore[attr-defined]
        return i

    long = timedelta(minutes=11)
    assert watch.order_of(info("backorder-A-1", 5, long)) == "A-1"
    assert watch.order_of(info("allocator-default", 5, long)) is None
    assert watch.order_of(info("backorder-A-1", 2, long)) is None  # too few attempts
    assert watch.order_of(info("backorder-A-1", 9, timedelta(minutes=9))) is None  # too soon


async def test_a_worker_refuses_a_namespace_without_the_attribute_until_setup_adds_it() -> None:
    """An upgrade on a cluster set up before `OpenExceptions` existed: the worker names what
    is missing and how to add it, instead of failing every order's task; setup adds it."""
    others = [key for key in sa.ALL if key is not sa.OPEN_EXCEPTIONS]
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(find_binary("temporal")),
        data_converter=data_converter,
        search_attributes=others,
        dev_server_log_level="error",
    )
    try:
        with pytest.raises(ServiceUnreachable) as refused:
            await check_search_attributes(env.client, "default")
        await register_search_attributes(env.client, "default")  # `backorder setup temporal`
        await check_search_attributes(env.client, "default")
    finally:
        await env.shutdown()
    assert "lacks the search attributes OpenExceptions (Int)" in str(refused.value)
    assert "backorder setup temporal" in str(refused.value)
