"""The agent loop on its own: a real loopback model server, a real workspace, no Temporal."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent_runner.agent_loop import run_agent
from agent_runner.config import LLMSettings
from agent_runner.llm import make_chat_model
from agent_runner.models import AgentRequest, AgentResult, request_problem
from agent_runner.tools import Workspace
from tests.fake_llm import Answer, fake_llm, openai_answer, openai_error, openai_tools
from tests.processes import alive


@pytest.fixture(autouse=True)
def no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake server is on loopback: a proxy set in the environment must not be asked for it."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


def run(url: str, root: Path, request: AgentRequest, *, cancel_after: float | None = None) -> AgentResult:
    settings = LLMSettings("openai", "fake", url, None, 64, None, 10.0)

    async def go() -> AgentResult:
        model = make_chat_model(settings)
        workspace = Workspace(root, command_timeout=60, env={"PATH": "/usr/bin:/bin"})
        try:
            task = asyncio.create_task(run_agent(model, workspace, request))
            if cancel_after is not None:
                await asyncio.sleep(cancel_after)
                task.cancel()
            return await task
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_max_seconds_stops_a_slow_model_with_limit_reached(tmp_path: Path) -> None:
    slow = Answer(openai_answer("too late").body, delay=5)
    with fake_llm([slow]) as fake:
        started = time.monotonic()
        result = run(fake.url, tmp_path, AgentRequest("task", max_seconds=1, workspace="w"))
    assert (result.status, result.error) == ("limit_reached", "max_seconds (1) ran out")
    assert time.monotonic() - started < 4


def test_cancelling_stops_the_running_command_and_keeps_the_steps(tmp_path: Path) -> None:
    command = "echo $$ > shell.pid; exec sleep 30"
    with fake_llm([openai_tools(("run_command", {"command": command}), text="waiting")]) as fake:
        started = time.monotonic()
        result = run(fake.url, tmp_path, AgentRequest("task", workspace="w"), cancel_after=1.0)
    assert time.monotonic() - started < 5
    assert (result.status, result.error, result.final_answer) == ("cancelled", "the run was cancelled", "waiting")
    assert [(c.name, c.ok, c.result) for c in result.steps[0].tool_calls] == [("run_command", False, "cancelled")]
    pid = int((tmp_path / "shell.pid").read_text())
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the command outlived the cancelled run"


def test_bad_tool_arguments_are_told_to_the_model_and_the_run_goes_on(tmp_path: Path) -> None:
    bad = openai_tools(("write_file", {}))
    bad.body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = "not json"
    with fake_llm([bad, openai_answer("fine")]) as fake:
        result = run(fake.url, tmp_path, AgentRequest("task", workspace="w"))
    assert result.status == "completed"
    assert result.steps[0].tool_calls[0].result == "write_file: the arguments must be a JSON object"
    assert fake.requests[1].body["messages"][-1]["content"] == "write_file: the arguments must be a JSON object"


def test_a_refused_model_call_fails_the_run_with_the_reason(tmp_path: Path) -> None:
    with fake_llm([openai_error(400, "messages: too long")]) as fake:
        result = run(fake.url, tmp_path, AgentRequest("task", workspace="w"))
    assert (result.status, result.error) == ("failed", "openai answered HTTP 400: messages: too long")


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
