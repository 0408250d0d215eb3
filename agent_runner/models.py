"""Plain data passed between a client, the workflow and its activity (JSON-serialisable).

A run is started with an AgentRequest as JSON, e.g. with the Temporal CLI:
    temporal workflow execute --type AgentExecution --task-queue agent_execution_runner \\
        --input '{"instructions": "Write hello.txt", "workspace": "demo"}'
Only "instructions" is required.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Statuses of a run (AgentResult.status); all but RUNNING are final.
RUNNING = "running"  # only in the `progress` query, while the run goes on
COMPLETED = "completed"  # the model gave its final answer
FAILED = "failed"  # the provider refused or kept failing; `error` says why
CANCELLED = "cancelled"  # the workflow was cancelled (it closes as Canceled); `progress` keeps its steps
LIMIT_REACHED = "limit_reached"  # max_steps or max_seconds ran out before a final answer

MAX_STEPS_LIMIT = 200
MAX_SECONDS_LIMIT = 6 * 3600


@dataclass
class AgentRequest:
    instructions: str
    system_prompt: str | None = None  # added after the built-in one, which explains the workspace and tools
    model: str | None = None  # overrides STIGMER_LLM_MODEL for this run
    max_steps: int = 20  # model turns, each one LLM call followed by the tools it asked for
    max_seconds: float = 600  # wall time of the whole run
    workspace: str = ""  # subdirectory of the workspace root; empty: the workflow id


@dataclass
class ToolCall:
    name: str
    arguments: str  # the arguments as JSON, shortened
    ok: bool  # False when the tool refused or failed; the model was told why
    result: str  # the tool's answer, shortened


@dataclass
class Step:
    number: int
    text: str  # what the model said alongside its tool calls (or its final answer), shortened
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class TokenUsage:
    input_tokens: int | None = None  # None: the provider did not report it
    output_tokens: int | None = None


@dataclass
class AgentResult:
    status: str  # completed | failed | cancelled | limit_reached (running: in the progress query)
    final_answer: str
    workspace: str  # the run's directory, relative to the workspace root
    model: str = ""
    error: str | None = None  # why the run failed or stopped early
    steps: list[Step] = field(default_factory=list)
    # Paths relative to the run's directory, found by comparing it before and after the run.
    files_created: list[str] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)
    usage: TokenUsage = field(default_factory=TokenUsage)
    seconds: float = 0.0


# ---- Between the workflow and its activities (not part of the public request/result)


@dataclass
class WorkspaceInfo:
    """Where a run's workspace is, from the worker that opened it."""

    run_dir: str  # absolute path on the workers of its volume, for messages
    volume_queue: str  # the task queue of the workers that have the workspace's volume
    model: str  # the model a run uses when its request names none
    command_timeout: float  # seconds, the longest a tool command may run on these workers
    volume_wait: float  # seconds a tool call may wait for a worker of the volume before the run fails


@dataclass
class ModelCall:
    system: str
    turns: list[dict[str, Any]]  # the conversation, see agent_runner.llm.turns_from_json
    model: str


@dataclass
class ToolCallInput:
    workspace: str  # the run's directory relative to the workspace root
    name: str
    arguments: dict[str, Any]


@dataclass
class ToolOutcome:
    content: str
    is_error: bool = False


@dataclass
class RunState:
    """A run's state, carried into the next workflow run when its history is continued as new."""

    result: AgentResult
    turns: list[dict[str, Any]]
    space: WorkspaceInfo
    started: float  # workflow time (epoch seconds) at which the run started


def request_problem(request: AgentRequest) -> str | None:
    """Why the request cannot run, in one line, or None. Pure: the workflow calls it."""
    if not isinstance(request.instructions, str) or not request.instructions.strip():
        return "instructions: expected the task for the agent, got nothing"
    if not isinstance(request.max_steps, int) or not 1 <= request.max_steps <= MAX_STEPS_LIMIT:
        return f"max_steps: expected a whole number from 1 to {MAX_STEPS_LIMIT}, got {request.max_steps!r}"
    if not isinstance(request.max_seconds, int | float) or not 1 <= request.max_seconds <= MAX_SECONDS_LIMIT:
        return f"max_seconds: expected seconds from 1 to {MAX_SECONDS_LIMIT}, got {request.max_seconds!r}"
    return None
