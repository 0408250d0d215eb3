"""Is a process still running? For tests that check a stopped command left nothing behind."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """True while the process runs; a zombie (dead, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return not stat.read_text().rsplit(") ", 1)[-1].startswith("Z")
    except FileNotFoundError:
        return False
