"""Agent runs end to end: a real Temporal dev server, the worker as a subprocess, a real HTTP
server on loopback speaking the provider's protocol, and the real clients (submit, temporal CLI)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fake_llm import (
    anthropic_answer,
    anthropic_tools,
    fake_llm,
    openai_answer,
    openai_error,
    openai_tools,
)
from tests.helpers import ROOT, Seen, TemporalServer, temporal_cli, wait_for
from tests.processes import alive

KEY = "sk-integration-secret-0123456789"


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    workspace_root: Path
    log: Path

    @property
    def task_queue(self) -> str:
        return self.env["TEMPORAL_TASK_QUEUE"]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _clean_env() -> dict[str, str]:
    """This process's environment without any setting the worker or its clients read."""
    prefixes = ("STIGMER_", "TEMPORAL_", "OPENAI_", "ANTHROPIC_", "OLLAMA_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return env | {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}  # the fake LLM is on loopback


@pytest.fixture
def start_worker(temporal: TemporalServer, tmp_path: Path) -> Iterator[Callable[[dict[str, str]], WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(llm_env: dict[str, str]) -> WorkerProcess:
        queue = f"agent-test-{uuid.uuid4().hex[:8]}"
        root = tmp_path / "workspace"
        root.mkdir(exist_ok=True)
        health = tmp_path / f"health-{queue}.json"
        env = _clean_env() | {
            "TEMPORAL_ADDRESS": temporal.address,
            "TEMPORAL_TASK_QUEUE": queue,
            "STIGMER_WORKSPACE_ROOT": str(root),
            "STIGMER_HEALTH_FILE": str(health),
            **llm_env,
        }
        log = tmp_path / f"worker-{queue}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent_runner"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(proc, env, root, log)
        started.append(worker)

        def polling() -> bool | Seen:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode}: {worker.output()[-2000:]}")
            state = json.loads(health.read_text()).get("state") if health.exists() else "no health file"
            return state == "polling" or Seen(str(state))

        wait_for("the worker to poll its task queue", polling, timeout=30)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
                try:
                    worker.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.proc.kill()
                    worker.proc.wait(timeout=10)


def submit(worker: WorkerProcess, *args: str, timeout: float = 90) -> tuple[int, dict[str, Any]]:
    """`python -m agent_runner.submit ARGS` with the worker's Temporal settings; its exit code and JSON."""
    env = _clean_env() | {k: worker.env[k] for k in ("TEMPORAL_ADDRESS", "TEMPORAL_TASK_QUEUE")}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "agent_runner.submit", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"submit gave no answer in {timeout:.0f}s; the worker's log ends:\n{worker.output()[-3000:]}"
        ) from None
    assert result.stdout.strip(), f"submit printed nothing (rc {result.returncode}): {result.stderr[-2000:]}"
    return result.returncode, json.loads(result.stdout)


def run_cli(server: TemporalServer, *args: str, timeout: float = 90) -> str:
    """The official Temporal CLI against the test's dev server; its standard output."""
    try:
        result = subprocess.run(
            [temporal_cli(), *args, "--address", server.address],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_clean_env(),
        )
    except subprocess.TimeoutExpired as err:
        raise AssertionError(
            f"temporal {' '.join(args)} gave no answer in {timeout:.0f}s; it printed: {err.stdout!r}"
        ) from None
    assert result.returncode == 0, f"temporal {' '.join(args)} failed: {result.stderr[-2000:]}"
    return result.stdout


def openai_env(fake_url: str) -> dict[str, str]:
    return {
        "STIGMER_LLM_PROVIDER": "openai",
        "STIGMER_LLM_BASE_URL": fake_url,
        "STIGMER_LLM_API_KEY": KEY,
        "STIGMER_LLM_MODEL": "fake-gpt",
    }


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


def test_cancelling_the_workflow_stops_the_run_and_its_command_promptly(
    temporal: TemporalServer, start_worker: Callable[[dict[str, str]], WorkerProcess]
) -> None:
    command = "sleep 120 & echo $! > sleep.pid; wait"
    with fake_llm([openai_tools(("run_command", {"command": command}))]) as fake:
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
        asked = time.monotonic()
        run_cli(temporal, "workflow", "cancel", "--workflow-id", started["workflow_id"])
        out = run_cli(temporal, "workflow", "result", "--workflow-id", started["workflow_id"], "-o", "json")
        took = time.monotonic() - asked

    result = json.loads(out)["result"]
    assert result["status"] == "cancelled"
    assert result["error"] == "the run was cancelled"
    assert took < 15, f"the run took {took:.1f}s to stop"
    assert result["steps"][0]["tool_calls"] == [
        {"name": "run_command", "arguments": json.dumps({"command": command}), "ok": False, "result": "cancelled"}
    ]
    assert "sleep.pid" in result["files_created"]
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
