"""The sandbox on this machine's kernel: Landlock through ctypes, the launcher's clean-up, limits."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_runner import landlock
from agent_runner.sandbox import SandboxSettings, command_env, exposed_secret_files, launcher_argv
from agent_runner.tools import Workspace
from tests.helpers import ROOT, wait_for
from tests.processes import alive


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    (tmp_path / "run").mkdir()
    (tmp_path / "other-run").mkdir()
    (tmp_path / "other-run" / "secret.txt").write_text("next door")
    return tmp_path / "run"


def run(run_dir: Path, command: str, timeout: float = 30, **settings: object) -> str:
    workspace = Workspace(run_dir, command_timeout=timeout, env={}, sandbox=SandboxSettings(**settings))  # type: ignore[arg-type]
    return asyncio.run(workspace.call("run_command", {"command": command}))


def test_the_kernel_has_landlock_with_scoping() -> None:
    # Measured on the machines this project runs on (ABI 7); the container suite needs ABI 6.
    assert landlock.abi_version() >= 6


@pytest.mark.parametrize(
    ("abi", "network", "missing"),
    [
        (0, False, 5),  # network not asked for: not missing
        (3, False, 2),
        (3, True, 3),  # network wanted off: ABI 4 is missing too
        (5, False, 1),
        (6, True, 0),
    ],
)
def test_missing_protections_per_abi(abi: int, network: bool, missing: int) -> None:
    names = landlock.missing_protections(abi, network=network)
    assert len(names) == missing, names
    assert all("Landlock ABI" in name for name in names)


def test_a_landlocked_process_reads_only_what_the_ruleset_grants(tmp_path: Path) -> None:
    allowed, denied = tmp_path / "allowed", tmp_path / "denied"
    allowed.mkdir()
    denied.mkdir()
    (denied / "f").write_text("x")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); from agent_runner import landlock;"
        "landlock.Ruleset(read_write=[sys.argv[2]], read_only=['/usr', '/lib', '/lib64', '/etc'],"
        " extra={'/dev/null': landlock.WRITE_FILE}).restrict_self();"
        "open(sys.argv[2] + '/new', 'w').write('ok'); open('/dev/null', 'w').write('ok');"
        "open(sys.argv[3] + '/f')"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(ROOT), str(allowed), str(denied)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("PermissionError: [Errno 13]"), result.stderr
    assert (allowed / "new").read_text() == "ok"


def test_a_command_reaches_only_its_run_directory_and_private_temp(run_dir: Path) -> None:
    out = run(
        run_dir,
        "echo mine > mine.txt && echo tmp > $TMPDIR/t && cat $TMPDIR/t && ls /usr/bin/env >/dev/null && echo ok;"
        "cat ../other-run/secret.txt; echo x > ../other-run/new.txt; ls /tmp >/dev/null; cat /proc/1/environ",
    )
    assert out.splitlines()[:3] == ["exit code 1", "tmp", "ok"], out
    assert out.count("Permission denied") == 4, out
    assert (run_dir / "mine.txt").read_text() == "mine\n"
    assert not (run_dir.parent / "other-run" / "new.txt").exists()


def test_a_command_cannot_signal_the_worker_or_the_launcher(run_dir: Path) -> None:
    out = run(run_dir, f"kill -TERM {os.getpid()}; echo $?; kill -KILL $PPID; echo $?")
    lines = [line for line in out.splitlines()[1:] if line]
    assert lines == ["/bin/sh: 1: kill: Operation not permitted", "1"] * 2, out


def test_network_off_denies_tcp_connect_and_bind(run_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = (
            "import socket, sys;\nport = int(sys.argv[1])\n"
            "try: socket.create_connection(('127.0.0.1', port), 5); print('connected')\n"
            "except OSError as e: print('connect', e.errno)\n"
            "try: socket.create_server(('127.0.0.1', 0)); print('bound')\nexcept OSError as e: print('bind', e.errno)"
        )
        command = f"python3 -c {shlex.quote(probe)} {port}"
        assert run(run_dir, command, network=False).splitlines()[1:] == ["connect 13", "bind 13"]
        assert run(run_dir, command, network=True).splitlines()[1:] == ["connected", "bound"]


def test_limits_are_set_for_the_command(run_dir: Path) -> None:
    # RLIMIT_NPROC counts every process and thread of the user: above what this user already
    # runs (a test run as a non-root user has pytest workers and servers), or the shell cannot fork.
    processes = threads_of_this_user() + 500
    out = run(
        run_dir,
        'python3 -c \'import resource as r; print(*(r.getrlimit(getattr(r, f"RLIMIT_{n}")) for n in '
        '("CPU", "FSIZE", "NOFILE", "NPROC", "CORE")))\'',
        timeout=30,
        max_file_size=2 * 1024 * 1024,
        max_open_files=64,
        max_processes=processes,
    )
    # CPU seconds (timeout + 1), file size, open files, processes, core size: soft = hard.
    expected = f"(31, 31) (2097152, 2097152) (64, 64) ({processes}, {processes}) (0, 0)"
    assert out.splitlines()[1] == expected, out


def threads_of_this_user() -> int:
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:  # the process ended
            continue
        if int(fields["Uid"].split()[1]) == os.geteuid():
            count += int(fields["Threads"])
    return count


def test_a_file_larger_than_the_bound_cannot_be_written(run_dir: Path) -> None:
    out = run(run_dir, "head -c 3000000 /dev/zero > big; echo $?", max_file_size=1024 * 1024)
    assert out.splitlines()[-1] != "0", out
    assert (run_dir / "big").stat().st_size == 1024 * 1024


def test_daemons_double_forks_and_setsid_die_with_the_command(run_dir: Path) -> None:
    daemon = (
        "import os, time; os.fork() and os._exit(0); os.setsid(); os.fork() and os._exit(0);"
        "open('daemon.pid', 'w').write(str(os.getpid())); time.sleep(300)"
    )
    command = (
        f"python3 -c {shlex.quote(daemon)}; "
        "setsid sh -c 'sleep 301 & echo $! > setsid.pid' >/dev/null 2>&1 & "
        "nohup sleep 302 >/dev/null 2>&1 & echo $! > nohup.pid; sleep 0.5"
    )
    assert run(run_dir, command).startswith("exit code 0")
    for name in ("daemon.pid", "setsid.pid", "nohup.pid"):
        pid = int((run_dir / name).read_text())
        assert not alive(pid), f"{name}: process {pid} outlived its command"


def test_stopping_the_launcher_kills_everything_under_it_and_reports_the_signal(run_dir: Path, tmp_path: Path) -> None:
    env = command_env({}, home=run_dir, tmp=tmp_path)
    argv = launcher_argv(SandboxSettings(), run_dir, tmp_path, "setsid sleep 303 & echo $!; wait", 60, env)
    launcher = subprocess.Popen(argv, cwd=run_dir, env=env, stdout=subprocess.PIPE, text=True)
    assert launcher.stdout is not None
    sleeper = int(launcher.stdout.readline())
    assert alive(sleeper)
    started = time.monotonic()
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=10) == 128 + signal.SIGKILL  # the shell was killed
    assert time.monotonic() - started < 5
    wait_for("the setsid sleep to be gone", lambda: not alive(sleeper), timeout=5)


def test_environment_is_built_from_an_allow_list(tmp_path: Path) -> None:
    env = command_env(
        {"OPENAI_API_KEY": "sk", "PYTHONPATH": "/app", "TZ": "UTC", "https_proxy": "http://u:p@proxy:3128"},
        home=tmp_path,
        tmp=tmp_path / "t",
    )
    assert env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path / "t"),
                   "LANG": "C.UTF-8", "TZ": "UTC"}  # fmt: skip


def test_secret_files_under_a_readable_path_are_reported() -> None:
    env = {"STIGMER_LLM_API_KEY_FILE": "/etc/llm-key", "TEMPORAL_API_KEY_FILE": "/run/secrets/key"}
    assert exposed_secret_files(env) == ["STIGMER_LLM_API_KEY_FILE=/etc/llm-key"]
