"""The product switches the planner needs; a product the catalog does not list gets the defaults."""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Annotated

from pydantic import Field, model_validator

from domain.order import Contract, Identifier, repeated


class Product(Contract):
    sku: Identifier
    backorderable: bool = True
    """The product's "if out of stock: allow backordering"; an order line may override it."""
    future_inventory: bool = True
    """Incoming stock may be assigned (when the site also allows future inventory)."""
    insert: bool = False
    """A packing insert: an order is never split only because inserts are missing."""
    preorder_release: dt.date | None = None
    """A product on pre-order is released on this day: orders taken before it wait for it,
    even when stock arrives earlier."""
    preorder_end: dt.date | None = None
    """The last day pre-orders are taken (none: until the release); after it and before the
    release, the product takes no backorder."""

    def on_preorder(self, day: dt.date) -> bool:
        """Whether its stock is held back on `day` (not released yet)."""
        return self.preorder_release is not None and day < self.preorder_release

    def preorders_closed(self, day: dt.date) -> bool:
        """On pre-order, but past the last day pre-orders are taken."""
        return self.on_preorder(day) and self.preorder_end is not None and day > self.preorder_end


class Catalog(Contract):
    """Products by sku; backorders are allowed for every product unless it says otherwise."""

    products: Annotated[tuple[Product, ...], Field(max_length=10_000_000)] = ()

    @model_validator(mode="after")
    def _skus_unique(self) -> Catalog:
        if len(self._by_sku) != len(self.products):
            twice = repeated(p.sku for p in self.products)
            raise ValueError(f"products must have unique skus; repeated: {', '.join(twice)}")
        return self

    @cached_property
    def _by_sku(self) -> dict[str, Product]:
        return {p.sku: p for p in self.products}

    def on_preorder(self, day: dt.date) -> frozenset[str]:
        """The skus whose stock is held back on `day` for their pre-order release."""
        return frozenset(p.sku for p in self.products if p.on_preorder(day))

    def product(self, sku: str) -> Product:
        found = self._by_sku.get(sku)
        return Product(sku=sku) if found is None else found
