"""The publishing suite: a real registry with htpasswd auth on 127.0.0.1, and Docker and Podman
each with its own throw-away credentials and (for Podman) image store. The user's own
credentials and images are never touched. Fails (never skips) when a tool is missing:
.ci/run installs them all (scripts/check-prereqs.sh names them).

As a user other than root, Podman runs rootless: it needs newuidmap (Debian's uidmap) and a
range of subordinate IDs for the user in /etc/subuid and /etc/subgid. Its store then holds
files of those IDs, so it is removed from inside Podman's user namespace (podman unshare).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, Seen, free_port, stop_process_group, wait_for

DOCKER = os.environ.get("DOCKER", "docker")
TOOLS = ("docker-registry", "htpasswd", "podman", "skopeo", "gpg", "make")
USER = "publisher"
# The test's own throw-away images and bases; the arm64 base is built offline when missing.
BASE = "python:3.11-slim"


def timed(label: str, started: float) -> None:
    """One line per slow step, so a run's output shows where the time went (pytest -s or -rA)."""
    print(f"[time] {label}: {time.monotonic() - started:.1f}s")


@dataclass
class Registry:
    """A Distribution registry on a free loopback port, htpasswd auth, storage in a temp dir."""

    root: Path
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def api(self, path: str, accept: str = "application/json") -> tuple[int, Any]:
        auth = base64.b64encode(f"{USER}:{self.token}".encode()).decode()
        request = urllib.request.Request(
            f"http://{self.host}/v2/{path}", headers={"Authorization": f"Basic {auth}", "Accept": accept}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")[:300]

    def tags(self, repository: str) -> set[str]:
        status, body = self.api(f"{repository}/tags/list")
        if status == 404:
            return set()
        assert status == 200, f"tags/list of {repository}: {status} {body}"
        return set(body.get("tags") or [])

    def start(self) -> Registry:
        htpasswd = self.root / "htpasswd"
        # -i: the password from stdin, so it is in no process argument.
        subprocess.run(
            ["htpasswd", "-B", "-c", "-i", str(htpasswd), USER],
            input=self.token,
            text=True,
            capture_output=True,
            check=True,
            timeout=30,
        )
        config = self.root / "config.yml"
        config.write_text(
            f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.root / "data"}
  delete:
    enabled: true
http:
  addr: {self.host}
auth:
  htpasswd:
    realm: agent-runner-tests
    path: {htpasswd}
"""
        )
        log = (self.root / "registry.log").open("wb")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=log, start_new_session=True
        )
        wait_for(f"registry on {self.host}", self._ready, timeout=20)
        return self

    def _ready(self) -> bool | Seen:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"docker-registry exited with {self.proc.returncode}: {(self.root / 'registry.log').read_text()[-500:]}"
            )
        try:
            status, _ = self.api("")
        except OSError as err:
            return Seen(str(err))
        return status == 200 or Seen(f"HTTP {status}")

    def stop(self) -> None:
        stop_process_group(self.proc)


@dataclass
class Runtime:
    """One engine (docker or podman) with its own credentials file (and, for Podman, store)."""

    name: str
    cli: str
    home: Path
    registry: Registry
    env: dict[str, str]
    repository: str  # e.g. docker/agent-runner, below the registry
    containers: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)

    @property
    def image(self) -> str:
        return f"{self.registry.host}/{self.repository}"

    @property
    def authfile(self) -> Path:
        return self.home / ("docker-config/config.json" if self.name == "docker" else "auth.json")

    def run(self, *args: str, check: bool = True, timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.cli, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False, **kw
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{self.cli} {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def run_tool(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def raw_manifest(self, tag: str) -> str:
        """The manifest (or manifest list) the registry holds for IMAGE:tag, byte for byte."""
        return self.run_tool(
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--authfile",
            str(self.authfile),
            f"docker://{self.image}:{tag}",
        ).stdout

    def make(self, target: str, *variables: str, env: dict[str, str] | None = None, timeout: float = 1800) -> Made:
        started = time.monotonic()
        result = subprocess.run(
            ["make", "--no-print-directory", target, *variables],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        made = Made(result.returncode, result.stdout, result.stderr, time.monotonic() - started)
        print(f"[time] {self.name}: make {target} {' '.join(variables)}: {made.seconds:.1f}s (rc {made.rc})")
        for line in made.stdout.splitlines():  # build-image.sh's own "built IMAGE:TAG in Ns, N MB"
            if line.startswith("build-image: built "):
                print(f"[time] {self.name}: {line}")
        return made

    def login_env(self, token: str | None = None) -> dict[str, str]:
        return {"REGISTRY_USER": USER, "REGISTRY_TOKEN": self.registry.token if token is None else token}

    def image_id(self, ref: str) -> str | None:
        result = self.run("image", "inspect", "--format", "{{.Id}}", ref, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def remember_image(self, ref: str) -> None:
        image_id = self.image_id(ref)
        if image_id and image_id not in self.images:
            self.images.append(image_id)

    def start(self, *args: str, image: str) -> str:
        container_id = self.run("run", "-d", *args, image).stdout.strip()
        self.containers.append(container_id)
        return container_id

    def health(self, container_id: str) -> str:
        state = json.loads(self.run("container", "inspect", container_id).stdout)[0]["State"]
        if state["Status"] != "running":
            return f"container {state['Status']} (exit {state.get('ExitCode')})"
        health = state.get("Health") or state.get("Healthcheck") or {}
        return str(health.get("Status") or "no health")

    def wait_healthy(self, container_id: str, timeout: float) -> None:
        def probe() -> bool | Seen:
            if self.name == "podman":
                # No systemd here, so no timer runs Podman's health checks: run them as a timer would.
                self.run("healthcheck", "run", container_id, check=False, timeout=60)
            status = self.health(container_id)
            return status == "healthy" or Seen(status)

        try:
            wait_for(f"{self.name} container health 'healthy'", probe, timeout, interval=1)
        except AssertionError as err:
            logs = self.run("logs", "--tail", "20", container_id, check=False)
            raise AssertionError(f"{err}\nlogs:\n{logs.stdout}{logs.stderr}") from None

    def cleanup(self) -> None:
        for container_id in self.containers:
            self.run("rm", "-f", container_id, check=False)
        for image_id in reversed(self.images):
            self.run("rmi", "-f", image_id, check=False)


@dataclass
class Made:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def clean_env() -> dict[str, str]:
    """The caller's environment without any credentials or registry settings of its own."""
    drop = ("REGISTRY_USER", "REGISTRY_TOKEN", "GITHUB_ACTOR", "GITHUB_TOKEN", "PUSH_LATEST", "PLATFORMS")
    # MAKEFLAGS and friends: under `make test IMAGE=...` they would pass the outer make's
    # command-line variables to the tests' own make runs, overriding IMAGE and REGISTRY.
    make_vars = ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in drop + make_vars and not k.startswith(("CONTAINERS_", "REGISTRY"))
    }
    env.setdefault("CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    return env


def docker_runtime(registry: Registry, home: Path, repository: str) -> Runtime:
    (home / "docker-config").mkdir()
    env = {
        **clean_env(),
        "DOCKER_CONFIG": str(home / "docker-config"),
        "CONTAINER_RUNTIME": "docker",
        "DOCKER": DOCKER,
        "REGISTRY": registry.host,
        "IMAGE": f"{registry.host}/{repository}",
    }
    return Runtime("docker", DOCKER, home, registry, env, repository)


def podman_runtime(registry: Registry, home: Path, repository: str) -> Runtime:
    store = home / "store"
    (home / "tmp").mkdir()
    (home / "xdg").mkdir(mode=0o700)  # rootless Podman's runtime dir (its pause process's pid file)
    (home / "docker-config").mkdir()
    (home / "auth.json").write_text('{"auths": {}}\n')  # what a user who never logged in has
    # rootless_storage_path: a rootless Podman ignores graphroot and would use ~/.local/share.
    (home / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{store}"\nrunroot = "{home / "run"}"\n'
        f'rootless_storage_path = "{store}"\n'
    )
    # Podman 4.3 asks for more open files than containers may have here ("error setting rlimit
    # type 7"); no systemd, so cgroupfs and a file for events. The host's network: rootless
    # Podman's own (slirp4netns) needs /dev/net/tun, and the tests use --network host anyway.
    nofile = min(20000, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    nproc = min(32768, resource.getrlimit(resource.RLIMIT_NPROC)[1])
    (home / "containers.conf").write_text(
        f'[containers]\nnetns = "host"\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n\n'
        f'[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\ntmp_dir = "{home / "tmp"}"\n'
        f'volume_path = "{home / "volumes"}"\n'
    )
    # The test registry speaks plain HTTP; Docker allows that for 127.0.0.0/8 by itself.
    (home / "registries.conf").write_text(
        f'unqualified-search-registries = []\n\n[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'
    )
    env = {
        **clean_env(),
        "DOCKER_CONFIG": str(home / "docker-config"),
        "CONTAINERS_STORAGE_CONF": str(home / "storage.conf"),
        "CONTAINERS_CONF": str(home / "containers.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(home / "registries.conf"),
        "REGISTRY_AUTH_FILE": str(home / "auth.json"),
        "XDG_RUNTIME_DIR": str(home / "xdg"),
        "XDG_DATA_HOME": str(home / "data"),  # rootless: its blob cache, else in ~/.local/share
        # Podman 4.3 keeps RUN --mount=type=cache directories in $TMPDIR/buildah-cache (default
        # /var/tmp), shared by every user: one made by root is unreadable for a rootless build.
        "TMPDIR": str(home / "tmp"),
        "CONTAINER_RUNTIME": "podman",
        "DOCKER": "podman",
        "REGISTRY": registry.host,
        "IMAGE": f"{registry.host}/{repository}",
    }
    return Runtime("podman", "podman", home, registry, env, repository)


def remove_podman_store(runtime: Runtime) -> None:
    store = runtime.home / "store"
    if os.geteuid() == 0:
        for mount in (store / "overlay", store):
            subprocess.run(["umount", "-R", str(mount)], capture_output=True, check=False, timeout=30)
        return
    # Rootless: the store's files belong to subordinate IDs, and the mounts live in Podman's
    # namespaces. Remove it from there, then end the pause process that holds them.
    runtime.run("unshare", "sh", "-c", f'umount -R "{store}/overlay"; rm -rf "{store}"', check=False, timeout=120)
    for pid_file in (runtime.home / "tmp" / "pause.pid", runtime.home / "xdg" / "libpod" / "tmp" / "pause.pid"):
        if pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


@pytest.fixture(scope="session", autouse=True)
def tools() -> None:
    missing = [tool for tool in (*TOOLS, DOCKER) if not shutil.which(tool)]
    if missing:
        pytest.fail(f"publishing tests need {', '.join(missing)}: scripts/check-prereqs.sh test-all names the packages")
    if os.geteuid() != 0:
        rootless = subprocess.run(
            [str(ROOT / "scripts" / "check-prereqs.sh"), "rootless-podman"], capture_output=True, text=True, check=False
        )
        if rootless.returncode != 0:
            pytest.fail(rootless.stdout.strip() + rootless.stderr.strip())
    info = subprocess.run([DOCKER, "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        pytest.fail(f"publishing tests need a Docker engine: `{DOCKER} info` failed: {info.stderr.strip()[:300]}")


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    root = Path(tempfile.mkdtemp(prefix="agent-runner-registry-"))
    started = time.monotonic()
    server = Registry(root)
    try:
        server.start()
        timed(f"registry start on {server.host}", started)
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def base_images() -> Iterator[None]:
    """Bases this session had to build (the offline arm64 stand-in) are removed at the end."""
    before = {
        ref
        for ref in (BASE, f"{BASE}-arm64")
        if subprocess.run([DOCKER, "image", "inspect", ref], capture_output=True, check=False).returncode == 0
    }
    yield
    for ref in (BASE, f"{BASE}-arm64"):
        if ref not in before:
            subprocess.run([DOCKER, "rmi", ref], capture_output=True, check=False, timeout=120)


@pytest.fixture(scope="module", params=["docker", "podman"])
def runtime(request: pytest.FixtureRequest, registry: Registry, base_images: None) -> Iterator[Runtime]:
    """Docker, then Podman, each with fresh credentials; Podman with a store of its own.
    Each test module pushes to a repository of its own (its REPOSITORY), per runtime."""
    home = Path(tempfile.mkdtemp(prefix=f"agent-runner-{request.param}-"))
    make = docker_runtime if request.param == "docker" else podman_runtime
    runtime = make(registry, home, f"{request.param}/{getattr(request.module, 'REPOSITORY', 'agent-runner')}")
    try:
        if runtime.name == "podman":
            seed_podman_base(runtime)
        yield runtime
    finally:
        runtime.cleanup()
        if runtime.name == "podman":
            remove_podman_store(runtime)
        shutil.rmtree(home, ignore_errors=True)


def seed_podman_base(runtime: Runtime) -> None:
    """Give the Podman store the bases Docker already has, instead of bootstrapping them again.
    A missing one is built offline in Podman's store by build-image.sh itself."""
    for ref in (BASE, f"{BASE}-arm64"):
        if subprocess.run([DOCKER, "image", "inspect", ref], capture_output=True, check=False).returncode != 0:
            continue
        started = time.monotonic()
        save = subprocess.Popen([DOCKER, "save", ref], stdout=subprocess.PIPE)
        loaded = subprocess.run(
            ["podman", "load"],
            stdin=save.stdout,
            env=runtime.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        save.wait(timeout=60)
        assert loaded.returncode == 0, loaded.stderr
        timed(f"podman: base {ref} copied from Docker", started)
