"""How health is decided, both halves in one place.

The worker writes a small heartbeat file from its event loop every BEAT_INTERVAL seconds,
naming its unique identity and whether it is polling. The health check (healthcheck.py)
reads that file and then asks Temporal whether that identity polls the task queue:

1. no heartbeat file            -> the worker has not started, or has stopped
2. heartbeat older than BEAT_MAX_AGE -> the worker is frozen or its event loop is blocked
3. state is not "polling"       -> the worker is (re)connecting to Temporal
4. Temporal unreachable         -> the worker cannot be getting work either
5. Temporal lists this identity polling both the workflow and the activity queue, with a
   last access no older than POLL_MAX_AGE -> healthy.

The heartbeat catches a frozen worker within seconds; the Temporal query proves the
connection and the polling, which no local signal can.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from agent_runner.config import Settings

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

BEAT_INTERVAL = 5.0
BEAT_MAX_AGE = 30.0
# An idle poller's last access legitimately ages up to ~60 s (one long poll), so allow more.
POLL_MAX_AGE = 90.0
CONNECT_TIMEOUT = 5.0
RPC_TIMEOUT = 3.0


@dataclass
class Beat:
    identity: str
    task_queue: str
    state: str  # "connecting" or "polling"
    since: float  # when the state was entered (epoch seconds)
    at: float  # when this beat was written (epoch seconds)
    pid: int


class HeartbeatFile:
    """Written only by the worker; atomic so a reader never sees half a file."""

    def __init__(self, path: Path, identity: str, task_queue: str) -> None:
        self.path = path
        self.identity = identity
        self.task_queue = task_queue
        self.state = "connecting"
        self.since = time.time()

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state, self.since = state, time.time()
        self.write()

    def write(self) -> None:
        beat = Beat(self.identity, self.task_queue, self.state, self.since, time.time(), os.getpid())
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(asdict(beat)), encoding="utf-8")
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def read_beat(path: Path) -> Beat | None:
    try:
        return Beat(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as err:
        raise ValueError(f"unreadable heartbeat file {path}: {err}") from None


def judge_beat(beat: Beat | None, now: float, path: Path) -> str | None:
    """The reason the worker is unhealthy by its own heartbeat, or None if it looks alive."""
    if beat is None:
        return f"worker not running: no heartbeat file at {path}"
    age = now - beat.at
    if age > BEAT_MAX_AGE:
        return (
            f"worker unresponsive: last heartbeat {age:.0f}s ago (limit {BEAT_MAX_AGE:.0f}s), "
            "frozen or event loop blocked"
        )
    if beat.state != "polling":
        return f"worker {beat.state} to Temporal for {now - beat.since:.0f}s"
    return None


def judge_pollers(identity: str, last_access: dict[str, float | None], now: float) -> str | None:
    """last_access maps a queue type to this identity's last poll (epoch seconds), None if not listed."""
    problems = []
    for kind, at in last_access.items():
        if at is None:
            problems.append(f"{kind}: not listed")
        elif now - at > POLL_MAX_AGE:
            problems.append(f"{kind}: last poll {now - at:.0f}s ago")
    if problems:
        return f"worker {identity} is not polling ({'; '.join(problems)})"
    return None


async def check(settings: Settings) -> tuple[bool, str]:
    """The full health check: heartbeat first (free), then one round trip to Temporal."""
    now = time.time()
    try:
        beat = read_beat(settings.health_file)
    except ValueError as err:
        return False, str(err)
    reason = judge_beat(beat, now, settings.health_file)
    if reason or beat is None:
        return False, reason or "no heartbeat"
    try:
        last_access = await _poller_last_access(settings, beat.identity)
    except Exception as err:  # any failure to ask is a failure to prove health
        return False, f"cannot query Temporal at {settings.address}: {_short(err)}"
    reason = judge_pollers(beat.identity, last_access, time.time())
    if reason:
        return False, reason
    ages = ", ".join(f"{k} {time.time() - (v or 0):.0f}s ago" for k, v in last_access.items())
    return True, f"healthy: {beat.identity} polling {settings.task_queue} ({ages})"


async def _poller_last_access(settings: Settings, identity: str) -> dict[str, float | None]:
    # The SDK's service client, not temporalio.client: the same connection code for a
    # fraction of the import time, which every probe pays.
    import asyncio

    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.service import ConnectConfig, ServiceClient

    connect = settings.connect
    service = await asyncio.wait_for(
        ServiceClient.connect(
            ConnectConfig(
                target_host=settings.address,
                api_key=connect.get("api_key"),
                tls=connect.get("tls"),
                rpc_metadata=connect.get("rpc_metadata") or {},
                identity=f"healthcheck/{identity}",
            )
        ),
        CONNECT_TIMEOUT,
    )
    result: dict[str, float | None] = {}
    for kind, queue_type in (
        ("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    ):
        response = await service.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.namespace,
                task_queue=TaskQueue(name=settings.task_queue),
                task_queue_type=queue_type,
            ),
            timeout=timedelta(seconds=RPC_TIMEOUT),
        )
        result[kind] = next(
            (_epoch(p.last_access_time) for p in response.pollers if p.identity == identity),
            None,
        )
    return result


def _epoch(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def _short(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    return text[:160]
