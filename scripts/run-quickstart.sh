#!/usr/bin/env bash
# `make run`: the quickstart demo. Starts a demo upstream (fake-upstream) on 127.0.0.1:18081 and
# Remora on config/examples/quickstart.yaml (listener 127.0.0.1:15001, admin 127.0.0.1:9901),
# prints what to curl, then stays in the foreground until Remora exits. Ctrl-C or SIGTERM stops
# both (Remora drains first).
#
# Environment overrides: BUILD_DIR (default build), REMORA_CONFIG, UPSTREAM_PORT, LISTEN_PORT,
# ADMIN_PORT (the last two must match the config).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${BUILD_DIR:-build}"
REMORA_CONFIG="${REMORA_CONFIG:-config/examples/quickstart.yaml}"
UPSTREAM_PORT="${UPSTREAM_PORT:-18081}"
LISTEN_PORT="${LISTEN_PORT:-15001}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
REMORA_BIN="$BUILD_DIR/remora"
UPSTREAM_BIN="$BUILD_DIR/fake-upstream"
LOG_DIR="$BUILD_DIR/quickstart"
UPSTREAM_LOG="$LOG_DIR/fake-upstream.log"

say() { printf 'run-quickstart: %s\n' "$*"; }
die() { printf 'run-quickstart: error: %s\n' "$*" >&2; exit 1; }

for bin in "$REMORA_BIN" "$UPSTREAM_BIN"; do
  [ -x "$bin" ] || die "$bin is not built; run 'make build' (or set BUILD_DIR)"
done
[ -r "$REMORA_CONFIG" ] || die "config $REMORA_CONFIG not found"
command -v curl >/dev/null 2>&1 || die "curl is needed (scripts/install-deps.sh installs it)"

# Something accepting connections on the port means it is taken.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for spec in "$UPSTREAM_PORT:demo upstream" "$LISTEN_PORT:Remora listener" "$ADMIN_PORT:Remora admin API"; do
  port="${spec%%:*}"
  what="${spec#*:}"
  if port_in_use "$port"; then
    die "port $port ($what) is already in use on 127.0.0.1; stop whatever listens there" \
        "(e.g. an earlier 'make run': ss -ltnp | grep :$port) and try again"
  fi
done

UPSTREAM_PID=""
REMORA_PID=""
stopping=0

stop_all() {
  [ "$stopping" = 1 ] && return
  stopping=1
  trap - INT TERM
  if [ -n "$REMORA_PID" ] && kill -0 "$REMORA_PID" 2>/dev/null; then
    say "stopping remora (draining in-flight requests)"
    kill -TERM "$REMORA_PID" 2>/dev/null || true
    wait "$REMORA_PID" 2>/dev/null || true
  fi
  if [ -n "$UPSTREAM_PID" ] && kill -0 "$UPSTREAM_PID" 2>/dev/null; then
    kill -TERM "$UPSTREAM_PID" 2>/dev/null || true
    wait "$UPSTREAM_PID" 2>/dev/null || true
  fi
}
on_signal() {
  echo
  stop_all
  say "stopped"
  exit 0
}
trap on_signal INT TERM
trap stop_all EXIT

mkdir -p "$LOG_DIR"
: >"$UPSTREAM_LOG"
"$UPSTREAM_BIN" --port "$UPSTREAM_PORT" --name demo >"$UPSTREAM_LOG" 2>&1 &
UPSTREAM_PID=$!
for _ in $(seq 1 100); do
  grep -q '^listening on ' "$UPSTREAM_LOG" && break
  kill -0 "$UPSTREAM_PID" 2>/dev/null || break
  sleep 0.05
done
if ! grep -q '^listening on ' "$UPSTREAM_LOG"; then
  cat "$UPSTREAM_LOG" >&2
  die "the demo upstream did not start on 127.0.0.1:$UPSTREAM_PORT (log: $UPSTREAM_LOG)"
fi
say "demo upstream $(head -n1 "$UPSTREAM_LOG") (log: $UPSTREAM_LOG)"

"$REMORA_BIN" --config "$REMORA_CONFIG" &
REMORA_PID=$!
ready=0
for _ in $(seq 1 200); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/ready" 2>/dev/null; then
    ready=1
    break
  fi
  kill -0 "$REMORA_PID" 2>/dev/null || break
  sleep 0.05
done
if [ "$ready" != 1 ]; then
  if ! kill -0 "$REMORA_PID" 2>/dev/null; then
    wait "$REMORA_PID" && code=0 || code=$?
    REMORA_PID=""
    die "remora exited with code $code before becoming ready (see its output above)"
  fi
  die "remora did not answer http://127.0.0.1:$ADMIN_PORT/ready within 10s"
fi

cat <<EOF

  Remora is running: 127.0.0.1:$LISTEN_PORT -> demo upstream 127.0.0.1:$UPSTREAM_PORT
  Try:
    curl -i http://127.0.0.1:$LISTEN_PORT/hello
    curl -i http://127.0.0.1:$LISTEN_PORT/hello -H 'x-fake-status: 503'
    curl -s http://127.0.0.1:$ADMIN_PORT/stats
    curl -s http://127.0.0.1:$ADMIN_PORT/clusters
    curl -s http://127.0.0.1:$ADMIN_PORT/config
  Ctrl-C stops Remora and the demo upstream.

EOF

# Wait in the foreground; a trapped signal interrupts `wait` and runs on_signal.
code=0
wait "$REMORA_PID" || code=$?
REMORA_PID=""
say "remora exited with code $code"
stop_all
exit "$code"
