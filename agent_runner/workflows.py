"""Workflows: deterministic orchestration of an agent run."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from agent_runner.models import AgentRequest, AgentResult

WORKFLOW_NAME = "AgentExecution"


@workflow.defn(name=WORKFLOW_NAME)
class AgentExecutionWorkflow:
    @workflow.run
    async def run(self, request: AgentRequest) -> AgentResult:
        result: AgentResult = await workflow.execute_activity(
            "execute_agent",
            request,
            result_type=AgentResult,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return result
