"""The stock a pass hands out, indexed by sku in plain Python objects.

A pass touches every open line, so one take must cost a few list operations, not a model
validation. Takes are tentative: an order that cannot be released under its policy gives all of
them back, and so blocks nobody behind it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from domain.planner.catalog import Catalog
from domain.planner.stock import Receipt, Stock


class Cell:
    """One stock row during a pass: units on hand at a location, or one receipt on its way."""

    __slots__ = ("expected_date", "location", "quantity", "rank", "receipt_id", "sku")

    def __init__(
        self,
        sku: str,
        location: str,
        rank: int,
        quantity: int,
        expected_date: dt.date | None = None,
        receipt_id: str | None = None,
    ) -> None:
        self.sku = sku
        self.location = location
        self.rank = rank
        """The location's place in routing order (0 is preferred); unique per location."""
        self.quantity = quantity
        """Units still free in this pass."""
        self.expected_date = expected_date
        self.receipt_id = receipt_id
        """Set for future stock only."""


Take = tuple[Cell, int]


class Pool:
    """Current stock per sku by location rank, then usable receipts per sku by expected date."""

    __slots__ = ("_at", "_current", "_future", "_left_later", "_left_now")

    def __init__(
        self,
        stock: Stock,
        catalog: Catalog,
        future_until: dt.date | None,
        withheld: frozenset[str] = frozenset(),
    ) -> None:
        """`future_until`: the last expected date of receipts to use; None uses none.
        `withheld`: skus none of whose stock is handed out (pre-orders before their release)."""
        ranked = sorted(stock.locations, key=lambda loc: (loc.rank, loc.location_id))
        rank = {loc.location_id: i for i, loc in enumerate(ranked)}
        self._current: dict[str, list[Cell]] = {}
        self._at: dict[tuple[str, str], Cell] = {}
        for level in stock.on_hand:
            if level.quantity and level.sku not in withheld:
                cell = Cell(level.sku, level.location, rank[level.location], level.quantity)
                self._current.setdefault(level.sku, []).append(cell)
                self._at[level.sku, level.location] = cell
        self._future: dict[str, list[Cell]] = {}
        for r in _usable(stock.receipts, catalog, future_until):
            if r.sku in withheld:
                continue
            cell = Cell(
                r.sku, r.location, rank[r.location], r.quantity, r.expected_date, r.receipt_id
            )
            self._future.setdefault(r.sku, []).append(cell)
        self._left_now = _index(self._current, _by_rank)
        self._left_later = _index(self._future, _by_date)

    def give_back(self, takes_per_line: Iterable[list[Take]]) -> None:
        """Return what an order took: it cannot be released after all."""
        for takes in takes_per_line:
            for cell, quantity in takes:
                cell.quantity += quantity
                left = self._left_now if cell.receipt_id is None else self._left_later
                left[cell.sku] += quantity

    def take(
        self,
        sku: str,
        need: int,
        pickup: str | None,
        whole: bool,
        shipping_from: set[str],
        takes: list[Take],
    ) -> int:
        """Assign up to `need` units, current stock before future stock; return what is missing.

        The takes are appended to `takes`. `whole`: all of `need` or nothing. `pickup`: draw
        only on that location (BOPIS). `shipping_from`: where the order already ships from; a
        location there that can cover the line is preferred, so the order splits less.
        """
        now = self._left_now.get(sku, 0)
        later = self._left_later.get(sku, 0)
        if not now and not later:
            return need
        if pickup is not None:
            return self._take_at(sku, need, pickup, whole, takes)
        if whole and now + later < need:
            return need
        left = need
        if now:
            if now >= need:
                left = _take_covering(self._current[sku], need, shipping_from, takes)
            else:
                left = _take_in_order(self._current[sku], need, takes)
            self._left_now[sku] = now - (need - left)
        if left and later:
            before = left
            left = _take_in_order(self._future[sku], left, takes)
            self._left_later[sku] = later - (before - left)
        return left

    def _take_at(self, sku: str, need: int, pickup: str, whole: bool, takes: list[Take]) -> int:
        here = self._at.get((sku, pickup))
        now = [here] if here is not None and here.quantity else []
        later = [c for c in self._future.get(sku, ()) if c.location == pickup and c.quantity]
        if whole and sum(c.quantity for c in now) + sum(c.quantity for c in later) < need:
            return need
        left = _take_in_order(now, need, takes)
        if left < need:
            self._left_now[sku] -= need - left
        if left and later:
            before = left
            left = _take_in_order(later, left, takes)
            self._left_later[sku] -= before - left
        return left


def _take_covering(cells: list[Cell], need: int, shipping_from: set[str], takes: list[Take]) -> int:
    """Take all of `need` from one location if one has it, preferring where the order ships from."""
    cover: Cell | None = None
    for cell in cells:
        if cell.quantity >= need:
            if cell.location in shipping_from:
                cover = cell
                break
            if cover is None:
                cover = cell
    if cover is None:
        return _take_in_order(cells, need, takes)
    cover.quantity -= need
    takes.append((cover, need))
    return 0


def _usable(
    receipts: Iterable[Receipt], catalog: Catalog, until: dt.date | None
) -> Iterator[Receipt]:
    """Receipts expected by `until`, of products that allow future inventory."""
    if until is None:
        return
    allowed: dict[str, bool] = {}
    for r in receipts:
        if r.expected_date is not None and r.expected_date <= until:
            if r.sku not in allowed:
                allowed[r.sku] = catalog.product(r.sku).future_inventory
            if allowed[r.sku]:
                yield r


def _take_in_order(cells: list[Cell], need: int, takes: list[Take]) -> int:
    """Take greedily from `cells` in their order; return what is still missing."""
    for cell in cells:
        q = cell.quantity
        if q:
            if q >= need:
                cell.quantity = q - need
                takes.append((cell, need))
                return 0
            cell.quantity = 0
            takes.append((cell, q))
            need -= q
    return need


def _by_rank(cell: Cell) -> int:
    return cell.rank


def _by_date(cell: Cell) -> tuple[dt.date, int, str]:
    assert cell.expected_date is not None and cell.receipt_id is not None  # receipts only
    return (cell.expected_date, cell.rank, cell.receipt_id)


def _index(cells_by_sku: dict[str, list[Cell]], order: Callable[[Cell], Any]) -> dict[str, int]:
    """Sort each sku's cells into serving order; return the units free per sku."""
    left: dict[str, int] = {}
    for sku, cells in cells_by_sku.items():
        cells.sort(key=order)
        left[sku] = sum(c.quantity for c in cells)
    return left
