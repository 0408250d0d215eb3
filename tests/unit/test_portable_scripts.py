"""The scripts on macOS: BSD tools and bash 3.2, approximated on Linux.

What this can and cannot prove:
- The scripts' paths that need no engine (help, argument checks, preflights, the publishing
  scripts against a stub engine) run with a PATH holding only tools macOS also has: no
  `timeout`, `dpkg`, `nproc`... Tools whose GNU flags macOS lacks are wrapped so those flags fail
  (`sed -i`, `date -d`, `stat -c`, `grep -P`, `mktemp` without a template, `paste` without a file,
  `readlink -f`, `xargs -r`, `head -n -N`, `sort -V`), and `date` answers `%N` and `-r EPOCH` the
  BSD way. The tools themselves are still GNU's: a BSD behaviour not emulated here goes unseen.
- macOS's bash 3.2 cannot be installed here, so bash-4-only constructs are found by a textual
  check (below), which knows the common ones, not all of them. `make` is GNU make 4 here; macOS
  has GNU make 3.81.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port

SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))

# Tools a stock macOS has (at /bin, /usr/bin), which the scripts and the Makefile may use.
MACOS_TOOLS = (
    "awk", "basename", "bash", "cat", "chmod", "chown", "cmp", "cp", "curl", "cut", "date", "dirname",
    "env", "expand", "false", "find", "git", "grep", "head", "id", "kill", "ln", "ls", "make", "mkdir",
    "mktemp", "mv", "paste", "perl", "printf", "ps", "readlink", "rm", "sed", "seq", "sh", "sleep",
    "sort", "stat", "tail", "tee", "test", "touch", "tr", "true", "uname", "uniq", "wc", "xargs",
)  # fmt: skip

# Wrappers: each rejects the GNU-only usage named, then runs the real tool.
GNU_ONLY = {
    "sed": 'for a in "$@"; do case $a in -i*|--*) gnu_only "sed $a";; esac; done',
    "stat": 'for a in "$@"; do case $a in -c|--*) gnu_only "stat $a (BSD: stat -f)";; esac; done',
    "grep": 'for a in "$@"; do case $a in -*P*) case $a in --*) ;; *) gnu_only "grep $a";; esac;; esac; done',
    "mktemp": 'case "$*" in *X*) ;; *) gnu_only "mktemp without a template";; esac',
    "paste": 'last=""; for a in "$@"; do last=$a; done; case $last in -s*|-d*|"") gnu_only "paste, no file";; esac',
    "readlink": 'for a in "$@"; do case $a in -f|-e|-m|--*) gnu_only "readlink $a";; esac; done',
    "xargs": 'for a in "$@"; do case $a in -r|--*) gnu_only "xargs $a";; esac; done',
    "head": 'prev=""; for a in "$@"; do case $prev$a in -n-*) gnu_only "head -n negative";; esac; prev=$a; done',
    "sort": 'for a in "$@"; do case $a in -V|--version-sort) gnu_only "sort -V";; esac; done',
    # BSD date: no -d; -r takes seconds since the epoch; %N is printed as N.
    "date": (
        'args=(); while [ $# -gt 0 ]; do case $1 in -d|--date*) gnu_only "date $1";; '
        '-r) shift; args+=(-d "@$1");; *%N*) args+=("${1//%N/N}");; *) args+=("$1");; esac; shift; done; '
        'set -- "${args[@]}"'
    ),
}


@pytest.fixture(scope="module")
def macos_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH with only the tools macOS has, the GNU-only flags of some of them refused."""
    bin_dir = tmp_path_factory.mktemp("macos-bin")
    bash = shutil.which("bash")
    for tool in MACOS_TOOLS:
        real = shutil.which(tool)
        if real is None:
            continue
        target = bin_dir / tool
        if tool in GNU_ONLY:
            target.write_text(
                f"#!{bash}\n"
                f'gnu_only() {{ echo "GNU-only usage on macOS: $1" >&2; exit 99; }}\n'
                f"{GNU_ONLY[tool]}\n"
                f'exec {real} "$@"\n'
            )
            target.chmod(target.stat().st_mode | stat.S_IXUSR)
        else:
            target.symlink_to(real)
    for absent in ("timeout", "gtimeout", "dpkg", "nproc"):
        assert not (bin_dir / absent).exists()
    return str(bin_dir)


@pytest.fixture(scope="module")
def stub_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for the docker client: records each call, answers what the scripts ask."""
    path = tmp_path_factory.mktemp("stub") / "docker"
    path.write_text(
        f"#!{shutil.which('bash')}\n"
        'echo "$*" >>"$STUB_LOG"\n'
        'case "$*" in\n'
        '  --version) echo "Docker version 99.0.0, build stub" ;;\n'
        '  info*) exit "${STUB_INFO_RC:-0}" ;;\n'
        "  buildx*) exit 1 ;;\n"
        '  "image inspect --format {{.Size}}"*) echo 150000000 ;;\n'
        '  "image inspect --format {{.Architecture}}"*) exit 1 ;;\n'
        '  "container inspect"*) exit 1 ;;\n'
        "esac\n"
        "exit 0\n"
    )
    path.chmod(0o755)
    return path


def run(cmd: list[str], path: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": path, "HOME": str(tmp_path), "LANG": "C", "STUB_LOG": str(tmp_path / "stub.log")}
    return subprocess.run(
        cmd,
        cwd=ROOT,
        env={**base, "RUN_DIR": str(tmp_path / "run"), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "stub.log"
    return log.read_text().splitlines() if log.exists() else []


def test_the_fake_macos_path_refuses_gnu_only_usage(macos_path: str, tmp_path: Path) -> None:
    # The check checks: each refusal below is one a script on macOS would meet.
    for absent in ("timeout 1 true", "dpkg --print-architecture", "nproc"):
        assert run(["bash", "-c", absent], macos_path, tmp_path).returncode == 127, absent
    for cmd in (["sed", "-i", "s/a/b/", "x"], ["date", "-d", "@0"], ["stat", "-c", "%u", "."], ["mktemp"]):
        assert run(cmd, macos_path, tmp_path).returncode == 99, cmd
    assert run(["date", "+%s.%N"], macos_path, tmp_path).stdout.strip().endswith(".N")
    assert run(["date", "-u", "-r", "0", "+%Y"], macos_path, tmp_path).stdout.strip() == "1970"


def test_make_help_works_without_dpkg(macos_path: str, tmp_path: Path) -> None:
    result = run(["make", "--no-print-directory", "help"], macos_path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "GNU-only" not in result.stderr
    assert re.search(r"^  ui\s", result.stdout, re.M)
    assert "TEMPORAL_UI_PORT" in result.stdout
    arch = re.search(r"^  BASE_ARCH\s+(\S+)$", result.stdout, re.M)
    assert arch and arch.group(1) in ("amd64", "arm64"), result.stdout


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["bogus"], {}, "usage: scripts/run-local.sh [stop|ui]"),
        ([], {"TEMPORAL_ADDRESS": "localhost"}, "write it as host:port"),
        ([], {"TEMPORAL_ADDRESS": "nothing.invalid:7233"}, "nothing answers at TEMPORAL_ADDRESS=nothing.invalid:7233"),
        ([], {"TEMPORAL_CLI": "/nonexistent/temporal"}, "no Temporal CLI at /nonexistent/temporal"),
        (["ui"], {}, "start the worker and a dev server with make run-local"),
    ],
)
def test_run_local_preflight_fails_with_one_line(
    macos_path: str, tmp_path: Path, args: list[str], env: dict[str, str], says: str
) -> None:
    env = {"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", **env}
    result = run(["scripts/run-local.sh", *args], macos_path, tmp_path, **env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "GNU-only" not in result.stderr
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_run_local_stop_with_nothing_running(macos_path: str, stub_engine: Path, tmp_path: Path) -> None:
    result = run(["scripts/run-local.sh", "stop"], macos_path, tmp_path, DOCKER=str(stub_engine))
    assert (result.returncode, result.stderr) == (0, "")
    assert calls(tmp_path) == ["container inspect agent-runner-local"]


def test_publishing_scripts_refuse_without_credentials_or_image(macos_path: str, tmp_path: Path) -> None:
    login = run(["scripts/docker-login.sh"], macos_path, tmp_path)
    assert login.returncode == 1
    assert "no credentials for ghcr.io" in login.stderr
    usage = run(["scripts/multiarch.sh"], macos_path, tmp_path)
    assert usage.returncode == 1
    assert "usage: scripts/multiarch.sh build|push" in usage.stderr


def test_build_image_says_when_no_engine_answers(macos_path: str, stub_engine: Path, tmp_path: Path) -> None:
    result = run(["scripts/build-image.sh"], macos_path, tmp_path, DOCKER=str(stub_engine), STUB_INFO_RC="1")
    assert result.returncode == 1
    assert "GNU-only" not in result.stderr
    assert "no container engine answers" in result.stderr


def test_base_image_names_debootstrap_without_dpkg(macos_path: str, tmp_path: Path) -> None:
    result = run(["scripts/base-image.sh"], macos_path, tmp_path)
    assert result.returncode == 1
    assert "debootstrap is missing" in result.stderr


@pytest.mark.parametrize("image", ["ghcr.io/example/agent-runner", "127.0.0.1:5000/agent-runner"])
def test_push_multiarch_against_a_stub_engine(macos_path: str, stub_engine: Path, tmp_path: Path, image: str) -> None:
    """The whole per-platform path (build-image twice, pushes, one manifest list per tag), with
    an empty and a non-empty --insecure list."""
    result = run(
        ["scripts/multiarch.sh", "push"],
        macos_path,
        tmp_path,
        DOCKER=str(stub_engine),
        IMAGE=image,
        VERSION="v1.2.3",
        PLATFORMS="linux/amd64,linux/arm64",
        SBOM="false",  # the SBOM's attachment needs a real registry: tests/publish
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"built {image}:v1.2.3-{{amd64,arm64}}" in result.stdout
    insecure = "--insecure " if image.startswith("127.") else ""
    made = [line for line in calls(tmp_path) if line.startswith("manifest create")]
    assert made == [
        f"manifest create {insecure}{image}:{tag} {image}:v1.2.3-amd64 {image}:v1.2.3-arm64"
        for tag in ("v1.2.3", "v1.2", "v1")
    ]
    assert re.search(r"built \S+ in [0-9.]+s, 150 MB", result.stdout)


# ---- bash 3.2: a textual check for what bash 4 and later added (macOS's /bin/bash is 3.2).
BASH4 = {
    "associative array": r"\b(declare|local|typeset)\s+-[a-zA-Z]*A",
    "nameref or global declare": r"\b(declare|local|typeset)\s+-[a-zA-Z]*[ng]\b",
    "case modification ${v,,} ${v^^}": r"\$\{#?\w+(\[[^]]*\])?(,|\^)",
    "mapfile/readarray": r"\b(mapfile|readarray)\b",
    "coproc": r"\bcoproc\b",
    "|& or &>>": r"\|&|&>>",
    "case fall-through ;& ;;&": r";;&|[^;];&",
    "negative array index": r"\$\{\w+\[-",
    "negative substring length": r"\$\{\w+:\s*[\w$(]+:\s*-\s*\d",
    "wait -n": r"\bwait\s+-n\b",
    "-v test": r"(\[\[|\btest|\[)\s+-v\s",
    "${v@Q} transformation": r"\$\{\w+@[QEPAaUuLK]\}",
    "EPOCHSECONDS/EPOCHREALTIME": r"\bEPOCH(SECONDS|REALTIME)\b",
    "globstar": r"shopt\s+-s\s+globstar",
    "brace range with step or padding": r"\{-?\d+\.\.-?\d+\.\.|\{0\d+\.\.",
    "printf %(...)T": r"printf\s+[^|]*%\(",
}


def code_lines(script: Path) -> list[tuple[int, str]]:
    lines = []
    for number, line in enumerate(script.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        lines.append((number, re.sub(r"\s#\s.*$", "", line)))
    return lines


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_no_bash4_only_constructs(script: Path) -> None:
    found = [
        f"{script.name}:{number}: {name}: {line.strip()}"
        for number, line in code_lines(script)
        for name, pattern in BASH4.items()
        if re.search(pattern, line)
    ]
    assert not found, "bash 4+ only (macOS has bash 3.2):\n" + "\n".join(found)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_arrays_that_can_be_empty_are_expanded_safely(script: Path) -> None:
    """bash before 4.4 calls "${a[@]}" of an empty array unbound under set -u: an array ever set
    to () must be expanded as ${a[@]+"${a[@]}"}."""
    lines = code_lines(script)
    emptied = {m.group(1) for _, line in lines for m in re.finditer(r"\b(\w+)=\(\s*\)", line)}
    unsafe = [
        f"{script.name}:{number}: {line.strip()}"
        for number, line in lines
        for name in emptied
        if re.search(r'(?<!\+)"\$\{' + name + r'\[@\]\}"', line)
    ]
    assert not unsafe, 'expand with ${a[@]+"${a[@]}"}:\n' + "\n".join(unsafe)


def test_every_script_is_checked() -> None:
    assert {p.name for p in SCRIPTS} >= {"run-local.sh", "build-image.sh", "multiarch.sh", "portable.sh"}
    assert all(os.access(p, os.X_OK) for p in SCRIPTS if p.name not in ("publish-lib.sh", "portable.sh"))


def test_push_image_with_its_release_tags_against_a_stub_engine(
    macos_path: str, stub_engine: Path, tmp_path: Path
) -> None:
    image = "ghcr.io/example/agent-runner"
    result = run(
        ["scripts/push-image.sh"],
        macos_path,
        tmp_path,
        DOCKER=str(stub_engine),
        IMAGE=image,
        VERSION="v1.2.3",
        SBOM="false",  # the SBOM's attachment needs a real registry: tests/publish
    )
    assert result.returncode == 0, result.stdout + result.stderr
    pushed = [line.split()[-1] for line in calls(tmp_path) if line.startswith("push ")]
    assert pushed == [f"{image}:v1.2.3", f"{image}:v1.2", f"{image}:v1"]
