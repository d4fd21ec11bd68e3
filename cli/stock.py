"""`backorder inventory stock`: stock, demand and incoming purchase orders per location (stub)."""

from __future__ import annotations

from typing import Any


def add_stock_command(isub: Any) -> None:
    """Register `inventory stock` on the `inventory` subparsers."""
