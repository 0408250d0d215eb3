"""The buildx path of push-multiarch, which this CI's engine lacks: a stub client records the
commands, so the one `buildx build` it would run is checked here (the real path runs on GitHub)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import ROOT

STUB = """#!/bin/sh
echo "$*" >>"$STUB_LOG"
case "$1 $2" in
  "--version "*) echo "Docker version 28.0.0, build stub" ;;
  "buildx version") echo "github.com/docker/buildx v0.20.0" ;;
  "buildx build") case "$*" in *--help*) echo "      --sbom string   Shorthand for --attest=type=sbom" ;; esac ;;
esac
"""


def run_multiarch(tmp_path: Path, mode: str, version: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    stub = tmp_path / "docker"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "calls"
    env = {
        "PATH": os.environ["PATH"],
        "DOCKER": str(stub),
        "STUB_LOG": str(log),
        "IMAGE": "registry.example.com/stigmer/agent-runner",
        "VERSION": version,
        "PLATFORMS": "linux/amd64,linux/arm64",
        "CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    }
    result = subprocess.run(
        ["scripts/multiarch.sh", mode], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, [call for call in calls if call.startswith("buildx build") and "--help" not in call]


def test_push_multiarch_with_buildx_is_one_build_that_pushes_every_tag_with_sbom_and_provenance(
    tmp_path: Path,
) -> None:
    result, builds = run_multiarch(tmp_path, "push", "v1.2.3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(builds) == 1, builds
    args = builds[0].split()
    assert args[args.index("--platform") + 1] == "linux/amd64,linux/arm64"
    tags = [args[i + 1] for i, arg in enumerate(args) if arg == "--tag"]
    assert tags == [f"registry.example.com/stigmer/agent-runner:{t}" for t in ("v1.2.3", "v1.2", "v1")]
    for flag in ("--push", "--sbom=true", "--provenance=true", "BASE_IMAGE=python:3.11-slim", "VERSION=v1.2.3"):
        assert flag in args
    assert "id=ca,src=/etc/ssl/certs/ca-certificates.crt" in args


def test_build_multiarch_with_buildx_pushes_nothing(tmp_path: Path) -> None:
    result, builds = run_multiarch(tmp_path, "build", "dev-local")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(builds) == 1, builds
    assert "--push" not in builds[0].split()
