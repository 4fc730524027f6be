#!/usr/bin/env bash
# Control-plane ingest throughput (issue 6): v2 events in batches of 1 000 through the real HTTP
# ingest path (bearer token check, per-event validation, dedupe insert, run spans, audit line,
# commit, answer), on SQLite and on PostgreSQL, each beside the raw insert rate of the same rows
# into the same database by the same program: once into a bare table (no index), once into a
# table with the indexes `events` has (unique dedupe key, time index) without any dedupe clause.
# Also: a re-send of every batch (all duplicates) and the store's ingest without HTTP.
# Targets: >= 100 000 events/s on SQLite, >= 30 000 on PostgreSQL, >= 0.5x the raw rate.
# EVENTS (default 200 000) events; INGEST_CLIENTS (default "1 8": one run per value) concurrent
# HTTP clients (on SQLite, batches that arrive together share one transaction: group commit);
# LUMENFLOW_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test), a fresh schema
# per run, dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${EVENTS:-200000}"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
cargo build -q --release -p lumenflow-cloud --example ingest_bench
for clients in ${INGEST_CLIENTS:-1 8}; do
  for backend in sqlite postgres; do
    INGEST_CLIENTS="$clients" ./target/release/examples/ingest_bench "$backend" "$EVENTS"
  done
done
