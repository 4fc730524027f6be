#!/usr/bin/env bash
# Control-plane ingest throughput (issue 6): v2 events in batches of 1 000 through the real HTTP
# ingest path (bearer token check, per-event validation, dedupe insert, run spans, audit line,
# commit, answer), on SQLite and on PostgreSQL, each beside the raw insert rate of the same rows
# into the same database by the same program: once into a bare table (no index), once into a
# table with the indexes `events` has (unique dedupe key, time index) without any dedupe clause.
# Also: a re-send of every batch (all duplicates) and the store's ingest without HTTP.
# Targets: >= 100 000 events/s on SQLite, >= 30 000 on PostgreSQL, >= 0.5x the raw rate.
#
# This machine's disk and CPU are noisy (one run's ratio has varied from 0.35x to 0.66x), so
# each configuration runs ROUNDS times (default 3), each round a fresh database with ingest and
# raw inserts back to back, and the summary gives the median of each rate and of each ratio.
# EVENTS (default 200 000) events; INGEST_CLIENTS (default "1 8": one run per value) concurrent
# HTTP clients (on SQLite, batches that arrive together share one transaction: group commit);
# LUMENFLOW_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test), a fresh schema
# per run, dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${EVENTS:-200000}"
ROUNDS="${ROUNDS:-3}"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs; $ROUNDS rounds each"
cargo build -q --release -p lumenflow-cloud --example ingest_bench
RESULTS="$(mktemp)"
trap 'rm -f "$RESULTS"' EXIT
for clients in ${INGEST_CLIENTS:-1 8}; do
  for backend in sqlite postgres; do
    for round in $(seq 1 "$ROUNDS"); do
      echo "--- round $round of $ROUNDS"
      INGEST_CLIENTS="$clients" ./target/release/examples/ingest_bench "$backend" "$EVENTS" \
        | tee -a "$RESULTS" | grep -v '^RESULT'
    done
  done
done

# Medians per backend and client count: rates, and the ratio of each round (not the ratio of
# the medians), so one slow phase cannot pass for a fast configuration.
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
echo
echo "medians over $ROUNDS rounds (events/s; ratios per round, then the median):"
printf "%-9s %7s %10s %10s %10s %10s %10s  %s\n" backend clients ingest raw-bare raw-index "/bare" "/index" "ratios vs bare in the rounds"
grep '^RESULT' "$RESULTS" | awk '{print $2, $3}' | sort -u | while read -r backend clients; do
  rows=$(grep "^RESULT $backend $clients " "$RESULTS")
  ingest=$(awk '{print $4}' <<<"$rows" | median)
  raw=$(awk '{print $5}' <<<"$rows" | median)
  indexed=$(awk '{print $6}' <<<"$rows" | median)
  bare_ratio=$(awk '{printf "%.3f\n", $4/$5}' <<<"$rows" | median)
  index_ratio=$(awk '{printf "%.3f\n", $4/$6}' <<<"$rows" | median)
  each=$(awk '{printf "%.2f ", $4/$5}' <<<"$rows")
  printf "%-9s %7s %10.0f %10.0f %10.0f %9.2fx %9.2fx  %s\n" "$backend" "$clients" "$ingest" "$raw" "$indexed" "$bare_ratio" "$index_ratio" "$each"
done
echo "targets: ingest >= 100000 (sqlite), >= 30000 (postgres); ingest/raw >= 0.5x"
