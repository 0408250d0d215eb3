from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from agent_runner.activities import resolve_run_dir, volume_id, volume_queue


def test_run_dir_is_inside_root(tmp_path: Path) -> None:
    assert resolve_run_dir(tmp_path, "team/run-1") == (tmp_path / "team" / "run-1").resolve()


@pytest.mark.parametrize(
    "name", ["", "/etc", "../outside", "a/../../outside", ".agent-runner", ".agent-runner/snapshots"]
)
def test_names_that_leave_the_root_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ApplicationError) as caught:
        resolve_run_dir(tmp_path, name)
    assert caught.value.non_retryable


def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(ApplicationError, match="outside the workspace root"):
        resolve_run_dir(root, "escape/x")


def test_workers_on_one_volume_share_its_id_and_another_volume_has_its_own(tmp_path: Path) -> None:
    first = volume_id(tmp_path / "a")
    assert volume_id(tmp_path / "a") == first  # a second worker, or the same one restarted
    assert volume_id(tmp_path / "b") != first
    assert volume_queue("agent_execution_runner", first) == f"agent_execution_runner@volume-{first}"
