"""The workspace tools, on a real directory and real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent_runner.tools import OUTPUT_LIMIT, READ_LIMIT, ToolError, Workspace, command_env, compare_snapshots
from tests.processes import alive


@pytest.fixture
def root(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (tmp_path / "outside.txt").write_text("secret next door")
    return run_dir


def make(root: Path, timeout: float = 30, env: dict[str, str] | None = None) -> Workspace:
    return Workspace(root, command_timeout=timeout, env=env if env is not None else {"PATH": os.environ["PATH"]})


def call(workspace: Workspace, name: str, **arguments: object) -> str:
    return asyncio.run(workspace.call(name, dict(arguments)))


@pytest.mark.parametrize("path", ["../outside.txt", "sub/../../outside.txt", "..", "a/.."])
def test_dot_dot_is_refused(root: Path, path: str) -> None:
    with pytest.raises(ToolError, match=r"refused: .* contains '\.\.'"):
        call(make(root), "read_file", path=path)


def test_absolute_path_is_refused(root: Path) -> None:
    with pytest.raises(ToolError, match="absolute path"):
        call(make(root), "write_file", path=str(root / "x.txt"), content="x")
    assert not (root / "x.txt").exists()


def test_symlink_leaving_the_workspace_is_refused_for_read_and_write(root: Path) -> None:
    (root / "link").symlink_to(root.parent)
    (root / "file-link").symlink_to(root.parent / "outside.txt")
    workspace = make(root)
    with pytest.raises(ToolError, match="outside the workspace through a symlink"):
        call(workspace, "read_file", path="link/outside.txt")
    with pytest.raises(ToolError, match="outside the workspace through a symlink"):
        call(workspace, "write_file", path="file-link", content="overwritten")
    assert (root.parent / "outside.txt").read_text() == "secret next door"


def test_symlink_inside_the_workspace_is_allowed(root: Path) -> None:
    (root / "real.txt").write_text("inside")
    (root / "alias.txt").symlink_to("real.txt")
    assert call(make(root), "read_file", path="alias.txt") == "inside"


def test_write_edit_read_and_list(root: Path) -> None:
    workspace = make(root)
    assert call(workspace, "write_file", path="src/app.py", content="print('a')\n") == "wrote 11 bytes to src/app.py"
    assert call(workspace, "edit_file", path="src/app.py", old_text="'a'", new_text="'b'") == "edited src/app.py"
    assert (root / "src/app.py").read_text() == "print('b')\n"
    assert call(workspace, "read_file", path="src/app.py") == "print('b')\n"
    assert call(workspace, "list_files").splitlines() == ["src/", "src/app.py"]


def test_edit_needs_exactly_one_occurrence(root: Path) -> None:
    (root / "a.txt").write_text("x x")
    with pytest.raises(ToolError, match="occurs 2 times"):
        call(make(root), "edit_file", path="a.txt", old_text="x", new_text="y")
    assert (root / "a.txt").read_text() == "x x"


def test_read_is_capped(root: Path) -> None:
    (root / "big.txt").write_text("a" * (READ_LIMIT + 10))
    text = call(make(root), "read_file", path="big.txt")
    assert text.startswith("a" * READ_LIMIT)
    assert text.endswith(f"[truncated: showing the first {READ_LIMIT} of {READ_LIMIT + 10} bytes]")


def test_unknown_tool_is_an_answer_for_the_model(root: Path) -> None:
    with pytest.raises(ToolError, match="unknown tool 'rm_rf'"):
        call(make(root), "rm_rf")


def test_command_runs_in_the_workspace_and_reports_its_exit_code(root: Path) -> None:
    out = call(make(root), "run_command", command="pwd; echo made > made.txt; exit 3")
    assert out == f"exit code 3\n{root.resolve()}"
    assert (root / "made.txt").read_text() == "made\n"


def test_command_timeout_kills_the_command_and_its_children(root: Path) -> None:
    started = time.monotonic()
    out = call(
        make(root, timeout=1), "run_command", command="echo $$ > shell.pid; sleep 30 & echo $! > child.pid; wait"
    )
    elapsed = time.monotonic() - started
    assert out.startswith("timed out after 1s and was killed")
    assert elapsed < 10, f"took {elapsed:.1f}s"
    child = int((root / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the command's child survived the timeout"


def test_command_may_ask_for_a_shorter_timeout_but_not_a_longer_one(root: Path) -> None:
    assert call(make(root, timeout=1), "run_command", command="sleep 5", timeout_seconds=0.2).startswith(
        "timed out after 0.2s"
    )
    assert call(make(root, timeout=0.3), "run_command", command="sleep 5", timeout_seconds=100).startswith(
        "timed out after 0.3s"
    )


def test_command_output_is_capped_keeping_head_and_tail(root: Path) -> None:
    out = call(make(root), "run_command", command="echo FIRST; head -c 200000 /dev/zero | tr '\\0' x; echo; echo LAST")
    assert len(out) < OUTPUT_LIMIT + 200
    assert "FIRST" in out and out.endswith("LAST")
    assert "bytes of output left out" in out


def test_a_command_environment_is_an_allow_list(root: Path) -> None:
    worker_env = {
        "PYTHONPATH": "/app",
        "VIRTUAL_ENV": "/opt/venv",
        "LANG": "de_DE.UTF-8",
        "no_proxy": "localhost",
        "PATH": os.environ["PATH"],
        "HOME": "/home/stigmer",
        "OPENAI_API_KEY": "sk-openai-value",
        "ANTHROPIC_API_KEY": "anthropic-value",
        "STIGMER_LLM_API_KEY": "stigmer-value",
        "STIGMER_LLM_BASE_URL": "http://llm.internal/v1",
        "TEMPORAL_API_KEY": "temporal-value",
        "TEMPORAL_ADDRESS": "temporal.internal:7233",
        "GITHUB_TOKEN": "ghp-value",
        "DB_PASSWORD": "db-value",
        "AWS_SECRET_ACCESS_KEY": "aws-value",
        "https_proxy": "http://user:proxy-value@proxy:3128",
        "INNOCENT_NAME": "stigmer-value-copied",  # holds the LLM key under an unremarkable name
    }
    # Both layers: the worker's secret-free environment (command_env), then the allow-list.
    for env in (worker_env, command_env(worker_env, secrets=["stigmer-value"])):
        out = call(make(root, env=env), "run_command", command="env").removeprefix("exit code 0\n")
        seen = dict(line.split("=", 1) for line in out.splitlines())
        assert sorted(seen) == ["HOME", "LANG", "PATH", "PWD", "TMPDIR", "no_proxy"]
        assert seen["HOME"] == seen["PWD"] == str(root.resolve())
        assert seen["PATH"] == "/usr/local/bin:/usr/bin:/bin"
        assert seen["LANG"] == "de_DE.UTF-8"
        assert seen["TMPDIR"].startswith(tempfile.gettempdir() + "/agent-command-")
        assert not Path(seen["TMPDIR"]).exists(), "the private temporary directory outlived its command"


def test_snapshots_tell_created_changed_and_deleted(root: Path) -> None:
    workspace = make(root)
    (root / "keep.txt").write_text("1")
    (root / "change.txt").write_text("1")
    (root / "delete.txt").write_text("1")
    before = workspace.snapshot()
    (root / "change.txt").write_text("22")
    (root / "delete.txt").unlink()
    (root / "new").mkdir()
    (root / "new/file.txt").write_text("1")
    assert compare_snapshots(before, workspace.snapshot()) == (["new/file.txt"], ["change.txt"], ["delete.txt"])


def test_worker_memory_is_hidden_from_commands() -> None:
    """A command runs as the worker's user; it must not read the worker's environment from /proc."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run both processes as another, unprivileged user")
    # Without the protection, as a control: the same user reads the environment.
    assert "sk-in-worker-memory" in _read_environ_of_worker_as_nobody(hide=False)
    assert "sk-in-worker-memory" not in _read_environ_of_worker_as_nobody(hide=True)


def _read_environ_of_worker_as_nobody(*, hide: bool) -> str:
    # Imports first (the venv may be unreadable for nobody), then become nobody and, like a
    # process started as nobody, dumpable (a uid change alone clears it).
    script = (
        "import ctypes, os, time; from agent_runner.tools import PR_SET_DUMPABLE, hide_worker_memory;"
        "os.setgid(65534); os.setuid(65534); ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);"
        f"{'hide_worker_memory();' if hide else ''} print(os.getpid(), flush=True); time.sleep(30)"
    )
    env = {**os.environ, "LEAKY_SECRET_VALUE": "sk-in-worker-memory"}
    with subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
    ) as worker:
        try:
            assert worker.stdout is not None
            pid = int(worker.stdout.readline())
            reader = subprocess.run(
                ["cat", f"/proc/{pid}/environ"], capture_output=True, text=True, user=65534, group=65534, timeout=10
            )
            return reader.stdout + reader.stderr
        finally:
            worker.kill()
