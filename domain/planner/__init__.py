"""The release planner: who gets which stock, decided by pure, deterministic code.

No I/O, no clock, no randomness: the same inputs always give the same plan, so workflows may call
it as well as activities. Inputs and outputs are pydantic models; the pass itself runs on plain
Python objects so that it scales to a whole merchant's open backorders.
"""

from domain.planner.acceptance import plan_acceptance
from domain.planner.catalog import Catalog, Product
from domain.planner.demand import Backorder, BackorderLine, queue_position
from domain.planner.eta import expected_ship_date
from domain.planner.plan import (
    AcceptancePlan,
    Allotment,
    LineOutcome,
    OrderRelease,
    ParentStatus,
    ReleasePlan,
    Shipment,
    ShipmentKind,
    StockSource,
    remaining_backorder,
)
from domain.planner.release import ReleasePass, decide_release, plan_release
from domain.planner.stock import Location, Receipt, Stock, StockLevel

__all__ = [
    "AcceptancePlan",
    "Allotment",
    "Backorder",
    "BackorderLine",
    "Catalog",
    "LineOutcome",
    "Location",
    "OrderRelease",
    "ParentStatus",
    "Product",
    "Receipt",
    "ReleasePass",
    "ReleasePlan",
    "Shipment",
    "ShipmentKind",
    "Stock",
    "StockLevel",
    "StockSource",
    "decide_release",
    "expected_ship_date",
    "plan_acceptance",
    "plan_release",
    "queue_position",
    "remaining_backorder",
]
