"""docker-login and push-image against a real registry, with Docker and then with Podman."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.helpers import TemporalServer
from tests.publish.conftest import Made, Runtime

VERSION = "v1.2.3"
SEMVER_TAGS = {"v1.2.3", "v1.2", "v1"}
FAST_HEALTH = ("--health-interval=1s", "--health-retries=2", "--health-start-period=0s")


@pytest.fixture(scope="module")
def built(runtime: Runtime) -> Runtime:
    """IMAGE:v1.2.3 built by `make build-image` with this runtime (BuildKit / podman --format docker)."""
    made = runtime.make("build-image", f"VERSION={VERSION}")
    runtime.remember_image(f"{runtime.image}:{VERSION}")
    assert made.rc == 0, made.output[-3000:]
    return runtime


@pytest.fixture(scope="module")
def pushed(built: Runtime) -> Iterator[Made]:
    """Logged in, then `make push-image VERSION=v1.2.3`, once per runtime."""
    login = built.make("docker-login", env=built.login_env())
    assert login.rc == 0, login.output
    made = built.make("push-image", f"VERSION={VERSION}")
    for tag in SEMVER_TAGS:
        built.remember_image(f"{built.image}:{tag}")
    yield made


def logout(runtime: Runtime) -> None:
    runtime.run("logout", runtime.registry.host, check=False)


def test_push_without_login_fails_and_says_to_run_docker_login(built: Runtime) -> None:
    logout(built)
    made = built.make("push-image", f"VERSION={VERSION}")
    assert made.rc != 0
    assert f"not logged in to {built.registry.host}" in made.stderr
    assert "run make docker-login" in made.stderr
    assert built.registry.tags(built.repository) == set()


def test_login_without_credentials_names_the_variables(runtime: Runtime) -> None:
    made = runtime.make("docker-login")
    assert made.rc != 0
    assert "set REGISTRY_USER and REGISTRY_TOKEN (or GITHUB_ACTOR and GITHUB_TOKEN)" in made.stderr


def test_login_with_a_wrong_token_fails(runtime: Runtime) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    made = runtime.make("docker-login", env=runtime.login_env(token=wrong))
    assert made.rc != 0
    assert f"login to {runtime.registry.host} as publisher failed" in made.stderr
    assert wrong not in made.output


def test_login_works_and_never_shows_the_token(runtime: Runtime) -> None:
    made = runtime.make("docker-login", env=runtime.login_env())
    assert made.rc == 0, made.output
    assert f"logged in to {runtime.registry.host}" in made.stdout
    assert runtime.registry.token not in made.output
    assert runtime.registry.host in json.loads(runtime.authfile.read_text())["auths"]


def test_push_image_pushes_the_version_and_its_semver_tags_not_latest(pushed: Made, built: Runtime) -> None:
    assert pushed.rc == 0, pushed.output[-3000:]
    tags = built.registry.tags(built.repository)
    # Besides the release tags: the SBOM attached to the pushed digest, sha256-HEX.sbom.
    sboms = {tag for tag in tags if tag.startswith("sha256-") and tag.endswith(".sbom")}
    assert len(sboms) == 1, tags
    assert tags - sboms == SEMVER_TAGS


def test_pulled_back_image_keeps_its_health_check_and_runs_healthy(
    pushed: Made, built: Runtime, temporal: TemporalServer
) -> None:
    assert pushed.rc == 0, pushed.output[-3000:]
    ref = f"{built.image}:{VERSION}"
    image_id = built.image_id(ref)
    built.run("rmi", ref, *(f"{built.image}:{tag}" for tag in SEMVER_TAGS - {VERSION}))
    assert built.image_id(ref) is None, "the local image is still there"
    assert image_id
    left = {line.removeprefix("sha256:") for line in built.run("images", "-q", "--no-trunc").stdout.split()}
    assert image_id.removeprefix("sha256:") not in left

    started = time.monotonic()
    built.run("pull", ref)
    print(f"[time] {built.name}: pull {ref}: {time.monotonic() - started:.1f}s")
    built.remember_image(ref)
    data = json.loads(built.run("image", "inspect", ref).stdout)[0]
    # Docker has it in Config; Podman at the top (and only when the image kept the Docker format).
    health = data["Config"].get("Healthcheck") or data.get("Healthcheck")
    assert health, f"no health check in the pulled image: {data['Config']}"
    assert health["Test"] == ["CMD", "python", "/app/healthcheck.py"]

    started = time.monotonic()
    container_id = built.start(
        "--network",
        "host",
        "--env",
        f"TEMPORAL_ADDRESS={temporal.address}",
        "--env",
        f"TEMPORAL_TASK_QUEUE=publish-{uuid.uuid4().hex[:8]}",
        *FAST_HEALTH,
        image=ref,
    )
    built.wait_healthy(container_id, timeout=90)
    print(f"[time] {built.name}: pulled image healthy in {time.monotonic() - started:.1f}s")
