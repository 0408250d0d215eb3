"""Plain data passed between a client, the workflow and its activity (JSON-serialisable)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AgentRequest:
    instructions: str
    workspace: str = "default"  # subdirectory of the workspace root for this run


@dataclass
class AgentResult:
    status: str  # completed | failed
    output: str
    workspace: str
    files: list[str] = field(default_factory=list)  # paths relative to the run's directory
