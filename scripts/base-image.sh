#!/usr/bin/env bash
# Build a stand-in for python:3.11-slim from Debian packages, for machines that
# cannot pull from a container registry. Python is Debian's 3.11 (/usr/bin/python3.11),
# so build and runtime stages must both use this image (never mix it with the official one).
#
# usage: scripts/base-image.sh [TAG] [ARCH]   (needs root, debootstrap and a container engine)
#   ARCH is a Debian architecture (amd64, arm64), default this machine's. Another architecture
#   needs qemu-user-static with binfmt (F flag) to run its binaries in the chroot.
set -euo pipefail

# shellcheck source=scripts/portable.sh
. "$(dirname "$0")/portable.sh"

tag=${1:-python:3.11-slim}
host_arch=$(host_arch)
arch=${2:-$host_arch}
engine=${DOCKER:-docker}
suite=bookworm

# Use the Debian mirror this machine already uses; fall back to the public one.
mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
  | awk '{print $2}' | head -n 1 || true)
mirror=${mirror:-http://deb.debian.org/debian}

if ! command -v debootstrap >/dev/null; then
  echo "base-image: debootstrap is missing; install it with: apt-get install -y debootstrap" >&2
  exit 1
fi

rootfs=$(mktemp -d /tmp/agent-runner-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

case $arch in amd64) qemu="qemu-x86_64" ;; arm64) qemu="qemu-aarch64" ;; *) qemu="qemu-$arch" ;; esac
if [ "$arch" != "$host_arch" ] && ! grep -qs '^enabled' "/proc/sys/fs/binfmt_misc/$qemu"; then
  echo "base-image: cannot run $arch binaries here; install qemu-user-static and binfmt-support, then: update-binfmts --enable $qemu" >&2
  exit 1
fi

echo "base-image: bootstrapping Debian $suite for $arch from $mirror (about a minute; longer under emulation)"
debootstrap --variant=minbase --arch="$arch" \
  --include=python3.11,python3.11-venv,python3-pip,ca-certificates,netbase,tzdata \
  "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"

security=${mirror%/debian}/debian-security
cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
SOURCES

# Keep the image as lean as the official slim one: no docs, man pages or locales.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKG
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/90slim"

cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
chroot "$rootfs" /bin/sh -eu <<'CHROOT'
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get upgrade -y -qq >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log /tmp/* /root/.cache
rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/*
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# Debian marks its Python as externally managed; the image is a Python base, not a distro.
rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED
for name in python python3; do ln -sf /usr/bin/python3.11 "/usr/local/bin/$name"; done
for name in pip pip3; do ln -sf /usr/bin/pip3 "/usr/local/bin/$name"; done
find / -xdev -name __pycache__ -type d -prune -exec rm -rf {} +
CHROOT
: >"$rootfs/etc/resolv.conf"

echo "base-image: importing as $tag ($arch)"
changes=(--change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin'
         --change 'ENV LANG=C.UTF-8'
         --change 'CMD ["python3"]')
if [ "$("$engine" --version 2>/dev/null | awk '{print tolower($1)}')" = podman ]; then
  tar --numeric-owner -C "$rootfs" -c . | "$engine" import --arch "$arch" "${changes[@]}" - "$tag" >/dev/null
elif [ "$arch" = "$host_arch" ]; then
  tar --numeric-owner -C "$rootfs" -c . | "$engine" import "${changes[@]}" - "$tag" >/dev/null
else
  # `docker import` labels every image with the engine's own architecture; a BuildKit build
  # FROM scratch with --platform labels it right.
  context=$rootfs.context
  mkdir "$context"
  trap 'rm -rf "$rootfs" "$context"' EXIT
  tar --numeric-owner -C "$rootfs" -cf "$context/rootfs.tar" .
  cat >"$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
CMD ["python3"]
DOCKERFILE
  if "$engine" buildx version >/dev/null 2>&1; then
    "$engine" buildx build --load --platform "linux/$arch" --tag "$tag" "$context" >/dev/null
  else
    DOCKER_BUILDKIT=1 "$engine" build --quiet --platform "linux/$arch" --tag "$tag" "$context" >/dev/null
  fi
fi
"$engine" image inspect --format 'base-image: {{.RepoTags}} {{.Architecture}} {{.Size}} bytes' "$tag"
