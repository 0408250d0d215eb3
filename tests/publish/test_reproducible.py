"""Reproducible digests: two clean Podman builds of the same tree, with the last commit's time as
SOURCE_DATE_EPOCH (build-image.sh passes it as --timestamp), push the same image digest."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.publish.conftest import Registry, Runtime, podman_runtime, remove_podman_store, seed_podman_base

VERSION = "v0.0.1"


@pytest.fixture(scope="module")
def podman(registry: Registry, base_images: None) -> Iterator[Runtime]:
    home = Path(tempfile.mkdtemp(prefix="agent-runner-repro-"))
    runtime = podman_runtime(registry, home, "podman/agent-runner-repro")
    try:
        seed_podman_base(runtime)
        login = runtime.make("docker-login", env=runtime.login_env())
        assert login.rc == 0, login.output
        yield runtime
    finally:
        runtime.cleanup()
        remove_podman_store(runtime)
        shutil.rmtree(home, ignore_errors=True)


def build_and_push(runtime: Runtime, tag: str) -> tuple[str, str]:
    """A build without cache, pushed as IMAGE:tag; the local image ID and the pushed digest."""
    made = runtime.make("build-image", f"VERSION={VERSION}", "EXTRA_BUILD_ARGS=--no-cache")
    assert made.rc == 0, made.output[-3000:]
    ref = f"{runtime.image}:{VERSION}"
    image_id = runtime.image_id(ref)
    assert image_id
    runtime.run("push", "--format", "v2s2", ref, f"docker://{runtime.image}:{tag}")
    raw = runtime.raw_manifest(tag)
    runtime.run("rmi", "-f", ref)
    return image_id, "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


@pytest.mark.publish
@pytest.mark.slow
def test_two_clean_podman_builds_of_a_commit_push_the_same_digest(podman: Runtime) -> None:
    started = time.monotonic()
    first = build_and_push(podman, "first")
    second = build_and_push(podman, "second")
    print(
        f"[time] two clean podman builds: {time.monotonic() - started:.1f}s; image {first[0][:12]}, digest {first[1]}"
    )
    assert first == second, f"first build (image ID, digest) {first}, second {second}"
