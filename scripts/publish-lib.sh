# shellcheck shell=bash
# Helpers shared by docker-login.sh, push-image.sh and multiarch.sh (sourced, not run).
# Environment (the Makefile sets these): DOCKER, IMAGE, VERSION, REGISTRY, PUSH_LATEST.

docker=${DOCKER:-docker}
image=${IMAGE:-ghcr.io/stigmer/agent-runner}
version=${VERSION:-dev-local}

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
