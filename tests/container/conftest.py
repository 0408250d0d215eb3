"""The container suite: a real engine and the built image. Fails (never skips) without them."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, Seen, free_port, wait_for

DOCKER = os.environ.get("DOCKER", "docker")
IMAGE = os.environ.get("AGENT_RUNNER_IMAGE", "ghcr.io/stigmer/agent-runner:dev-local")


def docker(*args: str, check: bool = True, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{DOCKER} {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def inspect(ref: str, kind: str = "container") -> dict[str, Any]:
    return dict(json.loads(docker(kind, "inspect", ref).stdout)[0])


def health_status(container_id: str) -> str:
    state = inspect(container_id)["State"]
    if state["Status"] != "running":
        return f"container {state['Status']} (exit {state.get('ExitCode')})"
    return str(state.get("Health", {}).get("Status", "no health"))


def wait_health(container_id: str, wanted: str, timeout: float) -> None:
    def probe() -> bool | Seen:
        status = health_status(container_id)
        return status == wanted or Seen(status)

    try:
        wait_for(f"container health {wanted!r}", probe, timeout, interval=0.5)
    except AssertionError as err:
        logs = docker("logs", "--tail", "20", container_id, check=False)
        health = (inspect(container_id)["State"].get("Health") or {}).get("Log") or [{}]
        raise AssertionError(
            f"{err}\nlast health check: {health[-1].get('Output', '').strip()}\nlogs:\n{logs.stdout}{logs.stderr}"
        ) from None


@pytest.fixture(scope="session", autouse=True)
def engine() -> str:
    info = subprocess.run([DOCKER, "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        pytest.fail(f"container tests need an engine: `{DOCKER} info` failed: {info.stderr.strip()[:300]}")
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.fail(f"image {IMAGE} not found: run `make build-image` first (make test does)")
    return DOCKER


@pytest.fixture
def agent_llm() -> Iterator[Any]:
    """A scripted OpenAI-compatible server on loopback (reached with --network host) for one
    agent run: it asks to write note.md with the given text, then answers "done".
    Returns the worker's LLM environment; the server itself is in `agent_llm.servers`."""
    from contextlib import ExitStack

    from tests.fake_llm import fake_llm, openai_answer, openai_tools

    with ExitStack() as stack:
        servers: list[Any] = []

        def start(text: str, key: str = "sk-test") -> dict[str, str]:
            script = [openai_tools(("write_file", {"path": "note.md", "content": text})), openai_answer("done")]
            servers.append(stack.enter_context(fake_llm(script)))
            return {
                "STIGMER_LLM_PROVIDER": "openai",
                "STIGMER_LLM_BASE_URL": servers[-1].url,
                "STIGMER_LLM_API_KEY": key,
            }

        start.servers = servers  # type: ignore[attr-defined]
        yield start


@pytest.fixture
def run_container() -> Iterator[Any]:
    """Start containers of the image; every one is removed by id afterwards, even on failure."""
    started: list[str] = []

    def run(*args: str, env: dict[str, str] | None = None, image: str = IMAGE, command: tuple[str, ...] = ()) -> str:
        env_args = [f"--env={key}={value}" for key, value in (env or {}).items()]
        name = f"agent-runner-test-{uuid.uuid4().hex[:8]}"
        container_id = docker("run", "-d", "--name", name, *env_args, *args, image, *command).stdout.strip()
        started.append(container_id)
        return container_id

    yield run
    for container_id in started:
        docker("rm", "-f", "-v", container_id, check=False)


def chown_in_container(path: Path, owner: str) -> None:
    """chown -R a host directory from a short-lived container running as root, so the tests need
    no root on the host (a user would run `sudo chown`)."""
    docker(
        "run",
        "--rm",
        "--user=0:0",
        "--network=none",
        f"--volume={path}:/target",
        IMAGE,
        "chown",
        "-R",
        owner,
        "/target",
    )


@pytest.fixture
def workspace_of_1000(tmp_path: Path) -> Iterator[Path]:
    """A host directory owned by UID 1000, as docs/docker.md says to prepare one; given back to
    the test's own user afterwards, so that it can be removed."""
    path = tmp_path / "workspace"
    path.mkdir()
    chown_in_container(path, "1000:1000")
    yield path
    chown_in_container(path, f"{os.getuid()}:{os.getgid()}")


# Freezing a container's worker without host root: PID 1 is signalled by the engine (from
# outside the container's PID namespace, where SIGSTOP reaches it), its other processes by a
# root process inside. Health probes in flight are left running, so they end by themselves.
_SIGNAL_OTHERS = (
    "import os, signal, sys\n"
    "for pid in [int(p) for p in os.listdir('/proc') if p.isdigit()]:\n"
    "    try:\n"
    "        probe = b'healthcheck.py' in open(f'/proc/{pid}/cmdline', 'rb').read()\n"
    "        if pid not in (1, os.getpid()) and not probe:\n"
    "            os.kill(pid, getattr(signal, sys.argv[1]))\n"
    "    except (FileNotFoundError, ProcessLookupError):\n"
    "        pass\n"
)


def freeze(container_id: str) -> None:
    docker("exec", "-u", "0", container_id, "python", "-c", _SIGNAL_OTHERS, "SIGSTOP")
    docker("kill", "--signal=SIGSTOP", container_id)


def thaw(container_id: str) -> None:
    docker("kill", "--signal=SIGCONT", container_id, check=False)
    docker("exec", "-u", "0", container_id, "python", "-c", _SIGNAL_OTHERS, "SIGCONT", check=False)


def worker_env(address: str) -> dict[str, str]:
    return {"TEMPORAL_ADDRESS": address, "TEMPORAL_TASK_QUEUE": f"ct-{uuid.uuid4().hex[:8]}"}


# Probe often in tests; the image's own 30 s interval is checked by inspection instead.
FAST_HEALTH = ("--health-interval=1s", "--health-retries=2", "--health-start-period=1s")


# The real worker with two misbehaving activities (fault_worker.py), mounted into the image.
FAULT_WORKER_ARGS = (f"--volume={Path(__file__).parent}:/faults:ro", "--env=PYTHONPATH=/app:/faults")
FAULT_WORKER_COMMAND = ("python", "-c", "import fault_worker; fault_worker.main()")


def container_logs(container_id: str) -> str:
    result = docker("logs", container_id, check=False)
    return result.stdout + result.stderr


def run_agent(address: str, task_queue: str, workspace: str, instructions: str) -> Any:
    """Start an agent run through Temporal, as a client would, and wait for its result."""
    import asyncio

    from temporalio.client import Client

    from agent_runner.models import AgentRequest, AgentResult
    from agent_runner.workflows import AgentExecutionWorkflow

    async def run() -> Any:
        client = await Client.connect(address)
        result: AgentResult = await client.execute_workflow(
            AgentExecutionWorkflow.run,
            AgentRequest(instructions=instructions, workspace=workspace),
            id=f"wf-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        return result

    return asyncio.run(run())


def make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A make target of this repository, as a developer runs it."""
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def run_local_env(tmp_path: Path, name: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of `make run-local` with its own container, dev server ports, workspace
    and state directory, so that tests running at once stay apart."""
    image, version = IMAGE.rsplit(":", 1)
    return {
        **os.environ,
        "DOCKER": DOCKER,
        "IMAGE": image,
        "VERSION": version,
        "LOCAL_CONTAINER": name,
        "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
        "TEMPORAL_UI_PORT": str(free_port()),
        "WORKSPACE_DIR": str(tmp_path / "ws"),
        "RUN_DIR": str(tmp_path / "run"),
        **extra,
    }
