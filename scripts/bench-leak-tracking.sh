#!/usr/bin/env bash
# Leak-tracking slowdown on the churn workload, side by side in one run:
# the plain program, our tracker (global mode, frame pointers on),
# heaptrack, Valgrind memcheck (--leak-check=full) and dhat-rs.
#
# Workload (crates/harness/src/churn.rs): PAIRS alloc/free pairs of 16 to
# 80 bytes from a three-deep call chain, one block in 1000 leaked; once on
# 1 thread and once split over 2 threads.
#
# Usage: scripts/bench-leak-tracking.sh
# Env:   PAIRS (default 4000000, ~0.1-0.2 s plain), RUNS (default 11) for the
#        fast rows, SLOW_RUNS (default 3) for memcheck and dhat-rs.
#
# Each run of a tool is paired with a run of the plain program; a row's
# slowdown is the median of the per-pair ratios (scripts/bench-common.sh
# says why). A run that fails stops the script.
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

BENCH_NAME=bench-leak-tracking
BENCH_WORK=$work
PLAIN=("$bin/churn_plain")
THREADS=(1 2)
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
bench_args() { ARGS=("$PAIRS" "$1"); }

load_start=$(load_now)
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

echo "churn: $PAIRS alloc/free pairs of 16-80 bytes, 1 in 1000 leaked; $RUNS runs per row ($SLOW_RUNS for memcheck and dhat-rs), each paired with a plain run; time: median; slowdown: median of the per-pair ratios"
echo "load average (1, 5, 15 min): $load_start at the start, $(load_now) at the end; $(nproc) cores"
echo
print_table
if ((${#notes[@]} > 0)); then
    echo
    printf 'note: %s\n' "${notes[@]}"
fi
echo
CHURN_STATS=1 "$bin/churn_tracked" "$PAIRS" 1 2>&1 >/dev/null | sed 's/^/tracker: /'
for held in 5000 50000 300000 1000000; do
    CHURN_STATS=1 CHURN_HOLD=$held "$bin/churn_tracked" 0 1 2>&1 >/dev/null | sed "s/^/tracker with $held more live blocks: /"
done
