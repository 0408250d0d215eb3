"""Activities: the side effects of an agent run. The workflow calls them one at a time.

- `open_workspace` and `call_model` run on the worker's task queue (any worker).
- `call_tool` and `close_workspace` run on the task queue of the workspace's volume, which every
  worker that has that volume mounted polls (see `volume_queue`), so a tool always acts on the
  run's own directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

from temporalio import activity
from temporalio.exceptions import ApplicationError

from agent_runner.config import LLMSettings
from agent_runner.llm import ChatModel, Reply, make_chat_model, turns_from_json
from agent_runner.llm.http import LLMError
from agent_runner.models import ModelCall, ToolCallInput, ToolOutcome, WorkspaceInfo
from agent_runner.sandbox import SandboxSettings
from agent_runner.tools import TOOL_SPECS, ToolError, Workspace, command_env, compare_snapshots, hide_worker_memory

HEARTBEAT_EVERY = 2.0  # seconds; the workflow's heartbeat timeout is a few times this
STATE_DIR = ".agent-runner"  # under the workspace root: the volume's id and the runs' file snapshots
VOLUME_ID_FILE = "volume-id"


def volume_id(root: Path) -> str:
    """The id of the volume mounted at root, created by the first worker that sees it.

    Workers that share the volume (replicas, a restarted container) read the same id, and so
    poll the same volume task queue; a worker with a volume of its own gets an id of its own."""
    state = root / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    path = state / VOLUME_ID_FILE
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(8) + "\n")
    for _ in range(50):  # another worker may have created it an instant ago and be writing it
        found = path.read_text().strip()
        if found:
            return found
        time.sleep(0.1)  # called once at start-up, before the worker polls
    raise RuntimeError(f"{path} stays empty: remove it and start the worker again")


def volume_queue(task_queue: str, volume: str) -> str:
    return f"{task_queue}@volume-{volume}"


class AgentActivities:
    """Holds the worker's settings so the activities need no global state."""

    def __init__(
        self,
        workspace_root: Path,
        llm: LLMSettings | None = None,
        command_timeout: float = 120.0,
        *,
        volume_queue: str = "",
        volume_wait: float = 300.0,
        sandbox: SandboxSettings | None = None,
    ) -> None:
        self.workspace_root = workspace_root
        self.llm = llm
        self.command_timeout = command_timeout
        self.volume_queue = volume_queue
        self.volume_wait = volume_wait
        # One client per model, made at its first call and kept: making one costs a TLS context.
        self._models: dict[str, ChatModel] = {}
        self.sandbox = sandbox or SandboxSettings()
        # Computed once: what a tool command may see of the worker's environment.
        self.command_env = command_env(os.environ, [llm.api_key] if llm and llm.api_key else [])
        hide_worker_memory()

    @activity.defn(name="open_workspace")
    async def open_workspace(self, workspace: str) -> WorkspaceInfo:
        """Create the run's directory and remember its files, to report what the run changed."""
        if self.llm is None:
            raise ApplicationError(
                "no LLM is configured on this worker: set STIGMER_LLM_PROVIDER (openai, anthropic or ollama) "
                "and its model and key variables (see docs/docker.md)",
                type="LLMNotConfigured",
                non_retryable=True,
            )
        run_dir = resolve_run_dir(self.workspace_root, workspace)
        await asyncio.to_thread(run_dir.mkdir, parents=True, exist_ok=True)
        before = await asyncio.to_thread(Workspace(run_dir, command_timeout=0, env={}).snapshot)
        snapshot = self._snapshot_file(workspace)
        await asyncio.to_thread(_write_json, snapshot, before)
        activity.logger.info("agent run opened %s with %s model %s", run_dir, self.llm.provider, self.llm.model)
        return WorkspaceInfo(
            run_dir=str(run_dir),
            volume_queue=self.volume_queue,
            model=self.llm.model,
            command_timeout=self.command_timeout,
            volume_wait=self.volume_wait,
        )

    @activity.defn(name="call_model")
    async def call_model(self, call: ModelCall) -> Reply:
        """One model turn. Provider errors are retried inside (429, 5xx, network); what is left is
        final for the run. Temporal retries the call when its worker is lost."""
        if self.llm is None:
            raise ApplicationError("no LLM is configured on this worker", type="LLMNotConfigured", non_retryable=True)
        model = self._models.get(call.model)
        if model is None:
            model = self._models[call.model] = make_chat_model(self.llm, call.model)
        try:
            async with _heartbeating(), _retried_on_shutdown("the worker shut down during the model call"):
                return await model.complete(call.system, turns_from_json(call.turns), TOOL_SPECS)
        except LLMError as err:
            raise ApplicationError(str(err), type="LLMError", non_retryable=True) from None

    @activity.defn(name="call_tool")
    async def call_tool(self, call: ToolCallInput) -> ToolOutcome:
        """One tool call in the run's directory, which must still exist. Runs at most once: the
        workflow never retries it (its effects may be half done)."""
        run_dir = resolve_run_dir(self.workspace_root, call.workspace)
        if not await asyncio.to_thread(run_dir.is_dir):
            raise ApplicationError(
                f"the run's workspace {run_dir} is gone (the volume was replaced or the directory removed)",
                type="WorkspaceGone",
                non_retryable=True,
            )
        workspace = Workspace(run_dir, command_timeout=self.command_timeout, env=self.command_env, sandbox=self.sandbox)
        try:
            async with _heartbeating():
                content = await workspace.call(call.name, call.arguments)
        except ToolError as err:
            activity.logger.info("tool %s refused or failed: %s", call.name, err)
            return ToolOutcome(str(err), is_error=True)
        except asyncio.CancelledError:
            if activity.is_worker_shutdown():
                raise ApplicationError(
                    "the worker shut down during the tool call", type="ToolInterrupted", non_retryable=True
                ) from None
            raise
        except Exception:  # a bug in a tool must not end the run; the model is told, the log has the trace
            activity.logger.exception("tool %s crashed", call.name)
            return ToolOutcome(f"{call.name} failed with an internal error", is_error=True)
        return ToolOutcome(content)

    @activity.defn(name="close_workspace")
    async def close_workspace(self, workspace: str) -> list[list[str]]:
        """[created, changed, deleted]: the run's files compared with those it started with."""
        run_dir = resolve_run_dir(self.workspace_root, workspace)
        snapshot = self._snapshot_file(workspace)
        try:
            before = await asyncio.to_thread(_read_json, snapshot)
        except (OSError, ValueError):
            return [[], [], []]
        after = await asyncio.to_thread(Workspace(run_dir, command_timeout=0, env={}).snapshot)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(snapshot.unlink)
        return list(compare_snapshots({k: (v[0], v[1]) for k, v in before.items()}, after))

    def _snapshot_file(self, workspace: str) -> Path:
        name = hashlib.sha256(workspace.encode()).hexdigest()[:32]
        return self.workspace_root / STATE_DIR / "snapshots" / f"{name}.json"


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _read_json(path: Path) -> dict[str, list[int]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a snapshot")
    return data


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Tells Temporal the call is alive, also during a long call; its answers carry cancellation."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def _retried_on_shutdown(message: str) -> AsyncIterator[None]:
    """A call stopped because its worker is shutting down fails retryably, so that Temporal
    runs it again on another worker (a cancellation would be final)."""
    try:
        yield
    except asyncio.CancelledError:
        if activity.is_worker_shutdown():
            raise ApplicationError(message, type="WorkerShutdown") from None
        raise


def resolve_run_dir(root: Path, workspace: str) -> Path:
    """The run's directory under root; refuses names that would leave it."""
    relative = PurePosixPath(workspace)
    if not workspace or relative.is_absolute() or ".." in relative.parts or relative.parts[:1] == (STATE_DIR,):
        raise ApplicationError(
            f"workspace must be a relative path inside the workspace root, got {workspace!r}",
            type="InvalidWorkspace",
            non_retryable=True,
        )
    run_dir = (root / relative).resolve()
    if not run_dir.is_relative_to(root.resolve()):
        raise ApplicationError(
            f"workspace {workspace!r} resolves outside the workspace root", type="InvalidWorkspace", non_retryable=True
        )
    return run_dir
