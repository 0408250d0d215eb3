"""`make bench`: measure this project's image side by side with a conventional baseline of the
same worker (bench/Dockerfile.baseline), in one run on one machine.

Figures, each a median of --runs runs: size (uncompressed, gzipped `docker save`, layers), cold
build, rebuild after a one-line source edit and after a dependency change, run to healthy, the
health check's wall time, CPU time and peak RSS inside the container, `stop` idle and with a run
in flight, and worker throughput (small agent runs against an instant loopback model: runs per
second and start-to-complete latency p50/p95).

Writes bench/results.md, bench/results.json and bench/results.png (--smoke: bench/out/, and
fewer, smaller runs). Nothing here is a test; a figure that cannot be measured stops the run.
"""

from __future__ import annotations

import argparse
import asyncio
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The same real parts the tests use: a Temporal dev server and a scripted loopback model.
from tests.fake_llm import Answer, FakeLLM, fake_llm, openai_answer  # noqa: E402
from tests.helpers import TemporalServer  # noqa: E402

DOCKER = os.environ.get("DOCKER", "docker")
BASE_IMAGE = os.environ.get("BASE_IMAGE", "python:3.11-slim")
CA_BUNDLE = os.environ.get("CA_BUNDLE", "")


@dataclass
class Candidate:
    name: str
    dockerfile: str  # relative to the tree
    health: list[str]  # the image's own health command
    tree: Path = Path()
    tag: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def sh(*args: str, timeout: float = 1800, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-1500:]}")
    return result.stdout


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


# ---- building ----------------------------------------------------------------------------
def build_command() -> tuple[list[str], dict[str, str]]:
    """The same builder selection as scripts/build-image.sh, used for both images alike."""
    env = dict(os.environ)
    version = subprocess.run([DOCKER, "--version"], capture_output=True, text=True, check=False).stdout.lower()
    if version.startswith("podman"):
        return [DOCKER, "build", "--format", "docker"], env
    if subprocess.run([DOCKER, "buildx", "version"], capture_output=True, check=False).returncode == 0:
        return [DOCKER, "buildx", "build", "--load"], env
    env["DOCKER_BUILDKIT"] = "1"
    return [DOCKER, "build"], env


def build(candidate: Candidate, *extra: str) -> float:
    cmd, env = build_command()
    args = [*cmd, "-f", candidate.dockerfile, "-t", candidate.tag, "--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
    if CA_BUNDLE:
        args += ["--secret", f"id=ca,src={CA_BUNDLE}"]
    start = time.perf_counter()
    sh(*args, *extra, ".", cwd=candidate.tree, env=env)
    return time.perf_counter() - start


def copy_tree(target: Path, keep_dockerignore: bool) -> None:
    files = sh("git", "ls-files", "-co", "--exclude-standard").splitlines()
    for name in files:
        source = ROOT / name
        if not source.is_file() or (name == ".dockerignore" and not keep_dockerignore):
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name)


def clear_package_caches() -> None:
    # A cold build is a first build: no layer cache (--no-cache) and no BuildKit cache mounts.
    subprocess.run(
        [DOCKER, "builder", "prune", "-f", "--filter", "type=exec.cachemount"],
        capture_output=True,
        check=False,
        timeout=300,
    )


def build_figures(c: Candidate, runs: int, cold_runs: int) -> None:
    cold = []
    for _ in range(cold_runs):
        clear_package_caches()
        cold.append(build(c, "--no-cache"))
    build(c)  # warm the layer cache for the rebuilds
    source_edits, dependency_edits = [], []
    for i in range(runs):
        with (c.tree / "agent_runner" / "__init__.py").open("a") as source:
            source.write(f"# bench edit {i} {uuid.uuid4().hex}\n")
        source_edits.append(build(c))
        with (c.tree / "poetry.lock").open("a") as lock:  # a dependency change: the lock file differs
            lock.write(f"# bench edit {i} {uuid.uuid4().hex}\n")
        dependency_edits.append(build(c))
    if cold:
        c.figures["cold_build_s"] = median(cold)
    c.figures["rebuild_source_s"] = median(source_edits)
    c.figures["rebuild_dependency_s"] = median(dependency_edits)


def size_figures(c: Candidate, base_layers: int) -> None:
    info = json.loads(sh(DOCKER, "image", "inspect", c.tag))[0]
    c.figures["size_mb"] = info["Size"] / 1e6
    c.figures["gzip_mb"] = gzipped_size(c.tag) / 1e6
    c.figures["layers"] = len(info["RootFS"]["Layers"]) - base_layers


def gzipped_size(ref: str) -> int:
    proc = subprocess.Popen([DOCKER, "save", ref], stdout=subprocess.PIPE)
    assert proc.stdout is not None

    class Counter:
        count = 0

        def write(self, data: bytes) -> int:
            self.count += len(data)
            return len(data)

        def flush(self) -> None:
            pass

    sink = Counter()
    with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0) as gz:  # type: ignore[call-overload]
        shutil.copyfileobj(proc.stdout, gz, 1 << 20)
    proc.wait()
    return sink.count


# ---- running -----------------------------------------------------------------------------
def start_worker(c: Candidate, address: str, llm: FakeLLM, queue: str) -> str:
    env = {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_TASK_QUEUE": queue,
        "STIGMER_WORKSPACE_ROOT": "/workspace",
        "STIGMER_LLM_PROVIDER": "openai",
        "STIGMER_LLM_BASE_URL": llm.url,
        "STIGMER_LLM_API_KEY": "sk-bench",
    }
    args = [f"--env={k}={v}" for k, v in env.items()]
    name = f"agent-runner-bench-{uuid.uuid4().hex[:8]}"
    return sh(DOCKER, "run", "-d", "--name", name, "--network", "host", *args, c.tag).strip()


def seconds_to_healthy(c: Candidate, container: str, timeout: float = 60) -> float:
    start = time.perf_counter()
    last = ""
    while time.perf_counter() - start < timeout:
        probe = subprocess.run(
            [DOCKER, "exec", container, *c.health], capture_output=True, text=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return time.perf_counter() - start
        last = (probe.stdout + probe.stderr).strip()[-300:]
        time.sleep(0.1)
    raise SystemExit(f"bench: {c.name} container not healthy after {timeout}s; last: {last}")


def stop(container: str) -> tuple[float, int]:
    start = time.perf_counter()
    sh(DOCKER, "stop", container)
    took = time.perf_counter() - start
    code = int(sh(DOCKER, "inspect", "-f", "{{.State.ExitCode}}", container))
    sh(DOCKER, "rm", container)
    return took, code


# Runs inside the container: the health command N times; wall, CPU and peak RSS of each run.
PROBE = """
import json, os, subprocess, sys, time
command, out = json.loads(sys.argv[2]), []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    out.append([time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                os.waitstatus_to_exitcode(status)])
print(json.dumps(out))
"""


async def submit_runs(address: str, queue: str, count: int, concurrency: int) -> tuple[float, list[float]]:
    from temporalio.client import Client

    from agent_runner.models import AgentRequest, AgentResult
    from agent_runner.workflows import AgentExecutionWorkflow

    client = await Client.connect(address)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            start = time.perf_counter()
            result: AgentResult = await client.execute_workflow(
                AgentExecutionWorkflow.run,
                AgentRequest(instructions="say done", workspace=f"t{i}"),
                id=f"bench-{uuid.uuid4().hex}",
                task_queue=queue,
            )
            if result.status != "completed":
                raise SystemExit(f"bench: run {i} ended {result.status}: {result.error}")
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - start, latencies


def runtime_figures(c: Candidate, server: TemporalServer, runs: int, probes: int, workflows: int) -> None:
    healthy, idle_stops, codes = [], [], []
    with fake_llm([]) as idle_llm:
        for _ in range(runs):
            container = start_worker(c, server.address, idle_llm, f"bench-{uuid.uuid4().hex[:8]}")
            healthy.append(seconds_to_healthy(c, container))
            took, code = stop(container)
            idle_stops.append(took)
            codes.append(code)
        container = start_worker(c, server.address, idle_llm, f"bench-{uuid.uuid4().hex[:8]}")
        try:
            seconds_to_healthy(c, container)
            rows = json.loads(sh(DOCKER, "exec", container, "python", "-c", PROBE, str(probes), json.dumps(c.health)))
        finally:
            sh(DOCKER, "rm", "-f", container)
    busy_stops = []
    for _ in range(runs):
        with fake_llm([Answer(openai_answer("done").body, delay=3.0)]) as slow_llm:
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            container = start_worker(c, server.address, slow_llm, queue)
            seconds_to_healthy(c, container)
            asyncio.run(start_run(server.address, queue))
            _wait(lambda: bool(slow_llm.requests), "the run to reach the model", 30)
            took, code = stop(container)
            busy_stops.append(took)
            codes.append(code)
    with fake_llm([openai_answer("done") for _ in range(workflows)]) as fast_llm:
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        container = start_worker(c, server.address, fast_llm, queue)
        try:
            seconds_to_healthy(c, container)
            total, latencies = asyncio.run(submit_runs(server.address, queue, workflows, concurrency=50))
        finally:
            sh(DOCKER, "rm", "-f", container)
    c.figures |= {
        "run_to_healthy_s": median(healthy),
        "health_wall_ms": median([r[0] for r in rows]) * 1000,
        "health_cpu_ms": median([r[1] for r in rows]) * 1000,
        "health_rss_mb": median([r[2] for r in rows]),
        "health_failures": f"{sum(r[3] != 0 for r in rows)}/{len(rows)}",
        "stop_idle_s": median(idle_stops),
        "stop_busy_s": median(busy_stops),
        "stop_nonzero_exits": sum(code != 0 for code in codes),
        "runs_per_s": workflows / total,
        "latency_p50_ms": percentile(latencies, 50) * 1000,
        "latency_p95_ms": percentile(latencies, 95) * 1000,
    }


async def start_run(address: str, queue: str) -> None:
    from temporalio.client import Client

    from agent_runner.models import AgentRequest
    from agent_runner.workflows import AgentExecutionWorkflow

    client = await Client.connect(address)
    await client.start_workflow(
        AgentExecutionWorkflow.run,
        AgentRequest(instructions="say done"),
        id=f"bench-{uuid.uuid4().hex}",
        task_queue=queue,
    )


def _wait(probe: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: gave up waiting {timeout}s for {what}")
        time.sleep(0.05)


# ---- report ------------------------------------------------------------------------------
ROWS = [  # key, label, unit, decimals
    ("size_mb", "image size", "MB", 1),
    ("above_base_mb", "bytes above the base", "MB", 1),
    ("gzip_mb", "image size, gzipped docker save", "MB", 1),
    ("above_base_gzip_mb", "gzipped bytes above the base", "MB", 1),
    ("layers", "layers above the base", "", 0),
    ("cold_build_s", "cold build (no layer cache, no package cache)", "s", 1),
    ("rebuild_source_s", "rebuild after a one-line source edit", "s", 2),
    ("rebuild_dependency_s", "rebuild after a dependency change", "s", 1),
    ("run_to_healthy_s", "run to healthy (its own health command)", "s", 2),
    ("health_wall_ms", "health check wall time", "ms", 0),
    ("health_cpu_ms", "health check CPU time", "ms", 0),
    ("health_rss_mb", "health check peak RSS", "MB", 1),
    ("health_failures", "health check failures", "", None),
    ("stop_idle_s", "stop, idle", "s", 2),
    ("stop_busy_s", "stop, a run in flight (3 s model call)", "s", 2),
    ("stop_nonzero_exits", "stops with a non-zero exit", "", 0),
    ("runs_per_s", "throughput: small agent runs per second", "/s", 1),
    ("latency_p50_ms", "run start-to-complete latency p50", "ms", 0),
    ("latency_p95_ms", "run start-to-complete latency p95", "ms", 0),
]


def report(meta: dict[str, Any], ours: Candidate, base: Candidate, out: Path) -> None:
    def fmt(value: Any, unit: str, decimals: int | None) -> str:
        if value is None:
            return "not measured"
        if decimals is None or isinstance(value, str):
            return str(value)
        return f"{value:.{decimals}f} {unit}".strip()

    lines = [
        "# Benchmark: this image against a conventional baseline",
        "",
        f"{meta['date']}, {meta['machine']}; base image `{BASE_IMAGE}` ({meta['base_mb']:.1f} MB, "
        f"{meta['base_gzip_mb']:.1f} MB gzipped). Medians of {meta['runs']} runs, {meta['probes']} health checks, "
        f"{meta['workflows']} runs for throughput. Written by `make bench` (`bench/bench.py`); the baseline is "
        "`bench/Dockerfile.baseline`.",
        "",
        "| figure | this image | baseline | ratio |",
        "|---|---|---|---|",
    ]
    for key, label, unit, decimals in ROWS:
        a, b = ours.figures.get(key), base.figures.get(key)
        ratio = f"{a / b:.2f}" if isinstance(a, int | float) and isinstance(b, int | float) and b else ""
        lines.append(f"| {label} | {fmt(a, unit, decimals)} | {fmt(b, unit, decimals)} | {ratio} |")
    lines += ["", "![size and timing, this image against the baseline](results.png)", ""]
    (out / "results.md").write_text("\n".join(lines))
    (out / "results.json").write_text(
        json.dumps({**meta, "ours": ours.figures, "baseline": base.figures}, indent=2) + "\n"
    )
    chart(ours, base, out / "results.png", meta)
    print("\n".join(lines))


def chart(ours: Candidate, base: Candidate, path: Path, meta: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("Size (MB)", ["size_mb", "gzip_mb", "above_base_mb"], ["image", "gzipped", "above base"]),
        (
            "Build (s)",
            ["cold_build_s", "rebuild_source_s", "rebuild_dependency_s"],
            ["cold", "source edit", "dep. change"],
        ),
        ("Run (s)", ["run_to_healthy_s", "stop_idle_s", "stop_busy_s"], ["to healthy", "stop idle", "stop busy"]),
        ("Health check", ["health_wall_ms", "health_rss_mb"], ["wall (ms)", "peak RSS (MB)"]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(16, 4.2))
    for ax, (title, keys, labels) in zip(axes, panels, strict=True):
        xs = range(len(keys))
        ax.bar([x - 0.2 for x in xs], [float(ours.figures.get(k) or 0) for k in keys], 0.4, label="this image")
        ax.bar([x + 0.2 for x in xs], [float(base.figures.get(k) or 0) for k in keys], 0.4, label="baseline")
        ax.set_xticks(list(xs), labels)
        ax.set_title(title)
    axes[0].legend()
    fig.suptitle(f"agent-runner vs a conventional image, {meta['date']}, {meta['machine']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per timing, median reported (default 3)")
    parser.add_argument("--probes", type=int, default=100, help="health checks timed per image (default 100)")
    parser.add_argument("--workflows", type=int, default=1000, help="runs for the throughput figure (default 1000)")
    parser.add_argument("--smoke", action="store_true", help="1 run, no cold build, 10 probes, 50 runs; to bench/out/")
    args = parser.parse_args()
    runs, probes, workflows, cold_runs = (
        (1, 10, 50, 0) if args.smoke else (args.runs, args.probes, args.workflows, args.runs)
    )
    out = ROOT / "bench" / ("out" if args.smoke else "")
    out.mkdir(parents=True, exist_ok=True)

    ours = Candidate("this image", "Dockerfile", ["python", "/app/healthcheck.py"])
    base = Candidate("baseline", "bench/Dockerfile.baseline", ["sh", "-c", 'python -c "import agent_runner.worker"'])
    base_info = json.loads(sh(DOCKER, "image", "inspect", BASE_IMAGE))[0]
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "runs": runs,
        "probes": probes,
        "workflows": workflows,
        "base_mb": base_info["Size"] / 1e6,
        "base_gzip_mb": gzipped_size(BASE_IMAGE) / 1e6,
    }
    print(f"bench: {meta['machine']}; {runs} run(s) per timing; this will take a while", flush=True)
    with tempfile.TemporaryDirectory(prefix="agent-runner-bench-") as tmp:
        for c, keep_ignore in ((ours, True), (base, False)):
            c.tree = Path(tmp) / c.name.replace(" ", "-")
            c.tree.mkdir()
            copy_tree(c.tree, keep_dockerignore=keep_ignore)  # the baseline copies the whole tree
            c.tag = f"agent-runner-bench-{c.name.replace(' ', '-')}:{uuid.uuid4().hex[:8]}"
            print(f"bench: building {c.name}", flush=True)
            build_figures(c, runs, cold_runs)
            size_figures(c, len(base_info["RootFS"]["Layers"]))
            c.figures["above_base_mb"] = c.figures["size_mb"] - meta["base_mb"]
            c.figures["above_base_gzip_mb"] = c.figures["gzip_mb"] - meta["base_gzip_mb"]
        server = TemporalServer().start()
        try:
            for c in (ours, base):
                print(f"bench: running {c.name}", flush=True)
                runtime_figures(c, server, runs, probes, workflows)
        finally:
            server.stop()
            for c in (ours, base):
                subprocess.run([DOCKER, "rmi", "-f", c.tag], capture_output=True, check=False)
    report(meta, ours, base, out)


if __name__ == "__main__":
    main()
