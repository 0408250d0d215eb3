"""The fault matrix: the image against a real Temporal that goes away, workers that freeze,
block, stop or die. Each test records the figure it measured for docs/reliability.md."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from tests.container.conftest import (
    FAULT_WORKER_ARGS,
    FAULT_WORKER_COMMAND,
    container_logs,
    docker,
    freeze,
    health_status,
    inspect,
    thaw,
    wait_health,
    worker_env,
)
from tests.helpers import Seen, TemporalServer, free_port, wait_for

Figure = Callable[[str, str], None]
# The image's probe every 2 s and one failure to flip: the tests measure the health check's
# own reaction; Docker adds (retries x interval) on top in production.
PROBE_2S = ("--health-interval=2s", "--health-retries=1", "--health-start-period=1s", "--health-timeout=10s")


def seconds_until(what: str, probe: Callable[[], bool | Seen], timeout: float) -> float:
    start = time.monotonic()
    wait_for(what, probe, timeout, interval=0.5)
    return time.monotonic() - start


def health_is(container: str, wanted: str) -> Callable[[], bool | Seen]:
    def probe() -> bool | Seen:
        status = health_status(container)
        return status == wanted or Seen(status)

    return probe


def last_health_output(container: str) -> str:
    log = inspect(container)["State"].get("Health", {}).get("Log") or [{}]
    return str(log[-1].get("Output", "")).strip()


def readiness(container: str, wanted: bool = True) -> Callable[[], bool | Seen]:
    """A probe for wait_for: True once `healthcheck.py --readiness` passes (or fails, wanted=False)."""

    def probe() -> bool | Seen:
        result = docker("exec", container, "python", "/app/healthcheck.py", "--readiness", check=False)
        return (result.returncode == 0) == wanted or Seen(result.stdout.strip())

    return probe


def test_temporal_down_at_start_no_crash_loop_alive_then_ready(run_container: Any, figure: Figure) -> None:
    port = free_port()
    container = run_container("--network=host", *PROBE_2S, env=worker_env(f"127.0.0.1:{port}"))
    wait_for("a logged retry", lambda: "not reachable (attempt 3)" in container_logs(container), timeout=30)
    wait_health(container, "healthy", timeout=30)  # alive: waiting for Temporal is no reason to restart
    assert inspect(container)["State"]["Status"] == "running"
    assert inspect(container)["RestartCount"] == 0
    assert "; not ready: worker connecting: attempt" in last_health_output(container)
    assert readiness(container, wanted=False)() is True
    server = TemporalServer(port=port).start()
    try:
        took = seconds_until("ready after Temporal came up", readiness(container), timeout=60)
    finally:
        server.stop()
    assert took <= 60  # two production intervals
    figure("no crash loop while Temporal is down, alive; ready soon after it comes up", f"{took:.1f} s to ready")


def test_temporal_restart_not_ready_while_down_then_ready_without_a_restart(
    own_temporal: TemporalServer, run_container: Any, figure: Figure
) -> None:
    container = run_container("--network=host", *PROBE_2S, env=worker_env(own_temporal.address))
    wait_health(container, "healthy", timeout=30)
    seconds_until("ready", readiness(container), timeout=60)
    started_at = inspect(container)["State"]["StartedAt"]
    own_temporal.stop()
    down = seconds_until("not ready after Temporal stopped", readiness(container, wanted=False), timeout=30)
    time.sleep(5)  # stay down a while, and let Docker probe
    assert health_status(container) == "healthy"  # an outage is not death
    assert f"not ready: Temporal unreachable at {own_temporal.address}" in last_health_output(container)
    own_temporal.start()
    back = seconds_until("ready after Temporal restarted", readiness(container), timeout=60)
    state = inspect(container)
    assert (state["State"]["StartedAt"], state["RestartCount"]) == (started_at, 0)  # recovered by itself
    figure(
        "Temporal restarted: not ready while it is down, Docker still healthy; ready again without a restart",
        f"{down:.1f} s to not ready, {back:.1f} s to ready",
    )


def test_frozen_worker_turns_unhealthy_while_its_neighbour_stays_healthy(
    temporal: TemporalServer, run_container: Any, figure: Figure
) -> None:
    env = worker_env(temporal.address)  # both on the same queue, on the same host network
    frozen = run_container("--network=host", *PROBE_2S, env=env)
    neighbour = run_container("--network=host", *PROBE_2S, env=env)
    wait_health(frozen, "healthy", timeout=30)
    wait_health(neighbour, "healthy", timeout=30)
    freeze(frozen)
    try:
        took = seconds_until("frozen container unhealthy", health_is(frozen, "unhealthy"), timeout=60)
        assert "unresponsive" in last_health_output(frozen)
        assert health_status(neighbour) == "healthy"
        time.sleep(4)  # two more neighbour probes while the other one is frozen
        assert health_status(neighbour) == "healthy"
    finally:
        thaw(frozen)
    assert took <= 60
    figure(
        "a frozen worker (SIGSTOP) is caught, a healthy neighbour on the same queue is not",
        f"{took:.1f} s to unhealthy",
    )


def test_blocked_event_loop_turns_unhealthy_and_says_where(
    temporal: TemporalServer, run_container: Any, figure: Figure
) -> None:
    env = worker_env(temporal.address)
    container = run_container("--network=host", *PROBE_2S, *FAULT_WORKER_ARGS, env=env, command=FAULT_WORKER_COMMAND)
    wait_health(container, "healthy", timeout=30)

    async def start() -> None:
        client = await Client.connect(temporal.address)
        await client.start_workflow(
            "RunActivity",
            args=["block_event_loop", 600],
            id=f"block-{uuid.uuid4().hex[:8]}",
            task_queue=env["TEMPORAL_TASK_QUEUE"],
        )

    asyncio.run(start())
    wait_for("the blocking activity to start", lambda: "block_event_loop started" in container_logs(container), 30)
    took = seconds_until("blocked worker unhealthy", health_is(container, "unhealthy"), timeout=60)
    output = last_health_output(container)
    assert "event loop blocked" in output
    assert "fault_worker.py" in output and "in block_event_loop" in output
    assert "event loop blocked for" in container_logs(container)  # the worker's own log says why too
    assert took <= 60
    figure(
        "an activity blocking the event loop is caught, and the health line names the spot",
        f"{took:.1f} s to unhealthy",
    )


def fault_workers(
    temporal: TemporalServer, run_container: Any, names: list[str], **extra: str
) -> tuple[dict[str, str], dict[str, str]]:
    env = worker_env(temporal.address)
    containers = {
        name: run_container(
            "--network=host",
            *PROBE_2S,
            *FAULT_WORKER_ARGS,
            env={**env, "FAULT_NAME": name, **extra},
            command=FAULT_WORKER_COMMAND,
        )
        for name in names
    }
    for container in containers.values():
        wait_health(container, "healthy", timeout=30)
    return env, containers


async def start_activity(address: str, queue: str, name: str, seconds: float) -> WorkflowHandle[Any, Any]:
    client = await Client.connect(address)
    return await client.start_workflow(
        "RunActivity", args=[name, seconds], id=f"run-{uuid.uuid4().hex[:8]}", task_queue=queue
    )


def running_on(containers: dict[str, str]) -> str:
    def probe() -> str | bool:
        return next((n for n, c in containers.items() if "sleep_then_return started" in container_logs(c)), False)

    return str(wait_for("the activity to start on a worker", probe, timeout=30))


def stop_the_busy_worker(
    address: str, queue: str, containers: dict[str, str], seconds: float, result_timeout: float
) -> tuple[str, str, float]:
    """Start a sleep_then_return activity, `docker stop` the worker running it (exit 0 expected),
    and wait for the workflow. Returns that worker's name, the one that finished, and the stop time."""

    async def scenario() -> tuple[str, str, float]:
        handle = await start_activity(address, queue, "sleep_then_return", seconds)
        busy = await asyncio.to_thread(running_on, containers)
        start = time.monotonic()
        await asyncio.to_thread(docker, "stop", "--time=20", containers[busy])
        stopped = time.monotonic() - start
        assert inspect(containers[busy])["State"]["ExitCode"] == 0
        finished_by = await asyncio.wait_for(handle.result(), result_timeout)
        return busy, finished_by, stopped

    return asyncio.run(scenario())


def test_sigterm_during_an_activity_lets_it_finish(
    temporal: TemporalServer, run_container: Any, figure: Figure
) -> None:
    env, containers = fault_workers(temporal, run_container, ["a", "b"])
    busy, finished_by, stopped = stop_the_busy_worker(
        temporal.address, env["TEMPORAL_TASK_QUEUE"], containers, 5, result_timeout=60
    )
    assert finished_by == busy  # finished by the worker that was stopping: drained, not retried
    assert stopped < 8 + 2  # within the drain timeout (8 s) plus the engine's overhead
    figure(
        "SIGTERM mid-activity: the activity finishes within the drain timeout, exit 0, workflow completes",
        f"stop took {stopped:.1f} s (5 s activity)",
    )


def test_sigterm_with_an_activity_longer_than_the_drain_retries_it_elsewhere(
    temporal: TemporalServer, run_container: Any, figure: Figure
) -> None:
    env, containers = fault_workers(temporal, run_container, ["a", "b"], STIGMER_DRAIN_TIMEOUT="2")
    busy, finished_by, stopped = stop_the_busy_worker(
        temporal.address, env["TEMPORAL_TASK_QUEUE"], containers, 12, result_timeout=90
    )
    assert finished_by != busy  # cut off at the drain timeout, retried by the other worker
    assert stopped < 2 + 3
    figure(
        "SIGTERM with an activity longer than the drain: it is retried on another worker, nothing lost",
        f"stop took {stopped:.1f} s (drain 2 s)",
    )


def test_three_replicas_one_killed_only_it_is_lost_and_all_workflows_complete(
    temporal: TemporalServer, run_container: Any, figure: Figure
) -> None:
    env, containers = fault_workers(temporal, run_container, ["r1", "r2", "r3"])

    async def scenario() -> tuple[int, float]:
        start = time.monotonic()
        first = [
            await start_activity(temporal.address, env["TEMPORAL_TASK_QUEUE"], "sleep_then_return", 2)
            for _ in range(15)
        ]
        await asyncio.to_thread(docker, "kill", containers["r2"])
        second = [
            await start_activity(temporal.address, env["TEMPORAL_TASK_QUEUE"], "sleep_then_return", 2)
            for _ in range(15)
        ]
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in first + second)), 120)
        assert all(r in {"r1", "r2", "r3"} for r in results)
        return len(results), time.monotonic() - start

    completed, took = asyncio.run(scenario())
    assert completed == 30
    assert inspect(containers["r2"])["State"]["Status"] == "exited"
    for name in ("r1", "r3"):
        assert health_status(containers[name]) == "healthy", name
    figure(
        "3 replicas, one killed mid-load: the others stay healthy, all 30 workflows complete",
        f"30/30 completed in {took:.0f} s",
    )


PROBE_MANY = """
import os, subprocess, sys, time
walls, codes = [], []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    child = subprocess.run(["python", "/app/healthcheck.py", *sys.argv[2:]], capture_output=True, text=True)
    walls.append(time.perf_counter() - start)
    codes.append(child.returncode)
print(" ".join(map(str, codes)))
print(" ".join(f"{w:.4f}" for w in walls))
"""


def run_probes(container: str, count: int, *flags: str) -> tuple[list[int], list[float]]:
    out = docker("exec", container, "python", "-c", PROBE_MANY, str(count), *flags, timeout=3600).stdout.splitlines()
    return [int(c) for c in out[0].split()], [float(w) for w in out[1].split()]


@pytest.mark.slow
def test_health_check_1000_runs_no_crash_no_false_result(
    own_temporal: TemporalServer, run_container: Any, figure: Figure
) -> None:
    runs = int(os.environ.get("HEALTH_RUNS", "1000"))
    container = run_container("--network=host", *PROBE_2S, env=worker_env(own_temporal.address))
    wait_health(container, "healthy", timeout=30)
    codes, walls = run_probes(container, runs)
    assert codes == [0] * runs, f"{len([c for c in codes if c])} non-zero of {runs}: {sorted(set(codes))}"
    own_temporal.stop()
    down_codes, _ = run_probes(container, 100, "--readiness")
    assert down_codes == [1] * 100, f"exit codes while Temporal is down: {sorted(set(down_codes))}"  # 1, never a crash
    figure(
        f"{runs} health checks in a row: no crash, no false result; 100 readiness probes, Temporal down: not ready",
        f"0 of {runs} wrong, median {statistics.median(walls) * 1000:.0f} ms",
    )


BAD_CONFIGS = [
    ("TEMPORAL_ADDRESS", "no-port"),
    ("TEMPORAL_ADDRESS", "host:70000"),
    ("TEMPORAL_NAMESPACE", ""),
    ("TEMPORAL_TLS", "maybe"),
    ("TEMPORAL_TLS_CLIENT_CERT_PATH", "/nonexistent.pem"),
    ("TEMPORAL_API_KEY_FILE", "/run/secrets/missing"),
    ("TEMPORAL_TASK_QUEUE", ""),
    ("STIGMER_MAX_CONCURRENT_ACTIVITIES", "0"),
    ("STIGMER_DRAIN_TIMEOUT", "soon"),
    ("STIGMER_LOG_LEVEL", "LOUD"),
    ("STIGMER_LOG_FORMAT", "xml"),
    ("STIGMER_WORKSPACE_ROOT", "/nonexistent"),
    ("STIGMER_HEALTH_FILE", "relative.json"),
]


def test_bad_configurations_exit_2_with_one_line_each(figure: Figure) -> None:
    from tests.container.conftest import IMAGE

    for variable, value in BAD_CONFIGS:
        result = subprocess.run(
            [os.environ.get("DOCKER", "docker"), "run", "--rm", f"--env={variable}={value}", IMAGE],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (variable, value, result.returncode, result.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"agent-runner: configuration error: {variable}:"), lines
        assert "Traceback" not in result.stderr and result.stdout == ""
    figure(
        "bad configuration: exit 2 and one line naming the variable, no traceback",
        f"{len(BAD_CONFIGS)} of {len(BAD_CONFIGS)} cases",
    )
