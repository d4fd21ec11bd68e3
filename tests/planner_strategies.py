"""Builders for planner scenarios, and hypothesis strategies for small random merchants."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from hypothesis import strategies as st

from domain.order import Customer, Fulfillment, FulfillmentType, Order, OrderLine
from domain.planner import (
    Backorder,
    BackorderLine,
    Catalog,
    Location,
    Product,
    Receipt,
    Stock,
    StockLevel,
)
from domain.policy import AcceptanceSplit, BackorderPolicy, InsertHandling, ReleaseMode

AS_OF = dt.date(2026, 4, 20)
"""The planning date of every scenario; the seeds' future dates are May 1, 10 and 15."""

STH = Fulfillment(type=FulfillmentType.SHIP_TO_HOME)


def bopis(location: str) -> Fulfillment:
    return Fulfillment(type=FulfillmentType.PICKUP_IN_STORE, pickup_location=location)


def placed(day: str) -> dt.datetime:
    """`"2026-01-05"` or `"2026-01-05T10:00"` as an aware UTC time."""
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)


def backorder(
    order_id: str,
    lines: Mapping[str, int],
    *,
    day: str = "2026-01-05",
    tier: str = "standard",
    fulfillment: Fulfillment = STH,
    shipments: int = 0,
    release_in_full: bool = False,
) -> Backorder:
    """A backorder whose lines are named after their skus: `{"KTP": 5}` is line "KTP"."""
    return Backorder(
        order_id=order_id,
        placed_at=placed(day),
        tier=tier,
        fulfillment=fulfillment,
        lines=tuple(BackorderLine(line_id=s, sku=s, quantity=q) for s, q in lines.items()),
        shipments=shipments,
        release_in_full=release_in_full,
    )


def order(
    order_id: str,
    lines: Mapping[str, int],
    *,
    allow: Mapping[str, bool] | None = None,
    fulfillment: Fulfillment = STH,
    tier: str = "standard",
) -> Order:
    """An order whose lines are named after their skus; `allow` sets lines' allow_backorder."""
    allow = allow or {}
    return Order(
        order_id=order_id,
        order_number=order_id,
        placed_at=placed("2026-01-05"),
        currency="USD",
        customer=Customer(id="c1", email="c1@example.com", tier=tier),
        fulfillment=fulfillment,
        lines=[
            OrderLine(line_id=s, sku=s, quantity=q, unit_price=1, allow_backorder=allow.get(s))
            for s, q in lines.items()
        ],
    )


def stock(
    on_hand: Mapping[tuple[str, str], int] | None = None,
    receipts: Iterable[tuple[str, str, int, str | None]] = (),
    locations: Iterable[str] = ("A", "B"),
) -> Stock:
    """`on_hand`: units per (sku, location); `receipts`: (sku, location, units, "2026-05-01").

    Locations rank in the order given.
    """
    return Stock(
        locations=tuple(Location(location_id=loc, rank=i) for i, loc in enumerate(locations)),
        on_hand=tuple(
            StockLevel(sku=s, location=loc, quantity=q) for (s, loc), q in (on_hand or {}).items()
        ),
        receipts=tuple(
            Receipt(
                receipt_id=f"r{i}",
                sku=s,
                location=loc,
                quantity=q,
                expected_date=None if day is None else dt.date.fromisoformat(day),
            )
            for i, (s, loc, q, day) in enumerate(receipts)
        ),
    )


def catalog(**flags: Mapping[str, bool]) -> Catalog:
    """`catalog(I={"insert": True})`: products by sku with their switches."""
    return Catalog(products=tuple(Product(sku=s, **f) for s, f in flags.items()))


# --- strategies: a few skus, locations, dates and tiers, so that orders really compete ---

SKUS = ("S1", "S2", "S3")
LOCATIONS = ("L1", "L2", "L3")
TIERS = ("standard", "vip", "wholesale")


@st.composite
def policies(draw: st.DrawFn) -> BackorderPolicy:
    """Partial release modes first: they have the most to get wrong."""
    mode = draw(st.sampled_from([ReleaseMode.QUANTITY, ReleaseMode.LINE_ITEM, ReleaseMode.FULL]))
    split = AcceptanceSplit.ALL
    if mode is ReleaseMode.FULL:
        split = draw(st.sampled_from([AcceptanceSplit.ALL, *AcceptanceSplit]))
    return BackorderPolicy(
        backorders_enabled=draw(st.booleans()),
        release_mode=mode,
        acceptance_split=split,
        max_shipments=draw(st.sampled_from([None, 3, 5, None, 1, 2])),
        future_inventory=draw(st.booleans()),
        future_date_limit_days=draw(st.integers(0, 20)),
        inserts=draw(st.sampled_from(InsertHandling)),
    )


@st.composite
def catalogs(draw: st.DrawFn) -> Catalog:
    return Catalog(
        products=tuple(
            Product(
                sku=s,
                backorderable=draw(st.booleans()),
                future_inventory=draw(st.booleans()),
                insert=draw(st.booleans()),
            )
            for s in draw(st.lists(st.sampled_from(SKUS), unique=True))
        )
    )


_dates = st.none() | st.integers(-3, 25).map(lambda d: AS_OF + dt.timedelta(days=d))


@st.composite
def stocks(draw: st.DrawFn) -> Stock:
    locations = tuple(Location(location_id=loc, rank=draw(st.integers(0, 2))) for loc in LOCATIONS)
    cells = draw(
        st.lists(st.tuples(st.sampled_from(SKUS), st.sampled_from(LOCATIONS)), unique=True)
    )
    on_hand = tuple(
        StockLevel(sku=s, location=loc, quantity=draw(st.integers(0, 8))) for s, loc in cells
    )
    receipts = tuple(
        Receipt(
            receipt_id=f"r{i}",
            sku=draw(st.sampled_from(SKUS)),
            location=draw(st.sampled_from(LOCATIONS)),
            quantity=draw(st.integers(1, 6)),
            expected_date=draw(_dates),
        )
        for i in range(draw(st.integers(0, 5)))
    )
    return Stock(locations=locations, on_hand=on_hand, receipts=receipts)


_fulfillments = st.just(STH) | st.sampled_from(LOCATIONS).map(bopis)
_placed = st.integers(0, 4).map(lambda d: placed("2026-01-05") + dt.timedelta(days=d))


@st.composite
def backorders(draw: st.DrawFn, max_orders: int = 6) -> list[Backorder]:
    """Open backorders of distinct orders, placed on few days so that ties happen."""
    ids = draw(st.lists(st.integers(100, 120), max_size=max_orders, unique=True))
    return [
        Backorder(
            order_id=str(i),
            placed_at=draw(_placed),
            tier=draw(st.sampled_from(TIERS)),
            fulfillment=draw(_fulfillments),
            lines=tuple(
                BackorderLine(line_id=f"{i}-{n}", sku=s, quantity=draw(st.integers(1, 6)))
                for n, s in enumerate(draw(st.lists(st.sampled_from(SKUS), min_size=1, max_size=3)))
            ),
            shipments=draw(st.integers(0, 3)),
            release_in_full=draw(st.sampled_from([False, False, False, True])),
        )
        for i in ids
    ]


@st.composite
def orders(draw: st.DrawFn) -> Order:
    skus = draw(st.lists(st.sampled_from(SKUS), min_size=1, max_size=4))
    return Order(
        order_id="o1",
        order_number="o1",
        placed_at=placed("2026-01-05"),
        currency="USD",
        customer=Customer(id="c1", email="c1@example.com", tier=draw(st.sampled_from(TIERS))),
        fulfillment=draw(_fulfillments),
        lines=[
            OrderLine(
                line_id=f"l{n}",
                sku=s,
                quantity=draw(st.integers(1, 6)),
                unit_price=1,
                allow_backorder=draw(st.none() | st.booleans()),
            )
            for n, s in enumerate(skus)
        ],
    )
