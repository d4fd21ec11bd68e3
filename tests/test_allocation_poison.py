"""A poisoned demand row never stalls a site: the allocation pass, against real PostgreSQL,
sets aside an order whose demand cannot be read or is no valid backorder, raises one operator
exception naming it, and serves every other order in the same pass."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from activities.allocation import DEMAND_INVALID, DEMAND_UNREADABLE
from tests.test_allocation_pass import PLACED, Ledger, allocator, env, request, rows


@pytest.fixture
def ledger(pg_pool: AsyncConnectionPool, pg_dsn: str) -> Ledger:
    return Ledger(pg_pool, pg_dsn)


async def plant(dsn: str, assignment: str, order_id: str) -> None:
    """Poison an order's demand rows by SQL, as a hand-written fix or an older version could."""
    await rows(dsn, f"UPDATE demand SET {assignment} WHERE order_id = %s RETURNING 1", order_id)


async def exceptions_of(dsn: str, order_id: str) -> list[tuple[Any, ...]]:
    """The order's exceptions: (kind, severity, open, detail), oldest first."""
    return await rows(
        dsn,
        "SELECT kind, severity, resolved_at IS NULL, detail FROM exceptions"
        " WHERE order_id = %s ORDER BY raised_at, key",
        order_id,
    )


POISONS = [
    pytest.param("placed_at = 'infinity'", DEMAND_UNREADABLE, id="infinity"),
    pytest.param("placed_at = '-infinity'", DEMAND_UNREADABLE, id="minus-infinity"),
    pytest.param(
        "placed_at = '9999-12-31T23:00:00-05:00'", DEMAND_UNREADABLE, id="year-10000-in-utc"
    ),
    pytest.param("placed_at = '20000-06-01T00:00:00Z'", DEMAND_UNREADABLE, id="year-20000"),
    pytest.param("quantity_open = 2000000", DEMAND_INVALID, id="quantity-beyond-contract"),
    pytest.param("tier = ''", DEMAND_INVALID, id="blank-tier"),
    pytest.param("line_id = ' L1'", DEMAND_INVALID, id="blank-in-line-id"),
]


@pytest.mark.parametrize(("poison", "kind"), POISONS)
async def test_a_poisoned_order_is_set_aside_and_every_other_order_served_in_the_pass(
    pg_pool: AsyncConnectionPool, ledger: Ledger, poison: str, kind: str
) -> None:
    poisoned, first, second = (f"{name}-{ledger.sku}" for name in ("poisoned", "first", "second"))
    await ledger.wait(poisoned, 2, minutes=0)  # first in line: before the fix it stalled all
    await ledger.wait(first, 2, minutes=10)
    await ledger.wait(second, 3, minutes=20)
    await plant(ledger.dsn, poison, poisoned)
    pass_id = f"p-{ledger.sku}"

    report = await env.run(
        allocator(pg_pool, release_mode="quantity").allocate,
        request(pass_id, *ledger.setup(), ledger.receipt(5)),
    )

    assert (report.orders_waiting, report.orders_released, report.units_released) == (2, 2, 5)
    assert await ledger.held() == {first: 2, second: 3}
    assert await ledger.stock() == (5, 5)
    assert await rows(
        ledger.dsn,
        "SELECT order_id FROM allotment_deliveries WHERE pass_id = %s ORDER BY order_id",
        pass_id,
    ) == [(first,), (second,)]
    # the poisoned order's demand is left as it is, for an operator to fix
    assert await rows(ledger.dsn, "SELECT count(*) FROM demand WHERE order_id = %s", poisoned) == [
        (1,)
    ]
    [(raised_kind, severity, still_open, detail)] = await exceptions_of(ledger.dsn, poisoned)
    assert (raised_kind, severity, still_open) == (kind, "high", True)
    assert f"order {poisoned}'s demand on site s" in detail and pass_id in detail


async def test_one_open_exception_per_order_and_cause_until_the_row_is_fixed(
    pg_pool: AsyncConnectionPool, ledger: Ledger
) -> None:
    """Every pass skips the order, but only the first raises; once an operator resolves the
    exception while the row is still bad, the next pass raises it again; once the row is
    fixed, the order is served."""
    run = allocator(pg_pool)
    poisoned = f"poisoned-{ledger.sku}"
    await ledger.wait(poisoned, 2, minutes=0)
    await plant(ledger.dsn, "placed_at = 'infinity'", poisoned)

    def pass_id() -> str:
        return f"p-{uuid.uuid4().hex[:8]}"

    await env.run(run.allocate, request(pass_id(), *ledger.setup(), ledger.receipt(2)))
    await env.run(run.allocate, request(pass_id(), full=True))  # the sweep
    await env.run(run.allocate, request(pass_id(), order_ids=(poisoned,)))  # its own check
    assert [(k, o) for k, _, o, _ in await exceptions_of(ledger.dsn, poisoned)] == [
        (DEMAND_UNREADABLE, True)
    ]
    assert await ledger.held() == {}

    await rows(
        ledger.dsn,
        "UPDATE exceptions SET resolved_at = now(), resolved_by = 'ops', resolution = 'fixed'"
        " WHERE order_id = %s RETURNING 1",
        poisoned,
    )
    await env.run(run.allocate, request(pass_id(), full=True))
    assert [(k, o) for k, _, o, _ in await exceptions_of(ledger.dsn, poisoned)] == [
        (DEMAND_UNREADABLE, False),
        (DEMAND_UNREADABLE, True),
    ]

    await rows(
        ledger.dsn,
        "UPDATE demand SET placed_at = %s WHERE order_id = %s RETURNING 1",
        PLACED,
        poisoned,
    )
    report = await env.run(run.allocate, request(pass_id(), full=True))
    assert (report.orders_waiting, report.units_released) == (1, 2)
    assert await ledger.held() == {poisoned: 2}
    assert len(await exceptions_of(ledger.dsn, poisoned)) == 2
