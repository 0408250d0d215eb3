"""The SDK runtime the worker's client runs on: one per process."""

from __future__ import annotations

from datetime import timedelta

from temporalio.runtime import Runtime, TelemetryConfig

from agent_runner.health import WORKER_HEARTBEAT_INTERVAL


def make_runtime() -> Runtime:
    # Worker heartbeats: the SDK tells Temporal, every WORKER_HEARTBEAT_INTERVAL seconds, that this
    # worker is alive, with its slots and pollers (ListWorkers / DescribeWorker, `temporal worker
    # list`). The readiness probe reads them; the SDK's default of 60 s would leave a worker not
    # ready for up to a minute after an outage.
    return Runtime(telemetry=TelemetryConfig(), worker_heartbeat_interval=timedelta(seconds=WORKER_HEARTBEAT_INTERVAL))
