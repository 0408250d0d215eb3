"""`python -m agent_runner.submit --wait` in a pseudo-terminal: each step shows as it happens;
with --json (or no terminal) only the final JSON, as before."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Callable

from tests.fake_llm import Answer, fake_llm, openai_answer, openai_tools
from tests.helpers import ROOT
from tests.integration.agents import WorkerProcess, openai_env, submit_command

StartWorker = Callable[..., WorkerProcess]
STEP_SECONDS = 2.0


def three_steps() -> list[Answer]:
    answers = [
        openai_tools(("write_file", {"path": "a.txt", "content": "a"}), text="Writing a.txt."),
        openai_tools(("run_command", {"command": "cat a.txt"}), text="Checking it."),
        openai_answer("All done."),
    ]
    for answer in answers:
        answer.delay = STEP_SECONDS
    return answers


class Terminal:
    """A submit process whose stdin, stdout and stderr are a pseudo-terminal; lines with their arrival time."""

    def __init__(self, worker: WorkerProcess, *args: str) -> None:
        command, env = submit_command(worker, *args)
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        self.lines: list[tuple[float, str]] = []
        self._partial = b""

    def read_until_exit(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read(0.2)
            if self.proc.poll() is not None:
                self.read(0.2)
                return self.proc.returncode
        self.proc.kill()
        raise AssertionError(f"submit did not end in {timeout:.0f}s; it printed: {self.text()[-2000:]}")

    def read(self, wait: float) -> None:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the other end is closed
            return
        now = time.monotonic()
        self._partial += data
        *complete, self._partial = self._partial.split(b"\n")
        self.lines += [(now, line.decode(errors="replace").rstrip("\r")) for line in complete]

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines) + self._partial.decode(errors="replace")

    def first(self, prefix: str) -> float:
        return next(t for t, line in self.lines if line.startswith(prefix))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        os.close(self.master)


def test_each_step_shows_while_the_run_goes_on(start_worker: StartWorker) -> None:
    with fake_llm(three_steps()) as fake:
        worker = start_worker(openai_env(fake.url))
        term = Terminal(worker, "Write a.txt and check it", "--wait")
        try:
            code = term.read_until_exit()
        finally:
            term.close()
    text = term.text()
    assert code == 0, text
    for line in ("step 1: Writing a.txt.", "step 2: Checking it.", "step 3: All done."):
        assert line in text, text
    assert '  write_file {"path": "a.txt", "content": "a"} -> ok: wrote 1 bytes to a.txt' in text
    assert "  run_command" in text and "-> ok: exit code 0 a" in text
    assert "[3 steps, 45 tokens" in text
    ended = term.first("{")
    # Each step was on the screen before the run ended; the next model reply takes STEP_SECONDS.
    assert term.first("step 1:") < ended - STEP_SECONDS, text
    assert term.first("step 2:") < ended - STEP_SECONDS / 2, text
    final = json.loads(text[text.index("\n{") + 1 :])
    assert final["status"] == "completed" and len(final["steps"]) == 3


def test_with_json_only_the_final_json_is_printed(start_worker: StartWorker) -> None:
    with fake_llm(three_steps()) as fake:
        worker = start_worker(openai_env(fake.url))
        term = Terminal(worker, "Write a.txt and check it", "--wait", "--json")
        try:
            code = term.read_until_exit()
        finally:
            term.close()
    final = json.loads(term.text())  # nothing but the JSON
    assert code == 0
    assert final["status"] == "completed"
    assert [step["text"] for step in final["steps"]] == ["Writing a.txt.", "Checking it.", "All done."]


def test_ctrl_c_then_cancel_prints_the_partial_steps(start_worker: StartWorker) -> None:
    script = three_steps()
    script[1].delay = 60  # the run waits on its second model call when Ctrl-C comes
    with fake_llm(script) as fake:
        worker = start_worker(openai_env(fake.url))
        term = Terminal(worker, "Write a.txt and check it", "--wait")
        try:
            deadline = time.monotonic() + 60
            while "step 1:" not in term.text() and time.monotonic() < deadline:
                term.read(0.2)
            assert "step 1:" in term.text(), term.text()
            term.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
            while "Cancel the run" not in term.text() and time.monotonic() < deadline:
                term.read(0.2)
            os.write(term.master, b"c\n")
            code = term.read_until_exit()
        finally:
            term.close()
    text = term.text()
    assert code == 1, text
    final = json.loads(text[text.index("\n{") + 1 :])
    assert (final["status"], final["error"]) == ("cancelled", "the run was cancelled")
    assert [step["text"] for step in final["steps"]] == ["Writing a.txt."]
