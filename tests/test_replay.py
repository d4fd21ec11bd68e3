"""Saved histories replay on today's code: a change that would break running workflows fails."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from domain.order import workflow_id_for
from worker import WORKFLOWS
from workflows.converter import data_converter

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_histories_to_replay() -> None:
    assert HISTORIES, "record some with `python -m tests.record_histories`"


def workflow_id_of(recorded: str, name: str) -> str:
    """The id the workflow ran under (an order workflow checks it): a history file does not
    hold it, but an order workflow's input names its order."""
    first = json.loads(recorded)["events"][0]["workflowExecutionStartedEventAttributes"]
    payloads = first.get("input", {}).get("payloads", [])
    start = json.loads(base64.b64decode(payloads[0]["data"])) if payloads else None
    if isinstance(start, dict) and ("order_id" in start or "order" in start):
        return workflow_id_for(start.get("order_id") or start["order"]["order_id"])
    return name


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays_without_nondeterminism(path: Path) -> None:
    recorded = path.read_text()  # noqa: ASYNC240 - tiny file
    history = WorkflowHistory.from_json(workflow_id_of(recorded, path.stem), recorded)
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter)
    await replayer.replay_workflow(history)  # raises on any nondeterminism
