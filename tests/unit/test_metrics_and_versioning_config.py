"""STIGMER_METRICS_ADDRESS and the Worker Deployment variables: read, defaulted, refused with one line."""

from __future__ import annotations

import pytest

from agent_runner.config import ConfigError, Deployment, load_settings


def test_metrics_are_off_and_the_worker_unversioned_by_default() -> None:
    settings = load_settings({})
    assert settings.metrics_address is None
    assert settings.deployment is None


def test_metrics_address_is_read() -> None:
    assert load_settings({"STIGMER_METRICS_ADDRESS": "0.0.0.0:9464"}).metrics_address == "0.0.0.0:9464"


@pytest.mark.parametrize("value", ["9464", "0.0.0.0", ":9464", "0.0.0.0:http", "0.0.0.0:70000"])
def test_bad_metrics_address_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^STIGMER_METRICS_ADDRESS: expected host:port"):
        load_settings({"STIGMER_METRICS_ADDRESS": value})


def test_worker_controller_variables_give_the_version() -> None:
    env = {
        "TEMPORAL_DEPLOYMENT_NAME": "agent-runner",
        "TEMPORAL_WORKER_BUILD_ID": "abc123",
        "STIGMER_BUILD_ID": "1.2.3",
    }
    assert load_settings(env).deployment == Deployment(name="agent-runner", build_id="abc123")


def test_image_version_is_the_default_build_id() -> None:
    env = {"TEMPORAL_DEPLOYMENT_NAME": "agent-runner", "STIGMER_BUILD_ID": "1.2.3"}
    assert load_settings(env).deployment == Deployment(name="agent-runner", build_id="1.2.3")


def test_deployment_name_without_any_build_id_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^TEMPORAL_WORKER_BUILD_ID: "):
        load_settings({"TEMPORAL_DEPLOYMENT_NAME": "agent-runner"})


def test_build_id_alone_leaves_the_worker_unversioned_and_says_so() -> None:
    settings = load_settings({"TEMPORAL_WORKER_BUILD_ID": "abc123", "STIGMER_BUILD_ID": "1.2.3"})
    assert settings.deployment is None
    assert any("TEMPORAL_DEPLOYMENT_NAME is not" in note for note in settings.notes)


def test_a_taken_metrics_port_is_a_configuration_error_naming_the_variable() -> None:
    import socket

    from agent_runner.metrics import make_runtime

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(
            ConfigError, match=rf"^STIGMER_METRICS_ADDRESS: cannot serve metrics at {address}: .*in use"
        ):
            make_runtime(load_settings({"STIGMER_METRICS_ADDRESS": address}))
