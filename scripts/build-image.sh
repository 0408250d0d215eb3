#!/usr/bin/env bash
# Build the agent-runner image with BuildKit, using whichever builder the engine has:
# Docker with buildx, Docker's built-in BuildKit (DOCKER_BUILDKIT=1), or Podman.
#
# Environment (the Makefile sets these): DOCKER, IMAGE, VERSION, BASE_IMAGE, CA_BUNDLE,
# REVISION, SOURCE_DATE_EPOCH, EXTRA_BUILD_ARGS, and PLATFORM (one, e.g. linux/arm64;
# default the engine's own) and TAG (default VERSION). scripts/multiarch.sh runs this once
# per platform, tagging IMAGE:VERSION-ARCH.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/portable.sh
. scripts/portable.sh

docker=${DOCKER:-docker}
image=${IMAGE:-ghcr.io/stigmer/agent-runner}
version=${VERSION:-dev-local}
base=${BASE_IMAGE:-python:3.11-slim}
revision=${REVISION:-$(git rev-parse --verify -q HEAD || echo unknown)}
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
platform=${PLATFORM:-}
tag=${TAG:-$version}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r "$epoch" +%Y-%m-%dT%H:%M:%SZ)

engine_name=$("$docker" --version 2>/dev/null | awk '{print tolower($1)}')
if ! "$docker" info >/dev/null 2>&1; then
  echo "build-image: no container engine answers to '$docker info'; start Docker or Podman, or set CONTAINER_RUNTIME/DOCKER" >&2
  exit 1
fi

host_arch=$(host_arch)
arch=${platform#*/}
arch=${arch%%/*}
image_arch() { "$docker" image inspect --format '{{.Architecture}}' "$1" 2>/dev/null || true; }

# The base image: pull it, or build the offline stand-in where no registry can be reached.
if [ -n "$platform" ] && [ "$arch" != "$host_arch" ]; then
  # Another architecture. A local image name holds one architecture, so an offline stand-in
  # for it is kept as BASE_IMAGE-ARCH (python:3.11-slim-arm64); a reachable base is left to
  # the builder, which pulls the platform it needs.
  if [ "$(image_arch "$base-$arch")" = "$arch" ]; then
    base=$base-$arch
  elif [ "$(image_arch "$base")" = "$arch" ] || [ "$base" != "python:3.11-slim" ]; then
    :
  elif run_with_timeout 60 "$docker" manifest inspect "$base" >/dev/null 2>&1; then
    echo "build-image: base image $base for $arch: the builder pulls it"
  else
    echo "build-image: no registry reachable; building an offline $arch stand-in for $base as $base-$arch (make base-image BASE_ARCH=$arch)"
    DOCKER="$docker" scripts/base-image.sh "$base-$arch" "$arch"
    base=$base-$arch
  fi
elif ! "$docker" image inspect "$base" >/dev/null 2>&1; then
  echo "build-image: base image $base not present; pulling it"
  if ! run_with_timeout 60 "$docker" pull "$base" >/dev/null 2>&1; then
    if [ "$base" != "python:3.11-slim" ]; then
      echo "build-image: cannot pull $base; pull it yourself or leave BASE_IMAGE at python:3.11-slim" >&2
      exit 1
    fi
    echo "build-image: no registry reachable; building an offline stand-in for $base from Debian packages (make base-image)"
    DOCKER="$docker" scripts/base-image.sh "$base"
  fi
fi

args=(--tag "$image:$tag"
      --build-arg "BASE_IMAGE=$base"
      --build-arg "VERSION=$version"
      --build-arg "REVISION=$revision"
      --build-arg "CREATED=$created")
if [ -n "${CA_BUNDLE:-}" ]; then
  [ -s "$CA_BUNDLE" ] || { echo "build-image: CA_BUNDLE=$CA_BUNDLE is not a readable file" >&2; exit 1; }
  args+=(--secret "id=ca,src=$CA_BUNDLE")
fi
[ -z "$platform" ] || args+=(--platform "$platform")
# shellcheck disable=SC2206 # EXTRA_BUILD_ARGS is a list of words on purpose
args+=(${EXTRA_BUILD_ARGS:-})

if [ "$engine_name" = podman ]; then
  # Podman writes OCI images by default, and OCI has no HEALTHCHECK: keep the Docker format.
  # --timestamp sets every file's time and the image's dates to the last commit's: two builds
  # of a commit give the same image digest.
  cmd=("$docker" build --format docker --timestamp "$epoch")
elif "$docker" buildx version >/dev/null 2>&1; then
  cmd=("$docker" buildx build --load)
else
  export DOCKER_BUILDKIT=1
  cmd=("$docker" build)
fi

echo "build-image: building $image:$tag${platform:+ for $platform} with ${cmd[*]} (base $base, revision ${revision:0:12})"
start=$(now_seconds)
if ! SOURCE_DATE_EPOCH=$epoch "${cmd[@]}" "${args[@]}" . ; then
  echo "build-image: build failed. If the error mentions BuildKit, buildx or '--mount', this client has no BuildKit:" >&2
  echo "  install the buildx plugin, or point DOCKER at a client with built-in BuildKit (e.g. DOCKER=/usr/bin/docker)." >&2
  exit 1
fi
# Podman before 5.6 (Buildah 1.41) writes the build container's ID and hostname, and the IDs of
# intermediate images, into a Docker-format config, so two builds of a commit differ there and
# only there. Drop those fields, as later Buildah does under --timestamp: the image ID and the
# pushed digest are then the same for every build of a commit. (Not for a --manifest build:
# its list names the image as built.)
if [ "$engine_name" = podman ] && [[ " ${EXTRA_BUILD_ARGS:-} " != *" --manifest "* ]]; then
  if command -v skopeo >/dev/null; then
    built=$("$docker" image inspect --format '{{.Id}}' "$image:$tag")
    work=$(mktemp -d "${TMPDIR:-/tmp}/agent-runner.XXXXXX")
    skopeo copy --quiet "containers-storage:$image:$tag" "dir:$work"
    python3 - "$work" <<'PY'
import hashlib, json, pathlib, sys
work = pathlib.Path(sys.argv[1])
manifest = json.loads((work / "manifest.json").read_text())
old = manifest["config"]["digest"].split(":")[1]
config = json.loads((work / old).read_text())
for key in ("container", "parent"):
    config.pop(key, None)
for key in ("config", "container_config"):
    if isinstance(config.get(key), dict):
        config[key]["Hostname"] = ""
for step in config.get("history", []):
    if step.get("comment", "").startswith("FROM "):
        del step["comment"]
blob = json.dumps(config, separators=(",", ":")).encode()
new = hashlib.sha256(blob).hexdigest()
(work / old).unlink()
(work / new).write_bytes(blob)
manifest["config"].update(digest=f"sha256:{new}", size=len(blob))
(work / "manifest.json").write_text(json.dumps(manifest))
PY
    skopeo copy --quiet "dir:$work" "containers-storage:$image:$tag"
    rm -rf "$work"
    [ "$("$docker" image inspect --format '{{.Id}}' "$image:$tag")" = "$built" ] || "$docker" rmi "$built" >/dev/null 2>&1 || true
  else
    echo "build-image: skopeo not found: the image keeps the build container's ID (not reproducible)"
  fi
fi
size=$("$docker" image inspect --format '{{.Size}}' "$image:$tag")
elapsed=$(awk -v s="$start" -v e="$(now_seconds)" 'BEGIN { printf "%.1f", e - s }')
echo "build-image: built $image:$tag in ${elapsed}s, $((size / 1000000)) MB"
