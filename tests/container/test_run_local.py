"""`make run-local` and `make stop`, as a developer runs them."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.container.conftest import docker, make, run_local_env
from tests.helpers import free_port, port_open


def test_run_local_starts_a_dev_server_and_reaches_healthy_then_stop_cleans_up(tmp_path: Path) -> None:
    port = free_port()
    name = f"agent-runner-runlocal-{uuid.uuid4().hex[:8]}"
    env = run_local_env(tmp_path, name, port)
    try:
        started = make("run-local", env)
        assert started.returncode == 0, started.stdout + started.stderr
        assert "starting a Temporal dev server" in started.stdout
        assert "healthy after" in started.stdout
        assert f"Temporal Web UI: http://localhost:{env['TEMPORAL_UI_PORT']}" in started.stdout
        assert port_open(int(env["TEMPORAL_UI_PORT"]))
        assert docker("container", "inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
        assert port_open(port)
    finally:
        stopped = make("stop", env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert docker("container", "inspect", name, check=False).returncode != 0
    assert not port_open(port)
    assert not port_open(int(env["TEMPORAL_UI_PORT"]))
