#!/usr/bin/env python3
"""Container health check: exit 0 when this worker is connected and polling its task queue, else 1.

Prints one short line saying why. It is stored in `docker inspect`, so it never holds a secret.
How health is decided: agent_runner/health.py.
"""

from __future__ import annotations

import asyncio
import os
import sys


def main() -> int:
    from agent_runner.config import ConfigError, load_settings
    from agent_runner.health import check

    try:
        settings = load_settings()
    except ConfigError as err:
        print(f"unhealthy: configuration error: {err}")
        return 1
    healthy, reason = asyncio.run(check(settings))
    print(reason if healthy else f"unhealthy: {reason}")
    return 0 if healthy else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # Skip interpreter teardown: the Temporal SDK can crash there (sdk-python#300), and a
    # crash at exit would be reported as a false "unhealthy".
    os._exit(code)
