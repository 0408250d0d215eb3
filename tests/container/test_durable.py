"""Durable runs with the image: workers stopped, killed and replaced mid-run, on a shared
workspace volume. A real Temporal dev server, the loopback model, a real engine."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from temporalio.client import Client

from agent_runner.agent_loop import INTERRUPTED
from agent_runner.models import AgentRequest, AgentResult
from tests.container.conftest import FAST_HEALTH, docker, inspect, wait_health, worker_env
from tests.fake_llm import Answer, FakeLLM, fake_llm, openai_answer, openai_tools
from tests.helpers import Seen, TemporalServer, wait_for

Figure = Callable[[str, str], None]


@pytest.fixture
def volume() -> Iterator[str]:
    """A named volume for /workspace, removed afterwards."""
    name = f"agent-runner-test-{uuid.uuid4().hex[:8]}"
    docker("volume", "create", name)
    yield name
    docker("volume", "rm", "-f", name, check=False)


def steps_by_turn(*answers: Callable[[], Answer], delay: float = 0.0) -> Callable[[dict[str, Any]], Answer]:
    """A model for many runs at once: the answer depends on how many turns the run has had."""

    def respond(body: dict[str, Any]) -> Answer:
        turn = sum(1 for message in body["messages"] if message["role"] == "assistant")
        answer = answers[min(turn, len(answers) - 1)]()
        answer.delay = delay
        return answer

    return respond


def llm_env(fake: FakeLLM) -> dict[str, str]:
    return {"STIGMER_LLM_PROVIDER": "openai", "STIGMER_LLM_BASE_URL": fake.url, "STIGMER_LLM_API_KEY": "sk-test"}


def start_worker(run_container: Any, env: dict[str, str], volume: str) -> str:
    container = run_container("--network=host", *FAST_HEALTH, f"--volume={volume}:/workspace", env=env)
    wait_health(container, "healthy", timeout=60)
    return container


async def start_run(address: str, queue: str, workspace: str) -> Any:
    client = await Client.connect(address)
    return await client.start_workflow(
        "AgentExecution",
        AgentRequest(instructions="Write a note", workspace=workspace),
        id=f"durable-{uuid.uuid4().hex[:8]}",
        task_queue=queue,
        result_type=AgentResult,
    )


def requests_seen(fake: FakeLLM, count: int) -> Callable[[], bool | Seen]:
    return lambda: len(fake.requests) >= count or Seen(f"{len(fake.requests)} model requests")


def test_docker_stop_during_a_model_call_then_a_new_worker_completes_the_run(
    temporal: TemporalServer, run_container: Any, volume: str, figure: Figure
) -> None:
    respond = steps_by_turn(
        lambda: openai_tools(("write_file", {"path": "note.md", "content": "hi"})),
        lambda: openai_answer("done"),
        delay=6,
    )
    with fake_llm([], respond) as fake:
        env = worker_env(temporal.address) | llm_env(fake) | {"STIGMER_DRAIN_TIMEOUT": "1"}
        first = start_worker(run_container, env, volume)

        async def scenario() -> tuple[AgentResult, float]:
            handle = await start_run(temporal.address, env["TEMPORAL_TASK_QUEUE"], "stopped")
            await asyncio.to_thread(wait_for, "the first model call", requests_seen(fake, 1), 30)
            await asyncio.to_thread(docker, "stop", "--time=20", first)
            stopped = time.monotonic()
            await asyncio.to_thread(start_worker, run_container, env, volume)
            result: AgentResult = await asyncio.wait_for(handle.result(), 120)
            return result, time.monotonic() - stopped

        result, took = asyncio.run(scenario())

    assert inspect(first)["State"]["ExitCode"] == 0
    assert (result.status, result.final_answer) == ("completed", "done"), result
    assert result.files_created == ["note.md"]
    figure("docker stop during a model call, then a new worker: the run completes", f"{took:.1f}s after the stop")


def test_docker_kill_during_a_long_command_the_run_completes_and_the_command_is_not_rerun(
    temporal: TemporalServer, run_container: Any, volume: str, figure: Figure
) -> None:
    command = "echo started >> runs.log; sleep 120"
    respond = steps_by_turn(
        lambda: openai_tools(("run_command", {"command": command})), lambda: openai_answer("I will check runs.log")
    )
    with fake_llm([], respond) as fake:
        env = worker_env(temporal.address) | llm_env(fake)
        first = start_worker(run_container, env, volume)

        def command_started() -> bool | Seen:
            out = docker("exec", first, "cat", "/workspace/killed/runs.log", check=False)
            return out.stdout == "started\n" or Seen(out.stderr.strip() or out.stdout)

        async def scenario() -> tuple[AgentResult, float, str]:
            handle = await start_run(temporal.address, env["TEMPORAL_TASK_QUEUE"], "killed")
            await asyncio.to_thread(wait_for, "the command to start", command_started, 30, 0.5)
            await asyncio.to_thread(docker, "kill", first)
            killed = time.monotonic()
            second = await asyncio.to_thread(start_worker, run_container, env, volume)
            result: AgentResult = await asyncio.wait_for(handle.result(), 120)
            took = time.monotonic() - killed
            log = docker("exec", second, "cat", "/workspace/killed/runs.log").stdout
            return result, took, log

        result, took, log = asyncio.run(scenario())
        told = [m["content"] for m in fake.requests[-1].body["messages"] if m["role"] == "tool"]

    assert result.status == "completed", result
    call = result.steps[0].tool_calls[0]
    assert (call.ok, call.result) == (False, INTERRUPTED)
    assert told == [INTERRUPTED]
    assert log == "started\n", "the command ran again"
    figure(
        "docker kill during a long command: the model is told it was interrupted, the command is not re-run, "
        "the run completes",
        f"{took:.1f}s after the kill",
    )


@pytest.mark.slow
def test_rolling_deploy_of_three_replicas_on_one_volume_loses_no_run(
    temporal: TemporalServer, run_container: Any, volume: str, figure: Figure
) -> None:
    respond = steps_by_turn(
        lambda: openai_tools(("write_file", {"path": "note.md", "content": "hi"})),
        lambda: openai_tools(("run_command", {"command": "sleep 2; cat note.md"})),
        lambda: openai_answer("done"),
        delay=2,
    )
    with fake_llm([], respond) as fake:
        env = worker_env(temporal.address) | llm_env(fake) | {"STIGMER_DRAIN_TIMEOUT": "3"}
        replicas = [start_worker(run_container, env, volume) for _ in range(3)]

        async def scenario() -> tuple[list[AgentResult], float]:
            start = time.monotonic()
            handles = [await start_run(temporal.address, env["TEMPORAL_TASK_QUEUE"], f"r{n}") for n in range(30)]
            for old in list(replicas):
                await asyncio.to_thread(docker, "stop", "--time=20", old)
                replicas.append(await asyncio.to_thread(start_worker, run_container, env, volume))
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 300)
            return list(results), time.monotonic() - start

        results, took = asyncio.run(scenario())

    statuses = [r.status for r in results]
    assert statuses.count("completed") == 30, json.dumps(statuses)
    assert all(r.files_created == ["note.md"] for r in results)
    figure(
        "rolling deploy: 3 replicas sharing a workspace volume replaced one by one with 30 runs in flight",
        f"30/30 completed in {took:.0f}s",
    )
