"""A real worker process on the host, against the session's Temporal dev server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, TemporalServer, wait_for
from tests.integration.agents import start_worker  # noqa: F401 (a fixture for every integration test)


class WorkerProcess:
    def __init__(self, address: str, tmp: Path, **extra_env: str) -> None:
        self.workspace = tmp / "workspace"
        self.workspace.mkdir(exist_ok=True)
        self.health_file = tmp / "health.json"
        self.log = tmp / "worker.log"
        self.task_queue = f"it-{uuid.uuid4().hex[:8]}"
        # A clean environment: nothing from the developer's shell leaks into the test.
        self.env = {
            "PATH": os.environ["PATH"],
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_TASK_QUEUE": self.task_queue,
            "STIGMER_WORKSPACE_ROOT": str(self.workspace),
            "STIGMER_HEALTH_FILE": str(self.health_file),
            **extra_env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent_runner"], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def health(self, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "healthcheck.py"), *flags],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )

    def wait_healthy(self, timeout: float = 30) -> str:
        def probe() -> str | bool:
            result = self.health()
            return result.stdout.strip() if result.returncode == 0 else False

        return str(wait_for(f"worker healthy; log: {self.logs()[-400:]}", probe, timeout, interval=0.5))

    def wait_ready(self, timeout: float = 45) -> str:
        def probe() -> str | bool:
            result = self.health("--readiness")
            return result.stdout.strip() if result.returncode == 0 else False

        return str(wait_for(f"worker ready; log: {self.logs()[-400:]}", probe, timeout, interval=0.5))

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def worker_factory(temporal: TemporalServer, tmp_path: Path) -> Iterator[type[WorkerProcess]]:
    started: list[WorkerProcess] = []

    class Factory(WorkerProcess):
        def __init__(self, address: str = temporal.address, **extra_env: str) -> None:
            sub = tmp_path / f"w{len(started)}"
            sub.mkdir()
            super().__init__(address, sub, **extra_env)
            started.append(self)

    yield Factory
    for worker in started:
        worker.stop()


@pytest.fixture
def worker(worker_factory: type[WorkerProcess]) -> WorkerProcess:
    process = worker_factory().start()
    process.wait_healthy()
    return process
