"""Metrics: the SDK runtime (and its Prometheus endpoint), and the worker's own run series.

The SDK exports its own series (temporal_*: task slots, pollers, schedule-to-start latency...).
The worker adds the ones below, counted from the workflow with the workflow's metric meter, which
skips replays, so a run is counted once however often its history is replayed. Every series
carries the SDK's labels namespace, task_queue and workflow_type.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import is_cancelled_exception
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

if TYPE_CHECKING:
    from agent_runner.config import Settings

# With counters_total_suffix the exporter adds _total to counter names, as Prometheus expects.
RUNS_STARTED = "agent_runner_runs_started"  # exported as agent_runner_runs_started_total
# Label status: completed, failed, cancelled, limit_reached (a run's AgentResult.status), plus
# failed for a run that ended with an error and cancelled for one cancelled before its result.
RUNS_FINISHED = "agent_runner_runs_finished"  # exported as agent_runner_runs_finished_total{status}
# Label kind: input or output, as the provider reported them.
MODEL_TOKENS = "agent_runner_model_tokens"  # exported as agent_runner_model_tokens_total{kind}

R = TypeVar("R")


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


def record_run(run: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Decorates the workflow's run method: counts the run's start, its outcome and its tokens.

    A run continued as new is one run: it is counted once at its first start and once at its end."""

    @functools.wraps(run)
    async def recorded(*args: Any, **kwargs: Any) -> R:
        meter = workflow.metric_meter()
        if workflow.info().continued_run_id is None:
            meter.create_counter(RUNS_STARTED, "agent runs started").add(1)
        try:
            result = await run(*args, **kwargs)
        except workflow.ContinueAsNewError:
            raise
        except BaseException as err:
            _finished(meter, "cancelled" if is_cancelled_exception(err) else "failed")
            raise
        _finished(meter, str(getattr(result, "status", "completed")))
        usage = getattr(result, "usage", None)
        tokens = meter.create_counter(MODEL_TOKENS, "model tokens used by agent runs, as the provider reported them")
        for kind in ("input", "output"):
            count = getattr(usage, f"{kind}_tokens", None)
            if count:
                tokens.add(int(count), {"kind": kind})
        return result

    return recorded


def _finished(meter: Any, status: str) -> None:
    meter.create_counter(RUNS_FINISHED, "agent runs finished, by status").add(1, {"status": status})
