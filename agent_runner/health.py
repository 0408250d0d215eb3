"""How health is decided, both halves in one place.

The worker (class Heartbeat) writes a small file every BEAT_INTERVAL seconds from its event
loop, naming its unique identity and whether it is polling. A watchdog thread notes in the
same file when the event loop stops beating, and where it is stuck. The health check
(healthcheck.py -> check()) reads that file, then asks Temporal whether that identity polls:

1. no heartbeat file                      -> the worker has not started, or has stopped
2. loop beat older than BEAT_MAX_AGE      -> event loop blocked (the watchdog says where),
                                             or the whole process frozen or killed
3. state is not "polling"                 -> the worker is (re)connecting to Temporal
4. Temporal unreachable                   -> the worker cannot be getting work either
5. Temporal lists this identity polling both the workflow and the activity queue, with a
   last access no older than POLL_MAX_AGE -> healthy.

The heartbeat catches a stuck worker within seconds, where Temporal would list its pollers
for minutes; the Temporal query proves the connection and the polling, which no local
signal can.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from agent_runner.config import Settings
from agent_runner.errors import describe_error

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

BEAT_INTERVAL = 5.0
BEAT_MAX_AGE = 20.0
# An idle poller's last access legitimately ages up to ~60 s (one long poll), so allow more.
POLL_MAX_AGE = 90.0
CONNECT_TIMEOUT = 5.0
RPC_TIMEOUT = 3.0

log = logging.getLogger("agent_runner")


@dataclass
class Beat:
    identity: str
    task_queue: str
    state: str  # "connecting" or "polling"
    since: float  # when the state was entered (epoch seconds)
    at: float  # the event loop's last beat (epoch seconds)
    pid: int
    checked_at: float = 0.0  # the watchdog's last look; fresh while the process is not frozen
    blocked_at: str = ""  # where the event loop is stuck, when it is


class Heartbeat:
    """The worker's half: a beat from the event loop, and a watchdog thread that notices
    (and logs, and records) when the event loop stops beating while the process lives."""

    def __init__(
        self,
        path: Path,
        identity: str,
        task_queue: str,
        interval: float = BEAT_INTERVAL,
        blocked_after: float = BEAT_MAX_AGE / 2,
    ) -> None:
        self.path = path
        self.interval = interval
        self.blocked_after = blocked_after
        self._lock = threading.Lock()
        now = time.time()
        self._beat = Beat(identity, task_queue, "connecting", since=now, at=now, pid=os.getpid())
        self._stop = threading.Event()
        self._loop_thread_id = threading.get_ident()
        self._watchdog = threading.Thread(target=self._watch, name="heartbeat-watchdog", daemon=True)

    def set_state(self, state: str) -> None:
        with self._lock:
            if state != self._beat.state:
                self._beat.state, self._beat.since = state, time.time()
            self._beat.at = time.time()
            self._write()

    async def beat_forever(self) -> None:
        """Run as a task on the worker's event loop: it beats only while the loop runs."""
        self._loop_thread_id = threading.get_ident()
        if not self._watchdog.is_alive():
            self._watchdog.start()
        while True:
            with self._lock:
                self._beat.at = time.time()
                self._write()
            await asyncio.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self.path.unlink(missing_ok=True)

    def _watch(self) -> None:
        warned = False
        while not self._stop.wait(self.interval):
            with self._lock:
                now = time.time()
                stalled = now - self._beat.at
                self._beat.checked_at = now
                if stalled > self.blocked_after:
                    self._beat.blocked_at = _where(self._loop_thread_id)
                    if not warned:
                        log.warning(
                            "event loop blocked for %.0fs at %s: an activity or workflow is running blocking code "
                            "on the event loop; the worker can do nothing else until it returns",
                            stalled,
                            self._beat.blocked_at,
                        )
                        warned = True
                elif warned:
                    log.warning("event loop running again")
                    self._beat.blocked_at, warned = "", False
                if not self._stop.is_set():
                    self._write()

    def _write(self) -> None:
        # Atomic: a reader never sees half a file. The lock orders the loop's and the thread's writes.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps(asdict(self._beat)), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as err:  # a full disk must not kill the worker; health will say so
            log.error("cannot write heartbeat file %s: %s", self.path, err)


def _where(thread_id: int) -> str:
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return "unknown"
    top = traceback.extract_stack(frame)[-1]
    return f"{Path(top.filename).name}:{top.lineno} in {top.name}"


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
        if beat.blocked_at and now - beat.checked_at <= BEAT_MAX_AGE:
            return f"worker event loop blocked for {age:.0f}s at {beat.blocked_at}"
        return f"worker unresponsive: no heartbeat for {age:.0f}s (limit {BEAT_MAX_AGE:.0f}s), process frozen or killed"
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
        return False, f"cannot query Temporal at {settings.address}: {describe_error(err)}"
    reason = judge_pollers(beat.identity, last_access, time.time())
    if reason:
        return False, reason
    ages = ", ".join(f"{k} {time.time() - (v or 0):.0f}s ago" for k, v in last_access.items())
    return True, f"healthy: {beat.identity} polling {settings.task_queue} ({ages})"


async def _poller_last_access(settings: Settings, identity: str) -> dict[str, float | None]:
    # The SDK's service client, not temporalio.client: the same connection code for a
    # fraction of the import time, which every probe pays.
    from temporalio.api.enums.v1 import DescribeTaskQueueMode, TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue, TaskQueueVersionSelection
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
    types = [TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY]
    kinds: dict[int, str] = {int(types[0]): "workflow", int(types[1]): "activity"}
    # A task queue has several partitions and each poller polls one of them; the plain
    # DescribeTaskQueue lists only the root partition's pollers, so with a few replicas a
    # live worker goes missing. The enhanced mode gathers every partition, both types at once.
    request = DescribeTaskQueueRequest(
        namespace=settings.namespace,
        task_queue=TaskQueue(name=settings.task_queue),
        api_mode=DescribeTaskQueueMode.DESCRIBE_TASK_QUEUE_MODE_ENHANCED,
        task_queue_types=types,
        report_pollers=True,
    )
    if settings.deployment:
        # A versioned worker's pollers are listed only under its version, "deployment.build".
        own = f"{settings.deployment.name}.{settings.deployment.build_id}"
        request.versions.CopyFrom(TaskQueueVersionSelection(build_ids=[own], unversioned=True))
    response = await service.workflow_service.describe_task_queue(
        request,
        timeout=timedelta(seconds=RPC_TIMEOUT),
    )
    result: dict[str, float | None] = dict.fromkeys(kinds.values())
    for version in response.versions_info.values():
        for queue_type, info in version.types_info.items():
            kind = kinds.get(queue_type)
            for poller in info.pollers:
                if kind and poller.identity == identity:
                    result[kind] = max(result[kind] or 0.0, _epoch(poller.last_access_time))
    return result


def _epoch(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9
