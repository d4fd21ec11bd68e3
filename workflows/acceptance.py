"""Acceptance: the order split against the stock of the moment (what is in hand ships, the rest
waits or is cancelled), its payment booked and its FTC clock started."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.failures import cause_of, error_type_of
from workflows.order_views import cancelled_in, waiting_items
from workflows.patches import FTC_FROM_PLACED_AT, lean, patched
from workflows.shipping import Shipping

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from domain.limits import within_allowances
    from domain.order_book import OrderBook
    from domain.payment import PaymentBook, expired_at
    from domain.planner import Allotment, Stock, expected_ship_date, plan_acceptance
    from domain.policy import PaymentTiming
    from domain.schedule import Authorisation, ScheduleState
    from workflows.calls import call

RESERVE_ATTEMPTS = 3
"""Acceptance re-reads stock this often when another order takes it between read and reserve."""


class Acceptance(Shipping):
    _opened: c.OpenedOrder | None

    def _opening(self, claim: c.OrderClaim) -> c.OrderOpening:
        """The claim with acceptance's reads, for `open_order` (lean-history-2)."""
        order = self._order
        wanted = tuple(c.WantedUnits(sku=ln.sku, quantity=ln.quantity) for ln in order.lines)
        return c.OrderOpening(
            claim=claim,
            policy=self._policy_request(),
            availability=self._availability_request(),
            allowance=c.AllowanceRequest(
                order_id=order.order_id, customer_id=order.customer.id, wanted=wanted
            ),
        )

    def _policy_request(self) -> c.PolicyRequest:
        return c.PolicyRequest(site=self._order.site)

    def _availability_request(self) -> c.AvailabilityRequest:
        order = self._order
        return c.AvailabilityRequest(
            order_id=order.order_id, skus=tuple(order.skus), fulfillment=order.fulfillment
        )

    async def _accept(self) -> None:
        order = self._order
        opened, self._opened = self._opened, None
        chosen = opened.policy if opened else await call(c.LOAD_POLICY, self._policy_request())
        self._site = chosen.site
        self._policy = chosen.policy.for_order(order.shipping_preference)
        policy = self._policy
        limited: tuple[str, ...] = ()
        now = workflow.now()
        for attempt in range(1, RESERVE_ATTEMPTS + 1):
            if attempt == 1 and opened is not None:
                available = opened.availability  # read with the claim
            else:
                available = await call(c.CHECK_AVAILABILITY, self._availability_request())
            stock = available.stock
            if attempt == RESERVE_ATTEMPTS:  # stock keeps moving: let it all wait instead
                stock = Stock(locations=stock.locations, receipts=stock.receipts)
            plan = plan_acceptance(order, stock, available.catalog, policy, now.date())
            if opened is not None and opened.allowances:  # the site's backorder limits
                plan, limited = within_allowances(plan, opened.allowances)
            if not plan.allotments or await self._reserve(plan.allotments, f"accept-{attempt}"):
                break
        waiting = [o.sku for o in plan.lines if o.backordered]
        self._acceptance_eta = expected_ship_date(
            waiting, available.stock.receipts, now.date(), policy.default_backorder_days
        )
        releases = [
            p.preorder_release
            for sku in waiting
            if (p := available.catalog.product(sku)).on_preorder(now.date())
        ]
        preorder = max((day for day in releases if day is not None), default=None)
        if preorder is not None and self._acceptance_eta is not None:  # not before its release
            self._acceptance_eta = max(self._acceptance_eta, preorder)
        self._book = OrderBook.accept(order, plan, now)
        self._accepted = True  # from here on a cancel has stock and money to give back
        self._payment = PaymentBook.from_order(order, policy.payment_timing)
        authorisation = None
        if order.payment is not None and policy.payment_timing is PaymentTiming.AT_SHIP:
            authorisation = Authorisation(
                authorised_at=order.payment.authorised_at, expires_at=expired_at(order)
            )
        placed = patched(FTC_FROM_PLACED_AT)  # the FTC clock runs from placed_at
        self._schedule = ScheduleState(
            # since the order came in (its search attribute says so from the first task on)
            accepted_at=self._schedule.accepted_at if lean() else now,
            ordered_at=order.placed_at if placed else None,
            applied_for_credit=placed and order.applied_for_credit,
            stated_ship_date=order.stated_ship_date,
            expected_ship_date=self._acceptance_eta,
            authorisation=authorisation,
        )
        book = self._book
        self._note(
            "accepted",
            f"site {self._site}: {sum(o.released for o in plan.lines)} units ship now, "
            f"{book.backordered_units} backordered, {sum(o.cancelled for o in plan.lines)} "
            f"cancelled; expected {self._acceptance_eta}",
        )
        await self._ship(book.shipments, "accept")
        amount, cancelled = cancelled_in(self._book, plan.lines)
        if cancelled:
            given = await self._give_back(amount, "accept")
            reason = "; ".join(limited) or None
            await self._notify(
                c.NoticeKind.CANCELLED, "accept/cancelled", cancelled, amount=given, reason=reason
            )
            if limited:
                self._note("limit", "; ".join(limited))
            await self._confirm_refund(given, "accept", cancelled)
        await self._update_demand()
        if book.backordered_units:
            await self._notify(
                c.NoticeKind.ON_BACKORDER,
                "accept/on-backorder",
                waiting_items(self._book),
                expected_ship_date=self._acceptance_eta,
                preorder_release=preorder,
            )
        await self._changed(accepted=True)

    async def _reserve(self, allotments: tuple[Allotment, ...], step: str) -> bool:
        """Reserve stock planned at acceptance; False when another order took it first."""
        try:
            await self._stock(c.RESERVE_STOCK, allotments, step, "reserve")
        except ActivityError as err:
            if error_type_of(err) != c.INSUFFICIENT_STOCK:
                raise
            self._note("stock moved", f"{cause_of(err)}; reading stock again")
            return False
        return True
