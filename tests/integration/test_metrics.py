"""The worker's Prometheus endpoint: the project's run series count each outcome once, with the
tokens the runs reported. A real worker process, a real dev server, the fake model server."""

from __future__ import annotations

import asyncio
import re
import urllib.request
import uuid
from typing import Any

from temporalio.client import Client, WorkflowFailureError

from agent_runner.models import AgentRequest, AgentResult
from agent_runner.workflows import AgentExecutionWorkflow
from tests.fake_llm import fake_llm, openai_answer, openai_tools
from tests.helpers import TemporalServer, free_port
from tests.integration.conftest import WorkerProcess

SAMPLE = re.compile(r"^(agent_runner_\w+)\{([^}]*)\} (\S+)$")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def own_series(text: str) -> dict[tuple[str, str], float]:
    """{(name, the label that tells series apart): value} for the agent_runner_* run samples
    (not the slot gauge, which the container test checks)."""
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not match.group(1).startswith("agent_runner_task_slots"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            found[(match.group(1), labels.get("status") or labels.get("kind") or "")] = float(match.group(3))
    return found


async def three_runs(address: str, task_queue: str, fake: Any) -> list[AgentResult]:
    client = await Client.connect(address)
    completed: AgentResult = await client.execute_workflow(
        AgentExecutionWorkflow.run,
        AgentRequest(instructions="write a note"),
        id=f"m-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    try:
        await client.execute_workflow(
            AgentExecutionWorkflow.run,
            AgentRequest(instructions=""),
            id=f"m-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        raise AssertionError("a run without instructions did not fail")
    except WorkflowFailureError:
        pass
    handle = await client.start_workflow(
        AgentExecutionWorkflow.run,
        AgentRequest(instructions="wait"),
        id=f"m-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    for _ in range(300):  # the third model call asks for the long command
        if len(fake.requests) >= 3:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    await handle.cancel()
    try:
        await handle.result()
        raise AssertionError("a cancelled run did not close as Canceled")
    except WorkflowFailureError:
        pass
    # A cancelled run closes as Canceled; its state, with its tokens, stays readable by the query.
    cancelled: AgentResult = await handle.query(AgentExecutionWorkflow.progress)
    return [completed, cancelled]


def test_run_series_count_each_outcome_and_the_tokens(
    temporal: TemporalServer, worker_factory: type[WorkerProcess], figure: Any
) -> None:
    port = free_port()
    script = [
        openai_tools(("write_file", {"path": "note.md", "content": "hi"})),
        openai_answer("done"),
        openai_tools(("run_command", {"command": "sleep 120"})),
    ]
    with fake_llm(script) as fake:
        worker = worker_factory(
            STIGMER_METRICS_ADDRESS=f"127.0.0.1:{port}",
            STIGMER_LLM_PROVIDER="openai",
            STIGMER_LLM_BASE_URL=fake.url,
            STIGMER_LLM_API_KEY="sk-test",
        ).start()
        worker.wait_healthy()
        completed, cancelled = asyncio.run(three_runs(temporal.address, worker.task_queue, fake))

    assert (completed.status, cancelled.status) == ("completed", "cancelled")
    # Counted in the workflow task that completed each run, before its client saw the result.
    series = own_series(scrape(port))
    tokens_in = sum(r.usage.input_tokens or 0 for r in (completed, cancelled))
    tokens_out = sum(r.usage.output_tokens or 0 for r in (completed, cancelled))
    assert tokens_in > 0 and tokens_out > 0
    assert series == {
        ("agent_runner_runs_started_total", ""): 3,
        ("agent_runner_runs_finished_total", "completed"): 1,
        ("agent_runner_runs_finished_total", "failed"): 1,
        ("agent_runner_runs_finished_total", "cancelled"): 1,
        ("agent_runner_model_tokens_total", "input"): tokens_in,
        ("agent_runner_model_tokens_total", "output"): tokens_out,
    }
    text = scrape(port)
    assert f'task_queue="{worker.task_queue}"' in text and 'workflow_type="AgentExecution"' in text
    figure(
        "a completed, a failed and a cancelled run are each counted once, with their tokens",
        f"started 3; completed/failed/cancelled 1/1/1; tokens {tokens_in} in, {tokens_out} out",
    )
