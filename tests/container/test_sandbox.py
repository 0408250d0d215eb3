"""Attacks on the sandbox, as an agent would make them: each is a real run whose model (the
loopback fake) asks for one command. Every attack must fail, and after each run the worker is
the same healthy process with nothing left over: no process but tini and the worker, no zombie.

One worker container per mode, many runs: the image as it ships, and the locked-down run
(read-only root, tmpfs /tmp, no capabilities, no-new-privileges, an arbitrary UID in group 0).
Commands have no network (STIGMER_COMMAND_NETWORK=off) and STIGMER_SANDBOX=required.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.container.conftest import FAST_HEALTH, IMAGE, container_logs, docker, wait_health, worker_env
from tests.container.test_lockdown import LOCKED_DOWN
from tests.fake_llm import FakeLLM, fake_llm, openai_answer, openai_tools
from tests.helpers import WORKER_PID_SH, TemporalServer

MODES = {"as-shipped": (), "locked-down": (*LOCKED_DOWN, "--user=12345:0")}
KEY = f"sk-sandbox-{uuid.uuid4().hex}"
# One /proc walk: pid, ppid, state, command line of every process in the container.
PS = (
    "import json, os\nout = []\nfor p in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n        stat = open(f'/proc/{p}/stat').read().rpartition(') ')[2].split()\n"
    "        cmd = open(f'/proc/{p}/cmdline').read().replace('\\0', ' ').strip()\n"
    "    except OSError:\n        continue\n    out.append([int(p), int(stat[1]), stat[0], cmd])\n"
    "print(json.dumps(out))"
)


@dataclass
class Worker:
    container: str
    mode: str
    address: str
    task_queue: str
    llm: FakeLLM
    pid: int  # the worker's pid in the container (tini is 1)
    lock: threading.Lock

    def attack(self, command: str, timeout_seconds: float | None = None) -> str:
        """One run whose model asks for `command`; returns what the tool answered the model."""
        arguments: dict[str, Any] = {"command": command}
        if timeout_seconds:
            arguments["timeout_seconds"] = timeout_seconds
        return self.run([("run_command", arguments)])

    def run(self, calls: list[tuple[str, dict[str, Any]]], workspace: str | None = None) -> str:
        with self.lock:
            seen = len(self.llm.requests)
            self.llm.script.extend([openai_tools(*calls), openai_answer("done")])
            result = start_run(self.address, self.task_queue, workspace or f"run-{uuid.uuid4().hex[:8]}")
            assert result["status"] == "completed", result.get("error")
            tool_turn = self.llm.requests[seen + 1].body["messages"]
        return "\n".join(str(m.get("content")) for m in tool_turn if m.get("role") == "tool")

    def processes(self) -> list[list[Any]]:
        listed: list[list[Any]] = json.loads(docker("exec", self.container, "python3", "-c", PS).stdout)
        return listed

    def exec(self, *args: str) -> str:
        result = docker("exec", self.container, *args, check=False)
        return (result.stdout + result.stderr).strip()


def start_run(address: str, task_queue: str, workspace: str) -> dict[str, Any]:
    """Through the public interface: the workflow type and its JSON input, as any client."""
    from temporalio.client import Client

    async def run() -> dict[str, Any]:
        client = await Client.connect(address)
        result: dict[str, Any] = await client.execute_workflow(
            "AgentExecution",
            {"instructions": "attack", "workspace": workspace},
            id=f"attack-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        return result

    return asyncio.run(run())


@pytest.fixture(scope="module", params=list(MODES))
def worker(request: pytest.FixtureRequest, temporal: TemporalServer, tmp_path_factory: Any) -> Iterator[Worker]:
    secrets = tmp_path_factory.mktemp("secrets")
    (secrets / "llm_api_key").write_text(KEY)
    secrets.chmod(0o755)
    (secrets / "llm_api_key").chmod(0o644)
    env = {
        **worker_env(temporal.address),
        "STIGMER_LLM_PROVIDER": "openai",
        "STIGMER_LLM_API_KEY_FILE": "/run/secrets/llm_api_key",
        "STIGMER_SANDBOX": "required",
        "STIGMER_COMMAND_NETWORK": "off",
        "STIGMER_COMMAND_MAX_PROCESSES": "256",
    }
    with fake_llm([]) as llm:
        env["STIGMER_LLM_BASE_URL"] = llm.url
        name = f"agent-runner-sandbox-{uuid.uuid4().hex[:8]}"
        args = ["run", "-d", "--name", name, "--network=host", *FAST_HEALTH, *MODES[request.param]]
        args += [f"--volume={secrets}:/run/secrets:ro", *(f"--env={k}={v}" for k, v in env.items())]
        container = docker(*args, IMAGE).stdout.strip()
        try:
            wait_health(container, "healthy", timeout=60)
            workers = [p for p in json.loads(docker("exec", container, "python3", "-c", PS).stdout) if p[1] == 1]
            assert len(workers) == 1 and "agent_runner" in workers[0][3], workers
            yield Worker(container, request.param, temporal.address, env["TEMPORAL_TASK_QUEUE"], llm, workers[0][0],
                         threading.Lock())  # fmt: skip
        finally:
            docker("rm", "-f", "-v", container, check=False)


@pytest.fixture(autouse=True)
def clean_after(worker: Worker) -> Iterator[None]:
    """After each run: the same worker, healthy, and nothing else running, no zombie."""
    yield
    listed = worker.processes()
    mine = [p for p in listed if p[1] != 0 and p[0] != worker.pid]  # ppid 0: PID 1 and `docker exec` sessions
    # A `docker exec` session (a health probe) has parent 0: the runtime reaps it, outside the container.
    zombies = [p for p in listed if p[2] == "Z" and p[1] != 0]
    assert not mine, f"left over after the run: {mine}"
    assert not zombies, f"zombies: {zombies}"
    assert any(p[0] == worker.pid and p[1] == 1 for p in listed), f"the worker {worker.pid} is gone: {listed}"
    probe = docker("exec", worker.container, "python", "/app/healthcheck.py", check=False)
    assert probe.returncode == 0, f"health check: {probe.stdout}{probe.stderr}\n{container_logs(worker.container)}"


def test_worker_says_at_start_how_commands_are_confined(worker: Worker) -> None:
    assert "tool commands run confined by Landlock ABI" in container_logs(worker.container)
    assert "(network off)" in container_logs(worker.container)


def test_control_a_command_works_in_its_own_directory(worker: Worker) -> None:
    out = worker.attack(
        "echo made > made.txt && cat made.txt && python3 -c 'print(6 * 7)' && echo tmp > $TMPDIR/t && "
        'cat $TMPDIR/t && [ "$HOME" = "$PWD" ] && echo "PATH=$PATH" && env | cut -d= -f1 | sort | tr "\\n" " "'
    )
    assert out.splitlines() == [
        "exit code 0",
        "made",
        "42",
        "tmp",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "HOME LANG PATH PWD TMPDIR",
    ], out


def test_reading_the_mounted_key_file_fails(worker: Worker) -> None:
    # PID 1 is tini; the worker is its child, and runs as the same user as the command.
    worker_pid = worker.exec("sh", "-c", WORKER_PID_SH)
    assert worker_pid.isdigit(), worker_pid
    out = worker.attack(
        f"cat /run/secrets/llm_api_key; ls /run/secrets; cat /proc/1/environ; cat /proc/{worker_pid}/environ; env"
    )
    assert KEY not in out
    assert "STIGMER_" not in out  # not in its environment, and neither tini's nor the worker's can be read
    assert out.count("Permission denied") == 4, out


def test_reading_and_writing_another_runs_directory_fails(worker: Worker) -> None:
    victim = f"victim-{uuid.uuid4().hex[:6]}"
    worker.run([("write_file", {"path": "secret.txt", "content": "victim's data"})], workspace=victim)
    out = worker.attack(f"cat ../{victim}/secret.txt; echo pwned > ../{victim}/secret.txt; ls /workspace; rm -rf ../*")
    assert "victim's data" not in out and victim not in out.replace(f"../{victim}", "")
    assert out.count("Permission denied") >= 3, out
    assert worker.exec("cat", f"/workspace/{victim}/secret.txt") == "victim's data"


def test_writing_to_the_app_or_the_health_file_fails(worker: Worker) -> None:
    out = worker.attack(
        "echo x > /app/pwned; touch /app/agent_runner/x; head -1 /app/healthcheck.py; ls /opt/venv;"
        "cat /tmp/agent-runner-health.json; echo '{}' > /tmp/agent-runner-health.json"
    )
    # With --read-only the kernel says EROFS for /app before Landlock is asked; EACCES otherwise.
    assert out.count("Permission denied") + out.count("Read-only file system") == 6, out
    assert worker.exec("ls", "/app/pwned", "/app/agent_runner/x").count("No such file") == 2


def test_signalling_pid_1_the_worker_or_the_launcher_fails(worker: Worker) -> None:
    out = worker.attack(f"kill -TERM 1; echo $?; kill -KILL {worker.pid}; echo $?; kill -KILL $PPID; echo $?")
    assert [line for line in out.splitlines()[1:] if line] == ["/bin/sh: 1: kill: Operation not permitted", "1"] * 3


def test_a_fork_bomb_is_bounded_and_cleaned_up(worker: Worker) -> None:
    out = worker.attack("b() { b | b & }; b; sleep 2; echo after", timeout_seconds=20)
    assert "fork" in out.lower() or "resource temporarily unavailable" in out.lower(), out[:500]


def test_a_background_process_does_not_outlive_its_command(worker: Worker) -> None:
    out = worker.attack("sleep 300 >/dev/null 2>&1 & nohup sleep 301 >/dev/null 2>&1 & echo started")
    assert out == "exit code 0\nstarted"


def test_double_fork_and_setsid_do_not_escape(worker: Worker) -> None:
    daemon = "import os, time; os.fork() and os._exit(0); os.setsid(); os.fork() and os._exit(0); time.sleep(300)"
    out = worker.attack(f"python3 -c {shlex.quote(daemon)}; setsid sh -c 'sleep 302 &' >/dev/null 2>&1 & echo ok")
    assert out == "exit code 0\nok"


def test_a_command_past_its_timeout_is_killed_with_its_children(worker: Worker) -> None:
    out = worker.attack("setsid sleep 303 & sleep 304 & sleep 305", timeout_seconds=2)
    assert out.startswith("timed out after 2s and was killed")


def test_connecting_to_temporal_with_the_network_off_fails(worker: Worker) -> None:
    port = worker.address.rsplit(":", 1)[1]
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 3)"
    out = worker.attack(f"python3 -c {shlex.quote(probe)} 2>&1 | tail -1")
    assert out.splitlines()[-1] == "PermissionError: [Errno 13] Permission denied", out
