"""The SDK runtime the worker's client runs on: one per process."""

from __future__ import annotations

from datetime import timedelta

from temporalio.runtime import Runtime, TelemetryConfig

# How often the SDK tells Temporal this worker is alive, with its slots and pollers
# (worker heartbeats: ListWorkers / DescribeWorker, `temporal worker list`). The readiness
# probe reads them; the SDK's default is 60 s, too slow to be ready soon after an outage.
WORKER_HEARTBEAT_INTERVAL = timedelta(seconds=10)


def make_runtime() -> Runtime:
    return Runtime(telemetry=TelemetryConfig(), worker_heartbeat_interval=WORKER_HEARTBEAT_INTERVAL)
