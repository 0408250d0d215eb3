"""Configuration: read once from the environment into one typed, validated object.

Temporal connection settings (address, namespace, API key, TLS, gRPC metadata, profiles)
come from the Temporal SDK's own environment configuration, so the variables are the
same ones the `temporal` CLI and every other SDK understand. The rest are STIGMER_*.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent_runner.errors import describe_error
from agent_runner.sandbox import MIB, MODES, NETWORK_MODES, SandboxSettings

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_TASK_QUEUE = "agent_execution_runner"
# /tmp is private to a container (a tmpfs with --read-only). Several workers on one host
# outside containers each need their own STIGMER_HEALTH_FILE.
DEFAULT_HEALTH_FILE = "/tmp/agent-runner-health.json"  # noqa: S108

# Task-queue variables, highest precedence first. The last two are the names an
# existing deployment of this service already sets.
TASK_QUEUE_VARS = ("TEMPORAL_TASK_QUEUE", "TEMPORAL_AGENT_EXECUTION_RUNNER_TASK_QUEUE", "TASK_QUEUE")
# Checked here so that a typo names its variable; the SDK's own message does not.
TLS_FILE_VARS = ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_PATH")
BOOLEAN_VARS = ("TEMPORAL_TLS", "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION")
BOOLEAN_VALUES = ("true", "false", "1", "0")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")

# LLM providers. The provider is unset by default: the worker starts and polls, and each run
# then fails at once with a message naming STIGMER_LLM_PROVIDER.
LLM_PROVIDERS = ("openai", "anthropic", "ollama")
LLM_DEFAULT_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "ollama": "llama3.1"}
LLM_DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "ollama": "http://localhost:11434/v1",
}
# Where each provider's key may come from, highest precedence first.
LLM_KEY_VARS = {
    "openai": ("STIGMER_LLM_API_KEY", "OPENAI_API_KEY"),
    "anthropic": ("STIGMER_LLM_API_KEY", "ANTHROPIC_API_KEY"),
    "ollama": ("STIGMER_LLM_API_KEY",),
}


class ConfigError(Exception):
    """A configuration problem, phrased as one line naming the variable and what is expected."""


@dataclass(frozen=True)
class LLMSettings:
    provider: str  # one of LLM_PROVIDERS
    model: str
    base_url: str  # without a trailing slash, e.g. https://api.openai.com/v1
    api_key: str | None = field(repr=False)
    max_tokens: int
    temperature: float | None  # None: the provider's default
    timeout: float  # seconds for one HTTP request to the provider


@dataclass(frozen=True)
class Deployment:
    """A Worker Deployment version: the worker polls as this build of this deployment."""

    name: str  # TEMPORAL_DEPLOYMENT_NAME
    build_id: str  # TEMPORAL_WORKER_BUILD_ID, else STIGMER_BUILD_ID (the image's VERSION)


@dataclass(frozen=True)
class Settings:
    # Keyword arguments for temporalio.client.Client.connect. Kept out of repr: it may hold the API key.
    connect: Mapping[str, Any] = field(repr=False)
    task_queue: str
    max_concurrent_activities: int
    drain_timeout: float
    workspace_root: Path
    health_file: Path
    identity: str | None
    log_level: str
    log_format: str
    llm: LLMSettings | None  # None: no provider configured, runs fail with a message saying what to set
    command_timeout: float  # the longest a tool command may run, seconds
    metrics_address: str | None = None  # host:port of the Prometheus endpoint; None: no metrics
    deployment: Deployment | None = None  # Worker Deployment versioning; None: unversioned
    notes: tuple[str, ...] = ()  # precedence decisions worth one log line at start-up
    # Model calls wait on the provider, not on this machine: many at once cost little.
    max_concurrent_model_calls: int = 500
    volume_wait: float = 300.0  # seconds a run's tool call waits for a worker with its volume
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)  # how tool commands are confined and bounded

    @property
    def address(self) -> str:
        return str(self.connect["target_host"])

    @property
    def namespace(self) -> str:
        return str(self.connect.get("namespace", DEFAULT_NAMESPACE))


@dataclass(frozen=True)
class ClientSettings:
    """What a client that starts runs needs: the same Temporal variables as the worker."""

    connect: Mapping[str, Any] = field(repr=False)
    task_queue: str


def load_client_settings(env: Mapping[str, str] | None = None) -> ClientSettings:
    env = dict(os.environ if env is None else env)
    notes: list[str] = []
    return ClientSettings(connect=_temporal_connect_config(env, notes), task_queue=_task_queue(env, notes))


def load_health_file(env: Mapping[str, str] | None = None) -> Path:
    """STIGMER_HEALTH_FILE alone, as load_settings reads it: the liveness probe needs nothing else."""
    return _path(dict(os.environ if env is None else env), "STIGMER_HEALTH_FILE", DEFAULT_HEALTH_FILE)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    notes: list[str] = []
    _secret_from_file(env, "STIGMER_LLM_API_KEY")
    task_queue = _task_queue(env, notes)
    return Settings(
        connect=_temporal_connect_config(env, notes),
        task_queue=task_queue,
        max_concurrent_activities=_int(env, "STIGMER_MAX_CONCURRENT_ACTIVITIES", 10, minimum=1),
        drain_timeout=_seconds(env, "STIGMER_DRAIN_TIMEOUT", 8.0),
        workspace_root=_path(env, "STIGMER_WORKSPACE_ROOT", "/workspace"),
        health_file=_path(env, "STIGMER_HEALTH_FILE", DEFAULT_HEALTH_FILE),
        identity=_optional(env, "STIGMER_WORKER_IDENTITY"),
        log_level=_choice(env, "STIGMER_LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
        log_format=_choice(env, "STIGMER_LOG_FORMAT", "text", LOG_FORMATS),
        llm=load_llm_settings(env, notes),
        command_timeout=_seconds(env, "STIGMER_COMMAND_TIMEOUT", 120.0, minimum=1),
        metrics_address=_listen_address(env, "STIGMER_METRICS_ADDRESS"),
        deployment=_deployment(env, notes),
        notes=tuple(notes),
        max_concurrent_model_calls=_int(env, "STIGMER_MAX_CONCURRENT_MODEL_CALLS", 500, minimum=1),
        volume_wait=_seconds(env, "STIGMER_VOLUME_WAIT", 300.0, minimum=1),
        sandbox=load_sandbox_settings(env),
    )


def load_sandbox_settings(env: Mapping[str, str]) -> SandboxSettings:
    return SandboxSettings(
        mode=_choice(env, "STIGMER_SANDBOX", "best-effort", MODES),
        network=_choice(env, "STIGMER_COMMAND_NETWORK", "on", NETWORK_MODES) == "on",
        max_file_size=_int(env, "STIGMER_COMMAND_MAX_FILE_MB", 1024, minimum=1) * MIB,
        max_open_files=_int(env, "STIGMER_COMMAND_MAX_OPEN_FILES", 1024, minimum=16),
        max_processes=_int(env, "STIGMER_COMMAND_MAX_PROCESSES", 512, minimum=8),
    )


def load_llm_settings(env: Mapping[str, str], notes: list[str]) -> LLMSettings | None:
    raw = env.get("STIGMER_LLM_PROVIDER", "").strip()
    if not raw:
        configured = sorted(name for name in env if name.startswith("STIGMER_LLM_") and env[name].strip())
        if configured:
            notes.append(f"{', '.join(configured)} set but STIGMER_LLM_PROVIDER is not: runs will fail until it is set")
        return None
    provider = _choice(env, "STIGMER_LLM_PROVIDER", "", LLM_PROVIDERS)
    base_url = _url(env, "STIGMER_LLM_BASE_URL")
    if provider == "ollama" and base_url is None:
        base_url = _url(env, "OLLAMA_BASE_URL")
        if base_url is not None and not base_url.endswith("/v1"):
            base_url += "/v1"  # Ollama's own URL; its OpenAI-compatible API is under /v1
    key_vars = LLM_KEY_VARS[provider]
    api_key = next((env[name].strip() for name in key_vars if env.get(name, "").strip()), None)
    # A custom base URL for "openai" is usually a local server (vLLM, LM Studio) that needs no key.
    needs_key = provider == "anthropic" or (provider == "openai" and base_url is None)
    if needs_key and api_key is None:
        raise ConfigError(
            f"{key_vars[0]}: STIGMER_LLM_PROVIDER={provider} needs an API key; set {' or '.join(key_vars)}"
        )
    return LLMSettings(
        provider=provider,
        model=env.get("STIGMER_LLM_MODEL", "").strip() or LLM_DEFAULT_MODELS[provider],
        base_url=base_url or LLM_DEFAULT_BASE_URLS[provider],
        api_key=api_key,
        max_tokens=_int(env, "STIGMER_LLM_MAX_TOKENS", 4096, minimum=1),
        temperature=_number(env, "STIGMER_LLM_TEMPERATURE", 0, 2, "a number"),
        timeout=_seconds(env, "STIGMER_LLM_TIMEOUT", 300.0, minimum=1),
    )


def _listen_address(env: Mapping[str, str], name: str) -> str | None:
    value = _optional(env, name)
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name}: expected host:port to listen on (e.g. 0.0.0.0:9464), got {value!r}")
    return value


def _deployment(env: Mapping[str, str], notes: list[str]) -> Deployment | None:
    """The Temporal Worker Controller sets both TEMPORAL_ variables; the image sets STIGMER_BUILD_ID."""
    name = _optional(env, "TEMPORAL_DEPLOYMENT_NAME")
    build_id = _optional(env, "TEMPORAL_WORKER_BUILD_ID")
    if name is None:
        if build_id is not None:
            notes.append("TEMPORAL_WORKER_BUILD_ID is set but TEMPORAL_DEPLOYMENT_NAME is not: running unversioned")
        return None
    build_id = build_id or _optional(env, "STIGMER_BUILD_ID")
    if build_id is None:
        raise ConfigError(
            "TEMPORAL_WORKER_BUILD_ID: TEMPORAL_DEPLOYMENT_NAME is set, so a build id is needed; "
            "set TEMPORAL_WORKER_BUILD_ID (or STIGMER_BUILD_ID, which the image sets to its version)"
        )
    return Deployment(name=name, build_id=build_id)


def _url(env: Mapping[str, str], name: str) -> str | None:
    value = _optional(env, name)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name}: expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _temporal_connect_config(env: dict[str, str], notes: list[str]) -> dict[str, Any]:
    # Imported here so that `--help`-style paths and unit tests of the other fields stay light.
    from temporalio.envconfig import ClientConfigProfile

    for name in TLS_FILE_VARS:
        _optional_path(env, name)
    for name in BOOLEAN_VARS:
        if name in env and env[name].strip().lower() not in BOOLEAN_VALUES:
            raise ConfigError(f"{name}: expected true or false, got {env[name]!r}")
    _secret_from_file(env, "TEMPORAL_API_KEY")
    legacy = _optional(env, "TEMPORAL_SERVICE_ADDRESS")
    if legacy and _optional(env, "TEMPORAL_ADDRESS"):
        notes.append("TEMPORAL_ADDRESS is set, so TEMPORAL_SERVICE_ADDRESS is ignored")
    elif legacy:
        env["TEMPORAL_ADDRESS"] = legacy
    try:
        profile = ClientConfigProfile.load(
            profile=_optional(env, "TEMPORAL_PROFILE"),
            config_source=_optional_path(env, "TEMPORAL_CONFIG_FILE"),
            override_env_vars=env,
        )
        connect: dict[str, Any] = dict(profile.to_client_connect_config())
    except ConfigError:
        raise
    except Exception as err:  # the SDK raises plain RuntimeError/ValueError for bad input
        raise ConfigError(f"Temporal client configuration (TEMPORAL_*): {describe_error(err)}") from None
    connect.setdefault("target_host", DEFAULT_ADDRESS)
    connect.setdefault("namespace", DEFAULT_NAMESPACE)
    _check_address(str(connect["target_host"]))
    if not str(connect["namespace"]).strip():
        raise ConfigError("TEMPORAL_NAMESPACE: expected a namespace name, got an empty value")
    return connect


def _secret_from_file(env: dict[str, str], name: str) -> None:
    """NAME_FILE names a file holding NAME's value (a mounted secret), which keeps the value
    out of `docker inspect` and the process environment of anything that lists it."""
    path = _optional(env, f"{name}_FILE")
    if path is None:
        return
    if _optional(env, name):
        raise ConfigError(f"{name}_FILE: expected {name} to be unset when {name}_FILE is set, but both are")
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"{name}_FILE: expected a readable file, got {path!r} ({err.strerror})") from None
    if not value:
        raise ConfigError(f"{name}_FILE: expected a file holding the value, got an empty file {path!r}")
    env[name] = value


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"TEMPORAL_ADDRESS: expected host:port (e.g. {DEFAULT_ADDRESS}), got {address!r}")


def _task_queue(env: Mapping[str, str], notes: list[str]) -> str:
    present = [name for name in TASK_QUEUE_VARS if name in env]
    for name in present:
        if not env[name].strip():
            raise ConfigError(f"{name}: expected a task queue name, got an empty value")
    if not present:
        return DEFAULT_TASK_QUEUE
    winner = present[0]
    if len(present) > 1:
        notes.append(f"task queue taken from {winner}; also set and ignored: {', '.join(present[1:])}")
    return env[winner].strip()


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _optional_path(env: Mapping[str, str], name: str) -> Path | None:
    value = _optional(env, name)
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"{name}: expected a readable file, got {value!r} (not found)")
    return path


def _path(env: Mapping[str, str], name: str, default: str) -> Path:
    value = env.get(name, default).strip()
    if not value.startswith("/"):
        raise ConfigError(f"{name}: expected an absolute path, got {value!r}")
    return Path(value)


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"{name}: expected a whole number >= {minimum}, got {raw!r}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0) -> float:
    value = _number(env, name, minimum, 3600, "seconds")
    return default if value is None else value


def _number(env: Mapping[str, str], name: str, low: float, high: float, what: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise ConfigError(f"{name}: expected {what} between {low:g} and {high:g}, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
    raw = env.get(name, "").strip() or default
    value = raw.upper() if upper else raw.lower()
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {raw!r}")
    return value
