#!/usr/bin/env bash
# Pack-hash throughput vs `openssl dgst -sha256` (KRN-03: "a large pack hashes at disk speed").
#
# Two packs are generated under ${BENCH_DIR:-bench/out} (gitignored) and reused on later runs:
#   big/   one file of N MiB
#   many/  20 000 files totalling N MiB, in directories of 100
# N is ${PACK_HASH_BENCH_MB:-1024}; use e.g. PACK_HASH_BENCH_MB=64 for a quick run.
#
# Both tools run over warm page cache, interleaved; each timing is the best of
# ${PACK_HASH_BENCH_RUNS:-3} runs.
# Targets: lumenflow >= 0.9x openssl on the big file, >= 1.5x on many files
# (openssl is single-threaded; the pack hash uses every core on many files).
#
# The binary is ${LUMENFLOW_BIN:-target/release/lumenflow}, called as
#   $LUMENFLOW_BIN pack hash --pack-root DIR
# and expected to print `sha256:<hex>`. Without LUMENFLOW_BIN the release CLI is built first.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

MB="${PACK_HASH_BENCH_MB:-1024}"
RUNS="${PACK_HASH_BENCH_RUNS:-3}"
FILES=20000
BENCH_DIR="${BENCH_DIR:-bench/out}"

if ! [[ "$MB" =~ ^[1-9][0-9]*$ ]]; then
    echo "PACK_HASH_BENCH_MB must be a positive integer (MiB), got '$MB'" >&2
    exit 2
fi
for tool in openssl find xargs split head date awk; do
    command -v "$tool" >/dev/null || { echo "missing required tool: $tool" >&2; exit 2; }
done

if [[ -z "${LUMENFLOW_BIN:-}" ]]; then
    LUMENFLOW_BIN=target/release/lumenflow
    echo "building the release binary (cargo build --release -p lumenflow-cli)..." >&2
    cargo build --release -p lumenflow-cli >&2
fi
if ! [[ -x "$LUMENFLOW_BIN" ]] && ! command -v "$LUMENFLOW_BIN" >/dev/null; then
    echo "lumenflow binary not found or not executable: $LUMENFLOW_BIN" >&2
    exit 2
fi

TOTAL_BYTES=$((MB * 1024 * 1024))
FILE_SIZE=$((TOTAL_BYTES / FILES))
if ((FILE_SIZE < 1)); then
    echo "PACK_HASH_BENCH_MB=$MB is too small for $FILES files" >&2
    exit 2
fi
PER_DIR=100
DIRS=$((FILES / PER_DIR))

# Fast pseudo-random bytes: AES-CTR keystream (much faster than /dev/urandom).
random_stream() { # seed
    openssl enc -aes-128-ctr -pass "pass:lumenflow-bench-$1" -nosalt -pbkdf2 -iter 1 \
        </dev/zero 2>/dev/null
}

SET_DIR="$BENCH_DIR/pack-hash-${MB}m"
BIG_DIR="$SET_DIR/big"
MANY_DIR="$SET_DIR/many"
# Completion markers live next to the packs, not inside them.
BIG_DONE="$SET_DIR/big.complete"
MANY_DONE="$SET_DIR/many.complete"

make_big() {
    if [[ -f "$BIG_DONE" ]]; then
        echo "reusing $BIG_DIR" >&2
        return
    fi
    echo "creating $BIG_DIR ($MB MiB in one file)..." >&2
    rm -rf "$BIG_DIR" "$BIG_DONE"
    mkdir -p "$BIG_DIR"
    random_stream big | head -c "$TOTAL_BYTES" >"$BIG_DIR/blob.bin" || true
    [[ $(stat -c %s "$BIG_DIR/blob.bin") -eq $TOTAL_BYTES ]] || { echo "short write" >&2; exit 1; }
    : >"$BIG_DONE"
}

make_many() {
    if [[ -f "$MANY_DONE" ]]; then
        echo "reusing $MANY_DIR" >&2
        return
    fi
    echo "creating $MANY_DIR ($FILES files of $FILE_SIZE bytes in $DIRS directories)..." >&2
    rm -rf "$MANY_DIR" "$MANY_DONE"
    mkdir -p "$MANY_DIR"
    local d dir
    for ((d = 0; d < DIRS; d++)); do
        dir=$(printf '%s/d%03d' "$MANY_DIR" "$d")
        mkdir -p "$dir"
        random_stream "many-$d" | head -c $((FILE_SIZE * PER_DIR)) |
            split -b "$FILE_SIZE" -d -a 2 --additional-suffix=.bin - "$dir/f" || true
    done
    local count
    count=$(find "$MANY_DIR" -type f | wc -l)
    [[ $count -eq $FILES ]] || { echo "expected $FILES files, found $count" >&2; exit 1; }
    : >"$MANY_DONE"
}

warm() { # dir
    find "$1" -type f -print0 | xargs -0 cat >/dev/null
}

# time_once CMD... : prints the wall time of one run in seconds.
time_once() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f", e - s }'
}

min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }

openssl_many() { # dir
    find "$1" -type f -print0 | xargs -0 openssl dgst -sha256 >/dev/null
}

openssl_one() { # dir
    openssl dgst -sha256 "$1/blob.bin" >/dev/null
}

lumenflow_hash() { # dir
    "$LUMENFLOW_BIN" pack hash --pack-root "$1"
}

check_output() { # dir
    local out
    out=$(lumenflow_hash "$1")
    if ! [[ "$out" =~ sha256:[0-9a-f]{64} ]]; then
        echo "unexpected output from '$LUMENFLOW_BIN pack hash --pack-root $1': $out" >&2
        exit 1
    fi
    echo "  $1 -> ${BASH_REMATCH[0]}" >&2
}

make_big
make_many
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')

declare -A T_OPENSSL T_LUMENFLOW
for kind in big many; do
    dir=$BIG_DIR
    [[ $kind == many ]] && dir=$MANY_DIR
    echo "warming page cache for $dir..." >&2
    warm "$dir"
    check_output "$dir"
    openssl_cmd=openssl_many
    [[ $kind == big ]] && openssl_cmd=openssl_one
    # Interleaved, so background load hits both tools alike; the best run of each counts.
    T_OPENSSL[$kind]=""
    T_LUMENFLOW[$kind]=""
    for ((run = 0; run < RUNS; run++)); do
        T_OPENSSL[$kind]=$(min "$(time_once "$openssl_cmd" "$dir")" "${T_OPENSSL[$kind]}")
        T_LUMENFLOW[$kind]=$(min "$(time_once lumenflow_hash "$dir")" "${T_LUMENFLOW[$kind]}")
    done
done

cpus=$(nproc 2>/dev/null || echo "?")
sha_ni=no
grep -qw sha_ni /proc/cpuinfo 2>/dev/null && sha_ni=yes

echo
echo "pack hash benchmark: ${MB} MiB per pack, best of ${RUNS}, ${cpus} CPUs, SHA-NI: ${sha_ni}"
echo "binary: ${LUMENFLOW_BIN}"
echo "load average at start: ${LOAD_START}, at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')" \
    "(other CPU load skews the many-files ratio, which needs every core)"
printf '%-22s %12s %12s %12s %12s %8s %8s %s\n' \
    "pack" "openssl s" "openssl MB/s" "lumenflow s" "lumenflow MB/s" "ratio" "target" "result"
status=0
for kind in big many; do
    if [[ $kind == big ]]; then
        label="1 file"
        bytes=$TOTAL_BYTES
        target=0.9
    else
        label="$FILES files"
        bytes=$((FILE_SIZE * FILES))
        target=1.5
    fi
    read -r o_mbs l_mbs ratio ok < <(awk -v bytes="$bytes" -v o="${T_OPENSSL[$kind]}" \
        -v l="${T_LUMENFLOW[$kind]}" -v t="$target" 'BEGIN {
            o_mbs = bytes / 1e6 / o; l_mbs = bytes / 1e6 / l; r = o / l;
            printf "%.0f %.0f %.2f %s\n", o_mbs, l_mbs, r, (r >= t ? "PASS" : "FAIL") }')
    [[ $ok == PASS ]] || status=1
    printf '%-22s %12s %12s %12s %14s %7sx %7sx %s\n' \
        "$label" "${T_OPENSSL[$kind]}" "$o_mbs" "${T_LUMENFLOW[$kind]}" "$l_mbs" "$ratio" ">=$target" "$ok"
done
echo "(MB/s = 10^6 bytes per second over the ${MB} MiB of content; ratio = lumenflow MB/s / openssl MB/s)"
exit "$status"
