"""Activities registered under the order workflow's contract names, backed by one in-memory world.

The workflow tests run the real workflow on a real Temporal server; only what the activities
would touch (ledger, gateway, outbox, fulfilment) is kept here, so each test can assert the exact
stock and money operations. Like the real implementations, every effect is applied once per
idempotency key; every attempt is recorded too, so tests can check what a retry sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import contracts as c
from activities.effect_batch import (
    APPLY_ORDER_EFFECTS,
    CaptureOutcome,
    EffectBatch,
    EffectOutcome,
)
from domain.limits import BackorderAllowance
from domain.planner import Catalog, Location, Stock
from domain.policy import BackorderPolicy
from workflows.messages import OrderRecord


@dataclass
class Effect:
    name: str
    request: Any
    at: dt.datetime
    result: Any = None


@dataclass
class Gate:
    """Holds the first call of an activity until the test opens it: a slow gateway or database
    at an exact point of the workflow, for races told step by step. A slow step outlasts its
    local tries (lean-history), so a gated payment's local attempts fail at once and the step
    waits here as the regular activity it becomes."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    used: bool = False

    async def pass_through(self) -> None:
        if not self.used:
            self.used = True
            self.entered.set()
            await self.opened.wait()


@dataclass
class World:
    policy: BackorderPolicy = field(default_factory=BackorderPolicy)
    stock: Stock = field(default_factory=lambda: Stock(locations=(Location(location_id="DC"),)))
    catalog: Catalog = field(default_factory=Catalog)
    hold: dt.timedelta = dt.timedelta(days=7)
    """How long the fake gateway's authorisations last."""
    attempts: list[Effect] = field(default_factory=list)
    effects: dict[str, Effect] = field(default_factory=dict)
    """Applied operations by idempotency key, in the order they were first applied."""
    fail_after_effect: dict[str, int] = field(default_factory=dict)
    """Activity name -> how many attempts fail *after* applying (a lost response)."""
    decline: set[str] = field(default_factory=set)
    """Payment activity names the gateway declines."""
    short_reservations: int = 0
    """How many reserve_stock calls find the stock gone (InsufficientStock)."""
    records: list[OrderRecord] = field(default_factory=list)
    claims: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Order id -> (workflow id, first run id) of the run chain that accepted it."""
    checks: list[c.CheckRequest] = field(default_factory=list)
    refs: int = 0
    gates: dict[str, Gate] = field(default_factory=dict)
    """Activity name -> a gate its first call waits at."""
    allowances: tuple[BackorderAllowance, ...] = ()
    """The backorder room `open_order` answers (the site's limits, decided in PostgreSQL)."""
    clock: Callable[[], Awaitable[dt.datetime]] | None = None
    """The Temporal server's time (`running` sets it): a local activity's info carries the
    worker's wall clock, not the workflow's time."""

    # -- what tests assert on --------------------------------------------------------------------

    def applied(self, name: str) -> list[Any]:
        return [e.request for e in self.effects.values() if e.name == name]

    def payments(self) -> list[tuple[str, Decimal, str | None]]:
        names = {"authorise_payment", "capture_payment", "void_payment", "refund_payment"}
        return [
            (e.name.removesuffix("_payment"), e.request.amount, e.request.reference)
            for e in self.effects.values()
            if e.name in names
        ]

    def notices(self) -> list[c.NoticeKind]:
        return [n.kind for n in self.applied("send_notice")]

    def stock_moves(self) -> list[tuple[str, tuple[tuple[str, int, str], ...]]]:
        return [
            (e.name, tuple((a.sku, a.quantity, a.source.value) for a in e.request.allotments))
            for e in self.effects.values()
            if e.name in ("reserve_stock", "release_stock", "ship_stock", "short_pick_stock")
        ]

    # -- the activities --------------------------------------------------------------------------

    async def now(self) -> dt.datetime:
        """When the workflow asked for the effect running now (the server's time: it stands
        still while the workflow task that runs a local activity is open)."""
        if self.clock is not None:
            return await self.clock()
        return activity.info().current_attempt_scheduled_time

    async def _apply(self, name: str, request: Any, result: BaseModel | None = None) -> Any:
        """Apply once per key; fail after applying while a lost response is being simulated."""
        now = await self.now()
        self.attempts.append(Effect(name, request, now))
        key = getattr(request, "key", None)
        if key is not None:
            first = self.effects.setdefault(key, Effect(name, request, now))
            if first.request != request:
                raise ApplicationError(f"key {key} reused", type=c.INVALID_REQUEST)
            if first.result is None:
                first.result = result
            result = first.result
        if self.fail_after_effect.get(name, 0) > 0:
            self.fail_after_effect[name] -= 1
            raise RuntimeError(f"{name}: connection reset after the effect")
        return result

    def activities(self) -> list[Callable[..., Any]]:
        world = self

        @activity.defn(name=c.CLAIM_ORDER.name)
        async def claim_order(claim: c.OrderClaim) -> c.Empty:
            owner = world.claims.setdefault(claim.order_id, (claim.workflow_id, claim.run_id))
            if owner != (claim.workflow_id, claim.run_id):
                raise ApplicationError(
                    f"order {claim.order_id} was already accepted by workflow {owner[0]} "
                    f"(run {owner[1]})",
                    type=c.DUPLICATE_ORDER,
                    non_retryable=True,
                )
            return c.Empty()

        @activity.defn(name=c.LOAD_POLICY.name)
        async def load_policy(request: c.PolicyRequest) -> c.SitePolicy:
            return c.SitePolicy(site=request.site or "test", policy=world.policy)

        @activity.defn(name=c.CHECK_AVAILABILITY.name)
        async def check_availability(request: c.AvailabilityRequest) -> c.Availability:
            return c.Availability(stock=world.stock, catalog=world.catalog)

        @activity.defn(name=c.OPEN_ORDER.name)
        async def open_order(opening: c.OrderOpening) -> c.OpenedOrder:
            await claim_order(opening.claim)
            return c.OpenedOrder(
                policy=await load_policy(opening.policy),
                availability=await check_availability(opening.availability),
                allowances=world.allowances if opening.allowance is not None else (),
            )

        @activity.defn(name=c.RESERVE_STOCK.name)
        async def reserve_stock(request: c.StockReservation) -> c.Empty:
            if world.short_reservations > 0:
                world.short_reservations -= 1
                raise ApplicationError(
                    "KTP at DC: 2 wanted, 0 free", type=c.INSUFFICIENT_STOCK, non_retryable=True
                )
            await world._apply("reserve_stock", request)
            return c.Empty()

        def simple(contract: c.ActivityContract[Any, Any]) -> Callable[..., Any]:
            async def perform(request: Any) -> c.Empty:
                await world._apply(contract.name, request)
                return c.Empty()

            # typed before registering, so Temporal hands the activity the contract's model
            perform.__annotations__.update({"request": contract.input, "return": c.Empty})
            return activity.defn(name=contract.name)(perform)

        @activity.defn(name=c.REQUEST_CHECK.name)
        async def request_check(request: c.CheckRequest) -> c.Empty:
            world.checks.append(request)
            return c.Empty()

        async def gateway(
            contract: c.ActivityContract[Any, Any], request: c.PaymentRequest
        ) -> c.PaymentResult:
            if contract.name in world.gates:
                if activity.info().is_local:  # a slow gateway outlasts the local tries
                    raise ApplicationError(f"{contract.name}: the gateway is slow (gated)")
                await world.gates[contract.name].pass_through()
            if contract.name in world.decline:
                raise ApplicationError("card declined", type=c.PAYMENT_DECLINED, non_retryable=True)
            world.refs += 1
            now = await world.now()
            expires = now + world.hold if contract is c.AUTHORISE_PAYMENT else None
            result = c.PaymentResult(
                reference=f"{contract.name.split('_')[0]}-{world.refs}",
                amount=request.amount,
                expires_at=expires,
            )
            applied: c.PaymentResult = await world._apply(contract.name, request, result)
            return applied

        def payment(contract: c.ActivityContract[Any, Any]) -> Callable[..., Any]:
            @activity.defn(name=contract.name)
            async def pay(request: c.PaymentRequest) -> c.PaymentResult:
                return await gateway(contract, request)

            return pay

        @activity.defn(name="record_order")
        async def record_order(record: OrderRecord) -> None:
            world.records.append(record)

        @activity.defn(name=APPLY_ORDER_EFFECTS.name)
        async def apply_order_effects(batch: EffectBatch) -> EffectOutcome:
            """A transition's writes (lean-history), as the steps they were each before, then
            its captures (lean-history-2) as `capture_payment` calls."""
            for shipment in batch.shipments:
                await world._apply(c.PUBLISH_SHIPMENT.name, shipment)
            for demand in batch.demand:
                await world._apply(c.UPDATE_DEMAND.name, demand)
            for gone in batch.shipped_stock:
                await world._apply("ship_stock", gone)
            for lost in batch.short_picked_stock:
                await world._apply("short_pick_stock", lost)
            for notice in batch.notices:
                await world._apply(c.SEND_NOTICE.name, notice)
            for record in batch.records:  # an upsert: the same row again is no change
                if not world.records or world.records[-1] != record:
                    world.records.append(record)
            outcomes = []
            for request in batch.captures:
                try:
                    result = await gateway(c.CAPTURE_PAYMENT, request)
                except ApplicationError as err:
                    outcomes.append(CaptureOutcome(key=request.key, failure=str(err)))
                else:
                    outcomes.append(CaptureOutcome(key=request.key, result=result))
            return EffectOutcome(captures=tuple(outcomes))

        return [
            claim_order,
            load_policy,
            check_availability,
            open_order,
            reserve_stock,
            simple(c.RELEASE_STOCK),
            simple(c.UPDATE_DEMAND),
            simple(c.SEND_NOTICE),
            simple(c.RAISE_EXCEPTION),
            simple(c.PUBLISH_SHIPMENT),
            request_check,
            payment(c.AUTHORISE_PAYMENT),
            payment(c.CAPTURE_PAYMENT),
            payment(c.VOID_PAYMENT),
            payment(c.REFUND_PAYMENT),
            record_order,
            apply_order_effects,
        ]
