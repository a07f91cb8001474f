#!/usr/bin/env bash
# Callgrind instruction counts per allocation: mallocator's Arena against
# bumpalo 3 (pre-sized) and the system allocator, all in one valgrind run.
#
#   scripts/callgrind.sh [iterations]      (default 1000000)
#
# Loops: `u64` (Arena::alloc::<u64>), `raw` (alloc_raw with runtime
# size/align), `str` (alloc_str of 0 to 60 bytes).
#
# Builds crates/harness/src/bin/callgrind.rs in release mode, runs it
# under `valgrind --tool=callgrind --toggle-collect='*loop_*'` (so only the
# loop functions are counted), and prints for every loop the instructions
# per allocation (each iteration allocates two blocks), both raw ("incl.
# loop": the loop's own counter and black_box included, as bumpalo's
# figures are usually quoted) and minus the matching empty loop ("alloc
# only"), with the ratio against bumpalo.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000000}"
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
cargo build --release -p mallocator-harness --bin callgrind >&2
exe=${CARGO_TARGET_DIR:-target}/release/callgrind
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
    --toggle-collect='*loop_*' "$exe" "$n" >&2 2>"$out/valgrind.log" || {
    cat "$out/valgrind.log" >&2; exit 1; }
# Inclusive instructions of each loop function, read from the profile:
# inside a `fn=` block every cost line (self costs, and the inclusive cost
# line after each `calls=`) belongs to that function. Names are compressed
# as `(id) name` on first use (in `fn=` or `cfn=`), `(id)` afterwards.
awk -v n="$n" '
    function fname(s,    id) {
        if (match(s, /^\([0-9]+\)/)) {
            id = substr(s, 1, RLENGTH)
            if (length(s) > RLENGTH) names[id] = substr(s, RLENGTH + 2)
            return names[id]
        }
        return s
    }
    /^fn=/ { cur = fname(substr($0, 4)); key = cur ~ /::loop_/ ? substr(cur, index(cur, "loop_") + 5) : ""; next }
    /^cfn=/ { fname(substr($0, 5)); next }
    /^[a-z]+=/ { next }
    /^[0-9+*-]/ { if (key != "") ir[key] += $2 }
    END {
        split("u64 raw str", kinds, " ")
        split("arena bumpalo system", who, " ")
        printf "callgrind, %d iterations x 2 allocations per loop\n\n", n
        printf "| loop | allocator | instr/alloc incl. loop | vs bumpalo | instr/alloc minus empty loop | vs bumpalo |\n"
        printf "|---|---|---:|---:|---:|---:|\n"
        for (k = 1; k <= 3; k++) {
            kind = kinds[k]
            empty = ir["empty_" kind] / (2 * n)
            printf "| %s | empty loop | %.2f | | | |\n", kind, empty
            b = ir["bumpalo_" kind] / (2 * n)
            for (w = 1; w <= 3; w++) {
                x = ir[who[w] "_" kind] / (2 * n)
                if (x == 0) { printf "missing loop_%s_%s\n", who[w], kind > "/dev/stderr"; exit 1 }
                printf "| %s | %s | %.2f | %.2fx | %.2f | %.2fx |\n", kind, who[w], x, x / b, x - empty, (x - empty) / (b - empty)
            }
        }
    }
' "$out/cg.out"
