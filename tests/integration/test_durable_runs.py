"""A run survives the loss of its worker: real Temporal, real worker processes, the loopback model.

The worker process is stopped (SIGTERM, drain) or killed (SIGKILL) at a chosen point of a run,
and a new worker on the same task queue and workspace root takes the run over."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent_runner.agent_loop import INTERRUPTED
from tests.fake_llm import Answer, FakeLLM, fake_llm, openai_answer, openai_tools
from tests.helpers import Seen, TemporalServer, wait_for
from tests.integration.test_agent_runs import (
    WorkerProcess,
    openai_env,
    run_cli,
    submit,
)
from tests.processes import alive

StartWorker = Callable[..., WorkerProcess]


def slow(answer: Answer, seconds: float) -> Answer:
    answer.delay = seconds
    return answer


def requests_seen(fake: FakeLLM, count: int) -> Callable[[], bool | Seen]:
    return lambda: len(fake.requests) >= count or Seen(f"{len(fake.requests)} model requests")


def result_of(temporal: TemporalServer, workflow_id: str) -> dict[str, Any]:
    out = run_cli(temporal, "workflow", "result", "--workflow-id", workflow_id, "-o", "json", timeout=120)
    return dict(json.loads(out)["result"])


def test_worker_stopped_during_a_model_call_the_next_worker_completes_the_run(
    temporal: TemporalServer, start_worker: StartWorker, figure: Callable[[str, str], None]
) -> None:
    write = ("write_file", {"path": "once.txt", "content": "x"})
    # The first answer is lost with the first worker: the retried call gets the second.
    script = [slow(openai_tools(write), 30), openai_tools(write), openai_answer("done")]
    with fake_llm(script) as fake:
        first = start_worker(openai_env(fake.url) | {"STIGMER_DRAIN_TIMEOUT": "1"})
        code, started = submit(first, "Write once.txt", "--workspace", "stopped")
        assert code == 0, started
        wait_for("the first model call", requests_seen(fake, 1), timeout=30)
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(timeout=30) == 0
        stopped = time.monotonic()
        start_worker(openai_env(fake.url), queue=first.task_queue)
        result = result_of(temporal, started["workflow_id"])
        took = time.monotonic() - stopped

    assert result["status"] == "completed", result
    assert result["final_answer"] == "done"
    assert [len(step["tool_calls"] or []) for step in result["steps"]] == [1, 0]  # the CLI prints [] as null
    assert result["files_created"] == ["once.txt"]
    assert len(fake.requests) == 3
    figure("a run whose worker is stopped during a model call completes on the next worker", f"{took:.1f}s")


def test_worker_killed_during_a_tool_call_the_model_is_told_it_was_interrupted(
    temporal: TemporalServer, start_worker: StartWorker, figure: Callable[[str, str], None]
) -> None:
    command = "echo $$ > cmd.pid; echo started >> runs.log; sleep 60"
    script = [openai_tools(("run_command", {"command": command})), openai_answer("I will check runs.log")]
    with fake_llm(script) as fake:
        first = start_worker(openai_env(fake.url))
        code, started = submit(first, "Run the long command", "--workspace", "killed")
        assert code == 0, started
        run_dir = first.workspace_root / "killed"
        wait_for(
            "the command to start",
            lambda: ((run_dir / "cmd.pid").exists() and (run_dir / "cmd.pid").read_text().strip()) or Seen("no pid"),
            timeout=30,
        )
        shell = int((run_dir / "cmd.pid").read_text())
        first.proc.kill()
        first.proc.wait(timeout=10)
        # The sandbox's launcher kills the command when its worker dies; make sure of it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell, signal.SIGKILL)
        killed = time.monotonic()
        start_worker(openai_env(fake.url), queue=first.task_queue)
        result = result_of(temporal, started["workflow_id"])
        took = time.monotonic() - killed

    assert result["status"] == "completed", result
    call = result["steps"][0]["tool_calls"][0]
    assert (call["ok"], call["result"]) == (False, INTERRUPTED)
    told = [m["content"] for m in fake.requests[1].body["messages"] if m["role"] == "tool"]
    assert told == [INTERRUPTED]
    assert "outcome is unknown: check before you retry" in INTERRUPTED
    assert (run_dir / "runs.log").read_text() == "started\n", "the command ran again"
    assert not alive(shell)
    figure("a tool call whose worker is killed is reported to the model as interrupted, not re-run", f"{took:.1f}s")


def test_a_run_whose_workspace_is_gone_fails_naming_the_directory(start_worker: StartWorker) -> None:
    script = [slow(openai_tools(("list_files", {})), 3), openai_answer("never")]
    with fake_llm(script) as fake:
        worker = start_worker(openai_env(fake.url))
        code, started = submit(worker, "List", "--workspace", "gone")
        assert code == 0, started
        wait_for("the first model call", requests_seen(fake, 1), timeout=30)
        shutil.rmtree(worker.workspace_root / "gone")
        out = run_cli_result_failure(worker, started["workflow_id"])

    run_dir = (worker.workspace_root / "gone").resolve()
    assert out == f"the run's workspace {run_dir} is gone (the volume was replaced or the directory removed)"


def run_cli_result_failure(worker: WorkerProcess, workflow_id: str) -> str:
    """The failure message of a failed run, as submit --wait would print it."""
    import asyncio

    from temporalio.client import Client, WorkflowFailureError

    async def failure() -> str:
        client = await Client.connect(worker.env["TEMPORAL_ADDRESS"])
        try:
            await client.get_workflow_handle(workflow_id).result()
        except WorkflowFailureError as err:
            cause: BaseException = err
            while cause.__cause__ is not None:
                cause = cause.__cause__
            return str(getattr(cause, "message", cause))
        return "the run did not fail"

    return asyncio.run(failure())


def test_tool_call_fails_the_run_when_no_worker_has_its_volume(start_worker: StartWorker) -> None:
    script = [slow(openai_tools(("list_files", {})), 20), openai_tools(("list_files", {})), openai_answer("never")]
    with fake_llm(script) as fake:
        first = start_worker(openai_env(fake.url) | {"STIGMER_VOLUME_WAIT": "3", "STIGMER_DRAIN_TIMEOUT": "1"})
        code, started = submit(first, "List", "--workspace", "elsewhere")
        assert code == 0, started
        wait_for("the first model call", requests_seen(fake, 1), timeout=30)
        first.proc.send_signal(signal.SIGTERM)
        first.proc.wait(timeout=30)
        # A worker with a volume of its own takes the model call; nobody has the run's volume.
        start_worker(openai_env(fake.url), queue=first.task_queue, root=first.workspace_root.parent / "other")
        message = run_cli_result_failure(first, started["workflow_id"])

    run_dir = (first.workspace_root / "elsewhere").resolve()
    assert message.startswith(f"no worker with the run's workspace {run_dir} took its tool call within 3s")


def test_progress_query_shows_the_steps_while_the_run_goes_on(
    temporal: TemporalServer, start_worker: StartWorker
) -> None:
    script = [
        openai_tools(("write_file", {"path": "a.txt", "content": "a"}), text="first"),
        slow(openai_answer("ok"), 5),
    ]
    with fake_llm(script) as fake:
        worker = start_worker(openai_env(fake.url))
        code, started = submit(worker, "Write", "--workspace", "watched")
        assert code == 0, started
        wait_for("the second model call", requests_seen(fake, 2), timeout=30)
        out = run_cli(temporal, "workflow", "query", "-w", started["workflow_id"], "--name", "progress", "-o", "json")
        result = result_of(temporal, started["workflow_id"])

    progress = json.loads(out)["queryResult"][0]
    assert progress["status"] == "running"
    assert [s["text"] for s in progress["steps"]] == ["first"]
    assert progress["steps"][0]["tool_calls"][0]["result"] == "wrote 1 bytes to a.txt"
    assert progress["usage"] == {"input_tokens": 10, "output_tokens": 5}
    assert set(progress) == set(result)
    assert result["status"] == "completed"


@pytest.mark.slow
def test_a_200_step_run_keeps_its_history_under_temporals_warnings(
    temporal: TemporalServer, start_worker: StartWorker, figure: Callable[[str, str], None]
) -> None:
    content = "x" * 2000  # each step adds a tool call and its answer to the conversation
    script = [openai_tools(("write_file", {"path": f"f{n % 5}.txt", "content": content})) for n in range(199)]
    script.append(openai_answer("done"))
    with fake_llm(script) as fake:
        worker = start_worker(openai_env(fake.url))
        started_at = time.monotonic()
        code, result = submit(
            worker, "Write many files", "--max-steps", "200", "--max-seconds", "3000", "--wait", timeout=900
        )
        took = time.monotonic() - started_at

    assert code == 0, result
    assert len(result["steps"]) == 200
    runs = json.loads(
        run_cli(temporal, "workflow", "list", "--query", f"WorkflowId = '{result['workflow_id']}'", "-o", "json")
    )
    sizes = []
    for run in runs:
        info = describe_run(temporal, result["workflow_id"], run["execution"]["runId"])["workflowExecutionInfo"]
        sizes.append((int(info["historyLength"]), int(info["historySizeBytes"])))
    assert all(events < 10240 and size < 10 * 1024 * 1024 for events, size in sizes), sizes
    figure(
        "a 200-step run stays under Temporal's history warnings (10,240 events, 10 MiB)",
        f"{len(sizes)} runs of history; largest {max(e for e, _ in sizes)} events, "
        f"{max(s for _, s in sizes) / 1024 / 1024:.1f} MiB; {took:.0f}s",
    )


def describe_run(temporal: TemporalServer, workflow_id: str, run_id: str) -> dict[str, Any]:
    out = run_cli(temporal, "workflow", "describe", "-w", workflow_id, "-r", run_id, "-o", "json")
    return dict(json.loads(out))


def test_max_seconds_stops_a_slow_model_with_limit_reached(start_worker: StartWorker) -> None:
    with fake_llm([slow(openai_answer("too late"), 30)]) as fake:
        worker = start_worker(openai_env(fake.url))
        asked = time.monotonic()
        code, result = submit(worker, "Think for long", "--max-seconds", "3", "--wait")
        took = time.monotonic() - asked

    assert code == 1
    assert (result["status"], result["error"]) == ("limit_reached", "max_seconds (3) ran out")
    assert took < 20, f"took {took:.1f}s"


def test_temporal_restarted_mid_run_the_run_completes(
    tmp_path: Path, start_worker: StartWorker, figure: Callable[[str, str], None]
) -> None:
    def respond(body: dict[str, Any]) -> Answer:
        first = not any(m["role"] == "assistant" for m in body["messages"])
        answer = openai_tools(("write_file", {"path": "a.txt", "content": "a"})) if first else openai_answer("done")
        answer.delay = 5
        return answer

    server = TemporalServer(db_file=tmp_path / "temporal.db").start()
    try:
        with fake_llm([], respond) as fake:
            worker = start_worker(openai_env(fake.url) | {"TEMPORAL_ADDRESS": server.address})
            code, started = submit(worker, "Write a.txt", "--workspace", "restart")
            assert code == 0, started
            wait_for("the first model call", requests_seen(fake, 1), timeout=30)
            server.stop()
            restarted = time.monotonic()
            server = TemporalServer(port=server.port, db_file=server.db_file).start()
            result = result_of(server, started["workflow_id"])
            took = time.monotonic() - restarted
    finally:
        server.stop()

    assert result["status"] == "completed", result
    assert result["files_created"] == ["a.txt"]
    figure("the Temporal dev server restarted (file database) mid-run: the run completes", f"{took:.1f}s")


def test_with_a_volume_per_worker_each_runs_tools_run_where_it_was_opened(
    tmp_path: Path, start_worker: StartWorker
) -> None:
    def respond(body: dict[str, Any]) -> Answer:
        turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if turn == 0:
            return openai_tools(("write_file", {"path": "a.txt", "content": "a"}))
        if turn == 1:
            return openai_tools(("run_command", {"command": "cat a.txt"}))
        return openai_answer("done")

    with fake_llm([], respond) as fake:
        first = start_worker(openai_env(fake.url), root=tmp_path / "volume-a")
        second = start_worker(openai_env(fake.url), queue=first.task_queue, root=tmp_path / "volume-b")
        results = [submit(first, "Write and read", "--workspace", f"run{n}", "--wait") for n in range(6)]

    assert all(code == 0 and result["status"] == "completed" for code, result in results), results
    for _, result in results:
        assert result["steps"][1]["tool_calls"][0]["result"] == "exit code 0\na", result
        homes = [
            root for root in (first.workspace_root, second.workspace_root) if (root / result["workspace"]).exists()
        ]
        assert len(homes) == 1, f"{result['workspace']} is in {homes}"
    volume_a = (first.workspace_root / ".agent-runner" / "volume-id").read_text()
    assert volume_a != (second.workspace_root / ".agent-runner" / "volume-id").read_text()
