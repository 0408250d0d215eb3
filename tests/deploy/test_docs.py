"""docs/kubernetes.md: the overlay it tells operators to write builds and validates, as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import kustomize, one
from tests.deploy.test_manifests import CUSTOM, crd_errors, kubernetes_minors
from tests.helpers import ROOT

DOC = ROOT / "docs" / "kubernetes.md"
MARKER = "# my-agent-runner/kustomization.yaml"


def docs_overlay() -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    found = [block for block in blocks if block.startswith(MARKER)]
    assert len(found) == 1, f"docs/kubernetes.md: expected one yaml block starting {MARKER!r}"
    return found[0]


def build(tmp_path: Path, overlay: str) -> list[dict[str, Any]]:
    """The overlay in my-agent-runner/, next to a checkout's deploy/ (here a link to this one)."""
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    (tmp_path / "my-agent-runner").mkdir()
    (tmp_path / "my-agent-runner" / "kustomization.yaml").write_text(overlay)
    docs = kustomize(tmp_path / "my-agent-runner")
    for doc in docs:
        if doc["apiVersion"] in CUSTOM:
            assert crd_errors(doc) == [], doc["kind"]
        else:
            kubernetes_validate.validate(doc, kubernetes_minors()[-1], strict=True)
    return docs


@pytest.mark.parametrize("overlay", ["keda", "worker-controller"])
def test_docs_overlay_builds(tmp_path: Path, overlay: str) -> None:
    text = docs_overlay()
    if overlay != "keda":  # step 6: the same overlay on the Worker Controller's
        text = text.replace("overlays/keda", f"overlays/{overlay}")
    docs = build(tmp_path, text)
    settings = yaml.safe_load(text)
    literals = dict(item.split("=", 1) for item in settings["configMapGenerator"][0]["literals"])
    config = one(docs, "ConfigMap")["data"]
    assert literals.items() <= config.items()
    assert {doc["metadata"].get("namespace") for doc in docs} == {settings["namespace"]}
    workload = one(docs, "Deployment" if overlay == "keda" else "WorkerDeployment")
    image = workload["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/stigmer/agent-runner:{settings['images'][0]['newTag']}"
    if overlay == "keda":
        trigger = one(docs, "ScaledObject")["spec"]["triggers"][0]["metadata"]
        assert trigger["endpoint"] == literals["TEMPORAL_ADDRESS"]
    else:
        assert one(docs, "Connection")["spec"]["hostPort"] == literals["TEMPORAL_ADDRESS"]
