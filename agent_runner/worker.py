"""The worker process: connect (with retries), poll the task queue, drain on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from agent_runner.activities import WorkspaceActivities
from agent_runner.config import Settings
from agent_runner.errors import describe_error
from agent_runner.health import Heartbeat
from agent_runner.workflows import AgentExecutionWorkflow

log = logging.getLogger("agent_runner")

BACKOFF_FIRST = 1.0
# Short enough that a worker is back within seconds of Temporal returning, long enough that
# many replicas do not hammer a recovering cluster.
BACKOFF_MAX = 10.0


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
    try:
        await _serve(settings, identity, beat, stop, list(extra_workflows), list(extra_activities))
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
    extra_workflows: list[type],
    extra_activities: list[Callable[..., Any]],
) -> None:
    """Connect, poll, and after a fatal worker error connect again, until stop is set."""
    delay = BACKOFF_FIRST
    attempt = 0
    while not stop.is_set():
        attempt += 1
        beat.set_state("connecting")
        try:
            client = await Client.connect(**settings.connect, identity=identity)
        except Exception as err:
            log.warning(
                "Temporal at %s not reachable (attempt %d): %s; retrying in %.0fs",
                settings.address,
                attempt,
                describe_error(err),
                delay,
            )
            await _sleep_unless(stop, delay)
            delay = min(delay * 2, BACKOFF_MAX)
            continue
        delay, attempt = BACKOFF_FIRST, 0
        worker = _make_worker(settings, client, identity, extra_workflows, extra_activities)
        beat.set_state("polling")
        log.info("connected; polling task queue %s", settings.task_queue)
        running = asyncio.create_task(worker.run())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            await worker.shutdown()  # stops polling, waits for running activities up to the drain timeout
            with contextlib.suppress(Exception):
                await running
            return
        stopping.cancel()
        error = running.exception()
        log.error("worker stopped unexpectedly: %s; reconnecting in %.0fs", describe_error(error), delay)
        await _sleep_unless(stop, delay)


def _make_worker(
    settings: Settings,
    client: Client,
    identity: str,
    extra_workflows: list[type],
    extra_activities: list[Callable[..., Any]],
) -> Worker:
    activities = WorkspaceActivities(settings.workspace_root, settings.llm, settings.command_timeout, settings.sandbox)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[AgentExecutionWorkflow, *extra_workflows],
        activities=[activities.execute_agent, *extra_activities],
        identity=identity,
        max_concurrent_activities=settings.max_concurrent_activities,
        graceful_shutdown_timeout=timedelta(seconds=settings.drain_timeout),
    )


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
