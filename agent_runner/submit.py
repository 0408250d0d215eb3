"""Start an agent run: `python -m agent_runner.submit "prompt" [--workspace X] [--wait] [--json]`.

Uses the worker's Temporal variables (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE,
TEMPORAL_API_KEY, TLS...). Prints JSON: without --wait, the started run's ids; with --wait, its result.
With --wait on a terminal it first shows each step as it happens (from the workflow's `progress`
query), and Ctrl-C asks whether to cancel the run or only stop watching; with --json, or when
standard output is not a terminal, it prints only the JSON.
Exit codes: 0 started (or completed), 1 the run did not complete, 2 bad arguments or configuration,
130 stopped watching (the run goes on).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import uuid
from typing import Any, TextIO

from agent_runner.config import ConfigError, load_client_settings
from agent_runner.models import COMPLETED, AgentRequest, AgentResult, request_problem
from agent_runner.workflows import PROGRESS_QUERY, WORKFLOW_NAME

PROGRESS_EVERY = 0.5  # seconds between two progress queries


def parse_args(argv: list[str] | None = None) -> tuple[AgentRequest, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m agent_runner.submit", description="Start an agent run.")
    parser.add_argument("instructions", help="the task for the agent")
    parser.add_argument("--workspace", default="", help="subdirectory of the workspace root (default: the run's id)")
    parser.add_argument("--system-prompt", help="added after the built-in system prompt")
    parser.add_argument("--model", help="overrides the worker's STIGMER_LLM_MODEL for this run")
    parser.add_argument(
        "--max-steps", type=int, default=AgentRequest.max_steps, help="model turns (default %(default)s)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=AgentRequest.max_seconds, help="wall time (default %(default)s)"
    )
    parser.add_argument("--workflow-id", help="default: agent-run-<random>")
    parser.add_argument("--wait", action="store_true", help="wait for the run and print its result")
    parser.add_argument("--json", action="store_true", help="print only the JSON, no progress, even on a terminal")
    args = parser.parse_args(argv)
    request = AgentRequest(
        instructions=args.instructions,
        system_prompt=args.system_prompt,
        model=args.model,
        max_steps=args.max_steps,
        max_seconds=args.max_seconds,
        workspace=args.workspace,
    )
    problem = request_problem(request)
    if problem:
        parser.error(problem)
    return request, args


class StoppedWatching(Exception):
    """The user chose to stop watching; the run goes on."""


async def submit(request: AgentRequest, workflow_id: str, wait: bool, live: bool = False) -> tuple[int, dict[str, Any]]:
    from temporalio.client import Client, WorkflowFailureError
    from temporalio.exceptions import CancelledError

    settings = load_client_settings()
    client = await Client.connect(**settings.connect)
    handle = await client.start_workflow(
        WORKFLOW_NAME, request, id=workflow_id, task_queue=settings.task_queue, result_type=AgentResult
    )
    started = {"workflow_id": handle.id, "run_id": handle.result_run_id, "task_queue": settings.task_queue}
    if not wait:
        return 0, started
    progress = Progress(sys.stdout) if live else None
    try:
        result: AgentResult = await (_watch(handle, progress) if progress else handle.result())
    except WorkflowFailureError as err:
        if not isinstance(err.cause, CancelledError):
            return 1, {**started, "status": "failed", "error": _cause(err)}
        # Closed as Canceled: its steps so far, from the workflow's progress query.
        result = await handle.query(PROGRESS_QUERY, result_type=AgentResult)
    if progress:
        progress.show(result)
    return (0 if result.status == COMPLETED else 1), {**started, **dataclasses.asdict(result)}


async def _watch(handle: Any, progress: Progress) -> AgentResult:
    """The run's result; meanwhile its progress, and Ctrl-C asks what to do."""
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    done = asyncio.ensure_future(handle.result())
    try:
        while not done.done():
            with contextlib.suppress(Exception):  # a query can fail while no worker is there; try again
                progress.show(await handle.query(PROGRESS_QUERY, result_type=AgentResult))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(interrupted.wait()), PROGRESS_EVERY)
            if interrupted.is_set():
                interrupted.clear()
                answer = await asyncio.to_thread(
                    _ask, "\nCancel the run (c) or stop watching and let it go on (w)? [c/w] "
                )
                if answer.startswith("c"):
                    await handle.cancel()
                    print("cancelling the run...", flush=True)
                else:
                    raise StoppedWatching
        result: AgentResult = await done
        return result
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if not done.done():
            done.cancel()


def _ask(question: str) -> str:
    try:
        return input(question).strip().lower()
    except EOFError:
        return "w"


class Progress:
    """Prints each new step and finished tool call, and a running count, once."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.steps_shown = 0
        self.calls_shown: set[tuple[int, int]] = set()

    def show(self, result: AgentResult) -> None:
        lines = []
        for step in result.steps:
            if step.number > self.steps_shown:
                self.steps_shown = step.number
                lines.append(f"step {step.number}: {_one_line(step.text) or '(no text)'}")
            for index, call in enumerate(step.tool_calls):
                if call.result and (step.number, index) not in self.calls_shown:
                    self.calls_shown.add((step.number, index))
                    mark = "ok" if call.ok else "failed"
                    lines.append(f"  {call.name} {_one_line(call.arguments, 80)} -> {mark}: {_one_line(call.result)}")
        if not lines:
            return
        usage = result.usage
        tokens = (usage.input_tokens or 0) + (usage.output_tokens or 0)
        lines.append(f"  [{len(result.steps)} steps, {tokens} tokens, {result.seconds:.0f}s, {result.status}]")
        print("\n".join(lines), file=self.out, flush=True)


def _one_line(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _cause(err: BaseException) -> str:
    """The innermost message: the workflow's failure wraps the activity's, which says what is wrong."""
    while err.__cause__ is not None:
        err = err.__cause__
    message = getattr(err, "message", None)  # Temporal's failures: the message without the type
    return message if isinstance(message, str) and message else str(err)


def main(argv: list[str] | None = None) -> int:
    request, args = parse_args(argv)
    workflow_id = args.workflow_id or f"agent-run-{uuid.uuid4().hex[:12]}"
    try:
        live = args.wait and not args.json and sys.stdout.isatty()
        code, output = asyncio.run(submit(request, workflow_id, args.wait, live))
    except ConfigError as err:
        print(f"agent-runner submit: configuration error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, StoppedWatching):
        print(f"stopped waiting; the run goes on: temporal workflow cancel -w {workflow_id}", file=sys.stderr)
        return 130
    except Exception as err:
        print(f"agent-runner submit: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(output, indent=2, ensure_ascii=False))
    return code


if __name__ == "__main__":
    exit_code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)  # skip interpreter teardown: the Temporal SDK's threads can crash it (sdk-python#300)
