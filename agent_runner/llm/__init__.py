"""Chat models behind one small interface, spoken over plain HTTP (httpx).

The agent loop keeps the conversation in the neutral form below; each provider module turns it
into its own protocol: `openai` (chat completions, also Ollama, vLLM, LM Studio) and `anthropic`
(Messages API).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from agent_runner.config import LLMSettings
from agent_runner.tools import ToolSpec


@dataclass
class ToolRequest:
    """A tool call the model asked for."""

    id: str
    name: str
    arguments: dict[str, Any] | None  # None: the model sent arguments that are not a JSON object
    raw_arguments: str = ""


@dataclass
class ToolAnswer:
    id: str
    content: str
    is_error: bool = False


@dataclass
class UserTurn:
    text: str


@dataclass
class AssistantTurn:
    text: str
    tool_requests: list[ToolRequest] = field(default_factory=list)


@dataclass
class ToolTurn:
    answers: list[ToolAnswer]


Turn = UserTurn | AssistantTurn | ToolTurn


@dataclass
class Reply:
    text: str
    tool_requests: list[ToolRequest]
    input_tokens: int | None = None
    output_tokens: int | None = None


def turn_to_json(turn: Turn) -> dict[str, Any]:
    """A turn as plain JSON, the form the workflow keeps and passes to the model activity."""
    if isinstance(turn, UserTurn):
        return {"user": turn.text}
    if isinstance(turn, AssistantTurn):
        return {"assistant": turn.text, "tool_requests": [asdict(request) for request in turn.tool_requests]}
    return {"tool_answers": [asdict(answer) for answer in turn.answers]}


def turns_from_json(turns: list[dict[str, Any]]) -> list[Turn]:
    converted: list[Turn] = []
    for turn in turns:
        if "user" in turn:
            converted.append(UserTurn(turn["user"]))
        elif "assistant" in turn:
            converted.append(AssistantTurn(turn["assistant"], [ToolRequest(**r) for r in turn["tool_requests"]]))
        else:
            converted.append(ToolTurn([ToolAnswer(**a) for a in turn["tool_answers"]]))
    return converted


class ChatModel(Protocol):
    model: str

    async def complete(self, system: str, turns: list[Turn], tools: tuple[ToolSpec, ...]) -> Reply: ...

    async def aclose(self) -> None: ...


def make_chat_model(settings: LLMSettings, model: str | None = None) -> ChatModel:
    """The client for the configured provider; `model` overrides the configured model."""
    if settings.provider == "anthropic":
        from agent_runner.llm.anthropic import AnthropicChat

        return AnthropicChat(settings, model or settings.model)
    from agent_runner.llm.openai import OpenAIChat

    return OpenAIChat(settings, model or settings.model)
