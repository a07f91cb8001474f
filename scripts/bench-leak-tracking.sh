#!/usr/bin/env bash
# Leak-tracking slowdown on the churn workload, side by side in one run:
# the plain program, our tracker (global mode, frame pointers on),
# heaptrack, Valgrind memcheck (--leak-check=full) and dhat-rs.
#
# Workload (crates/mallocator/examples/churn/workload.rs): PAIRS alloc/free
# pairs of 16 to 80 bytes from a three-deep call chain, one block in 1000
# leaked; once on 1 thread and once split over 2 threads.
#
# Usage: scripts/bench-leak-tracking.sh
# Env:   PAIRS (default 4000000, ~0.1-0.2 s plain), RUNS (default 5) for the
#        fast rows, SLOW_RUNS (default 3) for memcheck and dhat-rs.
# Prints a Markdown table: median wall time of the runs, and the ratio
# against the plain program's median.
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${PAIRS:-4000000}
RUNS=${RUNS:-5}
SLOW_RUNS=${SLOW_RUNS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench-fp}

RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release -q -p mallocator \
    --example churn_plain --example churn_tracked --example churn_dhat
bin=$(cd "$CARGO_TARGET_DIR/release/examples" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# median_time N cmd...: runs cmd N times (in $work, output discarded),
# prints the median wall time in seconds.
median_time() {
    local n=$1
    shift
    local i start end
    for ((i = 0; i < n; i++)); do
        start=$(date +%s.%N)
        (cd "$work" && "$@" >/dev/null 2>&1)
        end=$(date +%s.%N)
        awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f\n", e - s }'
    done | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

have() { command -v "$1" >/dev/null 2>&1; }

rows=()
declare -A plain_time

for threads in 1 2; do
    plain_time[$threads]=$(median_time "$RUNS" "$bin/churn_plain" "$PAIRS" "$threads")
done

row() { # row LABEL RUNS cmd... (the workload arguments are appended)
    local label=$1 n=$2
    shift 2
    local line="| $label |"
    local threads t
    for threads in 1 2; do
        t=$(median_time "$n" "$@" "$PAIRS" "$threads")
        line+=$(awk -v t="$t" -v p="${plain_time[$threads]}" 'BEGIN { printf " %.3f | %.1fx |", t, t / p }')
    done
    rows+=("$line")
}

rows+=("$(awk -v a="${plain_time[1]}" -v b="${plain_time[2]}" 'BEGIN { printf "| plain (system malloc) | %.3f | 1.0x | %.3f | 1.0x |", a, b }')")
row "mallocator tracker (global, frame pointers)" "$RUNS" "$bin/churn_tracked"
row "mallocator tracker + leak report at exit" "$RUNS" env MALLOCATOR_LEAKS="$work/leaks.txt" "$bin/churn_tracked"
row "mallocator tracker, no stacks on free" "$RUNS" env MALLOCATOR_FREE_STACKS=0 "$bin/churn_tracked"
if have heaptrack; then
    row "heaptrack" "$RUNS" heaptrack -o "$work/heaptrack" "$bin/churn_plain"
fi
if have valgrind; then
    row "valgrind memcheck --leak-check=full" "$SLOW_RUNS" \
        valgrind --tool=memcheck --leak-check=full --log-file="$work/memcheck.log" "$bin/churn_plain"
fi
row "dhat-rs (global allocator)" "$SLOW_RUNS" "$bin/churn_dhat"

echo "churn: $PAIRS alloc/free pairs of 16-80 bytes, 1 in 1000 leaked; median of $RUNS runs ($SLOW_RUNS for memcheck and dhat-rs); $(nproc) cores"
echo
echo "| tool | 1 thread (s) | slowdown | 2 threads (s) | slowdown |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
CHURN_STATS=1 "$bin/churn_tracked" "$PAIRS" 1 2>&1 >/dev/null | sed 's/^/tracker: /'
for held in 5000 50000 300000 1000000; do
    CHURN_STATS=1 CHURN_HOLD=$held "$bin/churn_tracked" 0 1 2>&1 >/dev/null | sed "s/^/tracker with $held more live blocks: /"
done
