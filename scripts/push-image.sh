#!/usr/bin/env bash
# `make push-image`: push the local image IMAGE:VERSION (built by `make build-image`) with its
# release tags: VERSION; vX.Y and vX too for VERSION=vX.Y.Z; latest only with PUSH_LATEST=true.
# Then attaches the image's CycloneDX SBOM to the pushed digest (SBOM=false: not).
set -euo pipefail
me="push-image"
# shellcheck source=scripts/publish-lib.sh
. "$(dirname "$0")/publish-lib.sh"

if ! "$docker" image inspect "$image:$version" >/dev/null 2>&1; then
  die "no local image $image:$version: run make build-image VERSION=$version first"
fi
read -r -a tags <<<"$(release_tags)"
push=("$docker" push)
# Podman would otherwise be free to convert to OCI, which has no HEALTHCHECK.
[ "$(engine_name)" = podman ] && push+=(--format v2s2)

echo "$me: pushing $image as ${tags[*]} to $(registry_of "$image")"
for tag in "${tags[@]}"; do
  [ "$tag" = "$version" ] || "$docker" tag "$image:$version" "$image:$tag"
  push_or_explain "${push[@]}" "$image:$tag"
done
echo "$me: pushed $image:{$(IFS=,; echo "${tags[*]}")}"
attach_sboms
