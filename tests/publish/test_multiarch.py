"""push-multiarch: one manifest list for linux/amd64 and linux/arm64, and the arm64 image works
under emulation. With the CI's engine (Docker: buildx, or BuildKit per platform + docker manifest)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import TemporalServer
from tests.publish.conftest import Made, Registry, Runtime, docker_runtime

VERSION = "v2.0.0"
FAST_HEALTH = ("--health-interval=2s", "--health-retries=2", "--health-start-period=0s")


@pytest.fixture(scope="module")
def multiarch(registry: Registry, base_images: None) -> Iterator[tuple[Runtime, Made]]:
    """One `make push-multiarch VERSION=v2.0.0` for the whole module (arm64 builds under qemu are slow)."""
    home = Path(tempfile.mkdtemp(prefix="agent-runner-multiarch-"))
    runtime = docker_runtime(registry, home, "multiarch/agent-runner")
    try:
        login = runtime.make("docker-login", env=runtime.login_env())
        assert login.rc == 0, login.output
        made = runtime.make("push-multiarch", f"VERSION={VERSION}", "PLATFORMS=linux/amd64,linux/arm64")
        for arch in ("amd64", "arm64"):
            runtime.remember_image(f"{runtime.image}:{VERSION}-{arch}")
        yield runtime, made
    finally:
        runtime.cleanup()
        shutil.rmtree(home, ignore_errors=True)


def skopeo_raw(runtime: Runtime, tag: str) -> dict[str, object]:
    result = runtime.run_tool(
        "skopeo",
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--authfile",
        str(runtime.home / "docker-config/config.json"),
        f"docker://{runtime.image}:{tag}",
    )
    return dict(json.loads(result.stdout))


def platforms(manifest: dict[str, object]) -> list[str]:
    entries = manifest.get("manifests")
    assert isinstance(entries, list), f"not a list: {manifest}"
    return sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in entries)


def arm64_ref(runtime: Runtime) -> str:
    manifest = skopeo_raw(runtime, VERSION)
    entries = manifest["manifests"]
    assert isinstance(entries, list)
    digest = next(m["digest"] for m in entries if m["platform"]["architecture"] == "arm64")
    return f"{runtime.image}@{digest}"


@pytest.fixture(scope="module")
def arm64_image(multiarch: tuple[Runtime, Made]) -> str:
    """The arm64 image of the list, pulled from the registry by digest."""
    runtime, made = multiarch
    assert made.rc == 0, made.output[-4000:]
    ref = arm64_ref(runtime)
    runtime.run("pull", ref)
    runtime.remember_image(ref)
    return ref


def test_push_multiarch_publishes_a_list_of_exactly_amd64_and_arm64(multiarch: tuple[Runtime, Made]) -> None:
    runtime, made = multiarch
    assert made.rc == 0, made.output[-4000:]
    for tag in (VERSION, "v2.0", "v2"):
        assert platforms(skopeo_raw(runtime, tag)) == ["linux/amd64", "linux/arm64"], tag
    assert "latest" not in runtime.registry.tags(runtime.repository)


def test_arm64_image_runs_under_emulation_and_imports_the_worker(
    multiarch: tuple[Runtime, Made], arm64_image: str
) -> None:
    runtime, _ = multiarch
    config = json.loads(runtime.run("image", "inspect", arm64_image).stdout)[0]
    assert config["Architecture"] == "arm64"
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
    print(f"[time] arm64: uname + import under qemu: {time.monotonic() - started:.1f}s")
    assert out == ["aarch64", "agent_runner.worker"]


def test_arm64_image_is_healthy_against_the_dev_server(
    multiarch: tuple[Runtime, Made], arm64_image: str, temporal: TemporalServer
) -> None:
    runtime, _ = multiarch
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
    print(f"[time] arm64: healthy under qemu in {time.monotonic() - started:.1f}s")
