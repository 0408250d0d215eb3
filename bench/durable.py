"""`make bench-runs`: how many agent runs one worker container holds, Temporal's overhead per
step, and throughput, against a real Temporal dev server and the loopback model.

    python bench/durable.py --image IMAGE[:TAG] [--compare OTHER_IMAGE] [--in-flight 200] [--model-seconds 5]

Figures, for each image:
- runs in flight: N runs started at once against a model that takes --model-seconds per reply;
  the most model calls seen waiting at once, and the worker's peak RSS (VmHWM of the worker process);
- overhead per step: runs of 10 steps (a tiny tool call each) against a model that answers at
  once, the wall time per step, p50 and p95, on a stock dev server and on one whose transfer
  queue is not paced (see UNPACED);
- throughput: 50 small runs (one tool call, one answer) started at once: runs per second.
Writes bench/runs.md and bench/runs.json (with --out, elsewhere). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.client import Client  # noqa: E402

from agent_runner.models import AgentRequest  # noqa: E402
from tests.fake_llm import Answer, fake_llm, openai_answer, openai_tools  # noqa: E402
from tests.helpers import WORKER_PID_SH, TemporalServer  # noqa: E402

DOCKER = os.environ.get("DOCKER", "docker")
STEPS = 10
# A dev server has one history shard, and a shard's transfer queue (which hands each new task to
# matching) reads at most history.transferProcessorMaxPollRPS = 20 times a second: once a run's
# tasks come in a steady stream, each waits for the next read, up to 50 ms. A step is three such
# tasks (the workflow task after the model call, the tool call on the volume's queue, the
# workflow task after it; the model call itself is dispatched eagerly). A cluster spreads runs
# over many shards, each with its own reads, so the step is measured on both.
UNPACED = {"history.transferProcessorMaxPollRPS": "1000"}


def sh(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed: {result.stderr.strip()[-800:]}")
    return result.stdout


class Model:
    """A model for many runs at once: `steps` tool calls, then an answer; records when each call came."""

    def __init__(self, steps: int, delay: float) -> None:
        self.steps, self.delay = steps, delay
        self.calls: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Answer:
        with self.lock:
            self.calls.append(time.monotonic())
        turn = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        answer = (
            openai_tools(("write_file", {"path": f"f{turn}.txt", "content": "x"}))
            if turn < self.steps
            else openai_answer("done")
        )
        answer.delay = self.delay
        return answer

    def most_at_once(self) -> int:
        """The most calls whose reply was pending at the same moment (each lasts `delay`)."""
        starts = sorted(self.calls)
        best, low = 0, 0
        for high, start in enumerate(starts):
            while starts[low] <= start - self.delay:
                low += 1
            best = max(best, high - low + 1)
        return best


class Worker:
    def __init__(self, image: str, address: str, model_url: str) -> None:
        self.queue = f"bench-{uuid.uuid4().hex[:8]}"
        self.volume = f"agent-runner-bench-{uuid.uuid4().hex[:8]}"
        sh(DOCKER, "volume", "create", self.volume)
        env = {
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_TASK_QUEUE": self.queue,
            "STIGMER_LLM_PROVIDER": "openai",
            "STIGMER_LLM_BASE_URL": model_url,
            "STIGMER_LLM_API_KEY": "sk-bench",
            "STIGMER_LOG_LEVEL": "WARNING",
        }
        args = [f"--env={k}={v}" for k, v in env.items()]
        self.container = sh(
            DOCKER, "run", "-d", "--network=host", f"--volume={self.volume}:/workspace", *args, image
        ).strip()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = json.loads(sh(DOCKER, "inspect", self.container))[0]["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                return
            time.sleep(0.5)
        raise SystemExit(f"bench: {image} did not turn healthy in 60 s")

    def peak_rss_mb(self) -> float:
        # The worker is PID 1, or tini's only child where tini is PID 1 (images with an init).
        status = sh(
            DOCKER,
            "exec",
            self.container,
            "sh",
            "-c",
            f'pid=$({WORKER_PID_SH}); cat "/proc/${{pid:-1}}/status"',
        )
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        return round(kb / 1024, 1)

    def remove(self) -> None:
        subprocess.run([DOCKER, "rm", "-f", "-v", self.container], capture_output=True, check=False)
        subprocess.run([DOCKER, "volume", "rm", "-f", self.volume], capture_output=True, check=False)


async def run_many(address: str, queue: str, count: int, max_seconds: float) -> list[float]:
    """Start `count` runs at once; the wall seconds of each, start to result."""
    client = await Client.connect(address)

    async def one(n: int) -> float:
        start = time.monotonic()
        handle = await client.start_workflow(
            "AgentExecution",
            AgentRequest(instructions="bench", workspace=f"b{n}", max_seconds=max_seconds, max_steps=50),
            id=f"bench-{uuid.uuid4().hex[:10]}",
            task_queue=queue,
        )
        result = await handle.result()
        if result["status"] != "completed":
            raise SystemExit(f"bench: a run ended {result['status']}: {result.get('error')}")
        return time.monotonic() - start

    return list(await asyncio.gather(*(one(n) for n in range(count))))


def step_overhead(image: str, address: str, prefix: str = "") -> dict[str, float]:
    """Wall time per step of runs of STEPS steps, one at a time, against a model that answers at once."""
    with fake_llm([], Model(steps=STEPS - 1, delay=0)) as fake:
        worker = Worker(image, address, fake.url)
        try:
            per_step = [
                seconds / STEPS for _ in range(5) for seconds in asyncio.run(run_many(address, worker.queue, 1, 600))
            ]
        finally:
            worker.remove()
    return {
        f"{prefix}step_seconds_p50": round(statistics.median(per_step), 4),
        f"{prefix}step_seconds_p95": round(statistics.quantiles(per_step, n=20)[-1], 4),
    }


def measure(image: str, address: str, in_flight: int, model_seconds: float) -> dict[str, Any]:
    figures: dict[str, Any] = {"image": image}
    # Runs in flight: one tool call, then the answer, each model reply taking model_seconds.
    model = Model(steps=1, delay=model_seconds)
    with fake_llm([], model) as fake:
        worker = Worker(image, address, fake.url)
        try:
            start = time.monotonic()
            asyncio.run(run_many(address, worker.queue, in_flight, max_seconds=3600))
            figures["in_flight_runs"] = in_flight
            figures["in_flight_model_calls_at_once"] = model.most_at_once()
            figures["in_flight_seconds"] = round(time.monotonic() - start, 1)
            figures["in_flight_peak_rss_mb"] = worker.peak_rss_mb()
        finally:
            worker.remove()
    figures.update(step_overhead(image, address))
    # Throughput: small runs against a model that answers at once.
    with fake_llm([], Model(steps=1, delay=0)) as fake:
        worker = Worker(image, address, fake.url)
        try:
            start = time.monotonic()
            latencies = asyncio.run(run_many(address, worker.queue, 50, 600))
            figures["throughput_runs_per_s"] = round(50 / (time.monotonic() - start), 2)
            figures["run_latency_p50_s"] = round(statistics.median(latencies), 2)
        finally:
            worker.remove()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--compare", help="another image, e.g. built from the commit before a change")
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--model-seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench")
    parser.add_argument("--smoke", action="store_true", help="20 runs of a 1 s model, to bench/out/: proves it runs")
    args = parser.parse_args()
    if args.smoke:
        args.in_flight, args.model_seconds, args.out = 20, 1.0, ROOT / "bench" / "out"
    images = [args.image, *([args.compare] if args.compare else [])]
    server = TemporalServer().start()
    try:
        results = [measure(image, server.address, args.in_flight, args.model_seconds) for image in images]
    finally:
        server.stop()
    server = TemporalServer(dynamic_config=UNPACED).start()
    try:
        for image, figures in zip(images, results, strict=True):
            figures.update(step_overhead(image, server.address, prefix="unpaced_"))
    finally:
        server.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runs.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Agent runs: in flight, overhead per step, throughput",
        "",
        f"Written by `bench/durable.py` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} cores, shared machine); "
        f"{args.in_flight} runs in flight against a model taking {args.model_seconds:g} s per reply.",
        "",
        "Step: the wall time per step of 10-step runs against a model that answers at once, on a stock dev",
        "server, then (unpaced) on one started with "
        + " ".join(f"`--dynamic-config-value {k}={v}`" for k, v in UNPACED.items())
        + ": a dev server's single history shard hands tasks on at most 20 times a second, and a step is three",
        "tasks in a row (bench/durable.py says more).",
        "",
        "| image | model calls waiting at once | time for all | peak RSS | step p50 | step p95 "
        "| step p50, unpaced | step p95, unpaced | runs/s | run p50 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [
            f"`{r['image']}`",
            f"{r['in_flight_model_calls_at_once']} of {r['in_flight_runs']}",
            f"{r['in_flight_seconds']} s",
            f"{r['in_flight_peak_rss_mb']} MB",
            f"{r['step_seconds_p50'] * 1000:.0f} ms",
            f"{r['step_seconds_p95'] * 1000:.0f} ms",
            f"{r['unpaced_step_seconds_p50'] * 1000:.0f} ms",
            f"{r['unpaced_step_seconds_p95'] * 1000:.0f} ms",
            f"{r['throughput_runs_per_s']}",
            f"{r['run_latency_p50_s']} s",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    (args.out / "runs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
