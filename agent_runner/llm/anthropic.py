"""Anthropic's Messages API with tool use."""

from __future__ import annotations

import json
from typing import Any

from agent_runner.config import LLMSettings
from agent_runner.llm import AssistantTurn, Reply, ToolRequest, Turn, UserTurn
from agent_runner.llm.http import JsonHttp, LLMError
from agent_runner.tools import ToolSpec

API_VERSION = "2023-06-01"


class AnthropicChat:
    def __init__(self, settings: LLMSettings, model: str) -> None:
        self.settings = settings
        self.model = model
        self.http = JsonHttp(
            provider=settings.provider,
            base_url=settings.base_url,
            headers={"x-api-key": settings.api_key or "", "anthropic-version": API_VERSION},
            timeout=settings.timeout,
            secret=settings.api_key,
        )

    async def complete(self, system: str, turns: list[Turn], tools: tuple[ToolSpec, ...]) -> Reply:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.settings.max_tokens,
            "system": system,
            "messages": [_message(turn) for turn in turns],
            "tools": [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools],
        }
        if self.settings.temperature is not None:
            body["temperature"] = self.settings.temperature
        data = await self.http.post("/messages", body, model=self.model)
        try:
            blocks = list(data["content"])
            text = "\n".join(b["text"] for b in blocks if b.get("type") == "text")
            requests = [
                ToolRequest(
                    id=str(b["id"]),
                    name=str(b["name"]),
                    arguments=b.get("input") if isinstance(b.get("input"), dict) else None,
                    raw_arguments=json.dumps(b.get("input")),
                )
                for b in blocks
                if b.get("type") == "tool_use"
            ]
        except (KeyError, TypeError, AttributeError):
            raise LLMError("anthropic answered without a list of content blocks", retryable=False) from None
        usage = data.get("usage") or {}
        return Reply(
            text=text,
            tool_requests=requests,
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
        )

    async def aclose(self) -> None:
        await self.http.aclose()


def _message(turn: Turn) -> dict[str, Any]:
    if isinstance(turn, UserTurn):
        return {"role": "user", "content": turn.text}
    if isinstance(turn, AssistantTurn):
        content: list[dict[str, Any]] = [{"type": "text", "text": turn.text}] if turn.text else []
        content += [
            {"type": "tool_use", "id": r.id, "name": r.name, "input": r.arguments or {}} for r in turn.tool_requests
        ]
        return {"role": "assistant", "content": content}
    return {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": a.id, "content": a.content, "is_error": a.is_error}
            for a in turn.answers
        ],
    }
