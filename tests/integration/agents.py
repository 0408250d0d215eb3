"""Agent workers as subprocesses and the clients that start runs on them, for the integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, Seen, TemporalServer, temporal_cli, wait_for

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

    def start(llm_env: dict[str, str], queue: str = "", root: Path | None = None) -> WorkerProcess:
        """A worker on its own task queue, or on `queue`; with the test's workspace root, or `root`."""
        queue = queue or f"agent-test-{uuid.uuid4().hex[:8]}"
        root = root or tmp_path / "workspace"
        root.mkdir(exist_ok=True)
        health = tmp_path / f"health-{uuid.uuid4().hex[:8]}.json"
        env = _clean_env() | {
            "TEMPORAL_ADDRESS": temporal.address,
            "TEMPORAL_TASK_QUEUE": queue,
            "STIGMER_WORKSPACE_ROOT": str(root),
            "STIGMER_HEALTH_FILE": str(health),
            **llm_env,
        }
        log = tmp_path / f"worker-{len(started)}-{queue}.log"
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


def submit_command(worker: WorkerProcess, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of `python -m agent_runner.submit ARGS` against the worker's Temporal."""
    env = _clean_env() | {k: worker.env[k] for k in ("TEMPORAL_ADDRESS", "TEMPORAL_TASK_QUEUE")}
    return [sys.executable, "-m", "agent_runner.submit", *args], env


def submit(worker: WorkerProcess, *args: str, timeout: float = 90) -> tuple[int, dict[str, Any]]:
    """`python -m agent_runner.submit ARGS` with the worker's Temporal settings; its exit code and JSON."""
    command, env = submit_command(worker, *args)
    try:
        result = subprocess.run(
            command,
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
