"""Activities: the side effects of an agent run, executed inside the workspace root."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path, PurePosixPath

from temporalio import activity
from temporalio.exceptions import ApplicationError

from agent_runner.agent_loop import run_agent
from agent_runner.config import LLMSettings
from agent_runner.llm import make_chat_model
from agent_runner.models import CANCELLED, FAILED, AgentRequest, AgentResult
from agent_runner.sandbox import SandboxSettings
from agent_runner.tools import Workspace, command_env, compare_snapshots, hide_worker_memory

HEARTBEAT_EVERY = 2.0  # seconds; the workflow's heartbeat timeout is a few times this


class WorkspaceActivities:
    """Holds the worker's settings so the activity needs no global state."""

    def __init__(
        self,
        workspace_root: Path,
        llm: LLMSettings | None = None,
        command_timeout: float = 120.0,
        sandbox: SandboxSettings | None = None,
    ) -> None:
        self.workspace_root = workspace_root
        self.llm = llm
        self.command_timeout = command_timeout
        self.sandbox = sandbox or SandboxSettings()
        # Computed once: what a tool command may see of the worker's environment.
        self.command_env = command_env(os.environ, [llm.api_key] if llm and llm.api_key else [])
        hide_worker_memory()

    @activity.defn(name="execute_agent")
    async def execute_agent(self, request: AgentRequest) -> AgentResult:
        if self.llm is None:
            raise ApplicationError(
                "no LLM is configured on this worker: set STIGMER_LLM_PROVIDER (openai, anthropic or ollama) "
                "and its model and key variables (see docs/docker.md)",
                type="LLMNotConfigured",
                non_retryable=True,
            )
        run_dir = resolve_run_dir(self.workspace_root, request.workspace)
        await asyncio.to_thread(run_dir.mkdir, parents=True, exist_ok=True)
        workspace = Workspace(run_dir, command_timeout=self.command_timeout, env=self.command_env, sandbox=self.sandbox)
        before = await asyncio.to_thread(workspace.snapshot)
        model = make_chat_model(self.llm, request.model)
        activity.logger.info("agent run started in %s with %s model %s", run_dir, self.llm.provider, model.model)
        started = time.monotonic()
        beating = asyncio.create_task(_heartbeat_forever())
        try:
            result = await run_agent(model, workspace, request)
        finally:
            beating.cancel()
            await model.aclose()
        if result.status == CANCELLED and activity.is_worker_shutdown():
            result.status, result.error = FAILED, "the worker shut down during the run"
        after = await asyncio.to_thread(workspace.snapshot)
        result.files_created, result.files_changed, result.files_deleted = compare_snapshots(before, after)
        result.seconds = round(time.monotonic() - started, 3)
        return result


async def _heartbeat_forever() -> None:
    """Tells Temporal the run is alive, also during a long LLM call; its answers carry cancellation."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY)


def resolve_run_dir(root: Path, workspace: str) -> Path:
    """The run's directory under root; refuses names that would leave it."""
    relative = PurePosixPath(workspace)
    if not workspace or relative.is_absolute() or ".." in relative.parts:
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
