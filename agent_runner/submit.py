"""Start an agent run: `python -m agent_runner.submit "prompt" [--workspace X] [--wait]`.

Uses the worker's Temporal variables (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE,
TEMPORAL_API_KEY, TLS...). Prints JSON: without --wait, the started run's ids; with --wait, its result.
Exit codes: 0 started (or completed), 1 the run did not complete, 2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import uuid
from typing import Any

from agent_runner.config import ConfigError, load_client_settings
from agent_runner.models import COMPLETED, AgentRequest, AgentResult, request_problem
from agent_runner.workflows import PROGRESS_QUERY, WORKFLOW_NAME


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


async def submit(request: AgentRequest, workflow_id: str, wait: bool) -> tuple[int, dict[str, Any]]:
    from temporalio.client import Client, WorkflowFailureError
    from temporalio.exceptions import is_cancelled_exception

    settings = load_client_settings()
    client = await Client.connect(**settings.connect)
    handle = await client.start_workflow(
        WORKFLOW_NAME, request, id=workflow_id, task_queue=settings.task_queue, result_type=AgentResult
    )
    started = {"workflow_id": handle.id, "run_id": handle.result_run_id, "task_queue": settings.task_queue}
    if not wait:
        return 0, started
    try:
        result: AgentResult = await handle.result()
    except WorkflowFailureError as err:
        if not is_cancelled_exception(err):
            return 1, {**started, "status": "failed", "error": _cause(err)}
        # Closed as Canceled: its steps so far, from the workflow's progress query.
        result = await handle.query(PROGRESS_QUERY, result_type=AgentResult)
    return (0 if result.status == COMPLETED else 1), {**started, **dataclasses.asdict(result)}


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
        code, output = asyncio.run(submit(request, workflow_id, args.wait))
    except ConfigError as err:
        print(f"agent-runner submit: configuration error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
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
