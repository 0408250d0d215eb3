"""The agent loop's pure parts: requests, the conversation as workflow state, steps."""

from __future__ import annotations

import pytest

from agent_runner.agent_loop import SHORT, short, system_prompt
from agent_runner.llm import AssistantTurn, ToolAnswer, ToolRequest, ToolTurn, UserTurn, turn_to_json, turns_from_json
from agent_runner.models import AgentRequest, request_problem


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"instructions": "  "}, "instructions: expected the task for the agent, got nothing"),
        ({"max_steps": 0}, "max_steps: expected a whole number from 1 to 200, got 0"),
        ({"max_seconds": 0.5}, "max_seconds: expected seconds from 1 to 21600, got 0.5"),
    ],
)
def test_bad_requests_are_named(changes: dict[str, object], problem: str) -> None:
    request = AgentRequest(**{"instructions": "task", **changes})  # type: ignore[arg-type]
    assert request_problem(request) == problem
    assert request_problem(AgentRequest("task")) is None


def test_the_conversation_survives_its_json_form_unchanged() -> None:
    turns = [
        UserTurn("do it"),
        AssistantTurn("ok", [ToolRequest("call_0", "list_files", {"path": "."}, '{"path": "."}')]),
        ToolTurn([ToolAnswer("call_0", "a.txt", is_error=False), ToolAnswer("call_1", "refused", is_error=True)]),
        AssistantTurn("bad arguments", [ToolRequest("call_2", "read_file", None, "not json")]),
    ]
    assert turns_from_json([turn_to_json(turn) for turn in turns]) == turns


def test_steps_keep_a_short_text_and_the_system_prompt_takes_the_runs_own() -> None:
    assert short("x" * 1000) == "x" * (SHORT - 1) + "…"
    assert short("brief") == "brief"
    assert system_prompt("Use British spelling.").endswith("\n\nUse British spelling.")
