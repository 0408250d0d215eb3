"""A real HTTP server on loopback that speaks OpenAI chat completions or Anthropic Messages,
scripted: each POST gets the next scripted answer, and every request is recorded."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    gate: threading.Event | None = None  # answer only once the test sets it (waits at most 300 s)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up before its answer (a worker stopped mid-call, as the durability
        # tests do on purpose) is expected; anything else is still printed.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeLLM:
    """Answers each POST with the next answer of `script`, or, given `respond`, with what it
    returns for the request's body (for many runs at once, whose requests interleave)."""

    def __init__(self, script: list[Answer], respond: Callable[[dict[str, Any]], Answer] | None = None) -> None:
        self.script = list(script)
        self.respond = respond
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.server = QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    fake.requests.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    if fake.respond is not None:
                        answer = fake.respond(body)
                    elif fake.script:
                        answer = fake.script.pop(0)
                    else:
                        answer = Answer({"error": {"message": "script ended"}}, 500)
                if answer.gate is not None:
                    answer.gate.wait(300)
                time.sleep(answer.delay)
                data = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        return Handler


@contextmanager
def fake_llm(script: list[Answer], respond: Callable[[dict[str, Any]], Answer] | None = None) -> Iterator[FakeLLM]:
    fake = FakeLLM(script, respond)
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join(timeout=10)


# ---- OpenAI chat completions
def openai_tools(*calls: tuple[str, dict[str, Any]], text: str = "") -> Answer:
    tool_calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        for i, (name, args) in enumerate(calls)
    ]
    message = {"role": "assistant", "content": text or None, "tool_calls": tool_calls}
    return Answer(_openai(message, "tool_calls"))


def openai_answer(text: str) -> Answer:
    return Answer(_openai({"role": "assistant", "content": text}, "stop"))


def _openai(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "fake-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def openai_error(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    return Answer({"error": {"message": message, "type": "error"}}, status, headers or {})


# ---- Anthropic Messages
def anthropic_tools(*calls: tuple[str, dict[str, Any]], text: str = "") -> Answer:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": f"toolu_{i}", "name": n, "input": a} for i, (n, a) in enumerate(calls)]
    return Answer(_anthropic(content, "tool_use"))


def anthropic_answer(text: str) -> Answer:
    return Answer(_anthropic([{"type": "text", "text": text}], "end_turn"))


def _anthropic(content: list[dict[str, Any]], stop: str) -> dict[str, Any]:
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "fake-claude",
        "content": content,
        "stop_reason": stop,
        "usage": {"input_tokens": 20, "output_tokens": 7},
    }
