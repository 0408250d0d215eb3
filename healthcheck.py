#!/usr/bin/env python3
"""Container health check. Prints one short line saying why, and exits 0 (pass) or 1 (fail).

    healthcheck.py --liveness    is this worker process working? Never asks Temporal.
    healthcheck.py --readiness   is it taking work? Alive, connected, and listed by Temporal.
    healthcheck.py               the image's HEALTHCHECK: exits as --liveness, prints both.

The line is stored in `docker inspect`, so it never holds a secret.
How health is decided: agent_runner/health.py.
"""

from __future__ import annotations

import os
import sys

USAGE = "usage: healthcheck.py [--liveness | --readiness]"


def main(argv: list[str]) -> int:
    from agent_runner.config import ConfigError, load_health_file, load_settings

    if argv not in ([], ["--liveness"], ["--readiness"]):
        print(USAGE)
        return 2
    mode = argv[0][2:] if argv else "docker"
    try:
        if mode == "liveness":
            from agent_runner.health import check_liveness

            passed, line = check_liveness(load_health_file())
        else:
            import asyncio

            from agent_runner.health import check

            passed, line = asyncio.run(check(load_settings(), mode))
    except ConfigError as err:
        print(f"{'not ready' if mode == 'readiness' else 'unhealthy'}: configuration error: {err}")
        return 1
    print(line)
    return 0 if passed else 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    # Skip interpreter teardown: the Temporal SDK can crash there (sdk-python#300), and a
    # crash at exit would be reported as a false "unhealthy".
    os._exit(code)
