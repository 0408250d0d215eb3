"""The image running against a real Temporal dev server: health, workspace, stop, secrets."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from tests.container.conftest import FAST_HEALTH, docker, health_status, inspect, run_agent, wait_health, worker_env
from tests.helpers import TemporalServer


def test_turns_healthy_against_the_dev_server(temporal: TemporalServer, run_container: Any) -> None:
    container = run_container("--network=host", *FAST_HEALTH, env=worker_env(temporal.address))
    wait_health(container, "healthy", timeout=30)
    last = inspect(container)["State"]["Health"]["Log"][-1]
    assert last["ExitCode"] == 0
    assert last["Output"].startswith("healthy: agent-runner/")


def test_runs_an_agent_writing_into_a_mounted_workspace(
    temporal: TemporalServer, run_container: Any, agent_llm: Any, tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    os.chown(workspace, 1000, 1000)  # the documented way: the host directory belongs to UID 1000
    env = {**worker_env(temporal.address), **agent_llm("hello from the test")}
    container = run_container("--network=host", *FAST_HEALTH, f"--volume={workspace}:/workspace", env=env)
    wait_health(container, "healthy", timeout=30)

    result = run_agent(temporal.address, env["TEMPORAL_TASK_QUEUE"], "run-1", "hello from the test")
    assert result.status == "completed", result.error
    assert result.files_created == ["note.md"]
    written = workspace / "run-1" / "note.md"
    assert written.read_text() == "hello from the test"
    assert (written.stat().st_uid, written.stat().st_gid) == (1000, 1000)


def test_goes_unhealthy_when_temporal_stops(own_temporal: TemporalServer, run_container: Any) -> None:
    container = run_container("--network=host", *FAST_HEALTH, env=worker_env(own_temporal.address))
    wait_health(container, "healthy", timeout=30)
    own_temporal.stop()
    wait_health(container, "unhealthy", timeout=30)
    output = inspect(container)["State"]["Health"]["Log"][-1]["Output"]
    assert "cannot query Temporal" in output
    assert inspect(container)["State"]["Status"] == "running"  # no crash loop: it waits for Temporal


def test_docker_stop_is_quick_and_exits_0(temporal: TemporalServer, run_container: Any) -> None:
    container = run_container("--network=host", *FAST_HEALTH, env=worker_env(temporal.address))
    wait_health(container, "healthy", timeout=30)
    start = time.monotonic()
    docker("stop", container)
    elapsed = time.monotonic() - start
    state = inspect(container)["State"]
    assert state["ExitCode"] == 0
    assert elapsed < 5, f"docker stop took {elapsed:.1f}s; SIGTERM is not reaching the worker"
    assert "stopped" in docker("logs", container).stdout


def test_secrets_stay_out_of_logs_and_health_log(temporal: TemporalServer, run_container: Any) -> None:
    sentinel = f"sentinel-{uuid.uuid4().hex}"
    # TEMPORAL_TLS=false keeps the connection plain, so the key is sent and the worker gets healthy.
    env = {**worker_env(temporal.address), "TEMPORAL_API_KEY": sentinel, "TEMPORAL_TLS": "false"}
    container = run_container("--network=host", *FAST_HEALTH, "--env=STIGMER_LOG_LEVEL=DEBUG", env=env)
    wait_health(container, "healthy", timeout=30)
    docker("stop", container)
    logs = docker("logs", container)
    health_log = str(inspect(container)["State"]["Health"])
    assert sentinel not in logs.stdout + logs.stderr
    assert sentinel not in health_log


def test_bad_configuration_exits_2_with_one_line(run_container: Any) -> None:
    container = run_container(env={"TEMPORAL_ADDRESS": "no-port-here"})
    deadline = time.monotonic() + 30
    while inspect(container)["State"]["Status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    state = inspect(container)["State"]
    assert state["ExitCode"] == 2, health_status(container)
    logs = docker("logs", container)
    assert logs.stdout == ""
    assert logs.stderr.strip().splitlines() == [
        "agent-runner: configuration error: TEMPORAL_ADDRESS: expected host:port (e.g. localhost:7233), "
        "got 'no-port-here'"
    ]
