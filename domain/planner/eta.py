"""The expected ship date told to a waiting customer (the "on backorder" notice, the FTC rule)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from domain.planner.stock import Receipt


def expected_ship_date(
    waiting_skus: Iterable[str], receipts: Iterable[Receipt], today: dt.date, default_days: int
) -> dt.date | None:
    """When everything waiting can ship: per sku the earliest receipt expected from today on, or
    `default_days` from today when none is announced; the latest of those. None: nothing waits."""
    earliest: dict[str, dt.date] = {}
    for r in receipts:
        if r.expected_date is not None and r.expected_date >= today:
            known = earliest.get(r.sku)
            earliest[r.sku] = r.expected_date if known is None else min(known, r.expected_date)
    fallback = today + dt.timedelta(days=default_days)
    return max((earliest.get(sku, fallback) for sku in set(waiting_skus)), default=None)
