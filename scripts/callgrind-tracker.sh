#!/usr/bin/env bash
# Instructions the backtracing tracker adds per alloc/free pair, counted
# by callgrind (exact, whatever the machine's load) on the churn workload
# (crates/harness/src/churn.rs: pairs of 16 to 80 bytes
# from a three-deep call chain) with the tracker as global allocator,
# against the same program on the system allocator.
#
# Each program runs at two pair counts; the difference divided by the
# difference in pairs is the cost of one pair, start-up and exit excluded.
# Log mode is measured too, in both formats (the compact binary log, the
# default, and the Firedancer text format), to a file; the kernel's share
# of the writes is not counted. Each log row also gives its added cost as
# a multiple of the in-memory tracker's.
#
# Usage: scripts/callgrind-tracker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench-fp}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }

RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release -q -p mallocator-harness \
    --bin churn_plain --bin churn_tracked
bin=$CARGO_TARGET_DIR/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# instructions PAIRS PROGRAM [ENV...]: total instructions of one run.
instructions() {
    local pairs=$1 program=$2
    shift 2
    env "$@" valgrind --tool=callgrind --callgrind-out-file="$work/out" "$bin/$program" "$pairs" \
        2>&1 >/dev/null | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
# per_pair SMALL LARGE PROGRAM [ENV...]: instructions of one more pair.
per_pair() {
    local small=$1 large=$2 a b
    shift 2
    a=$(instructions "$small" "$@")
    b=$(instructions "$large" "$@")
    echo $(((b - a) / (large - small)))
}
plain=$(per_pair 100000 300000 churn_plain)
tracked=$(per_pair 100000 300000 churn_tracked)
# Log mode writes every event (the text format about 2.5 KB a pair):
# fewer pairs.
compact=$(per_pair 20000 60000 churn_tracked MALLOCATOR_LOG="$work/log.v2")
text=$(per_pair 20000 60000 churn_tracked MALLOCATOR_LOG="$work/log.txt" MALLOCATOR_LOG_FORMAT=fd)
added=$((tracked - plain))
# ratio N: N's added instructions over the in-memory tracker's, 2 decimals.
ratio() { awk -v a="$(($1 - plain))" -v b="$added" 'BEGIN { printf "%.2fx", a / b }'; }
echo "instructions per alloc/free pair (callgrind, churn workload):"
echo "  plain (system malloc):                               $plain"
echo "  tracker:                                             $tracked  (adds $added)"
echo "  tracker, compact log (MALLOCATOR_LOG):               $compact  (adds $((compact - plain)), $(ratio "$compact") the tracker's)"
echo "  tracker, text log (MALLOCATOR_LOG_FORMAT=fd):        $text  (adds $((text - plain)), $(ratio "$text") the tracker's)"
