"""The real worker plus two activities that misbehave on purpose, for the fault tests.

Mounted into the image at /faults and started as
    python -c "import fault_worker; fault_worker.main()"
(a module, not __main__, so that the workflow sandbox can import it).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import time
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy


@activity.defn(name="block_event_loop")
async def block_event_loop(seconds: float) -> str:
    activity.logger.info("block_event_loop started")
    time.sleep(seconds)  # the fault under test: blocking code on the event loop
    return os.environ.get("FAULT_NAME", "?")


@activity.defn(name="sleep_then_return")
async def sleep_then_return(seconds: float) -> str:
    activity.logger.info("sleep_then_return started, attempt %d", activity.info().attempt)
    await asyncio.sleep(seconds)
    return os.environ.get("FAULT_NAME", "?")


@activity.defn(name="stop_polling")
async def stop_polling(seconds: float) -> str:
    """Stops the SDK worker's polling behind the worker's back, as an SDK bug would, and stays
    busy: the process, its event loop and one slot live on; no more tasks are fetched."""
    from temporalio.worker import Worker

    activity.logger.info("stop_polling started")
    worker = next(o for o in gc.get_objects() if isinstance(o, Worker))
    worker._bridge_worker.initiate_shutdown()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(asyncio.CancelledError):  # deaf to the shutdown's cancellation
            await asyncio.sleep(deadline - time.monotonic())
    return os.environ.get("FAULT_NAME", "?")


@workflow.defn(name="RunActivity")
class RunActivity:
    @workflow.run
    async def run(self, name: str, seconds: float) -> str:
        result: str = await workflow.execute_activity(
            name,
            seconds,
            # Short, so that work lost with a killed worker is retried elsewhere within seconds.
            start_to_close_timeout=timedelta(seconds=seconds + 10),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5),
        )
        return result


def main() -> None:
    from agent_runner.config import load_settings
    from agent_runner.logs import configure_logging
    from agent_runner.worker import run

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    code = asyncio.run(
        run(
            settings,
            extra_workflows=[RunActivity],
            extra_activities=[block_event_loop, sleep_then_return, stop_polling],
        )
    )
    sys.stdout.flush()
    os._exit(code)
