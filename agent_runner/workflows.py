"""The agent run as a durable workflow: the conversation, the steps and the token usage are
workflow state; every side effect is an activity (agent_runner.activities).

- A model call is retried by Temporal when its worker is lost (heartbeat timeout) or shuts down;
  a provider's refusal (401, 403, unknown model) ends the run at once with the provider's reason.
- A tool call runs at most once. If its worker dies or shuts down mid-call, the model is told that
  the call was interrupted and that its outcome is unknown, and the run goes on.
- Tool calls go to the task queue of the workspace's volume, so they act on the run's directory.
- A cancelled run closes as Canceled; the `progress` query still answers with its steps.
- The history is continued as new before it grows near Temporal's warning limits.
No I/O here: the workflow must replay deterministically.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.converter import value_to_type
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutType,
    is_cancelled_exception,
)
from temporalio.exceptions import TimeoutError as ActivityTimeout

from agent_runner import metrics

with workflow.unsafe.imports_passed_through():
    from agent_runner.agent_loop import INTERRUPTED, count_tokens, short, system_prompt
    from agent_runner.llm import AssistantTurn, Reply, ToolAnswer, ToolRequest, ToolTurn, UserTurn, turn_to_json
    from agent_runner.models import (
        CANCELLED,
        COMPLETED,
        FAILED,
        LIMIT_REACHED,
        RUNNING,
        AgentRequest,
        AgentResult,
        ModelCall,
        RunState,
        Step,
        ToolCall,
        ToolCallInput,
        ToolOutcome,
        WorkspaceInfo,
        request_problem,
    )

WORKFLOW_NAME = "AgentExecution"
PROGRESS_QUERY = "progress"  # the run so far, in the shape of its result
# A lost worker is noticed after this long without a heartbeat (activities beat every 2 s);
# a cancellation reaches a running call within about 0.8 times this (the SDK's heartbeat throttle).
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
# Beyond the run's own max_seconds: time to set up, and to report the result.
GRACE = timedelta(minutes=2)
MODEL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
    non_retryable_error_types=["LLMError", "LLMNotConfigured"],
)
ONCE = RetryPolicy(maximum_attempts=1)
# Continue as new above these (Temporal warns at 10 MiB and 10,240 events).
HISTORY_BYTES_MAX = 4 * 1024 * 1024
HISTORY_EVENTS_MAX = 4000


@workflow.defn(name=WORKFLOW_NAME)
class AgentExecutionWorkflow:
    def __init__(self) -> None:
        self._result = AgentResult(status=RUNNING, final_answer="", workspace="")
        self._started = 0.0

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> AgentResult:
        """The run so far, in the result's shape; status "running" until it ends."""
        if self._result.status != RUNNING:
            return self._result
        return dataclasses.replace(self._result, seconds=self._elapsed())

    @workflow.run
    async def run(self, request: AgentRequest, carried: RunState | None = None) -> AgentResult:
        # `carried` is the state handed over by continue-as-new. A run started by a client has
        # one argument, and the SDK applies type hints only when the counts match: convert here.
        if isinstance(request, dict):
            request = value_to_type(AgentRequest, request)
        if carried is None:
            metrics.run_started()
        problem = request_problem(request)
        if problem:
            metrics.run_finished(FAILED, None)
            raise ApplicationError(problem, type="InvalidRequest", non_retryable=True)
        try:
            state = await self._start(request, carried)
            remaining = self._started + request.max_seconds - workflow.now().timestamp()
            status, error = await asyncio.wait_for(self._loop(request, state), timeout=max(remaining, 0.001))
        except TimeoutError:
            status, error = LIMIT_REACHED, f"max_seconds ({request.max_seconds:g}) ran out"
        except BaseException as err:
            if isinstance(err, asyncio.CancelledError) or is_cancelled_exception(err):
                self._end(CANCELLED, "the run was cancelled")
            elif isinstance(err, ApplicationError):
                self._end(FAILED, err.message)
            elif isinstance(err, ActivityError):  # e.g. a model call that failed on every attempt
                self._end(FAILED, str(err.cause or err))
            raise
        await self._close_workspace(state)
        return self._end(status, error)

    async def _start(self, request: AgentRequest, carried: RunState | None) -> RunState:
        if carried is None:
            if not request.workspace:
                # Each run its own directory by default, named after the workflow id.
                request = dataclasses.replace(
                    request, workspace=re.sub(r"[^A-Za-z0-9._-]", "_", workflow.info().workflow_id)
                )
            self._started = workflow.now().timestamp()
            self._result = AgentResult(status=RUNNING, final_answer="", workspace=request.workspace)
            space = await self._open_workspace(request.workspace)
            self._result.model = request.model or space.model
            return RunState(self._result, [turn_to_json(UserTurn(request.instructions))], space, self._started)
        self._result, self._started = carried.result, carried.started
        return carried

    def _end(self, status: str, error: str | None) -> AgentResult:
        """Where every run ends: completed, failed, cancelled or limit_reached, with its usage."""
        self._result.status, self._result.error = status, error
        self._result.seconds = self._elapsed()
        usage = self._result.usage
        metrics.run_finished(status, usage)  # runs by status, and their tokens (agent_runner/metrics.py)
        workflow.logger.info(
            "agent run in %s ended: %s after %d steps (%s input, %s output tokens)",
            self._result.workspace,
            status,
            len(self._result.steps),
            usage.input_tokens,
            usage.output_tokens,
        )
        return self._result

    def _elapsed(self) -> float:
        return round(workflow.now().timestamp() - self._started, 3) if self._started else 0.0

    async def _loop(self, request: AgentRequest, state: RunState) -> tuple[str, str | None]:
        result = state.result
        system = system_prompt(request.system_prompt)
        while len(result.steps) < request.max_steps:
            try:
                reply = await self._call_model(ModelCall(system, state.turns, result.model), request)
            except ActivityError as err:
                if isinstance(err.cause, ApplicationError) and err.cause.type == "LLMError":
                    return FAILED, err.cause.message
                raise
            count_tokens(result, reply)
            step = Step(number=len(result.steps) + 1, text=short(reply.text))
            result.steps.append(step)
            result.final_answer = reply.text
            if not reply.tool_requests:
                return COMPLETED, None
            answers = []
            for tool_request in reply.tool_requests:
                arguments = short(tool_request.raw_arguments)
                call = ToolCall(name=tool_request.name, arguments=arguments, ok=False, result="")
                step.tool_calls.append(call)
                answer = await self._call_tool(state, tool_request, call)
                answers.append(answer)
                call.ok, call.result = not answer.is_error, short(answer.content)
            state.turns += [
                turn_to_json(AssistantTurn(reply.text, reply.tool_requests)),
                turn_to_json(ToolTurn(answers)),
            ]
            if self._history_is_long():
                workflow.continue_as_new(args=[request, state])
        return LIMIT_REACHED, f"max_steps ({request.max_steps}) reached before a final answer"

    async def _open_workspace(self, workspace: str) -> WorkspaceInfo:
        try:
            space: WorkspaceInfo = await workflow.execute_activity(
                "open_workspace",
                workspace,
                result_type=WorkspaceInfo,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(
                    maximum_attempts=5, non_retryable_error_types=["LLMNotConfigured", "InvalidWorkspace"]
                ),
            )
            return space
        except ActivityError as err:
            if isinstance(err.cause, ApplicationError) and err.cause.non_retryable:
                raise ApplicationError(err.cause.message, type=err.cause.type, non_retryable=True) from None
            raise

    async def _call_model(self, call: ModelCall, request: AgentRequest) -> Reply:
        try:
            reply: Reply = await workflow.execute_activity(
                "call_model",
                call,
                result_type=Reply,
                start_to_close_timeout=timedelta(seconds=request.max_seconds) + GRACE,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=MODEL_RETRY,
            )
            return reply
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise asyncio.CancelledError from err
            raise

    async def _call_tool(self, state: RunState, request: ToolRequest, call: ToolCall) -> ToolAnswer:
        if request.arguments is None:
            return ToolAnswer(request.id, f"{request.name}: the arguments must be a JSON object", is_error=True)
        space = state.space
        try:
            outcome: ToolOutcome = await workflow.execute_activity(
                "call_tool",
                ToolCallInput(state.result.workspace, request.name, request.arguments),
                result_type=ToolOutcome,
                task_queue=space.volume_queue,
                schedule_to_start_timeout=timedelta(seconds=space.volume_wait),
                start_to_close_timeout=timedelta(seconds=space.command_timeout) + GRACE,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=ONCE,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except ActivityError as err:
            cause = err.cause
            if is_cancelled_exception(err):
                call.result = "cancelled"
                raise asyncio.CancelledError from err
            if isinstance(cause, ActivityTimeout) and cause.type == TimeoutType.SCHEDULE_TO_START:
                raise ApplicationError(
                    f"no worker with the run's workspace {space.run_dir} took its tool call within "
                    f"{space.volume_wait:g}s (task queue {space.volume_queue}): is a worker running with that volume?",
                    type="WorkspaceUnavailable",
                    non_retryable=True,
                ) from None
            if isinstance(cause, ActivityTimeout) or (
                isinstance(cause, ApplicationError) and cause.type == "ToolInterrupted"
            ):
                workflow.logger.warning("tool %s was interrupted: %s", request.name, cause)
                return ToolAnswer(request.id, INTERRUPTED, is_error=True)
            if isinstance(cause, ApplicationError) and cause.type == "WorkspaceGone":
                raise ApplicationError(cause.message, type="WorkspaceGone", non_retryable=True) from None
            raise
        return ToolAnswer(request.id, outcome.content, is_error=outcome.is_error)

    async def _close_workspace(self, state: RunState) -> None:
        """The files the run created, changed and deleted; left empty if they cannot be had."""
        space = state.space
        try:
            created, changed, deleted = await workflow.execute_activity(
                "close_workspace",
                state.result.workspace,
                result_type=list[list[str]],
                task_queue=space.volume_queue,
                schedule_to_start_timeout=timedelta(seconds=space.volume_wait),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            workflow.logger.warning("cannot list the run's changed files: %s", err.cause or err)
            return
        self._result.files_created, self._result.files_changed, self._result.files_deleted = created, changed, deleted

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_size() > HISTORY_BYTES_MAX
            or info.get_current_history_length() > HISTORY_EVENTS_MAX
        )
