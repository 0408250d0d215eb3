"""push-multiarch: one manifest list for linux/amd64 and linux/arm64, and the arm64 image works
under emulation. With Docker (buildx, or BuildKit per platform + docker manifest), then Podman
(build --platform --manifest + manifest push --all)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from tests.helpers import TemporalServer
from tests.publish.conftest import Made, Runtime

# arm64 builds and runs under qemu emulation: minutes each, so make test-all only.
pytestmark = pytest.mark.slow

REPOSITORY = "agent-runner-multiarch"  # per runtime, apart from test_push's
VERSION = "v2.0.0"
FAST_HEALTH = ("--health-interval=2s", "--health-retries=2", "--health-start-period=0s")


@pytest.fixture(scope="module")
def multiarch(runtime: Runtime) -> Made:
    """One `make push-multiarch VERSION=v2.0.0` per runtime for the module (arm64 under qemu is slow)."""
    login = runtime.make("docker-login", env=runtime.login_env())
    assert login.rc == 0, login.output
    made = runtime.make("push-multiarch", f"VERSION={VERSION}", "PLATFORMS=linux/amd64,linux/arm64")
    for arch in ("amd64", "arm64"):
        runtime.remember_image(f"{runtime.image}:{VERSION}-{arch}")
    return made


def platforms(manifest: dict[str, Any]) -> list[str]:
    entries = manifest.get("manifests")
    assert isinstance(entries, list), f"not a list: {manifest}"
    return sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in entries)


@pytest.fixture(scope="module")
def arm64_image(runtime: Runtime, multiarch: Made) -> str:
    """The arm64 image of the list, pulled from the registry by its digest."""
    assert multiarch.rc == 0, multiarch.output[-4000:]
    entries = json.loads(runtime.raw_manifest(VERSION))["manifests"]
    digest = next(m["digest"] for m in entries if m["platform"]["architecture"] == "arm64")
    ref = f"{runtime.image}@{digest}"
    runtime.run("pull", ref)
    runtime.remember_image(ref)
    return ref


def test_push_multiarch_publishes_a_list_of_exactly_amd64_and_arm64(runtime: Runtime, multiarch: Made) -> None:
    assert multiarch.rc == 0, multiarch.output[-4000:]
    for tag in (VERSION, "v2.0", "v2"):
        assert platforms(json.loads(runtime.raw_manifest(tag))) == ["linux/amd64", "linux/arm64"], tag
    assert "latest" not in runtime.registry.tags(runtime.repository)


def test_arm64_image_runs_under_emulation_and_imports_the_worker(runtime: Runtime, arm64_image: str) -> None:
    data = json.loads(runtime.run("image", "inspect", arm64_image).stdout)[0]
    assert data["Architecture"] == "arm64"
    assert data["Config"].get("Healthcheck") or data.get("Healthcheck"), "the arm64 image lost its health check"
    started = time.monotonic()
    out = runtime.run(
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        "--entrypoint",
        "sh",
        arm64_image,
        "-c",
        'uname -m && python -c "import agent_runner.worker; print(agent_runner.worker.__name__)"',
    ).stdout.split()
    print(f"[time] {runtime.name} arm64: uname + import under qemu: {time.monotonic() - started:.1f}s")
    assert out == ["aarch64", "agent_runner.worker"]


def test_arm64_image_is_healthy_against_the_dev_server(
    runtime: Runtime, arm64_image: str, temporal: TemporalServer
) -> None:
    started = time.monotonic()
    container_id = runtime.start(
        "--platform",
        "linux/arm64",
        "--network",
        "host",
        "--env",
        f"TEMPORAL_ADDRESS={temporal.address}",
        "--env",
        f"TEMPORAL_TASK_QUEUE=arm64-{uuid.uuid4().hex[:8]}",
        *FAST_HEALTH,
        image=arm64_image,
    )
    runtime.wait_healthy(container_id, timeout=180)
    print(f"[time] {runtime.name} arm64: healthy under qemu in {time.monotonic() - started:.1f}s")
