#!/usr/bin/env bash
# `make mesh-demo`: a whole service mesh on one machine.
#
#   remora-control                      the control plane (registry, policies, discovery)
#   frontend-1, orders-1, orders-2,     four instances of three services; each is a demo app
#   inventory-1                         (fake-upstream) with its own Remora sidecar, registered
#                                       and heartbeating through deploy/container/remora-register
#   traffic                             a curl loop playing the frontend app: it calls orders and
#                                       inventory through the frontend's sidecar
#
# It prints the admin URLs and things to try, then a status line every 2 s (traffic, retries,
# fallbacks, the breakers of the orders endpoints as the frontend's sidecar sees them, the control
# plane's version and how many proxies ACKed it). Ctrl-C stops everything, in order: traffic,
# registrations (instances deregister), sidecars (drain), apps, control plane.
#
# Options:
#   --duration D     stop by itself D after the traffic started (e.g. 30s, 2m); default: run
#                    until Ctrl-C
#   --check          non-interactive self-test (tests/deploy runs it): start, wait until every
#                    proxy ACKed, send traffic, make orders-1 fail and require a retry and an
#                    open breaker, push deploy/local/orders-policy.yaml and require every proxy
#                    to ACK it, stop, and require every process to exit cleanly; exit 0 only if
#                    all held. Traffic runs for the duration (default 5s).
#   --base-port N    ports N (control plane) and N+10 .. N+43 (instances); default 18000
#   --work-dir DIR   configs, state and logs; default $BUILD_DIR/mesh-demo (wiped at start)
# Environment: BUILD_DIR (default build): where remora, remora-control, remoractl, fake-upstream are.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${BUILD_DIR:-build}"
BUILD_DIR="$(cd "$BUILD_DIR" 2>/dev/null && pwd || echo "$BUILD_DIR")"

say() { printf 'mesh-demo: %s\n' "$*"; }
die() { printf 'mesh-demo: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

DURATION=""
CHECK=0
BASE_PORT=18000
WORK_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) [ $# -ge 2 ] || usage; DURATION="$2"; shift 2 ;;
    --duration=*) DURATION="${1#*=}"; shift ;;
    --check) CHECK=1; shift ;;
    --base-port) [ $# -ge 2 ] || usage; BASE_PORT="$2"; shift 2 ;;
    --base-port=*) BASE_PORT="${1#*=}"; shift ;;
    --work-dir) [ $# -ge 2 ] || usage; WORK_DIR="$2"; shift 2 ;;
    --work-dir=*) WORK_DIR="${1#*=}"; shift ;;
    -h | --help) usage ;;
    *) printf 'mesh-demo: unknown option "%s"\n' "$1" >&2; usage ;;
  esac
done

# Durations as whole seconds: 30s, 2m, or a bare number of seconds.
to_seconds() {
  case "$1" in
    *[0-9]s) echo "${1%s}" ;;
    *[0-9]m) echo $((${1%m} * 60)) ;;
    *) echo "$1" ;;
  esac
}
if [ "$CHECK" = 1 ] && [ -z "$DURATION" ]; then DURATION=5s; fi
DURATION_S=""
if [ -n "$DURATION" ]; then
  DURATION_S="$(to_seconds "$DURATION")"
  case "$DURATION_S" in '' | *[!0-9]*) die "--duration must look like 30s or 2m, got \"$DURATION\"" ;; esac
fi
case "$BASE_PORT" in '' | *[!0-9]*) die "--base-port must be a number, got \"$BASE_PORT\"" ;; esac
[ "$BASE_PORT" -ge 1024 ] && [ "$BASE_PORT" -le 65490 ] || die "--base-port must be 1024..65490"

REMORA="$BUILD_DIR/remora"
CONTROL="$BUILD_DIR/remora-control"
REMORACTL="$BUILD_DIR/remoractl"
APP="$BUILD_DIR/fake-upstream"
REGISTER="$ROOT/deploy/container/remora-register"
for bin in "$REMORA" "$CONTROL" "$REMORACTL" "$APP"; do
  [ -x "$bin" ] || die "$bin is not built; run 'make build' (or set BUILD_DIR)"
done
for tool in curl jq setsid; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (scripts/install-deps.sh installs it)"
done

WORK_DIR="${WORK_DIR:-$BUILD_DIR/mesh-demo}"
mkdir -p "$WORK_DIR"
WORK_DIR="$(cd "$WORK_DIR" && pwd)"
# A fresh state every run: instances of an earlier run would linger until their TTL ran out.
rm -rf "${WORK_DIR:?}"/{logs,*.yaml,*.state,*.state.tmp,traffic.log}
mkdir -p "$WORK_DIR/logs"

CP_PORT=$BASE_PORT
CP="127.0.0.1:$CP_PORT"
export REMORA_CONTROL_SERVER="$CP"   # remoractl and remora-register read it
TTL=6s

# name service; instance k (1-based) uses ports BASE+10k (app), +1 (sidecar inbound),
# +2 (sidecar outbound), +3 (sidecar admin).
INSTANCES=(frontend-1 orders-1 orders-2 inventory-1)
service_of() { echo "${1%-*}"; }
port_of() { # instance, offset
  local i
  for i in "${!INSTANCES[@]}"; do
    if [ "${INSTANCES[$i]}" = "$1" ]; then echo $((BASE_PORT + 10 * (i + 1) + $2)); return; fi
  done
  die "no instance $1"
}
app_port() { port_of "$1" 0; }
in_port() { port_of "$1" 1; }
out_port() { port_of "$1" 2; }
admin_port() { port_of "$1" 3; }

# Something accepting connections on the port means it is taken.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports=("$CP_PORT")
for inst in "${INSTANCES[@]}"; do
  for off in 0 1 2 3; do ports+=("$(port_of "$inst" $off)"); done
done
for p in "${ports[@]}"; do
  if port_in_use "$p"; then
    die "port $p is already in use on 127.0.0.1 (an earlier mesh-demo? ss -ltnp | grep :$p);" \
        "stop it or pick other ports with --base-port"
  fi
done

# ---------------------------------------------------------------------------------------------
# Configs

cat >"$WORK_DIR/control.yaml" <<EOF
# remora-control for the mesh demo (written by scripts/mesh-demo.sh)
listen: $CP
state_file: $WORK_DIR/remora-control.state
default_ttl: $TTL                   # remora-register heartbeats every 2s
discovery: { debounce: 50ms, max_delay: 500ms }
clusters:                           # one policy per service: the sidecars' routes name them all
  - name: frontend
    lb_policy: round_robin
  - name: orders
    lb_policy: round_robin
    connect_timeout: 250ms
    circuit_breaker: { consecutive_failures: 3, open_duration: 10s, max_ejection_percent: 50 }
  - name: inventory
    lb_policy: round_robin
    connect_timeout: 250ms
    circuit_breaker: { consecutive_failures: 3, open_duration: 10s }
EOF

write_sidecar_config() { # instance
  local inst="$1"
  local retry="retry: { attempts: 3, on: [connect-failure, reset, gateway-error], per_try_timeout: 1s, backoff: { base: 10ms, max: 100ms } }"
  cat >"$WORK_DIR/$inst.yaml" <<EOF
# Remora sidecar of $inst (written by scripts/mesh-demo.sh)
node_id: $inst
workers: 1
drain_timeout: 3s
admin: { address: 127.0.0.1:$(admin_port "$inst") }
control_plane: { address: $CP }
listeners:
  - name: inbound                   # other sidecars -> this instance's app
    address: 127.0.0.1:$(in_port "$inst")
    routes:
      - match: { prefix: / }
        cluster: local
        timeout: 5s
  - name: outbound                  # this instance's app -> other services
    address: 127.0.0.1:$(out_port "$inst")
    routes:
      - name: to-orders
        match: { prefix: /orders/ }
        cluster: orders             # the control plane's cluster: registered orders sidecars
        timeout: 3s
        $retry
      - name: to-inventory
        match: { prefix: /inventory/ }
        cluster: inventory
        timeout: 3s
        $retry
      - name: to-frontend
        match: { prefix: /frontend/ }
        cluster: frontend
        timeout: 3s
clusters:
  - name: local                     # the app next to this sidecar
    connect_timeout: 250ms
    endpoints: [{ address: 127.0.0.1:$(app_port "$inst") }]
  # Filled in by the control plane (its policy and the registered instances replace these).
  - name: orders
  - name: inventory
  - name: frontend
EOF
}
for inst in "${INSTANCES[@]}"; do write_sidecar_config "$inst"; done

"$CONTROL" --validate "$WORK_DIR/control.yaml" >/dev/null || die "generated $WORK_DIR/control.yaml is invalid"
for inst in "${INSTANCES[@]}"; do
  "$REMORA" --validate "$WORK_DIR/$inst.yaml" >/dev/null || die "generated $WORK_DIR/$inst.yaml is invalid"
done

# ---------------------------------------------------------------------------------------------
# Processes. Each runs in its own session (setsid), so Ctrl-C reaches only this script, which
# then stops them in order.

CP_PID=""
declare -A APP_PID=() SIDECAR_PID=() REG_PID=()
TRAFFIC_PID=""
stopping=0

stop_pid() { # pid
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || true
}
# Waits for a child; a non-zero exit of a sidecar, app or the control plane (a crash, or a
# sanitizer report in an ASan build) is remembered for --check.
declare -A UNCLEAN=()
wait_pid() { # pid name
  [ -n "$1" ] || return 0
  local code=0
  wait "$1" 2>/dev/null || code=$?
  if [ "$code" != 0 ] && [ -n "${2:-}" ]; then UNCLEAN[$2]=$code; fi
  return 0
}

stop_all() {
  [ "$stopping" = 1 ] && return
  stopping=1
  trap - INT TERM
  [ "$CHECK" = 1 ] || say "stopping: traffic, registrations, sidecars (draining), apps, control plane"
  stop_pid "$TRAFFIC_PID"; wait_pid "$TRAFFIC_PID"
  for inst in "${!REG_PID[@]}"; do stop_pid "${REG_PID[$inst]}"; done
  for inst in "${!REG_PID[@]}"; do wait_pid "${REG_PID[$inst]}" "$inst registration"; done
  for inst in "${!SIDECAR_PID[@]}"; do stop_pid "${SIDECAR_PID[$inst]}"; done
  for inst in "${!SIDECAR_PID[@]}"; do wait_pid "${SIDECAR_PID[$inst]}" "$inst sidecar"; done
  for inst in "${!APP_PID[@]}"; do stop_pid "${APP_PID[$inst]}"; done
  for inst in "${!APP_PID[@]}"; do wait_pid "${APP_PID[$inst]}" "$inst app"; done
  stop_pid "$CP_PID"; wait_pid "$CP_PID" "remora-control"
  say "stopped; logs and configs are in $WORK_DIR"
}
on_signal() {
  echo
  stop_all
  exit 0
}
trap on_signal INT TERM
trap stop_all EXIT

# Polls `cmd` every 100 ms until it succeeds or `seconds` pass.
wait_until() { # seconds cmd...
  local deadline=$((SECONDS + $1))
  shift
  while ! "$@" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
alive() { kill -0 "$1" 2>/dev/null; }
http_ok() { curl -fsS -o /dev/null --max-time 1 "$1"; }

setsid "$CONTROL" --config "$WORK_DIR/control.yaml" >"$WORK_DIR/logs/remora-control.log" 2>&1 &
CP_PID=$!
wait_until 10 http_ok "http://$CP/healthz" ||
  { tail -n 20 "$WORK_DIR/logs/remora-control.log" >&2; die "remora-control did not come up on $CP"; }

for inst in "${INSTANCES[@]}"; do
  setsid "$APP" --port "$(app_port "$inst")" --name "$inst" --quiet \
    >"$WORK_DIR/logs/$inst-app.log" 2>&1 &
  APP_PID[$inst]=$!
done
for inst in "${INSTANCES[@]}"; do
  wait_until 10 grep -q '^listening on ' "$WORK_DIR/logs/$inst-app.log" ||
    { cat "$WORK_DIR/logs/$inst-app.log" >&2; die "the $inst app did not start on port $(app_port "$inst")"; }
done

for inst in "${INSTANCES[@]}"; do
  setsid "$REMORA" --config "$WORK_DIR/$inst.yaml" >"$WORK_DIR/logs/$inst-sidecar.log" 2>&1 &
  SIDECAR_PID[$inst]=$!
done
for inst in "${INSTANCES[@]}"; do
  # /ready turns 200 once the control plane's first snapshot is applied and ACKed.
  if ! wait_until 15 http_ok "http://127.0.0.1:$(admin_port "$inst")/ready"; then
    tail -n 20 "$WORK_DIR/logs/$inst-sidecar.log" >&2
    die "the $inst sidecar is not ready (log: $WORK_DIR/logs/$inst-sidecar.log)"
  fi
done

for inst in "${INSTANCES[@]}"; do
  REMORA_SERVICE="$(service_of "$inst")" REMORA_INSTANCE="$inst" \
    REMORA_ADDRESS="127.0.0.1:$(in_port "$inst")" REMORA_TTL="$TTL" REMORACTL="$REMORACTL" \
    REMORA_WAIT_FOR_READY="127.0.0.1:$(admin_port "$inst")" \
    setsid "$REGISTER" >"$WORK_DIR/logs/$inst-register.log" 2>&1 &
  REG_PID[$inst]=$!
done

FRONT_ADMIN="http://127.0.0.1:$(admin_port frontend-1)"
FRONT_OUT="http://127.0.0.1:$(out_port frontend-1)"
FRONT_IN="http://127.0.0.1:$(in_port frontend-1)"

endpoints_of() { # cluster -> number of endpoints in the frontend sidecar's view
  curl -fsS --max-time 1 "$FRONT_ADMIN/clusters" |
    jq -r --arg c "$1" '[.clusters[] | select(.name == $c) | .endpoints[]] | length'
}
mesh_registered() {
  [ "$(endpoints_of orders)" = 2 ] && [ "$(endpoints_of inventory)" = 1 ] &&
    [ "$(endpoints_of frontend)" = 1 ]
}
wait_until 15 mesh_registered ||
  die "the instances did not show up as endpoints (logs: $WORK_DIR/logs/*-register.log)"

cp_version() { curl -fsS --max-time 1 "http://$CP/healthz" | jq -r .version; }
# How many proxies are connected and ACKed version >= $1.
acked_count() {
  curl -fsS --max-time 1 "http://$CP/v1/nodes" |
    jq --argjson v "$1" '[.[] | select(.connected and .acked_version != null and
                                         (.acked_version | tonumber) >= $v)] | length'
}
all_acked() { [ "$(acked_count "$1")" = "${#INSTANCES[@]}" ]; }

# ---------------------------------------------------------------------------------------------
# Traffic: the frontend app's calls, through its sidecar's outbound listener, plus users hitting
# the frontend itself through its inbound listener. One line per request in traffic.log:
# status|x-remora-fallback|x-upstream-name (the app that answered)|url.

TRAFFIC_LOG="$WORK_DIR/traffic.log"
: >"$TRAFFIC_LOG"
traffic_loop() {
  local fmt='%{http_code}|%header{x-remora-fallback}|%header{x-upstream-name}|%{url_effective}\n'
  local curl_pid=""
  trap '[ -n "$curl_pid" ] && kill "$curl_pid" 2>/dev/null; exit 0' TERM
  while :; do
    # In the background and waited for, so that SIGTERM ends a slow request at once.
    curl -s --max-time 5 -w "$fmt" \
      -o /dev/null "$FRONT_OUT/orders/list" \
      -o /dev/null "$FRONT_OUT/inventory/items" \
      -o /dev/null "$FRONT_OUT/orders/42" \
      -o /dev/null "$FRONT_IN/" >>"$TRAFFIC_LOG" &
    curl_pid=$!
    wait "$curl_pid" || true
    curl_pid=""
    sleep 0.1
  done
}
traffic_loop &
TRAFFIC_PID=$!
traffic_started=$SECONDS

traffic_lines=0
# Summarizes lines $1+1 .. $2 of traffic.log.
traffic_summary() { # from to
  tail -n "+$(($1 + 1))" "$TRAFFIC_LOG" | head -n "$(($2 - $1))" |
    awk -F'|' '
      {
        n++; codes[$1]++; if ($3 != "") by[$3]++
        target = $4 ~ /\/orders\// ? "orders" : ($4 ~ /\/inventory\// ? "inventory" : "frontend")
        if ($1 !~ /^2/) bad[$1 " " target]++
        if ($2 != "") fb[$2 " (" target ")"]++
      }
      END {
        s = sprintf("%d req", n); sep = ": "
        for (c in codes) { s = s sep c " x" codes[c]; sep = ", " }
        if (length(bad) > 0) {
          s = s " ["; sep = ""
          for (b in bad) { split(b, p, " "); s = s sep p[2] " " p[1] " x" bad[b]; sep = ", " }
          s = s "]"
        }
        f = ""; sep = " "; for (r in fb) { f = f sep r " x" fb[r]; sep = ", " }
        if (f != "") s = s " | fallback" f
        a = ""; sep = " "
        for (u in by) if (u ~ /^orders/) { a = a sep u " x" by[u]; sep = ", " }
        if (a != "") s = s " | orders answered by" a
        print s
      }'
}
breakers() { # the orders endpoints' breakers in the frontend sidecar
  curl -fsS --max-time 1 "$FRONT_ADMIN/clusters" |
    jq -r '[.clusters[] | select(.name == "orders") | .endpoints[] |
            "\(.address | split(":") | .[1]) \(.circuit_breaker)"] | join(", ")'
}
retries_seen=0
status_line() {
  local v total summary retries
  total=$(wc -l <"$TRAFFIC_LOG")
  summary="$(traffic_summary "$traffic_lines" "$total")"
  traffic_lines=$total
  retries=$(stat_value "$FRONT_ADMIN" 'remora_upstream_retries_total{cluster="orders"}')
  v="$(cp_version)"
  printf '%s  %s | retries +%s | orders breakers: %s | control v%s, %s/%s proxies ACKed\n' \
    "$(date +%H:%M:%S)" "$summary" "$((retries - retries_seen))" "$(breakers)" "$v" \
    "$(acked_count "$v")" "${#INSTANCES[@]}"
  retries_seen=$retries
}

stat_value() { # admin-url metric-with-labels -> value (0 if absent)
  curl -fsS --max-time 1 "$1/stats" | awk -v m="$2" '$1 == m { v = $2 } END { print v + 0 }'
}

# ---------------------------------------------------------------------------------------------
# --check: the self-test.

if [ "$CHECK" = 1 ]; then
  failures=()
  check() { # description, command...
    local what="$1"
    shift
    if "$@"; then say "check ok: $what"; else say "check FAILED: $what"; failures+=("$what"); fi
  }
  v0="$(cp_version)"
  check "all ${#INSTANCES[@]} proxies ACKed version $v0" wait_until 10 all_acked "$v0"
  half=$(((DURATION_S + 1) / 2))
  ok_traffic() { grep -q '^200|' "$TRAFFIC_LOG"; }
  check "traffic flows (200s through the frontend's sidecar)" wait_until "$half" ok_traffic

  # orders-1 answers 503 to everything: the frontend's sidecar retries on orders-2 and opens
  # orders-1's breaker after 3 consecutive failures.
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$(app_port orders-1)/__control" -d 'fail_ratio=1' ||
    failures+=("make orders-1 fail through its /__control")
  retried() { [ "$(stat_value "$FRONT_ADMIN" 'remora_upstream_retries_total{cluster="orders"}')" -ge 1 ]; }
  opened() { [ "$(stat_value "$FRONT_ADMIN" 'remora_circuit_breaker_opened_total{cluster="orders"}')" -ge 1 ]; }
  check "orders-1 failing: the frontend's sidecar retried on the other endpoint" wait_until "$half" retried
  check "orders-1 failing: its breaker opened in the frontend's sidecar" wait_until "$half" opened
  lines_at_failure=$(wc -l <"$TRAFFIC_LOG")
  later_ok() { tail -n "+$((lines_at_failure + 1))" "$TRAFFIC_LOG" | grep -q '^200|.*/orders/'; }
  check "orders requests still succeed while orders-1 fails" wait_until 5 later_ok

  # A policy push reaches every proxy.
  if "$REMORACTL" policy set orders "$ROOT/deploy/local/orders-policy.yaml" >/dev/null; then
    v1="$(cp_version)"
    check "all ${#INSTANCES[@]} proxies ACKed the pushed orders policy (version $v1)" \
      wait_until 10 all_acked "$v1"
  else
    failures+=("remoractl policy set orders deploy/local/orders-policy.yaml")
  fi
  # Traffic runs for the whole duration (counted from its start), so the summary covers it.
  remaining=$((traffic_started + DURATION_S - SECONDS))
  [ "$remaining" -gt 0 ] && sleep "$remaining"

  retries=$(stat_value "$FRONT_ADMIN" 'remora_upstream_retries_total{cluster="orders"}')
  opened_n=$(stat_value "$FRONT_ADMIN" 'remora_circuit_breaker_opened_total{cluster="orders"}')
  v="$(cp_version)"
  acked="$(acked_count "$v")"
  stop_all
  total=$(wc -l <"$TRAFFIC_LOG")
  ok=$(grep -c '^200|' "$TRAFFIC_LOG" || true)
  for what in "${!UNCLEAN[@]}"; do
    failures+=("$what exited with code ${UNCLEAN[$what]} (log: $WORK_DIR/logs)")
  done
  printf 'mesh-demo: summary requests=%s ok=%s orders_retries=%s breaker_opened=%s version=%s acked=%s/%s unclean_exits=%s failures=%s\n' \
    "$total" "$ok" "$retries" "$opened_n" "$v" "$acked" "${#INSTANCES[@]}" \
    "${#UNCLEAN[@]}" "${#failures[@]}"
  if [ "${#failures[@]}" -gt 0 ]; then
    for f in "${failures[@]}"; do say "FAILED: $f"; done
    say "logs: $WORK_DIR/logs"
    exit 1
  fi
  say "check passed"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Interactive: what to look at, then a status line every 2 s.

ctl="$REMORACTL"
[ "$CP_PORT" = 18000 ] || ctl="$REMORACTL --server $CP"
ctl="${ctl#"$ROOT"/}"
cat <<EOF

  The mesh is up: remora-control on $CP and four instances, each an app with a Remora sidecar.

  instance      app (fake-upstream)   sidecar inbound   sidecar outbound   sidecar admin
EOF
for inst in "${INSTANCES[@]}"; do
  printf '  %-13s 127.0.0.1:%-11s 127.0.0.1:%-7s 127.0.0.1:%-8s http://127.0.0.1:%s\n' "$inst" \
    "$(app_port "$inst")" "$(in_port "$inst")" "$(out_port "$inst")" "$(admin_port "$inst")"
done
cat <<EOF

  Sidecar admin (any of the four):   $FRONT_ADMIN/stats   /clusters   /config   /ready
  Control plane:                     http://$CP/v1/nodes   /v1/services   /v1/history   /v1/clusters
  Traffic: a curl loop calls $FRONT_OUT/orders/... and /inventory/... (the frontend's
  outbound listener) and $FRONT_IN/ (its inbound one); log: $TRAFFIC_LOG

  Things to try (in another terminal, from $ROOT):
    # Make orders-1 fail every request: clients still get 200s (the frontend's sidecar retries on
    # orders-2, "retried" goes up), and after 3 failures orders-1's breaker opens.
    curl -s -X POST http://127.0.0.1:$(app_port orders-1)/__control -d fail_ratio=1
    curl -s $FRONT_ADMIN/clusters | jq '.clusters[] | select(.name == "orders")'
    curl -s -X POST http://127.0.0.1:$(app_port orders-1)/__control -d clear    # heal it (half-open after 10s)

    # Slow inventory down past the route's 1s per_try_timeout: 504 with x-remora-fallback:
    # timeout (the route does not retry on "timeout"); 3 of them open inventory's breaker.
    curl -s -X POST http://127.0.0.1:$(app_port inventory-1)/__control -d delay_ms=1500
    curl -s -X POST http://127.0.0.1:$(app_port inventory-1)/__control -d clear

    # Push a policy to every sidecar and watch them ACK it.
    $ctl policy set orders deploy/local/orders-policy.yaml
    $ctl nodes
    $ctl history --limit 5

    # Take orders-2 out of rotation (registered, DOWN): the push removes its endpoint.
    $ctl heartbeat orders orders-2 --status DOWN
    $ctl register orders orders-2 127.0.0.1:$(in_port orders-2) --ttl $TTL   # back UP

    # See a NACK: an instance whose address does not resolve makes a snapshot no sidecar can
    # apply. They refuse it, keep serving the last good one, and say why in "nodes".
    $ctl register inventory broken nosuchhost.invalid:80 && $ctl nodes
    $ctl deregister inventory broken        # the next snapshot is ACKed (or wait: its TTL lapses)

  Logs: $WORK_DIR/logs/   Ctrl-C stops everything.

EOF

deadline=""
[ -n "$DURATION_S" ] && deadline=$((traffic_started + DURATION_S))
while :; do
  sleep 2 &
  wait $! || true
  status_line || true
  if [ -n "$deadline" ] && [ "$SECONDS" -ge "$deadline" ]; then break; fi
  for inst in "${INSTANCES[@]}"; do
    alive "${SIDECAR_PID[$inst]}" || die "the $inst sidecar exited (log: $WORK_DIR/logs/$inst-sidecar.log)"
  done
  alive "$CP_PID" || die "remora-control exited (log: $WORK_DIR/logs/remora-control.log)"
done
stop_all
