"""A real Prometheus server (Debian's prometheus) scrapes the container: the SDK's series and the
project's own are in its database, every metric the alert rules use is among them, and the
rules load and evaluate in the server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError

from tests.container.conftest import FAST_HEALTH, run_agent, wait_health, worker_env
from tests.helpers import ROOT, Seen, TemporalServer, free_port, stop_process_group, wait_for

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


class Prometheus:
    def __init__(self, port: int) -> None:
        self.port = port

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/{path}{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """Start Prometheus scraping the given targets every second; stopped and its storage removed after."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: install Debian's prometheus package (apt-get install prometheus)")
    started: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [{"job_name": "agent-runner", "static_configs": [{"targets": [target]}]}],
                }
            )
        )
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        server = Prometheus(port)

        def ready() -> bool | Seen:
            if proc.poll() is not None:
                raise AssertionError(
                    f"prometheus exited {proc.returncode}: {(tmp_path / 'prometheus.log').read_text()}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as response:
                    return response.status == 200
            except OSError as err:
                return Seen(str(err))

        wait_for("Prometheus to be ready", ready, timeout=120, interval=0.5)
        return server

    yield start
    for proc in started:
        stop_process_group(proc)


def rule_metric_names() -> set[str]:
    return set(re.findall(r"\b((?:temporal|agent_runner)_[a-z_]+)\b", RULES.read_text()))


def test_prometheus_scrapes_sdk_and_run_series_from_the_container(
    own_temporal: TemporalServer, run_container: Any, agent_llm: Any, prometheus: Any, figure: Any
) -> None:
    port = free_port()
    env = {**worker_env(own_temporal.address), **agent_llm("measured"), "STIGMER_METRICS_ADDRESS": f"127.0.0.1:{port}"}
    container = run_container("--network=host", *FAST_HEALTH, env=env)
    wait_health(container, "healthy", timeout=120)
    server = prometheus(f"127.0.0.1:{port}")
    started = time.monotonic()

    assert run_agent(own_temporal.address, env["TEMPORAL_TASK_QUEUE"], "metrics-run", "measured").status == "completed"
    with pytest.raises(WorkflowFailureError):  # an invalid request: a failed run
        run_agent(own_temporal.address, env["TEMPORAL_TASK_QUEUE"], "metrics-bad", "")

    def series(expr: str, wanted: float | None = None) -> Any:
        def probe() -> list[dict[str, Any]] | Seen:
            found = server.query(expr)
            ok = found and (wanted is None or float(found[0]["value"][1]) == wanted)
            return found if ok else Seen(str(found))

        return wait_for(f"{expr} in Prometheus", probe, timeout=120, interval=1)

    # The SDK's slot series, and the worker's own free-slot gauge (its slots are custom-counted).
    used = series('temporal_worker_task_slots_used{job="agent-runner",worker_type="ActivityWorker"}')
    assert env["TEMPORAL_TASK_QUEUE"] in {found["metric"]["task_queue"] for found in used}
    series('agent_runner_task_slots_available{job="agent-runner",kind="tool"}', 10)  # the default
    series('agent_runner_task_slots_available{job="agent-runner",kind="model"}', 500)
    series("agent_runner_runs_started_total", 2)
    series('agent_runner_runs_finished_total{status="completed"}', 1)
    series('agent_runner_runs_finished_total{status="failed"}', 1)
    series('agent_runner_model_tokens_total{kind="input"}', 20)  # two model calls, 10 each
    series('agent_runner_model_tokens_total{kind="output"}', 10)
    scraped_in = time.monotonic() - started

    # The poll failures the not-polling alert subtracts appear only when Temporal is gone.
    own_temporal.stop()
    series('temporal_long_request_failure_total{operation="PollWorkflowTaskQueue"}')
    missing = sorted(name for name in rule_metric_names() if not server.query(f'count({{__name__="{name}"}})'))
    assert not missing, f"the alert rules use metrics the worker does not export: {missing}"

    groups = wait_for(
        "the alert rules evaluated",
        lambda: (
            (g := server.api("rules")["groups"])
            and all(r.get("lastEvaluation", "").startswith("2") for r in g[0]["rules"])
            and g
        ),
        timeout=60,
        interval=1,
    )
    rules = {rule["name"]: rule["health"] for rule in groups[0]["rules"]}
    assert rules == dict.fromkeys(
        (
            "AgentRunnerNotPolling",
            "AgentRunnerSlotsExhausted",
            "AgentRunnerScheduleToStartSlow",
            "AgentRunnerRunFailuresRising",
        ),
        "ok",
    )
    figure(
        "Prometheus scrapes the container: SDK slots, run and token series; every metric of the alert rules exists",
        f"{len(rule_metric_names())} rule metrics found; run series scraped {scraped_in:.1f}s after the first run",
    )
