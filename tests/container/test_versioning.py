"""Worker Deployment versioning with two builds of the image, v1 and v2, on a dev server, driven
with `temporal worker deployment`: a run started on v1 stays on v1 after v2 becomes current, and
new runs go to v2. The build id is each image's VERSION (no TEMPORAL_WORKER_BUILD_ID given)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from temporalio.client import Client

from agent_runner.models import AgentRequest, AgentResult
from agent_runner.workflows import AgentExecutionWorkflow
from tests.container.conftest import DOCKER, FAST_HEALTH, docker, inspect, wait_health, worker_env
from tests.fake_llm import Answer, fake_llm, openai_answer, openai_tools
from tests.helpers import ROOT, Seen, TemporalServer, temporal_cli, wait_for


@pytest.fixture(scope="module")
def two_versions() -> Iterator[str]:
    """IMAGE built twice from this checkout, as NAME:v1 and NAME:v2 (only the last layers differ)."""
    name = f"agent-runner-versioning-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DOCKER": DOCKER, "IMAGE": name}
    for inherited in ("MAKEFLAGS", "TAG", "PLATFORM"):  # build this machine's image, tagged VERSION
        env.pop(inherited, None)
    try:
        for version in ("v1", "v2"):
            build = subprocess.run(
                [str(ROOT / "scripts" / "build-image.sh")],
                env={**env, "VERSION": version},
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            assert build.returncode == 0, (
                f"building {name}:{version} failed:\n{build.stdout[-2000:]}{build.stderr[-2000:]}"
            )
        yield name
    finally:
        docker("rmi", f"{name}:v1", f"{name}:v2", check=False)


def cli(server: TemporalServer, *args: str) -> Any:
    result = subprocess.run(
        [temporal_cli(), *args, "--address", server.address, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"temporal {' '.join(args)}: {result.stderr.strip()}"
    return json.loads(result.stdout) if result.stdout.strip() else None


def wait_version_polled(server: TemporalServer, deployment: str, build_id: str) -> None:
    def probe() -> bool | Seen:
        result = subprocess.run(
            [temporal_cli(), "worker", "deployment", "describe-version", "--deployment-name", deployment,
             "--build-id", build_id, "--address", server.address, "-o", "json"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return result.returncode == 0 or Seen(result.stderr.strip()[-300:])

    wait_for(f"version {deployment}:{build_id} to register", probe, timeout=120, interval=1)


def set_current(server: TemporalServer, deployment: str, build_id: str) -> None:
    cli(
        server,
        "worker",
        "deployment",
        "set-current-version",
        "--deployment-name",
        deployment,
        "--build-id",
        build_id,
        "--yes",
    )


def pinned_version(server: TemporalServer, workflow_id: str) -> dict[str, Any]:
    described = cli(server, "workflow", "describe", "--workflow-id", workflow_id)
    return dict(described["workflowExecutionInfo"].get("versioningInfo") or {})


def test_a_run_stays_on_its_version_and_new_runs_go_to_the_current_one(
    own_temporal: TemporalServer, run_container: Any, two_versions: str, figure: Any
) -> None:
    deployment = f"agent-runner-{uuid.uuid4().hex[:8]}"
    base_env = worker_env(own_temporal.address) | {"TEMPORAL_DEPLOYMENT_NAME": deployment}
    queue = base_env["TEMPORAL_TASK_QUEUE"]
    assert "STIGMER_BUILD_ID=v1" in inspect(f"{two_versions}:v1", "image")["Config"]["Env"]
    gate = threading.Event()
    old_id, new_id = f"old-{uuid.uuid4().hex[:6]}", f"new-{uuid.uuid4().hex[:6]}"
    v1_script = [
        Answer(openai_tools(("write_file", {"path": "v1.md", "content": "1"})).body, gate=gate),
        openai_answer("done on v1"),
    ]
    v2_script = [openai_tools(("write_file", {"path": "v2.md", "content": "2"})), openai_answer("done on v2")]

    def llm_env(url: str) -> dict[str, str]:
        return {"STIGMER_LLM_PROVIDER": "openai", "STIGMER_LLM_BASE_URL": url, "STIGMER_LLM_API_KEY": "sk-test"}

    with fake_llm(v1_script) as v1_llm, fake_llm(v2_script) as v2_llm:
        try:
            v1 = run_container(
                "--network=host", *FAST_HEALTH, env=base_env | llm_env(v1_llm.url), image=f"{two_versions}:v1"
            )
            wait_health(v1, "healthy", timeout=120)  # the health check sees a versioned worker's pollers
            wait_version_polled(own_temporal, deployment, "v1")
            set_current(own_temporal, deployment, "v1")

            async def scenario() -> tuple[AgentResult, AgentResult, float]:
                client = await Client.connect(own_temporal.address)
                old = await client.start_workflow(
                    AgentExecutionWorkflow.run,
                    AgentRequest(instructions="on v1"),
                    id=old_id,
                    task_queue=queue,
                )
                await asyncio.to_thread(
                    wait_for, "the v1 run's first model call", lambda: len(v1_llm.requests) >= 1, 120
                )
                run_container("--network=host", env=base_env | llm_env(v2_llm.url), image=f"{two_versions}:v2")
                await asyncio.to_thread(wait_version_polled, own_temporal, deployment, "v2")
                switched = time.monotonic()
                await asyncio.to_thread(set_current, own_temporal, deployment, "v2")
                new: AgentResult = await client.execute_workflow(
                    AgentExecutionWorkflow.run,
                    AgentRequest(instructions="on v2"),
                    id=new_id,
                    task_queue=queue,
                )
                gate.set()  # only now may the v1 run go on, with v2 current
                old_result: AgentResult = await old.result()
                return old_result, new, time.monotonic() - switched

            old_result, new_result, after = asyncio.run(scenario())
        finally:
            gate.set()

    assert old_result.final_answer == "done on v1" and old_result.files_created == ["v1.md"]
    assert new_result.final_answer == "done on v2" and new_result.files_created == ["v2.md"]
    assert len(v1_llm.requests) == 2 and len(v2_llm.requests) == 2  # each run's model calls from its own version

    # `temporal workflow describe` names the version each run is pinned to.
    for workflow_id, build_id in ((old_id, "v1"), (new_id, "v2")):
        info = cli(own_temporal, "workflow", "describe", "--workflow-id", workflow_id)["workflowExecutionInfo"]
        assert info["versioningInfo"]["behavior"] == "VERSIONING_BEHAVIOR_PINNED"
        assert info["versioningInfo"]["deploymentVersion"] == {"buildId": build_id, "deploymentName": deployment}

    shown = subprocess.run(
        [temporal_cli(), "workflow", "describe", "--workflow-id", old_id, "--address", own_temporal.address],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert re.search(
        rf"Versioning Info:\n\s+Behavior\s+Pinned\n\s+DeploymentName\s+{deployment}\n\s+BuildId\s+v1\n", shown
    ), shown

    # The history: every workflow task of the old run was completed by v1, the last one after v2
    # had become current.
    routing = cli(own_temporal, "worker", "deployment", "describe", "--name", deployment)["routingConfig"]
    assert routing["currentVersionBuildID"] == "v2"
    events = cli(own_temporal, "workflow", "show", "--workflow-id", old_id)["events"]
    completed = [e for e in events if e["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_COMPLETED"]
    versions = {e["workflowTaskCompletedEventAttributes"]["deploymentVersion"]["buildId"] for e in completed}
    assert versions == {"v1"}, versions
    assert timestamp(completed[-1]["eventTime"]) > timestamp(routing["currentVersionChangedTime"])
    figure(
        "a run started on v1 finishes on v1 after v2 is made current (describe, history); a new run goes to v2",
        f"{len(completed)} workflow tasks of the v1 run, all on v1, the last {after:.1f}s after set-current-version v2",
    )


def timestamp(text: str) -> datetime:
    """An RFC 3339 time as Temporal prints it (nanoseconds, trailing zeros dropped)."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00")
