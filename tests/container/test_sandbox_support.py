"""What the worker does where the kernel (here: a seccomp profile hiding Landlock) cannot confine commands."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.container.conftest import DOCKER, IMAGE, container_logs, worker_env
from tests.helpers import Seen, TemporalServer, wait_for


def no_landlock(tmp_path: Path) -> str:
    """A seccomp profile under which landlock_create_ruleset fails with ENOSYS, as on an old kernel."""
    profile = tmp_path / "no-landlock.json"
    rule = {"names": ["landlock_create_ruleset"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}))
    return f"--security-opt=seccomp={profile}"


def test_required_refuses_to_start_without_landlock(tmp_path: Path) -> None:
    result = subprocess.run(
        [DOCKER, "run", "--rm", no_landlock(tmp_path), "--env=STIGMER_SANDBOX=required", IMAGE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "agent-runner: configuration error: STIGMER_SANDBOX=required but commands cannot be confined here "
        "(no Landlock): missing filesystem (Landlock ABI 1);"
    ), lines[0]


def test_best_effort_starts_and_says_what_is_missing(
    temporal: TemporalServer, run_container: Any, tmp_path: Path
) -> None:
    container = run_container("--network=host", no_landlock(tmp_path), env=worker_env(temporal.address))

    def logged() -> bool | Seen:
        logs = container_logs(container)
        return "tool commands run confined by no Landlock, without: filesystem (Landlock ABI 1)" in logs or Seen(
            logs[-300:]
        )

    wait_for("the start-up line naming what is missing", logged, timeout=30)
