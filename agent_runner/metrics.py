"""Metrics: the SDK runtime (and its Prometheus endpoint), and the worker's own run series.

The SDK exports its own series (temporal_*: task slots, pollers, schedule-to-start latency...).
The worker adds the ones below, counted from the workflow with the workflow's metric meter, which
skips replays, so a run is counted once however often its history is replayed. Every series
carries the SDK's labels namespace, task_queue and workflow_type.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

if TYPE_CHECKING:
    from agent_runner.config import Settings
    from agent_runner.models import TokenUsage

# With counters_total_suffix the exporter adds _total to counter names, as Prometheus expects.
RUNS_STARTED = "agent_runner_runs_started"  # exported as agent_runner_runs_started_total
# Label status: completed, failed, cancelled, limit_reached (a run's AgentResult.status), plus
# failed for a run that ended with an error and cancelled for one cancelled before its result.
RUNS_FINISHED = "agent_runner_runs_finished"  # exported as agent_runner_runs_finished_total{status}
# Label kind: input or output, as the provider reported them.
MODEL_TOKENS = "agent_runner_model_tokens"  # exported as agent_runner_model_tokens_total{kind}
# Label kind: workflow, model or tool (agent_runner/slots.py). The worker counts its own slots for
# the health check, through the SDK's custom slot-supplier interface, and the SDK exports no
# temporal_worker_task_slots_available for a custom supplier (only ..._used): this replaces it.
SLOTS_AVAILABLE = "agent_runner_task_slots_available"
SLOTS_EVERY = 5.0  # seconds between two updates of the gauge


def make_runtime(settings: Settings) -> Runtime:
    """The one SDK runtime of the process; with STIGMER_METRICS_ADDRESS it serves /metrics there.

    Durations are exported in seconds (Prometheus' convention) rather than the SDK's default
    milliseconds. Create it once: each runtime starts its own threads and its own listener.

    Worker heartbeats: the SDK tells Temporal, every WORKER_HEARTBEAT_INTERVAL seconds, that this
    worker is alive, with its slots and pollers (ListWorkers / DescribeWorker, `temporal worker
    list`). The readiness probe reads them; the SDK's default of 60 s would leave a worker not
    ready for up to a minute after an outage."""
    from agent_runner.config import ConfigError
    from agent_runner.health import WORKER_HEARTBEAT_INTERVAL

    metrics = None
    if settings.metrics_address:
        metrics = PrometheusConfig(
            bind_address=settings.metrics_address, counters_total_suffix=True, durations_as_seconds=True
        )
    try:
        return Runtime(
            telemetry=TelemetryConfig(metrics=metrics),
            worker_heartbeat_interval=timedelta(seconds=WORKER_HEARTBEAT_INTERVAL),
        )
    except ValueError as err:  # the exporter could not listen, e.g. the port is taken
        raise ConfigError(
            f"STIGMER_METRICS_ADDRESS: cannot serve metrics at {settings.metrics_address}: {err}"
        ) from None


def run_started() -> None:
    """Called by the workflow when a run starts (not when it continues as new: one run, one count)."""
    workflow.metric_meter().create_counter(RUNS_STARTED, "agent runs started").add(1)


def run_finished(status: str, usage: TokenUsage | None) -> None:
    """Called by the workflow at the one place every run ends, with its status and token usage."""
    meter = workflow.metric_meter()
    meter.create_counter(RUNS_FINISHED, "agent runs finished, by status").add(1, {"status": status})
    tokens = meter.create_counter(MODEL_TOKENS, "model tokens used by agent runs, as the provider reported them")
    for kind, count in (("input", usage and usage.input_tokens), ("output", usage and usage.output_tokens)):
        if count:
            tokens.add(int(count), {"kind": kind})


async def publish_slots(runtime: Runtime, view: Callable[[], dict[str, dict[str, Any]]]) -> None:
    """Keeps the free-slot gauge up to date from the worker's own slot view, until cancelled."""
    gauge = runtime.metric_meter.create_gauge(SLOTS_AVAILABLE, "free task slots of this worker, by kind")
    while True:
        for kind, slots in view().items():
            gauge.set(max(int(slots["capacity"]) - int(slots["used"]), 0), {"kind": kind})
        await asyncio.sleep(SLOTS_EVERY)
