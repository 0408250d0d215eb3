"""Entry point: `python -m agent_runner`. Exit codes: 0 stopped cleanly, 1 failed, 2 bad configuration."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from agent_runner.config import ConfigError, Settings, load_settings
from agent_runner.sandbox import Support, exposed_secret_files, probe


def check_writable(settings: Settings) -> None:
    """Fail at start-up, not halfway through a run, when the worker cannot write where it must."""
    root = settings.workspace_root
    if not root.is_dir():
        raise ConfigError(f"STIGMER_WORKSPACE_ROOT: expected an existing directory, got {str(root)!r}")
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(
            f"STIGMER_WORKSPACE_ROOT: {root} is not writable by uid {os.getuid()} gid {os.getgid()}; "
            f"make the mounted directory writable by that user or group (see docs/docker.md, Volumes)"
        )
    folder = settings.health_file.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"STIGMER_HEALTH_FILE: directory {folder} is not writable; "
            f"with --read-only, mount a tmpfs there (e.g. --tmpfs /tmp)"
        )


def check_sandbox(settings: Settings) -> Support:
    """What the kernel cannot enforce; with STIGMER_SANDBOX=required, missing anything is fatal."""
    support = probe(settings.sandbox)
    if settings.sandbox.mode == "required" and support.missing:
        raise ConfigError(
            f"STIGMER_SANDBOX=required but commands cannot be confined here ({support.describe()}): missing "
            f"{'; '.join(support.missing)}; use a kernel with Landlock ABI 6 or later, or STIGMER_SANDBOX=best-effort"
        )
    return support


def log_sandbox(settings: Settings, support: Support) -> None:
    log = logging.getLogger("agent_runner")
    if settings.sandbox.mode == "off":
        log.warning("STIGMER_SANDBOX=off: tool commands run without kernel confinement")
    elif support.missing:
        log.warning("tool commands run confined by %s, without: %s", support.describe(), "; ".join(support.missing))
    else:
        network = "on" if settings.sandbox.network else "off"
        log.info("tool commands run confined by %s (network %s)", support.describe(), network)
    for exposed in exposed_secret_files(os.environ):
        log.warning("%s is readable by tool commands: mount secrets under /run/secrets", exposed)


def main() -> int:
    try:
        settings = load_settings()
        check_writable(settings)
        support = check_sandbox(settings)
    except ConfigError as err:
        print(f"agent-runner: configuration error: {err}", file=sys.stderr)
        return 2
    from agent_runner.logs import configure_logging
    from agent_runner.worker import run

    configure_logging(settings.log_level, settings.log_format)
    log_sandbox(settings, support)
    # Group-writable files, so that a worker running as an arbitrary UID in group 0 (OpenShift)
    # and the image's stigmer user can both work on what the other wrote in /workspace.
    os.umask(0o002)
    try:
        return asyncio.run(run(settings))
    except ConfigError as err:  # found only at start-up, e.g. the metrics port is taken
        print(f"agent-runner: configuration error: {err}", file=sys.stderr)
        return 2
    except Exception:
        logging.getLogger("agent_runner").exception("worker failed")
        return 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the Temporal SDK's native threads can crash it (sdk-python#300).
    os._exit(code)
