# shellcheck shell=bash
# Helpers for commands that differ between GNU/Linux and macOS (BSD tools, bash 3.2); sourced.

# Run a command for at most $1 seconds: coreutils' timeout where it exists (Linux, or gtimeout
# from Homebrew), else an alarm set by perl (macOS ships perl, not timeout), else unbounded.
run_with_timeout() {
  local seconds=$1
  shift
  if command -v timeout >/dev/null 2>&1; then
    timeout "$seconds" "$@"
  elif command -v gtimeout >/dev/null 2>&1; then
    gtimeout "$seconds" "$@"
  elif command -v perl >/dev/null 2>&1; then
    perl -e 'alarm shift; exec @ARGV or exit 127' "$seconds" "$@"
  else
    "$@"
  fi
}

# Seconds since the epoch: with a fraction where date knows %N (GNU), whole seconds where it
# prints a literal N (BSD).
now_seconds() {
  local t
  t=$(date +%s.%N)
  case $t in
    *.[0-9]*) echo "$t" ;;
    *) echo "${t%%.*}" ;;
  esac
}

# This machine's architecture with Debian's names (amd64, arm64), without dpkg.
host_arch() {
  case $(uname -m) in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) uname -m ;;
  esac
}
