from __future__ import annotations

import json
import logging

import pytest

from agent_runner.logs import configure_logging


def test_json_format_writes_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("agent_runner").info("polling %s", "q1")
    logging.getLogger("agent_runner").debug("hidden at INFO")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "polling q1"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "agent_runner"
    assert entry["time"].endswith("Z")


def test_text_format_is_human_readable(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING", "text")
    logging.getLogger("agent_runner").warning("Temporal not reachable")
    out = capsys.readouterr().out
    assert "WARNING" in out
    assert "agent_runner: Temporal not reachable" in out
