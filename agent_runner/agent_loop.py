"""The agent loop: ask the model, run the tools it asks for, give it their answers, until it
answers without asking for a tool, or a limit, a provider error or a cancellation stops it."""

from __future__ import annotations

import asyncio
import logging

from agent_runner.llm import AssistantTurn, ChatModel, Reply, ToolAnswer, ToolRequest, ToolTurn, Turn, UserTurn
from agent_runner.llm.http import LLMError
from agent_runner.models import CANCELLED, COMPLETED, FAILED, LIMIT_REACHED, AgentRequest, AgentResult, Step, ToolCall
from agent_runner.tools import TOOL_SPECS, ToolError, Workspace

log = logging.getLogger("agent_runner.agent")

SYSTEM_PROMPT = """\
You are an agent that carries out a task in a workspace directory, using the tools you are given:
list, read, write and edit files, and run shell commands. Every path is relative to the workspace;
paths that leave it are refused. When the task is done, answer with a short summary of what you did,
without calling a tool."""
SHORT = 300  # characters of a text, an argument list or a tool's answer kept in a step


async def run_agent(model: ChatModel, workspace: Workspace, request: AgentRequest) -> AgentResult:
    """Run until done. Never raises for a provider error, a limit or a cancellation: the result
    says which (the caller is the activity, which reports a cancelled run as its result)."""
    result = AgentResult(status=LIMIT_REACHED, final_answer="", workspace=request.workspace, model=model.model)
    timeout = asyncio.timeout(request.max_seconds)
    try:
        async with timeout:
            await _loop(model, workspace, request, result)
    except TimeoutError:
        if not timeout.expired():
            raise
        result.status, result.error = LIMIT_REACHED, f"max_seconds ({request.max_seconds:g}) ran out"
    except LLMError as err:
        result.status, result.error = FAILED, str(err)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # handled: the caller goes on to report the steps so far
        result.status, result.error = CANCELLED, "the run was cancelled"
    log.info("agent run in %s ended: %s after %d steps", request.workspace, result.status, len(result.steps))
    return result


async def _loop(model: ChatModel, workspace: Workspace, request: AgentRequest, result: AgentResult) -> None:
    system = SYSTEM_PROMPT + (f"\n\n{request.system_prompt}" if request.system_prompt else "")
    turns: list[Turn] = [UserTurn(request.instructions)]
    for number in range(1, request.max_steps + 1):
        reply = await model.complete(system, turns, TOOL_SPECS)
        _count_tokens(result, reply)
        step = Step(number=number, text=_short(reply.text))
        result.steps.append(step)
        result.final_answer = reply.text
        if not reply.tool_requests:
            result.status = COMPLETED
            return
        answers = []
        for tool_request in reply.tool_requests:
            call = ToolCall(name=tool_request.name, arguments=_short(tool_request.raw_arguments), ok=False, result="")
            step.tool_calls.append(call)
            call.result = "cancelled"  # what the step says if the run is stopped during the call
            answer = await _call_tool(workspace, tool_request)
            answers.append(answer)
            call.ok, call.result = not answer.is_error, _short(answer.content)
        turns += [AssistantTurn(reply.text, reply.tool_requests), ToolTurn(answers)]
    result.error = f"max_steps ({request.max_steps}) reached before a final answer"


async def _call_tool(workspace: Workspace, request: ToolRequest) -> ToolAnswer:
    if request.arguments is None:
        return ToolAnswer(request.id, f"{request.name}: the arguments must be a JSON object", is_error=True)
    try:
        content = await workspace.call(request.name, request.arguments)
    except ToolError as err:
        log.info("tool %s refused or failed: %s", request.name, err)
        return ToolAnswer(request.id, str(err), is_error=True)
    except Exception:  # a bug in a tool must not end the run; the model is told, the log has the trace
        log.exception("tool %s crashed", request.name)
        return ToolAnswer(request.id, f"{request.name} failed with an internal error", is_error=True)
    return ToolAnswer(request.id, content)


def _count_tokens(result: AgentResult, reply: Reply) -> None:
    usage = result.usage
    if reply.input_tokens is not None:
        usage.input_tokens = (usage.input_tokens or 0) + reply.input_tokens
    if reply.output_tokens is not None:
        usage.output_tokens = (usage.output_tokens or 0) + reply.output_tokens


def _short(text: str) -> str:
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"
