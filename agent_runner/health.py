"""How health is decided, both halves in one place.

The worker (class Heartbeat) writes a small file every BEAT_INTERVAL seconds from its event
loop: its unique identity, its state (connecting, polling, failed, draining), the last error,
and its own view of its task slots (agent_runner/slots.py: slots in use, and whether a poller
is out). A watchdog thread notes in the same file when the event loop stops beating, and where
it is stuck. healthcheck.py reads that file. Three questions, three answers:

LIVENESS (healthcheck.py --liveness): is this process working? Never asks Temporal.
1. no heartbeat file                      -> the worker has not started, or has stopped
2. loop beat older than BEAT_MAX_AGE      -> event loop blocked (the watchdog says where),
                                             or the whole process frozen or killed
3. state "failed"                         -> the SDK worker failed fatally; the worker is
                                             retrying, but has not polled since
4. state "polling", and for workflow or activity tasks no poller out (no permit held for a
   poll, no one waiting for a slot) for longer than POLLER_MAX_GAP (POLLER_START_MAX before
   the first poll), as of the file's last write
                                          -> the SDK stopped polling
   Otherwise alive: busy (every slot in use, one poller waiting for a slot) is alive however
   long it lasts; connecting to an unreachable Temporal is alive; draining is alive.

READINESS (healthcheck.py --readiness): is this worker taking work? Asks Temporal.
   Alive, state "polling", and Temporal lists this identity among its workers (worker
   heartbeats, ListWorkers + DescribeWorker) as running, with a heartbeat no older than
   SERVER_BEAT_MAX_AGE; in the first SERVER_BEAT_MAX_AGE of polling, before the SDK's first
   worker heartbeat, Temporal answering is enough. Temporal unreachable: not ready, and the
   line says so.

DOCKER (healthcheck.py, the image's HEALTHCHECK): the exit code is liveness, so that an outage
of Temporal never marks every replica unhealthy (Swarm and autoheal restart unhealthy
containers); the line also gives readiness, e.g. "healthy: alive ...; not ready: Temporal
unreachable at ...".
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_runner.errors import describe_error

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

    from agent_runner.config import Settings

BEAT_INTERVAL = 5.0
BEAT_MAX_AGE = 20.0
# Between a poll that brought a task and the next reservation the SDK holds no poll permit for
# a moment; a gap this long means it stopped polling.
POLLER_MAX_GAP = 20.0
# Before its first poll the SDK worker checks the namespace with Temporal; on a crowded
# machine that can take a while.
POLLER_START_MAX = 60.0
# The SDK's worker heartbeats to Temporal (metrics.make_runtime); Temporal's view of this
# worker is fresh when its last heartbeat is younger than three of them, plus slack.
WORKER_HEARTBEAT_INTERVAL = 10.0
SERVER_BEAT_MAX_AGE = 3 * WORKER_HEARTBEAT_INTERVAL + 5
CONNECT_TIMEOUT = 5.0
RPC_TIMEOUT = 3.0

STATES = ("connecting", "polling", "failed", "draining")
MODES = ("docker", "liveness", "readiness")

log = logging.getLogger("agent_runner")


@dataclass
class Beat:
    identity: str
    task_queue: str
    state: str  # one of STATES
    since: float  # when the state was entered (epoch seconds)
    at: float  # the event loop's last beat (epoch seconds)
    pid: int
    checked_at: float = 0.0  # the watchdog's last look; fresh while the process is not frozen
    blocked_at: str = ""  # where the event loop is stuck, when it is
    error: str = ""  # the last connection or SDK error, one line
    failures: int = 0  # SDK worker failures in a row
    # The worker's own slot view, by task type: capacity, used, pollers, no_poller_since.
    slots: dict[str, dict[str, Any]] = field(default_factory=dict)


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
        self._slots: Callable[[], dict[str, dict[str, Any]]] | None = None
        self._stop = threading.Event()
        self._loop_thread_id = threading.get_ident()
        self._watchdog = threading.Thread(target=self._watch, name="heartbeat-watchdog", daemon=True)

    def set_state(self, state: str, error: str = "", failures: int | None = None) -> None:
        with self._lock:
            if state != self._beat.state:
                self._beat.state, self._beat.since = state, time.time()
            self._beat.error = error
            if failures is not None:
                self._beat.failures = failures
            self._beat.at = time.time()
            self._write()

    def watch_slots(self, view: Callable[[], dict[str, dict[str, Any]]] | None) -> None:
        """Record this slot view (SlotView.view) with every beat; None while no SDK worker runs."""
        with self._lock:
            self._slots = view
            self._beat.slots = view() if view else {}

    async def beat_forever(self) -> None:
        """Run as a task on the worker's event loop: it beats only while the loop runs."""
        import asyncio  # here, not at the top: the liveness probe never needs it

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
        if self._slots is not None:
            self._beat.slots = self._slots()
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


# ---- Liveness: the heartbeat file alone.


def judge_liveness(beat: Beat | None, now: float, path: Path) -> tuple[bool, str]:
    """(alive, why): by the worker's own heartbeat and slot view, without Temporal."""
    if beat is None:
        return False, f"worker not running: no heartbeat file at {path}"
    age = now - beat.at
    if age > BEAT_MAX_AGE:
        if beat.blocked_at and now - beat.checked_at <= BEAT_MAX_AGE:
            return False, f"worker event loop blocked for {age:.0f}s at {beat.blocked_at}"
        return (
            False,
            f"worker unresponsive: no heartbeat for {age:.0f}s (limit {BEAT_MAX_AGE:.0f}s), process frozen or killed",
        )
    for_ = f"{now - beat.since:.0f}s"
    if beat.state == "failed":
        return False, f"worker's Temporal SDK failed ({beat.failures} in a row), not polling for {for_}: {beat.error}"
    if beat.state == "connecting":
        return True, f"alive, connecting to Temporal for {for_}" + (f" ({beat.error})" if beat.error else "")
    if beat.state == "draining":
        return True, f"alive, draining running work for {for_}"
    slots = []
    # As of the file's last write, not now: a frozen process must not look like a stopped poller.
    written = max(beat.at, beat.checked_at)
    for kind, view in beat.slots.items():  # in the worker's order: workflow, model, tool
        gap = written - view["no_poller_since"] if view["pollers"] == 0 and view["no_poller_since"] else 0.0
        if not view.get("started", True):
            if gap > POLLER_START_MAX:
                return False, f"worker's Temporal SDK has not begun to poll for {kind} tasks in {gap:.0f}s"
        elif gap > POLLER_MAX_GAP:
            return False, (
                f"worker's Temporal SDK stopped polling for {kind} tasks {gap:.0f}s ago, "
                f"with {view['used']} of {view['capacity']} slots in use"
            )
        slots.append(f"{kind} slots {view['used']}/{view['capacity']}")
    busy = any(v["used"] >= v["capacity"] for v in beat.slots.values())
    return True, f"alive, {'busy' if busy else 'polling'}: {', '.join(slots) or 'no slot view'} in use"


def check_liveness(health_file: Path) -> tuple[bool, str]:
    """The liveness probe: (alive, the one line to print). Reads one file; no Temporal, no SDK import."""
    try:
        beat = read_beat(health_file)
    except ValueError as err:
        return False, f"unhealthy: {err}"
    alive, why = judge_liveness(beat, time.time(), health_file)
    return alive, why if alive else f"unhealthy: {why}"


# ---- Readiness: liveness, then Temporal's own view of this worker.


@dataclass
class ServerView:
    """What Temporal says about this worker identity, from its worker heartbeats."""

    listed: bool
    status: str = ""  # e.g. WORKER_STATUS_RUNNING
    heartbeat_at: float = 0.0  # epoch seconds of its last heartbeat
    supported: bool = True  # False: this server has no worker heartbeats (ListWorkers unimplemented)


def judge_server_view(identity: str, view: ServerView, now: float, polling_since: float) -> tuple[bool, str]:
    if not view.supported:
        return True, "Temporal reachable (it keeps no worker heartbeats: ListWorkers unimplemented)"
    if not view.listed:
        if now - polling_since <= SERVER_BEAT_MAX_AGE:  # the SDK's first worker heartbeat is still to come
            return True, f"Temporal reachable, worker {identity} polling for {now - polling_since:.0f}s"
        return False, f"Temporal does not list worker {identity} (are worker heartbeats enabled on the server?)"
    age = now - view.heartbeat_at
    if view.status != "WORKER_STATUS_RUNNING":
        return False, f"Temporal lists worker {identity} as {view.status}"
    if age > SERVER_BEAT_MAX_AGE:
        return False, f"Temporal's last heartbeat from worker {identity} is {age:.0f}s old"
    return True, f"Temporal lists {identity} running (heartbeat {max(age, 0):.0f}s ago)"


async def check_readiness(settings: Settings, beat: Beat) -> tuple[bool, str]:
    """(ready, why) for a worker already judged alive."""
    if beat.state != "polling":
        return False, f"worker {beat.state}" + (f": {beat.error}" if beat.error else "")
    try:
        view = await server_view(settings, beat.identity)
    except Exception as err:  # any failure to ask is a failure to prove readiness
        return False, f"Temporal unreachable at {settings.address}: {describe_error(err)}"
    return judge_server_view(beat.identity, view, time.time(), beat.since)


async def check(settings: Settings, mode: str = "docker") -> tuple[bool, str]:
    """The "readiness" or "docker" probe: (passed, the one line to print)."""
    try:
        beat = read_beat(settings.health_file)
    except ValueError as err:
        beat, alive, why = None, False, str(err)
    else:
        alive, why = judge_liveness(beat, time.time(), settings.health_file)
    if not alive or beat is None:
        return False, f"{'not ready' if mode == 'readiness' else 'unhealthy'}: {why}"
    ready, reason = await check_readiness(settings, beat)
    said = f"ready: {reason}" if ready else f"not ready: {reason}"
    if mode == "readiness":
        return ready, said
    return True, f"healthy: {why}; {said}"  # Docker's status is liveness; the line also says readiness


async def server_view(settings: Settings, identity: str) -> ServerView:
    # The SDK's service client, not temporalio.client: the same connection code for a
    # fraction of the import time, which every probe pays.
    import asyncio

    from temporalio.api.workflowservice.v1 import DescribeWorkerRequest, ListWorkersRequest
    from temporalio.service import ConnectConfig, RPCError, RPCStatusCode, ServiceClient

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
    rpc = service.workflow_service
    timeout = timedelta(seconds=RPC_TIMEOUT)
    quoted = identity.replace("\\", "\\\\").replace("'", "\\'")
    try:
        listed = await rpc.list_workers(
            ListWorkersRequest(namespace=settings.namespace, query=f"WorkerIdentity = '{quoted}'"), timeout=timeout
        )
    except RPCError as err:
        if err.status == RPCStatusCode.UNIMPLEMENTED:
            return ServerView(listed=False, supported=False)
        raise
    # A worker that restarted its SDK worker has an older instance under the same identity.
    best = ServerView(listed=False)
    for worker in listed.workers:
        if worker.task_queue != settings.task_queue:
            continue
        described = await rpc.describe_worker(
            DescribeWorkerRequest(namespace=settings.namespace, worker_instance_key=worker.worker_instance_key),
            timeout=timeout,
        )
        beat = described.worker_info.worker_heartbeat
        at = _epoch(beat.heartbeat_time)
        if not best.listed or at > best.heartbeat_at:
            from temporalio.api.enums.v1 import WorkerStatus

            best = ServerView(listed=True, status=WorkerStatus.Name(beat.status), heartbeat_at=at)
    return best


def _epoch(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9
