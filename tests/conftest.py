"""Fixtures shared by the integration and container suites."""

from __future__ import annotations

from collections.abc import Iterator

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
