"""Workflows: deterministic orchestration of an agent run."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from agent_runner import metrics

with workflow.unsafe.imports_passed_through():
    from agent_runner.models import AgentRequest, AgentResult, request_problem

WORKFLOW_NAME = "AgentExecution"
# A dead worker is noticed after this long without a heartbeat; a cancellation reaches the run
# within about 0.8 times this (the SDK's heartbeat throttle).
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
# Beyond the run's own max_seconds: time to set up, and to report the result.
GRACE = timedelta(minutes=2)


@workflow.defn(name=WORKFLOW_NAME)
class AgentExecutionWorkflow:
    @workflow.run
    @metrics.record_run  # runs started and finished, and their tokens (agent_runner/metrics.py)
    async def run(self, request: AgentRequest) -> AgentResult:
        problem = request_problem(request)
        if problem:
            raise ApplicationError(problem, type="InvalidRequest", non_retryable=True)
        if not request.workspace:
            # Each run its own directory by default, named after the workflow id.
            request = dataclasses.replace(
                request, workspace=re.sub(r"[^A-Za-z0-9._-]", "_", workflow.info().workflow_id)
            )
        # One attempt: a run's commands have side effects, so running it again from the start is
        # not safe. Provider errors are retried inside the run. On cancellation the activity
        # stops the run and reports it, with its steps, as its result: wait for that.
        result: AgentResult = await workflow.execute_activity(
            "execute_agent",
            request,
            result_type=AgentResult,
            start_to_close_timeout=timedelta(seconds=request.max_seconds) + GRACE,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=1),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return result
