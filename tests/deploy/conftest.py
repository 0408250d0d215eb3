"""The Kubernetes manifests (deploy/kubernetes): rendered with kubectl's kustomize, validated
offline, and the base played by Podman. Fails (never skips) when kubectl is missing."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT

KUSTOMIZE_ROOT = ROOT / "deploy" / "kubernetes"
SCHEMAS = KUSTOMIZE_ROOT / "schemas"
# Every kustomization an operator may apply: the base and each overlay.
TARGETS = ("base", "overlays/keda", "overlays/worker-controller", "overlays/shared-workspace")


NEEDS = "the Kubernetes tests need kubectl 1.27 or later (kustomize v5) on PATH or in KUBECTL"


@functools.cache
def kubectl_binary() -> str:
    """KUBECTL, else kubectl on PATH. kustomize v5 (kubectl 1.27+) is needed for the overlays."""
    found = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not found:
        pytest.fail(f"kubectl not found: {NEEDS}")
    result = subprocess.run(
        [found, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30, check=False
    )
    try:
        version = json.loads(result.stdout)["clientVersion"]
        minor = int(re.match(r"\d+", version["minor"]).group())  # type: ignore[union-attr]
    except (ValueError, KeyError, AttributeError):
        pytest.fail(f"{found} version --client: no version ({result.stderr.strip()[:200]}): {NEEDS}")
    if (int(version["major"]), minor) < (1, 27):
        pytest.fail(f"{found} is kubectl {version['gitVersion']}: {NEEDS}")
    return found


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIRECTORY`, parsed: the documents an operator's `kubectl apply -k` sends."""
    result = subprocess.run(
        [kubectl_binary(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed: {result.stderr.strip()}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Each target rendered once for the session."""
    return {target: kustomize(KUSTOMIZE_ROOT / target) for target in TARGETS}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
