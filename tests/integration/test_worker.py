"""The worker and its health check against a real Temporal dev server."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from agent_runner.health import BEAT_MAX_AGE
from tests.helpers import ROOT, Seen, TemporalServer, free_port, wait_for
from tests.integration.conftest import WorkerProcess


def identity_of(worker: WorkerProcess) -> str:
    return str(json.loads(worker.health_file.read_text())["identity"])


def test_worker_registers_as_poller_with_unique_identity(temporal: TemporalServer, worker: WorkerProcess) -> None:
    async def pollers() -> set[str]:
        client = await Client.connect(temporal.address)
        seen: set[str] = set()
        for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
            response = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace="default", task_queue=TaskQueue(name=worker.task_queue), task_queue_type=kind
                )
            )
            seen |= {p.identity for p in response.pollers}
        return seen

    identity = identity_of(worker)
    assert identity.startswith("agent-runner/")
    assert asyncio.run(pollers()) == {identity}


def test_health_check_says_healthy_and_ready_with_the_identity(worker: WorkerProcess) -> None:
    identity = identity_of(worker)

    def listed() -> str | Seen:  # Temporal lists the worker after the SDK's first worker heartbeat
        line = worker.health().stdout
        return line if f"ready: Temporal lists {identity} running" in line else Seen(line)

    line = wait_for("Temporal to list the worker", listed, timeout=45, interval=1)
    assert line.startswith(
        "healthy: alive, polling: workflow slots 0/100, model slots 0/500, tool slots 0/10 in use; ready:"
    )
    assert line.count("\n") == 1


def test_liveness_reads_only_the_heartbeat_file(worker: WorkerProcess) -> None:
    worker.wait_ready()
    result = worker.health("--liveness", TEMPORAL_ADDRESS="127.0.0.1:1")  # no Temporal there: never asked
    assert (result.returncode, result.stdout.strip()) == (
        0,
        "alive, polling: workflow slots 0/100, model slots 0/500, tool slots 0/10 in use",
    )


def test_unknown_flag_is_a_usage_error(worker: WorkerProcess) -> None:
    result = worker.health("--nope")
    assert (result.returncode, result.stdout.strip()) == (2, "usage: healthcheck.py [--liveness | --readiness]")


def test_sigterm_stops_cleanly_and_health_turns_unhealthy(worker: WorkerProcess) -> None:
    assert worker.proc is not None
    start = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=10) == 0
    assert time.monotonic() - start < 2
    result = worker.health()
    assert result.returncode == 1
    assert "worker not running" in result.stdout
    assert "stopped" in worker.logs()


def test_sigint_also_stops_cleanly(worker: WorkerProcess) -> None:
    assert worker.proc is not None
    worker.signal(signal.SIGINT)
    assert worker.proc.wait(timeout=10) == 0


def test_killed_worker_turns_unhealthy_within_the_heartbeat_window(worker: WorkerProcess) -> None:
    assert worker.proc is not None
    worker.proc.kill()  # no chance to clean up: the heartbeat file stays behind
    worker.proc.wait(timeout=10)
    killed = time.monotonic()

    def unhealthy() -> str | bool:
        result = worker.health()
        return result.stdout.strip() if result.returncode == 1 else False

    reason = wait_for("health check to notice the dead worker", unhealthy, timeout=BEAT_MAX_AGE + 15, interval=1)
    assert "unresponsive" in reason
    assert time.monotonic() - killed <= BEAT_MAX_AGE + 15


def test_temporal_stopped_is_not_ready_but_alive(
    own_temporal: TemporalServer, worker_factory: type[WorkerProcess]
) -> None:
    worker = worker_factory(own_temporal.address).start()
    worker.wait_ready()
    own_temporal.stop()
    assert worker.health("--liveness").returncode == 0
    ready = worker.health("--readiness")
    assert ready.returncode == 1
    assert ready.stdout.startswith(f"not ready: Temporal unreachable at {own_temporal.address}")
    docker = worker.health()
    assert docker.returncode == 0  # an outage is not death: Docker's status is liveness
    assert f"; not ready: Temporal unreachable at {own_temporal.address}" in docker.stdout


def test_worker_waits_for_temporal_then_becomes_ready(worker_factory: type[WorkerProcess]) -> None:
    port = free_port()
    worker = worker_factory(f"127.0.0.1:{port}").start()
    wait_for("a logged retry", lambda: "not reachable (attempt 2)" in worker.logs(), timeout=20)
    assert worker.health("--liveness").stdout.startswith("alive, connecting to Temporal for")
    result = worker.health("--readiness")
    assert result.returncode == 1
    assert result.stdout.startswith("not ready: worker connecting: attempt ")
    server = TemporalServer(port=port).start()
    try:
        worker.wait_ready(timeout=60)  # backoff is at most 10 s between attempts, then one worker heartbeat
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        server.stop()


def test_sdk_failing_fatally_is_not_alive_within_60s(worker_factory: type[WorkerProcess]) -> None:
    # A namespace Temporal does not know: the client connects, the SDK worker fails at once,
    # and again on every retry. Restarting would not help either, but it must show.
    worker = worker_factory(TEMPORAL_NAMESPACE="no-such-namespace").start()
    started = time.monotonic()

    def dead() -> str | Seen:
        line = worker.health("--liveness").stdout.strip()
        return line if "SDK failed" in line else Seen(line)  # not "not running": the worker starts first

    reason = wait_for("liveness to fail", dead, timeout=60, interval=1)
    assert time.monotonic() - started <= 60
    assert reason.startswith("unhealthy: worker's Temporal SDK failed (")
    assert "namespace not found" in reason
    assert worker.proc is not None and worker.proc.poll() is None  # it keeps retrying, no crash loop


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TEMPORAL_ADDRESS": "localhost"}, "TEMPORAL_ADDRESS"),
        ({"TEMPORAL_TLS": "perhaps"}, "TEMPORAL_TLS"),
        ({"STIGMER_LOG_FORMAT": "yaml"}, "STIGMER_LOG_FORMAT"),
        ({"STIGMER_MAX_CONCURRENT_ACTIVITIES": "-3"}, "STIGMER_MAX_CONCURRENT_ACTIVITIES"),
        ({"STIGMER_WORKSPACE_ROOT": "/nonexistent/workspace"}, "STIGMER_WORKSPACE_ROOT"),
    ],
)
def test_bad_configuration_exits_2_with_one_line(env: dict[str, str], variable: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent_runner"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "STIGMER_WORKSPACE_ROOT": "/tmp", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"agent-runner: configuration error: {variable}:")
    assert "Traceback" not in result.stderr
