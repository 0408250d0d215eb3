"""LLM configuration: defaults, one-line errors naming the variable, exit code 2, no key in repr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_runner.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-unit-test-secret-0123456789"


def llm(**env: str):  # type: ignore[no-untyped-def]
    return load_settings(env).llm


def test_no_provider_means_no_llm_and_the_worker_still_starts() -> None:
    settings = load_settings({})
    assert settings.llm is None
    assert settings.notes == ()


def test_llm_variables_without_a_provider_get_a_note() -> None:
    settings = load_settings({"STIGMER_LLM_MODEL": "gpt-4o"})
    assert settings.llm is None
    assert settings.notes == ("STIGMER_LLM_MODEL set but STIGMER_LLM_PROVIDER is not: runs will fail until it is set",)


def test_openai_defaults_and_key_fallback() -> None:
    settings = llm(STIGMER_LLM_PROVIDER="openai", OPENAI_API_KEY=KEY)
    assert (settings.provider, settings.model, settings.base_url) == (
        "openai",
        "gpt-4o-mini",
        "https://api.openai.com/v1",
    )
    assert settings.api_key == KEY
    assert (settings.max_tokens, settings.temperature, settings.timeout) == (4096, None, 300.0)


def test_stigmer_key_wins_over_the_provider_key() -> None:
    assert llm(STIGMER_LLM_PROVIDER="anthropic", STIGMER_LLM_API_KEY="a", ANTHROPIC_API_KEY="b").api_key == "a"


def test_anthropic_does_not_take_the_openai_key() -> None:
    with pytest.raises(ConfigError) as caught:
        llm(STIGMER_LLM_PROVIDER="anthropic", OPENAI_API_KEY=KEY)
    assert str(caught.value) == (
        "STIGMER_LLM_API_KEY: STIGMER_LLM_PROVIDER=anthropic needs an API key; "
        "set STIGMER_LLM_API_KEY or ANTHROPIC_API_KEY"
    )


def test_openai_at_a_custom_url_needs_no_key() -> None:
    settings = llm(STIGMER_LLM_PROVIDER="OpenAI", STIGMER_LLM_BASE_URL="http://vllm:8000/v1/", STIGMER_LLM_MODEL="qwen")
    assert (settings.provider, settings.base_url, settings.api_key, settings.model) == (
        "openai",
        "http://vllm:8000/v1",
        None,
        "qwen",
    )


def test_ollama_uses_ollama_base_url_and_its_v1_api() -> None:
    assert llm(STIGMER_LLM_PROVIDER="ollama").base_url == "http://localhost:11434/v1"
    assert llm(STIGMER_LLM_PROVIDER="ollama", OLLAMA_BASE_URL="http://gpu:11434").base_url == "http://gpu:11434/v1"
    assert llm(
        STIGMER_LLM_PROVIDER="ollama", OLLAMA_BASE_URL="http://a:1", STIGMER_LLM_BASE_URL="http://b:2/v1"
    ).base_url == ("http://b:2/v1")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("STIGMER_LLM_PROVIDER", "gemini", "expected one of openai, anthropic, ollama"),
        ("STIGMER_LLM_BASE_URL", "api.openai.com", "expected an http:// or https:// URL"),
        ("STIGMER_LLM_MAX_TOKENS", "0", "expected a whole number >= 1"),
        ("STIGMER_LLM_MAX_TOKENS", "lots", "expected a whole number >= 1"),
        ("STIGMER_LLM_TEMPERATURE", "3", "expected a number between 0 and 2"),
        ("STIGMER_LLM_TEMPERATURE", "warm", "expected a number between 0 and 2"),
        ("STIGMER_LLM_TIMEOUT", "0", "expected seconds between 1 and 3600"),
        ("OLLAMA_BASE_URL", "gpu:11434", "expected an http:// or https:// URL"),
        ("STIGMER_COMMAND_TIMEOUT", "-5", "expected seconds between 1 and 3600"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_variable(name: str, value: str, expected: str) -> None:
    env = {"STIGMER_LLM_PROVIDER": "ollama", name: value}
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert message.startswith(f"{name}: {expected}")
    assert "\n" not in message


def test_the_key_is_in_no_repr() -> None:
    settings = load_settings({"STIGMER_LLM_PROVIDER": "openai", "STIGMER_LLM_API_KEY": KEY})
    assert settings.llm is not None and settings.llm.api_key == KEY
    assert KEY not in repr(settings)
    assert KEY not in str(settings.llm)


def _start_worker(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STIGMER_", "TEMPORAL_", "OPENAI_", "ANTHROPIC_"))}
    base.update(STIGMER_WORKSPACE_ROOT=str(tmp_path), STIGMER_HEALTH_FILE=str(tmp_path / "health.json"), **env)
    return subprocess.run(
        [sys.executable, "-m", "agent_runner"], env=base, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_missing_key_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = _start_worker({"STIGMER_LLM_PROVIDER": "openai"}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "agent-runner: configuration error: STIGMER_LLM_API_KEY: STIGMER_LLM_PROVIDER=openai needs an API key; "
        "set STIGMER_LLM_API_KEY or OPENAI_API_KEY"
    )


def test_bad_temperature_exits_2_without_showing_the_key(tmp_path: Path) -> None:
    result = _start_worker(
        {"STIGMER_LLM_PROVIDER": "anthropic", "ANTHROPIC_API_KEY": KEY, "STIGMER_LLM_TEMPERATURE": "hot"}, tmp_path
    )
    assert result.returncode == 2
    assert "STIGMER_LLM_TEMPERATURE: expected a number between 0 and 2, got 'hot'" in result.stderr
    assert KEY not in result.stderr + result.stdout
