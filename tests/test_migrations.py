"""Schema migrations on a real PostgreSQL: in order, once, safe to run concurrently."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from db.migrate import MIGRATIONS_DIR, MigrationError, discover, migrate
from embedded.postgres import EmbeddedPostgres


@pytest.fixture
async def empty_db(pg_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    name = f"m_{request.node.name.lower()[:40]}"
    await pg_server.create_database(name)
    return pg_server.dsn(name)


async def recorded(dsn: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        return [r[0] for r in await cur.fetchall()]


async def test_shipped_migrations_apply_once_in_order(empty_db: str) -> None:
    shipped = [m.version for m in discover()]
    assert shipped == sorted(shipped) and shipped[0] == "0001"
    assert await migrate(empty_db) == shipped
    assert await migrate(empty_db) == []
    assert await recorded(empty_db) == shipped
    async with await psycopg.AsyncConnection.connect(empty_db) as conn:
        cur = await conn.execute("SELECT to_regclass('orders') IS NOT NULL")
        assert (await cur.fetchone()) == (True,)


async def test_concurrent_runs_apply_each_migration_once(empty_db: str) -> None:
    results = await asyncio.gather(*(migrate(empty_db) for _ in range(4)))
    applied = [v for r in results for v in r]
    assert sorted(applied) == [m.version for m in discover()]


async def test_a_failing_migration_leaves_no_trace_and_later_ones_wait(
    empty_db: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE a (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE b (id int); SELECT * FROM missing;")
    (tmp_path / "0003_later.sql").write_text("CREATE TABLE c (id int);")
    with pytest.raises(psycopg.errors.UndefinedTable):
        await migrate(empty_db, tmp_path)
    assert await recorded(empty_db) == ["0001"]
    async with await psycopg.AsyncConnection.connect(empty_db) as conn:
        cur = await conn.execute("SELECT to_regclass('b'), to_regclass('c')")
        assert (await cur.fetchone()) == (None, None)


async def test_editing_an_applied_migration_is_refused(empty_db: str, tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE a (id int);")
    await migrate(empty_db, tmp_path)
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE a (id bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(empty_db, tmp_path)


def test_migration_files_must_be_numbered(tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="must start with a number"):
        discover(tmp_path)


def test_shipped_directory_is_the_package_data() -> None:
    assert MIGRATIONS_DIR.is_dir() and any(MIGRATIONS_DIR.glob("0001_*.sql"))


async def test_event_payloads_recorded_before_they_were_kept_become_unknown(
    empty_db: str, tmp_path: Path
) -> None:
    """0008: an event applied before 0004 has the payload '{}', which says nothing about it: it
    becomes NULL (a redelivery of it cannot be compared); a real payload stays, and a row
    written without one is NULL from now on."""
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0008":
            shutil.copy(path, tmp_path)
    await migrate(empty_db, tmp_path)
    async with await psycopg.AsyncConnection.connect(empty_db, autocommit=True) as conn:
        await conn.execute("INSERT INTO inventory_events (event_id) VALUES ('before-0004')")
        await conn.execute(
            """INSERT INTO inventory_events (event_id, kind, payload)
               VALUES ('since-0004', 'product', '{"type": "product", "sku": "KTP"}')"""
        )
        assert "0008" in await migrate(empty_db)
        await conn.execute("INSERT INTO inventory_events (event_id) VALUES ('by-hand')")
        cur = await conn.execute("SELECT event_id, payload FROM inventory_events ORDER BY 1")
        assert await cur.fetchall() == [
            ("before-0004", None),
            ("by-hand", None),
            ("since-0004", {"type": "product", "sku": "KTP"}),
        ]


async def test_exceptions_get_numbers_in_raised_order_and_resolutions_say_who_and_why(
    empty_db: str, tmp_path: Path
) -> None:
    """0009: the rows already queued are numbered in raised_at order and new rows take the
    next numbers; a row resolved before says who and why were not recorded; from now on a
    resolution without both is refused, and queue_exception's ON CONFLICT still keeps the
    first row."""
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0009":
            shutil.copy(path, tmp_path)
    await migrate(empty_db, tmp_path)
    async with await psycopg.AsyncConnection.connect(empty_db, autocommit=True) as conn:
        await conn.execute(
            """INSERT INTO exceptions (key, order_id, kind, severity, detail, raised_at,
                                       resolved_at)
               VALUES ('o-2/b', 'o-2', 'ftc_deadline', 'high', 'later', '2026-11-02', NULL),
                      ('o-1/a', 'o-1', 'payment_capture_failed', 'high', 'first',
                       '2026-11-01', '2026-11-03'),
                      ('o-3/c', 'o-3', 'message_refused', 'low', 'last', '2026-11-05', NULL)"""
        )
        assert (await migrate(empty_db))[0] == "0009"
        await conn.execute(
            """INSERT INTO exceptions (key, order_id, kind, severity, detail)
               VALUES ('o-4/d', 'o-4', 'demand_invalid', 'high', 'new'),
                      ('o-2/b', 'o-2', 'ftc_deadline', 'high', 'again')
               ON CONFLICT (key) DO NOTHING"""
        )
        cur = await conn.execute(
            "SELECT id, key, detail, resolved_by, resolution FROM exceptions ORDER BY id"
        )
        assert await cur.fetchall() == [
            (1, "o-1/a", "first", "unknown", "resolved before 0009: who and why were not recorded"),
            (2, "o-2/b", "later", None, None),
            (3, "o-3/c", "last", None, None),
            (4, "o-4/d", "new", None, None),
        ]
        for change in (
            "resolved_at = now()",
            "resolved_at = now(), resolved_by = 'ann'",
            "resolved_at = now(), resolved_by = 'ann', resolution = ' '",
            "resolved_by = 'ann', resolution = 'not resolved yet'",
        ):
            with pytest.raises(psycopg.errors.CheckViolation):
                await conn.execute(f"UPDATE exceptions SET {change} WHERE id = 2")
        cur = await conn.execute(
            "UPDATE exceptions SET resolved_at = now(), resolved_by = 'ann', resolution = 'ok'"
            " WHERE id = 2"
        )
        assert cur.rowcount == 1


async def test_orders_recorded_before_0010_get_the_history_the_tables_tell(
    empty_db: str, tmp_path: Path
) -> None:
    """0010: each order's current status; the "on backorder" notice (sent only when acceptance
    left units waiting) as the start of its backorder, or else its first purchase-order promise
    (acceptance promised its units at once); `backordered_at` the earliest of them, none for an
    order that never waited."""
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0010":
            shutil.copy(path, tmp_path)
    await migrate(empty_db, tmp_path)
    t0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    async with await psycopg.AsyncConnection.connect(empty_db, autocommit=True) as conn:
        for order_id, status in [
            ("O-1", "completed"),  # waited from acceptance, filled since
            ("O-2", "awaiting_receipt"),  # promised from a purchase order at acceptance
            ("O-3", "completed"),  # shipped at once
        ]:
            await conn.execute(
                """INSERT INTO orders (order_id, workflow_id, order_number, site, customer_id,
                                       customer_tier, placed_at, currency, order_value, status,
                                       skus, status_since)
                   VALUES (%s, %s, %s, 'east', 'c', 'standard', %s, 'USD', 10, %s, '{KTP}',
                           %s)""",
                (order_id, f"backorder-{order_id}", order_id, t0, status, t0 + timedelta(days=5)),
            )
        await conn.execute(
            """INSERT INTO notices (key, order_id, kind, payload, created_at)
               VALUES ('backorder-O-1/accept/on-backorder', 'O-1', 'on_backorder', '{}', %s),
                      ('backorder-O-3/s/shipped', 'O-3', 'shipped', '{}', %s)""",
            (t0 + timedelta(minutes=1), t0 + timedelta(minutes=1)),
        )
        await conn.execute("INSERT INTO locations (location_id) VALUES ('DC')")
        await conn.execute(
            """INSERT INTO future_receipts (receipt_id, sku, location, quantity, expected_date)
               VALUES ('PO-1', 'KTP', 'DC', 5, '2026-11-20')"""
        )
        await conn.execute(
            """INSERT INTO reservations (key, order_id, line_id, sku, location, quantity, source,
                                         receipt_id, created_at)
               VALUES ('k', 'O-2', '1', 'KTP', 'DC', 1, 'future', 'PO-1', %s)""",
            (t0 + timedelta(minutes=2),),
        )
        assert (await migrate(empty_db))[0] == "0010"  # (and the ones after it)
        cur = await conn.execute(
            """SELECT h.order_id, h.status, h.status_since - %s, h.inferred, o.backordered_at - %s
                 FROM order_status_history h JOIN orders o USING (order_id)
                ORDER BY 1, 3, 2""",
            (t0, t0),
        )
        minute, five_days = timedelta(minutes=1), timedelta(days=5)
        assert await cur.fetchall() == [
            ("O-1", "backordered", minute, True, minute),
            ("O-1", "completed", five_days, True, minute),
            ("O-2", "awaiting_receipt", 2 * minute, True, 2 * minute),
            ("O-2", "awaiting_receipt", five_days, True, 2 * minute),
            ("O-3", "completed", five_days, True, None),
        ]
