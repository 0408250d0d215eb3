"""Fixtures shared by the integration and container suites, and the reliability report."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TemporalServer


@pytest.fixture(scope="session")
def temporal() -> Iterator[TemporalServer]:
    """One dev server for the session; tests use their own task queues to stay apart."""
    server = TemporalServer().start()
    yield server
    server.stop()


@pytest.fixture
def own_temporal() -> Iterator[TemporalServer]:
    """A dev server of the test's own, for tests that stop or restart it."""
    server = TemporalServer().start()
    yield server
    server.stop()


# ---- The reliability report: tests record what they proved and the figure they measured;
# with RELIABILITY_REPORT=path set (make test sets docs/reliability.md) the run writes the table.
_FIGURES: list[dict[str, str]] = []


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    def record(proves: str, measured: str) -> None:
        _FIGURES.append({"test": request.node.nodeid, "proves": proves, "measured": measured, "outcome": "?"})

    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        for row in _FIGURES:
            if row["test"] == item.nodeid:
                row["outcome"] = report.outcome
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("RELIABILITY_REPORT")
    if not target or not _FIGURES:
        return
    lines = [
        "# Reliability: what the test suite proves, with the figures it measured",
        "",
        f"Written by `make test` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} cores); do not edit by hand.",
        "Each row is one test of `tests/`; the figure is what that run measured.",
        "",
        "| test | what it proves | measured | result |",
        "|---|---|---|---|",
    ]
    for row in _FIGURES:
        name = row["test"].split("::", 1)[-1]
        lines.append(f"| `{name}` | {row['proves']} | {row['measured']} | {row['outcome']} |")
    Path(target).write_text("\n".join(lines) + "\n", encoding="utf-8")
