#!/usr/bin/env bash
# `make build-multiarch` (build) and `make push-multiarch` (push): the image for every platform
# in PLATFORMS (default linux/amd64,linux/arm64) under one manifest list, with the release tags
# of push-image.sh. The builder is picked like build-image.sh picks it:
#   Docker with buildx:    one `buildx build --platform ... [--push]`, with an SBOM and provenance;
#   Docker without buildx: one BuildKit build per platform (IMAGE:VERSION-ARCH), pushed, then
#                          `docker manifest create` + `docker manifest push`;
#   Podman:                one `build --platform P --manifest IMAGE:VERSION` per platform (so each
#                          gets its own offline base), then `manifest push --all`, Docker format.
# After a push without buildx (buildx attaches its own), each platform's image gets its
# CycloneDX SBOM, as with push-image.sh (SBOM=false: not).
# Environment: those of build-image.sh and push-image.sh, and PLATFORMS.
# usage: scripts/multiarch.sh build|push
set -euo pipefail
cd "$(dirname "$0")/.."
me="${1:-}-multiarch"
# shellcheck source=scripts/publish-lib.sh
. scripts/publish-lib.sh

mode=${1:-}
[ "$mode" = build ] || [ "$mode" = push ] || die "usage: scripts/multiarch.sh build|push"
IFS=, read -r -a platforms <<<"${PLATFORMS:-linux/amd64,linux/arm64}"
read -r -a tags <<<"$(release_tags)"
registry=$(registry_of "$image")
engine=$(engine_name)
arch_of() { local a=${1#*/}; echo "${a%%/*}"; }

if [ "$engine" != podman ] && "$docker" buildx version >/dev/null 2>&1; then
  # One build for every platform. Without --push the result stays in the build cache: a
  # multi-platform image cannot be loaded into Docker's classic image store.
  revision=${REVISION:-$(git rev-parse --verify -q HEAD || echo unknown)}
  epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
  created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r "$epoch" +%Y-%m-%dT%H:%M:%SZ)
  cmd=("$docker" buildx build --platform "$(IFS=,; echo "${platforms[*]}")"
       --build-arg "BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}" --build-arg "VERSION=$version"
       --build-arg "REVISION=$revision" --build-arg "CREATED=$created")
  [ -z "${CA_BUNDLE:-}" ] || cmd+=(--secret "id=ca,src=$CA_BUNDLE")
  for tag in "${tags[@]}"; do cmd+=(--tag "$image:$tag"); done
  if [ "$mode" = push ]; then
    cmd+=(--push)
    # SBOM and provenance attestations: buildx 0.10 and later.
    help=$("$docker" buildx build --help 2>/dev/null || true)
    if [[ $help == *--sbom* ]]; then
      cmd+=(--sbom=true --provenance=true)
    else
      echo "$me: this buildx makes no SBOM or provenance (buildx 0.10+ does); pushing without them"
    fi
  fi
  echo "$me: ${cmd[*]} ."
  # The default "docker" builder of a classic image store cannot build several platforms at once.
  hint="if it says multi-platform is not supported by this driver: docker buildx create --use, then again"
  if [ "$mode" = push ]; then
    push_hint=$hint SOURCE_DATE_EPOCH=$epoch push_or_explain "${cmd[@]}" .
  else
    SOURCE_DATE_EPOCH=$epoch "${cmd[@]}" . || die "build failed (above); $hint"
  fi
  exit 0
fi

# One build per platform, each with its own base (an offline stand-in is one architecture).
if [ "$engine" = podman ]; then
  # A stale list of the same name would keep the instances of an earlier build.
  "$docker" manifest exists "$image:$version" 2>/dev/null && "$docker" manifest rm "$image:$version" >/dev/null
fi
for platform in "${platforms[@]}"; do
  extra=${EXTRA_BUILD_ARGS:-}
  [ "$engine" != podman ] || extra="$extra --manifest $image:$version"
  PLATFORM=$platform TAG=$version-$(arch_of "$platform") EXTRA_BUILD_ARGS=$extra scripts/build-image.sh
done
echo "$me: built $image:$version-{$(for p in "${platforms[@]}"; do arch_of "$p"; done | paste -sd, -)}"
[ "$mode" = push ] || exit 0

if [ "$engine" = podman ]; then
  for tag in "${tags[@]}"; do
    echo "$me: pushing the list $image:$tag (${platforms[*]})"
    push_or_explain "$docker" manifest push --all --format v2s2 "$image:$version" "docker://$image:$tag"
  done
else
  # ${a[@]+"${a[@]}"}: an empty array is "unbound" to macOS's bash 3.2 under set -u.
  insecure=()
  is_loopback "$registry" && insecure=(--insecure)
  arch_images=()
  for platform in "${platforms[@]}"; do
    arch_image=$image:$version-$(arch_of "$platform")
    arch_images+=("$arch_image")
    push_or_explain "$docker" push "$arch_image"
  done
  for tag in "${tags[@]}"; do
    echo "$me: pushing the list $image:$tag (${platforms[*]})"
    "$docker" manifest rm "$image:$tag" >/dev/null 2>&1 || true
    push_or_explain "$docker" manifest create ${insecure[@]+"${insecure[@]}"} "$image:$tag" ${arch_images[@]+"${arch_images[@]}"}
    push_or_explain "$docker" manifest push --purge ${insecure[@]+"${insecure[@]}"} "$image:$tag"
  done
fi
echo "$me: pushed $image:{$(IFS=,; echo "${tags[*]}")} for ${platforms[*]}"
attach_sboms
