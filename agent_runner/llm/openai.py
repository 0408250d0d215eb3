"""OpenAI-compatible chat completions with tool calling (OpenAI, Ollama, vLLM, LM Studio...)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from agent_runner.config import LLMSettings
from agent_runner.llm import AssistantTurn, Reply, ToolRequest, Turn, UserTurn
from agent_runner.llm.http import JsonHttp, LLMError
from agent_runner.tools import ToolSpec


class OpenAIChat:
    def __init__(self, settings: LLMSettings, model: str) -> None:
        self.settings = settings
        self.model = model
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self.http = JsonHttp(
            provider=settings.provider,
            base_url=settings.base_url,
            headers=headers,
            timeout=settings.timeout,
            secret=settings.api_key,
        )
        # OpenAI's own API wants max_completion_tokens (its reasoning models refuse max_tokens);
        # compatible servers know max_tokens.
        self.max_tokens_field = (
            "max_completion_tokens" if urlsplit(settings.base_url).hostname == "api.openai.com" else "max_tokens"
        )

    async def complete(self, system: str, turns: list[Turn], tools: tuple[ToolSpec, ...]) -> Reply:
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        for turn in turns:
            messages.extend(_messages(turn))
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "tools": [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in tools
            ],
            self.max_tokens_field: self.settings.max_tokens,
        }
        if self.settings.temperature is not None:
            body["temperature"] = self.settings.temperature
        data = await self.http.post("/chat/completions", body, model=self.model)
        try:
            message = data["choices"][0]["message"]
            calls = message.get("tool_calls") or []
            requests = [_tool_request(call, number) for number, call in enumerate(calls, 1)]
        except (KeyError, IndexError, TypeError, AttributeError):
            raise LLMError(
                f"{self.settings.provider} answered without a message in choices[0]", retryable=False
            ) from None
        usage = data.get("usage") or {}
        return Reply(
            text=message.get("content") or "",
            tool_requests=requests,
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
        )

    async def aclose(self) -> None:
        await self.http.aclose()


def _messages(turn: Turn) -> list[dict[str, Any]]:
    if isinstance(turn, UserTurn):
        return [{"role": "user", "content": turn.text}]
    if isinstance(turn, AssistantTurn):
        message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
        if turn.tool_requests:
            message["tool_calls"] = [
                {"id": r.id, "type": "function", "function": {"name": r.name, "arguments": r.raw_arguments}}
                for r in turn.tool_requests
            ]
        return [message]
    return [{"role": "tool", "tool_call_id": a.id, "content": a.content} for a in turn.answers]


def _tool_request(call: dict[str, Any], number: int) -> ToolRequest:
    function = call["function"]
    raw = function.get("arguments") or "{}"
    if not isinstance(raw, str):  # some servers send an object instead of a JSON string
        raw = json.dumps(raw)
    try:
        arguments = json.loads(raw)
    except ValueError:
        arguments = None
    return ToolRequest(
        id=str(call.get("id") or f"call_{number}"),
        name=str(function["name"]),
        arguments=arguments if isinstance(arguments, dict) else None,
        raw_arguments=raw,
    )
