#!/usr/bin/env bash
# `mallocator trace` beside heaptrack: the time each adds to the same
# programs, run by them unchanged.
#
# Programs: the churn workload in C (crates/mallocator-cli/tests/trace/
# programs.c, mode churn: malloc/free pairs from a three-deep call chain)
# built with gcc -O2 with frame pointers and without them (and traced
# with frame pointers only, MALLOCATOR_STACKS=fp, once; and from two
# threads at once, mode churn-threads), and Debian's
# perl (a hash of 300,000 strings), sqlite3 (200,000 rows inserted in
# memory) and jq (a 20 MB JSON file), none built with frame pointers.
# `trace --output` (the event log, no report) against `heaptrack -o`
# (its recording, which includes its interpreter's work).
#
# Each run of a program is one triple: plain, traced, heaptracked, in an
# order that rotates; the triple's figure is trace's added time over
# heaptrack's, (trace - plain) / (heaptrack - plain). A row reports the
# median of those, and each tool's median slowdown. The machine may be
# shared: the load averages are printed with the table.
#
# Usage: scripts/bench-trace.sh     Env: RUNS (default 7) triples per row.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
export LC_ALL=C
RUNS=${RUNS:-7}
for tool in heaptrack perl sqlite3 jq cc; do
    command -v "$tool" >/dev/null || { echo "bench-trace: needs $tool" >&2; exit 2; }
done

cargo build --release -q -p mallocator-cli
bin=$PWD/target/release/mallocator
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=crates/mallocator-cli/tests/trace/programs.c
cc -O2 -g -fno-omit-frame-pointer -pthread -o "$work/churn_fp" "$src" -ldl
cc -O2 -g -fomit-frame-pointer -pthread -o "$work/churn_nofp" "$src" -ldl
printf 'create table t(a, b);\nbegin;\n' > "$work/insert.sql"
seq 200000 | awk '{ printf "insert into t values (%d, '"'"'row %d'"'"');\n", $1, $1 }' >> "$work/insert.sql"
printf 'commit;\nselect count(*) from t;\n' >> "$work/insert.sql"
awk 'BEGIN { printf "["; for (i = 0; i < 250000; i++) printf "%s{\"id\": %d, \"name\": \"item %d\", \"tags\": [\"a\", \"b\"]}", (i ? "," : ""), i, i; print "]" }' > "$work/big.json"

# seconds cmd...: wall time of one run (in $work, output discarded).
seconds() {
    local start end
    start=$(date +%s.%N)
    (cd "$work" && "$@" >/dev/null 2>&1) || { echo "bench-trace: failed: $*" >&2; return 1; }
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f\n", e - s }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# The environment of the traced runs (the program's preload library
# reads it).
trace_env=()

# row LABEL cmd...: RUNS triples; prints the table row.
row() {
    local label=$1
    shift
    local i p t h
    : >"$work/triples"
    for ((i = 0; i < RUNS; i++)); do
        rm -f "$work/trace.log" "$work"/heaptrack.*
        case $((i % 3)) in
        0)
            p=$(seconds "$@")
            t=$(seconds env "${trace_env[@]}" "$bin" trace --output "$work/trace.log" -- "$@")
            h=$(seconds heaptrack -o "$work/heaptrack.out" "$@")
            ;;
        1)
            t=$(seconds env "${trace_env[@]}" "$bin" trace --output "$work/trace.log" -- "$@")
            h=$(seconds heaptrack -o "$work/heaptrack.out" "$@")
            p=$(seconds "$@")
            ;;
        2)
            h=$(seconds heaptrack -o "$work/heaptrack.out" "$@")
            p=$(seconds "$@")
            t=$(seconds env "${trace_env[@]}" "$bin" trace --output "$work/trace.log" -- "$@")
            ;;
        esac
        echo "$p $t $h" >>"$work/triples"
    done
    local plain trace heap added
    plain=$(cut -d' ' -f1 "$work/triples" | median)
    trace=$(awk '{ print $2 / $1 }' "$work/triples" | median)
    heap=$(awk '{ print $3 / $1 }' "$work/triples" | median)
    added=$(awk '{ print ($2 - $1) / ($3 - $1) }' "$work/triples" | median)
    printf '| %s | %.3f | %.2fx | %.2fx | %.2f |\n' "$label" "$plain" "$trace" "$heap" "$added"
}

echo "load averages before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
echo "| program | plain (s) | trace | heaptrack | trace's added time / heaptrack's |"
echo "|---|---|---|---|---|"
row "C churn, 1M pairs, frame pointers" ./churn_fp churn 1000000
# Frame pointers only, no DWARF unwinding: what a program built with
# them can ask for.
trace_env=(MALLOCATOR_STACKS=fp)
row "C churn, 1M pairs, frame pointers, MALLOCATOR_STACKS=fp" ./churn_fp churn 1000000
trace_env=()
row "C churn, 1M pairs, no frame pointers" ./churn_nofp churn 1000000
row "C churn, 1M pairs from 2 threads, no frame pointers" ./churn_nofp churn-threads 2 1000000
row "perl, a hash of 300k strings" perl -e 'my %h; $h{$_} = "x" x ($_ % 100) for 1..300000'
row "sqlite3, 200k rows inserted" sqlite3 :memory: -init /dev/null ".read insert.sql"
row "jq, 20 MB of JSON" jq length big.json
echo "load averages after: $(cut -d' ' -f1-3 /proc/loadavg)"
