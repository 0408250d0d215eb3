"""The image itself: its metadata, its user and volume, and what it leaves out."""

from __future__ import annotations

import os
import subprocess

from tests.container.conftest import IMAGE, docker, inspect
from tests.helpers import ROOT


def test_runs_as_uid_1000_named_stigmer() -> None:
    config = inspect(IMAGE, "image")["Config"]
    assert config["User"] == "1000:1000"
    out = docker("run", "--rm", "--entrypoint", "id", IMAGE).stdout.strip()
    assert out == "uid=1000(stigmer) gid=1000(stigmer) groups=1000(stigmer)"
    home = docker("run", "--rm", "--entrypoint", "sh", IMAGE, "-c", "echo $HOME; stat -c %u /home/stigmer").stdout
    assert home.split() == ["/home/stigmer", "1000"]


def test_workspace_is_a_volume_owned_by_stigmer_and_group_writable() -> None:
    assert "/workspace" in inspect(IMAGE, "image")["Config"]["Volumes"]
    out = docker("run", "--rm", "--entrypoint", "stat", IMAGE, "-c", "%u %g %a", "/workspace").stdout.split()
    assert out == ["1000", "0", "775"]


def test_health_check_is_the_python_probe_every_30s() -> None:
    health = inspect(IMAGE, "image")["Config"]["Healthcheck"]
    assert health["Test"] == ["CMD", "python", "/app/healthcheck.py"]
    assert health["Interval"] == 30 * 10**9
    assert health["Timeout"] == 10 * 10**9
    assert health["Retries"] == 3


def test_exec_form_command_and_unbuffered_python() -> None:
    config = inspect(IMAGE, "image")["Config"]
    assert config["Cmd"] == ["python", "-m", "agent_runner"]
    assert "PYTHONUNBUFFERED=1" in config["Env"]


def test_oci_labels_carry_version_and_revision() -> None:
    labels = inspect(IMAGE, "image")["Config"]["Labels"]
    for key in ("version", "revision", "created", "source", "title", "description", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    if head.returncode == 0:
        assert labels["org.opencontainers.image.revision"] == head.stdout.strip()


def test_runtime_stage_has_no_build_tools_or_caches() -> None:
    script = (
        "for t in gcc cc make poetry strip git curl; do command -v $t; done; "
        "ls -d /opt/poetry /root/.cache /src /var/lib/apt/lists/*deb* 2>/dev/null; "
        "ls /app; find /opt/venv -name '*.pyi' | head -n 3; true"
    )
    out = docker("run", "--rm", "--user", "0", "--entrypoint", "sh", IMAGE, "-c", script).stdout.split()
    assert out == ["__pycache__", "agent_runner", "healthcheck.py"]  # only the code and its bytecode


def test_code_is_not_writable_by_the_worker() -> None:
    result = docker("run", "--rm", "--entrypoint", "sh", IMAGE, "-c", "touch /app/x || touch /opt/venv/x", check=False)
    assert result.returncode != 0


# What the image may add to its base, in MB of 10^6 bytes (docs/docker.md, "Size").
SIZE_BUDGET_MB = 42
BASE_IMAGE = os.environ.get("BASE_IMAGE", "python:3.11-slim")


def test_image_adds_at_most_42_mb_to_its_base() -> None:
    added = (inspect(IMAGE, "image")["Size"] - inspect(BASE_IMAGE, "image")["Size"]) / 1e6
    assert added <= SIZE_BUDGET_MB, f"{IMAGE} adds {added:.2f} MB to {BASE_IMAGE}; the budget is {SIZE_BUDGET_MB} MB"


TRACEBACKS = """
import importlib.metadata, traceback
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
import temporalio.converter
def frames(call):
    try:
        call()
    except Exception as err:
        return [(f.filename, f.line) for f in traceback.extract_tb(err.__traceback__)]
    raise SystemExit("no exception")
sdk = frames(lambda: temporalio.converter.default().payload_converter.to_payloads([object()]))
pb = frames(lambda: json_format.Parse("{", Payload()))
for name, stack in (("temporalio", sdk), ("google/protobuf", pb)):
    inside = [(file, line) for file, line in stack if "/site-packages/" + name in file]
    assert inside and all(line for _, line in inside), (name, stack)
for dist in ("temporalio", "protobuf"):
    assert importlib.metadata.files(dist), dist
with open(temporalio.converter.__cached__, "rb") as pyc:
    assert int.from_bytes(pyc.read(8)[4:], "little") == 1, "bytecode is not unchecked-hash"
print("ok")
"""


def test_tracebacks_through_the_sdk_and_protobuf_show_their_source_lines() -> None:
    assert docker("run", "--rm", IMAGE, "python", "-c", TRACEBACKS).stdout.strip() == "ok"
