#!/usr/bin/env bash
# Wall time of `lumenflow pack validate` on a pack whose manifest has 100 tools (target: under
# 20 ms), beside `sha256sum` over the same files as a baseline process doing the least possible
# work with them. Prints both and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${LUMENFLOW_BIN:-target/release/lumenflow}"
RUNS="${RUNS:-30}"
[ -x "$BIN" ] || cargo build --release -q -p lumenflow-cli
out="${BENCH_DIR:-bench/out}/validate-100"
rm -rf "$out" && mkdir -p "$out/tools"
printf '#!/usr/bin/env python3\n' > "$out/tools/tool.py"
{
  printf 'id: bench-pack\nversion: 1.0.0\ntask_types: [task]\ntools:\n'
  for i in $(seq 0 99); do
    printf '  - name: bench:tool-%d\n    entry: tools/tool.py\n    permission: write\n    description: Tool number %d.\n' "$i" "$i"
    printf '    required_scopes:\n      - type: path\n        pattern: data/%d/**\n        access: read\n      - type: path\n        pattern: out/%d/**/*.json\n        access: write\n' "$i" "$i"
    printf '    input_schema:\n      type: object\n      properties:\n        path: {type: string, minLength: 1}\n        limit: {type: integer, minimum: 0, maximum: 1000}\n      required: [path]\n'
  done
  printf 'policies: []\n'
} > "$out/manifest.yaml"

"$BIN" pack validate --pack-root "$out" > /dev/null   # must pass, and warms the cache

time_runs() { # prints mean milliseconds of "$@" over $RUNS runs
  local start end
  start=$(date +%s%N)
  for _ in $(seq "$RUNS"); do "$@" > /dev/null; done
  end=$(date +%s%N)
  awk -v s="$start" -v e="$end" -v n="$RUNS" 'BEGIN { printf "%.3f", (e - s) / 1000000 / n }'
}

base=$(time_runs sha256sum "$out/manifest.yaml" "$out/tools/tool.py")
lf=$(time_runs "$BIN" pack validate --pack-root "$out")
ratio=$(awk -v a="$lf" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
printf 'pack validate, 100-tool manifest (%s bytes), mean of %s runs\n' "$(wc -c < "$out/manifest.yaml")" "$RUNS"
printf '  baseline sha256sum (same files): %8.3f ms\n' "$base"
printf '  lumenflow pack validate:         %8.3f ms   (target < 20 ms)\n' "$lf"
printf '  ratio: %sx the baseline process\n' "$ratio"
