"""The read model for commands that answer from PostgreSQL (strongly consistent: what the
activities wrote, not Temporal's eventually consistent visibility)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cli.errors import CliError
from config import Settings


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
    """One connection with rows as dicts; an unreachable database is a CliError that says
    where it looked."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            settings.database_dsn, row_factory=dict_row, connect_timeout=5
        )
    except psycopg.OperationalError as err:
        hint = " (is `backorder dev` running?)" if settings.embedded_database else ""
        reason = " ".join(str(err).split())  # libpq's message spans lines
        raise CliError(f"cannot reach PostgreSQL{hint}: {reason}") from None
    async with conn:
        yield conn
