#!/usr/bin/env bash
# `make scan`: the Debian packages of IMAGE:VERSION that have a pending security update.
# A throwaway container of the image, as root: apt reads only the Debian security suite
# (SECURITY_MIRROR, suite CODENAME-security from the image's os-release) into a list directory
# of its own and lists every installed package whose version there is newer. Nothing is installed
# and the image is not changed. Exit 1 when an update is pending, 0 when none is, 2 when the
# security suite cannot be read.
# Environment: DOCKER, IMAGE, VERSION, SECURITY_MIRROR, CA_BUNDLE (for an https mirror behind
# a TLS-intercepting proxy: mounted read-only as the container's CA bundle).
set -euo pipefail
me="scan"
# shellcheck source=scripts/publish-lib.sh
. "$(dirname "$0")/publish-lib.sh"

ref=$image:$version
"$docker" image inspect "$ref" >/dev/null 2>&1 || die "no local image $ref: run make build-image VERSION=$version first"
mirror=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
args=(run --rm --user 0 --entrypoint sh --env "MIRROR=$mirror")
[ -z "${CA_BUNDLE:-}" ] || args+=(--volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")

# In the container: prints "SUITE" first, then "PACKAGE INSTALLED FIXED" per pending update.
# shellcheck disable=SC2016 # expanded by the container's shell
inside='set -e
. /etc/os-release
suite=$VERSION_CODENAME-security
mkdir -p /tmp/scan/lists/partial
echo "deb $MIRROR $suite main" >/tmp/scan/security.list
opts="-o Dir::Etc::SourceList=/tmp/scan/security.list -o Dir::Etc::SourceParts=/nonexistent -o Dir::State::Lists=/tmp/scan/lists"
apt-get $opts -qq update >/tmp/scan/update.log 2>&1 || { cat /tmp/scan/update.log >&2; exit 3; }
grep -qs "^Package:" /tmp/scan/lists/*_Packages || { echo "no package index for $suite at $MIRROR" >&2; exit 3; }
echo "$suite"
apt $opts list --upgradable 2>/dev/null | sed -n "s|^\([^/]*\)/[^ ]* \([^ ]*\) .*\[upgradable from: \([^]]*\)\]|\1 \3 \2|p"'

echo "$me: Debian security updates pending in $ref (checked against $mirror)"
set +e
out=$("$docker" "${args[@]}" "$ref" -c "$inside")
rc=$?
set -e
[ "$rc" -eq 0 ] || { echo "$me: cannot read the Debian security suite at $mirror (SECURITY_MIRROR); apt's message is above" >&2; exit 2; }
suite=$(head -n 1 <<<"$out")
pending=$(tail -n +2 <<<"$out")
if [ -z "$pending" ]; then
  echo "$me: none: no Debian package of $ref has a newer version in $suite"
  exit 0
fi
echo "$me: $(wc -l <<<"$pending") package(s) with a pending security update ($suite): package, installed, fixed in"
awk '{ printf "  %-32s %-28s %s\n", $1, $2, $3 }' <<<"$pending"
echo "$me: rebuild on an updated base image (docker pull ${BASE_IMAGE:-python:3.11-slim}, or make base-image offline), then scan again" >&2
exit 1
