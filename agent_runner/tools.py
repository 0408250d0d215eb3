"""The agent's tools, confined to one run's directory: list, read, write, edit, run a command.

Paths are relative to the run's directory; `..`, absolute paths and symlinks that lead out are
refused. A refusal or failure is an answer for the model (a ToolError), never the end of the run.
Commands run in the sandbox (agent_runner/sandbox.py): kernel-confined to the run's directory and
a private temporary directory, with an allow-listed environment, resource limits, and nothing
left running when they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from agent_runner import sandbox
from agent_runner.sandbox import SandboxSettings

log = logging.getLogger("agent_runner.tools")

READ_LIMIT = 64 * 1024  # bytes of a file returned by read_file
WRITE_LIMIT = 1024 * 1024  # bytes of content accepted by write_file
OUTPUT_LIMIT = 16 * 1024  # bytes of a command's output returned: the first and the last half
LIST_LIMIT = 500  # entries returned by list_files
CHANGES_LIMIT = 200  # paths reported in each of a run's created / changed / deleted lists

# An environment variable is kept from commands when its name contains one of these...
SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE")
# ...or starts with one of these (the worker's own configuration)...
SECRET_NAME_PREFIXES = ("STIGMER_", "TEMPORAL_")
# ...or its value is a URL with a password in it (e.g. a proxy).
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
PR_SET_DUMPABLE = 4  # from <linux/prctl.h>


class ToolError(Exception):
    """The tool refused or failed; the message goes back to the model."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments


def _schema(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


_PATH = {"type": "string", "description": "a path relative to the workspace"}
TOOL_SPECS = (
    ToolSpec(
        "list_files",
        f"List files and directories under a path of the workspace, recursively (at most {LIST_LIMIT} entries).",
        _schema([], path={"type": "string", "description": "a directory relative to the workspace; default '.'"}),
    ),
    ToolSpec(
        "read_file",
        f"Read a text file of the workspace (at most {READ_LIMIT // 1024} KiB are returned).",
        _schema(["path"], path=_PATH),
    ),
    ToolSpec(
        "write_file",
        "Create or overwrite a file of the workspace with the given content; missing directories are created.",
        _schema(["path", "content"], path=_PATH, content={"type": "string"}),
    ),
    ToolSpec(
        "edit_file",
        "Replace one exact occurrence of old_text with new_text in a file of the workspace.",
        _schema(["path", "old_text", "new_text"], path=_PATH, old_text={"type": "string"}, new_text={"type": "string"}),
    ),
    ToolSpec(
        "run_command",
        "Run a shell command (/bin/sh -c) in the workspace directory; returns its exit code and output.",
        _schema(
            ["command"],
            command={"type": "string"},
            timeout_seconds={"type": "number", "description": "stop the command after this many seconds"},
        ),
    ),
)


def command_env(environ: Mapping[str, str], secrets: Iterable[str] = ()) -> dict[str, str]:
    """The worker's environment without anything that looks like a secret. Commands get only the
    few allow-listed variables of it (sandbox.command_env); this is a second line of defence."""
    secret_values = [value for value in secrets if value]
    env = {}
    for name, value in environ.items():
        upper = name.upper()
        if any(part in upper for part in SECRET_NAME_PARTS) or upper.startswith(SECRET_NAME_PREFIXES):
            continue
        if URL_WITH_PASSWORD.search(value) or any(secret in value for secret in secret_values):
            continue
        env[name] = value
    return env


def hide_worker_memory() -> None:
    """Keep commands, which run as the worker's user, from reading the worker's secrets out of
    /proc/<worker pid>/environ or by ptrace: mark the worker not dumpable (Linux; children that
    exec a program are dumpable again, so commands are not affected)."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("cannot hide the worker's memory from tool commands: errno %d", ctypes.get_errno())


class Workspace:
    """One run's directory and the tools that act in it."""

    def __init__(
        self,
        root: Path,
        *,
        command_timeout: float,
        env: Mapping[str, str] | None = None,
        sandbox: SandboxSettings | None = None,
    ) -> None:
        self.root = root.resolve()
        self.command_timeout = command_timeout
        self.env = dict(os.environ if env is None else env)  # where LANG, TZ and proxies come from
        self.sandbox = sandbox or SandboxSettings()
        self._handlers: dict[str, Callable[[dict[str, Any]], str]] = {
            "list_files": self.list_files,
            "read_file": self.read_file,
            "write_file": self.write_file,
            "edit_file": self.edit_file,
        }

    async def call(self, name: str, arguments: dict[str, Any]) -> str:
        """Run one tool; raises ToolError with a message for the model."""
        if name == "run_command":
            return await self.run_command(arguments)
        handler = self._handlers.get(name)
        if handler is None:
            raise ToolError(f"unknown tool {name!r}; the tools are: {', '.join(spec.name for spec in TOOL_SPECS)}")
        try:
            return await asyncio.to_thread(handler, arguments)
        except OSError as err:
            raise ToolError(f"{name} failed: {err.strerror or type(err).__name__}") from None

    def path(self, relative: object) -> Path:
        """The absolute path for a path the model gave, if it stays inside the workspace."""
        if not isinstance(relative, str) or not relative.strip():
            raise ToolError("path: expected a non-empty string relative to the workspace")
        pure = PurePosixPath(relative)
        if pure.is_absolute():
            raise ToolError(f"refused: {relative!r} is an absolute path; use a path relative to the workspace")
        if ".." in pure.parts:
            raise ToolError(f"refused: {relative!r} contains '..'; paths must stay inside the workspace")
        try:
            target = (self.root / pure).resolve()
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop
            raise ToolError(f"refused: {relative!r} cannot be resolved (a symlink loop?)") from None
        if not target.is_relative_to(self.root):
            raise ToolError(f"refused: {relative!r} leads outside the workspace through a symlink")
        return target

    def list_files(self, arguments: dict[str, Any]) -> str:
        top = self.path(arguments.get("path") or ".")
        if not top.is_dir():
            raise ToolError(f"list_files: {arguments.get('path')!r} is not a directory")
        entries: list[str] = []
        total = 0
        for folder, dirs, files in os.walk(top):  # does not follow symlinked directories
            dirs.sort()
            base = Path(folder)
            for name in sorted(dirs + files):
                total += 1
                if len(entries) < LIST_LIMIT:
                    item = base / name
                    suffix = "@" if item.is_symlink() else "/" if item.is_dir() else ""
                    entries.append(item.relative_to(self.root).as_posix() + suffix)
        if total > LIST_LIMIT:
            entries.append(f"... and {total - LIST_LIMIT} more")
        return "\n".join(entries) or "(empty)"

    def read_file(self, arguments: dict[str, Any]) -> str:
        target = self.path(arguments.get("path"))
        if not target.is_file():
            raise ToolError(f"read_file: {arguments.get('path')!r} is not a file")
        size = target.stat().st_size
        with target.open("rb") as handle:
            data = handle.read(READ_LIMIT)
        text = data.decode("utf-8", errors="replace")
        if size > READ_LIMIT:
            text += f"\n[truncated: showing the first {READ_LIMIT} of {size} bytes]"
        return text

    def write_file(self, arguments: dict[str, Any]) -> str:
        target = self.path(arguments.get("path"))
        content = _text_argument(arguments, "content")
        data = content.encode("utf-8")
        if len(data) > WRITE_LIMIT:
            raise ToolError(f"write_file: content is {len(data)} bytes; the limit is {WRITE_LIMIT}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return f"wrote {len(data)} bytes to {target.relative_to(self.root).as_posix()}"

    def edit_file(self, arguments: dict[str, Any]) -> str:
        target = self.path(arguments.get("path"))
        old, new = _text_argument(arguments, "old_text"), _text_argument(arguments, "new_text")
        if not target.is_file():
            raise ToolError(f"edit_file: {arguments.get('path')!r} is not a file")
        text = target.read_text(encoding="utf-8")
        count = text.count(old) if old else 0
        if count != 1:
            raise ToolError(f"edit_file: old_text must occur exactly once in the file; it occurs {count} times")
        target.write_text(text.replace(old, new, 1), encoding="utf-8")
        return f"edited {target.relative_to(self.root).as_posix()}"

    async def run_command(self, arguments: dict[str, Any]) -> str:
        command = _text_argument(arguments, "command")
        timeout = self.command_timeout
        requested = arguments.get("timeout_seconds")
        if isinstance(requested, int | float) and not isinstance(requested, bool) and requested > 0:
            timeout = min(float(requested), timeout)
        tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="agent-command-"))
        try:
            return await self._run_confined(command, timeout, tmp)
        finally:
            await asyncio.to_thread(shutil.rmtree, tmp, True)

    async def _run_confined(self, command: str, timeout: float, tmp: Path) -> str:
        env = sandbox.command_env(self.env, home=self.root, tmp=tmp)
        process = await asyncio.create_subprocess_exec(
            *sandbox.launcher_argv(self.sandbox, self.root, tmp, command, timeout, env),
            cwd=self.root,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a process group of its own: the last-resort kill reaches it all
        )
        output = _CappedOutput(OUTPUT_LIMIT)
        try:
            await asyncio.wait_for(output.collect(process), timeout)
        except TimeoutError:
            await _stop(process)
            return f"timed out after {timeout:g}s and was killed; output so far:\n{output.text()}"
        except BaseException:  # cancelled: the run is stopping, so must the command
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.shield(_stop(process))
            raise
        return f"exit code {process.returncode}\n{output.text()}"

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Every file under the workspace (symlinks not followed): path -> (mtime in ns, size)."""
        files = {}
        for folder, _dirs, names in os.walk(self.root):
            for name in names:
                item = Path(folder) / name
                with contextlib.suppress(OSError):
                    stat = item.lstat()
                    files[item.relative_to(self.root).as_posix()] = (stat.st_mtime_ns, stat.st_size)
        return files


def compare_snapshots(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> tuple[list[str], list[str], list[str]]:
    """(created, changed, deleted) paths, each sorted and cut to CHANGES_LIMIT entries."""
    created = sorted(after.keys() - before.keys())
    changed = sorted(path for path in after.keys() & before.keys() if after[path] != before[path])
    deleted = sorted(before.keys() - after.keys())
    return _cut(created), _cut(changed), _cut(deleted)


def _cut(paths: list[str]) -> list[str]:
    if len(paths) <= CHANGES_LIMIT:
        return paths
    return [*paths[:CHANGES_LIMIT], f"... and {len(paths) - CHANGES_LIMIT} more"]


class _CappedOutput:
    """Keeps the first and the last half of the limit, and counts what was dropped between."""

    def __init__(self, limit: int) -> None:
        self.half = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    async def collect(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            room = self.half - len(self.head)
            self.head += chunk[:room]
            self.tail += chunk[room:] if room > 0 else chunk
            if len(self.tail) > self.half:
                self.dropped += len(self.tail) - self.half
                del self.tail[: len(self.tail) - self.half]
        await process.wait()

    def text(self) -> str:
        middle = f"\n[... {self.dropped} bytes of output left out ...]\n" if self.dropped else ""
        return (bytes(self.head).decode(errors="replace") + middle + bytes(self.tail).decode(errors="replace")).strip()


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Ask the launcher to kill and reap everything the command started; kill its group if it
    has not done so in time (it could not then have reaped daemons: tini as PID 1 does)."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), sandbox.KILL_WAIT + 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def _text_argument(arguments: dict[str, Any], name: str) -> str:
    value = arguments.get(name)
    if not isinstance(value, str):
        raise ToolError(f"{name}: expected a string")
    return value
