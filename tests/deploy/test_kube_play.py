"""The base manifest, played for real: `podman kube play` runs the Deployment that
`kubectl kustomize deploy/kubernetes/base` renders, against a Temporal dev server on the host,
and its container turns healthy through the manifest's own probes with the securityContext in force.

Podman 4.3 (Debian 12), measured: kube play needs catatonit for the pod's infra container; it
turns the livenessProbe into the container's health check and ignores the startup and
readiness probes; without systemd no timer runs the health check, so the test runs it
(`podman healthcheck run`) and runs the readiness command itself (`podman exec`). It mounts a
Secret's `data` values as they are written (base64, not decoded), and none of its `stringData`,
and crashes on a secret volume without `optional` (the base says `optional: false`).

As a user other than root (rootless Podman) it also needs: a range of its own in /etc/subuid
and /etc/subgid (and `uidmap`), and XDG_RUNTIME_DIR (the fixture makes one). On a cgroup v1
host rootless Podman cannot set cgroup limits, so there the test drops the container's
`resources` and says so.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import KUSTOMIZE_ROOT, kustomize, one
from tests.helpers import WORKER_PID_SH, Seen, TemporalServer, free_port, wait_for

DOCKER = os.environ.get("DOCKER", "docker")
IMAGE = os.environ.get("AGENT_RUNNER_IMAGE", "ghcr.io/stigmer/agent-runner:dev-local")
LLM_KEY = "sk-kube-play-test"
ROOTLESS = os.geteuid() != 0

pytestmark = pytest.mark.container


@dataclass
class Podman:
    """Podman with a store, runtime directory and secrets of its own in a temp dir."""

    home: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False, **kw
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-800:]}"
            )
        return result


@pytest.fixture
def podman() -> Iterator[Podman]:
    missing = [tool for tool in ("podman", "catatonit", DOCKER) if not shutil.which(tool)]
    if missing:
        pytest.fail(f"kube play test needs {', '.join(missing)}: .ci/run installs them (apt-get install ...)")
    home = Path(tempfile.mkdtemp(prefix="agent-runner-kube-play-"))
    (home / "tmp").mkdir()
    (home / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{home / "store"}"\nrunroot = "{home / "run"}"\n'
    )
    # Podman 4.3 asks for more open files than containers may have here ("error setting rlimit
    # type 7"); no systemd, so cgroupfs and a file for events.
    (home / "containers.conf").write_text(
        '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n\n'
        f'[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\ntmp_dir = "{home / "tmp"}"\n'
        f'volume_path = "{home / "volumes"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINERS_")}
    env |= {"CONTAINERS_STORAGE_CONF": str(home / "storage.conf"), "CONTAINERS_CONF": str(home / "containers.conf")}
    if ROOTLESS and not os.environ.get("XDG_RUNTIME_DIR"):
        (home / "xdg").mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(home / "xdg")
    engine = Podman(home, env)
    try:
        yield engine
    finally:
        engine.run("pod", "rm", "--all", "--force", check=False)
        engine.run("rm", "--all", "--force", check=False)
        if ROOTLESS:  # the store's files belong to the user's subordinate IDs
            engine.run("unshare", "rm", "-rf", str(home / "store"), check=False)
        else:
            for mount in (home / "store" / "overlay", home / "store"):
                subprocess.run(["umount", "-R", str(mount)], capture_output=True, check=False, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def load_image(podman: Podman) -> str:
    """The image under test, copied from Docker into Podman's store; returns its name there."""
    save = subprocess.Popen([DOCKER, "save", IMAGE], stdout=subprocess.PIPE)
    loaded = podman.run("load", stdin=save.stdout, timeout=300)
    save.wait(timeout=60)
    assert save.returncode == 0, f"{DOCKER} save {IMAGE} failed: build the image first (make build-image)"
    name = loaded.stdout.strip().rsplit("Loaded image: ", 1)[-1].split(",")[0].strip()
    assert podman.run("image", "exists", name, check=False).returncode == 0, loaded.stdout
    return name


def render_base(
    workdir: Path, image: str, temporal: TemporalServer, task_queue: str, suffix: str, metrics_port: int
) -> Path:
    """The base as an operator customises it, with a kustomize overlay of its own: this image,
    one replica, this Temporal and task queue, the host's network, and the model key Secret."""
    (workdir / "secret.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "agent-runner-llm"},
                "data": {"llm-api-key": base64.b64encode(LLM_KEY.encode()).decode()},
            }
        )
    )
    name, tag = image.rsplit(":", 1)
    (workdir / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(KUSTOMIZE_ROOT / "base", workdir), "secret.yaml"],
                "nameSuffix": suffix,
                "images": [{"name": "ghcr.io/stigmer/agent-runner", "newName": name, "newTag": tag}],
                "replicas": [{"name": "agent-runner", "count": 1}],
                "configMapGenerator": [
                    {
                        "name": "agent-runner-config",
                        "behavior": "merge",
                        "literals": [
                            f"TEMPORAL_ADDRESS={temporal.address}",
                            f"TEMPORAL_TASK_QUEUE={task_queue}",
                            f"STIGMER_METRICS_ADDRESS=127.0.0.1:{metrics_port}",
                        ],
                    }
                ],
                # The dev server listens on the host's loopback. On the host's network a container
                # port would be a host port mapping, which Podman refuses there: the port goes
                # (test_manifests checks it), and the worker serves metrics on a port of the test's.
                "patches": [
                    {
                        "target": {"kind": "Deployment"},
                        "patch": "- op: add\n  path: /spec/template/spec/hostNetwork\n  value: true\n"
                        "- op: remove\n  path: /spec/template/spec/containers/0/ports\n",
                    }
                ],
            }
        )
    )
    docs = kustomize(workdir)
    if ROOTLESS and not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        print("[kube play] rootless on cgroup v1: the container's resources are dropped (no cgroup limits)")
        for doc in docs:
            if doc["kind"] == "Deployment":
                doc["spec"]["template"]["spec"]["containers"][0].pop("resources")
    manifest = workdir / "play.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    return manifest


def test_base_runs_healthy_and_locked_down_under_podman_kube_play(
    podman: Podman, temporal: TemporalServer, figure: Any
) -> None:
    started = time.monotonic()
    image = load_image(podman)
    loaded = time.monotonic() - started
    suffix = f"-{uuid.uuid4().hex[:8]}"
    task_queue = f"kube-play-{uuid.uuid4().hex[:8]}"
    metrics_port = free_port()
    manifest = render_base(podman.home, image, temporal, task_queue, suffix, metrics_port)
    docs = list(yaml.safe_load_all(manifest.read_text()))
    deployment = one(docs, "Deployment")
    container_spec = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container_spec["image"] == image

    played = time.monotonic()
    podman.run("kube", "play", str(manifest), timeout=180)
    names = podman.run("ps", "--format", "{{.Names}}").stdout.split()
    (container,) = [n for n in names if n.endswith(f"-{container_spec['name']}")] or [names]

    # The container's health check is the manifest's livenessProbe, not the image's HEALTHCHECK.
    config = json.loads(podman.run("container", "inspect", container).stdout)[0]["Config"]
    liveness = container_spec["livenessProbe"]["exec"]["command"]
    assert " ".join(liveness) in " ".join(config["Healthcheck"]["Test"]), config["Healthcheck"]

    def healthy() -> bool | Seen:
        probe = podman.run("healthcheck", "run", container, check=False, timeout=60)
        if probe.returncode == 0:
            return True
        logs = podman.run("logs", "--tail", "5", container, check=False)
        state = json.loads(podman.run("container", "inspect", container).stdout)[0]["State"]
        if state["Status"] != "running":
            raise AssertionError(f"container {state['Status']} (exit {state['ExitCode']}): {logs.stdout}{logs.stderr}")
        return Seen(f"{probe.stdout.strip() or probe.stderr.strip()} | {logs.stdout.strip()[-300:]}")

    wait_for("the pod's container to pass its livenessProbe (podman healthcheck run)", healthy, timeout=120, interval=1)
    to_healthy = time.monotonic() - played
    state = json.loads(podman.run("container", "inspect", container).stdout)[0]["State"]
    health = state.get("Health") or state.get("Healthcheck")
    assert health["Status"] == "healthy", health
    # It ran the script, which prints one line saying why (a bare `python` would print nothing).
    last = health["Log"][-1]
    assert last["ExitCode"] == 0 and last["Output"].strip(), last
    assert not last["Output"].startswith(("unhealthy", "usage")), last

    readiness = container_spec["readinessProbe"]["exec"]["command"]
    ready = podman.run("exec", container, *readiness, check=False)
    assert ready.returncode == 0, f"readiness {readiness}: {ready.stdout}{ready.stderr}"

    def sh(script: str) -> subprocess.CompletedProcess[str]:
        return podman.run("exec", container, "sh", "-c", script, check=False)

    # The worker serves its metrics, the SDK's and its own, where STIGMER_METRICS_ADDRESS says.
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    scrape = sh(f"python -c \"import urllib.request as u; print(u.urlopen('{url}').read().decode())\"")
    assert "temporal_worker_task_slots_used" in scrape.stdout, scrape.stdout[-500:] + scrape.stderr
    free_tool_slots = r'^agent_runner_task_slots_available\{[^}]*kind="tool"[^}]*\} 10(\.0)?$'
    assert re.search(free_tool_slots, scrape.stdout, re.M), scrape.stdout

    assert sh("id -u; id -g").stdout.split() == ["1000", "1000"]
    # The worker: tini's child (tini is PID 1 in the image).
    worker = f'pid=$({WORKER_PID_SH}); cat "/proc/${{pid:-1}}/status"'
    status = dict(line.split(":\t", 1) for line in sh(worker).stdout.splitlines() if ":\t" in line)
    assert status["Name"].strip().startswith("python"), status["Name"]
    assert status["Uid"].split()[0] == "1000", status["Uid"]
    assert {key: status[key].strip() for key in ("CapEff", "CapPrm", "CapBnd")} == dict.fromkeys(
        ("CapEff", "CapPrm", "CapBnd"), "0000000000000000"
    )
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2", "seccomp filter mode (RuntimeDefault)"
    root_write = sh("touch /probe-root-write")
    assert root_write.returncode != 0 and "Read-only file system" in root_write.stderr, root_write
    assert sh("touch /tmp/probe /workspace/probe").returncode == 0, "the emptyDir mounts are writable"
    key_file = next(e["value"] for e in container_spec["env"] if e["name"] == "STIGMER_LLM_API_KEY_FILE")
    # The key as Kubernetes mounts it, or as Podman 4.3 does (still base64).
    mounted = sh(f"cat {key_file}").stdout
    assert mounted in (LLM_KEY, base64.b64encode(LLM_KEY.encode()).decode()), mounted
    assert mounted not in json.dumps(config.get("Env", [])), "the key is in the container's environment"

    podman.run("kube", "down", str(manifest), timeout=120)
    figure(
        "the base Deployment, played by `podman kube play`, turns healthy through its own liveness and "
        "readiness commands as UID 1000 with no capabilities, a read-only root and seccomp",
        f"image load {loaded:.1f} s; kube play to healthy {to_healthy:.1f} s; "
        f"idle worker RSS {status['VmRSS'].strip()}",
    )
