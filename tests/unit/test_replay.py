"""Recorded histories of real runs replay against the current workflow code (determinism).

A change to the workflow that would break runs in flight fails here. The histories are recorded
by `python -m tests.histories.record` (see that file)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from agent_runner.workflows import AgentExecutionWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


@pytest.mark.parametrize("name", ["completed", "cancelled", "interrupted"])
def test_recorded_run_replays_without_nondeterminism(name: str) -> None:
    text = (HISTORIES / f"{name}.json").read_text(encoding="utf-8")
    history = WorkflowHistory.from_json(f"recorded-{name}", text)
    result = asyncio.run(
        Replayer(workflows=[AgentExecutionWorkflow]).replay_workflow(history, raise_on_replay_failure=False)
    )
    assert result.replay_failure is None, f"{name}: {result.replay_failure}"
    # The history is the kind of run its name says.
    last = json.loads(text)["events"][-1]["eventType"]
    expected = "WORKFLOW_EXECUTION_CANCELED" if name == "cancelled" else "WORKFLOW_EXECUTION_COMPLETED"
    assert last in (expected, f"EVENT_TYPE_{expected}"), last


def test_the_interrupted_history_has_a_tool_call_lost_with_its_worker() -> None:
    events = json.loads((HISTORIES / "interrupted.json").read_text(encoding="utf-8"))["events"]
    timeouts = [e for e in events if "TIMED_OUT" in str(e["eventType"]).upper()]
    assert timeouts, "the recorded run has no timed-out activity"
