"""docs/kubernetes.md: the overlays it tells operators to write build and validate, as written."""

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


def docs_overlays() -> dict[str, str]:
    """The page's overlays, by the overlay of this repository each one starts from."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    overlays = {}
    for block in blocks:
        if block.startswith(MARKER):
            (base,) = yaml.safe_load(block)["resources"]
            overlays[base.rsplit("/", 1)[-1]] = block
    assert set(overlays) == {"keda", "worker-controller"}, f"docs/kubernetes.md overlays: {sorted(overlays)}"
    return overlays


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
    text = docs_overlays()[overlay]
    docs = build(tmp_path, text)
    settings = yaml.safe_load(text)
    literals = dict(item.split("=", 1) for item in settings["configMapGenerator"][0]["literals"])
    config = one(docs, "ConfigMap")["data"]
    assert literals.items() <= config.items()
    assert {doc["metadata"].get("namespace") for doc in docs} == {settings["namespace"]}
    workload = one(docs, "Deployment" if overlay == "keda" else "WorkerDeployment")
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/stigmer/agent-runner:{settings['images'][0]['newTag']}"
    assert container["envFrom"] == [{"configMapRef": {"name": one(docs, "ConfigMap")["metadata"]["name"]}}]
    if overlay == "keda":
        # KEDA reads the address from the container's environment: the overlay's own value.
        assert one(docs, "ScaledObject")["spec"]["triggers"][0]["metadata"]["endpointFromEnv"] == "TEMPORAL_ADDRESS"
        assert config["TEMPORAL_ADDRESS"] == "temporal-frontend.temporal:7233"
    else:
        # The controller sets the pods' address and namespace from these two.
        assert one(docs, "Connection")["spec"]["hostPort"] == "temporal-frontend.temporal:7233"
        assert workload["spec"]["workerOptions"]["temporalNamespace"] == settings["namespace"]
