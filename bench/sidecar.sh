#!/usr/bin/env bash
# The sidecar's governed tool surface under load, beside a bare axum JSON endpoint, and the
# outbox drain rate to a live control plane.
#
# 1. `wrk` (64 connections, 2 threads) against `POST /tools/bench:noop` of the real sidecar
#    (the library `lumenflow sidecar` runs, plus a built-in no-op pack; every request is
#    authenticated, dispatched with durable receipts, and emits `agent-runtime:tool_called`),
#    and against a bare axum endpoint parsing the same JSON body. Prints req/s, p99, ratio.
#    Target: the sidecar at >= 0.5x the bare endpoint. A second load sends a different input
#    with every call, as real callers do (each stores a new evidence blob, fsync'd), and the
#    sidecar's peak resident memory over both loads is printed.
# 2. Outbox drain: N queue-class events queued while "offline", then the real `lumenflow sidecar`
#    drains them to (a) the real control plane (`lumenflow cloud serve`, SQLite) and (b) an
#    in-memory ingest stand-in. Prints events/s. Target: >= 20 000 events/s.
#
# Needs `wrk` (apt-get install -y wrk). DURATION (default 10s), CONNECTIONS (64), EVENTS (50000),
# DRAIN_ROUNDS (3: each drain runs that often, with a fresh fill, and the median is the figure),
# CALLS_ONLY (1: run part 1 only, for quick A/B runs of the call path).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
EVENTS="${EVENTS:-50000}"
DRAIN_ROUNDS="${DRAIN_ROUNDS:-3}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }

cargo build -q --release -p lumenflow-cli
cargo build -q --release -p lumenflow-conductor --example sidecar_bench
LF="$PWD/target/release/lumenflow"
BENCH="$PWD/target/release/examples/sidecar_bench"

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# Start "$@" in the background and wait for its `listening on http://ADDR` line; sets URL and
# PID (and records the pid for cleanup).
start() {
  local log="$WORK/$1.log"; shift
  "$@" >"$log" 2>"$log.err" &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 1 300); do
    if grep -q "listening on http://" "$log" 2>/dev/null; then
      URL=$(grep -o "http://[0-9.:]*" "$log" | head -1); return 0
    fi
    sleep 0.1
  done
  echo "did not start: $*" >&2; cat "$log.err" >&2; exit 1
}

# wrk: "<req/s> <p99 in ms>". With a third argument `distinct`, every request carries a
# different input (a real workload's calls do: each stores a new evidence blob); otherwise every
# request sends the same body.
load() {
  local url="$1" token="$2" inputs="${3:-same}"
  cat >"$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"note":"bench"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
  if [ "$inputs" = distinct ]; then
    cat >>"$WORK/post.lua" <<'LUA'
local n = 0
local salt = tostring(os.time()) .. tostring({})
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"note":"' .. salt .. '-' .. n .. '"}')
end
LUA
  fi
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/post.lua" "$url" >"$WORK/wrk.out"
  local rps p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' "$WORK/wrk.out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.out")
  if [ -n "$non2xx" ]; then echo "warning: $non2xx non-2xx answers" >&2; cat "$WORK/wrk.out" >&2; fi
  echo "$rps $p99"
}

# --- 1. tool calls -----------------------------------------------------------------------
WS="$WORK/ws"; mkdir -p "$WS"
cat >"$WS/workspace.yaml" <<'YAML'
id: ws-bench
name: Sidecar bench
packs:
  - {id: bench-noop, version: 1.0.0, integrity: dev, source: local}
lanes: []
security:
  allowed_scopes:
    - {type: path, pattern: "**", access: read}
memory_namespace: m
event_namespace: e
sandbox: none
YAML
"$LF" enroll --standalone --dir "$WS" >/dev/null
TOKEN=$("$LF" token mint --scope workspace --ttl 1h --dir "$WS")

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; wrk -t2 -c$CONNECTIONS -d$DURATION"
start bare "$BENCH" bare --listen 127.0.0.1:0; BARE="$URL"
read -r BARE_RPS BARE_P99 < <(load "$BARE/tools/bench:noop" "$TOKEN")
kill "$PID"; sleep 0.5
start sidecar "$BENCH" sidecar --dir "$WS" --listen 127.0.0.1:0; SIDE="$URL"
# Sanity: the call really goes through the governed path.
curl -fsS -X POST "$SIDE/tools/bench:noop" -H "Authorization: Bearer $TOKEN" -d '{}' | grep -q '"success":true'
read -r SIDE_RPS SIDE_P99 < <(load "$SIDE/tools/bench:noop" "$TOKEN")
read -r DIST_RPS DIST_P99 < <(load "$SIDE/tools/bench:noop" "$TOKEN" distinct)
# Peak resident memory of the sidecar over both loads (kB).
PEAK_RSS=$(awk '/^VmHWM/ {print $2}' "/proc/$PID/status")
kill "$PID"; sleep 0.5
RECEIPTS=$(grep -c '"tool_call_finished"' "$WS/.lumenflow/kernel/events.jsonl" || true)
printf "bare axum JSON endpoint   %10.0f req/s   p99 %8.2f ms\n" "$BARE_RPS" "$BARE_P99"
printf "sidecar POST /tools/noop  %10.0f req/s   p99 %8.2f ms   (same input every call)\n" "$SIDE_RPS" "$SIDE_P99"
printf "  ... distinct inputs     %10.0f req/s   p99 %8.2f ms   (each call stores a new evidence blob)\n" "$DIST_RPS" "$DIST_P99"
printf "  %s durable receipts written; sidecar peak RSS %s MB\n" "$RECEIPTS" "$((PEAK_RSS / 1024))"
awk -v s="$SIDE_RPS" -v b="$BARE_RPS" 'BEGIN {printf "ratio sidecar/bare        %10.3f      (target >= 0.5)\n", s/b}'
awk -v s="$DIST_RPS" -v b="$BARE_RPS" 'BEGIN {printf "ratio distinct/bare       %10.3f\n", s/b}'

[ "${CALLS_ONLY:-0}" = 1 ] && exit 0

# --- 2. outbox drain -----------------------------------------------------------------------
# One drain of EVENTS queued events by the real sidecar; sets DRAIN_N and DRAIN_SECS.
drain_once() {
  local label="$1" ws="$2"
  "$BENCH" fill --dir "$ws" --count "$EVENTS" --from ws-bench >/dev/null
  # The fill's files are fsync'd; flush what else the file system holds back (the load
  # phase's logs, the previous round) before timing.
  sync
  local t0 t1 side pending first
  start "drain-$label" "$LF" sidecar --dir "$ws" --listen 127.0.0.1:0 --batch-size 1000; side="$URL"
  # Timed from the sidecar being ready (draining starts during its start-up: count only what
  # was still queued then).
  t0=$(date +%s.%N)
  first=$(curl -fsS "$side/healthz" | sed -n 's/.*"outbox_pending":\([0-9]*\).*/\1/p')
  while :; do
    pending=$(curl -fsS "$side/healthz" | sed -n 's/.*"outbox_pending":\([0-9]*\).*/\1/p')
    [ "$pending" = "0" ] && break
    sleep 0.02
  done
  t1=$(date +%s.%N)
  # Not timed: let the sweeper delete the acknowledged files before stopping, so the next
  # round's sidecar does not start by sweeping this round's leftovers.
  for _ in $(seq 1 600); do
    [ -z "$(find "$ws/.lumenflow/state/conductor/outbox/acked" -type f -print -quit 2>/dev/null)" ] && break
    sleep 0.1
  done
  kill "$PID"; sleep 0.3
  DRAIN_N="$first"
  DRAIN_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b-a}')
}

# DRAIN_ROUNDS drains (this machine's file system is noisy), each rate and their median.
drain() {
  local label="$1" ws="$2" rates=""
  for _ in $(seq 1 "$DRAIN_ROUNDS"); do
    drain_once "$label" "$ws"
    rates="$rates $(awk -v n="$DRAIN_N" -v s="$DRAIN_SECS" 'BEGIN {printf "%.0f", n/s}')"
  done
  local median
  median=$(tr ' ' '\n' <<<"$rates" | sed '/^$/d' | sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}')
  printf "outbox drain -> %-28s median %8.0f events/s over %s rounds (%s ) (target >= 20000)\n" "$label" "$median" "$DRAIN_ROUNDS" "$rates"
}

# (a) the real control plane.
CLOUD_DB="sqlite://$WORK/cloud.db"
start cloud "$LF" cloud serve --listen 127.0.0.1:0 --database "$CLOUD_DB" --registry-refresh 0; CLOUD="$URL"
CODE=$("$LF" cloud enroll-code --workspace-id ws-bench --database "$CLOUD_DB" --json | sed -n 's/.*"code": *"\([^"]*\)".*/\1/p')
# The drain workspaces run the product binary, which has no bench-noop pack: no packs pinned.
sed '/bench-noop/d; s/^packs:$/packs: []/' "$WS/workspace.yaml" >"$WORK/plain.yaml"
WS2="$WORK/ws2"; mkdir -p "$WS2"; cp "$WORK/plain.yaml" "$WS2/workspace.yaml"
"$LF" enroll --control-plane "$CLOUD" --code "$CODE" --dir "$WS2" >/dev/null
drain "lumenflow cloud serve (SQLite)" "$WS2"

# (b) an in-memory ingest stand-in: the sidecar's own drain rate.
start sink "$BENCH" sink --listen 127.0.0.1:0; SINK="$URL"
WS3="$WORK/ws3"; mkdir -p "$WS3"; cp "$WORK/plain.yaml" "$WS3/workspace.yaml"
"$LF" enroll --standalone --dir "$WS3" >/dev/null
# Point the standalone enrollment at the stand-in (its token is the workspace's own).
python3 - "$WS3/.lumenflow/state/conductor/enrollment.json" "$SINK" <<'PY'
import json, sys
p, url = sys.argv[1], sys.argv[2]
e = json.load(open(p)); e["control_plane_endpoint"] = url
json.dump(e, open(p, "w"))
PY
drain "in-memory ingest stand-in" "$WS3"
echo "stand-in saw: $(curl -fsS "$SINK/stats")"
