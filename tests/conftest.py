"""Fixtures shared by the suites, the tiers (markers by folder), and the reliability report."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, TemporalServer

# The tiers: a folder's tests carry its marker, so no test can forget it.
# `make test` runs -m "not slow and not publish"; `make test-all` runs everything.
FOLDER_MARKERS = {"container": "container", "publish": "publish"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).relative_to(ROOT / "tests").parts
        marker = FOLDER_MARKERS.get(parts[0]) if len(parts) > 1 else None
        if marker:
            item.add_marker(marker)
        if marker == "publish":
            # One pytest-xdist worker per module and engine, so that a module's fixtures (one
            # build and push per engine) run once; with --dist loadgroup.
            callspec = getattr(item, "callspec", None)
            engine = callspec.params.get("runtime", "") if callspec else ""
            item.add_marker(pytest.mark.xdist_group(f"{item.path.stem}-{engine}"))


@pytest.fixture(scope="session")
def temporal() -> Iterator[TemporalServer]:
    """One dev server per session (per pytest-xdist worker); tests use their own task queues."""
    server = TemporalServer().start()
    yield server
    server.stop()


@pytest.fixture
def own_temporal() -> Iterator[TemporalServer]:
    """A dev server of the test's own, for tests that stop or restart it."""
    server = TemporalServer().start()
    yield server
    server.stop()


# ---- The reliability report. A test records what it proved and the figure it measured; the
# row travels in the test's report (user_properties, which pytest-xdist sends from its workers
# to the controlling process). With RELIABILITY_REPORT=path (make test-all), the controlling
# process writes the table, and only after a passing run of the whole suite.
FIGURE = "reliability-figure"


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    def record(proves: str, measured: str) -> None:
        request.node.user_properties.append((FIGURE, json.dumps({"proves": proves, "measured": measured})))

    return record


class ReliabilityReport:
    def __init__(self, target: Path) -> None:
        self.target = target
        self.rows: dict[str, dict[str, str]] = {}

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == FIGURE:
                self.rows[report.nodeid] = {**json.loads(str(value)), "outcome": report.outcome}

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus != 0 or not whole_suite(session.config) or not self.rows:
            return
        lines = [
            "# Reliability: what the test suite proves, with the figures it measured",
            "",
            f"Written by `make test-all` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} cores), "
            "after a run of every suite that passed; do not edit by hand.",
            "Each row is one test of `tests/`; the figure is what that run measured.",
            "",
            "| test | what it proves | measured | result |",
            "|---|---|---|---|",
        ]
        for nodeid in sorted(self.rows):
            row = self.rows[nodeid]
            name = nodeid.split("::", 1)[-1]
            lines.append(f"| `{name}` | {row['proves']} | {row['measured']} | {row['outcome']} |")
        self.target.write_text("\n".join(lines) + "\n", encoding="utf-8")


def whole_suite(config: pytest.Config) -> bool:
    """True when the run selected every test: all of tests/, no -m, -k, --deselect or --lf."""
    option = config.option
    if option.markexpr or option.keyword or getattr(option, "deselect", None) or getattr(option, "lf", False):
        return False
    paths = {(Path(config.invocation_params.dir) / arg.split("::")[0]).resolve() for arg in config.args}
    return paths <= {ROOT, ROOT / "tests"} and all("::" not in arg for arg in config.args)


def pytest_configure(config: pytest.Config) -> None:
    target = os.environ.get("RELIABILITY_REPORT")
    if target and not hasattr(config, "workerinput"):  # the controlling process, not an xdist worker
        config.pluginmanager.register(ReliabilityReport(Path(target)), "reliability-report")
