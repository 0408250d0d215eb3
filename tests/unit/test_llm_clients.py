"""The provider clients against a real loopback HTTP server that speaks their protocol."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent_runner.config import LLMSettings
from agent_runner.llm import AssistantTurn, ChatModel, Reply, ToolAnswer, ToolTurn, Turn, UserTurn, make_chat_model
from agent_runner.llm import http as llm_http
from agent_runner.llm.http import LLMError
from agent_runner.tools import TOOL_SPECS
from tests.fake_llm import (
    FakeLLM,
    anthropic_tools,
    fake_llm,
    openai_answer,
    openai_error,
    openai_tools,
)

KEY = "sk-client-test-secret-0123456789"


@pytest.fixture(autouse=True)
def no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake server is on loopback: a proxy set in the environment must not be asked for it."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


def settings(provider: str, url: str, **changes: object) -> LLMSettings:
    values: dict[str, object] = {
        "provider": provider,
        "model": "fake-model",
        "base_url": url,
        "api_key": KEY,
        "max_tokens": 128,
        "temperature": None,
        "timeout": 10.0,
    }
    values.update(changes)
    return LLMSettings(**values)  # type: ignore[arg-type]


def complete(model: ChatModel, turns: list[Turn] | None = None) -> Reply:
    async def go() -> Reply:
        try:
            return await model.complete("system text", turns or [UserTurn("hi")], TOOL_SPECS)
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_openai_request_and_tool_calls() -> None:
    with fake_llm([openai_tools(("write_file", {"path": "a.txt", "content": "x"}), text="writing")]) as fake:
        model = make_chat_model(settings("openai", fake.url, temperature=0.2), "override-model")
        turns: list[Turn] = [
            UserTurn("hi"),
            AssistantTurn("", []),
            ToolTurn([ToolAnswer("call_9", "done")]),
        ]
        reply = complete(model, turns)
    assert reply.text == "writing"
    assert [(r.id, r.name, r.arguments) for r in reply.tool_requests] == [
        ("call_0", "write_file", {"path": "a.txt", "content": "x"})
    ]
    assert (reply.input_tokens, reply.output_tokens) == (10, 5)
    seen = fake.requests[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.body["model"] == "override-model"
    assert seen.body["max_tokens"] == 128 and seen.body["temperature"] == 0.2
    assert [m["role"] for m in seen.body["messages"]] == ["system", "user", "assistant", "tool"]
    assert seen.body["messages"][3] == {"role": "tool", "tool_call_id": "call_9", "content": "done"}
    assert {t["function"]["name"] for t in seen.body["tools"]} == {
        "list_files",
        "read_file",
        "write_file",
        "edit_file",
        "run_command",
    }


def test_openai_without_a_key_sends_no_authorization() -> None:
    with fake_llm([openai_answer("ok")]) as fake:
        complete(make_chat_model(settings("ollama", fake.url, api_key=None)))
    assert "authorization" not in fake.requests[0].headers


def test_anthropic_request_and_tool_use() -> None:
    with fake_llm([anthropic_tools(("run_command", {"command": "ls"}), text="listing")]) as fake:
        model = make_chat_model(settings("anthropic", fake.url))
        turns: list[Turn] = [
            UserTurn("hi"),
            AssistantTurn("ok", []),
            ToolTurn([ToolAnswer("toolu_1", "refused", is_error=True)]),
        ]
        reply = complete(model, turns)
    assert reply.text == "listing"
    assert [(r.id, r.name, r.arguments) for r in reply.tool_requests] == [("toolu_0", "run_command", {"command": "ls"})]
    assert (reply.input_tokens, reply.output_tokens) == (20, 7)
    seen = fake.requests[0]
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == KEY and seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    assert seen.body["system"] == "system text" and seen.body["max_tokens"] == 128
    assert seen.body["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "refused", "is_error": True}],
    }
    assert {t["name"] for t in seen.body["tools"]} >= {"write_file", "run_command"}


def test_429_is_retried_after_the_time_the_server_asks() -> None:
    with fake_llm([openai_error(429, "slow down", {"retry-after": "0.5"}), openai_answer("ok")]) as fake:
        started = time.monotonic()
        reply = complete(make_chat_model(settings("openai", fake.url)))
    assert reply.text == "ok"
    assert len(fake.requests) == 2
    assert time.monotonic() - started >= 0.5


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same backoff, a hundred times shorter, so that several retries fit in a unit test."""
    monkeypatch.setattr(llm_http, "BACKOFF_FIRST", 0.01)


@pytest.mark.usefixtures("quick_backoff")
def test_5xx_is_retried_with_backoff() -> None:
    with fake_llm([openai_error(503, "overloaded"), openai_error(500, "oops"), openai_answer("ok")]) as fake:
        reply = complete(make_chat_model(settings("openai", fake.url)))
    assert reply.text == "ok"
    assert len(fake.requests) == 3


def test_retries_give_up_after_five_attempts() -> None:
    script = [openai_error(429, "slow down", {"retry-after": "0"}) for _ in range(6)]
    with fake_llm(script) as fake, pytest.raises(LLMError) as caught:
        complete(make_chat_model(settings("openai", fake.url)))
    assert len(fake.requests) == 5
    assert caught.value.retryable
    assert str(caught.value) == "openai answered HTTP 429: slow down; gave up after 5 attempts"


@pytest.mark.parametrize(
    ("status", "echo", "shown"),
    [(401, KEY, "***"), (403, "sk-clien**********6789", "sk-***")],  # all of the key, or OpenAI's partial echo
)
def test_refused_key_fails_at_once_without_showing_the_key(status: int, echo: str, shown: str) -> None:
    with (
        fake_llm([openai_error(status, f"Incorrect API key provided: {echo}")]) as fake,
        pytest.raises(LLMError) as caught,
    ):
        complete(make_chat_model(settings("openai", fake.url)))
    assert len(fake.requests) == 1
    message = str(caught.value)
    assert not caught.value.retryable
    assert message.startswith(f"openai answered HTTP {status}: Incorrect API key provided: {shown};")
    assert message.endswith("check STIGMER_LLM_API_KEY (or the provider's key variable)")
    assert KEY not in message and KEY[3:] not in message


def test_unknown_model_fails_at_once_naming_the_model() -> None:
    with fake_llm([openai_error(404, "The model `nope` does not exist")]) as fake, pytest.raises(LLMError) as caught:
        complete(make_chat_model(settings("openai", fake.url), "nope"))
    assert len(fake.requests) == 1
    assert "HTTP 404: The model `nope` does not exist; check the model 'nope' (STIGMER_LLM_MODEL" in str(caught.value)


@pytest.mark.usefixtures("quick_backoff")
def test_unreachable_provider_is_retried_then_named() -> None:
    fake = FakeLLM([])  # bound, never served, then closed: connections are refused
    url = fake.url
    fake.server.server_close()
    with_password = url.replace("http://", "http://user:hunter2@")
    with pytest.raises(LLMError) as caught:
        complete(make_chat_model(settings("openai", with_password, timeout=2.0)))
    assert str(caught.value) == f"cannot reach openai at {url}: ConnectError; gave up after 5 attempts"
