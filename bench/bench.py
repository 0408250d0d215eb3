"""Measure the image: size, build and rebuild time, time to healthy, health-check cost, stop time.

Writes bench/results.md (a table) and bench/results.json. Medians of --runs runs; the
machine's core count is recorded with the figures. Not a test: nothing here passes or fails
except the measurements themselves (a run that cannot measure exits non-zero).

    python bench/bench.py [--runs 5] [--smoke]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import TemporalServer  # noqa: E402  (the same real dev server the tests use)

DOCKER = os.environ.get("DOCKER", "docker")
IMAGE = os.environ.get("IMAGE", "ghcr.io/stigmer/agent-runner")


def sh(*args: str, timeout: float = 900, env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False)
    if result.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-800:]}")
    return result.stdout


def timed(*args: str, **kw: Any) -> float:
    start = time.perf_counter()
    sh(*args, **kw)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def image_size(ref: str) -> dict[str, float]:
    info = json.loads(sh(DOCKER, "image", "inspect", ref))[0]
    proc = subprocess.Popen([DOCKER, "save", ref], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    counter = _CountingSink()
    with gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6, mtime=0) as gz:
        shutil.copyfileobj(proc.stdout, gz, 1 << 20)
    proc.wait()
    return {"bytes": info["Size"], "gzip_bytes": counter.count, "layers": len(info["RootFS"]["Layers"])}


class _CountingSink:
    def __init__(self) -> None:
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def build_env(tag: str, extra: str = "") -> dict[str, str]:
    image, version = tag.rsplit(":", 1)
    return {**os.environ, "IMAGE": image, "VERSION": version, "DOCKER": DOCKER, "EXTRA_BUILD_ARGS": extra}


def build_times(runs: int, cold_runs: int) -> dict[str, float]:
    """Cold build (no cache) and rebuild after a one-line source edit, in a copy of the tree."""
    tag = f"agent-runner-bench:{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "src"
        shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".git", ".venv", "*cache*", "workspace", ".run"))
        cold = [timed("scripts/build-image.sh", env=build_env(tag, "--no-cache"), cwd=tree) for _ in range(cold_runs)]
        edits = []
        for i in range(runs):
            with (tree / "agent_runner" / "__init__.py").open("a") as source:
                source.write(f"# bench edit {i} {uuid.uuid4().hex}\n")
            edits.append(timed("scripts/build-image.sh", env=build_env(tag), cwd=tree))
    sh(DOCKER, "rmi", "-f", tag)
    return {"cold_build_s": median(cold), "rebuild_source_edit_s": median(edits)}


def run_worker(ref: str, address: str) -> str:
    name = f"agent-runner-bench-{uuid.uuid4().hex[:8]}"
    return sh(
        DOCKER,
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        f"TEMPORAL_ADDRESS={address}",
        "-e",
        f"TEMPORAL_TASK_QUEUE=bench-{name}",
        ref,
    ).strip()


def wait_healthy(container: str, timeout: float = 60) -> float:
    """Seconds until the image's own health check passes, asked the way run-local asks it."""
    start = time.perf_counter()
    last = ""
    while time.perf_counter() - start < timeout:
        probe = subprocess.run(
            [DOCKER, "exec", container, "python", "/app/healthcheck.py"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if probe.returncode == 0:
            return time.perf_counter() - start
        last = probe.stdout.strip() or probe.stderr.strip()
        time.sleep(0.2)
    raise SystemExit(f"bench: {container} not healthy after {timeout}s; last: {last}")


# Runs inside the container: the health check N times, wall time and peak RSS of each run.
PROBE = """
import json, os, subprocess, sys, time
out = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    child = subprocess.Popen(["python", "/app/healthcheck.py"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    out.append([time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                os.waitstatus_to_exitcode(status)])
print(json.dumps(out))
"""


def runtime_figures(ref: str, address: str, runs: int, probes: int) -> dict[str, float]:
    to_healthy, stops, stop_codes = [], [], []
    container = ""
    for _ in range(runs):
        container = run_worker(ref, address)
        to_healthy.append(wait_healthy(container))
        start = time.perf_counter()
        sh(DOCKER, "stop", container)
        stops.append(time.perf_counter() - start)
        stop_codes.append(int(sh(DOCKER, "inspect", "-f", "{{.State.ExitCode}}", container)))
        sh(DOCKER, "rm", container)
    container = run_worker(ref, address)
    try:
        wait_healthy(container)
        rows = json.loads(sh(DOCKER, "exec", container, "python", "-c", PROBE, str(probes), timeout=1800))
    finally:
        sh(DOCKER, "rm", "-f", container)
    return {
        "run_to_healthy_s": median(to_healthy),
        "stop_idle_s": median(stops),
        "stop_nonzero_exits": sum(code != 0 for code in stop_codes),
        "health_wall_s": median([r[0] for r in rows]),
        "health_cpu_s": median([r[1] for r in rows]),
        "health_rss_mb": median([r[2] for r in rows]),
        "health_rss_mb_max": max(r[2] for r in rows),
        "health_runs": len(rows),
        "health_failures": sum(r[3] != 0 for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per timing (median reported)")
    parser.add_argument("--probes", type=int, default=100, help="consecutive health checks to time")
    parser.add_argument("--smoke", action="store_true", help="one run of each, 10 probes, no cold build")
    args = parser.parse_args()
    runs, probes, cold_runs = (1, 10, 0) if args.smoke else (args.runs, args.probes, 1)

    version = os.environ.get("VERSION", "dev-local")
    ref = f"{IMAGE}:{version}"
    base = os.environ.get("BASE_IMAGE", "python:3.11-slim")
    print(f"bench: {ref} on {os.cpu_count()} cores; {runs} run(s) per timing, {probes} health probes", flush=True)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "image": ref,
        "base": {"ref": base, **image_size(base)},
        "size": image_size(ref),
    }
    if cold_runs:
        results["build"] = build_times(runs, cold_runs)
    else:
        results["build"] = {"rebuild_source_edit_s": build_times(runs, 0)["rebuild_source_edit_s"]}
    server = TemporalServer().start()
    try:
        results["runtime"] = runtime_figures(ref, server.address, runs, probes)
    finally:
        server.stop()
    write_results(results)


def write_results(r: dict[str, Any]) -> None:
    mb = 1e6
    size, base, build, run = r["size"], r["base"], r["build"], r["runtime"]
    rows = [
        ("image size", f"{size['bytes'] / mb:.1f} MB ({(size['bytes'] - base['bytes']) / mb:.1f} MB above the base)"),
        ("image size, gzipped docker save", f"{size['gzip_bytes'] / mb:.1f} MB"),
        ("layers (base + own)", f"{base['layers']} + {size['layers'] - base['layers']}"),
        ("cold build (no cache)", f"{build['cold_build_s']:.1f} s" if "cold_build_s" in build else "not run (smoke)"),
        ("rebuild after a one-line source edit", f"{build['rebuild_source_edit_s']:.2f} s"),
        ("run to healthy", f"{run['run_to_healthy_s']:.2f} s"),
        ("health check wall time (median)", f"{run['health_wall_s'] * 1000:.0f} ms"),
        ("health check CPU time (median)", f"{run['health_cpu_s'] * 1000:.0f} ms"),
        ("health check peak RSS (median / max)", f"{run['health_rss_mb']:.1f} / {run['health_rss_mb_max']:.1f} MB"),
        ("health check failures", f"{run['health_failures']} of {run['health_runs']} consecutive runs"),
        ("docker stop, idle", f"{run['stop_idle_s']:.2f} s, {run['stop_nonzero_exits']} non-zero exits"),
    ]
    lines = [
        "# Benchmark results",
        "",
        f"{r['date']}, {r['machine']}, image `{r['image']}` on base `{r['base']['ref']}`"
        f" ({base['bytes'] / mb:.1f} MB). Medians; written by `make bench`.",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
    ]
    out = ROOT / "bench"
    (out / "results.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(r, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
