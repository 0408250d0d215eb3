from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

import pytest

from agent_runner.health import (
    BEAT_MAX_AGE,
    POLL_MAX_AGE,
    Beat,
    Heartbeat,
    judge_beat,
    judge_pollers,
    read_beat,
)

NOW = 1_800_000_000.0
PATH = Path("/tmp/health.json")


def beat(age: float = 1.0, state: str = "polling") -> Beat:
    return Beat("id-1", "queue", state, since=NOW - 100, at=NOW - age, pid=1)


def test_fresh_polling_beat_is_alive() -> None:
    assert judge_beat(beat(), NOW, PATH) is None


def test_missing_beat_means_not_running() -> None:
    assert "not running" in (judge_beat(None, NOW, PATH) or "")


def test_stale_beat_without_watchdog_means_frozen_or_killed() -> None:
    reason = judge_beat(beat(age=BEAT_MAX_AGE + 1), NOW, PATH) or ""
    assert "unresponsive" in reason
    assert "frozen or killed" in reason


def test_stale_beat_with_live_watchdog_means_blocked_loop_and_says_where() -> None:
    stuck = beat(age=BEAT_MAX_AGE + 5)
    stuck.checked_at, stuck.blocked_at = NOW - 2, "activities.py:42 in slow"
    reason = judge_beat(stuck, NOW, PATH) or ""
    assert reason == f"worker event loop blocked for {BEAT_MAX_AGE + 5:.0f}s at activities.py:42 in slow"


def test_connecting_worker_is_not_healthy() -> None:
    assert "connecting" in (judge_beat(beat(state="connecting"), NOW, PATH) or "")


def test_pollers_fresh_on_both_queues_are_healthy() -> None:
    assert judge_pollers("id-1", {"workflow": NOW - 5, "activity": NOW - 59}, NOW) is None


def test_poller_missing_from_one_queue_is_unhealthy() -> None:
    reason = judge_pollers("id-1", {"workflow": NOW - 5, "activity": None}, NOW) or ""
    assert "activity: not listed" in reason


def test_poller_older_than_window_is_unhealthy() -> None:
    reason = judge_pollers("id-1", {"workflow": NOW - POLL_MAX_AGE - 1, "activity": NOW}, NOW) or ""
    assert "workflow: last poll" in reason


def test_heartbeat_file_round_trip_and_removal(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    heart = Heartbeat(path, "id-7", "q")
    heart.set_state("polling")
    read = read_beat(path)
    assert read is not None
    assert (read.identity, read.task_queue, read.state, read.pid) == ("id-7", "q", "polling", os.getpid())
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
