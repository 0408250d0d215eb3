"""The agent loop's pure parts: the system prompt, how a step is recorded, and what the model is
told about a tool call whose outcome is unknown. The loop itself is the workflow
(agent_runner.workflows): ask the model, run the tools it asks for, give it their answers, until it
answers without asking for a tool, or a limit, a provider error or a cancellation stops it."""

from __future__ import annotations

from agent_runner.llm import Reply
from agent_runner.models import AgentResult

SYSTEM_PROMPT = """\
You are an agent that carries out a task in a workspace directory, using the tools you are given:
list, read, write and edit files, and run shell commands. Every path is relative to the workspace;
paths that leave it are refused. When the task is done, answer with a short summary of what you did,
without calling a tool."""
SHORT = 300  # characters of a text, an argument list or a tool's answer kept in a step
INTERRUPTED = (
    "interrupted: the worker running this tool stopped before it reported back, "
    "so the outcome is unknown: check before you retry"
)


def system_prompt(extra: str | None) -> str:
    return SYSTEM_PROMPT + (f"\n\n{extra}" if extra else "")


def count_tokens(result: AgentResult, reply: Reply) -> None:
    usage = result.usage
    if reply.input_tokens is not None:
        usage.input_tokens = (usage.input_tokens or 0) + reply.input_tokens
    if reply.output_tokens is not None:
        usage.output_tokens = (usage.output_tokens or 0) + reply.output_tokens


def short(text: str) -> str:
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"
