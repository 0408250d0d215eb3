"""The image running against a real Temporal dev server: health, workspace, stop, secrets."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from tests.container.conftest import FAST_HEALTH, docker, health_status, inspect, run_agent, wait_health, worker_env
from tests.helpers import Seen, TemporalServer, wait_for


def test_turns_healthy_against_the_dev_server(temporal: TemporalServer, run_container: Any) -> None:
    container = run_container("--network=host", *FAST_HEALTH, env=worker_env(temporal.address))
    # Docker's status is liveness, so a worker still connecting is already healthy; then its
    # line says it polls, with every slot free.
    wait_health(container, "healthy", timeout=30)
    polling = "healthy: alive, polling: workflow slots 0/100, model slots 0/500, tool slots 0/10 in use; "

    def polling_line() -> str | Seen:
        last = inspect(container)["State"]["Health"]["Log"][-1]
        line: str = last["Output"]
        return line if last["ExitCode"] == 0 and line.startswith(polling) else Seen(line)

    line = wait_for("Docker's check to say the worker polls", polling_line, timeout=30, interval=0.5)
    assert "ready: Temporal" in line and "agent-runner/" in line  # this worker's identity


def test_runs_an_agent_writing_into_a_mounted_workspace(
    temporal: TemporalServer, run_container: Any, agent_llm: Any, workspace_of_1000: Path
) -> None:
    workspace = workspace_of_1000  # the documented way: the host directory belongs to UID 1000
    env = {**worker_env(temporal.address), **agent_llm("hello from the test")}
    container = run_container("--network=host", *FAST_HEALTH, f"--volume={workspace}:/workspace", env=env)
    wait_health(container, "healthy", timeout=30)

    result = run_agent(temporal.address, env["TEMPORAL_TASK_QUEUE"], "run-1", "hello from the test")
    assert result.status == "completed", result.error
    assert result.files_created == ["note.md"]
    written = workspace / "run-1" / "note.md"
    assert written.read_text() == "hello from the test"
    assert (written.stat().st_uid, written.stat().st_gid) == (1000, 1000)


def test_stays_healthy_but_says_not_ready_when_temporal_stops(own_temporal: TemporalServer, run_container: Any) -> None:
    container = run_container("--network=host", *FAST_HEALTH, env=worker_env(own_temporal.address))
    wait_health(container, "healthy", timeout=30)
    own_temporal.stop()

    def says_unreachable() -> bool:
        log = inspect(container)["State"]["Health"]["Log"]
        return "not ready: Temporal unreachable at" in log[-1]["Output"]

    wait_for("the health line to say Temporal is unreachable", says_unreachable, timeout=30)
    assert health_status(container) == "healthy"  # an outage is not death: no restart by Swarm or autoheal
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


def test_secrets_from_mounted_files_stay_out_of_inspect_logs_health_and_results(
    temporal: TemporalServer, run_container: Any, agent_llm: Any, tmp_path: Path, figure: Any
) -> None:
    temporal_key, llm_key = (f"sentinel-{kind}-{uuid.uuid4().hex}" for kind in ("temporal", "llm"))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "temporal_api_key").write_text(temporal_key)
    (secrets / "llm_api_key").write_text(llm_key)
    secrets.chmod(0o755)
    for item in secrets.iterdir():
        item.chmod(0o644)
    env = {**worker_env(temporal.address), **agent_llm("secret-free note")}
    del env["STIGMER_LLM_API_KEY"]
    env |= {
        "TEMPORAL_API_KEY_FILE": "/run/secrets/temporal_api_key",
        "TEMPORAL_TLS": "false",  # plain, so the dev server accepts the key and the worker gets healthy
        "STIGMER_LLM_API_KEY_FILE": "/run/secrets/llm_api_key",
        "STIGMER_LOG_LEVEL": "DEBUG",
    }
    container = run_container("--network=host", *FAST_HEALTH, f"--volume={secrets}:/run/secrets:ro", env=env)
    wait_health(container, "healthy", timeout=30)
    result = run_agent(temporal.address, env["TEMPORAL_TASK_QUEUE"], "secrets", "write a note")
    assert result.status == "completed", result.error
    server = agent_llm.servers[-1]
    assert server.requests[0].headers["authorization"] == f"Bearer {llm_key}"  # the key was really used
    docker("stop", container)
    places = {
        "docker inspect": docker("inspect", container).stdout,
        "container logs": docker("logs", container).stdout + docker("logs", container).stderr,
        "run result": repr(result),
    }
    for place, text in places.items():
        for sentinel in (temporal_key, llm_key):
            assert sentinel not in text, f"a key leaked into {place}"
    figure(
        "API keys given as mounted files reach no docker inspect, health log, log line or result",
        f"2 sentinel keys, 0 found in {len(places)} places",
    )


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
