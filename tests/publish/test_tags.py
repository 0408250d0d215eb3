"""The release tags push-image and push-multiarch give a VERSION (scripts/publish-lib.sh)."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import ROOT


def release_tags(version: str, push_latest: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", ". scripts/publish-lib.sh && release_tags"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "VERSION": version, "PUSH_LATEST": push_latest},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("version", "push_latest", "tags"),
    [
        ("v1.2.3", "", "v1.2.3 v1.2 v1"),
        ("1.2.3", "false", "1.2.3 1.2 1"),
        ("v1.2.3", "true", "v1.2.3 v1.2 v1 latest"),
        ("v1.2.3-rc.1", "", "v1.2.3-rc.1"),
        ("dev-local", "", "dev-local"),
        ("main", "true", "main latest"),
    ],
)
def test_release_tags(version: str, push_latest: str, tags: str) -> None:
    result = release_tags(version, push_latest)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == tags.split()


def test_push_latest_must_be_true_or_false() -> None:
    result = release_tags("v1.2.3", "sometimes")
    assert result.returncode != 0
    assert "PUSH_LATEST=sometimes: use true or false" in result.stderr
