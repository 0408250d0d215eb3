"""Lint at zero: the same checks `make lint` and `make typecheck` run, recorded for the report."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import ROOT

BIN = Path(sys.executable).parent
SHELL_SCRIPTS = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "scripts").glob("*.sh"))] + [".ci/run"]
CHECKS = {
    "hadolint": [str(BIN / "hadolint"), "--failure-threshold", "style", "Dockerfile"],
    "shellcheck": [str(BIN / "shellcheck"), *SHELL_SCRIPTS],
    "ruff": [str(BIN / "ruff"), "check", "."],
    "actionlint": [str(BIN / "actionlint"), "-shellcheck", str(BIN / "shellcheck")],
    "mypy --strict": [str(BIN / "mypy"), "agent_runner", "healthcheck.py"],
}


@pytest.mark.parametrize("tool", list(CHECKS))
def test_reports_zero_findings(tool: str, figure: Callable[[str, str], None]) -> None:
    result = subprocess.run(CHECKS[tool], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    what = {
        "hadolint": "the Dockerfile at style level",
        "shellcheck": f"{len(SHELL_SCRIPTS)} shell scripts",
        "actionlint": "the GitHub workflows",
    }.get(tool, "the package")
    figure(f"{tool} is clean on {what}", "0 findings")
