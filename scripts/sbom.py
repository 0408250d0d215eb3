"""CycloneDX SBOM of a built agent-runner image: every Python distribution in /opt/venv and every
Debian package installed in the image, each with its package URL (purl).

The inventory is read inside the image itself (one `python` run, no network), so the SBOM
describes exactly what the image holds, not what the lock file asked for.

usage: python scripts/sbom.py IMAGE OUTPUT   (DOCKER: the engine's client, default docker)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot5
from packageurl import PackageURL

# Run in the image by its own Python: the venv's distributions, dpkg's status file, os-release.
INVENTORY = """
import glob, importlib.metadata as md, json, sys
site = glob.glob("/opt/venv/lib/python*/site-packages")
dists = [
    {"name": d.metadata["Name"], "version": d.version,
     "license": d.metadata.get("License-Expression") or d.metadata.get("License") or ""}
    for d in md.distributions(path=site)
]
read = lambda path: open(path, encoding="utf-8").read()
json.dump({"python": dists, "dpkg": read("/var/lib/dpkg/status"), "os": read("/etc/os-release")}, sys.stdout)
"""


def inventory(docker: str, image: str) -> dict[str, Any]:
    result = subprocess.run(  # noqa: S603 (the engine's client, as the user configured it)
        [docker, "run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", INVENTORY],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"sbom: could not read the inventory of {image}: {result.stderr.strip()[-500:]}")
    return dict(json.loads(result.stdout))


def dpkg_installed(status: str) -> list[dict[str, str]]:
    """The paragraphs of dpkg's status file whose package is installed."""
    packages = []
    for paragraph in status.split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed"):
            packages.append(fields)
    return packages


def os_release(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: value.strip('"') for key, value in pairs}


def image_facts(docker: str, image: str) -> dict[str, Any]:
    result = subprocess.run(  # noqa: S603
        [docker, "image", "inspect", image], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        sys.exit(f"sbom: no local image {image}: build it first (make build-image)")
    return dict(json.loads(result.stdout)[0])


def build_bom(image: str, facts: dict[str, Any], found: dict[str, Any]) -> Bom:
    labels = (facts.get("Config") or {}).get("Labels") or facts.get("Labels") or {}
    image_id = str(facts["Id"])
    created = labels.get("org.opencontainers.image.created") or facts.get("Created", "")
    bom = Bom()
    # The same image gives the same document: serial number and time come from the image.
    bom.serial_number = uuid.uuid5(uuid.NAMESPACE_URL, f"agent-runner-sbom:{image_id}")
    try:
        bom.metadata.timestamp = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        bom.metadata.timestamp = datetime.now(UTC)
    root = Component(
        type=ComponentType.CONTAINER,
        name=image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image,
        version=labels.get("org.opencontainers.image.version", ""),
        bom_ref=image_id,
        properties=[
            Property(name="oci:image:id", value=image_id),
            Property(name="oci:image:architecture", value=str(facts.get("Architecture", ""))),
            Property(name="oci:image:revision", value=labels.get("org.opencontainers.image.revision", "")),
        ],
    )
    bom.metadata.component = root

    licenses = LicenseFactory()
    components: list[Component] = []
    for dist in sorted(found["python"], key=lambda d: d["name"].lower()):
        purl = PackageURL(type="pypi", name=dist["name"].lower().replace("_", "-"), version=dist["version"])
        license_text = dist["license"].strip()
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=dist["name"],
                version=dist["version"],
                purl=purl,
                bom_ref=purl.to_string(),
                # A short license field is an SPDX expression or a name; a long one is the whole text.
                licenses=[licenses.make_from_string(license_text)] if 0 < len(license_text) <= 80 else [],
            )
        )
    distro = os_release(found["os"])
    qualifier = f"{distro.get('ID', 'debian')}-{distro.get('VERSION_ID', '')}".rstrip("-")
    for package in sorted(dpkg_installed(found["dpkg"]), key=lambda p: p["Package"]):
        purl = PackageURL(
            type="deb",
            namespace=distro.get("ID", "debian"),
            name=package["Package"],
            version=package["Version"],
            qualifiers={"arch": package.get("Architecture", ""), "distro": qualifier},
        )
        source = package.get("Source", package["Package"]).split(" ")[0]
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=package["Package"],
                version=package["Version"],
                purl=purl,
                bom_ref=purl.to_string(),
                properties=[Property(name="debian:source", value=source)],
            )
        )
    for component in components:
        bom.components.add(component)
    bom.register_dependency(root, components)
    return bom


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1] if __doc__ else "usage: sbom.py IMAGE OUTPUT")
    image, output = sys.argv[1], Path(sys.argv[2])
    docker = os.environ.get("DOCKER", "docker")
    facts = image_facts(docker, image)
    found = inventory(docker, image)
    bom = build_bom(image, facts, found)
    output.write_text(JsonV1Dot5(bom).output_as_string(indent=2) + "\n")
    python = sum(1 for c in bom.components if c.purl and c.purl.type == "pypi")
    print(
        f"sbom: {output}: {python} Python distributions and {len(bom.components) - python} Debian packages of {image}"
    )


if __name__ == "__main__":
    main()
