"""Record the histories the replay test runs against the current workflow code.

    poetry run python -m tests.histories.record

Starts a Temporal dev server, the loopback model and real worker processes, runs three agent
runs (one completed, one cancelled mid-command, one whose worker is killed mid-command) and
writes each run's history as JSON next to this file. Re-record after a deliberate change to the
workflow, and keep the old files too when runs started on the old code may still be in flight.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowHandle

from agent_runner.models import AgentRequest, AgentResult
from tests.fake_llm import FakeLLM, fake_llm, openai_answer, openai_tools
from tests.helpers import ROOT, TemporalServer, wait_for

HERE = Path(__file__).resolve().parent


class Worker:
    def __init__(self, address: str, queue: str, root: Path, fake: FakeLLM) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STIGMER_", "TEMPORAL_"))}
        env |= {
            "NO_PROXY": "127.0.0.1",
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_TASK_QUEUE": queue,
            "STIGMER_WORKSPACE_ROOT": str(root),
            "STIGMER_HEALTH_FILE": str(root.parent / f"health-{uuid.uuid4().hex[:6]}.json"),
            "STIGMER_LLM_PROVIDER": "openai",
            "STIGMER_LLM_BASE_URL": fake.url,
            "STIGMER_LLM_API_KEY": "sk-record",
        }
        self.proc = subprocess.Popen([sys.executable, "-m", "agent_runner"], env=env, cwd=ROOT)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)


async def start(client: Client, queue: str, workspace: str) -> WorkflowHandle[object, AgentResult]:
    return await client.start_workflow(
        "AgentExecution",
        AgentRequest(instructions="Write a note and run a command", workspace=workspace),
        id=f"record-{workspace}-{uuid.uuid4().hex[:6]}",
        task_queue=queue,
        result_type=AgentResult,
    )


async def save(handle: WorkflowHandle[object, AgentResult], name: str) -> None:
    history = await handle.fetch_history()
    (HERE / f"{name}.json").write_text(history.to_json(), encoding="utf-8")
    print(f"wrote {name}.json: {len(history.events)} events")


async def record(address: str, tmp: Path) -> None:
    client = await Client.connect(address)
    queue = f"record-{uuid.uuid4().hex[:6]}"
    root = tmp / "workspace"
    root.mkdir()
    long_command = "echo $$ > cmd.pid; echo started >> runs.log; sleep 60"
    script = [
        # completed
        openai_tools(("write_file", {"path": "note.md", "content": "hi"}), text="Writing the note."),
        openai_tools(("run_command", {"command": "cat note.md"})),
        openai_answer("Wrote note.md."),
        # cancelled
        openai_tools(("run_command", {"command": long_command})),
        # interrupted by a worker kill, then completed by the next worker
        openai_tools(("run_command", {"command": long_command})),
        openai_answer("The command was interrupted; runs.log shows it started."),
    ]
    with fake_llm(script) as fake:
        worker = Worker(address, queue, root, fake)
        try:
            completed = await start(client, queue, "completed")
            await completed.result()
            await save(completed, "completed")

            cancelled = await start(client, queue, "cancelled")
            log = root / "cancelled" / "runs.log"
            await asyncio.to_thread(wait_for, "the command", log.exists, 60)
            await cancelled.cancel()
            await asyncio.to_thread(wait_for, "Canceled", lambda: _closed(address, cancelled.id), 60)
            await save(cancelled, "cancelled")

            interrupted = await start(client, queue, "interrupted")
            log = root / "interrupted" / "runs.log"
            await asyncio.to_thread(wait_for, "the command", log.exists, 60)
            worker.stop(signal.SIGKILL)
            os.killpg(int((root / "interrupted" / "cmd.pid").read_text()), signal.SIGKILL)  # dies with a container
            worker = Worker(address, queue, root, fake)
            await interrupted.result()
            await save(interrupted, "interrupted")
        finally:
            worker.stop()


def _closed(address: str, workflow_id: str) -> bool:
    async def status() -> bool:
        client = await Client.connect(address)
        description = await client.get_workflow_handle(workflow_id).describe()
        return description.close_time is not None

    return asyncio.run(status())


def main() -> None:
    server = TemporalServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(record(server.address, Path(tmp)))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
