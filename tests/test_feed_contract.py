"""The inventory feed's contract where events enter: counts are JSON integers (a feed file's
`"2"` is refused by line and field; an update's batch that only earlier releases accept is
refused as `InvalidInput`; such an event of the `inventory` signal is rejected alone), and an
event id is an idempotency key (the same event again is a duplicate, the same id with other
content is rejected as a conflict naming what differs). Real PostgreSQL, real Temporal."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.contracts import AllocationCheck
from activities.feed import apply_events
from domain.contract import contract_problems, mark_lenient
from domain.inventory import (
    EventOutcome,
    EventStatus,
    InventoryBatch,
    InventoryEvent,
    Rejection,
    StockAdjusted,
    StockPosition,
    StockReceived,
    id_conflict,
)
from runtime import allocator
from runtime.inventory_file import batch_of, match_outcomes, read_events, summarise
from tests.polling import eventually
from tests.test_allocator_e2e import Shop, rows, shop
from workflows.allocator import AllocatorWorkflow
from workflows.allocator_messages import AllocatorStart, FeedResult, PassOutcome, allocator_id
from workflows.converter import INVALID_INPUT, data_converter, decode


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def line(**event: Any) -> str:
    return json.dumps(event)


def receipt_json(
    event_id: str, quantity: Any, sku: str = "KTP", location: str = "DC"
) -> dict[str, Any]:
    return {
        "type": "receipt",
        "event_id": event_id,
        "sku": sku,
        "location": location,
        "quantity": quantity,
    }


# -- counts are JSON integers ---------------------------------------------------------------------

INEXACT = [
    (receipt_json("a", "2"), 'quantity: must be a JSON integer such as 2, not "2"'),
    (
        {"type": "adjustment", "event_id": "b", "sku": "K", "location": "D", "delta": -2.0,
         "reason": "count"},
        "delta: must be a JSON integer such as 2, not -2.0",
    ),
    ({"type": "location", "event_id": "c", "location_id": "D", "rank": True},
     "rank: must be a JSON integer such as 2, not true"),
    (
        {"type": "future_receipt", "event_id": "d", "receipt_id": "P", "sku": "K",
         "location": "D", "quantity": "25"},
        'quantity: must be a JSON integer such as 2, not "25"',
    ),
    ({"type": "future_receipt_update", "event_id": "e", "receipt_id": "P", "quantity": "3"},
     'quantity: must be a JSON integer such as 2, not "3"'),
    ({"type": "future_receipt_received", "event_id": "f", "receipt_id": "P", "quantity": 1.0},
     "quantity: must be a JSON integer such as 2, not 1.0"),
]  # fmt: skip


@pytest.mark.parametrize(("event", "reason"), INEXACT, ids=[e["type"] for e, _ in INEXACT])
def test_a_feed_line_with_a_count_that_is_no_json_integer_is_named_and_the_rest_kept(
    event: dict[str, Any], reason: str
) -> None:
    good = [line(**receipt_json(f"g-{i}", i)) for i in (1, 2)]
    events, bad = read_events([good[0], json.dumps(event), "# a note", good[1]])
    assert [(str(b), b.event_id) for b in bad] == [(f"line 2: {reason}", event["event_id"])]
    assert [(n.line_no, n.event.event_id) for n in events] == [(1, "g-1"), (4, "g-2")]


def test_stock_positions_are_counted_in_json_integers() -> None:
    with pytest.raises(ValidationError, match='must be a JSON integer such as 2, not "3"'):
        StockPosition.model_validate_json(
            '{"sku": "K", "location": "D", "on_hand": "3", "reserved": 0}'
        )


def test_a_batch_only_earlier_releases_accept_marks_the_events_it_refuses() -> None:
    """The converter decodes it leniently (a history must replay); each event knows whether it
    met the contract, so the signal can refuse those alone."""
    raw = {"events": [receipt_json("ok", 3), receipt_json("lax", "2")]}
    batch = decode(json.dumps(raw).encode(), InventoryBatch)
    assert [(e.event_id, e.quantity) for e in batch.events] == [("ok", 3), ("lax", 2)]
    assert contract_problems(batch) == (
        'events.1.receipt.quantity: must be a JSON integer such as 2, not "2"'
    )
    assert [contract_problems(e) for e in batch.events] == [
        None,
        'quantity: must be a JSON integer such as 2, not "2"',
    ]


# -- an id used again -----------------------------------------------------------------------------


def test_id_conflict_names_the_fields_that_differ_and_ignores_metadata() -> None:
    first = receipt_json("r-1", 5) | {"reason": "receipt", "occurred_at": None}
    same = StockReceived(
        event_id="r-1",
        sku="KTP",
        location="DC",
        quantity=5,
        occurred_at=dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC),
    )
    assert id_conflict(first, same) is None  # occurred_at is when, not what
    less = same.model_copy(update={"quantity": 2, "location": "DC2"})
    assert id_conflict(first, less) == (
        "event id r-1 was applied before as a receipt of 5 x KTP at DC; "
        'this one has location "DC2" (not "DC"), quantity 2 (not 5)'
    )
    other = StockAdjusted(event_id="r-1", sku="KTP", location="DC", delta=-1, reason="count")
    assert id_conflict(first, other, "is waiting to be applied") == (
        "event id r-1 is waiting to be applied as a receipt of 5 x KTP at DC; "
        "this one is an adjustment of -1 x KTP at DC"
    )
    assert id_conflict({}, less) is None  # recorded before payloads were kept
    older = {k: v for k, v in first.items() if k != "reason"}  # a field added since
    assert id_conflict(older, same.model_copy(update={"reason": "return"})) is None


async def apply(
    pool: AsyncConnectionPool, events: list[InventoryEvent], pass_id: str = "p"
) -> list[EventOutcome]:
    async with pool.connection() as conn, conn.transaction():
        outcomes, _ = await apply_events(conn, events, pass_id)
    return outcomes


async def define(pool: AsyncConnectionPool, sku: str, location: str) -> None:
    events = read_events(
        [
            line(type="location", event_id=uid("l"), location_id=location),
            line(type="product", event_id=uid("p"), sku=sku),
        ]
    )[0]
    outcomes = await apply(pool, [n.event for n in events])
    assert [o.status for o in outcomes] == [EventStatus.APPLIED] * 2


async def stock(dsn: str, sku: str, location: str) -> list[tuple[Any, ...]]:
    return await rows(
        dsn, "SELECT on_hand, reserved FROM stock WHERE sku = %s AND location = %s", sku, location
    )


async def test_an_id_sent_again_with_other_content_is_rejected_and_changes_nothing(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc = uid("SKU"), uid("LOC")
    await define(pg_pool, sku, loc)
    first = StockReceived(event_id=uid("r"), sku=sku, location=loc, quantity=5)
    assert [o.status for o in await apply(pg_pool, [first])] == [EventStatus.APPLIED]

    changed = first.model_copy(update={"quantity": 2})
    restamped = first.model_copy(update={"occurred_at": dt.datetime.now(dt.UTC)})
    neighbour = StockReceived(event_id=uid("r"), sku=sku, location=loc, quantity=1)
    outcomes = await apply(pg_pool, [changed, neighbour, restamped], pass_id="p2")

    assert outcomes == [
        EventOutcome(
            event_id=first.event_id,
            status=EventStatus.REJECTED,
            rejection=Rejection.ID_CONFLICT,
            reason=f"event id {first.event_id} was applied before as a receipt of 5 x {sku} at"
            f" {loc}; this one has quantity 2 (not 5)",
        ),
        EventOutcome(event_id=neighbour.event_id, status=EventStatus.APPLIED),
        EventOutcome(event_id=first.event_id, status=EventStatus.DUPLICATE),
    ]
    assert await stock(pg_dsn, sku, loc) == [(6, 0)]
    recorded = await rows(
        pg_dsn, "SELECT payload, pass_id FROM inventory_events WHERE event_id = %s", first.event_id
    )
    assert recorded == [(first.model_dump(mode="json"), "p")]


async def test_an_event_recorded_before_payloads_were_kept_stays_a_duplicate(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """Its content is unknown (NULL), so nothing can be compared: today's answer stands."""
    sku, loc = uid("SKU"), uid("LOC")
    await define(pg_pool, sku, loc)
    old = StockReceived(event_id=uid("old"), sku=sku, location=loc, quantity=5)
    await rows(
        pg_dsn, "INSERT INTO inventory_events (event_id) VALUES (%s) RETURNING 1", old.event_id
    )
    assert await rows(
        pg_dsn, "SELECT payload FROM inventory_events WHERE event_id = %s", old.event_id
    ) == [(None,)]
    outcomes = await apply(pg_pool, [old.model_copy(update={"quantity": 9})])
    assert outcomes == [EventOutcome(event_id=old.event_id, status=EventStatus.DUPLICATE)]
    assert await stock(pg_dsn, sku, loc) == []


async def test_a_feed_file_line_that_reuses_an_id_is_rejected_and_the_others_applied(
    pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    sku, loc = uid("SKU"), uid("LOC")
    await define(pg_pool, sku, loc)
    reused = uid("r")
    await apply(pg_pool, [StockReceived(event_id=reused, sku=sku, location=loc, quantity=5)])
    file = [
        line(**receipt_json(uid("n"), 1, sku, loc)),
        line(**receipt_json(reused, 2, sku, loc)),
        line(**receipt_json(uid("n"), "3", sku, loc)),
        line(type="adjustment", event_id=uid("n"), sku=sku, location=loc, delta=-1, reason="c"),
    ]
    events, bad = read_events(file)
    outcomes = await apply(pg_pool, list(batch_of(events).events))
    lines = match_outcomes(events, outcomes)

    assert [str(b) for b in bad] == ['line 3: quantity: must be a JSON integer such as 2, not "3"']
    assert [str(ln) for ln in lines if not ln.outcome.ok] == [
        f"line 2 (event {reused}): event id {reused} was applied before as a receipt of 5 x"
        f" {sku} at {loc}; this one has quantity 2 (not 5)"
    ]
    assert str(summarise(bad, lines)) == "applied 2, duplicate 0, rejected 2 of 4 lines"
    assert await stock(pg_dsn, sku, loc) == [(5, 0)]  # 5, then +1 and -1


# -- the allocator: its updates refuse, its signal rejects ----------------------------------------


def test_a_check_only_earlier_releases_accept_is_refused_as_invalid_input() -> None:
    """No rule of a check is relaxed today; the validator refuses the next one that is."""
    workflow = AllocatorWorkflow(AllocatorStart(site="s"))
    check = AllocationCheck(order_ids=("A-1",))
    workflow._validate_check(check)  # the contract met: accepted
    mark_lenient(check, "order_ids.0: some rule tightened later")
    with pytest.raises(ApplicationError) as refused:
        workflow._validate_check(check)
    assert (refused.value.type, refused.value.non_retryable) == (INVALID_INPUT, True)
    assert refused.value.message == (
        "invalid AllocationCheck: order_ids.0: some rule tightened later"
    )


async def started(s: Shop) -> Any:
    """The site's allocator, started and its location and product defined."""
    await s.define()
    return s.client.get_workflow_handle(allocator_id(s.site))


@pytest.mark.e2e
async def test_an_update_with_a_count_that_is_no_json_integer_is_refused_as_invalid_input(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    async with shop(dev_env, pg_pool, pg_dsn) as s:
        handle = await started(s)
        good, lax = s.event_id(), s.event_id()
        raw = {
            "events": [
                receipt_json(good, 1, s.sku, s.location),
                receipt_json(lax, "2", s.sku, s.location),
            ]
        }
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await handle.execute_update("apply_inventory", raw, result_type=FeedResult)
        error = failed.value.cause
        later = await s.feed(s.receipt(4))  # the allocator carries on
    assert isinstance(error, ApplicationError)
    assert (error.type, error.non_retryable) == (INVALID_INPUT, True)
    problem = 'must be a JSON integer such as 2, not "2"'
    assert error.message == f"invalid InventoryBatch: events.1.receipt.quantity: {problem}"
    assert error.details == (
        {
            "problems": f"events.1.receipt.quantity: {problem}",
            "events": {lax: f"quantity: {problem}"},
        },
    )
    assert [o.status for o in later.outcomes] == [EventStatus.APPLIED]
    assert await s.stock() == (4, 0)  # nothing of the refused batch, not even its good event


@pytest.mark.e2e
async def test_a_signalled_event_only_earlier_releases_accept_is_rejected_alone(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """The signal has no answer: the event is not applied, and the pass that takes its batch
    reports it rejected with the field, beside its applied neighbour. The history, with its
    patch marker, replays."""
    async with shop(dev_env, pg_pool, pg_dsn, window=dt.timedelta(seconds=2)) as s:
        handle = await started(s)
        good, lax = s.event_id(), s.event_id()
        raw = {
            "events": [
                receipt_json(good, 3, s.sku, s.location),
                receipt_json(lax, "2", s.sku, s.location),
            ]
        }
        check = AllocationCheck(reason="after the signal", skus=(s.sku,))
        async with s.busy():  # the signal and the check share the next pass
            await handle.signal("inventory", raw)
            answer = asyncio.create_task(allocator.run_check(s.client, s.settings, s.site, check))
            await eventually(
                lambda: allocator.allocator_status(s.client, s.site),
                lambda st: st.pending_events == 1 and st.pending_check,
            )
        outcome: PassOutcome = await answer
        status = await allocator.allocator_status(s.client, s.site)
        history = await handle.fetch_history()
    assert [o.event_id for o in outcome.report.outcomes] == [good]
    assert outcome.report.outcomes[0].status is EventStatus.APPLIED
    assert outcome.refused == (
        EventOutcome(
            event_id=lax,
            status=EventStatus.REJECTED,
            rejection=Rejection.MALFORMED,
            reason='not applied: quantity: must be a JSON integer such as 2, not "2"',
        ),
    )
    assert (status.recent[-1].events, status.recent[-1].rejected) == (2, 1)
    assert await s.stock() == (3, 0)
    assert await rows(pg_dsn, "SELECT 1 FROM inventory_events WHERE event_id = %s", lax) == []
    await Replayer(workflows=[AllocatorWorkflow], data_converter=data_converter).replay_workflow(
        history
    )


@pytest.mark.e2e
async def test_an_id_waiting_for_the_pass_with_other_content_is_rejected_as_a_conflict(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """Two senders, one id, in one batching window: the first is applied, the second told
    why it was not (it used to be answered with the first one's outcome)."""
    async with shop(dev_env, pg_pool, pg_dsn, window=dt.timedelta(seconds=2)) as s:
        handle = await started(s)
        event = s.receipt(5)
        changed = event.model_copy(update={"quantity": 2})
        async with s.busy():  # both arrive while a pass runs: they share the next one
            first = await handle.start_update(
                AllocatorWorkflow.apply_inventory,
                InventoryBatch(events=(event,)),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            )
            second_sent = await handle.start_update(
                AllocatorWorkflow.apply_inventory,
                InventoryBatch(events=(changed,)),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            )
        second, applied = await asyncio.gather(second_sent.result(), first.result())
    assert [o.status for o in applied.outcomes] == [EventStatus.APPLIED]
    assert second.pass_id == applied.pass_id
    assert second.outcomes == (
        EventOutcome(
            event_id=event.event_id,
            status=EventStatus.REJECTED,
            rejection=Rejection.ID_CONFLICT,
            reason=f"event id {event.event_id} is waiting to be applied as a receipt of 5 x"
            f" {s.sku} at {s.location}; this one has quantity 2 (not 5)",
        ),
    )
    assert await s.stock() == (5, 0)


@pytest.mark.e2e
async def test_a_feed_file_sent_to_the_allocator_rejects_the_line_that_reuses_an_id(
    dev_env: WorkflowEnvironment, pg_pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    """`backorder inventory load`'s path: the file's lines, sent to the allocator, answered
    by line. Sent again, the applied lines are duplicates and the conflict is still refused."""
    async with shop(dev_env, pg_pool, pg_dsn) as s:
        await s.define()
        reused = s.event_id()
        await s.feed(s.receipt(5, event_id=reused))
        events, bad = read_events(
            [
                line(**receipt_json(s.event_id(), 1, s.sku, s.location)),
                line(**receipt_json(reused, 2, s.sku, s.location)),
                line(**receipt_json(s.event_id(), 4, s.sku, s.location)),
            ]
        )

        async def load() -> list[str]:
            result = await s.feed(*batch_of(events).events)
            lines = match_outcomes(events, result.outcomes)
            return [str(ln) for ln in lines if not ln.outcome.ok] + [str(summarise(bad, lines))]

        first, again = await load(), await load()
        on_hand = await s.stock()
    conflict = (
        f"line 2 (event {reused}): event id {reused} was applied before as a receipt of 5 x"
        f" {s.sku} at {s.location}; this one has quantity 2 (not 5)"
    )
    assert first == [conflict, "applied 2, duplicate 0, rejected 1 of 3 lines"]
    assert again == [conflict, "applied 0, duplicate 2, rejected 1 of 3 lines"]
    assert on_hand == (10, 0)
