#!/usr/bin/env bash
# Instructions the backtracing tracker adds per alloc/free pair, counted
# by callgrind (exact, whatever the machine's load) on the churn workload
# (crates/mallocator/examples/churn/workload.rs: pairs of 16 to 80 bytes
# from a three-deep call chain) with the tracker as global allocator,
# against the same program on the system allocator.
#
# Each program runs at two pair counts; the difference divided by the
# difference in pairs is the cost of one pair, start-up and exit excluded.
#
# Usage: scripts/callgrind-tracker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench-fp}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }

RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release -q -p mallocator \
    --example churn_plain --example churn_tracked
bin=$CARGO_TARGET_DIR/release/examples
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

small=100000
large=300000
# instructions PROGRAM PAIRS: total instructions of one run.
instructions() {
    valgrind --tool=callgrind --callgrind-out-file="$work/out" "$bin/$1" "$2" 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per_pair() {
    local a b
    a=$(instructions "$1" "$small")
    b=$(instructions "$1" "$large")
    echo $(((b - a) / (large - small)))
}
plain=$(per_pair churn_plain)
tracked=$(per_pair churn_tracked)
echo "instructions per alloc/free pair (callgrind, churn workload):"
echo "  plain (system malloc): $plain"
echo "  tracker:               $tracked"
echo "  added by the tracker:  $((tracked - plain))"
