from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from agent_runner.activities import resolve_run_dir


def test_run_dir_is_inside_root(tmp_path: Path) -> None:
    assert resolve_run_dir(tmp_path, "team/run-1") == (tmp_path / "team" / "run-1").resolve()


@pytest.mark.parametrize("name", ["", "/etc", "../outside", "a/../../outside"])
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
