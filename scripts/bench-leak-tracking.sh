#!/usr/bin/env bash
# Leak-tracking slowdown on the churn workload, side by side in one run:
# the plain program, our tracker (global mode, frame pointers on),
# heaptrack, Valgrind memcheck (--leak-check=full) and dhat-rs.
#
# Workload (crates/harness/src/churn.rs): PAIRS alloc/free
# pairs of 16 to 80 bytes from a three-deep call chain, one block in 1000
# leaked; once on 1 thread and once split over 2 threads.
#
# Usage: scripts/bench-leak-tracking.sh
# Env:   PAIRS (default 4000000, ~0.1-0.2 s plain), RUNS (default 11) for the
#        fast rows, SLOW_RUNS (default 3) for memcheck and dhat-rs.
#
# The machine may be shared, and its load drifts within seconds. So every
# run of a tool is paired with a run of the plain program next to it (which
# one goes first alternates), and a row's slowdown is the median of those
# per-pair ratios; its time is the median of its runs. A load spike then
# inflates one pair, not a row. A run that fails stops the script.
set -euo pipefail
shopt -s inherit_errexit # a failed run inside $(...) stops the script too
cd "$(dirname "$0")/.."
export LC_ALL=C

PAIRS=${PAIRS:-4000000}
RUNS=${RUNS:-11}
SLOW_RUNS=${SLOW_RUNS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench-fp}

RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release -q -p mallocator-harness \
    --bin churn_plain --bin churn_tracked --bin churn_dhat
bin=$(cd "$CARGO_TARGET_DIR/release" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# wall_time cmd...: runs cmd once (in $work, output discarded), prints the
# wall time in seconds; fails, with a message, if cmd fails.
wall_time() {
    local start end
    start=$(date +%s.%N)
    if ! (cd "$work" && "$@" >/dev/null 2>&1); then
        echo "bench-leak-tracking: failed: $*" >&2
        return 1
    fi
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f\n", e - s }'
}

# median: the median of the numbers on stdin.
median() {
    sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# paired N THREADS cmd...: N times, the plain program and cmd (the
# workload arguments appended to both), in alternating order; prints
# "plain_median cmd_median median_ratio".
paired() {
    local n=$1 threads=$2
    shift 2
    local i p t
    for ((i = 0; i < n; i++)); do
        if ((i % 2 == 0)); then
            p=$(wall_time "$bin/churn_plain" "$PAIRS" "$threads")
            t=$(wall_time "$@" "$PAIRS" "$threads")
        else
            t=$(wall_time "$@" "$PAIRS" "$threads")
            p=$(wall_time "$bin/churn_plain" "$PAIRS" "$threads")
        fi
        echo "$p $t"
    done >"$work/pairs"
    echo "$(cut -d' ' -f1 "$work/pairs" | median) $(cut -d' ' -f2 "$work/pairs" | median)" \
        "$(awk '{ print $2 / $1 }' "$work/pairs" | median)"
}

have() { command -v "$1" >/dev/null 2>&1; }

rows=()
declare -A plain_time

row() { # row LABEL RUNS cmd...
    local label=$1 n=$2
    shift 2
    local line="| $label |"
    local threads out p t r
    for threads in 1 2; do
        out=$(paired "$n" "$threads" "$@")
        read -r p t r <<<"$out"
        plain_time[$threads]+=" $p"
        line+=$(awk -v t="$t" -v r="$r" 'BEGIN { printf " %.3f | %.1fx |", t, r }')
    done
    rows+=("$line")
}

row "mallocator tracker (global, frame pointers)" "$RUNS" "$bin/churn_tracked"
row "mallocator tracker + leak report at exit" "$RUNS" env MALLOCATOR_LEAKS="$work/leaks.txt" "$bin/churn_tracked"
row "mallocator tracker, no stacks on free" "$RUNS" env MALLOCATOR_FREE_STACKS=0 "$bin/churn_tracked"
notes=()
if have heaptrack; then
    row "heaptrack" "$RUNS" heaptrack -o "$work/heaptrack" "$bin/churn_plain"
else
    notes+=("heaptrack is not installed: its row is missing")
fi
if have valgrind; then
    row "valgrind memcheck --leak-check=full" "$SLOW_RUNS" \
        valgrind --tool=memcheck --leak-check=full --log-file="$work/memcheck.log" "$bin/churn_plain"
else
    notes+=("valgrind is not installed: its row is missing")
fi
row "dhat-rs (global allocator)" "$SLOW_RUNS" "$bin/churn_dhat"
# The plain row: the median of the plain medians paired with each row.
plain_row="| plain (system malloc) |"
for threads in 1 2; do
    plain_row+=$(echo "${plain_time[$threads]}" | tr ' ' '\n' | grep . | median | awk '{ printf " %.3f | 1.0x |", $1 }')
done
rows=("$plain_row" "${rows[@]}")

echo "churn: $PAIRS alloc/free pairs of 16-80 bytes, 1 in 1000 leaked; $RUNS runs per row ($SLOW_RUNS for memcheck and dhat-rs), each paired with a plain run; time: median; slowdown: median of the per-pair ratios; $(nproc) cores"
echo
echo "| tool | 1 thread (s) | slowdown | 2 threads (s) | slowdown |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if ((${#notes[@]} > 0)); then
    echo
    printf 'note: %s\n' "${notes[@]}"
fi
echo
CHURN_STATS=1 "$bin/churn_tracked" "$PAIRS" 1 2>&1 >/dev/null | sed 's/^/tracker: /'
for held in 5000 50000 300000 1000000; do
    CHURN_STATS=1 CHURN_HOLD=$held "$bin/churn_tracked" 0 1 2>&1 >/dev/null | sed "s/^/tracker with $held more live blocks: /"
done
