"""The merchant's backorder policy: how and when backordered stock is released.

Fields arrive with the issues that use them; every field has a default, so an empty
configuration is a valid one. The defaults follow the most common setup in the vendor documents:
backorders on, in-stock lines ship at once, a backorder is released only when all of it can be
assigned, current stock only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, NonNegativeInt, model_validator

from domain.order import Contract, ShippingPreference


class ReleaseMode(StrEnum):
    """How much of a backorder may be released when not all of it can be assigned."""

    FULL = "full"
    """Only the whole backorder; it may still ship from several locations or dates."""
    LINE_ITEM = "line_item"
    """Any line whose whole quantity can be assigned."""
    QUANTITY = "quantity"
    """Any available quantity of a line, at least one unit."""


class AcceptanceSplit(StrEnum):
    """What happens to an order with a shortfall when it is accepted, and to its backorder later."""

    ENTIRE_ORDER = "entire_order"
    """Any shortfall holds the whole order; nothing ships until all of it can."""
    ON_ACCEPTANCE = "on_acceptance"
    """In-stock lines ship now; the rest becomes one backorder, released only in full."""
    ALL = "all"
    """In-stock lines ship now; the backorder is split again (per `release_mode`) when it can."""


class InsertHandling(StrEnum):
    """What to do when the only items an order is missing are inserts (flyers, samples)."""

    SHIP_WITH_ORDER = "ship_with_order"
    """Do not split the order for them: it waits and the inserts ship with it."""
    DROP = "drop"
    """Ship the order without them: the missing insert quantity is cancelled."""


class PaymentTiming(StrEnum):
    """When the customer's money is taken (a site setting)."""

    AT_SHIP = "at_ship"
    """Authorise at order, capture per shipment, void what is cancelled; keep the authorisation
    alive while the order waits (re-authorisation)."""
    AT_ORDER = "at_order"
    """Captured at order; what is cancelled is refunded."""


class FulfilmentReports(StrEnum):
    """Whether the site's fulfilment tells us what became of a shipment handed to it."""

    NONE = "none"
    """It does not: a ready shipment counts as shipped (the "shipped" notice goes out and the
    shipment is captured when it is ready), the order ends when nothing is left to ship, and
    the ledger keeps the units reserved until the inventory feed counts them out."""
    SHIPPED = "shipped"
    """It reports `shipped` (carrier, tracking), `short_pick` and `delivered` for each
    shipment: the units leave the ledger on `shipped`, the "shipped" notice carries the
    tracking number, payment taken at shipment is captured then, and the order ends when every
    unit is shipped or cancelled."""


class SplitNumbering(StrEnum):
    """The number a later shipment of an order (a split) is known by, to the customer and to
    fulfilment."""

    NONE = "none"
    """Every shipment under the order's own number."""
    SEQUENCE = "sequence"
    """Each later release that ships something is a split of its own: `<order number>-001`,
    `-002`, ..."""
    BACKORDER = "backorder"
    """Every later shipment is `<order number>-backorder`."""


TierName = Annotated[str, Field(min_length=1, max_length=50)]
TierRank = Annotated[int, Field(ge=0, le=1_000)]


class BackorderPolicy(Contract):
    """Site-wide backorder settings (the `[policy]` table of `config/backorder.toml`).

    Product-level switches (backorderable, future inventory, insert) live in the catalog, not here.
    """

    backorders_enabled: bool = True
    """The site switch: when off, out-of-stock lines are cancelled instead of backordered."""

    release_mode: ReleaseMode = ReleaseMode.FULL
    """How much of a backorder a check may release; partial modes need `acceptance_split = all`."""

    acceptance_split: AcceptanceSplit = AcceptanceSplit.ALL
    """Whether in-stock lines ship at acceptance, and whether a backorder may be split again."""

    max_shipments: Annotated[int, Field(ge=1)] | None = None
    """Most shipments an order may be split into (None: no cap); at the cap the rest ships whole."""

    future_inventory: bool = False
    """Assign incoming stock (with an expected date) too; products can opt out one by one."""

    future_date_limit_days: NonNegativeInt = 30
    """Incoming stock is assigned only if expected within this many days of the planning date."""

    tier_ranks: dict[TierName, TierRank] = Field(
        default_factory=lambda: {"vip": 1, "expedited": 2, "wholesale": 3}
    )
    """Customer tiers served ahead of FIFO, lowest rank first; unlisted tiers come after all."""

    inserts: InsertHandling = InsertHandling.SHIP_WITH_ORDER
    """An order missing only inserts is never split for them: it waits, or they are dropped."""

    default_backorder_days: NonNegativeInt = 2
    """Days an order is expected to stay on backorder when no better date is known."""

    payment_timing: PaymentTiming = PaymentTiming.AT_SHIP
    """Capture per shipment (and re-authorise while waiting), or capture at order."""

    reauth_interval_days: Annotated[int, Field(ge=1, le=365)] = 10
    """Re-authorise a waiting order's payment this often (and always before the authorisation
    expires); only with `payment_timing = "at_ship"`."""

    reauth_before_expiry_hours: Annotated[int, Field(ge=1, le=24 * 7)] = 24
    """Re-authorise at the latest this long before the gateway's expiry of the authorisation."""

    void_and_reauth_on_release: bool = False
    """At release, void the authorisation and authorise the exact amount anew (full release)."""

    customer_update_days: tuple[Annotated[int, Field(ge=1)], ...] = (7, 14)
    """Days after acceptance on which a waiting customer gets a "still awaiting stock" notice."""

    ftc_shipping_days: Annotated[int, Field(ge=1, le=365)] = 30
    """FTC Mail, Internet, or Telephone Order Rule (16 CFR 435): ship within this many days when
    no date was stated to the customer (30 under the rule; never set it higher)."""

    ftc_notice_lead_days: Annotated[int, Field(ge=1, le=30)] = 3
    """Send the delay-option notice this many days before a shipping deadline is missed."""

    ftc_exception_days: Annotated[int, Field(ge=1)] | None = 25
    """Days on backorder after which the order is flagged for an operator (severity high)."""

    auto_cancel_days: Annotated[int, Field(ge=1)] | None = None
    """Cancel and refund what is still backordered after this many days (None: never)."""

    check_interval_hours: Annotated[int, Field(ge=1)] | None = None
    """Ask the allocator to re-check a waiting order this often: a safety net for a missed signal
    (None: rely on the allocator's signals and its scheduled sweep)."""

    max_backorder_per_customer: Annotated[int, Field(ge=0)] | None = None
    """Most units of one sku one customer may have waiting, over all their orders (None: no
    limit); an order's excess is refused at acceptance, cancelled and given back."""

    max_backordered_units_per_sku: Annotated[int, Field(ge=0)] | None = None
    """Most units of one sku that may wait at the site in all (Magento's out-of-stock
    threshold; None: no cap); an order's excess is refused at acceptance."""

    fulfilment_reports: FulfilmentReports = FulfilmentReports.NONE
    """Whether fulfilment confirms each shipment (`shipped`) or a ready shipment counts as
    shipped (`none`). An order keeps the value it was accepted under: a policy recorded before
    this field existed reads as `none`, what those orders did."""

    split_numbering: SplitNumbering = SplitNumbering.NONE
    """The number the shipments of a later release go by (what ships at acceptance keeps the
    order's number): `none`, the order's number; `sequence`, `<order number>-001`, `-002`, one
    per release; `backorder`, `<order number>-backorder`. A policy recorded before this field
    existed reads as `none`, what those orders did."""

    @model_validator(mode="after")
    def _void_and_reauth_needs_full_release(self) -> BackorderPolicy:
        if self.void_and_reauth_on_release and (
            self.release_mode is not ReleaseMode.FULL
            or self.payment_timing is not PaymentTiming.AT_SHIP
        ):
            raise ValueError(
                "void_and_reauth_on_release needs release_mode 'full' and payment_timing 'at_ship'"
            )
        return self

    @model_validator(mode="after")
    def _partial_release_needs_resplitting(self) -> BackorderPolicy:
        if self.release_mode is not ReleaseMode.FULL and (
            self.acceptance_split is not AcceptanceSplit.ALL
        ):
            raise ValueError(
                f"release_mode {self.release_mode.value!r} releases part of a backorder, but "
                f"acceptance_split {self.acceptance_split.value!r} releases a backorder only in "
                "full; use acceptance_split 'all' or release_mode 'full'"
            )
        return self

    @property
    def limits_backorders(self) -> bool:
        return (
            self.max_backorder_per_customer is not None
            or self.max_backordered_units_per_sku is not None
        )

    def for_order(self, preference: ShippingPreference | None) -> BackorderPolicy:
        """The policy an order lives by: the site's, with the customer's shipping preference
        over its split and release rules (the glossary's options A and B; C is the customer
        choosing, which is the preference itself).

        `ship_complete`: any shortfall holds the whole order and it is released only in full.
        `ship_available`: in-stock lines ship at acceptance even where the site holds whole
        orders; the rest is released as the site releases (in full, unless its `release_mode`
        is partial)."""
        if preference is ShippingPreference.SHIP_COMPLETE:
            return self.override(
                acceptance_split=AcceptanceSplit.ENTIRE_ORDER, release_mode=ReleaseMode.FULL
            )
        if (
            preference is ShippingPreference.SHIP_AVAILABLE
            and self.acceptance_split is AcceptanceSplit.ENTIRE_ORDER
        ):
            return self.override(acceptance_split=AcceptanceSplit.ON_ACCEPTANCE)
        return self

    def tier_rank(self, tier: str) -> int:
        """Where a tier queues: listed tiers by rank, every other tier after all of them."""
        rank = self.tier_ranks.get(tier)
        return _UNLISTED_TIER if rank is None else rank

    def override(self, **changes: Any) -> BackorderPolicy:
        """A validated copy with some fields changed (e.g. one site's settings over the base)."""
        return BackorderPolicy.model_validate({**self.model_dump(), **changes})


_UNLISTED_TIER = 1_001
"""Above every allowed rank, so unlisted tiers queue last."""
