"""Activities: the side effects of an agent run, executed inside the workspace root."""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath

from temporalio import activity
from temporalio.exceptions import ApplicationError

from agent_runner.models import AgentRequest, AgentResult


class WorkspaceActivities:
    """Holds the workspace root so the activity needs no global state."""

    def __init__(self, workspace_root: Path) -> None:
        self.workspace_root = workspace_root

    @activity.defn(name="execute_agent")
    async def execute_agent(self, request: AgentRequest) -> AgentResult:
        run_dir = resolve_run_dir(self.workspace_root, request.workspace)
        activity.logger.info("agent run started in %s", run_dir)
        # The agent itself is a later piece of work; this run records its instructions and
        # answers with them, which proves the whole path: client -> Temporal -> worker -> disk.
        output = f"received {len(request.instructions)} characters of instructions"
        await asyncio.to_thread(_write_run_files, run_dir, request.instructions, output)
        return AgentResult(
            status="completed", output=output, workspace=request.workspace, files=["instructions.md", "result.md"]
        )


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


def _write_run_files(run_dir: Path, instructions: str, output: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "instructions.md").write_text(instructions, encoding="utf-8")
    (run_dir / "result.md").write_text(output + "\n", encoding="utf-8")
