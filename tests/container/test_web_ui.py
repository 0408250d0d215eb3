"""The Temporal Web UI that `make run-local` prints, opened in a real browser (Debian's chromium).

The screenshots are kept as test artifacts in test-artifacts/ (ignored by git):
web-ui-workflows.png (the namespace's list of runs) and web-ui-run.png (the run's own page).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.container.conftest import docker, make, run_local_env
from tests.helpers import ROOT, free_port

pytestmark = pytest.mark.container

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless chromium through chromedriver, both Debian's; Selenium Manager downloads nothing.
    Every host name but localhost resolves to nothing, so the UI must work offline."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(f"the browser test needs {' and '.join(missing)}: apt-get install chromium chromium-driver")
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager reach the network
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--no-proxy-server",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request it makes
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def start_run(address: str, task_queue: str, workflow_id: str) -> Any:
    """Start an agent run as a client would, with a known workflow id, and wait for its result."""
    from temporalio.client import Client

    from agent_runner.models import AgentRequest, AgentResult
    from agent_runner.workflows import AgentExecutionWorkflow

    async def run() -> AgentResult:
        client = await Client.connect(address)
        return await client.execute_workflow(
            AgentExecutionWorkflow.run,
            AgentRequest(instructions="write a note", workspace="ui-run"),
            id=workflow_id,
            task_queue=task_queue,
        )

    return asyncio.run(run())


def requests_made(driver: Any) -> list[str]:
    """The URL of every request the browser sent since the last call (Chrome's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def wait_for_text(driver: Any, texts: tuple[str, ...], timeout: float) -> float:
    """Wait (bounded) until the rendered page shows every one of texts (in any letter case: the UI
    capitalises statuses with CSS); returns the seconds it took."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    start = time.monotonic()

    def shown(d: Any) -> bool:
        body = d.find_element(By.TAG_NAME, "body").text.lower()
        return all(text.lower() in body for text in texts)

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(shown)
    except TimeoutException:
        body = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(
            f"gave up after {timeout:.0f}s waiting for {texts} at {driver.current_url}; page shows: {body[:600]!r}"
        ) from None
    return time.monotonic() - start


def test_web_ui_printed_by_run_local_lists_a_completed_run(
    tmp_path: Path, agent_llm: Any, browser: Any, capsys: pytest.CaptureFixture[str], figure: Any
) -> None:
    port = free_port()
    name = f"agent-runner-ui-{uuid.uuid4().hex[:8]}"
    task_queue = f"ui-{uuid.uuid4().hex[:8]}"
    workflow_id = f"ui-run-{uuid.uuid4().hex[:8]}"
    env = run_local_env(
        tmp_path,
        name,
        port,
        **agent_llm("seen in the Web UI"),
        TEMPORAL_TASK_QUEUE=task_queue,
    )
    try:
        started = make("run-local", env)
        assert started.returncode == 0, started.stdout + started.stderr
        printed = re.search(r"Temporal Web UI: (http://\S+)", started.stdout)
        assert printed, f"run-local printed no Web UI link:\n{started.stdout}"
        link = printed.group(1)
        assert link == f"http://localhost:{env['TEMPORAL_UI_PORT']}"
        # `make ui` prints the same link (no display here, so it opens nothing).
        shown = make("ui", {k: v for k, v in env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")})
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert f"Temporal Web UI: {link}\n" in shown.stdout

        result = start_run(env["TEMPORAL_ADDRESS"], task_queue, workflow_id)
        assert result.status == "completed", result.error

        # The namespace's list of runs: the run is there, completed.
        browser.get(f"{link}/namespaces/default/workflows")
        list_seconds = wait_for_text(browser, (workflow_id, "Completed"), timeout=60)
        ARTIFACTS.mkdir(exist_ok=True)
        listed = ARTIFACTS / "web-ui-workflows.png"
        assert browser.save_screenshot(str(listed))

        # The run's own page: its history, from the workflow id.
        browser.get(f"{link}/namespaces/default/workflows/{workflow_id}")
        run_seconds = wait_for_text(browser, (workflow_id, "Completed", "AgentExecution"), timeout=60)
        page = ARTIFACTS / "web-ui-run.png"
        assert browser.save_screenshot(str(page))

        # Offline: every request the pages made went to the UI itself.
        requested = requests_made(browser)
        assert any(url.startswith(f"{link}/_app/") for url in requested), requested[:20]
        foreign = [url for url in requested if not url.startswith((link, "data:", "blob:"))]
        assert not foreign, f"the UI asked for more than its own server: {foreign}"
    finally:
        stopped = make("stop", env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert docker("container", "inspect", name, check=False).returncode != 0

    with capsys.disabled():
        print(f"\nWeb UI screenshots: {listed} and {page}")
        print(f"Web UI rendered the list in {list_seconds:.1f} s and the run's page in {run_seconds:.1f} s")
    figure(
        "the Web UI run-local prints lists a completed run and shows its page, offline, in chromium",
        f"list rendered in {list_seconds:.1f} s, run page in {run_seconds:.1f} s; "
        f"screenshots test-artifacts/{listed.name}, test-artifacts/{page.name}",
    )
