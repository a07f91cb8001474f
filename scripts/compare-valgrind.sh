#!/usr/bin/env bash
# Agreement with Valgrind: builds the leaky example programs, runs each
#   1. under Valgrind memcheck with the system allocator
#      (--leak-check=full --show-leak-kinds=all, XML output), and
#   2. alone with mallocator's global tracker (its exit report as JSON),
# and checks that the never-freed blocks attributed to the programs' own
# functions match in count and bytes, function by function and class by
# class (memcheck's definitely / indirectly / possibly lost and still
# reachable against the tracker's reachability scan at exit). Exits 1 on
# any mismatch (or if a program's expected leaks are not found at all).
#
# Attribution: walking a block's allocation stack from the innermost
# frame, allocator machinery is skipped (malloc & co., __rust_alloc, the
# examples' allocator switch, mallocator, and alloc/core/std code, by
# name or by a source file in the Rust standard library); the first
# remaining frame is the allocating function. It counts when it belongs
# to the example's crate. Both leave the C library's own clean-up at exit
# undone (--run-libc-freeres=no --run-cxx-freeres=no), so that both look
# at the same memory.
#
# Usage: scripts/compare-valgrind.sh [--frame-pointers] [example...]
#   (default: all three examples, dev build, the tracker's automatic
#   stack mode). --frame-pointers also builds the examples with
#   `-C force-frame-pointers=yes` (own target dir; a full rebuild of the
#   dependencies, 1-2 minutes on 2 cores) and checks the tracker's
#   frame-pointer walk (MALLOCATOR_STACKS=fp) against Valgrind on it.
set -euo pipefail
cd "$(dirname "$0")/.."

frame_pointers=0
if [ "${1:-}" = "--frame-pointers" ]; then
    frame_pointers=1
    shift
fi
examples=("$@")
if [ ${#examples[@]} -eq 0 ]; then
    examples=(leaky_list leaky_strings leaky_threads)
fi
# Never-freed blocks each program is written to leak (see its source).
declare -A expected_blocks=([leaky_list]=28 [leaky_strings]=27 [leaky_threads]=32)

command -v valgrind >/dev/null || { echo "compare-valgrind: valgrind is not installed" >&2; exit 1; }

build_args=()
for ex in "${examples[@]}"; do build_args+=(--example "$ex"); done
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --quiet -p mallocator "${build_args[@]}"
passes=("$target_dir/debug/examples auto")
if [ $frame_pointers -eq 1 ]; then
    CARGO_TARGET_DIR="$target_dir/compare-valgrind-fp" RUSTFLAGS="-C force-frame-pointers=yes" \
        cargo build --quiet -p mallocator "${build_args[@]}"
    passes+=("$target_dir/compare-valgrind-fp/debug/examples fp")
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for pass in "${passes[@]}"; do
read -r bindir stacks <<<"$pass"
for ex in "${examples[@]}"; do
    bin="$bindir/$ex"
    echo "== $ex (tracker stack mode: $stacks)"
    MALLOCATOR_SYSTEM_ALLOC=1 valgrind --tool=memcheck --leak-check=full \
        --show-leak-kinds=all --num-callers=64 --xml=yes \
        --run-libc-freeres=no --run-cxx-freeres=no \
        --xml-file="$work/$ex.xml" "$bin" 2>"$work/$ex.valgrind.err" >/dev/null \
        || { echo "$ex: valgrind run failed:"; cat "$work/$ex.valgrind.err"; status=1; continue; }
    MALLOCATOR_LEAKS="$work/$ex.json" MALLOCATOR_LEAKS_FORMAT=json MALLOCATOR_DEPTH=64 \
        MALLOCATOR_STACKS="$stacks" "$bin" 2>"$work/$ex.tracker.err" >/dev/null \
        || { echo "$ex: tracker run failed:"; cat "$work/$ex.tracker.err"; status=1; continue; }
    python3 - "$ex" "$work/$ex.xml" "$work/$ex.json" "${expected_blocks[$ex]:-0}" <<'PY' || status=1
import json, re, sys
import xml.etree.ElementTree as ET

crate, xml_path, json_path, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

MALLOC = {"malloc", "calloc", "realloc", "free", "memalign", "posix_memalign",
          "aligned_alloc", "valloc", "reallocarray"}
MACHINERY_PREFIXES = ("__rust", "__rdl", "__rg_", "alloc::", "core::", "std::",
                      "<alloc::", "<core::", "<std::", "mallocator::", "<mallocator::")
PROGRAM = re.compile(r"(^|[^A-Za-z0-9_])" + re.escape(crate) + r"::")

def in_std_library(path):
    return bool(path) and ("/rustc/" in path or path.startswith("library/")
                           or "/rustlib/src/rust/library/" in path)

def attribute(frames):
    """First frame that is not allocator machinery: its function if it
    belongs to the program, else None. frames: [(function, file)], innermost first."""
    for fn, path in frames:
        if fn is None or fn == "??":
            return None
        if (fn in MALLOC or fn.startswith(MACHINERY_PREFIXES) or "alloc_switch::" in fn
                or in_std_library(path)):
            continue
        fn = re.sub(r"::h[0-9a-f]{16}$", "", fn)
        return fn if PROGRAM.search(fn) else None
    return None

def add(table, fn, kind, blocks, nbytes):
    if fn is not None:
        b, n = table.get((fn, kind), (0, 0))
        table[(fn, kind)] = (b + blocks, n + nbytes)

# memcheck's leak kinds, as the tracker's report names them.
KINDS = {"Leak_DefinitelyLost": "definitely_lost", "Leak_IndirectlyLost": "indirectly_lost",
         "Leak_PossiblyLost": "possibly_lost", "Leak_StillReachable": "still_reachable"}

valgrind = {}
for err in ET.parse(xml_path).getroot().iter("error"):
    if not (err.findtext("kind") or "").startswith("Leak_"):
        continue
    frames = []
    for fr in err.find("stack").iter("frame"):
        d, f = fr.findtext("dir"), fr.findtext("file")
        frames.append((fr.findtext("fn"), f"{d}/{f}" if d and f else f))
    xw = err.find("xwhat")
    nbytes = int(xw.findtext("leakedbytes"))
    # A record of blocks that hold the only pointers to others counts them
    # too ("218 (192 direct, 26 indirect) bytes"); the indirect blocks have
    # records of their own, so keep the direct bytes only.
    split = re.search(r"\(([\d,]+) direct, [\d,]+ indirect\)", xw.findtext("text") or "")
    if split:
        nbytes = int(split.group(1).replace(",", ""))
    add(valgrind, attribute(frames), KINDS[err.findtext("kind")],
        int(xw.findtext("leakedblocks")), nbytes)

tracker = {}
with open(json_path) as fh:
    report = json.load(fh)
for g in report["groups"]:
    frames = [(f.get("function"), f.get("file")) for f in g["frames"]]
    add(tracker, attribute(frames), g.get("kind", "unclassified"), g["count"], g["bytes"])

ok = True
print(f"{crate}: never-freed blocks attributed to the program's functions, by class")
print(f"  {'function':<36} {'class':<16} {'valgrind blocks/bytes':>22} {'tracker blocks/bytes':>22}")
for fn, kind in sorted(set(valgrind) | set(tracker)):
    v, t = valgrind.get((fn, kind), (0, 0)), tracker.get((fn, kind), (0, 0))
    same = v == t
    ok &= same
    print(f"  {fn:<36} {kind:<16} {v[0]:>12} / {v[1]:<8} {t[0]:>12} / {t[1]:<8} {'ok' if same else 'MISMATCH'}")
vt = tuple(map(sum, zip((0, 0), *valgrind.values())))
tt = tuple(map(sum, zip((0, 0), *tracker.values())))
print(f"  {'total':<53} {vt[0]:>12} / {vt[1]:<8} {tt[0]:>12} / {tt[1]:<8} {'ok' if vt == tt else 'MISMATCH'}")
if vt[0] != expected:
    print(f"  expected {expected} leaked blocks from the program, found {vt[0]}: MISMATCH")
    ok = False
sys.exit(0 if ok and vt == tt else 1)
PY
done
done
if [ $status -eq 0 ]; then
    echo "compare-valgrind: the tracker and Valgrind agree on every example"
else
    echo "compare-valgrind: MISMATCH (see above)"
fi
exit $status
