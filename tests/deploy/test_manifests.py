"""deploy/kubernetes, offline: every kustomization builds, every built-in kind passes
kubernetes-validate --strict for each Kubernetes minor from 1.30 to the newest it ships, the
custom kinds pass their vendored CRD schemas, and the settings the docs promise are there."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from tests.deploy.conftest import SCHEMAS, TARGETS, by_kind, one

OLDEST = (1, 30)
# Groups whose kinds kubernetes-validate does not know; validated against SCHEMAS instead.
CUSTOM = {
    "keda.sh/v1alpha1": {"ScaledObject": "keda.sh_scaledobjects.yaml"},
    "temporal.io/v1alpha1": {
        "WorkerDeployment": "temporal.io_workerdeployments.yaml",
        "Connection": "temporal.io_connections.yaml",
    },
}
# The `temporal` trigger's metadata keys (KEDA v2.20.2, pkg/scalers/temporal_scaler.go). The
# CRD types trigger metadata as a free string map, so a misspelt key would pass its schema.
TEMPORAL_TRIGGER_KEYS = {
    "endpoint",
    "endpointFromEnv",
    "namespace",
    "namespaceFromEnv",
    "activationTargetQueueSize",
    "targetQueueSize",
    "taskQueue",
    "taskQueueFromEnv",
    "queueTypes",
    "workerDeploymentName",
    "workerDeploymentBuildId",
    "minConnectTimeout",
    "unsafeSsl",
    "tlsServerName",
}


def kubernetes_minors() -> list[str]:
    """Every version kubernetes-validate ships from 1.30 on, one per minor (e.g. 1.30.0 ... 1.37.0)."""
    chosen: dict[tuple[int, int], str] = {}
    for version in all_versions():
        major, minor = (int(part) for part in version.split(".")[:2])
        if (major, minor) >= OLDEST:
            chosen.setdefault((major, minor), version)
    return [chosen[key] for key in sorted(chosen)]


def crd_schema(filename: str, api_version: str) -> dict[str, Any]:
    crd = yaml.safe_load((SCHEMAS / filename).read_text())
    version = api_version.split("/")[1]
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return strict(served["schema"]["openAPIV3Schema"])
    raise AssertionError(f"{filename} serves no version {version}")


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as `kubectl apply` (field validation Strict, its default) applies it: a field
    the schema does not declare is an error. OpenAPI's own keys (x-kubernetes-*) are ignored
    by jsonschema; objects that keep unknown fields on purpose stay open."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def crd_errors(doc: dict[str, Any]) -> list[str]:
    filename = CUSTOM[doc["apiVersion"]][doc["kind"]]
    validator = jsonschema.Draft7Validator(crd_schema(filename, doc["apiVersion"]))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("target", TARGETS)
def test_kustomize_builds(rendered: dict[str, list[dict[str, Any]]], target: str) -> None:
    kinds = sorted(doc["kind"] for doc in rendered[target])
    assert {"ServiceAccount", "ConfigMap", "PodDisruptionBudget"} <= set(kinds), kinds
    expected = {
        "base": "Deployment",
        "overlays/keda": "ScaledObject",
        "overlays/worker-controller": "WorkerDeployment",
        "overlays/shared-workspace": "PersistentVolumeClaim",
    }[target]
    assert expected in kinds, kinds


def test_kubernetes_validate_ships_the_versions() -> None:
    minors = kubernetes_minors()
    assert minors[0].startswith("1.30."), minors
    assert int(minors[-1].split(".")[1]) >= 37, f"kubernetes-validate ships only up to {minors[-1]}"


@pytest.mark.parametrize("version", kubernetes_minors())
def test_builtin_kinds_pass_strict_validation(rendered: dict[str, list[dict[str, Any]]], version: str) -> None:
    checked = 0
    for target, docs in rendered.items():
        for doc in docs:
            if doc["apiVersion"] in CUSTOM:
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                raise AssertionError(
                    f"{target}: {doc['kind']}/{doc['metadata']['name']} on Kubernetes {version}: {err.message}"
                ) from None
            checked += 1
    assert checked >= 4 * len(rendered)


def test_strict_validation_catches_a_misspelt_field(rendered: dict[str, list[dict[str, Any]]]) -> None:
    deployment = copy.deepcopy(one(rendered["base"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(deployment, kubernetes_minors()[-1], strict=True)


def test_every_document_is_validated_by_one_schema(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """No kind slips through: built-in kinds are known to kubernetes-validate, the rest to SCHEMAS."""
    for target, docs in rendered.items():
        for doc in docs:
            if doc["apiVersion"] in CUSTOM:
                assert doc["kind"] in CUSTOM[doc["apiVersion"]], f"{target}: no vendored schema for {doc['kind']}"
            else:
                kubernetes_validate.validate(doc, kubernetes_minors()[-1], strict=True)


@pytest.mark.parametrize("target", ["overlays/keda", "overlays/worker-controller"])
def test_custom_kinds_pass_their_crd_schemas(rendered: dict[str, list[dict[str, Any]]], target: str) -> None:
    custom = [doc for doc in rendered[target] if doc["apiVersion"] in CUSTOM]
    assert custom, f"{target} has no custom resource"
    for doc in custom:
        assert crd_errors(doc) == [], f"{target}: {doc['kind']}"


@pytest.mark.parametrize(
    ("target", "kind", "path", "misspelt"),
    [
        ("overlays/keda", "ScaledObject", ["spec"], "maxReplicas"),
        ("overlays/keda", "ScaledObject", ["spec", "triggers", 0], "metaData"),
        ("overlays/worker-controller", "WorkerDeployment", ["spec", "rollout"], "stratgy"),
        ("overlays/worker-controller", "WorkerDeployment", ["spec", "template", "spec", "containers", 0], "imagee"),
        ("overlays/worker-controller", "Connection", ["spec"], "hostport"),
    ],
)
def test_crd_schema_catches_a_misspelt_field(
    rendered: dict[str, list[dict[str, Any]]], target: str, kind: str, path: list[Any], misspelt: str
) -> None:
    doc = copy.deepcopy(one(rendered[target], kind))
    node: Any = doc
    for key in path:
        node = node[key]
    node[misspelt] = node.pop(next(iter(node)))  # rename the node's first field
    errors = crd_errors(doc)
    assert any(misspelt in error for error in errors), errors


def test_crd_schema_catches_a_wrong_type(rendered: dict[str, list[dict[str, Any]]]) -> None:
    doc = copy.deepcopy(one(rendered["overlays/keda"], "ScaledObject"))
    doc["spec"]["maxReplicaCount"] = "ten"
    assert any("maxReplicaCount" in error for error in crd_errors(doc))


def test_keda_trigger_asks_the_workers_queue(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """KEDA reads the queue's address, namespace and name from the worker container's own
    environment (`...FromEnv`), so they are the worker's whatever an overlay sets."""
    docs = rendered["overlays/keda"]
    config = one(docs, "ConfigMap")["data"]
    scaled = one(docs, "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "temporal"
    metadata = trigger["metadata"]
    assert set(metadata) <= TEMPORAL_TRIGGER_KEYS, set(metadata) - TEMPORAL_TRIGGER_KEYS
    assert {key: metadata[f"{key}FromEnv"] for key in ("endpoint", "namespace", "taskQueue")} == {
        "endpoint": "TEMPORAL_ADDRESS",
        "namespace": "TEMPORAL_NAMESPACE",
        "taskQueue": "TEMPORAL_TASK_QUEUE",
    }
    assert {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE"} <= set(config)
    deployment = one(docs, "Deployment")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": one(docs, "ConfigMap")["metadata"]["name"]}}]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


def test_worker_controller_runs_the_base_pod_template(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["overlays/worker-controller"]
    assert by_kind(docs, "Deployment") == [], "the controller makes the Deployments"
    worker = one(docs, "WorkerDeployment")
    base_template = one(rendered["base"], "Deployment")["spec"]["template"]
    assert worker["spec"]["template"] == base_template
    assert worker["spec"]["workerOptions"]["connectionRef"]["name"] == one(docs, "Connection")["metadata"]["name"]
    config = one(docs, "ConfigMap")["data"]
    assert one(docs, "Connection")["spec"]["hostPort"] == config["TEMPORAL_ADDRESS"]
    assert worker["spec"]["workerOptions"]["temporalNamespace"] == config["TEMPORAL_NAMESPACE"]


def pod_templates(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc["spec"]["template"] for doc in docs if doc["kind"] in ("Deployment", "WorkerDeployment")]


def pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [template["spec"] for template in pod_templates(docs)]


@pytest.mark.parametrize("target", TARGETS)
def test_references_resolve(rendered: dict[str, list[dict[str, Any]]], target: str) -> None:
    """The generated ConfigMap's hashed name, and the ServiceAccount, reach every pod template."""
    docs = rendered[target]
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    (spec,) = pod_specs(docs)
    assert ("ServiceAccount", spec["serviceAccountName"]) in names
    for container in spec["containers"]:
        for source in container.get("envFrom", []):
            assert ("ConfigMap", source["configMapRef"]["name"]) in names, source
    claims = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
    for claim in claims:
        assert ("PersistentVolumeClaim", claim) in names


@pytest.mark.parametrize("target", TARGETS)
def test_pod_is_locked_down(rendered: dict[str, list[dict[str, Any]]], target: str) -> None:
    (spec,) = pod_specs(rendered[target])
    pod = spec["securityContext"]
    assert (pod["runAsNonRoot"], pod["runAsUser"], pod["runAsGroup"]) == (True, 1000, 1000)
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert (sc["runAsNonRoot"], sc["runAsUser"]) == (True, 1000)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert {"/tmp", "/workspace"} <= set(mounts), "a read-only root needs writable /tmp and /workspace"
    service_accounts = by_kind(rendered[target], "ServiceAccount")
    assert [sa["automountServiceAccountToken"] for sa in service_accounts] == [False]


@pytest.mark.parametrize("target", TARGETS)
def test_grace_period_outlasts_the_drain(rendered: dict[str, list[dict[str, Any]]], target: str) -> None:
    docs = rendered[target]
    drain = float(one(docs, "ConfigMap")["data"]["STIGMER_DRAIN_TIMEOUT"])
    (spec,) = pod_specs(docs)
    assert spec["terminationGracePeriodSeconds"] >= drain + 10, (spec["terminationGracePeriodSeconds"], drain)


@pytest.mark.parametrize("target", TARGETS)
def test_probes_and_the_model_key(rendered: dict[str, list[dict[str, Any]]], target: str) -> None:
    (spec,) = pod_specs(rendered[target])
    (container,) = spec["containers"]
    commands = {
        probe: container[probe]["exec"]["command"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert commands == {
        "startupProbe": ["python", "/app/healthcheck.py", "--liveness"],
        "livenessProbe": ["python", "/app/healthcheck.py", "--liveness"],
        "readinessProbe": ["python", "/app/healthcheck.py", "--readiness"],
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    key_file = Path(env["STIGMER_LLM_API_KEY_FILE"])
    secret_volumes = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(key_file.parent))
    assert mount["readOnly"] is True and mount["name"] in secret_volumes
    assert not any("KEY" in name and not name.endswith("_FILE") for name in env), "a key as a value"
    config = one(rendered[target], "ConfigMap")["data"]
    assert not any("KEY" in name for name in config), "a key in the ConfigMap"


@pytest.mark.parametrize("target", TARGETS)
def test_metrics_port_is_where_the_worker_serves(rendered: dict[str, list[dict[str, Any]]], target: str) -> None:
    """The pod's port "metrics", its scrape annotations and STIGMER_METRICS_ADDRESS name one port."""
    docs = rendered[target]
    (template,) = pod_templates(docs)
    (container,) = template["spec"]["containers"]
    host, _, port = one(docs, "ConfigMap")["data"]["STIGMER_METRICS_ADDRESS"].rpartition(":")
    assert host == "0.0.0.0", "the pod's own network: reachable from Prometheus, not only from loopback"
    assert container["ports"] == [{"name": "metrics", "containerPort": int(port), "protocol": "TCP"}]
    annotations = template["metadata"]["annotations"]
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"]) == ("true", port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_pod_disruption_budget_selects_the_pods(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["base"]
    budget = one(docs, "PodDisruptionBudget")["spec"]
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["maxUnavailable"] == 1
