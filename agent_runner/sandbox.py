"""How an agent's command runs: confined by the kernel, with an allow-listed environment and
resource limits, and nothing of it left behind when it ends.

The worker never forks itself into a command (it has threads). It starts a small launcher,
`python -I -S -c ... agent_runner.sandbox`, single-threaded and standard library only, which:

1. becomes a child subreaper: every orphan of the command, daemonized or `setsid` ones
   included, is re-parented to the launcher instead of escaping to PID 1;
2. forks the command's shell, which sets its resource limits, confines itself with Landlock
   and executes `/bin/sh -c COMMAND` with the environment the worker gave the launcher;
3. when the shell exits, or the worker sends SIGTERM (time-out, cancellation) or dies, kills
   every process still under it and reaps them all, then exits with the shell's code.

The launcher stays outside the command's Landlock domain, so with signal scoping (ABI 6) the
command cannot kill it to escape the clean-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent_runner import landlock

MODES = ("required", "best-effort", "off")
NETWORK_MODES = ("on", "off")
MIB = 1024 * 1024

# Read-only for commands: the system's programs, libraries and configuration, and the kernel's
# views (/dev, /proc, /sys). Not listed, so neither readable nor writable: /app, /opt (the
# worker's virtual environment), /home, /root, /run (secrets), /var, /srv, /mnt, /tmp and
# /workspace except the command's own run directory and its private temporary directory.
READ_ONLY_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/dev", "/proc", "/sys")
WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full")
# PATH for commands: system tools only (not the worker's virtual environment).
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# The only variables taken from the worker's environment (proxies only without a password).
PASSED_THROUGH = ("LANG", "LC_ALL", "TZ", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                  "NO_PROXY")  # fmt: skip
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
SECRET_PATH_VARS = ("TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_CONFIG_FILE")  # besides every *_FILE

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
KILL_WAIT = 10.0  # seconds the launcher spends at most killing and reaping what a command left


@dataclass(frozen=True)
class SandboxSettings:
    """STIGMER_SANDBOX, STIGMER_COMMAND_NETWORK and the STIGMER_COMMAND_MAX_* bounds."""

    mode: str = "best-effort"  # one of MODES
    network: bool = True  # False: no TCP bind or connect (Landlock ABI 4)
    max_file_size: int = 1024 * MIB  # RLIMIT_FSIZE, bytes: the largest file a command may write
    max_open_files: int = 1024  # RLIMIT_NOFILE, per process
    max_processes: int = 512  # RLIMIT_NPROC: processes and threads of the UID (see docs/docker.md)


@dataclass(frozen=True)
class Support:
    """What this kernel can enforce for these settings."""

    abi: int
    missing: tuple[str, ...]

    def describe(self) -> str:
        return f"Landlock ABI {self.abi}" if self.abi else "no Landlock"


def probe(settings: SandboxSettings) -> Support:
    if settings.mode == "off":
        return Support(0, ())
    abi = landlock.abi_version()
    return Support(abi, tuple(landlock.missing_protections(abi, network=not settings.network)))


def exposed_secret_files(environ: Mapping[str, str]) -> list[str]:
    """Secret files the worker reads that commands could read too: under a read-only path."""
    names = [name for name in environ if name.endswith("_FILE")] + list(SECRET_PATH_VARS)
    exposed = []
    for name in sorted(set(names)):
        value = environ.get(name, "").strip()
        if value.startswith("/") and any(_beneath(value, top) for top in READ_ONLY_PATHS):
            exposed.append(f"{name}={value}")
    return exposed


def _beneath(path: str, top: str) -> bool:
    resolved = os.path.realpath(path)
    return any(p == top or p.startswith(top + "/") for p in (path, resolved))


def command_env(environ: Mapping[str, str], *, home: Path, tmp: Path) -> dict[str, str]:
    """A command's whole environment: built from an allow-list, never the worker's minus something."""
    env = {"PATH": SYSTEM_PATH, "HOME": str(home), "TMPDIR": str(tmp), "LANG": "C.UTF-8"}
    for name in PASSED_THROUGH:
        value = environ.get(name)
        if value and not URL_WITH_PASSWORD.search(value):
            env[name] = value
    return env


def launcher_argv(
    settings: SandboxSettings, run_dir: Path, tmp: Path, command: str, timeout: float, env: Mapping[str, str]
) -> list[str]:
    """The worker runs this (without a shell, with `env`) to run one command in the sandbox."""
    spec = {
        "settings": asdict(settings),
        "env": dict(env),  # as given: Python's start-up may add LC_CTYPE to the launcher's own
        "read_write": [str(run_dir), str(tmp)],
        "cpu_seconds": math.ceil(timeout),
    }
    package_parent = str(Path(__file__).resolve().parent.parent)
    bootstrap = f"import sys; sys.path.insert(0, {package_parent!r}); from agent_runner.sandbox import main; main()"
    # -I: no PYTHON* variables, no user site; -S: no site-packages. Only the standard library.
    return [sys.executable, "-I", "-S", "-c", bootstrap, json.dumps(spec), command]


# ---- The launcher (runs in its own process, see the module's docstring).

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    args = (ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    if _libc.prctl(option, *args) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}): {os.strerror(ctypes.get_errno())}")


def main() -> None:
    spec, command = json.loads(sys.argv[1]), sys.argv[2]
    parent = os.getppid()
    me = os.getpid()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # the worker died: clean up all the same
    if os.getppid() != parent:
        os._exit(128 + signal.SIGTERM)
    stopping = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)
        _kill_all(_descendants(me))  # the main loop then reaps, and kills what is left

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    child = os.fork()
    if child == 0:
        _exec_confined(spec, command)  # never returns
    status = None
    while status is None:
        try:
            pid, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == child:
            status = wait_status
    kill_and_reap(me)
    code = 128 + signal.SIGTERM if status is None else os.waitstatus_to_exitcode(status)
    sys.stdout.flush()
    os._exit(128 - code if code < 0 else code)  # killed by signal N: 128 + N, as shells report it


def _exec_confined(spec: dict[str, Any], command: str) -> None:
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        settings = SandboxSettings(**spec["settings"])
        set_limits(settings, spec["cpu_seconds"])
        if settings.mode != "off":
            ruleset = landlock.Ruleset(
                read_write=spec["read_write"],
                read_only=list(READ_ONLY_PATHS),
                extra=dict.fromkeys(WRITABLE_DEVICES, landlock.WRITE_FILE),
                deny_tcp=not settings.network,
            )
            try:
                ruleset.restrict_self()
            except OSError:
                if settings.mode == "required":
                    raise
                # best-effort: the worker said at start that this kernel has no Landlock
        os.execve("/bin/sh", ["/bin/sh", "-c", command], spec["env"])  # noqa: S606 - the agent's command, by design
    except BaseException as err:  # whatever it is, the command must not run unconfined
        os.write(2, f"sandbox: cannot start the command: {err}\n".encode())
    os._exit(126)


def set_limits(settings: SandboxSettings, cpu_seconds: int) -> None:
    import resource

    limits = {
        resource.RLIMIT_CPU: cpu_seconds + 1,  # CPU seconds per process: beyond the wall-clock timeout
        resource.RLIMIT_FSIZE: settings.max_file_size,
        resource.RLIMIT_NOFILE: settings.max_open_files,
        resource.RLIMIT_NPROC: settings.max_processes,
        resource.RLIMIT_CORE: 0,  # no core files in the run directory
    }
    for which, value in limits.items():
        _, hard = resource.getrlimit(which)
        bounded = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (bounded, bounded))


def kill_and_reap(me: int) -> None:
    """SIGKILL every descendant until none is left, and reap each (they are all re-parented
    here, the subreaper). A fork bomb is bounded by RLIMIT_NPROC and loses a generation a pass."""
    deadline = time.monotonic() + KILL_WAIT
    while True:
        left = _descendants(me)
        _kill_all(left)
        _reap()
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.002)


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _descendants(root: int) -> list[int]:
    """Every process under root, from /proc (zombies included)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rpartition(b")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found
