# shellcheck shell=bash
# Helpers shared by docker-login.sh, push-image.sh, multiarch.sh and sign-image.sh (sourced, not run).
# Environment (the Makefile sets these): DOCKER, IMAGE, VERSION, REGISTRY, PUSH_LATEST, SBOM.

docker=${DOCKER:-docker}
image=${IMAGE:-ghcr.io/stigmer/agent-runner}
version=${VERSION:-dev-local}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "${me:-publish}: $*" >&2; exit 1; }

# docker or podman, from the client's own --version line.
engine_name() { "$docker" --version 2>/dev/null | awk '{print tolower($1)}'; }

# The registry host of an image reference (Docker's rule: a first component with a dot,
# a colon, or "localhost"), else Docker Hub.
registry_of() {
  local first=${1%%/*}
  if [ "$first" != "$1" ] && { [[ $first == *.* ]] || [[ $first == *:* ]] || [ "$first" = localhost ]; }; then
    echo "$first"
  else
    echo docker.io
  fi
}

# A registry on this machine's loopback: Docker's engine treats it as plain HTTP by default,
# and `docker manifest` needs --insecure to do the same.
is_loopback() { [[ $1 == 127.* ]] || [[ $1 == localhost* ]]; }

# The tags a release gets: VERSION, then vX.Y and vX for VERSION=vX.Y.Z (X.Y and X without
# the v), then latest when PUSH_LATEST is true. A pre-release (v1.2.3-rc.1) gets only its own tag.
release_tags() {
  local tags=("$version")
  if [[ $version =~ ^(v?)([0-9]+)\.([0-9]+)\.([0-9]+)$ ]]; then
    local v=${BASH_REMATCH[1]} major=${BASH_REMATCH[2]} minor=${BASH_REMATCH[3]}
    tags+=("$v$major.$minor" "$v$major")
  fi
  case ${PUSH_LATEST:-false} in
    1 | true | yes) tags+=(latest) ;;
    0 | false | no | "") ;;
    *) die "PUSH_LATEST=$PUSH_LATEST: use true or false" ;;
  esac
  echo "${tags[@]}"
}

# Run a push-like command; when the registry refuses it for want of credentials, say how to
# fix that in one line instead of leaving the user with the engine's message alone.
push_or_explain() {
  local out
  out=$(mktemp "${TMPDIR:-/tmp}/agent-runner-push.XXXXXX")
  # pipefail (set by the caller) makes the pipeline fail when the command does.
  if "$@" 2>&1 | tee "$out"; then rm -f "$out"; return 0; fi
  if grep -qiE 'no basic auth credentials|authentication required|unauthorized|denied|401' "$out"; then
    rm -f "$out"
    die "not logged in to $(registry_of "$image") (or the login was refused): run make docker-login REGISTRY=$(registry_of "$image")"
  fi
  rm -f "$out"
  die "push failed (the engine's message is above)${push_hint:+; $push_hint}"
}

# skopeo with the engine's own credentials: Docker's config.json, or Podman's auth file.
skopeo_auth() {
  local auth
  if [ "$(engine_name)" = podman ]; then
    auth=${REGISTRY_AUTH_FILE:-${XDG_RUNTIME_DIR:-/run/user/$(id -u)}/containers/auth.json}
  else
    auth=${DOCKER_CONFIG:-$HOME/.docker}/config.json
  fi
  [ -s "$auth" ] && echo "--authfile=$auth"
  return 0
}

# The registry's manifest of $1 (docker://...) into file $2, and its digest (sha256:...) on stdout.
manifest_digest() {
  local tls=()
  command -v skopeo >/dev/null || die "skopeo not found: apt-get install skopeo (or SBOM=false to push without an SBOM)"
  is_loopback "$(registry_of "$image")" && tls=(--tls-verify=false)
  # shellcheck disable=SC2046 # skopeo_auth prints one word or none
  skopeo inspect --raw $(skopeo_auth) ${tls[@]+"${tls[@]}"} "$1" >"$2" || die "cannot read the manifest of $1"
  echo "sha256:$(sha256sum "$2" | cut -d' ' -f1)"
}

# Attach the SBOM of the local image $1 to the pushed manifest $2 (sha256:...), under the tag
# sha256-HEX.sbom of the same repository (cosign's convention; `cosign download sbom` reads it):
# an OCI artifact of one layer, application/vnd.cyclonedx+json, written as an OCI layout and
# copied with skopeo.
attach_sbom() {
  local local_ref=$1 digest=$2 dir blob config manifest tls=()
  [ -x "$root/.venv/bin/python" ] || die "the SBOM needs the project's venv: run make install (or SBOM=false)"
  dir=$(mktemp -d "${TMPDIR:-/tmp}/agent-runner.XXXXXX")
  "$root/.venv/bin/python" "$root/scripts/sbom.py" "$local_ref" "$dir/sbom.json" || die "SBOM of $local_ref failed"
  mkdir -p "$dir/oci/blobs/sha256"
  blob=$(sha256sum "$dir/sbom.json" | cut -d' ' -f1)
  cp "$dir/sbom.json" "$dir/oci/blobs/sha256/$blob"
  printf '{}' >"$dir/config.json"
  config=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
  cp "$dir/config.json" "$dir/oci/blobs/sha256/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":2},"layers":[{"mediaType":"application/vnd.cyclonedx+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.title":"sbom.cdx.json"}}]}' \
    "$config" "$blob" "$(stat -c %s "$dir/sbom.json")" >"$dir/manifest.json"
  manifest=$(sha256sum "$dir/manifest.json" | cut -d' ' -f1)
  cp "$dir/manifest.json" "$dir/oci/blobs/sha256/$manifest"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s}]}' \
    "$manifest" "$(stat -c %s "$dir/manifest.json")" >"$dir/oci/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci/oci-layout"
  is_loopback "$(registry_of "$image")" && tls=(--dest-tls-verify=false)
  # shellcheck disable=SC2046 # skopeo_auth prints one word or none
  push_or_explain skopeo copy --quiet $(skopeo_auth) ${tls[@]+"${tls[@]}"} "oci:$dir/oci" "docker://$image:${digest/:/-}.sbom"
  rm -rf "$dir"
  echo "$me: attached the SBOM of $local_ref to $image@$digest as $image:${digest/:/-}.sbom"
}

# After a push of $image:$version: attach the SBOM of each image it names (one, or one per
# platform of a list, from the local IMAGE:VERSION-ARCH), unless SBOM=false.
attach_sboms() {
  case ${SBOM:-true} in
    1 | true | yes) ;;
    0 | false | no) echo "$me: SBOM=false: no SBOM attached"; return 0 ;;
    *) die "SBOM=$SBOM: use true or false" ;;
  esac
  local tmp digest entries
  tmp=$(mktemp "${TMPDIR:-/tmp}/agent-runner.XXXXXX")
  digest=$(manifest_digest "docker://$image:$version" "$tmp")
  entries=$(python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))
for e in m.get("manifests", []):
    print(e["digest"], e["platform"]["architecture"])' "$tmp")
  rm -f "$tmp"
  if [ -z "$entries" ]; then
    attach_sbom "$image:$version" "$digest"
  else
    while read -r digest arch; do attach_sbom "$image:$version-$arch" "$digest"; done <<<"$entries"
  fi
}
