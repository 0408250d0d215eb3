"""Fixtures shared by the suites, the tiers (markers by folder), and the reliability report."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def shared_worker(nodeid: str) -> str | None:
    """The name of the pytest-xdist worker queue a test must share with others, if any:
    - every test that builds with the Docker engine's BuildKit, one at a time: Docker 20.10's
      BuildKit can panic on concurrent builds ("failed to get edge") and take the engine down;
    - a publishing module's tests per engine, so that its module fixtures (one build and push
      per engine) run once."""
    path = nodeid.split("::")[0]
    engine = re.search(r"\[(?:.*-)?(docker|podman)(?:-.*)?\]$", nodeid)
    if path.endswith("container/test_build.py") or ("/publish/" in path and engine and engine[1] == "docker"):
        return "docker-builds"
    if "/publish/" in path:
        return f"{path}-{engine[1] if engine else ''}"
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With --dist loadgroup (as the Makefile runs): tests spread one by one over the workers,
    except those that must share one (shared_worker). The xdist_group mark cannot do this
    here: pytest-xdist 3.8 renames the node ids the way pytest 9 no longer reads."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedWorkerScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return shared_worker(nodeid) or nodeid

    return SharedWorkerScheduling(config, log)


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
