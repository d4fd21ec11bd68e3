"""The inventory feed file and the inventory, check and allocator commands, without Temporal:
the allocator's answers are faked at `send_inventory`, `run_check` and `allocator_status`; and
the purchase-order commands end to end, on the Temporal dev server with real order workflows."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

import cli.allocator
import cli.app
import cli.common
import cli.inventory
import starter
from activities.contracts import AllocationCheck, DeliveryReport, PassReport
from cli.errors import CliError
from config import Settings
from domain.inventory import (
    EventOutcome,
    EventStatus,
    FutureReceiptCancelled,
    FutureReceiptClosed,
    FutureReceiptPlanned,
    FutureReceiptReceived,
    FutureReceiptUpdated,
    InventoryBatch,
    InventoryEvent,
    LocationDefined,
    ProductDefined,
    Rejection,
    StockAdjusted,
    StockPosition,
    StockReceived,
)
from runtime.inventory_file import (
    EVENT_TYPES,
    NO_OUTCOME,
    LineRejection,
    NumberedEvent,
    batch_of,
    chunks,
    match_outcomes,
    parse_line,
    read_events,
    summarise,
)
from tests.polling import eventually
from tests.test_allocator_e2e import released, rows, shop
from workflows.allocator_messages import AllocatorStatus, FeedResult, PassLog, PassOutcome
from workflows.backorder import BackorderWorkflow
from workflows.messages import BackorderStatus


def receipt(event_id: str, quantity: int = 5, sku: str = "KTP") -> str:
    return json.dumps(
        {
            "type": "receipt",
            "event_id": event_id,
            "sku": sku,
            "location": "DC",
            "quantity": quantity,
        }
    )


FEED = [
    "# stock count, 2026-11-20",  # 1
    "",  # 2
    receipt("e-1"),  # 3
    '{"type": "receipt", "event_id": "e-2", ',  # 4
    '{"type": "restock", "event_id": "e-3"}',  # 5
    '{"type": "receipt", "event_id": "e-4", "sku": "KTP", "quantity": 1}',  # 6
    receipt("e-5", quantity=-3),  # 7
    receipt("e-1", quantity=9),  # 8
    '["receipt"]',  # 9
    '{"type": "adjustment", "event_id": "e-6", "sku": "KTP", "location": "DC",'
    ' "delta": -2, "reason": "count"}',  # 10
    "   ",  # 11
    '{"event_id": "e-7", "sku": "KTP"}',  # 12
]


# -- the feed file ------------------------------------------------------------------------------


def test_read_events_keeps_the_good_lines_and_names_each_bad_one() -> None:
    events, bad = read_events(FEED)
    assert [(n.line_no, n.event.event_id) for n in events] == [(3, "e-1"), (10, "e-6")]
    assert isinstance(events[1].event, StockAdjusted) and events[1].event.delta == -2
    assert [str(b) for b in bad] == [
        "line 4: malformed JSON: Expecting property name enclosed in double quotes at column 40",
        f"line 5: type: unknown event type 'restock' (one of {', '.join(EVENT_TYPES)})",
        "line 6: location: Field required",
        "line 7: quantity: Input should be greater than 0",
        "line 8: event_id 'e-1' repeats line 3; an id is applied once",
        "line 9: not a JSON object but an array",
        f"line 12: type: missing (one of {', '.join(EVENT_TYPES)})",
    ]
    assert [b.event_id for b in bad] == [None, "e-3", "e-4", "e-5", "e-1", None, "e-7"]


def test_every_event_type_is_known_and_the_reasons_drop_the_union_tag() -> None:
    assert set(EVENT_TYPES) == {
        "receipt", "adjustment", "future_receipt", "future_receipt_update",
        "future_receipt_cancel", "future_receipt_received", "future_receipt_close", "location",
        "product",
    }  # fmt: skip
    bad = [
        '{"type": "adjustment", "event_id": "a", "sku": "S", "location": "L", "delta": 0,'
        ' "reason": "r"}',
        '{"type": "future_receipt_update", "event_id": "b", "receipt_id": "PO-1"}',
        '{"type": "receipt", "event_id": "c", "sku": "S", "location": "L", "quantity": 1,'
        ' "colour": "red", "occurred_at": "2026-11-20T10:00:00"}',
        '{"type": "location", "event_id": " d", "location_id": "L"}',
    ]
    _, rejected = read_events(bad)
    assert [r.reason for r in rejected] == [
        "an adjustment's delta must not be 0",
        "a future receipt update needs an expected_date or a quantity",
        "occurred_at: must be an RFC 3339 date-time string with its timezone (Z or an offset), "
        'such as "2026-11-20T10:00:00Z", not "2026-11-20T10:00:00"; colour: Extra inputs are '
        "not permitted",
        "event_id: String should match pattern '^\\S(.*\\S)?$'",
    ]


def test_a_repeat_of_a_bad_line_id_is_rejected_and_good_ids_may_follow() -> None:
    events, bad = read_events([receipt("x", quantity=0), receipt("x"), receipt("y")])
    assert [(n.line_no, n.event.event_id) for n in events] == [(3, "y")]
    assert [str(b) for b in bad] == [
        "line 1: quantity: Input should be greater than 0",
        "line 2: event_id 'x' repeats line 1; an id is applied once",
    ]


def test_line_numbers_count_every_line_and_survive_a_bom_and_crlf() -> None:
    text = "\ufeff" + receipt("a") + "\r\n# note\r\n\r\n" + receipt("b") + "\r\n"
    events, bad = read_events(io.StringIO(text, newline=None))
    assert bad == []
    assert [(n.line_no, n.event.event_id) for n in events] == [(1, "a"), (4, "b")]


def test_parse_line_reads_each_event_type() -> None:
    event = parse_line(
        '{"type": "future_receipt", "event_id": "f", "receipt_id": "PO-1", "sku": "S",'
        ' "location": "L", "quantity": 10, "expected_date": "2026-12-01"}'
    )
    assert event == FutureReceiptPlanned(
        event_id="f",
        receipt_id="PO-1",
        sku="S",
        location="L",
        quantity=10,
        expected_date=dt.date(2026, 12, 1),
    )


def test_the_purchase_order_lines_of_a_feed_file() -> None:
    """A PO, a part of it received, the rest closed short: the JSON-lines form of each."""
    events, bad = read_events(
        [
            '{"type": "future_receipt", "event_id": "p", "receipt_id": "PO-7", "sku": "KTP",'
            ' "location": "DC", "quantity": 25, "expected_date": "2026-12-10"}',
            '{"type": "future_receipt_received", "event_id": "r", "receipt_id": "PO-7",'
            ' "quantity": 10}',
            '{"type": "future_receipt_close", "event_id": "c", "receipt_id": "PO-7",'
            ' "reason": "supplier short"}',
            '{"type": "future_receipt_close", "event_id": "d", "receipt_id": "PO-8"}',
            '{"type": "future_receipt_close", "event_id": "x", "receipt_id": "PO-9",'
            ' "quantity": 3}',
            '{"type": "future_receipt_close", "event_id": "y"}',
        ]
    )
    assert [n.event for n in events] == [
        FutureReceiptPlanned(
            event_id="p",
            receipt_id="PO-7",
            sku="KTP",
            location="DC",
            quantity=25,
            expected_date=dt.date(2026, 12, 10),
        ),
        FutureReceiptReceived(event_id="r", receipt_id="PO-7", quantity=10),
        FutureReceiptClosed(event_id="c", receipt_id="PO-7", reason="supplier short"),
        FutureReceiptClosed(event_id="d", receipt_id="PO-8", reason="purchase order closed short"),
    ]
    assert [str(b) for b in bad] == [
        "line 5: quantity: Extra inputs are not permitted",
        "line 6: receipt_id: Field required",
    ]


def numbered(n: int) -> list[NumberedEvent]:
    return [
        NumberedEvent(
            line_no=i + 2, event=StockReceived(event_id=f"e-{i}", sku="S", location="L", quantity=1)
        )
        for i in range(n)
    ]


def test_chunks_keep_file_order_and_fit_a_batch() -> None:
    events = numbered(1201)
    parts = list(chunks(events))
    assert [len(p) for p in parts] == [500, 500, 201]
    assert [n for p in parts for n in p] == events
    assert [len(p) for p in chunks(events[:5], size=2)] == [2, 2, 1]
    assert list(chunks([], size=3)) == []
    batch = batch_of(parts[2])
    assert isinstance(batch, InventoryBatch)
    assert [e.event_id for e in batch.events] == [f"e-{i}" for i in range(1000, 1201)]
    for size in (0, 1001):
        with pytest.raises(ValueError, match="chunk size"):
            list(chunks(events, size))


def test_outcomes_come_back_to_their_lines() -> None:
    sent = numbered(3)
    outcomes = [
        EventOutcome(event_id="e-2", status=EventStatus.DUPLICATE),
        EventOutcome(
            event_id="e-0",
            status=EventStatus.REJECTED,
            rejection=Rejection.UNKNOWN_SKU,
            reason="unknown sku S",
        ),
        EventOutcome(event_id="other", status=EventStatus.APPLIED),
    ]
    lines = match_outcomes(sent, outcomes)
    assert [(ln.line_no, ln.event_id, ln.outcome.status) for ln in lines] == [
        (2, "e-0", EventStatus.REJECTED),
        (3, "e-1", EventStatus.REJECTED),
        (4, "e-2", EventStatus.DUPLICATE),
    ]
    assert str(lines[0]) == "line 2 (event e-0): unknown sku S"
    assert str(lines[1]) == f"line 3 (event e-1): {NO_OUTCOME}"
    summary = summarise([LineRejection(9, "bad")], lines)
    assert str(summary) == "applied 0, duplicate 1, rejected 3 of 4 lines"


# -- building events from the command line ------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    return starter.parse(argv).args


def event_of(*argv: str) -> InventoryEvent:
    resolved = starter.parse(argv)
    assert resolved.handler is cli.inventory.cmd_inventory_event
    return cli.inventory.event_from_args(resolved.args)


def fields(event: InventoryEvent) -> dict[str, Any]:
    return event.model_dump(exclude={"event_id", "occurred_at"})


@pytest.mark.parametrize(
    ("argv", "model", "expected"),
    [
        (
            "receipt KTP DC 50",
            StockReceived,
            {"sku": "KTP", "location": "DC", "quantity": 50, "reason": "receipt"},
        ),
        (
            "receipt KTP DC 50 --reason return",
            StockReceived,
            {"sku": "KTP", "location": "DC", "quantity": 50, "reason": "return"},
        ),
        (
            "adjust KTP DC 7 --reason count",
            StockAdjusted,
            {"sku": "KTP", "location": "DC", "delta": 7, "reason": "count"},
        ),
        (
            "adjust KTP DC -5 --reason damaged",
            StockAdjusted,
            {"sku": "KTP", "location": "DC", "delta": -5, "reason": "damaged"},
        ),
        (
            "adjust --reason damaged KTP DC -- -5",
            StockAdjusted,
            {"sku": "KTP", "location": "DC", "delta": -5, "reason": "damaged"},
        ),
        (
            "po PO-7 KTP DC 100 --date 2026-12-01",
            FutureReceiptPlanned,
            {
                "receipt_id": "PO-7", "sku": "KTP", "location": "DC", "quantity": 100,
                "expected_date": dt.date(2026, 12, 1),
            },
        ),
        (
            "po PO-7 KTP DC 100",
            FutureReceiptPlanned,
            {
                "receipt_id": "PO-7", "sku": "KTP", "location": "DC", "quantity": 100,
                "expected_date": None,
            },
        ),
        (
            "po-update PO-7 --date 2026-12-24",
            FutureReceiptUpdated,
            {"receipt_id": "PO-7", "expected_date": dt.date(2026, 12, 24), "quantity": None},
        ),
        (
            "po-update PO-7 --quantity 80",
            FutureReceiptUpdated,
            {"receipt_id": "PO-7", "expected_date": None, "quantity": 80},
        ),
        (
            "po-cancel PO-7",
            FutureReceiptCancelled,
            {"receipt_id": "PO-7", "reason": "purchase order cancelled"},
        ),
        (
            "po-cancel PO-7 --reason supplier",
            FutureReceiptCancelled,
            {"receipt_id": "PO-7", "reason": "supplier"},
        ),
        ("po-received PO-7", FutureReceiptReceived, {"receipt_id": "PO-7", "quantity": None}),
        (
            "po-received PO-7 --quantity 95",
            FutureReceiptReceived,
            {"receipt_id": "PO-7", "quantity": 95},
        ),
        (
            "po-close PO-7",
            FutureReceiptClosed,
            {"receipt_id": "PO-7", "reason": "purchase order closed short"},
        ),
        (
            "po-close PO-7 --reason supplier-short",
            FutureReceiptClosed,
            {"receipt_id": "PO-7", "reason": "supplier-short"},
        ),
        ("location DC", LocationDefined, {"location_id": "DC", "rank": 0, "pickup": False}),
        (
            "location S-1 --rank 2 --pickup",
            LocationDefined,
            {"location_id": "S-1", "rank": 2, "pickup": True},
        ),
        (
            "product KTP",
            ProductDefined,
            {"sku": "KTP", "backorderable": True, "future_inventory": True, "insert": False,
             "preorder_release": None, "preorder_end": None},
        ),
        (
            "product KTP --not-backorderable --no-future-inventory --insert",
            ProductDefined,
            {"sku": "KTP", "backorderable": False, "future_inventory": False, "insert": True,
             "preorder_release": None, "preorder_end": None},
        ),
        (
            "product GAME --preorder-release 2027-03-01 --preorder-end 2027-02-15",
            ProductDefined,
            {"sku": "GAME", "backorderable": True, "future_inventory": True, "insert": False,
             "preorder_release": dt.date(2027, 3, 1), "preorder_end": dt.date(2027, 2, 15)},
        ),
    ],
)  # fmt: skip
def test_each_inventory_command_builds_its_event(
    argv: str, model: type[InventoryEvent], expected: dict[str, Any]
) -> None:
    event = event_of("inventory", *argv.split())
    assert type(event) is model
    assert {k: v for k, v in fields(event).items() if k != "type"} == expected
    assert event.event_id.startswith("cli-") and len(event.event_id) == 4 + 32
    assert event.occurred_at is not None and event.occurred_at.tzinfo is not None


def test_an_event_id_is_fresh_unless_given() -> None:
    first = event_of("inventory", "receipt", "KTP", "DC", "1")
    second = event_of("inventory", "receipt", "KTP", "DC", "1")
    assert first.event_id != second.event_id
    assert event_of("inventory", "location", "DC", "--id", "feed-42").event_id == "feed-42"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("receipt KTP DC -5", "receipt event:\n  quantity: Input should be greater than 0"),
        ("receipt KTP DC 0", "quantity: Input should be greater than 0"),
        ("adjust KTP DC 0 --reason r", "(event): an adjustment's delta must not be 0"),
        ("adjust KTP DC 5 --reason=", "reason: String should have at least 1 character"),
        ("po-update PO-7", "(event): a future receipt update needs an expected_date or a quantity"),
        ("location DC --rank -1", "rank: Input should be greater than or equal to 0"),
        ("po-received PO-7 --quantity 0", "quantity: Input should be greater than 0"),
        ("po-close PO-7 --reason=", "reason: String should have at least 1 character"),
    ],
)  # fmt: skip
def test_a_bad_event_is_a_cli_error_naming_the_field(argv: str, message: str) -> None:
    with pytest.raises(CliError) as err:
        cli.inventory.event_from_args(parse("inventory", *argv.split()))
    assert str(err.value).endswith(message)


def test_a_bad_event_id_is_a_cli_error() -> None:
    with pytest.raises(CliError, match="event_id: String should match pattern"):
        cli.inventory.event_from_args(parse("inventory", "location", "DC", "--id", " x "))


def test_a_usage_error_refuses_what_is_not_a_number_date_or_site() -> None:
    for argv in (
        "inventory receipt KTP DC many",
        "inventory adjust KTP DC -5",  # --reason is required
        "inventory po PO-7 KTP DC 1 --date 1/12/2026",
        "inventory receipt KTP DC 1 --site no/slash",
        "inventory load f.jsonl --chunk-size 1001",
        "inventory",
        "allocator",
    ):
        with pytest.raises(click.UsageError):
            parse(*argv.split())


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        ("receipt KTP DC many", "Invalid value for 'QUANTITY': 'many' is not a valid integer."),
        ("adjust KTP DC -5", "Missing option '--reason'."),
        ("adjust KTP DC -1.5 --reason r", "Invalid value for 'DELTA': '-1.5' is not a valid"),
        (
            "po PO-7 KTP DC 1 --date 1/12/2026",
            "Invalid value for '--date': '1/12/2026' is not a date YYYY-MM-DD",
        ),
        (
            "po-update PO-7 --date 2026-02-30",
            "Invalid value for '--date': '2026-02-30' is not a date YYYY-MM-DD (day is out of"
            " range for month)",
        ),
        (
            "receipt KTP DC 1 --site no/slash",
            "Invalid value for '--site': 'no/slash': letters, digits, _ . - only",
        ),
        (
            "load f.jsonl --chunk-size 1001",
            "Invalid value for '--chunk-size': '1001': must be a whole number 1..1000",
        ),
        ("location DC --rank x", "Invalid value for '--rank': 'x' is not a valid integer."),
        ("po-cancel", "Missing argument 'RECEIPT_ID'."),
        ("restock KTP DC 1", "No such command 'restock'."),
        ("receipt KTP DC 1 --resaon x", "No such option '--resaon'. Did you mean '--reason'?"),
        ("adjust KTP DC -5 --reason r -x", "No such option '-x'."),
        ("product KTP --pickup", "No such option '--pickup'."),
    ],
)
def test_a_bad_value_is_a_usage_error_naming_it(
    capsys: pytest.CaptureFixture[str], argv: str, why: str
) -> None:
    assert starter.main(["inventory", *argv.split()]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("Usage: backorder inventory ")
    assert f"\nError: {why}" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        "adjust KTP DC -5 --reason r",
        "adjust --reason r KTP DC -5",
        "adjust KTP DC --id e-1 -5 --reason r",  # between options
        "adjust KTP DC --reason r -- -5",
        "adjust KTP DC --reason=r -5",
    ],
)
def test_a_negative_number_is_a_value_never_an_option(argv: str) -> None:
    args = parse("inventory", *argv.split())
    assert (args.reason, args.delta) == ("r", -5)
    assert {args.sku, args.location} == {"KTP", "DC"}


def test_an_option_value_may_look_like_an_option_or_a_negative_number() -> None:
    assert parse("inventory", "adjust", "KTP", "DC", "1", "--reason", "-x").reason == "-x"
    assert parse("inventory", "location", "DC", "--rank", "-1").rank == -1
    assert parse("inventory", "po-update", "PO-7", "--quantity", "-2").quantity == -2


def test_check_and_status_arguments(settings: Settings) -> None:
    args = parse("check", "--sku", "KTP", "--sku", "MUG", "--order", "backorder-A-1",
                 "--order", "A-2", "--site", "eu")  # fmt: skip
    assert cli.allocator.allocation_check(args) == AllocationCheck(
        reason="operator request", skus=("KTP", "MUG"), order_ids=("A-1", "A-2")
    )
    assert cli.common.site_of(settings, args) == "eu"
    sweep = parse("check", "--reason", "after stock take")
    assert cli.allocator.allocation_check(sweep).full
    assert cli.common.site_of(settings, sweep) == settings.site == "test"
    status = starter.parse(["allocator", "status", "--json"])
    assert status.args.json and status.args.site is None and callable(status.handler)
    load = parse("inventory", "load", "-")
    assert str(load.file) == "-" and load.chunk_size == 500


# -- schemas ------------------------------------------------------------------------------------


def test_schema_of_an_inventory_event_is_a_union_told_apart_by_type(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Draft 2020-12 has no `discriminator` (an OpenAPI keyword): each member's `type` is a
    `const`, so exactly one member of the `oneOf` matches."""
    assert starter.main(["schema", "inventory-event"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "discriminator" not in schema and schema["required"] == ["type"]
    members = [schema["$defs"][m["$ref"].rsplit("/", 1)[1]] for m in schema["oneOf"]]
    assert {m["properties"]["type"]["const"] for m in members} == set(EVENT_TYPES)
    assert len(schema["oneOf"]) == len(EVENT_TYPES)
    receipt_schema = schema["$defs"]["StockReceived"]
    assert receipt_schema["additionalProperties"] is False
    assert {"event_id", "sku", "location", "quantity"} <= set(receipt_schema["required"])
    close = schema["$defs"]["FutureReceiptClosed"]
    assert set(close["required"]) == {"event_id", "receipt_id"}
    assert set(close["properties"]) == {"event_id", "occurred_at", "type", "receipt_id", "reason"}
    assert close["properties"]["reason"]["default"] == "purchase order closed short"
    assert close["additionalProperties"] is False

    assert starter.main(["schema", "inventory-batch"]) == 0
    batch = json.loads(capsys.readouterr().out)
    assert batch["properties"]["events"]["maxItems"] == 1000
    assert batch["properties"]["events"]["items"]["required"] == ["type"]


# -- talking to the allocator (faked) -----------------------------------------------------------


class FakeAllocator:
    """Stands in for `send_inventory`: applies each event unless told otherwise."""

    def __init__(
        self,
        status: dict[str, EventOutcome] | None = None,
        positions: tuple[StockPosition, ...] = (),
        released: tuple[int, int] = (0, 0),
        fail_on_batch: int | None = None,
    ) -> None:
        self.status = status or {}
        self.positions = positions
        self.released = released
        self.fail_on_batch = fail_on_batch
        self.batches: list[tuple[str, InventoryBatch]] = []

    async def send(
        self, client: Client, settings: Settings, site: str, batch: InventoryBatch
    ) -> FeedResult:
        self.batches.append((site, batch))
        if self.fail_on_batch == len(self.batches):
            raise WorkflowUpdateFailedError(ApplicationError("allocator is draining"))
        outcomes = tuple(
            self.status.get(
                e.event_id, EventOutcome(event_id=e.event_id, status=EventStatus.APPLIED)
            )
            for e in batch.events
        )
        return FeedResult(
            pass_id=f"p-{len(self.batches)}",
            outcomes=outcomes,
            positions=self.positions,
            orders_released=self.released[0],
            units_released=self.released[1],
        )


@pytest.fixture
def allocator(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Callable[..., FakeAllocator]:
    async def connect(s: Settings) -> Client:
        return None  # type: ignore[return-value]

    monkeypatch.setattr(cli.common, "connect_temporal", connect)
    monkeypatch.setattr(cli.app, "load_settings", lambda *a, **kw: settings)

    def install(**kw: Any) -> FakeAllocator:
        fake = FakeAllocator(**kw)
        monkeypatch.setattr(cli.allocator, "send_inventory", fake.send)
        return fake

    return install


def rejected(event_id: str, reason: str) -> EventOutcome:
    return EventOutcome(
        event_id=event_id,
        status=EventStatus.REJECTED,
        rejection=Rejection.UNKNOWN_SKU,
        reason=reason,
    )


def test_a_receipt_prints_the_stock_it_left_and_what_it_released(
    allocator: Callable[..., FakeAllocator], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = allocator(
        positions=(
            StockPosition(sku="KTP", location="STORE", on_hand=3, reserved=0),
            StockPosition(sku="KTP", location="DC", on_hand=50, reserved=40),
        ),
        released=(4, 40),
    )
    assert starter.main(["inventory", "receipt", "KTP", "DC", "50", "--id", "cli-abc"]) == 0
    assert capsys.readouterr().out == (
        "applied receipt cli-abc: 50 x KTP at DC (on hand 50, reserved 40, free 10)\n"
        "released 40 units to 4 orders\n"
    )
    [(site, batch)] = fake.batches
    assert site == "test"
    assert [e.event_id for e in batch.events] == ["cli-abc"]


def test_an_event_without_a_location_lists_the_stock_of_its_sku(
    allocator: Callable[..., FakeAllocator], capsys: pytest.CaptureFixture[str]
) -> None:
    allocator(
        positions=(
            StockPosition(sku="KTP", location="DC", on_hand=5, reserved=5),
            StockPosition(sku="MUG", location="DC", on_hand=1, reserved=0),
        )
    )
    argv = ["inventory", "product", "KTP", "--not-backorderable", "--id", "p-1", "--site", "eu"]
    assert starter.main(argv) == 0
    assert capsys.readouterr().out == (
        "applied product p-1: KTP, not backorderable, future inventory\n"
        "  KTP at DC: on hand 5, reserved 5, free 0\n"
    )


def test_a_rejected_event_exits_1_and_a_duplicate_exits_0(
    allocator: Callable[..., FakeAllocator], capsys: pytest.CaptureFixture[str]
) -> None:
    allocator(
        status={
            "bad": rejected("bad", "unknown sku NOPE"),
            "again": EventOutcome(event_id="again", status=EventStatus.DUPLICATE),
        }
    )
    assert starter.main(["inventory", "receipt", "NOPE", "DC", "1", "--id", "bad"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == "backorder: rejected receipt bad: unknown sku NOPE\n"
    assert (
        starter.main(["inventory", "adjust", "KTP", "DC", "-1", "--reason", "r", "--id", "again"])
        == 0
    )
    assert capsys.readouterr().out == (
        "adjustment again was already applied (same event id); nothing changed\n"
    )


def test_an_invalid_event_never_reaches_temporal(
    allocator: Callable[..., FakeAllocator], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = allocator()
    assert starter.main(["inventory", "receipt", "KTP", "DC", "-5"]) == 1
    assert "quantity: Input should be greater than 0" in capsys.readouterr().err
    assert fake.batches == []


def write_feed(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "feed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_load_applies_good_lines_in_chunks_and_names_every_rejection(
    allocator: Callable[..., FakeAllocator], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fake = allocator(
        status={
            "e-6": rejected("e-6", "unknown sku KTP"),
            "e-9": EventOutcome(event_id="e-9", status=EventStatus.DUPLICATE),
        }
    )
    path = write_feed(tmp_path, [*FEED, receipt("e-8"), receipt("e-9"), receipt("e-10")])
    assert starter.main(["inventory", "load", path, "--chunk-size", "2"]) == 1
    out = capsys.readouterr()
    assert [[e.event_id for e in b.events] for _, b in fake.batches] == [
        ["e-1", "e-6"], ["e-8", "e-9"], ["e-10"],
    ]  # fmt: skip
    err = out.err.splitlines()
    assert err[:7] == [str(b) for b in read_events(FEED)[1]]
    assert err[7] == "line 10 (event e-6): unknown sku KTP"
    assert err[8].startswith("backorder: 8 of 12 lines rejected; fix them")
    assert out.out == "applied 3, duplicate 1, rejected 8 of 12 lines\n"


def test_load_of_a_clean_file_from_stdin_exits_0(
    allocator: Callable[..., FakeAllocator],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = allocator()
    feed = "# header\n" + receipt("a") + "\n" + receipt("b")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(feed.encode())))
    assert starter.main(["inventory", "load", "-", "--site", "eu"]) == 0
    out = capsys.readouterr()
    assert (out.out, out.err) == ("applied 2, duplicate 0, rejected 0 of 2 lines\n", "")
    assert [site for site, _ in fake.batches] == ["eu"]


def test_load_that_fails_midway_says_where_it_stopped(
    allocator: Callable[..., FakeAllocator], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    allocator(fail_on_batch=2)
    path = write_feed(tmp_path, [receipt(f"e-{i}") for i in range(5)])
    assert starter.main(["inventory", "load", path, "--chunk-size", "2"]) == 1
    out = capsys.readouterr()
    assert out.out == "applied 2, duplicate 0, rejected 0 of 2 lines\n"
    assert "sending stopped at line 3: allocator-test refused the events" in out.err
    assert "loading the file again is safe" in out.err


def test_load_of_a_missing_file_is_a_clear_error(
    allocator: Callable[..., FakeAllocator], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert starter.main(["inventory", "load", str(tmp_path / "nope.jsonl")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_check_prints_the_pass(
    allocator: Callable[..., FakeAllocator],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    allocator()
    asked: list[tuple[str, AllocationCheck]] = []

    async def run_check(
        client: Client, settings: Settings, site: str, check: AllocationCheck
    ) -> PassOutcome:
        asked.append((site, check))
        report = PassReport(
            pass_id="test-3-abcd", site=site, skus=2, orders_waiting=5, orders_released=3,
            units_released=7, receipt_notices=1, signals=3,
        )  # fmt: skip
        return PassOutcome(report=report, delivery=DeliveryReport(delivered=2, gone=("A-9",)))

    monkeypatch.setattr(cli.allocator, "run_check", run_check)
    assert starter.main(["check", "--sku", "KTP", "--order", "A-1"]) == 0
    assert asked == [("test", AllocationCheck(skus=("KTP",), order_ids=("A-1",)))]
    assert capsys.readouterr().out == (
        "pass test-3-abcd on test: looked at 2 skus, 5 orders waiting\n"
        "  released 7 units to 3 orders, 1 receipt notice\n"
        "  delivered 2 of 3 allotment signals; 1 order gone: A-9\n"
    )


def test_allocator_status_table_json_and_no_allocator_yet(
    allocator: Callable[..., FakeAllocator],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    allocator()
    status = AllocatorStatus(
        site="test",
        passes=3,
        pending_events=2,
        pending_check=True,
        batch_window=dt.timedelta(seconds=2),
        recent=(
            PassLog(
                pass_id="test-3-abcd", at=dt.datetime(2026, 11, 20, 10, 5, tzinfo=dt.UTC),
                reason="inventory events", events=4, rejected=1, orders_released=2,
                units_released=9, receipt_notices=0, delivered=2, gone=0,
            ),
        ),
    )  # fmt: skip

    async def found(client: Client, site: str) -> AllocatorStatus:
        return status

    monkeypatch.setattr(cli.allocator, "allocator_status", found)
    assert starter.main(["allocator", "status"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if set(ln) != {"─"}]  # no rule
    assert lines[0] == "allocator-test: 3 passes, 2 events and a check pending, batch window 2s"
    assert lines[1].split() == [
        "pass", "at", "(UTC)", "events", "rej.", "orders", "units", "notices", "deliv.", "gone",
        "reason",
    ]  # fmt: skip
    assert lines[2].split() == [
        "test-3-abcd", "2026-11-20", "10:05", "4", "1", "2", "9", "0", "2", "0", "inventory",
        "events",
    ]  # fmt: skip
    assert starter.main(["allocator", "status", "--json"]) == 0
    assert AllocatorStatus.model_validate_json(capsys.readouterr().out) == status

    async def missing(client: Client, site: str) -> AllocatorStatus:
        raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")

    monkeypatch.setattr(cli.allocator, "allocator_status", missing)
    assert starter.main(["allocator", "status", "--site", "eu"]) == 1
    assert capsys.readouterr().err == (
        "backorder: no allocator for site eu yet (allocator-eu); the first inventory event or "
        "`backorder check --site eu` starts it\n"
    )


# -- purchase orders received in parts and closed short, end to end ---------------------------


@pytest.mark.e2e
async def test_a_po_received_in_part_and_closed_short_sends_its_order_back_to_wait(
    dev_env: WorkflowEnvironment,
    pg_pool: AsyncConnectionPool,
    pg_dsn: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 25-unit PO promised to A (10, placed first) and B (15). `po-received --quantity 10`
    ships A and leaves B waiting on the open rest; the PO closed short (the feed file's line)
    sends B back to backorder with a fresh expected date, its units given back; a later
    receipt releases B. Nothing is lost: the ledger balances at the end."""
    async with shop(dev_env, pg_pool, pg_dsn, future_inventory=True) as s:
        target = dev_env.client.service_client.config.target_host
        monkeypatch.setenv("BACKORDER_TEMPORAL__TARGET", target)
        monkeypatch.setenv("BACKORDER_TEMPORAL__TASK_QUEUE", s.settings.temporal.task_queue)

        async def cli(*argv: str) -> tuple[int, str, str]:
            code = await asyncio.to_thread(starter.main, [*argv, "--site", s.site])
            out, err = capsys.readouterr()
            return code, out, err

        await s.define()
        now = await dev_env.get_current_time()  # placed just now: well within the FTC rule
        a = await s.place(now - dt.timedelta(minutes=2), 10)
        b = await s.place(now - dt.timedelta(minutes=1), 15)
        today = now.date()
        po = f"PO-{s.sku}"
        expected = today + dt.timedelta(days=5)
        code, _, err = await cli(
            "inventory", "po", po, s.sku, s.location, "25", "--date", expected.isoformat()
        )
        assert code == 0, err
        waiting = BackorderStatus.AWAITING_RECEIPT
        await released(a, 10, waiting)
        await released(b, 15, waiting)

        code, out, err = await cli("inventory", "po-received", po, "--quantity", "10")
        assert code == 0, err
        assert f"{po}, 10 units\n  {s.sku} at {s.location}: on hand 10, reserved 10" in out
        assert (await a.result()).status is BackorderStatus.COMPLETED
        held_b = await b.query(BackorderWorkflow.status)
        assert held_b.status is waiting and held_b.expected_ship_date == expected
        assert await s.held(b.id[10:]) == 15

        feed = tmp_path / "close.jsonl"
        feed.write_text(
            json.dumps(
                {
                    "type": "future_receipt_close",
                    "event_id": f"close-{po}",
                    "receipt_id": po,
                    "reason": "supplier short",
                }
            )
            + "\n"
        )
        code, out, err = await cli("inventory", "load", str(feed))
        assert (code, out) == (0, "applied 1, duplicate 0, rejected 0 of 1 lines\n"), err
        back = await released(b, 0, BackorderStatus.BACKORDERED)
        assert back.expected_ship_date == today + dt.timedelta(days=2)  # the policy's default
        assert any(po in e.detail and "waits again" in e.detail for e in back.log)
        await eventually(lambda: s.held(b.id[10:]), lambda held: held == 0)
        assert await rows(
            pg_dsn, "SELECT quantity_open FROM demand WHERE order_id = %s", b.id[10:]
        ) == [(15,)]

        code, _, err = await cli("inventory", "po-received", po)
        assert code == 1
        assert "rejected future_receipt_received" in err and "was already closed" in err

        code, _, err = await cli("inventory", "receipt", s.sku, s.location, "15")
        assert code == 0, err
        assert (await b.result()).status is BackorderStatus.COMPLETED
    assert await s.stock() == (25, 25)
    assert await rows(
        pg_dsn,
        "SELECT status, quantity, received, reserved FROM future_receipts WHERE receipt_id = %s",
        po,
    ) == [("closed", 15, 10, 0)]
    assert await rows(
        pg_dsn,
        "SELECT order_id, source, receipt_id, quantity, state FROM reservations"
        " WHERE sku = %s ORDER BY id",
        s.sku,
    ) == [
        (a.id[10:], "current", po, 10, "reserved"),
        (b.id[10:], "future", po, 15, "released"),
        (b.id[10:], "current", None, 15, "reserved"),
    ]
    assert await rows(
        pg_dsn,
        "SELECT delta, reason FROM stock_movements WHERE sku = %s ORDER BY id",
        s.sku,
    ) == [(10, f"future receipt {po} received in part, 15 still to come"), (15, "receipt")]
