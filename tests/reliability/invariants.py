"""The one invariant checker every reliability test ends with.

`check_invariants(dsn, client, ...)` reads the ledger and the operators' tables from
PostgreSQL, each order's workflow from Temporal (describe; its start input; its `status` query
while running, its result once ended) and the sandbox gateway's own journal (`payment_*`), and
asserts, listing every violation it finds (not only the first):

stock
  - on hand = initial + the stock movements, and the movements = what the applied feed events
    say (receipts, adjustments, received purchase orders), per sku and location;
  - reserved = the sum of open current reservations; reserved never above on hand; a future
    receipt's reserved = the sum of open future reservations on it;
  - every open reservation is held for a live shipment of its order (ready / transfer: handed
    to fulfilment; future: waiting for its receipt): per order, line, sku and location the
    units held = the units of its live shipments. An order whose workflow has ended holds
    nothing beyond what it shipped, and a running order nothing its book does not know.
    (Shipped units stay reserved: nothing in the ledger consumes them yet, so "held by an
    ended order" means held beyond its ready and transfer shipments);
  - no allotment signal left undelivered.

money (payment at shipment; at order: captured less refunded = what was not cancelled)
  - every gateway operation under one of the order's keys (`backorder-<id>/...`) is in the
    order's payment book as a success with the same amount and reference, once, and every
    success in the book is in the gateway's journal (nothing applied twice, nothing unknown);
  - captured at the gateway = the value of the shipped units (capped by what was paid), one
    capture per shipped shipment, none for anything else;
  - an ended order's authorisations are fully captured or voided; a running order's current
    authorisation holds what its book says and every replaced one is closed;
  - the gateway's running totals agree with its own journal.

orders
  - every order either ended correctly (workflow completed; status completed or cancelled;
    nothing backordered, no future shipment) or is still running, not settled, and waiting
    with its demand rows for exactly what it still has backordered. A later start of the same
    workflow id refused before doing anything (`DuplicateOrder`, `WrongWorkflowId`) is no
    violation: the run that owns the order is the one checked;
  - lines add up (released = units in live shipments; released + backordered + cancelled =
    ordered); shipments handed to fulfilment (`shipments`) = the book's; the read model's
    status = the workflow's, and its site = the order's.

exceptions
  - no open exception that is false: a `payment_<step>_failed` whose operation the gateway
    applied, or that the book does not record as failed, or a failed void of an authorisation
    with nothing left open; and no open exception of a kind the test did not allow.

The state is read again until it holds or `settle` seconds pass (signals and activities in
flight settle), then every violation of the last reading is reported.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain.order import Order, workflow_id_for
from domain.order_book import BookedShipment, ShipmentStatus
from domain.payment import PaymentBook, PaymentStep
from domain.policy import PaymentTiming
from workflows.messages import (
    BackorderStatus,
    BackorderSummary,
    CarriedState,
    LineStatus,
    OrderStatus,
)

ZERO = Decimal(0)
CENT = Decimal("0.0001")
SHIPPED = (ShipmentStatus.READY, ShipmentStatus.TRANSFER)
RUNNING_STATUSES = (BackorderStatus.BACKORDERED, BackorderStatus.AWAITING_RECEIPT)
ENDED_STATUSES = (BackorderStatus.COMPLETED, BackorderStatus.CANCELLED)
REFUSALS = ("DuplicateOrder", "WrongWorkflowId")
"""Failures of a start that was refused before it did anything: not a violation."""
FEED_KINDS = ("receipt", "adjustment", "future_receipt_received")
"""Feed events that move units on hand."""

StockKey = tuple[str, str]
HeldKey = tuple[str, str, str]
"""(line_id, sku, location)"""


class InvariantViolation(AssertionError):
    """Raised by `check_invariants` with the whole report as its message."""

    def __init__(self, report: InvariantReport) -> None:
        super().__init__(str(report))
        self.report = report


@dataclass
class InvariantReport:
    violations: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)
    readings: int = 1
    """How often the state was read before it held (or the settle time ran out)."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def __str__(self) -> str:
        head = (
            "invariants hold"
            if self.ok
            else f"{len(self.violations)} invariant violation(s) after {self.readings} reading(s)"
        )
        facts = ", ".join(f"{k} {v}" for k, v in self.facts.items())
        lines = [f"{head} ({facts})"]
        lines += [f"  - {v}" for v in self.violations]
        return "\n".join(lines)


# -- what is read -------------------------------------------------------------------------------


@dataclass
class _OrderFacts:
    order_id: str
    workflow_id: str
    run_status: WorkflowExecutionStatus | None = None
    """None: no workflow with this id."""
    order: Order | None = None
    status: BackorderStatus | None = None
    lines: list[LineStatus] = field(default_factory=list)
    shipments: tuple[BookedShipment, ...] = ()
    payment: PaymentBook | None = None
    run_id: str | None = None
    """The run checked: the latest, or the one a refused duplicate start did not replace."""
    refused_runs: int = 0
    """Later starts of the same workflow id refused as duplicates (DuplicateOrder...)."""
    book_read: bool = False
    problem: str | None = None
    """Why the book could not be read."""

    @property
    def running(self) -> bool:
        return self.run_status is WorkflowExecutionStatus.RUNNING

    @property
    def label(self) -> str:
        state = self.run_status.name.lower() if self.run_status else "no workflow"
        return f"order {self.order_id} ({state}, {self.status.value if self.status else '?'})"

    def unit_price(self, line_id: str) -> Decimal | None:
        if self.order is None:
            return None
        for ln in self.order.lines:
            if ln.line_id == line_id:
                return ln.unit_price
        return None

    def live(self) -> list[BookedShipment]:
        return [s for s in self.shipments if s.status is not ShipmentStatus.CANCELLED]

    def shipped(self) -> list[BookedShipment]:
        return [s for s in self.shipments if s.status in SHIPPED]


@dataclass
class _Gateway:
    requests: list[tuple[str, str, str, str | None, str, Decimal]] = field(default_factory=list)
    """(key, operation, order_id, target, reference, amount)"""
    authorisations: dict[str, tuple[str, Decimal, Decimal, Decimal, Decimal, bool]] = field(
        default_factory=dict
    )
    """reference -> (order_id, amount, captured, voided, refunded, lapsed)"""
    captures: list[tuple[str, str, Decimal, Decimal]] = field(default_factory=list)
    """(reference, authorisation_ref, amount, refunded)"""


@dataclass
class _Reading:
    orders: dict[str, _OrderFacts]
    stock: dict[StockKey, tuple[int, int]]
    movements: dict[StockKey, int]
    feed_movements: dict[StockKey, int]
    feed_expected: dict[StockKey, int]
    current_held: dict[StockKey, int]
    receipts: dict[str, tuple[str, str, int, int, str]]
    future_held: dict[str, int]
    held: dict[str, dict[HeldKey, int]]
    demand: dict[str, dict[tuple[str, str], int]]
    shipments_table: dict[str, dict[str, tuple[str, Decimal]]]
    read_model: dict[str, tuple[str, str]]
    undelivered: list[tuple[str, str]]
    exceptions: list[tuple[str, str, str, str, str]]
    gateway: _Gateway


# -- the checker --------------------------------------------------------------------------------


async def check_invariants(
    dsn: str,
    client: Client,
    *,
    order_ids: Iterable[str] | None = None,
    skus: Iterable[str] | None = None,
    allowed_exceptions: Iterable[str] = (),
    initial_stock: Mapping[StockKey, int] | None = None,
    payments_dsn: str | None = None,
    settle: float = 30.0,
) -> InvariantReport:
    """Assert every invariant (see the module); return the report, or raise
    `InvariantViolation` listing every violation of the last reading.

    `order_ids`: the orders to check (default: every order the database knows of). `skus`: the
    stock to check (default: those orders' skus, or every sku when no orders are named).
    `allowed_exceptions`: kinds of open exception the test expects (a false one is reported
    anyway). `initial_stock`: units put on hand without a feed event (by SQL), per (sku,
    location). `payments_dsn`: where the sandbox keeps its books, if not in `dsn`.
    `settle`: read again until the state holds, for at most this many seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    readings = 0
    while True:
        readings += 1
        report = await collect_invariants(
            dsn,
            client,
            order_ids=order_ids,
            skus=skus,
            allowed_exceptions=allowed_exceptions,
            initial_stock=initial_stock,
            payments_dsn=payments_dsn,
        )
        report.readings = readings
        if report.ok:
            return report
        if loop.time() > deadline:
            raise InvariantViolation(report)
        await asyncio.sleep(1.0)


async def collect_invariants(
    dsn: str,
    client: Client,
    *,
    order_ids: Iterable[str] | None = None,
    skus: Iterable[str] | None = None,
    allowed_exceptions: Iterable[str] = (),
    initial_stock: Mapping[StockKey, int] | None = None,
    payments_dsn: str | None = None,
) -> InvariantReport:
    """One reading and its report, without raising (see `check_invariants`)."""
    reading = await _read(
        dsn,
        client,
        None if order_ids is None else sorted(set(order_ids)),
        None if skus is None else sorted(set(skus)),
        payments_dsn or dsn,
    )
    report = InvariantReport()
    v = report.violations
    v += _check_stock(reading, initial_stock or {})
    for facts in reading.orders.values():
        v += _check_order(facts, reading)
        v += _check_money(facts, reading.gateway)
    v += _check_gateway_books(reading.gateway)
    v += _check_exceptions(reading, frozenset(allowed_exceptions))
    report.facts = _facts(reading)
    return report


# -- reading ------------------------------------------------------------------------------------


async def _read(
    dsn: str,
    client: Client,
    named_orders: list[str] | None,
    skus: list[str] | None,
    payments_dsn: str,
) -> _Reading:
    # Temporal first, PostgreSQL after: a change between the two shows as ledger rows the book
    # does not know yet, which the next reading settles.
    if named_orders is None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            order_ids = await _all_orders(conn)
    else:
        order_ids = named_orders
    orders = await _read_orders(client, order_ids)
    others: list[str] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        if named_orders is None:
            pass  # every order, every sku
        elif skus is None:
            named = {ln.sku for f in orders.values() if f.order for ln in f.order.lines}
            cur = await conn.execute(
                "SELECT DISTINCT sku FROM reservations WHERE order_id = ANY(%s)"
                " UNION SELECT DISTINCT sku FROM demand WHERE order_id = ANY(%s)",
                (order_ids, order_ids),
            )
            named |= {str(r[0]) for r in await cur.fetchall()}
            skus = sorted(named)
        if skus is not None:
            # whoever else holds units of these skus is checked too: every reservation must
            # be held by an order that ships it
            cur = await conn.execute(
                "SELECT DISTINCT order_id FROM reservations WHERE state = 'reserved'"
                " AND sku = ANY(%s) AND NOT order_id = ANY(%s)",
                (skus, order_ids),
            )
            others = sorted(str(r[0]) for r in await cur.fetchall())
    if others:
        orders |= await _read_orders(client, others)
        order_ids = [*order_ids, *others]
    async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
        # one snapshot for the whole ledger, so its tables agree with each other
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        reading = await _read_ledger(conn, orders, order_ids, skus)
    async with await psycopg.AsyncConnection.connect(payments_dsn) as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        reading.gateway = await _read_gateway(conn, order_ids)
    return reading


async def _all_orders(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    cur = await conn.execute(
        """
        SELECT order_id FROM orders
        UNION SELECT order_id FROM demand
        UNION SELECT order_id FROM reservations WHERE state = 'reserved'
        UNION SELECT order_id FROM shipments
        UNION SELECT order_id FROM exceptions
        UNION SELECT order_id FROM allotment_deliveries
        UNION SELECT order_id FROM payment_requests WHERE key LIKE 'backorder-%%'
        """
    )
    return sorted(str(r[0]) for r in await cur.fetchall())


async def _read_orders(client: Client, order_ids: list[str]) -> dict[str, _OrderFacts]:
    limit = asyncio.Semaphore(16)

    async def one(order_id: str) -> _OrderFacts:
        async with limit:
            return await _read_order(client, order_id)

    found = await asyncio.gather(*(one(o) for o in order_ids))
    return {f.order_id: f for f in found}


async def _read_order(client: Client, order_id: str) -> _OrderFacts:
    facts = _OrderFacts(order_id=order_id, workflow_id=workflow_id_for(order_id))
    handle = client.get_workflow_handle(facts.workflow_id)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return facts
        facts.problem = f"describe failed: {err}"
        return facts
    if description.status is WorkflowExecutionStatus.FAILED:
        # a second start refused as a duplicate is no violation: check the run that owns it
        owner, refused = await _owner_run(client, facts.workflow_id)
        facts.refused_runs = refused
        if owner is not None:
            handle = client.get_workflow_handle(facts.workflow_id, run_id=owner)
            description = await handle.describe()
    facts.run_id = description.run_id
    facts.run_status = description.status
    try:
        async for event in handle.fetch_history_events(page_size=1):
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            data = json.loads(payloads[0].data) if payloads else None
            if isinstance(data, dict) and "book" in data:
                facts.order = CarriedState.model_validate(data).order
            elif data is not None:
                facts.order = Order.model_validate(data)
            break
    except Exception as err:
        facts.problem = f"start input unreadable: {err}"
    try:
        if facts.run_status is WorkflowExecutionStatus.COMPLETED:
            summary = await client.get_workflow_handle(
                facts.workflow_id, run_id=facts.run_id, result_type=BackorderSummary
            ).result(follow_runs=False)
            facts.status, facts.lines = summary.status, list(summary.lines)
            facts.shipments, facts.payment = summary.shipments, summary.payment
        else:
            status = await asyncio.wait_for(
                handle.query("status", result_type=OrderStatus), timeout=15
            )
            facts.status, facts.lines = status.status, list(status.lines)
            facts.shipments, facts.payment = status.shipments, status.payment
        facts.book_read = True
    except Exception as err:
        facts.problem = f"book unreadable ({type(err).__name__}: {err})"
    return facts


async def _owner_run(client: Client, workflow_id: str) -> tuple[str | None, int]:
    """The newest run of `workflow_id` that was not refused as a duplicate acceptance (None:
    every run was), and how many were refused."""
    refused = 0
    runs = [r async for r in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
    for run in sorted(runs, key=lambda r: r.start_time, reverse=True):
        if run.status is WorkflowExecutionStatus.FAILED:
            try:
                await client.get_workflow_handle(workflow_id, run_id=run.run_id).result(
                    follow_runs=False
                )
            except WorkflowFailureError as err:
                cause = err.cause
                if isinstance(cause, ApplicationError) and cause.type in REFUSALS:
                    refused += 1
                    continue
        return run.run_id, refused
    return None, refused


async def _read_ledger(
    conn: psycopg.AsyncConnection[Any],
    orders: dict[str, _OrderFacts],
    order_ids: list[str],
    skus: list[str] | None,
) -> _Reading:
    async def fetch(sql: str, *params: Any) -> list[Any]:
        cur = await conn.execute(sql.encode(), params or None)
        return list(await cur.fetchall())

    every = skus is None
    stock = {
        (s, loc): (int(h), int(r))
        for s, loc, h, r in await fetch(
            "SELECT sku, location, on_hand, reserved FROM stock WHERE %s OR sku = ANY(%s)",
            every,
            skus or [],
        )
    }
    movements: dict[StockKey, int] = defaultdict(int)
    feed_movements: dict[StockKey, int] = defaultdict(int)
    for s, loc, kind, delta in await fetch(
        """
        SELECT m.sku, m.location, e.kind, sum(m.delta)
          FROM stock_movements m JOIN inventory_events e USING (event_id)
         WHERE %s OR m.sku = ANY(%s)
         GROUP BY 1, 2, 3
        """,
        every,
        skus or [],
    ):
        movements[s, loc] += int(delta)
        if kind in FEED_KINDS:
            feed_movements[s, loc] += int(delta)
    receipts = {
        str(r): (str(s), str(loc), int(q), int(res), str(st))
        for r, s, loc, q, res, st in await fetch(
            "SELECT receipt_id, sku, location, quantity, reserved, status FROM future_receipts"
            " WHERE %s OR sku = ANY(%s)",
            every,
            skus or [],
        )
    }
    feed_expected: dict[StockKey, int] = defaultdict(int)
    for kind, payload in await fetch(
        "SELECT kind, payload FROM inventory_events WHERE kind = ANY(%s)", list(FEED_KINDS)
    ):
        if kind == "future_receipt_received":
            rid = payload.get("receipt_id")
            found = receipts.get(rid)
            if found is None:
                continue  # another sku's receipt
            sku, loc, quantity = found[0], found[1], payload.get("quantity") or found[2]
            feed_expected[sku, loc] += int(quantity)
            continue
        sku, loc = payload.get("sku"), payload.get("location")
        if not every and sku not in (skus or []):
            continue
        delta = payload.get("quantity") if kind == "receipt" else payload.get("delta")
        feed_expected[sku, loc] += int(delta or 0)
    current_held: dict[StockKey, int] = defaultdict(int)
    future_held: dict[str, int] = defaultdict(int)
    held: dict[str, dict[HeldKey, int]] = defaultdict(lambda: defaultdict(int))
    for order_id, line_id, s, loc, source, rid, q in await fetch(
        """
        SELECT order_id, line_id, sku, location, source, receipt_id, sum(quantity)
          FROM reservations
         WHERE state = 'reserved' AND (%s OR sku = ANY(%s) OR order_id = ANY(%s))
         GROUP BY 1, 2, 3, 4, 5, 6
        """,
        every,
        skus or [],
        order_ids,
    ):
        if source == "current":
            current_held[s, loc] += int(q)
        elif rid is not None:
            future_held[rid] += int(q)
        held[order_id][line_id, s, loc] += int(q)
    demand: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)
    for order_id, line_id, s, q in await fetch(
        "SELECT order_id, line_id, sku, quantity_open FROM demand WHERE order_id = ANY(%s)",
        order_ids,
    ):
        demand[order_id][line_id, s] = int(q)
    shipments_table: dict[str, dict[str, tuple[str, Decimal]]] = defaultdict(dict)
    for order_id, sid, status, amount in await fetch(
        "SELECT order_id, shipment_id, status, amount FROM shipments WHERE order_id = ANY(%s)",
        order_ids,
    ):
        shipments_table[order_id][sid] = (str(status), Decimal(amount))
    read_model = {
        str(o): (str(st), str(site))
        for o, st, site in await fetch(
            "SELECT order_id, status, site FROM orders WHERE order_id = ANY(%s)", order_ids
        )
    }
    undelivered = [
        (str(p), str(o))
        for p, o in await fetch(
            "SELECT pass_id, order_id FROM allotment_deliveries"
            " WHERE outcome IS NULL AND order_id = ANY(%s)",
            order_ids,
        )
    ]
    exceptions = [
        (str(k), str(o), str(kind), str(sev), str(d))
        for k, o, kind, sev, d in await fetch(
            "SELECT key, order_id, kind, severity, detail FROM exceptions"
            " WHERE resolved_at IS NULL AND order_id = ANY(%s) ORDER BY raised_at",
            order_ids,
        )
    ]
    for order_id in held:  # a reservation taken between the two readings
        if order_id not in orders:
            orders[order_id] = _OrderFacts(order_id=order_id, workflow_id=workflow_id_for(order_id))
            orders[order_id].problem = "holds stock but was not read from Temporal"
    return _Reading(
        orders=orders,
        stock=stock,
        movements=dict(movements),
        feed_movements=dict(feed_movements),
        feed_expected=dict(feed_expected),
        current_held=dict(current_held),
        receipts=receipts,
        future_held=dict(future_held),
        held={o: dict(h) for o, h in held.items()},
        demand=dict(demand),
        shipments_table=dict(shipments_table),
        read_model=read_model,
        undelivered=undelivered,
        exceptions=exceptions,
        gateway=_Gateway(),
    )


async def _read_gateway(conn: psycopg.AsyncConnection[Any], order_ids: list[str]) -> _Gateway:
    gateway = _Gateway()
    cur = await conn.execute(
        "SELECT key, operation, order_id, target, reference, amount FROM payment_requests"
        " WHERE order_id = ANY(%s) ORDER BY created_at, key",
        (order_ids,),
    )
    gateway.requests = [
        (str(k), str(op), str(o), t, str(ref), Decimal(a))
        for k, op, o, t, ref, a in await cur.fetchall()
    ]
    cur = await conn.execute(
        "SELECT reference, order_id, amount, captured, voided, refunded, expires_at <= now()"
        " FROM payment_authorisations WHERE order_id = ANY(%s)",
        (order_ids,),
    )
    gateway.authorisations = {
        str(ref): (str(o), Decimal(a), Decimal(c), Decimal(v), Decimal(r), bool(lapsed))
        for ref, o, a, c, v, r, lapsed in await cur.fetchall()
    }
    cur = await conn.execute(
        "SELECT c.reference, c.authorisation_ref, c.amount, c.refunded FROM payment_captures c"
        " JOIN payment_authorisations a ON a.reference = c.authorisation_ref"
        " WHERE a.order_id = ANY(%s)",
        (order_ids,),
    )
    gateway.captures = [
        (str(r), str(a), Decimal(x), Decimal(y)) for r, a, x, y in await cur.fetchall()
    ]
    return gateway


# -- stock --------------------------------------------------------------------------------------


def _check_stock(r: _Reading, initial: Mapping[StockKey, int]) -> list[str]:
    v: list[str] = []
    keys = sorted(set(r.stock) | set(r.movements) | set(r.feed_expected) | set(r.current_held))
    for key in keys:
        sku, loc = key
        where = f"stock {sku}@{loc}"
        on_hand, reserved = r.stock.get(key, (0, 0))
        moved = r.movements.get(key, 0)
        start = initial.get(key, 0)
        if on_hand != start + moved:
            v.append(
                f"{where}: on hand {on_hand} != initial {start} + movements {moved}"
                f" ({on_hand - start - moved:+d} units unexplained)"
            )
        fed, expected = r.feed_movements.get(key, 0), r.feed_expected.get(key, 0)
        if fed != expected:
            v.append(
                f"{where}: the feed's events add up to {expected:+d} units but its stock"
                f" movements to {fed:+d}"
            )
        held = r.current_held.get(key, 0)
        if reserved != held:
            v.append(f"{where}: reserved {reserved} != open current reservations {held}")
        if reserved > on_hand:
            v.append(f"{where}: reserved {reserved} > on hand {on_hand}")
    for rid, (sku, loc, quantity, reserved, status) in sorted(r.receipts.items()):
        held = r.future_held.get(rid, 0)
        if reserved != held:
            v.append(
                f"future receipt {rid} ({sku}@{loc}, {status}): reserved {reserved}"
                f" != open future reservations {held}"
            )
        if reserved > quantity:
            v.append(f"future receipt {rid}: reserved {reserved} > quantity {quantity}")
    for pass_id, order_id in r.undelivered:
        v.append(f"allotment of pass {pass_id} to order {order_id} was never delivered")
    return v


# -- orders -------------------------------------------------------------------------------------


def _check_order(f: _OrderFacts, r: _Reading) -> list[str]:
    v: list[str] = []
    held = r.held.get(f.order_id, {})
    if f.run_status is None:
        if held:
            v.append(f"{f.label}: no workflow, yet holds {_units(held)} ({f.problem or ''})")
        else:
            v.append(f"{f.label}: known to the database but has no workflow")
        return v
    if not f.book_read:
        v.append(f"{f.label}: {f.problem}")
        return v
    if f.problem:
        v.append(f"{f.label}: {f.problem}")
    ended = not f.running
    # how it ended, or that it waits
    if f.run_status not in (
        WorkflowExecutionStatus.RUNNING,
        WorkflowExecutionStatus.COMPLETED,
        WorkflowExecutionStatus.CANCELED,
    ):
        v.append(f"{f.label}: the workflow ended {f.run_status.name}, not completed")
    backordered = sum(ln.backordered for ln in f.lines)
    future = [s for s in f.shipments if s.status is ShipmentStatus.FUTURE]
    if f.running:
        if f.status not in RUNNING_STATUSES:
            v.append(f"{f.label}: running, but its status is {f.status}")
        if not backordered and not future:
            v.append(f"{f.label}: nothing left to ship, yet the workflow is still running")
    else:
        if f.status not in ENDED_STATUSES:
            v.append(f"{f.label}: ended with status {f.status}")
        if backordered or future:
            v.append(
                f"{f.label}: ended with {backordered} units backordered and"
                f" {len(future)} future shipments"
            )
        shipped = bool(f.shipped())
        if f.status is BackorderStatus.COMPLETED and not shipped:
            v.append(f"{f.label}: completed, yet nothing shipped")
        if f.status is BackorderStatus.CANCELLED and shipped:
            v.append(f"{f.label}: cancelled, yet {len(f.shipped())} shipments went out")
    # the lines add up
    ordered = {ln.line_id: ln.quantity for ln in f.order.lines} if f.order else {}
    for ln in f.lines:
        in_shipments = sum(s.units(ln.line_id) for s in f.live())
        if ln.released != in_shipments:
            v.append(
                f"{f.label}: line {ln.line_id} released {ln.released}, but its live shipments"
                f" hold {in_shipments}"
            )
        if ln.released + ln.backordered + ln.cancelled != ln.ordered:
            v.append(f"{f.label}: line {ln.line_id} does not add up: {ln}")
        if ordered and ordered.get(ln.line_id) != ln.ordered:
            v.append(
                f"{f.label}: line {ln.line_id} ordered {ordered.get(ln.line_id)}, book {ln.ordered}"
            )
    for s in f.shipments:
        value = sum((a.quantity * (f.unit_price(a.line_id) or ZERO) for a in s.allotments), ZERO)
        if f.order is not None and value != s.amount:
            v.append(f"{f.label}: shipment {s.shipment_id} amount {s.amount} != its value {value}")
    # stock held = units of live shipments
    wanted: dict[HeldKey, int] = defaultdict(int)
    for s in f.live():
        for a in s.allotments:
            wanted[a.line_id, a.sku, a.location] += a.quantity
    for key in sorted(set(held) | set(wanted)):
        line_id, sku, loc = key
        h, w = held.get(key, 0), wanted.get(key, 0)
        if h != w:
            what = "ended order" if ended else "running order"
            how = "holding stock it does not ship" if h > w else "shipping stock it does not hold"
            v.append(
                f"{f.label}: holds {h} units of {sku}@{loc} for line {line_id}, its live"
                f" shipments {w} ({what} {how})"
            )
    # demand = what is still backordered
    demand = r.demand.get(f.order_id, {})
    want = {(ln.line_id, ln.sku): ln.backordered for ln in f.lines if ln.backordered}
    if f.running and demand != want:
        v.append(f"{f.label}: demand rows {_rows(demand)}, still backordered {_rows(want)}")
    if ended and demand:
        v.append(f"{f.label}: ended, yet demand rows remain {_rows(demand)}")
    # what fulfilment was told = the book's shipments
    told = r.shipments_table.get(f.order_id, {})
    book = {s.shipment_id: (s.status.value, s.amount) for s in f.shipments}
    for sid in sorted(set(told) | set(book)):
        if told.get(sid) is None or book.get(sid) is None or told[sid][0] != book[sid][0]:
            v.append(
                f"{f.label}: shipment {sid} is {book.get(sid, ('absent',))[0]} in the book,"
                f" {told.get(sid, ('absent',))[0]} in the shipments table"
            )
    # the read model
    row = r.read_model.get(f.order_id)
    if row is None:
        v.append(f"{f.label}: no row in the orders read model")
    else:
        if f.status is not None and row[0] != f.status.value:
            v.append(f"{f.label}: the read model says {row[0]}")
        if f.order is not None and f.order.site is not None and row[1] != f.order.site:
            v.append(f"{f.label}: the read model files it under site {row[1]}, not {f.order.site}")
    return v


# -- money --------------------------------------------------------------------------------------


def _check_money(f: _OrderFacts, g: _Gateway) -> list[str]:
    if not f.book_read or f.order is None:
        return []
    v: list[str] = []
    prefix = f"{f.workflow_id}/"
    mine = [q for q in g.requests if q[2] == f.order_id and q[0].startswith(prefix)]
    book = f.payment
    if book is None:
        if mine:
            v.append(f"{f.label}: moves no money, yet the gateway has {[q[0] for q in mine]}")
        return v
    ok_ops = [op for op in book.operations if op.reference is not None]
    keys = Counter(op.key for op in ok_ops)
    for key, n in keys.items():
        if n > 1:
            v.append(f"{f.label}: the payment book records {key} {n} times")
    by_key = {q[0]: q for q in mine}
    for op in ok_ops:
        q = by_key.get(op.key)
        if q is None:
            v.append(f"{f.label}: the book records {op.step.value} {op.key} the gateway never saw")
            continue
        _, operation, _, _, reference, amount = q
        if (operation, reference, amount.quantize(CENT)) != (
            op.step.value,
            op.reference,
            op.amount.quantize(CENT),
        ):
            v.append(
                f"{f.label}: {op.key}: book {op.step.value} {op.amount} ref {op.reference},"
                f" gateway {operation} {amount} ref {reference}"
            )
    for key, operation, _, _, _, amount in mine:
        if key not in keys:
            failed = any(op.key == key for op in book.operations)
            v.append(
                f"{f.label}: the gateway applied {operation} {amount} under {key}, which the"
                f" payment book {'records as failed' if failed else 'does not record'}"
            )
    auths = {ref: a for ref, a in g.authorisations.items() if a[0] == f.order_id}
    captures = [c for c in g.captures if c[1] in auths]
    captured = sum((c[2] for c in captures), ZERO)
    refunded = sum((c[3] for c in captures), ZERO)
    shipped_value = sum((s.amount for s in f.shipped()), ZERO)
    paid = f.order.payment.amount if f.order.payment else ZERO
    if book.timing is PaymentTiming.AT_SHIP:
        expected = min(shipped_value, paid)
        if captured != expected:
            v.append(
                f"{f.label}: captured {captured} at the gateway, shipped {shipped_value}"
                f" (paid {paid}): expected {expected}"
            )
        if book.captured != captured:
            v.append(f"{f.label}: the book says captured {book.captured}, the gateway {captured}")
        capture_keys = {
            q[0].rsplit("/capture/", 1)[1]: q
            for q in mine
            if q[1] == "capture" and "/capture/" in q[0]
        }
        shipped_ids = {s.shipment_id for s in f.shipped()}
        for sid in sorted(set(capture_keys) - shipped_ids):
            v.append(f"{f.label}: captured for shipment {sid}, which did not ship")
        if captured < paid:  # every shipped shipment has its capture (unless the money ran out)
            for sid in sorted(shipped_ids - set(capture_keys)):
                v.append(f"{f.label}: shipment {sid} shipped without a capture")
        for ref, (_, amount, cap, void, _, lapsed) in sorted(auths.items()):
            left = amount - cap - void
            if lapsed or left == 0:
                continue
            if f.running and ref == book.authorisation:
                if left != book.authorised:
                    v.append(
                        f"{f.label}: authorisation {ref} has {left} open at the gateway, the"
                        f" book {book.authorised}"
                    )
                continue
            why = "the order ended" if not f.running else "it was replaced"
            v.append(
                f"{f.label}: authorisation {ref} still holds {left} of {amount} ({why}:"
                f" captured {cap}, voided {void})"
            )
        if f.running and book.authorisation is not None and book.authorisation not in auths:
            v.append(f"{f.label}: its authorisation {book.authorisation} is unknown to the gateway")
    else:  # payment at order: what was not cancelled stays captured, the rest is refunded
        cancelled_value = sum(
            (ln.cancelled * (f.unit_price(ln.line_id) or ZERO) for ln in f.lines), ZERO
        )
        expected = min(paid, f.order.value - cancelled_value)
        if captured - refunded != expected:
            v.append(
                f"{f.label}: kept {captured - refunded} (captured {captured}, refunded"
                f" {refunded}); cancelled {cancelled_value} of {f.order.value}: expected {expected}"
            )
    return v


def _check_gateway_books(g: _Gateway) -> list[str]:
    """The sandbox's running totals against its own journal."""
    v: list[str] = []
    voids: dict[str, Decimal] = defaultdict(Decimal)
    for _, operation, _, target, _, amount in g.requests:
        if operation == "void" and target is not None:
            voids[target] += amount
    per_auth_captured: dict[str, Decimal] = defaultdict(Decimal)
    per_auth_refunded: dict[str, Decimal] = defaultdict(Decimal)
    for _, auth, amount, refunded in g.captures:
        per_auth_captured[auth] += amount
        per_auth_refunded[auth] += refunded
    for ref, (order_id, amount, captured, voided, refunded, _) in sorted(g.authorisations.items()):
        where = f"gateway authorisation {ref} (order {order_id})"
        if captured != per_auth_captured.get(ref, ZERO):
            v.append(f"{where}: captured {captured} != its captures {per_auth_captured.get(ref)}")
        if voided != voids.get(ref, ZERO):
            v.append(f"{where}: voided {voided} != its voids {voids.get(ref, ZERO)}")
        if refunded != per_auth_refunded.get(ref, ZERO):
            v.append(f"{where}: refunded {refunded} != its captures' refunds")
        if captured + voided > amount:
            v.append(f"{where}: captured {captured} + voided {voided} > {amount}")
    return v


# -- exceptions ---------------------------------------------------------------------------------


def _check_exceptions(r: _Reading, allowed: frozenset[str]) -> list[str]:
    v: list[str] = []
    applied = {q[0] for q in r.gateway.requests}
    for key, order_id, kind, severity, detail in r.exceptions:
        where = f"open exception {kind} ({severity}) on order {order_id}"
        false = _false_payment_exception(key, kind, r.orders.get(order_id), r.gateway, applied)
        if false is not None:
            v.append(f"{where} is false: {false} [{key}: {detail}]")
        elif kind not in allowed:
            v.append(f"{where} not expected by the test [{key}: {detail}]")
    return v


def _false_payment_exception(
    key: str, kind: str, f: _OrderFacts | None, g: _Gateway, applied: set[str]
) -> str | None:
    if not (kind.startswith("payment_") and kind.endswith("_failed")):
        return None
    op_key = key.removesuffix("/exception")
    if op_key in applied:
        return f"the gateway applied {op_key}"
    if f is None or f.payment is None:
        return None
    failed = [op for op in f.payment.operations if op.key == op_key]
    if not failed:
        return f"the payment book has no operation {op_key}"
    if any(op.failure is None for op in failed):
        return f"the payment book records {op_key} as a success"
    op = failed[-1]
    if op.step is PaymentStep.VOID and op.applies_to is not None:
        auth = g.authorisations.get(op.applies_to)
        if auth is not None:
            _, amount, captured, voided, _, lapsed = auth
            if lapsed or amount - captured - voided == 0:
                return (
                    f"nothing was left to void on {op.applies_to} (authorised {amount},"
                    f" captured {captured}, voided {voided}): the order's money is right"
                )
    return None


# -- the report ---------------------------------------------------------------------------------


def _facts(r: _Reading) -> dict[str, object]:
    runs = Counter(
        (f.status.value if f.status else "unread") + ("" if not f.running else " (running)")
        for f in r.orders.values()
    )
    g = r.gateway
    ops = Counter(q[1] for q in g.requests)
    return {
        "orders": len(r.orders),
        "by status": dict(sorted(runs.items())),
        "stock rows": len(r.stock),
        "on hand": sum(h for h, _ in r.stock.values()),
        "reserved": sum(res for _, res in r.stock.values()),
        "captured": sum((c[2] for c in g.captures), ZERO),
        "gateway operations": dict(sorted(ops.items())),
        "open exceptions": len(r.exceptions),
        "refused duplicate starts": sum(f.refused_runs for f in r.orders.values()),
    }


def _units(held: Mapping[HeldKey, int]) -> str:
    return ", ".join(f"{q} x {sku}@{loc} (line {line})" for (line, sku, loc), q in held.items())


def _rows(rows: Mapping[tuple[str, str], int]) -> str:
    return "{" + ", ".join(f"{line}/{sku}: {q}" for (line, sku), q in sorted(rows.items())) + "}"
