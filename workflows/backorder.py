"""BackorderWorkflow: the durable life of one backordered order (id `backorder-<order id>`).

This first version accepts the order, records it in the read model, keeps its search
attributes current, answers `status`, and ends on `cancel`. Release, payments, notices and
timers arrive with later issues.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.read_model import ReadModelActivities
    from domain.order import Order
    from workflows import search_attributes as sa
    from workflows.messages import (
        BackorderStatus,
        BackorderSummary,
        CancelRequest,
        LineStatus,
        OrderRecord,
        OrderStatus,
    )

DB_TIMEOUT = timedelta(seconds=30)
DB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
"""Database activities retry until the database is back: an outage delays, never loses."""


@workflow.defn(name="BackorderWorkflow")
class BackorderWorkflow:
    @workflow.init
    def __init__(self, order: Order) -> None:
        self._order = order
        self._status = BackorderStatus.BACKORDERED
        self._since = workflow.now()
        self._status_since = self._since
        self._cancel: CancelRequest | None = None

    @workflow.run
    async def run(self, order: Order) -> BackorderSummary:
        self._publish()
        await self._record()
        await workflow.wait_condition(lambda: self._cancel is not None)
        self._status = BackorderStatus.CANCELLED
        self._status_since = workflow.now()
        self._publish()
        await self._record()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return BackorderSummary(
            order_id=order.order_id,
            status=self._status,
            lines=self._lines(),
            days_in_backorder=self._days_in_backorder(),
            ended_at=workflow.now(),
        )

    @workflow.signal
    def cancel(self, request: CancelRequest | None = None) -> None:
        """Withdraw the whole order (customer service); a repeated cancel changes nothing."""
        if self._cancel is None:
            self._cancel = request or CancelRequest()

    @workflow.query
    def status(self) -> OrderStatus:
        return OrderStatus(
            order_id=self._order.order_id,
            order_number=self._order.order_number,
            status=self._status,
            customer_tier=self._order.customer.tier,
            order_value=self._order.value,
            currency=self._order.currency,
            backordered_since=self._since,
            as_of=workflow.now(),
            days_in_backorder=self._days_in_backorder(),
            lines=self._lines(),
            cancel_reason=self._cancel.reason if self._cancel else None,
        )

    def _lines(self) -> list[LineStatus]:
        cancelled = self._status is BackorderStatus.CANCELLED
        return [
            LineStatus(
                line_id=ln.line_id,
                sku=ln.sku,
                ordered=ln.quantity,
                released=0,
                backordered=0 if cancelled else ln.quantity,
                cancelled=ln.quantity if cancelled else 0,
            )
            for ln in self._order.lines
        ]

    def _days_in_backorder(self) -> int:
        return (workflow.now() - self._since).days

    def _publish(self) -> None:
        """Search attributes and current details: what operators see in the Temporal UI."""
        order = self._order
        workflow.upsert_search_attributes(
            [
                sa.BACKORDER_STATUS.value_set(self._status.value),
                sa.BACKORDER_SKUS.value_set(order.skus),
                sa.BACKORDER_SINCE.value_set(self._since),
                sa.CUSTOMER_TIER.value_set(order.customer.tier),
                sa.ORDER_VALUE.value_set(float(order.value)),
            ]
        )
        lines = "\n".join(f"| {ln.line_id} | {ln.sku} | {ln.quantity} |" for ln in order.lines)
        workflow.set_current_details(
            f"**Order {order.order_number}** ({order.order_id}) — **{self._status.value}**"
            f" since {self._since:%Y-%m-%d %H:%M} UTC\n\n"
            f"Customer {order.customer.id} ({order.customer.tier}), "
            f"{order.value} {order.currency}\n\n| line | sku | qty |\n|---|---|---|\n{lines}"
        )

    async def _record(self) -> None:
        await workflow.execute_activity_method(
            ReadModelActivities.record_order,
            OrderRecord(
                order=self._order,
                workflow_id=workflow.info().workflow_id,
                status=self._status,
                status_since=self._status_since,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
