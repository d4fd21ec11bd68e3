"""The open demand an allocation pass plans: read in the planner's priority order, a page at a
time, only as far as the stock goes.

The planner is greedy in priority order (`domain.planner.release`): it sorts the backorders by
`queue_position` (tier rank, placed_at, order id) and each order in turn takes what its policy
allows from what the orders ahead of it left; one that cannot be released gives back what it
tried and takes nothing. So what an order gets depends on the stock and on the orders ahead of
it only, never on those behind it, and stock only shrinks as the queue is served.

A pass therefore reads, for each sku in play, the orders waiting for it in that order from the
demand index (`demand_queue`, migration 0011), and plans. Say the orders read for sku s so far
end at position f(s) of s's queue. The units of s the planner had left after the orders up to
f(s) are the units of s free at the start less what the orders read *through s's queue* took
(every order ahead of f(s) with a line on s was read through it). When that is 0, nobody
behind f(s) can take a unit of s, whatever else was read: no unread order of s's queue gets
any s. When it is 0 for every sku of an unread order's lines in play, the order gets nothing,
and it blocks nobody, so leaving it unread changes nobody's release (by induction along the
priority order). A pass reads further, for the skus whose queue left units over and still has
unread orders, until that holds. What the planner left after *all* the orders read is not
enough: an order read through another sku's queue may stand behind an unread order of s's
queue and still take s.

Orders are read whole (an order found in s's queue brings its lines for every sku), as the
pass always did; those lines' skus join the pass (their stock is locked and planned). An unread
order's lines for skus outside the pass are not planned: the stock of such a sku goes to its
waiting orders in the pass for that sku (every change of a sku's stock runs one), not to
whichever order a pass for another sku happened to read.

An order's rows repeat its tier and placed_at; rows that disagree (written by hand) have no one
place in the queue, so the order is set aside (`demand_invalid`) like any other row the pass
cannot serve. A set-aside order takes nothing, so it consumes no stock in the rule above.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from pydantic import ValidationError

from domain.order import Fulfillment, FulfillmentType
from domain.planner import Backorder, BackorderLine, Catalog, OrderRelease, Stock
from domain.planner.pool import Pool
from domain.policy import BackorderPolicy
from workflows.converter import describe

DEMAND_UNREADABLE = "demand_unreadable"
"""Set aside: a value of the order's demand rows cannot be read (placed_at `infinity`, year
10000...)."""
DEMAND_INVALID = "demand_invalid"
"""Set aside: the rows read, but are no valid backorder (more units than an order line may
have, a blank tier or line id, lines that disagree on the order's tier or placed_at...)."""
READABLE_FROM = "0001-01-02 00:00:00+00"
READABLE_UNTIL = "9999-12-30 00:00:00+00"
"""placed_at outside these is not fetched (Python's datetime ends at 9999-12-31 in the
session's time zone; PostgreSQL's goes on to 294276 and infinity): its order is set aside."""

FIRST_PAGE = 32
"""Rows of each sku's queue a pass reads first, unless it knows how many units arrived."""
PAGE_MARGIN = 8
"""Rows read first beyond the units that arrived for a sku (every order served takes one)."""
LARGEST_FIRST_PAGE = 4096
GROWTH_CAP = 16
"""A further page is at most this many times the rows of the sku's queue read so far."""
UNLISTED_RANK = BackorderPolicy(tier_ranks={}).tier_rank("unlisted")
"""Where the policy queues a tier it does not list (after every listed one)."""
_ALL_UNITS = 1 << 62


@dataclass(frozen=True)
class SetAside:
    """An order the pass cannot serve, and why (the exception's kind and a sentence)."""

    order_id: str
    kind: str
    reason: str


class _Unservable(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


Cursor = tuple[int, str, str]
"""The last row read of a sku's queue: (tier rank, placed_at as PostgreSQL's text, order id)."""

_ROWS = """
SELECT order_id, line_id, sku, quantity_open, tier,
       CASE WHEN placed_at >= %(from)s AND placed_at < %(until)s THEN placed_at END,
       placed_at::text, fulfillment_type, pickup_location, shipments, release_in_full,
       site = %(site)s
  FROM demand
 WHERE {which}
 ORDER BY order_id, line_id
   FOR UPDATE
"""
"""Orders' rows, locked, in the one order every pass locks demand rows in. The site is
checked on the rows, not in the WHERE clause: with stale statistics (a burst of new demand)
the planner would otherwise scan the site's whole prefix of `demand_queue` for a few orders."""

_PAGE = """
WITH RECURSIVE
want AS (
    SELECT *
      FROM unnest(%(skus)s::text[], %(rows)s::int[], %(after_rank)s::int[],
                  %(after_at)s::timestamptz[], %(after_id)s::text[])
           AS w(sku, n, after_rank, after_at, after_id)
),
tiers AS (  -- the tiers waiting for each sku: a skip scan of the index, one probe per tier
    SELECT w.sku,
           (SELECT d.tier FROM demand d WHERE d.site = %(site)s AND d.sku = w.sku
             ORDER BY d.tier LIMIT 1) AS tier
      FROM want w
    UNION ALL
    SELECT t.sku,
           (SELECT d.tier FROM demand d WHERE d.site = %(site)s AND d.sku = t.sku
               AND d.tier > t.tier ORDER BY d.tier LIMIT 1)
      FROM tiers t
     WHERE t.tier IS NOT NULL
),
queues AS (
    SELECT w.sku, w.n, w.after_rank, w.after_at, w.after_id, t.tier,
           coalesce(r.rank, %(unlisted)s) AS rank
      FROM tiers t
      JOIN want w ON w.sku = t.sku
      LEFT JOIN unnest(%(tier_names)s::text[], %(tier_ranks)s::int[]) AS r(tier, rank)
             ON r.tier = t.tier
     WHERE t.tier IS NOT NULL
),
found AS (  -- per tier, the next rows in (placed_at, order_id) order: an index range scan
    SELECT q.sku, q.n, q.rank, p.order_id, p.placed_at
      FROM queues q
     CROSS JOIN LATERAL (
           SELECT d.order_id, d.placed_at FROM demand d
            WHERE d.site = %(site)s AND d.sku = q.sku AND d.tier = q.tier
              AND (q.after_rank IS NULL OR q.rank > q.after_rank)
            ORDER BY d.placed_at, d.order_id COLLATE "C"
            LIMIT q.n) p
    UNION ALL
    SELECT q.sku, q.n, q.rank, p.order_id, p.placed_at
      FROM queues q
     CROSS JOIN LATERAL (
           SELECT d.order_id, d.placed_at FROM demand d
            WHERE d.site = %(site)s AND d.sku = q.sku AND d.tier = q.tier
              AND q.rank = q.after_rank
              AND (d.placed_at, d.order_id COLLATE "C") > (q.after_at, q.after_id)
            ORDER BY d.placed_at, d.order_id COLLATE "C"
            LIMIT q.n) p
)
SELECT sku, order_id, rank, placed_at::text
  FROM (SELECT f.*, row_number() OVER (PARTITION BY f.sku
                                           ORDER BY f.rank, f.placed_at,
                                                    f.order_id COLLATE "C") AS i
          FROM found f) x
 WHERE i <= n
 ORDER BY sku, i
"""
"""The next rows of each sku's queue after its cursor, in the planner's order: tier rank
(the policy's, passed in), placed_at, order id in code point order (Python's `str` order, so
`COLLATE "C"`). Tiers whose rank is before the cursor's are not scanned at all."""


class DemandQueue:
    """The orders a pass has read, with the rows of each locked, and how far into each sku's
    queue it has read."""

    def __init__(
        self, conn: AsyncConnection[Any], site: str, skus: Iterable[str], policy: BackorderPolicy
    ) -> None:
        self._conn, self._site, self._policy = conn, site, policy
        self._open: set[str] = set(skus)
        """Skus whose queue may have rows not read yet."""
        self._cursor: dict[str, Cursor] = {}
        self._scanned: dict[str, set[str]] = defaultdict(set)
        """Per sku, the orders met in its queue."""
        self._rows_scanned: dict[str, int] = defaultdict(int)
        self._next_page: dict[str, int] = dict.fromkeys(self._open, FIRST_PAGE)
        self._read: set[str] = set()
        self.backorders: list[Backorder] = []
        self.aside: list[SetAside] = []

    @property
    def complete(self) -> bool:
        """Every queue is read to its end: reading further finds nothing."""
        return not self._open

    async def read_all(self) -> None:
        """Every order waiting for one of the skus (the sweep looks at all of them)."""
        if self._open:
            await self._lock_and_read(
                "site = %(site)s AND order_id IN (SELECT order_id FROM demand"
                " WHERE site = %(site)s AND sku = ANY(%(skus)s))",
                {"skus": sorted(self._open)},
            )
        self._open.clear()

    async def read_first(
        self, order_ids: Iterable[str] = (), arriving: Mapping[str, int] | None = None
    ) -> None:
        """The first page of each sku's queue, and the orders named (a check of them looks
        at them wherever they stand in the queue). `arriving`: units the pass's events bring
        per sku; each order served takes at least one, so the page for such a sku is that many
        rows and a few more (a one-unit receipt reads a handful of orders, a large one its
        share of the queue at once)."""
        for sku, units in (arriving or {}).items():
            if sku in self._next_page and units > 0:
                self._next_page[sku] = min(units + PAGE_MARGIN, LARGEST_FIRST_PAGE)
        await self._read_pages(sorted(self._open), sorted(set(order_ids)))

    async def read_more(self, skus: Iterable[str]) -> None:
        """The next page of these skus' queues."""
        await self._read_pages(sorted(set(skus) & self._open), [])

    def unserved(
        self,
        stock: Stock,
        catalog: Catalog,
        as_of: dt.date,
        releases: Sequence[OrderRelease],
    ) -> list[str]:
        """The skus whose queue has unread orders while the orders read through it left units
        of the sku free (as the planner sees stock: on hand now, and the receipts it may use),
        each with its next page sized (`_grown`). Empty: the releases are the whole queue's."""
        if not self._open:
            return []
        policy = self._policy
        until = as_of + dt.timedelta(days=policy.future_date_limit_days)
        pool = Pool(stock, catalog, until if policy.future_inventory else None)
        took: dict[tuple[str, str], int] = defaultdict(int)
        for release in releases:
            for ln in release.lines:
                if ln.released:
                    took[release.order_id, ln.sku] += ln.released
        wanted = []
        for sku in sorted(self._open):
            free = _ALL_UNITS - pool.take(sku, _ALL_UNITS, None, False, set(), [])
            taken = sum(took.get((o, sku), 0) for o in self._scanned[sku])
            if free > taken:
                wanted.append(sku)
                self._next_page[sku] = self._grown(sku, left=free - taken, taken=taken)
        return wanted

    def _grown(self, sku: str, left: int, taken: int) -> int:
        """The next page: as many rows as the queue read so far needed per unit taken, for the
        units left (a quarter more), at most GROWTH_CAP times what was read; when nobody took
        anything, as many as were read (the read doubles). At least FIRST_PAGE rows."""
        read = self._rows_scanned[sku]
        estimate = math.ceil(read * left / taken * 1.25) if taken else read
        return max(FIRST_PAGE, min(estimate, GROWTH_CAP * read))

    async def _read_pages(self, skus: list[str], named: list[str]) -> None:
        found: list[str] = []
        if skus:
            found = await self._scan(skus)
        wanted = [o for o in dict.fromkeys(found + named) if o not in self._read]
        if wanted:  # (by the primary key alone: the orders were found on this site)
            await self._lock_and_read("order_id = ANY(%(orders)s)", {"orders": wanted})
        self._read.update(wanted)

    async def _scan(self, skus: list[str]) -> list[str]:
        """The next page of each sku's queue (unlocked: an index scan); the orders met."""
        ranks = sorted(self._policy.tier_ranks.items())
        cursors = [self._cursor.get(s) for s in skus]
        cur = await self._conn.execute(
            _PAGE,
            {
                "site": self._site,
                "skus": skus,
                "rows": [self._next_page[s] for s in skus],
                "after_rank": [None if c is None else c[0] for c in cursors],
                "after_at": [None if c is None else c[1] for c in cursors],
                "after_id": [None if c is None else c[2] for c in cursors],
                "tier_names": [t for t, _ in ranks],
                "tier_ranks": [r for _, r in ranks],
                "unlisted": UNLISTED_RANK,
            },
        )
        by_sku: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
        for sku, order_id, rank, placed_at in await cur.fetchall():
            by_sku[sku].append((str(order_id), int(rank), str(placed_at)))
        met: list[str] = []
        for sku in skus:
            rows = by_sku.get(sku, [])
            self._rows_scanned[sku] += len(rows)
            if len(rows) < self._next_page[sku]:
                self._open.discard(sku)  # its queue ends in this page
            if rows:
                order_id, rank, placed_at = rows[-1]
                self._cursor[sku] = (rank, placed_at, order_id)
            seen = self._scanned[sku]
            for order_id, _, _ in rows:
                if order_id not in seen:  # (two lines of one order on the sku: met once)
                    seen.add(order_id)
                    met.append(order_id)
        return met

    async def _lock_and_read(self, which: str, params: dict[str, Any]) -> None:
        cur = await self._conn.execute(
            _ROWS.format(which=which),
            {"from": READABLE_FROM, "until": READABLE_UNTIL, "site": self._site, **params},
        )
        by_order: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for row in await cur.fetchall():
            if row[-1]:  # (an order's rows are all on one site)
                by_order[row[0]].append(row[:-1])
        for order_id, rows in by_order.items():
            self._read.add(order_id)
            try:
                self.backorders.append(_backorder(order_id, rows))
            except _Unservable as err:
                self.aside.append(SetAside(order_id, err.kind, err.reason))


def _backorder(order_id: str, rows: list[tuple[Any, ...]]) -> Backorder:
    """One order's demand rows as the planner's backorder, or `_Unservable`."""
    unreadable = next((r[6] for r in rows if r[5] is None), None)
    if unreadable is not None:
        raise _Unservable(
            DEMAND_UNREADABLE,
            f"cannot be read: placed_at {unreadable!r} is not a time the allocator can handle"
            " (years 1 to 9999)",
        )
    _, _, _, _, tier, placed_at, _, kind, pickup, shipments, in_full = rows[0]
    for r in rows[1:]:
        if (r[4], r[5]) != (tier, placed_at):
            raise _Unservable(
                DEMAND_INVALID,
                f"is no valid backorder: its lines disagree on the order's place in the queue"
                f" (line {rows[0][1]!r}: tier {tier!r}, placed_at {rows[0][6]!r};"
                f" line {r[1]!r}: tier {r[4]!r}, placed_at {r[6]!r})",
            )
    try:
        return Backorder(
            order_id=order_id,
            placed_at=placed_at,
            tier=tier,
            fulfillment=Fulfillment(type=FulfillmentType(kind), pickup_location=pickup),
            lines=tuple(BackorderLine(line_id=r[1], sku=r[2], quantity=r[3]) for r in rows),
            shipments=shipments,
            release_in_full=in_full,
        )
    except ValidationError as err:
        raise _Unservable(DEMAND_INVALID, f"is no valid backorder: {describe(err)}") from None
    except ValueError as err:
        raise _Unservable(DEMAND_INVALID, f"is no valid backorder: {err}") from None
