"""Supply chain against a real registry with auth: the SBOM `make sbom` writes and `make push-image`
attaches, `make sign-image`'s GPG signatures verified by a containers policy.json on pull, and
`make scan` against the Debian security suite. The image is the one the suite was given
(AGENT_RUNNER_IMAGE), pushed under this module's own repository."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT
from tests.publish.conftest import BASE, DOCKER, Made, Registry, Runtime, docker_runtime

pytestmark = pytest.mark.publish

SOURCE = os.environ.get("AGENT_RUNNER_IMAGE", "ghcr.io/stigmer/agent-runner:dev-local")
VERSION = "v3.1.4"


@dataclass
class Pushed:
    runtime: Runtime
    made: Made
    home: Path

    def skopeo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["skopeo", *args]
        result = subprocess.run(argv, env=self.runtime.env, capture_output=True, text=True, timeout=120, check=False)
        if check:
            assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr.strip()}"
        return result

    def digest(self, tag: str) -> str:
        raw = self.skopeo("inspect", "--raw", "--tls-verify=false", *self.auth, f"docker://{self.runtime.image}:{tag}")
        return "sha256:" + hashlib.sha256(raw.stdout.encode()).hexdigest()

    @property
    def auth(self) -> list[str]:
        return ["--authfile", str(self.runtime.authfile)]


@pytest.fixture(scope="module")
def pushed(registry: Registry) -> Iterator[Pushed]:
    """The suite's image as IMAGE:v3.1.4, logged in and pushed by `make push-image` (with its SBOM)."""
    if subprocess.run([DOCKER, "image", "inspect", SOURCE], capture_output=True, check=False).returncode != 0:
        pytest.fail(f"no image {SOURCE}: build it (make build-image) and set AGENT_RUNNER_IMAGE")
    home = Path(tempfile.mkdtemp(prefix="agent-runner-supply-"))
    runtime = docker_runtime(registry, home, "docker/agent-runner-supply")
    try:
        runtime.run("tag", SOURCE, f"{runtime.image}:{VERSION}")
        login = runtime.make("docker-login", env=runtime.login_env())
        assert login.rc == 0, login.output
        made = runtime.make("push-image", f"VERSION={VERSION}")
        assert made.rc == 0, made.output[-3000:]
        yield Pushed(runtime, made, home)
    finally:
        tags = runtime.run("images", "--format", "{{.Repository}}:{{.Tag}}", runtime.image, check=False)
        for ref in tags.stdout.split():
            runtime.run("rmi", ref, check=False)
        shutil.rmtree(home, ignore_errors=True)


def components(bom: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{c['purl'].split(':', 1)[1].split('/', 1)[0]}:{c['name']}": c for c in bom["components"]}


def locked(name: str) -> str:
    lock = tomllib.loads((ROOT / "poetry.lock").read_text())
    return str(next(p["version"] for p in lock["package"] if p["name"] == name))


def base_version(package: str) -> str:
    out = subprocess.run(
        [
            DOCKER,
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "dpkg-query",
            BASE,
            "-W",
            "-f=${Version}",
            package,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.strip()


def test_sbom_lists_the_locked_python_distributions_and_the_base_debian_packages(pushed: Pushed) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    target = pushed.home / "sbom.json"
    made = pushed.runtime.make("sbom", f"VERSION={VERSION}", f"SBOM_FILE={target}")
    assert made.rc == 0, made.output
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(target.read_text()) is None
    bom = json.loads(target.read_text())
    found = components(bom)
    for name in ("temporalio", "httpx"):
        assert found[f"pypi:{name}"]["version"] == locked(name), name
        assert found[f"pypi:{name}"]["purl"] == f"pkg:pypi/{name}@{locked(name)}"
    python = found["deb:python3.11"]
    assert python["version"] == base_version("python3.11")
    assert python["purl"].startswith("pkg:deb/debian/python3.11@") and "arch=amd64" in python["purl"]
    pypi = sum(key.startswith("pypi:") for key in found)
    deb = sum(key.startswith("deb:") for key in found)
    print(f"[sbom] {pypi} Python distributions, {deb} Debian packages")
    assert pypi >= 10 and deb >= 80


def test_push_image_attaches_the_sbom_readable_with_skopeo(pushed: Pushed) -> None:
    digest = pushed.digest(VERSION)
    tag = digest.replace(":", "-") + ".sbom"
    assert f"attached the SBOM of {pushed.runtime.image}:{VERSION}" in pushed.made.stdout
    out = pushed.home / "fetched"
    pushed.skopeo(
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        *pushed.auth,
        f"docker://{pushed.runtime.image}:{tag}",
        f"dir:{out}",
    )
    layer = json.loads((out / "manifest.json").read_text())["layers"][0]
    assert layer["mediaType"] == "application/vnd.cyclonedx+json"
    bom = json.loads((out / layer["digest"].split(":")[1]).read_text())
    assert bom["metadata"]["component"]["bom-ref"] == pushed.runtime.image_id(f"{pushed.runtime.image}:{VERSION}")
    assert components(bom)["pypi:temporalio"]["version"] == locked("temporalio")


# ---- Signing: a throw-away GPG key, `make sign-image`, then pulls (skopeo copy: the same
# containers/image code as `podman pull`) under a policy that requires that key's signature.


@dataclass
class Signed:
    pushed: Pushed
    policy: Path
    registries_d: Path
    made: Made

    def pull(self, ref: str) -> subprocess.CompletedProcess[str]:
        target = Path(tempfile.mkdtemp(dir=self.pushed.home, prefix="pull-"))
        return self.pushed.skopeo(
            "--policy",
            str(self.policy),
            "--registries.d",
            str(self.registries_d),
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            *self.pushed.auth,
            f"docker://{ref}",
            f"dir:{target}",
            check=False,
        )


@pytest.fixture(scope="module")
def signed(pushed: Pushed) -> Iterator[Signed]:
    home = pushed.home
    gnupg = home / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {**pushed.runtime.env, "GNUPGHOME": str(gnupg)}
    gpg = ["gpg", "--batch", "--quiet"]
    subprocess.run(
        [
            *gpg,
            "--passphrase",
            "",
            "--quick-gen-key",
            "agent-runner test <test@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    listing = subprocess.run(
        [*gpg, "--with-colons", "--list-keys"], env=env, text=True, capture_output=True, check=True
    )
    fingerprint = next(line.split(":")[9] for line in listing.stdout.splitlines() if line.startswith("fpr:"))
    public = home / "agent-runner.gpg"
    public.write_bytes(subprocess.run([*gpg, "--export", fingerprint], env=env, capture_output=True, check=True).stdout)

    lookaside = home / "signatures"
    made = pushed.runtime.make(
        "sign-image",
        f"VERSION={VERSION}",
        f"SIGN_KEY={fingerprint}",
        f"LOOKASIDE_DIR={lookaside}",
        env={"GNUPGHOME": str(gnupg)},
    )
    registries_d = home / "registries.d"
    registries_d.mkdir()
    host = pushed.runtime.registry.host
    (registries_d / "agent-runner.yaml").write_text(f"docker:\n  {host}:\n    lookaside: file://{lookaside}\n")
    policy = home / "policy.json"
    rule = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(public)}
    policy.write_text(json.dumps({"default": [{"type": "reject"}], "transports": {"docker": {host: [rule]}}}))
    yield Signed(pushed, policy, registries_d, made)
    subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, check=False, timeout=30)


def test_sign_image_signs_every_release_tag_by_digest(signed: Signed) -> None:
    assert signed.made.rc == 0, signed.made.output
    digest = signed.pushed.digest(VERSION)
    assert f"signed {signed.pushed.runtime.image}@{digest} as" in signed.made.stdout
    result = signed.pull(f"{signed.pushed.runtime.image}:{VERSION}")
    assert result.returncode == 0, result.stderr


def push_relabelled(runtime: Runtime, tag: str, label: str) -> None:
    """Push to `tag` the signed release with one label added: other content, never signed."""
    build = subprocess.run(
        [DOCKER, "build", "--quiet", "--tag", tag, "-"],
        input=f"FROM {runtime.image}:{VERSION}\nLABEL {label}=yes\n",
        env=runtime.env,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    runtime.run("push", tag)


def test_pull_of_an_unsigned_image_is_refused(signed: Signed) -> None:
    runtime = signed.pushed.runtime
    other = f"{runtime.image}:unsigned"
    push_relabelled(runtime, other, "org.example.changed")
    result = signed.pull(other)
    print(f"[refused] unsigned: {result.stderr.strip()[-300:]}")
    assert result.returncode != 0
    assert "signature" in result.stderr.lower(), result.stderr


def test_pull_of_a_tag_moved_to_other_content_is_refused(signed: Signed) -> None:
    """v3 was signed with v3.1.4; then v3 is pushed again with other content (a changed label)."""
    runtime = signed.pushed.runtime
    assert signed.pull(f"{runtime.image}:v3").returncode == 0, "v3 should pull before the move"
    push_relabelled(runtime, f"{runtime.image}:v3", "org.example.moved")
    assert signed.pushed.digest("v3") != signed.pushed.digest(VERSION)
    result = signed.pull(f"{runtime.image}:v3")
    print(f"[refused] moved tag: {result.stderr.strip()[-300:]}")
    assert result.returncode != 0
    assert "signature" in result.stderr.lower(), result.stderr
    assert signed.pull(f"{runtime.image}:{VERSION}").returncode == 0, "the untouched tag still pulls"


# ---- make scan: Debian's security suite, read from its mirror (the network is needed).


@pytest.fixture(scope="module")
def stale(pushed: Pushed) -> Iterator[str]:
    """The image with dpkg believing python3.11 is still bookworm's first release, 3.11.2-6:
    what an image built before Debian's python3.11 security updates looks like to apt."""
    ref = f"{pushed.runtime.image}:stale"
    sed = r"/^Package: python3.11$/,/^$/ s/^Version: .*/Version: 3.11.2-6/"
    dockerfile = f"FROM {SOURCE}\nUSER 0\nRUN sed -i '{sed}' /var/lib/dpkg/status\nUSER 1000:1000\n"
    build = subprocess.run(
        [DOCKER, "build", "--quiet", "--tag", ref, "-"],
        input=dockerfile,
        env=pushed.runtime.env,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    yield ref


def test_scan_lists_a_pending_security_update_and_fails(pushed: Pushed, stale: str) -> None:
    made = pushed.runtime.make("scan", "VERSION=stale")
    print(f"[scan] {made.stdout.strip()}")
    assert made.rc != 0, made.output
    assert "1 package(s) with a pending security update (bookworm-security)" in made.stdout
    line = next((line.split() for line in made.stdout.splitlines() if line.split()[:1] == ["python3.11"]), None)
    assert line is not None, made.stdout
    assert line[1] == "3.11.2-6" and line[2].startswith("3.11.2-6+deb12u"), line


def test_scan_fails_with_a_message_when_the_security_suite_cannot_be_read(pushed: Pushed) -> None:
    made = pushed.runtime.make("scan", f"VERSION={VERSION}", "SECURITY_MIRROR=http://127.0.0.1:9/debian-security")
    assert made.rc != 0, made.output
    assert "cannot read the Debian security suite at http://127.0.0.1:9/debian-security" in made.stderr
