from __future__ import annotations

from pathlib import Path

import pytest

from agent_runner.config import DEFAULT_ADDRESS, DEFAULT_TASK_QUEUE, ConfigError, load_settings


def test_defaults_need_no_environment() -> None:
    settings = load_settings({})
    assert settings.address == DEFAULT_ADDRESS
    assert settings.namespace == "default"
    assert settings.task_queue == DEFAULT_TASK_QUEUE
    assert settings.workspace_root == Path("/workspace")
    assert settings.log_format == "text"


def test_temporal_address_wins_over_legacy_service_address() -> None:
    settings = load_settings({"TEMPORAL_ADDRESS": "new:7233", "TEMPORAL_SERVICE_ADDRESS": "old:7233"})
    assert settings.address == "new:7233"
    assert any("TEMPORAL_SERVICE_ADDRESS is ignored" in note for note in settings.notes)


def test_legacy_service_address_used_alone() -> None:
    assert load_settings({"TEMPORAL_SERVICE_ADDRESS": "old:7233"}).address == "old:7233"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TASK_QUEUE": "c"}, "c"),
        ({"TEMPORAL_AGENT_EXECUTION_RUNNER_TASK_QUEUE": "b", "TASK_QUEUE": "c"}, "b"),
        ({"TEMPORAL_TASK_QUEUE": "a", "TEMPORAL_AGENT_EXECUTION_RUNNER_TASK_QUEUE": "b", "TASK_QUEUE": "c"}, "a"),
    ],
)
def test_task_queue_precedence(env: dict[str, str], expected: str) -> None:
    assert load_settings(env).task_queue == expected


def test_api_key_turns_on_tls_and_stays_out_of_repr() -> None:
    settings = load_settings({"TEMPORAL_API_KEY": "sentinel-key-123", "TEMPORAL_ADDRESS": "ns.tmprl.cloud:7233"})
    assert settings.connect["api_key"] == "sentinel-key-123"
    assert settings.connect["tls"] is True
    assert "sentinel-key-123" not in repr(settings)


def test_grpc_metadata_from_environment() -> None:
    settings = load_settings({"TEMPORAL_GRPC_META_X_TENANT": "blue"})
    assert dict(settings.connect["rpc_metadata"]) == {"x-tenant": "blue"}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TEMPORAL_ADDRESS": "no-port"}, "TEMPORAL_ADDRESS"),
        ({"TEMPORAL_ADDRESS": "host:99999"}, "TEMPORAL_ADDRESS"),
        ({"TEMPORAL_NAMESPACE": "  "}, "TEMPORAL_NAMESPACE"),
        ({"TEMPORAL_TASK_QUEUE": ""}, "TEMPORAL_TASK_QUEUE"),
        ({"TEMPORAL_TLS": "maybe"}, "TEMPORAL_TLS"),
        ({"TEMPORAL_TLS_CLIENT_CERT_PATH": "/nonexistent/cert.pem"}, "TEMPORAL_TLS_CLIENT_CERT_PATH"),
        ({"TEMPORAL_CONFIG_FILE": "/nonexistent/temporal.toml"}, "TEMPORAL_CONFIG_FILE"),
        ({"STIGMER_MAX_CONCURRENT_ACTIVITIES": "0"}, "STIGMER_MAX_CONCURRENT_ACTIVITIES"),
        ({"STIGMER_MAX_CONCURRENT_ACTIVITIES": "ten"}, "STIGMER_MAX_CONCURRENT_ACTIVITIES"),
        ({"STIGMER_DRAIN_TIMEOUT": "-1"}, "STIGMER_DRAIN_TIMEOUT"),
        ({"STIGMER_LOG_LEVEL": "LOUD"}, "STIGMER_LOG_LEVEL"),
        ({"STIGMER_LOG_FORMAT": "xml"}, "STIGMER_LOG_FORMAT"),
        ({"STIGMER_WORKSPACE_ROOT": "relative/dir"}, "STIGMER_WORKSPACE_ROOT"),
        ({"STIGMER_HEALTH_FILE": "health.json"}, "STIGMER_HEALTH_FILE"),
    ],
)
def test_bad_value_names_its_variable_in_one_line(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert message.startswith(f"{variable}: expected"), message
    assert "\n" not in message


def test_log_level_is_case_insensitive() -> None:
    assert load_settings({"STIGMER_LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_api_key_can_come_from_a_mounted_file(tmp_path: Path) -> None:
    secret = tmp_path / "temporal_api_key"
    secret.write_text("file-key-456\n")
    settings = load_settings({"TEMPORAL_API_KEY_FILE": str(secret), "TEMPORAL_ADDRESS": "ns.tmprl.cloud:7233"})
    assert settings.connect["api_key"] == "file-key-456"
    assert settings.connect["tls"] is True


@pytest.mark.parametrize(
    ("content", "also_set", "expected"),
    [
        (None, False, "expected a readable file"),
        ("", False, "expected a file holding the value, got an empty file"),
        ("k", True, "expected TEMPORAL_API_KEY to be unset"),
    ],
)
def test_api_key_file_problems_name_the_variable(
    tmp_path: Path, content: str | None, also_set: bool, expected: str
) -> None:
    secret = tmp_path / "key"
    if content is not None:
        secret.write_text(content)
    env = {"TEMPORAL_API_KEY_FILE": str(secret)}
    if also_set:
        env["TEMPORAL_API_KEY"] = "inline"
    with pytest.raises(ConfigError, match=f"^TEMPORAL_API_KEY_FILE: {expected}"):
        load_settings(env)


def test_llm_key_can_come_from_a_mounted_file(tmp_path: Path) -> None:
    secret = tmp_path / "llm_key"
    secret.write_text("sk-from-file\n")
    settings = load_settings({"STIGMER_LLM_PROVIDER": "anthropic", "STIGMER_LLM_API_KEY_FILE": str(secret)})
    assert settings.llm is not None
    assert settings.llm.api_key == "sk-from-file"
    assert "sk-from-file" not in repr(settings)
