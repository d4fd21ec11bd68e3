"""PostgreSQL restarted under a running service: nothing stalls once it is back.

The pools of the worker and of the sandbox gateway (`runtime.connections.open_pool`) must
never hand out a connection the restart killed, and must connect again within seconds of the
server's return however long it was away. On a worker with orders waiting for stock and more
arriving during the outage, the first allocation pass, capture and notice after the restart
succeed within 15 s of PostgreSQL accepting connections again.

The tests run a durable PostgreSQL of their own (the session's is shared by every module and
must never be stopped), on a port that stays the same across the restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from config import Settings
from db.migrate import migrate
from domain.inventory import (
    EventStatus,
    InventoryBatch,
    LocationDefined,
    ProductDefined,
    StockReceived,
)
from domain.order import Order
from embedded.postgres import EmbeddedPostgres
from embedded.process import free_port
from payments.http_gateway import HttpGateway
from payments.server import sandbox_gateway_server
from runtime.allocator import send_inventory
from runtime.connections import open_pool
from tests.checkout import checked_out
from tests.order_life import make_order
from tests.reliability.harness import eventually
from tests.reliability.invariants import check_invariants
from worker import build_worker
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus

T = TypeVar("T")
WITHIN = 15.0
"""Seconds after PostgreSQL accepts connections again by which the service works again."""


@pytest.fixture(scope="module")
async def own_pg(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(
        pgdata=tmp_path_factory.mktemp("restart") / "pg", port=free_port(), durable=True
    )
    await server.start()
    try:
        yield server
    finally:
        server.stop()


async def fresh_database(pg: EmbeddedPostgres) -> str:
    name = f"r_{uuid.uuid4().hex[:10]}"
    await pg.create_database(name)
    dsn = pg.dsn(name)
    await migrate(dsn)
    return dsn


async def restart(pg: EmbeddedPostgres, down_for: float) -> float:
    """Stop PostgreSQL (fast shutdown: every connection is closed), keep it down `down_for`
    seconds, start it on the same port and data; returns the loop time at which it accepted
    connections again. The event loop keeps running throughout (the worker works on)."""
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(pg.stop)
    await asyncio.sleep(down_for)
    await pg.start()  # returns once a connection succeeds
    return loop.time()


async def scalar(dsn: str, sql: str, *params: Any) -> Any:
    """One value, on a connection of its own (never from the pools under test)."""
    async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=5) as conn:
        cur = await conn.execute(sql.encode(), params or None)
        row = await cur.fetchone()
        return row[0] if row else None


async def until(
    probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within: float, what: str
) -> T:
    """The harness's `eventually`, polled finely: the test measures how soon things work."""
    return await eventually(probe, ok, within=within, interval=0.1, what=what)


def pool_settings(size: int) -> Settings:
    return Settings(database={"pool_min_size": size, "pool_max_size": size})


async def terminate(handles: list[WorkflowHandle[Any, Any]]) -> None:
    """Leave no workflow of this test running on the session's dev server."""
    for handle in handles:
        with suppress(RPCError):
            await handle.terminate("test over")


async def killed_backends(dsn: str) -> int:
    """Terminate every other backend of the database (the pool's), and wait until they are
    gone; returns how many there were."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        row = await cur.fetchone()
        killed = int(row[0]) if row else 0
        for _ in range(100):
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if (await cur.fetchone()) == (0,):
                return killed
            await asyncio.sleep(0.05)
    raise AssertionError("the terminated backends did not go away")


async def all_work(pool: AsyncConnectionPool, n: int, wait: float) -> None:
    """`n` connections taken from the pool at once, each answering a query."""
    async with AsyncExitStack() as held:
        for _ in range(n):
            conn = await held.enter_async_context(pool.connection(timeout=wait))
            await conn.execute("SELECT 1")


async def test_a_pool_whose_connections_were_killed_hands_out_working_ones(
    own_pg: EmbeddedPostgres,
) -> None:
    dsn = await fresh_database(own_pg)
    pool = await open_pool(dsn, pool_settings(4))
    try:
        await all_work(pool, 4, wait=5)
        assert await killed_backends(dsn) == 4  # every pooled connection is now dead
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with pool.connection(timeout=10) as conn:
            await conn.execute("SELECT 1")  # the very next connection works
        await all_work(pool, 4, wait=10)  # and so do all the others
        took = loop.time() - started
    finally:
        await pool.close()
    print(f"\npool with its backends killed: working connections {took:.1f}s later")
    # checked one by one, four dead connections cost 1 + 2 + 4 s of backing off
    assert took < 3, f"{took:.1f}s to get working connections again"


async def test_a_pool_reconnects_within_seconds_of_a_long_outage(
    own_pg: EmbeddedPostgres,
) -> None:
    """A caller that kept asking during an outage of 18 s gets a connection within seconds of
    the server's return, not at the next step of a reconnection backoff grown to 16 s."""
    dsn = await fresh_database(own_pg)
    pool = await open_pool(dsn, pool_settings(2))
    loop = asyncio.get_running_loop()
    try:
        await all_work(pool, 2, wait=5)
        await asyncio.to_thread(own_pg.stop)

        async def caller() -> float:
            """Asks until it gets an answer, as an activity retried by Temporal does."""
            while True:
                try:
                    async with pool.connection(timeout=90) as conn:
                        await conn.execute("SELECT 1")
                    return loop.time()
                except psycopg.OperationalError:
                    await asyncio.sleep(0.5)

        served = asyncio.create_task(caller())  # finds dead connections, then waits
        await asyncio.sleep(18)
        assert not served.done()
        await own_pg.start()
        back = loop.time()
        lag = await asyncio.wait_for(served, 60) - back
    finally:
        await pool.close()
    print(f"\npool after an 18 s outage: a connection {lag:.1f}s after the server's return")
    assert lag < 5, f"the waiting caller got a connection {lag:.1f}s after the server's return"


@pytest.mark.e2e
async def test_after_a_postgres_restart_pass_capture_and_notice_succeed_within_15s(
    own_pg: EmbeddedPostgres, dev_env: WorkflowEnvironment
) -> None:
    dsn = await fresh_database(own_pg)
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        site=f"pg-{tag}",
        temporal={"task_queue": f"tq-{tag}"},
        # the pools at full size: every connection in them dies with the server
        database={"pool_min_size": 6, "pool_max_size": 6},
        allocator={"batch_window": dt.timedelta(milliseconds=200)},
    )
    client, queue = dev_env.client, settings.temporal.task_queue
    loop = asyncio.get_running_loop()

    async with AsyncExitStack() as stack:
        # the worker and the sandbox gateway, each on its own pool, as in production
        worker_pool = await open_pool(dsn, settings)
        stack.push_async_callback(worker_pool.close)
        sandbox_pool = await open_pool(dsn, settings)
        stack.push_async_callback(sandbox_pool.close)
        sandbox = await stack.enter_async_context(sandbox_gateway_server(sandbox_pool))
        gateway = await stack.enter_async_context(HttpGateway(sandbox, timeout=5))
        await stack.enter_async_context(
            build_worker(client, worker_pool, settings, gateway=gateway)
        )

        # an order paid by card at a capture-at-shipment site: line 1 ships (and is captured)
        # at once, line 2 waits for its sku; and more orders waiting for that sku
        now = await dev_env.get_current_time()
        paid = await checked_out(worker_pool, gateway, now, "PG")
        order, ref, sku = paid.order, paid.auth.reference, paid.order.lines[1].sku
        other = f"C-{tag}"  # what the orders placed during the outage wait for
        products = (ProductDefined(event_id=f"p-{s}", sku=s) for s in (sku, other))
        defined = await send_inventory(
            client, settings, settings.site, InventoryBatch(events=tuple(products))
        )
        assert [o.status for o in defined.outcomes] == [EventStatus.APPLIED] * 2

        def waiting_order(for_sku: str) -> Order:
            oid = f"PW-{uuid.uuid4().hex[:10]}"
            return make_order(now, [(for_sku, 2, "4.00")], order_id=oid)

        async def start(o: Order) -> None:
            await client.start_workflow(
                BackorderWorkflow.run, o, id=o.workflow_id, task_queue=queue
            )

        before = [order, *(waiting_order(sku) for _ in range(8))]
        await asyncio.gather(*(start(o) for o in before))
        ids = [o.order_id for o in before]
        await until(
            lambda: scalar(dsn, "SELECT count(*) FROM demand WHERE order_id = ANY(%s)", ids),
            lambda n: n == len(before),
            60,
            "orders waiting",
        )
        await until(
            lambda: scalar(dsn, "SELECT count(*) FROM notices WHERE order_id = ANY(%s)", ids),
            lambda n: n >= len(before) + 1,  # on_backorder each, and partly_shipped
            60,
            "acceptance notices",
        )
        captured = "SELECT count(*) FROM payment_captures WHERE authorisation_ref = %s"
        assert await scalar(dsn, captured, ref) == 1

        # PostgreSQL goes away for a while; orders keep arriving meanwhile (for another sku:
        # this test is about the restart, not about orders accepted while a pass commits)
        await asyncio.to_thread(own_pg.stop)
        during = [waiting_order(other) for _ in range(3)]
        stack.push_async_callback(
            terminate, [client.get_workflow_handle(o.workflow_id) for o in during]
        )
        await asyncio.gather(*(start(o) for o in during))
        await asyncio.sleep(6)
        await own_pg.start()
        back = loop.time()

        # the next pass: stock for every order waiting since before the outage
        units = 3 + 2 * (len(before) - 1)
        receipt = StockReceived(event_id=f"r-{tag}", sku=sku, location="DC", quantity=units)
        fed = await send_inventory(
            client, settings, settings.site, InventoryBatch(events=(receipt,))
        )
        pass_done = loop.time() - back
        assert [o.status for o in fed.outcomes] == [EventStatus.APPLIED]
        assert (fed.orders_released, fed.units_released) == (len(before), units), fed

        # the capture of line 2's shipment, and the notice that it shipped
        await until(lambda: scalar(dsn, captured, ref), lambda n: n == 2, 60, "the capture")
        capture_done = loop.time() - back
        await until(
            lambda: scalar(
                dsn,
                "SELECT count(*) FROM notices WHERE order_id = %s AND kind = 'shipped'",
                order.order_id,
            ),
            lambda n: n == 1,
            60,
            "the shipped notice",
        )
        notice_done = loop.time() - back

        # nothing lost: the orders placed during the outage are accepted (waiting for their
        # sku), and every order that got its stock completes
        late = [o.order_id for o in during]
        await until(
            lambda: scalar(dsn, "SELECT count(*) FROM demand WHERE order_id = ANY(%s)", late),
            lambda n: n == len(during),
            60,
            "orders placed during the outage accepted",
        )
        accepted_done = loop.time() - back
        handles = [
            client.get_workflow_handle_for(BackorderWorkflow.run, o.workflow_id) for o in before
        ]
        results = [asyncio.ensure_future(h.result()) for h in handles]
        await asyncio.wait(results, timeout=60)
        stuck = [h.id for h, r in zip(handles, results, strict=True) if not r.done()]
        for r in results:
            r.cancel()
        if stuck:
            states = [await h.query(BackorderWorkflow.status) for h in handles if h.id in stuck]
            raise AssertionError(f"not ended 60s after the restart: {stuck}: {states}")
        summaries = [r.result() for r in results]
        all_done = loop.time() - back
        report = await check_invariants(  # while the worker runs: waiting orders answer status
            dsn,
            client,
            order_ids=[o.order_id for o in (*before, *during)],
            initial_stock={(paid.in_stock, "DC"): 5},  # put on hand by SQL at checkout
        )

    print(
        f"\npostgres restart: pass {pass_done:.1f}s, capture {capture_done:.1f}s, notice"
        f" {notice_done:.1f}s, orders placed during the outage accepted {accepted_done:.1f}s,"
        f" all {len(handles)} released orders completed {all_done:.1f}s after it was back"
        f"\n{report}"
    )
    assert {s.status for s in summaries} == {BackorderStatus.COMPLETED}
    assert pass_done <= WITHIN, f"the allocation pass took {pass_done:.1f}s"
    assert capture_done <= WITHIN, f"the capture took {capture_done:.1f}s"
    assert notice_done <= WITHIN, f"the notice took {notice_done:.1f}s"
    assert accepted_done <= WITHIN, f"accepting the orders took {accepted_done:.1f}s"
    total = "SELECT sum(amount) FROM payment_captures WHERE authorisation_ref = %s"
    assert await scalar(dsn, total, ref) == paid.auth.amount  # each shipment captured once


@pytest.mark.e2e
async def test_postgres_restarted_inside_a_pass_runs_the_pass_again_once(
    own_pg: EmbeddedPostgres, dev_env: WorkflowEnvironment
) -> None:
    """PostgreSQL goes away while a pass is inside its transaction (held there on the site's
    pass lock): the transaction dies with it, Temporal runs the pass again once the database
    is back, and the receipt is applied once and released to the waiting orders."""
    dsn = await fresh_database(own_pg)
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        site=f"pgp-{tag}",
        temporal={"task_queue": f"tq-{tag}"},
        allocator={"batch_window": dt.timedelta(milliseconds=200)},
    )
    client, loop = dev_env.client, asyncio.get_running_loop()
    sku = f"IP-{tag}"
    async with AsyncExitStack() as stack:
        pool = await open_pool(dsn, settings)
        stack.push_async_callback(pool.close)
        await stack.enter_async_context(build_worker(client, pool, settings))
        setup = (
            LocationDefined(event_id=f"l-{tag}", location_id="DC"),
            ProductDefined(event_id=f"p-{tag}", sku=sku),
        )
        await send_inventory(client, settings, settings.site, InventoryBatch(events=setup))
        now = await dev_env.get_current_time()
        orders = [make_order(now, [(sku, 2, "4.00")], order_id=f"IP-{i}-{tag}") for i in range(4)]
        for o in orders:
            await client.start_workflow(
                BackorderWorkflow.run, o, id=o.workflow_id, task_queue=settings.temporal.task_queue
            )
        ids = [o.order_id for o in orders]
        await until(
            lambda: scalar(dsn, "SELECT count(*) FROM demand WHERE order_id = ANY(%s)", ids),
            lambda n: n == len(orders),
            60,
            "orders waiting",
        )

        holder = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        await holder.execute(
            "SELECT pg_advisory_lock(hashtextextended(%s, 0))", (f"allocator:{settings.site}",)
        )
        receipt = StockReceived(event_id=f"r-{tag}", sku=sku, location="DC", quantity=8)
        applied = asyncio.ensure_future(
            send_inventory(client, settings, settings.site, InventoryBatch(events=(receipt,)))
        )
        await until(
            lambda: scalar(
                dsn,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE %s",
                "%pg_advisory_xact_lock%",
            ),
            lambda n: n >= 1,
            30,
            "the pass waiting inside its transaction",
        )
        back = await restart(own_pg, down_for=2.0)  # the holder's lock goes with it
        with suppress(psycopg.Error):
            await holder.close()
        result = await asyncio.wait_for(applied, 60)
        passed = loop.time() - back
        handles = [
            client.get_workflow_handle_for(BackorderWorkflow.run, o.workflow_id) for o in orders
        ]
        summaries = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 60)
        report = await check_invariants(dsn, client, order_ids=ids)

    print(f"\npostgres restarted inside a pass: applied {passed:.1f}s after it was back\n{report}")
    assert [o.status for o in result.outcomes] == [EventStatus.APPLIED]
    assert passed <= WITHIN, f"the pass ran again {passed:.1f}s after the restart"
    assert {s.status for s in summaries} == {BackorderStatus.COMPLETED}
    assert await scalar(dsn, "SELECT on_hand FROM stock WHERE sku = %s", sku) == 8  # once
