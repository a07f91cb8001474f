#!/usr/bin/env bash
# Instructions `mallocator trace` adds per malloc/free pair inside the
# traced program, counted by callgrind (exact, whatever the machine's
# load): the churn workload in C (crates/mallocator-cli/tests/trace/
# programs.c, mode churn: pairs from a three-deep call chain, stacks of
# about 8 frames) built with gcc -O2 with and without frame pointers,
# traced the default way (DWARF call-frame information, frame pointers
# where an object has none) and with MALLOCATOR_STACKS=fp (frame
# pointers only), writing the compact event log as `trace --output` does.
#
# Each program runs at two pair counts; the difference divided by the
# difference in pairs is the cost of one pair, start-up and exit excluded.
# Callgrind runs the program with the preload library set as `trace`
# would set it (`LD_PRELOAD`, `MALLOCATOR_LOG`); the library stays in the
# environment (`MALLOCATOR_FOLLOW_EXEC=1`) because `valgrind` is a script
# that runs the tool, which runs the program.
#
# Usage: scripts/callgrind-trace.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }

cargo build --release -q -p mallocator-cli
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
library=$(ls "$target"/preload/*/release/libmallocator_preload.so | head -n 1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=crates/mallocator-cli/tests/trace/programs.c
cc -O2 -g -fno-omit-frame-pointer -pthread -o "$work/churn_fp" "$src" -ldl
cc -O2 -g -fomit-frame-pointer -pthread -o "$work/churn_nofp" "$src" -ldl

# instructions PAIRS PROGRAM [ENV...]: total instructions of one run.
instructions() {
    local pairs=$1 program=$2
    shift 2
    rm -f "$work"/log.*
    env "$@" valgrind --tool=callgrind --callgrind-out-file="$work/out" \
        "$work/$program" churn "$pairs" 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
# per_pair PROGRAM [ENV...]: instructions of one more pair.
per_pair() {
    local a b
    a=$(instructions 100000 "$@")
    b=$(instructions 300000 "$@")
    echo $(((b - a) / 200000))
}
traced=(LD_PRELOAD="$library" MALLOCATOR_FOLLOW_EXEC=1 MALLOCATOR_LOG="$work/log.%p")
echo "instructions per malloc/free pair (callgrind, C churn workload, compact log):"
printf '  %-36s %8s %8s %8s\n' program plain dwarf fp
for program in churn_nofp churn_fp; do
    plain=$(per_pair "$program")
    dwarf=$(per_pair "$program" "${traced[@]}")
    fp=$(per_pair "$program" "${traced[@]}" MALLOCATOR_STACKS=fp)
    printf '  %-36s %8s %8s %8s   adds: dwarf %s, fp %s\n' \
        "$program (gcc -O2)" "$plain" "$dwarf" "$fp" "$((dwarf - plain))" "$((fp - plain))"
done
