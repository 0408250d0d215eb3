"""Building the image: the proxy CA bundle given as a build secret reaches no layer."""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.container.conftest import DOCKER, docker
from tests.helpers import ROOT


def test_ca_bundle_is_in_no_layer_and_not_in_history(tmp_path: Path, figure: Callable[[str, str], None]) -> None:
    # The real bundle (the build needs it behind a TLS-intercepting proxy) plus a sentinel
    # line; PEM readers skip text between certificates. --no-cache makes every step that
    # mounts the secret run again, so the sentinel really passes through this build.
    sentinel = f"agent-runner-ca-sentinel-{uuid.uuid4().hex}"
    real = os.environ.get("CA_BUNDLE") or "/etc/ssl/certs/ca-certificates.crt"
    ca = tmp_path / "ca.pem"
    ca.write_text(Path(real).read_text() + f"\n# {sentinel}\n")
    tag = f"agent-runner-ca-test:{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "IMAGE": tag.split(":")[0],
        "VERSION": tag.split(":")[1],
        "CA_BUNDLE": str(ca),
        "DOCKER": DOCKER,
        "EXTRA_BUILD_ARGS": "--no-cache",
    }
    try:
        build = subprocess.run(
            ["scripts/build-image.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
        archive = tmp_path / "image.tar"
        docker("save", "-o", str(archive), tag, timeout=300)
        needle = sentinel.encode()
        with tarfile.open(archive) as outer:
            members = [m for m in outer.getmembers() if m.isfile()]
            assert any(m.name.endswith("layer.tar") for m in members)
            for member in members:
                data = outer.extractfile(member)
                assert data is not None
                assert needle not in data.read(), f"CA sentinel found in {member.name}"
        history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout
        assert sentinel not in history
        assert str(ca) not in history
        figure(
            "the build's CA bundle (a BuildKit secret) is in no image layer and not in docker history",
            f"sentinel found in 0 of {len(members)} files of docker save",
        )
    finally:
        docker("rmi", "-f", tag, check=False)


def test_a_dependency_whose_hash_is_not_in_the_lock_fails_the_build(
    tmp_path: Path, figure: Callable[[str, str], None]
) -> None:
    # poetry.lock pins every file by sha256; the image build must refuse anything else.
    tree = tmp_path / "src"
    tree.mkdir()
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "poetry.lock", "healthcheck.py"):
        (tree / name).write_bytes((ROOT / name).read_bytes())
    (tree / "agent_runner").mkdir()
    (tree / "scripts").mkdir()
    for script in ("build-image.sh", "portable.sh"):
        (tree / "scripts" / script).write_bytes((ROOT / "scripts" / script).read_bytes())
    (tree / "scripts" / "build-image.sh").chmod(0o755)
    lock = (tree / "poetry.lock").read_text()
    tampered = re.sub(r'(\{file = "temporalio-[^"]+", hash = "sha256:)[0-9a-f]{64}', r"\g<1>" + "0" * 64, lock)
    assert tampered != lock
    (tree / "poetry.lock").write_text(tampered)
    env = {
        **os.environ,
        "CA_BUNDLE": os.environ.get("CA_BUNDLE") or "/etc/ssl/certs/ca-certificates.crt",
        "IMAGE": "agent-runner-hash-test",
        "VERSION": uuid.uuid4().hex[:8],
        "DOCKER": DOCKER,
        "EXTRA_BUILD_ARGS": "--target deps",
    }
    build = subprocess.run(
        ["scripts/build-image.sh"], cwd=tree, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    output = build.stdout + build.stderr
    assert build.returncode != 0, output[-2000:]
    assert "did not match any known checksums in your lock file" in output, output[-2000:]
    figure("poetry.lock's hashes are enforced in the image build", "a tampered hash fails the build")
