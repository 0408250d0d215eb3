"""The worker process: connect (with retries), poll the task queue, drain on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.runtime import Runtime
from temporalio.worker import Worker, WorkerDeploymentConfig

from agent_runner.activities import AgentActivities, volume_id, volume_queue
from agent_runner.config import Settings
from agent_runner.errors import describe_error
from agent_runner.health import Heartbeat
from agent_runner.metrics import make_runtime, publish_slots
from agent_runner.slots import SlotView
from agent_runner.workflows import AgentExecutionWorkflow

log = logging.getLogger("agent_runner")

BACKOFF_FIRST = 1.0
# Short enough that a worker is back within seconds of Temporal returning, long enough that
# many replicas do not hammer a recovering cluster.
BACKOFF_MAX = 10.0
# An SDK worker that ran this long without failing ends a run of failures.
STABLE_AFTER = 60.0


def new_identity() -> str:
    # With --network host every container shares the host name and the worker has the same
    # PID in each (the one after tini's), so the SDK's default "PID@host" is not unique: add a random part.
    return f"agent-runner/{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


async def run(
    settings: Settings,
    *,
    extra_workflows: Sequence[type] = (),
    extra_activities: Sequence[Callable[..., Any]] = (),
) -> int:
    """Run until asked to stop. Returns the process exit code.

    extra_workflows / extra_activities are registered beside the agent's own, for embedding
    the worker in a program with activities of its own (the fault tests do this)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig, stop)

    runtime = make_runtime(settings)  # once per process: it holds the metrics listener
    identity = settings.identity or new_identity()
    beat = Heartbeat(settings.health_file, identity, settings.task_queue)
    beat.set_state("connecting")
    beating = asyncio.create_task(beat.beat_forever())
    log.info(
        "worker %s starting: Temporal %s, namespace %s, task queue %s",
        identity,
        settings.address,
        settings.namespace,
        settings.task_queue,
    )
    for note in settings.notes:
        log.warning("%s", note)
    if settings.metrics_address:
        log.info("serving Prometheus metrics at http://%s/metrics", settings.metrics_address)
    if settings.deployment:
        log.info("versioned: worker deployment %s, build id %s", settings.deployment.name, settings.deployment.build_id)
    try:
        await _serve(settings, identity, beat, stop, runtime, list(extra_workflows), list(extra_activities))
    finally:
        beating.cancel()
        beat.stop()
    log.info("worker %s stopped", identity)
    return 0


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info("received %s: stopping polling and draining running work", sig.name)
    stop.set()


async def _serve(
    settings: Settings,
    identity: str,
    beat: Heartbeat,
    stop: asyncio.Event,
    runtime: Runtime,
    extra_workflows: list[type],
    extra_activities: list[Callable[..., Any]],
) -> None:
    """Connect, poll, and after a fatal worker error connect again, until stop is set."""
    delay = BACKOFF_FIRST
    attempt = 0
    failures = 0  # SDK worker failures in a row: the heartbeat says "failed" until one polls again
    sdk_error = ""
    while not stop.is_set():
        attempt += 1
        if not failures:
            beat.set_state("connecting")
        try:
            client = await Client.connect(**settings.connect, identity=identity, runtime=runtime)
        except Exception as err:
            log.warning(
                "Temporal at %s not reachable (attempt %d): %s; retrying in %.0fs",
                settings.address,
                attempt,
                describe_error(err),
                delay,
            )
            error = f"attempt {attempt}: {describe_error(err)}"
            if failures:
                beat.set_state("failed", f"{sdk_error}; reconnecting, {error}")
            else:
                beat.set_state("connecting", error)
            await _sleep_unless(stop, delay)
            delay = min(delay * 2, BACKOFF_MAX)
            continue
        delay, attempt = BACKOFF_FIRST, 0
        slots = WorkerSlots(settings)
        workers = _make_workers(settings, client, identity, slots, extra_workflows, extra_activities)
        beat.watch_slots(slots.view)
        gauges = asyncio.create_task(publish_slots(runtime, slots.view))
        beat.set_state("polling")
        log.info("connected; polling task queues %s", ", ".join(w.task_queue for w in workers))
        runs = {asyncio.create_task(w.run()) for w in workers}
        stopping = asyncio.create_task(stop.wait())
        started = time.monotonic()
        done, _ = await asyncio.wait({*runs, stopping}, return_when=asyncio.FIRST_COMPLETED)
        gauges.cancel()
        if stop.is_set():
            beat.set_state("draining")
            # Stops polling, waits for running activities up to the drain timeout.
            await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
            await asyncio.gather(*runs, return_exceptions=True)
            return
        stopping.cancel()
        beat.watch_slots(None)
        failures = 1 if time.monotonic() - started > STABLE_AFTER else failures + 1
        sdk_error = describe_error(next(iter(done)).exception())
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await asyncio.gather(*runs, return_exceptions=True)
        delay = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
        log.error("worker stopped unexpectedly: %s; reconnecting in %.0fs", sdk_error, delay)
        beat.set_state("failed", sdk_error, failures)
        await _sleep_unless(stop, delay)


def _make_workers(
    settings: Settings,
    client: Client,
    identity: str,
    slots: WorkerSlots,
    extra_workflows: list[type],
    extra_activities: list[Callable[..., Any]],
) -> list[Worker]:
    """Two workers on one client: the task queue (runs, model calls), and the queue of the
    workspace volume (tool calls, which must run where the run's directory is)."""
    volume = volume_queue(settings.task_queue, volume_id(settings.workspace_root))
    activities = AgentActivities(
        settings.workspace_root,
        settings.llm,
        settings.command_timeout,
        volume_queue=volume,
        volume_wait=settings.volume_wait,
        sandbox=settings.sandbox,
    )
    drain = timedelta(seconds=settings.drain_timeout)
    deployment = _deployment_config(settings)
    return [
        Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[AgentExecutionWorkflow, *extra_workflows],
            activities=[activities.open_workspace, activities.call_model, *extra_activities],
            identity=identity,
            tuner=slots.main.tuner(),  # counted for the health check (agent_runner/slots.py)
            graceful_shutdown_timeout=drain,
            deployment_config=deployment,
        ),
        Worker(
            client,
            task_queue=volume,
            activities=[activities.call_tool, activities.close_workspace],
            identity=identity,
            tuner=slots.volume.tuner(),
            graceful_shutdown_timeout=drain,
            deployment_config=deployment,
        ),
    ]


def _deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """Worker Deployment versioning. Runs are pinned: a run finishes on the build it started on."""
    if settings.deployment is None:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(settings.deployment.name, settings.deployment.build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


class WorkerSlots:
    """The slots of both SDK workers, as the heartbeat file records them: workflow tasks and
    model calls on the task queue, tool calls on the volume's queue."""

    def __init__(self, settings: Settings) -> None:
        self.main = SlotView(settings.max_concurrent_model_calls)
        self.volume = SlotView(settings.max_concurrent_activities)

    def view(self) -> dict[str, dict[str, Any]]:
        return {
            "workflow": self.main.workflow.view(),
            "model": self.main.activity.view(),
            "tool": self.volume.activity.view(),
        }


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
