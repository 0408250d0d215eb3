"""One JSON POST to a provider, with retries: 429, 5xx and network errors are retried with
backoff; 401/403, an unknown model and other refusals fail at once with a clear message.
No message built here ever contains the API key."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("agent_runner.llm")

MAX_ATTEMPTS = 5
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
RETRY_AFTER_MAX = 60.0
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx
DETAIL_MAX = 300
# Key-like strings a provider may echo back in an error (OpenAI shows part of a wrong key).
KEY_LIKE = re.compile(r"\b(sk|key|api)[-_][A-Za-z0-9_*\-]{6,}", re.IGNORECASE)


class LLMError(Exception):
    """A provider error, phrased for the run's result. `retryable` is False for a refusal."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class JsonHttp:
    def __init__(self, *, provider: str, base_url: str, headers: dict[str, str], timeout: float, secret: str | None):
        self.provider = provider
        parts = urlsplit(base_url)  # shown in messages: without any user:password@ in it
        self.base_url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        self._secret = secret
        # One client serves all of a worker's model calls at once: no cap on connections (the
        # worker's model-call slots are the cap), a few kept alive between calls.
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
        )

    async def post(self, path: str, body: dict[str, Any], *, model: str) -> dict[str, Any]:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            delay = min(BACKOFF_FIRST * 2 ** (attempt - 1), BACKOFF_MAX) * random.uniform(0.8, 1.2)  # noqa: S311
            try:
                response = await self._client.post(path, json=body)
            except httpx.TransportError as err:  # refused, reset, timed out
                problem = f"cannot reach {self.provider} at {self.base_url}: {type(err).__name__}"
            else:
                if response.is_success:
                    return self._json(response)
                status = response.status_code
                problem = f"{self.provider} answered HTTP {status}: {self._detail(response)}"
                if status in (401, 403):
                    raise LLMError(
                        f"{problem}; check STIGMER_LLM_API_KEY (or the provider's key variable)", retryable=False
                    )
                if status == 404:
                    raise LLMError(
                        f"{problem}; check the model {model!r} (STIGMER_LLM_MODEL or the run's model) "
                        "and STIGMER_LLM_BASE_URL",
                        retryable=False,
                    )
                if status not in RETRY_STATUSES and status < 500:
                    raise LLMError(problem, retryable=False)
                retry_after = _retry_after(response)
                delay = delay if retry_after is None else retry_after
            if attempt == MAX_ATTEMPTS:
                raise LLMError(f"{problem}; gave up after {MAX_ATTEMPTS} attempts", retryable=True)
            log.warning("%s; retrying in %.1fs (attempt %d of %d)", problem, delay, attempt, MAX_ATTEMPTS)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._client.aclose()

    def redact(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        return KEY_LIKE.sub(r"\1-***", text)

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise LLMError(f"{self.provider} answered with something other than a JSON object", retryable=False)
        return data

    def _detail(self, response: httpx.Response) -> str:
        """The provider's own error message: OpenAI/Anthropic {"error": {"message"}}, Ollama {"error": "..."}."""
        try:
            data = response.json()
            error = data.get("error", data) if isinstance(data, dict) else data
            text = error.get("message", error) if isinstance(error, dict) else error
        except ValueError:
            text = response.text
        text = " ".join(str(text).split()) or response.reason_phrase
        return self.redact(text)[:DETAIL_MAX]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)
