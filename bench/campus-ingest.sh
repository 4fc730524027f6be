#!/usr/bin/env sh
# The figure of issue 9: ingestion of a 1 000 000-row meter file (target >= 200 000 rows/s,
# events included) beside the parse-only rate of the same file, in the same run, for CSV and
# JSON Lines. CAMPUS_ROWS=N changes the row count.
set -eu
cd "$(dirname "$0")/.."
exec cargo bench -p lumenflow-packs --bench campus_ingest "$@"
