#!/usr/bin/env bash
# Leak-tracking slowdown on a real program: ripgrep searching a fixed
# corpus, plain, under our tracker (as its #[global_allocator], frame
# pointers on), under heaptrack and under Valgrind memcheck. The churn
# workload of scripts/bench-leak-tracking.sh shows the cost per
# allocation; this shows what that cost does to a program that does
# other work between its allocations.
#
# Usage: scripts/bench-real-program.sh
# Env:   RUNS (default 21: a run is short, so more pairs are cheap and
#        steady the medians) pairs per row, SLOW_RUNS (default 3) for
#        memcheck; PATTERN (default 'fn [a-z_]+') the regex searched.
#
# ripgrep (RG_VERSION below) comes from crates.io through cargo, into
# $CARGO_TARGET_DIR/real-program (default target/bench-fp/real-program),
# and is built twice from one patched copy with one Cargo.lock: plain,
# and with the feature `mallocator-tracker`, which adds
#     #[global_allocator] static ...: GlobalBacktracing = GlobalBacktracing::new();
# with a path dependency on this workspace's crates/mallocator. Both are
# built with frame pointers, as a user of the tracker would.
#
# Corpus: ripgrep's own source plus the exact sources its Cargo.lock pins
# (`cargo vendor --locked`: checksummed, the same on every machine),
# searched with --no-require-git --no-ignore-parent so that only ignore
# files inside the corpus count, wherever it lies. Output goes to
# /dev/null (ripgrep 14 formats every match all the same).
#
# Each run of a tool is paired with a run of the plain ripgrep; a row's
# slowdown is the median of the per-pair ratios (scripts/bench-common.sh
# says why). Before timing, the tracked ripgrep must show that it tracks:
# its exit report (MALLOCATOR_LEAKS) is written, and its allocation count
# (MALLOCATOR_LOG) is within 10% of the one heaptrack counts. A failed
# run or check stops the script.
set -euo pipefail
shopt -s inherit_errexit # a failed run inside $(...) stops the script too
cd "$(dirname "$0")/.."
export LC_ALL=C

RG_VERSION=14.1.1
RUNS=${RUNS:-21}
SLOW_RUNS=${SLOW_RUNS:-3}
PATTERN=${PATTERN:-'fn [a-z_]+'}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench-fp}
repo=$(pwd)
mkdir -p "$CARGO_TARGET_DIR/real-program"
root=$(cd "$CARGO_TARGET_DIR/real-program" && pwd)

die() {
    echo "bench-real-program: $*" >&2
    exit 1
}
command -v heaptrack >/dev/null || die "needs heaptrack (apt-get install heaptrack)"
command -v heaptrack_print >/dev/null || die "needs heaptrack_print (apt-get install heaptrack)"
command -v valgrind >/dev/null || die "needs valgrind (apt-get install valgrind)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. ripgrep's source, as published, through cargo: a throwaway package
# that depends on it makes cargo download it into its registry cache (it
# warns that ripgrep has no library; the download happens all the same).
pristine=$root/ripgrep-$RG_VERSION
if [[ ! -f $pristine/Cargo.lock ]]; then
    mkdir -p "$work/fetch/src"
    cat >"$work/fetch/Cargo.toml" <<EOF
[package]
name = "fetch-ripgrep"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
ripgrep = "=$RG_VERSION"

[workspace]
EOF
    echo 'fn main() {}' >"$work/fetch/src/main.rs"
    cargo fetch -q --manifest-path "$work/fetch/Cargo.toml"
    crates=("${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"ripgrep-$RG_VERSION.crate")
    [[ -f ${crates[0]} ]] || die "cargo fetch did not leave ripgrep-$RG_VERSION.crate in the registry cache"
    rm -rf "$pristine.tmp"
    mkdir -p "$pristine.tmp"
    tar -xzf "${crates[0]}" -C "$pristine.tmp"
    mv "$pristine.tmp/ripgrep-$RG_VERSION" "$pristine"
    rm -rf "$pristine.tmp"
fi

# 2. The corpus, made once: ripgrep's source and its locked dependencies.
# Vendoring needs the manifest to stand alone (an empty [workspace]),
# so it runs on a scratch copy; the corpus keeps the source as published.
corpus=$root/corpus
if [[ ! -d $corpus ]]; then
    rm -rf "$corpus.tmp"
    mkdir -p "$corpus.tmp"
    cp -a "$pristine" "$corpus.tmp/ripgrep-$RG_VERSION"
    cp -a "$pristine" "$work/vendor-from"
    printf '\n[workspace]\n' >>"$work/vendor-from/Cargo.toml"
    cargo vendor -q --locked --versioned-dirs --manifest-path "$work/vendor-from/Cargo.toml" \
        "$corpus.tmp/vendor" >/dev/null
    mv "$corpus.tmp" "$corpus"
fi

# 3. The patched copy. Files are replaced only when their content changes,
# so that a second run of this script rebuilds nothing.
build=$root/build
[[ -d $build ]] || cp -a "$pristine" "$build"
# The feature and the optional path dependency; an empty [workspace] so
# that cargo does not take the copy for part of this repository's.
{
    sed 's/^\[features\]$/[features]\nmallocator-tracker = ["dep:mallocator"]/' "$pristine/Cargo.toml"
    printf '\n[dependencies.mallocator]\npath = "%s/crates/mallocator"\noptional = true\n' "$repo"
    printf '\n[workspace]\n'
} >"$work/Cargo.toml"
grep -q '^mallocator-tracker = ' "$work/Cargo.toml" || die "no [features] table in ripgrep's Cargo.toml to add the feature to"
# The global allocator, next to ripgrep's own (jemalloc, on musl only).
anchor='/// Then, as it was, then again it will be.'
main_rs=crates/core/main.rs
grep -qxF "$anchor" "$pristine/$main_rs" || die "ripgrep's $main_rs changed: no line '$anchor' to insert the allocator before"
awk -v anchor="$anchor" '
    $0 == anchor {
        print "// Added by scripts/bench-real-program.sh: every allocation of ripgrep"
        print "// goes through the backtracing leak tracker."
        print "#[cfg(feature = \"mallocator-tracker\")]"
        print "#[global_allocator]"
        print "static TRACKER: mallocator::backtracing::GlobalBacktracing ="
        print "    mallocator::backtracing::GlobalBacktracing::new();"
        print ""
    }
    { print }
' "$pristine/$main_rs" >"$work/main.rs"
cmp -s "$work/Cargo.toml" "$build/Cargo.toml" || cp "$work/Cargo.toml" "$build/Cargo.toml"
cmp -s "$work/main.rs" "$build/$main_rs" || cp "$work/main.rs" "$build/$main_rs"

# 4. Both builds, from the same copy and lock file. The lock file gains
# mallocator's dependencies on the first build; ripgrep's own stay as
# ripgrep pinned them.
rg_build() { # rg_build OUT [cargo args...]
    local out=$1
    shift
    RUSTFLAGS="-C force-frame-pointers=yes" CARGO_TARGET_DIR="$root/target" \
        cargo build --release -q --manifest-path "$build/Cargo.toml" --bin rg "$@"
    cp "$root/target/release/rg" "$out.tmp"
    mv "$out.tmp" "$out"
}
rg_plain=$root/rg-plain
rg_tracked=$root/rg-tracked
rg_build "$rg_plain"
rg_build "$rg_tracked" --features mallocator-tracker

RG_ARGS=(--no-config --no-require-git --no-ignore-parent -n -e "$PATTERN" "$corpus")
BENCH_NAME=bench-real-program
BENCH_WORK=$work
PLAIN=("$rg_plain")
THREADS=(1 2)
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
bench_args() { ARGS=(-j"$1" "${RG_ARGS[@]}"); }

# 5. The workload, and proof that the tracked ripgrep tracks.
files=$(find "$corpus" -type f | wc -l)
mib=$(du -sm "$corpus" | cut -f1)
matches=$("$rg_plain" -j1 --count-matches --no-filename "${RG_ARGS[@]}" | awk '{ n += $1 } END { print n + 0 }')
((matches > 0)) || die "the pattern '$PATTERN' matches nothing in the corpus"
for rg in "$rg_plain" "$rg_tracked"; do
    "$rg" -j1 "${RG_ARGS[@]}" >"$work/out.$(basename "$rg")" || die "$rg failed"
done
cmp -s "$work/out.rg-plain" "$work/out.rg-tracked" || die "the tracked ripgrep's output differs from the plain one's"
(cd "$work" && MALLOCATOR_LEAKS="$work/report.json" MALLOCATOR_LEAKS_FORMAT=json \
    "$rg_tracked" -j1 "${RG_ARGS[@]}" >/dev/null)
[[ -s $work/report.json ]] || die "the tracked ripgrep wrote no exit report: is the tracker its global allocator?"
leaked=$(sed -n 's/^ *"leaked_blocks": \([0-9]*\),*$/\1/p' "$work/report.json")
[[ -n $leaked ]] || die "the exit report has no leaked_blocks: $(head -c 300 "$work/report.json")"
# Log mode writes one record per event; in the text format (selected by
# MALLOCATOR_LOG_FORMAT=fd where the default is the binary one) each
# allocation's record starts with '+++ ALLOC:'.
tracked_allocs=$(cd "$work" && MALLOCATOR_LOG=stderr MALLOCATOR_LOG_FORMAT=fd \
    "$rg_tracked" -j1 "${RG_ARGS[@]}" 2>&1 >/dev/null | awk 'index($0, "+++ ALLOC:") == 1 { n++ } END { print n + 0 }')
(cd "$work" && heaptrack -o "$work/count" "$rg_plain" -j1 "${RG_ARGS[@]}" >/dev/null 2>&1) ||
    die "heaptrack failed on the plain ripgrep"
heaptrack_allocs=$(heaptrack_print "$work"/count.* 2>/dev/null |
    sed -n 's/^calls to allocation functions: \([0-9]*\).*/\1/p')
[[ -n $heaptrack_allocs ]] || die "heaptrack_print gave no allocation count"
awk -v a="$tracked_allocs" -v b="$heaptrack_allocs" 'BEGIN { exit !(a > 0 && a > 0.9 * b && a < 1.1 * b) }' ||
    die "the tracker logged $tracked_allocs allocations, heaptrack counted $heaptrack_allocs: not the same program's"

# 6. The table.
load_start=$(load_now)
row "mallocator tracker (global, frame pointers)" "$RUNS" "$rg_tracked"
row "mallocator tracker + leak report at exit" "$RUNS" env MALLOCATOR_LEAKS="$work/leaks.txt" "$rg_tracked"
row "mallocator tracker, no stacks on free" "$RUNS" env MALLOCATOR_FREE_STACKS=0 "$rg_tracked"
row "heaptrack" "$RUNS" heaptrack -o "$work/heaptrack" "$rg_plain"
row "valgrind memcheck --leak-check=full" "$SLOW_RUNS" \
    valgrind --tool=memcheck --leak-check=full --log-file="$work/memcheck.log" "$rg_plain"

shown=$(printf ' %q' "${RG_ARGS[@]}")
echo "ripgrep $RG_VERSION: rg -j<threads>${shown//"$root"/\$ROOT} >/dev/null"
echo "\$ROOT: $root"
echo "\$ROOT/corpus: ripgrep $RG_VERSION's source and the sources its Cargo.lock pins, $files files, $mib MiB; $matches matches"
echo "allocations per run (1 thread): $tracked_allocs logged by the tracker, $heaptrack_allocs counted by heaptrack; the tracker's exit report: $leaked blocks never freed"
echo "$RUNS runs per row ($SLOW_RUNS for memcheck), each paired with a plain run; time: median; slowdown: median of the per-pair ratios"
echo "load average (1, 5, 15 min): $load_start at the start, $(load_now) at the end; $(nproc) cores"
echo
print_table
