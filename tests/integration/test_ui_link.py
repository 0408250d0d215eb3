"""`make ui` against a Temporal that run-local did not start: a link only where a Web UI answers."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import ROOT, Seen, TemporalServer, free_port, port_open, stop_process_group, temporal_cli, wait_for


def make_ui(tmp: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "TEMPORAL_UI_PORT")}
    return subprocess.run(
        ["make", "--no-print-directory", "ui"],
        cwd=ROOT,
        env={**clean, "RUN_DIR": tmp, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def links(result: subprocess.CompletedProcess[str]) -> list[str]:
    return re.findall(r"https?://\S+", result.stdout + result.stderr)


@pytest.fixture
def temporal_with_ui() -> Iterator[tuple[str, int]]:
    """A dev server started by hand, its Web UI on the default gRPC port + 1000."""
    port = free_port()
    while port + 1000 > 65535 or port_open(port + 1000):
        port = free_port()
    proc = subprocess.Popen(
        [temporal_cli(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--ui-disable-news-fetch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for("the dev server and its UI", lambda: (port_open(port) and port_open(port + 1000)) or Seen(""), 30)
        yield f"127.0.0.1:{port}", port + 1000
    finally:
        stop_process_group(proc)


def test_no_link_for_a_temporal_without_a_web_ui(temporal: TemporalServer, tmp_path: os.PathLike[str]) -> None:
    result = make_ui(str(tmp_path), TEMPORAL_ADDRESS=temporal.address)
    assert result.returncode != 0
    assert "run-local did not start the Temporal at " + temporal.address in result.stderr
    assert links(result) == [], "a link for a UI that does not answer"


def test_the_link_of_a_web_ui_that_answers(temporal_with_ui: tuple[str, int], tmp_path: os.PathLike[str]) -> None:
    address, ui_port = temporal_with_ui
    result = make_ui(str(tmp_path), TEMPORAL_ADDRESS=address)
    assert result.returncode == 0, result.stdout + result.stderr
    assert links(result) == [f"http://127.0.0.1:{ui_port}"]


def test_temporal_ui_port_names_where_to_look(temporal_with_ui: tuple[str, int], tmp_path: os.PathLike[str]) -> None:
    address, ui_port = temporal_with_ui
    elsewhere = make_ui(str(tmp_path), TEMPORAL_ADDRESS=address, TEMPORAL_UI_PORT=str(free_port()))
    assert elsewhere.returncode != 0
    assert links(elsewhere) == []
    there = make_ui(str(tmp_path), TEMPORAL_ADDRESS=address, TEMPORAL_UI_PORT=str(ui_port))
    assert links(there) == [f"http://127.0.0.1:{ui_port}"]
