"""The docs, checked against the code: every environment variable the worker reads is in the
tables of docs/docker.md and every one there is read; every figure docs/docker.md quotes from
the benchmark is a value of bench/results.json; every constant it quotes is the code's."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import temporalio.bridge

from agent_runner import worker
from tests.helpers import ROOT

DOCS = (ROOT / "docs" / "docker.md").read_text(encoding="utf-8")
VARIABLE = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9<>]+)*)`")
# Variables the worker leaves to a library: the Temporal SDK's environment configuration (read in
# its native core, so checked against that binary) and httpx (its CA and proxy settings).
HTTPX_VARIABLES = {"SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"}


def section(title: str, text: str = DOCS) -> str:
    """The text of a Markdown section, up to the next heading of the same or a higher level."""
    heading = re.search(rf"^(#+) {re.escape(title)}\n", text, re.M)
    assert heading, f"no section {title!r} in docs/docker.md"
    rest = text[heading.end() :]
    following = re.search(rf"^#{{1,{len(heading.group(1))}}} ", rest, re.M)
    return rest[: following.start()] if following else rest


def table_variables(text: str) -> set[str]:
    """The variables named in the first column of the tables in text."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            names |= set(VARIABLE.findall(line.split("|")[1]))
    return names


def documented_for_the_worker() -> set[str]:
    worker_part = section("Environment variables").split("### Build and development")[0]
    return table_variables(worker_part)


def read_by_the_worker() -> set[str]:
    """Every environment variable name the worker's code (agent_runner/, healthcheck.py) spells out."""
    prefixes = ("TEMPORAL_", "STIGMER_", "OPENAI_", "ANTHROPIC_", "OLLAMA_")
    names: set[str] = set()
    for path in [*sorted((ROOT / "agent_runner").rglob("*.py")), ROOT / "healthcheck.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # _secret_from_file(env, "NAME") reads NAME and NAME_FILE.
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_secret_from_file":
                names |= {f"{arg.value}_FILE" for arg in node.args if isinstance(arg, ast.Constant)}
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                if (
                    re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+", value) and (value.startswith(prefixes))
                ) or value == "TASK_QUEUE":
                    names.add(value)
    return names


def read_by_the_sdk(names: set[str]) -> set[str]:
    """Those of names the Temporal SDK's native core spells out (its environment configuration)."""
    library = next(Path(temporalio.bridge.__file__).parent.glob("temporal_sdk_bridge*"))
    data = library.read_bytes()
    return {name for name in names if name.replace("<NAME>", "").encode() in data}


def test_every_variable_the_worker_reads_is_documented() -> None:
    missing = read_by_the_worker() - documented_for_the_worker()
    assert not missing, f"read by the worker but not in docs/docker.md's variables tables: {sorted(missing)}"


def test_every_documented_variable_is_read() -> None:
    documented = documented_for_the_worker()
    unread = documented - read_by_the_worker() - HTTPX_VARIABLES - read_by_the_sdk(documented)
    assert not unread, f"in docs/docker.md's variables tables but read by nothing: {sorted(unread)}"


def test_httpx_reads_the_variables_documented_for_it() -> None:
    import httpx

    source = "".join(p.read_text(encoding="utf-8") for p in Path(httpx.__file__).parent.rglob("*.py"))
    import urllib.request

    proxies = Path(urllib.request.__file__).read_text(encoding="utf-8")
    for name in HTTPX_VARIABLES:
        assert name in DOCS
        assert name in source or ("_proxy" in proxies and name.endswith("_PROXY")), name


def test_build_variables_documented_are_used_and_tunables_documented() -> None:
    build = table_variables(section("Environment variables").split("### Build and development")[1])
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    used = makefile + "".join(
        p.read_text(encoding="utf-8")
        for pattern in ("scripts/*.sh", "tests/**/*.py", "bench/*.py", ".ci/run")
        for p in ROOT.glob(pattern)
    )
    unused = {name for name in build if not re.search(rf"\b{name}\b", used)}
    assert not unused, f"documented build variables used nowhere: {sorted(unused)}"
    tunables = re.search(r"^TUNABLES := ((?:.*\\\n)*.*)$", makefile, re.M)
    assert tunables
    undocumented = set(tunables.group(1).replace("\\", " ").split()) - build - documented_for_the_worker()
    assert not undocumented, f"Makefile tunables missing from docs/docker.md: {sorted(undocumented)}"


def numbers(text: str) -> list[str]:
    return re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])", text)


def test_benchmark_figures_in_the_docs_are_those_of_bench_results_json() -> None:
    results = json.loads((ROOT / "bench" / "results.json").read_text(encoding="utf-8"))
    values: list[float] = []
    strings: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, bool):
            return
        elif isinstance(node, int | float):
            values.append(float(node))
        elif isinstance(node, str):
            strings.append(node)

    walk(results)
    figures = section("Figures")
    quoted = figures.split("\n\nWhere the bytes are")[0]  # the table and the paragraph above it
    found = numbers(quoted)
    assert len(found) > 20, found
    for figure in found:
        decimals = len(figure.split(".")[1]) if "." in figure else 0
        ok = any(round(v, decimals) == float(figure) for v in values) or any(figure in s for s in strings)
        assert ok, f"docs/docker.md quotes {figure} in its Figures, and bench/results.json has no such value"


def test_reconnect_backoff_in_the_docs_is_the_workers() -> None:
    match = re.search(r"\((\d+(?:\.\d+)?) s backoff doubling to (\d+(?:\.\d+)?) s\)", DOCS)
    assert match, "docs/docker.md no longer states the reconnect backoff"
    assert (float(match.group(1)), float(match.group(2))) == (worker.BACKOFF_FIRST, worker.BACKOFF_MAX)
