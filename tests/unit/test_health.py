from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from agent_runner.health import (
    BEAT_MAX_AGE,
    POLLER_MAX_GAP,
    POLLER_START_MAX,
    SERVER_BEAT_MAX_AGE,
    Beat,
    Heartbeat,
    ServerView,
    check_liveness,
    judge_liveness,
    judge_server_view,
    read_beat,
)

NOW = 1_800_000_000.0
PATH = Path("/tmp/health.json")


def slot(capacity: int, used: int, pollers: int, no_poller_for: float = 0.0, started: bool = True) -> dict[str, Any]:
    return {
        "capacity": capacity,
        "used": used,
        "pollers": pollers,
        "no_poller_since": NOW - no_poller_for if no_poller_for else 0.0,
        "started": started,
    }


def beat(age: float = 1.0, state: str = "polling", **slots: dict[str, Any]) -> Beat:
    view = slots or {"workflow": slot(100, 0, 5), "activity": slot(10, 0, 5)}
    return Beat("id-1", "queue", state, since=NOW - 100, at=NOW - age, pid=1, slots=view)


def alive(b: Beat | None) -> tuple[bool, str]:
    return judge_liveness(b, NOW, PATH)


def test_fresh_polling_beat_is_alive() -> None:
    assert alive(beat()) == (True, "alive, polling: workflow slots 0/100, activity slots 0/10 in use")


def test_every_slot_busy_with_a_poller_waiting_is_alive_however_long() -> None:
    busy = beat(workflow=slot(100, 0, 5), activity=slot(1, 1, 1))  # the poller waits for the one slot
    busy.since = NOW - 3600
    assert alive(busy) == (True, "alive, busy: workflow slots 0/100, activity slots 1/1 in use")


def test_missing_beat_means_not_running() -> None:
    assert alive(None) == (False, f"worker not running: no heartbeat file at {PATH}")


def test_stale_beat_without_watchdog_means_frozen_or_killed() -> None:
    ok, reason = alive(beat(age=BEAT_MAX_AGE + 1))
    assert not ok
    assert "unresponsive" in reason
    assert "frozen or killed" in reason


def test_stale_beat_with_live_watchdog_means_blocked_loop_and_says_where() -> None:
    stuck = beat(age=BEAT_MAX_AGE + 5)
    stuck.checked_at, stuck.blocked_at = NOW - 2, "activities.py:42 in slow"
    assert alive(stuck) == (False, f"worker event loop blocked for {BEAT_MAX_AGE + 5:.0f}s at activities.py:42 in slow")


def test_no_poller_with_free_slots_beyond_the_gap_means_the_sdk_stopped_polling() -> None:
    stopped = beat(age=1, workflow=slot(100, 0, 5), activity=slot(10, 1, 0, no_poller_for=POLLER_MAX_GAP + 2))
    ok, reason = alive(stopped)
    assert not ok
    assert reason == (  # as of the file's last write, 1 s ago
        f"worker's Temporal SDK stopped polling for activity tasks {POLLER_MAX_GAP + 1:.0f}s ago, "
        "with 1 of 10 slots in use"
    )


def test_a_frozen_process_is_unresponsive_not_a_stopped_poller() -> None:
    # Frozen 15 s after a gap in polling began: as of its last write the gap was 15 s, under the limit.
    frozen = beat(age=15, workflow=slot(100, 0, 0, no_poller_for=POLLER_MAX_GAP + 10), activity=slot(10, 0, 5))
    assert alive(frozen)[0]
    frozen.at = NOW - BEAT_MAX_AGE - 1
    assert "unresponsive" in alive(frozen)[1]


def test_an_sdk_worker_not_yet_polling_gets_longer_to_start() -> None:
    starting = beat(workflow=slot(100, 0, 0, no_poller_for=POLLER_MAX_GAP + 5, started=False), activity=slot(10, 0, 5))
    assert alive(starting)[0]
    starting.slots["workflow"] = slot(100, 0, 0, no_poller_for=POLLER_START_MAX + 2, started=False)
    assert alive(starting) == (
        False,
        f"worker's Temporal SDK has not begun to poll for workflow tasks in {POLLER_START_MAX + 1:.0f}s",
    )


def test_a_short_gap_between_polls_is_alive() -> None:
    assert alive(beat(workflow=slot(100, 1, 0, no_poller_for=2), activity=slot(10, 0, 5)))[0]


def test_connecting_worker_is_alive_and_says_why_not_connected() -> None:
    connecting = beat(state="connecting")
    connecting.error = "attempt 4: connection refused"
    assert alive(connecting) == (True, "alive, connecting to Temporal for 100s (attempt 4: connection refused)")


def test_draining_worker_is_alive() -> None:
    assert alive(beat(state="draining")) == (True, "alive, draining running work for 100s")


def test_failed_sdk_worker_is_not_alive() -> None:
    failed = beat(state="failed")
    failed.error, failed.failures = "Namespace nope is not found", 3
    ok, reason = alive(failed)
    assert not ok
    assert reason == "worker's Temporal SDK failed (3 in a row), not polling for 100s: Namespace nope is not found"


def test_liveness_line_of_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "none.json"
    assert check_liveness(path) == (False, f"unhealthy: worker not running: no heartbeat file at {path}")


def test_server_listing_the_worker_running_with_a_fresh_heartbeat_is_ready() -> None:
    view = ServerView(listed=True, status="WORKER_STATUS_RUNNING", heartbeat_at=NOW - 4)
    assert judge_server_view("id-1", view, NOW, NOW - 600) == (True, "Temporal lists id-1 running (heartbeat 4s ago)")


def test_server_not_listing_the_worker_is_not_ready() -> None:
    ok, reason = judge_server_view("id-1", ServerView(listed=False), NOW, NOW - SERVER_BEAT_MAX_AGE - 1)
    assert not ok
    assert "does not list worker id-1" in reason


def test_server_not_listing_a_worker_before_its_first_heartbeat_is_ready() -> None:
    ok, reason = judge_server_view("id-1", ServerView(listed=False), NOW, NOW - 3)
    assert (ok, reason) == (True, "Temporal reachable, worker id-1 polling for 3s")


def test_stale_server_heartbeat_is_not_ready() -> None:
    view = ServerView(listed=True, status="WORKER_STATUS_RUNNING", heartbeat_at=NOW - SERVER_BEAT_MAX_AGE - 1)
    assert not judge_server_view("id-1", view, NOW, NOW - 600)[0]


def test_worker_shutting_down_on_the_server_is_not_ready() -> None:
    view = ServerView(listed=True, status="WORKER_STATUS_SHUTTING_DOWN", heartbeat_at=NOW)
    assert judge_server_view("id-1", view, NOW, NOW - 600) == (
        False,
        "Temporal lists worker id-1 as WORKER_STATUS_SHUTTING_DOWN",
    )


def test_server_without_worker_heartbeats_is_ready_when_reachable() -> None:
    ok, reason = judge_server_view("id-1", ServerView(listed=False, supported=False), NOW, NOW)
    assert ok
    assert "ListWorkers unimplemented" in reason


def test_heartbeat_file_round_trip_and_removal(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    heart = Heartbeat(path, "id-7", "q")
    heart.set_state("polling")
    read = read_beat(path)
    assert read is not None
    assert (read.identity, read.task_queue, read.state, read.pid) == ("id-7", "q", "polling", os.getpid())
    heart.watch_slots(lambda: {"activity": slot(3, 1, 1)})
    heart.set_state("failed", "boom", 2)
    read = read_beat(path)
    assert read is not None
    assert (read.state, read.error, read.failures, read.slots) == ("failed", "boom", 2, {"activity": slot(3, 1, 1)})
    assert [p.name for p in tmp_path.iterdir()] == ["health.json"]  # no temp file left behind
    heart.stop()
    assert read_beat(path) is None


def test_watchdog_logs_and_records_where_the_event_loop_is_blocked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "health.json"
    heart = Heartbeat(path, "id-8", "q", interval=0.05, blocked_after=0.2)

    async def blocking_activity() -> None:
        time.sleep(0.8)  # deliberately blocks the event loop

    async def scenario() -> None:
        beating = asyncio.create_task(heart.beat_forever())
        await asyncio.sleep(0.1)
        await blocking_activity()
        await asyncio.sleep(0.2)
        beating.cancel()

    with caplog.at_level(logging.WARNING, logger="agent_runner"):
        asyncio.run(scenario())
    heart.stop()
    messages = [r.getMessage() for r in caplog.records]
    blocked = [m for m in messages if m.startswith("event loop blocked")]
    assert len(blocked) == 1, messages
    assert "in blocking_activity" in blocked[0]
    assert "test_health.py:" in blocked[0]
    assert "event loop running again" in messages


def test_unreadable_heartbeat_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    path.write_text(json.dumps({"identity": "x"}))
    with pytest.raises(ValueError, match="unreadable heartbeat"):
        read_beat(path)
