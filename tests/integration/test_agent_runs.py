"""Agent runs end to end: a real Temporal dev server, the worker as a subprocess, a real HTTP
server on loopback speaking the provider's protocol, and the real clients (submit, temporal CLI)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from tests.fake_llm import (
    anthropic_answer,
    anthropic_tools,
    fake_llm,
    openai_answer,
    openai_error,
    openai_tools,
)
from tests.helpers import Seen, TemporalServer, wait_for
from tests.integration.agents import KEY, WorkerProcess, openai_env, run_cli, submit
from tests.processes import alive


def tool_calls(result: dict[str, Any]) -> list[tuple[str, bool]]:
    return [(call["name"], call["ok"]) for step in result["steps"] for call in step["tool_calls"]]


def test_openai_run_writes_files_runs_a_command_and_survives_traversal_attempts(
    start_worker: Callable[[dict[str, str]], WorkerProcess],
) -> None:
    script = [
        openai_tools(("write_file", {"path": "src/hello.py", "content": "print('hello from the agent')\n"})),
        openai_tools(("run_command", {"command": "python3 src/hello.py > out.txt; cat out.txt"})),
        openai_tools(
            ("write_file", {"path": "../escaped.txt", "content": "x"}),
            ("read_file", {"path": "/etc/passwd"}),
            text="trying some paths",
        ),
        openai_answer("Wrote src/hello.py and ran it."),
    ]
    with fake_llm(script) as fake:
        worker = start_worker(openai_env(fake.url))
        code, result = submit(worker, "Write a hello script and run it", "--workspace", "demo", "--wait")

    assert code == 0, result
    assert result["status"] == "completed"
    assert result["final_answer"] == "Wrote src/hello.py and ran it."
    assert result["model"] == "fake-gpt"
    run_dir = worker.workspace_root / "demo"
    assert (run_dir / "out.txt").read_text() == "hello from the agent\n"
    assert sorted(result["files_created"]) == ["out.txt", "src/hello.py"]
    assert not (worker.workspace_root / "escaped.txt").exists()
    assert tool_calls(result) == [
        ("write_file", True),
        ("run_command", True),
        ("write_file", False),
        ("read_file", False),
    ]
    assert result["steps"][1]["tool_calls"][0]["result"] == "exit code 0\nhello from the agent"
    assert result["usage"] == {"input_tokens": 40, "output_tokens": 20}
    # The model was told about the refusals, and the run went on.
    answers = [m["content"] for m in fake.requests[3].body["messages"] if m["role"] == "tool"]
    assert "refused: '../escaped.txt' contains '..'" in answers[-2]
    assert "refused: '/etc/passwd' is an absolute path" in answers[-1]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in fake.requests)
    # The key is in no result and no log line.
    assert KEY not in json.dumps(result)
    assert KEY not in worker.output()


def test_anthropic_run(start_worker: Callable[[dict[str, str]], WorkerProcess]) -> None:
    script = [
        anthropic_tools(("write_file", {"path": "notes.md", "content": "# Notes\n"}), text="Writing notes."),
        anthropic_tools(("edit_file", {"path": "notes.md", "old_text": "# Notes", "new_text": "# Agent notes"})),
        anthropic_answer("Notes written."),
    ]
    with fake_llm(script) as fake:
        worker = start_worker(
            {"STIGMER_LLM_PROVIDER": "anthropic", "STIGMER_LLM_BASE_URL": fake.url, "ANTHROPIC_API_KEY": KEY}
        )
        code, result = submit(worker, "Write notes", "--workspace", "notes-run", "--model", "claude-fake", "--wait")

    assert code == 0, result
    assert (result["status"], result["final_answer"], result["model"]) == ("completed", "Notes written.", "claude-fake")
    assert (worker.workspace_root / "notes-run" / "notes.md").read_text() == "# Agent notes\n"
    assert result["files_created"] == ["notes.md"]
    assert result["usage"] == {"input_tokens": 60, "output_tokens": 21}
    assert [r.path for r in fake.requests] == ["/v1/messages"] * 3
    assert all(r.headers["x-api-key"] == KEY for r in fake.requests)
    last = fake.requests[2].body["messages"][-1]
    assert last["content"][0]["type"] == "tool_result" and last["content"][0]["content"] == "edited notes.md"
    assert KEY not in worker.output()


def test_run_started_with_the_temporal_cli(
    temporal: TemporalServer, start_worker: Callable[[dict[str, str]], WorkerProcess]
) -> None:
    script = [openai_tools(("write_file", {"path": "cli.txt", "content": "from the CLI"})), openai_answer("done")]
    with fake_llm(script) as fake:
        worker = start_worker(openai_env(fake.url))
        request = {"instructions": "Write cli.txt", "workspace": "cli-run", "max_steps": 5}
        out = run_cli(
            temporal,
            "workflow",
            "execute",
            "--task-queue",
            worker.task_queue,
            "--type",
            "AgentExecution",
            "--workflow-id",
            f"cli-{uuid.uuid4().hex[:8]}",
            "--input",
            json.dumps(request),
            "--output",
            "json",
        )
    result = json.loads(out)["result"]
    assert result["status"] == "completed" and result["final_answer"] == "done"
    assert result["files_created"] == ["cli.txt"]
    assert (worker.workspace_root / "cli-run" / "cli.txt").read_text() == "from the CLI"


def test_cancelled_run_closes_canceled_stops_its_command_and_keeps_its_steps(
    temporal: TemporalServer, start_worker: Callable[[dict[str, str]], WorkerProcess]
) -> None:
    command = "sleep 120 & echo $! > sleep.pid; wait"
    with fake_llm(
        [
            openai_tools(("write_file", {"path": "a.txt", "content": "a"})),
            openai_tools(("run_command", {"command": command})),
        ]
    ) as fake:
        worker = start_worker(openai_env(fake.url))
        code, started = submit(worker, "Wait for a long time", "--workspace", "cancel-run")
        assert code == 0, started
        pid_file = worker.workspace_root / "cancel-run" / "sleep.pid"
        sleeper = int(
            wait_for(
                "the command to start",
                lambda: (pid_file.exists() and pid_file.read_text().strip()) or Seen("no sleep.pid yet"),
                timeout=30,
            )
        )
        workflow_id = started["workflow_id"]
        asked = time.monotonic()
        run_cli(temporal, "workflow", "cancel", "--workflow-id", workflow_id)

        def status() -> bool | Seen:
            out = run_cli(temporal, "workflow", "describe", "--workflow-id", workflow_id, "-o", "json")
            found = json.loads(out)["workflowExecutionInfo"]["status"]
            return found == "WORKFLOW_EXECUTION_STATUS_CANCELED" or Seen(found)

        wait_for("the workflow to close as Canceled", status, timeout=30, interval=0.5)
        took = time.monotonic() - asked
        out = run_cli(temporal, "workflow", "query", "--workflow-id", workflow_id, "--name", "progress", "-o", "json")

    progress = json.loads(out)["queryResult"][0]
    assert took < 15, f"the run took {took:.1f}s to stop"
    assert progress["status"] == "cancelled"
    assert progress["error"] == "the run was cancelled"
    assert [step["tool_calls"] for step in progress["steps"]] == [
        [
            {
                "name": "write_file",
                "arguments": json.dumps({"path": "a.txt", "content": "a"}),
                "ok": True,
                "result": "wrote 1 bytes to a.txt",
            }
        ],
        [{"name": "run_command", "arguments": json.dumps({"command": command}), "ok": False, "result": "cancelled"}],
    ]
    wait_for(f"the command's sleep (pid {sleeper}) to be gone", lambda: not alive(sleeper), timeout=10)


def test_429_then_success_is_retried(start_worker: Callable[[dict[str, str]], WorkerProcess]) -> None:
    script = [
        openai_error(429, "Rate limit reached", {"retry-after": "1"}),
        openai_tools(("write_file", {"path": "after-429.txt", "content": "ok"})),
        openai_answer("done"),
    ]
    with fake_llm(script) as fake:
        worker = start_worker(openai_env(fake.url))
        code, result = submit(worker, "Write a file", "--wait")

    assert code == 0, result
    assert result["status"] == "completed"
    assert len(fake.requests) == 3
    # Retried inside the run: the first tool call ran once, in the run's own directory (its workflow id).
    assert result["workspace"] == result["workflow_id"]
    assert (worker.workspace_root / result["workflow_id"] / "after-429.txt").read_text() == "ok"
    assert "openai answered HTTP 429: Rate limit reached; retrying in 1.0s (attempt 1 of 5)" in worker.output()


def test_401_fails_at_once_with_a_clear_message(start_worker: Callable[[dict[str, str]], WorkerProcess]) -> None:
    with fake_llm([openai_error(401, f"Incorrect API key provided: {KEY}")]) as fake:
        worker = start_worker(openai_env(fake.url))
        asked = time.monotonic()
        code, result = submit(worker, "Anything", "--wait")
        took = time.monotonic() - asked

    assert code == 1
    assert result["status"] == "failed"
    assert result["error"] == (
        "openai answered HTTP 401: Incorrect API key provided: ***; "
        "check STIGMER_LLM_API_KEY (or the provider's key variable)"
    )
    assert len(fake.requests) == 1
    assert took < 10, f"took {took:.1f}s"
    assert KEY not in worker.output()


def test_max_steps_ends_the_run_with_limit_reached(start_worker: Callable[[dict[str, str]], WorkerProcess]) -> None:
    script = [openai_tools(("list_files", {})) for _ in range(5)]
    with fake_llm(script) as fake:
        worker = start_worker(openai_env(fake.url))
        code, result = submit(worker, "Loop forever", "--max-steps", "2", "--wait")

    assert code == 1
    assert result["status"] == "limit_reached"
    assert result["error"] == "max_steps (2) reached before a final answer"
    assert len(result["steps"]) == 2 and len(fake.requests) == 2


def test_without_a_provider_the_worker_starts_and_a_run_says_what_to_set(
    start_worker: Callable[[dict[str, str]], WorkerProcess],
) -> None:
    worker = start_worker({})
    code, result = submit(worker, "Anything", "--wait")
    assert code == 1
    assert result["status"] == "failed"
    assert result["error"].startswith("no LLM is configured on this worker: set STIGMER_LLM_PROVIDER")
