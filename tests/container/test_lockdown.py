"""The image under the restrictions operators put on it: read-only, no capabilities,
an arbitrary UID (OpenShift), and a workspace it cannot write."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.container.conftest import DOCKER, FAST_HEALTH, IMAGE, run_agent, wait_health, worker_env
from tests.helpers import TemporalServer

LOCKED_DOWN = ("--read-only", "--tmpfs=/tmp", "--cap-drop=ALL", "--security-opt=no-new-privileges")


def test_read_only_no_capabilities_no_new_privileges(
    temporal: TemporalServer,
    run_container: Any,
    agent_llm: Any,
    workspace_of_1000: Path,
    figure: Callable[[str, str], None],
) -> None:
    workspace = workspace_of_1000
    env = {**worker_env(temporal.address), **agent_llm("run locked down")}
    container = run_container("--network=host", *FAST_HEALTH, *LOCKED_DOWN, f"--volume={workspace}:/workspace", env=env)
    wait_health(container, "healthy", timeout=30)
    result = run_agent(temporal.address, env["TEMPORAL_TASK_QUEUE"], "locked", "run locked down")
    assert result.status == "completed", result.error
    assert (workspace / "locked" / "note.md").read_text() == "run locked down"
    figure(
        "healthy and runs a workflow with --read-only, tmpfs /tmp, --cap-drop ALL, no-new-privileges",
        "healthy, 1/1 run",
    )


def test_arbitrary_uid_in_group_0_as_on_openshift(
    temporal: TemporalServer, run_container: Any, agent_llm: Any, figure: Callable[[str, str], None]
) -> None:
    env = {**worker_env(temporal.address), **agent_llm("run as 12345")}
    # The image's own /workspace volume (1000:0, mode 775), as a fresh pod would have it.
    container = run_container("--network=host", *FAST_HEALTH, *LOCKED_DOWN, "--user=12345:0", env=env)
    wait_health(container, "healthy", timeout=30)
    result = run_agent(temporal.address, env["TEMPORAL_TASK_QUEUE"], "openshift", "run as 12345")
    assert result.status == "completed", result.error
    listing = subprocess.run(
        [
            DOCKER,
            "exec",
            container,
            "stat",
            "-c",
            "%u %g %A %n",
            "/workspace/openshift",
            "/workspace/openshift/note.md",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    for line in listing:
        uid, gid, mode, name = line.split()
        assert (uid, gid) == ("12345", "0"), line
        assert mode[5] == "w", f"{name} is not group-writable: {mode}"  # rwxrwxr-x / rw-rw-r--
    figure("runs as an arbitrary UID in group 0; everything it writes is group-writable", ", ".join(listing))


def test_workspace_not_writable_fails_at_start_with_what_to_do(
    tmp_path: Path, figure: Callable[[str, str], None]
) -> None:
    workspace = tmp_path / "read-only"
    workspace.mkdir()
    # 555: no one may write, whoever owns it (the test's user may be UID 1000 itself).
    workspace.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    result = subprocess.run(
        [DOCKER, "run", "--rm", f"--volume={workspace}:/workspace", IMAGE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("agent-runner: configuration error: STIGMER_WORKSPACE_ROOT: /workspace is not writable")
    assert "docs/docker.md" in lines[0]
    figure(
        "a workspace UID 1000 cannot write stops the worker at start with one line saying what to do",
        lines[0][35:110] + "...",
    )
