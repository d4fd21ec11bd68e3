"""How long one release pass takes for a whole merchant: `python -m bench.planner [--quick]`.

Open backorders over 5,000 skus and 20 locations at 10k, 100k and 1M lines, from a fixed seed.
Inputs are pydantic models built (and frozen out of the garbage collector's way) before any clock
starts. "decide" is the planner's pass on plain objects: index the stock, sort the demand, allocate.
"+models" writes every winner's release as pydantic models (ReleasePass.to_plan). The baseline
only sorts the same demand by priority key, so "decide/sort" compares the planner with the one
n log n step it cannot avoid, on any machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from typing import TypeVar

from domain.order import Fulfillment, FulfillmentType
from domain.planner import (
    Backorder,
    BackorderLine,
    Catalog,
    Location,
    Receipt,
    Stock,
    StockLevel,
    decide_release,
    queue_position,
)
from domain.policy import BackorderPolicy, ReleaseMode

SEED = 2026
SKUS = 5_000
LOCATIONS = 20
AS_OF = dt.date(2026, 4, 20)
SIZES = (10_000, 100_000, 1_000_000)
MODELS_UP_TO = 100_000
"""Writing models is linear in released orders; at 1M it would only make the run long."""
POLICY = BackorderPolicy(
    release_mode=ReleaseMode.QUANTITY, future_inventory=True, future_date_limit_days=30
)
T = TypeVar("T")


@dataclass(frozen=True)
class Merchant:
    backorders: list[Backorder]
    stock: Stock
    catalog: Catalog

    @property
    def coverage(self) -> float:
        """Usable units in stock per open unit."""
        horizon = AS_OF + dt.timedelta(POLICY.future_date_limit_days)
        on_hand = sum(s.quantity for s in self.stock.on_hand)
        coming = sum(
            r.quantity
            for r in self.stock.receipts
            if r.expected_date is not None and r.expected_date <= horizon
        )
        wanted = sum(ln.quantity for b in self.backorders for ln in b.lines)
        return (on_hand + coming) / wanted


@dataclass(frozen=True)
class Row:
    lines: int
    orders: int
    released: int
    units: int
    sort: float
    decide: float
    models: float | None


def merchant(lines: int, seed: int = SEED) -> Merchant:
    """About `lines` open lines, and stock for a good third of their units.

    That is a pass right after a large delivery: most passes release far fewer orders.
    """
    rnd = random.Random(seed)
    locations = [f"L{i:02}" for i in range(LOCATIONS)]
    skus = [f"SKU-{i:05}" for i in range(SKUS)]
    sth = Fulfillment(type=FulfillmentType.SHIP_TO_HOME)
    stores = [
        Fulfillment(type=FulfillmentType.PICKUP_IN_STORE, pickup_location=x) for x in locations
    ]
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    tiers = ["standard"] * 90 + ["vip"] * 4 + ["expedited"] * 3 + ["wholesale"] * 3
    demand: Counter[str] = Counter()
    shared: dict[tuple[int, str, int], BackorderLine] = {}  # frozen models: orders may share
    backorders: list[Backorder] = []
    made = 0
    while made < lines:
        order_lines = []
        for n in range(min(1 + int(6 * rnd.random()), lines - made)):
            sku = skus[int(SKUS * rnd.random() ** 2)]  # popular skus are backordered more
            quantity = 1 + int(5 * rnd.random())
            demand[sku] += quantity
            if (n, sku, quantity) not in shared:
                shared[n, sku, quantity] = BackorderLine(
                    line_id=f"{n + 1}", sku=sku, quantity=quantity
                )
            order_lines.append(shared[n, sku, quantity])
        made += len(order_lines)
        backorders.append(
            Backorder(
                order_id=f"O{len(backorders):07}",
                placed_at=start + dt.timedelta(seconds=int(90 * 86_400 * rnd.random())),
                tier=tiers[int(100 * rnd.random())],
                fulfillment=sth if rnd.random() < 0.9 else rnd.choice(stores),
                lines=tuple(order_lines),
            )
        )
    on_hand: list[StockLevel] = []
    receipts: list[Receipt] = []
    for sku, need in sorted(demand.items()):
        for loc in rnd.sample(locations, rnd.randint(1, 4)):
            on_hand.append(StockLevel(sku=sku, location=loc, quantity=rnd.randint(0, need // 4)))
        for _ in range(rnd.randint(0, 2)):
            day = rnd.randint(0, 60)
            receipts.append(
                Receipt(
                    receipt_id=f"R{len(receipts):07}",
                    sku=sku,
                    location=rnd.choice(locations),
                    quantity=rnd.randint(1, need // 4 + 1),
                    expected_date=None if rnd.random() < 0.1 else AS_OF + dt.timedelta(day),
                )
            )
    stock = Stock(
        locations=tuple(Location(location_id=loc, rank=i % 5) for i, loc in enumerate(locations)),
        on_hand=tuple(on_hand),
        receipts=tuple(receipts),
    )
    return Merchant(backorders, stock, Catalog())


def best_of(repeat: int, run: Callable[[], T]) -> tuple[float, T]:
    """The fastest of `repeat` runs: the one least disturbed by the machine's other work."""
    timed: list[tuple[float, T]] = []
    for _ in range(repeat):
        gc.collect()
        began = time.perf_counter()
        result = run()
        timed.append((time.perf_counter() - began, result))
    return min(timed, key=lambda t: t[0])


def measure(m: Merchant, policy: BackorderPolicy, repeat: int, models: bool) -> Row:
    key = partial(queue_position, policy=policy)
    sort, _ = best_of(repeat, lambda: sorted(m.backorders, key=key))
    decide, decided = best_of(
        repeat, lambda: decide_release(m.backorders, m.stock, m.catalog, policy, AS_OF)
    )
    written = None
    if models:
        written, plan = best_of(1, decided.to_plan)
        assert len(plan.releases) == len(decided)
    return Row(
        lines=sum(len(b.lines) for b in m.backorders),
        orders=len(m.backorders),
        released=len(decided),
        units=sum(q for d in decided.decisions for takes in d.takes for _, q in takes),
        sort=sort,
        decide=decide,
        models=written,
    )


def built(lines: int) -> Merchant:
    """Build outside the clock, then move the inputs out of the garbage collector's scans."""
    gc.disable()
    m = merchant(lines)
    gc.enable()
    gc.collect()
    gc.freeze()
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1M-line case")
    sizes = SIZES[:2] if parser.parse_args().quick else SIZES
    days = POLICY.future_date_limit_days
    print(
        f"release planner: {SKUS:,} skus, {LOCATIONS} locations, seed {SEED}; policy: "
        f"release_mode={POLICY.release_mode.value}, future inventory ({days} days); "
        "90% ship-to-home, 10% pickup in store"
    )
    print("not timed: building the input models. sort = baseline, priority sort only.")
    print(
        "decide = decide_release(): the whole pass, what the allocator runs under its row locks "
        "(target < 1 s at 100k lines).\n+models = ReleasePass.to_plan(): every winner's "
        "OrderRelease as pydantic models; per order = what dispatching one winner adds."
    )
    print("best of 3 runs up to 100k lines, 1 run at 1M (+models not timed there).\n")
    print(
        f"{'lines':>9} {'orders':>8} {'released':>8} {'units':>9} {'coverage':>8} {'sort':>7} "
        f"{'decide':>7} {'+models':>7} {'per order':>9} {'decide/sort':>11}"
    )
    rows = []
    modes: dict[ReleaseMode, Row] = {}
    for lines in sizes:
        m = built(lines)
        row = measure(m, POLICY, repeat=3 if lines <= 100_000 else 1, models=lines <= MODELS_UP_TO)
        rows.append(row)
        models = "-" if row.models is None else f"{row.models:.3f}"
        per_order = "-" if row.models is None else f"{row.models / row.released * 1e6:.0f} us"
        print(
            f"{row.lines:>9,} {row.orders:>8,} {row.released:>8,} {row.units:>9,} "
            f"{m.coverage:>7.0%} {row.sort:>7.3f} {row.decide:>7.3f} {models:>7} {per_order:>9} "
            f"{row.decide / row.sort:>10.1f}x"
        )
        if lines == 100_000:
            for mode in ReleaseMode:
                modes[mode] = measure(m, POLICY.override(release_mode=mode), 3, models=False)
        del m
        gc.unfreeze()
    print("\ngrowth per 10x lines (linear: 10x; n log n: 12.5x from 10k, 12.0x from 100k)")
    for small, large in pairwise(rows):
        print(
            f"  {small.lines:>9,} -> {large.lines:>9,}: sort {large.sort / small.sort:.1f}x, "
            f"decide {large.decide / small.decide:.1f}x"
        )
    print("\ndecide at 100k lines by release mode:")
    for mode, row in modes.items():
        print(f"  {mode.value:>10}: {row.decide:.3f}s, {row.released:,} orders released")


if __name__ == "__main__":
    main()
