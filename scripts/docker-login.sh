#!/usr/bin/env bash
# `make docker-login`: log the engine in to REGISTRY (default ghcr.io) with a user and token
# from the environment: REGISTRY_USER and REGISTRY_TOKEN, else GITHUB_ACTOR and GITHUB_TOKEN.
# The token goes in on stdin (--password-stdin): never in a process argument, never printed.
set -euo pipefail
me="docker-login"
# shellcheck source=scripts/publish-lib.sh
. "$(dirname "$0")/publish-lib.sh"

registry=${REGISTRY:-ghcr.io}
user=${REGISTRY_USER:-${GITHUB_ACTOR:-}}
token=${REGISTRY_TOKEN:-${GITHUB_TOKEN:-}}
if [ -z "$user" ] || [ -z "$token" ]; then
  die "no credentials for $registry: set REGISTRY_USER and REGISTRY_TOKEN (or GITHUB_ACTOR and GITHUB_TOKEN)"
fi

echo "$me: logging in to $registry as $user with $(engine_name)"
# printf is a shell builtin: the token reaches the client through a pipe, not through argv.
if ! printf '%s\n' "$token" | "$docker" login --username "$user" --password-stdin "$registry" >/dev/null; then
  die "login to $registry as $user failed (the engine's message is above): check the user and token"
fi
echo "$me: logged in to $registry"
