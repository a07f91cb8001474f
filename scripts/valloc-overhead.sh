#!/usr/bin/env bash
# Instructions per malloc/free pair (16..256 bytes) for the variants of
# crates/mallocator/benches/pairs/mod.rs, counted with callgrind: exact and
# unaffected by other load on the machine. Prints each variant's count
# and its ratio to calling the C library directly.
#
#   bash scripts/valloc-overhead.sh
#
# Each variant runs twice (1 and 1 + ROUNDS rounds of 1024 pairs); the
# difference cancels start-up and first-touch costs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-100}
PAIRS=1024
command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 1; }

exe=$(cargo bench -p mallocator --bench valloc_overhead --no-run --message-format=json-render-diagnostics |
    grep '"reason":"compiler-artifact"' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n 1)
[[ -x $exe ]] || { echo "bench executable not found" >&2; exit 1; }

instructions() { # VARIANT ROUNDS -> total instructions
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$exe" "$1" "$2" 2>&1 |
        sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p'
}

printf '%-14s %12s %s\n' variant instr/pair "ratio to libc_direct"
base=""
for variant in libc_direct valloc_libc valloc_vtable; do
    one=$(instructions "$variant" 1)
    many=$(instructions "$variant" $((1 + ROUNDS)))
    [[ -n $one && -n $many ]] || { echo "no callgrind count for $variant" >&2; exit 1; }
    per_pair=$(awk -v a="$one" -v b="$many" -v n=$((ROUNDS * PAIRS)) 'BEGIN { printf "%.2f", (b - a) / n }')
    base=${base:-$per_pair}
    printf '%-14s %12s %.3f\n' "$variant" "$per_pair" "$(awk -v x="$per_pair" -v y="$base" 'BEGIN { print x / y }')"
done
