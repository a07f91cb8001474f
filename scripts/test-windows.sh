#!/usr/bin/env bash
# Builds the mallocator library's tests (unit and integration test binaries,
# not doctests) for x86_64-pc-windows-gnu and runs them under Wine.
#
#   bash scripts/test-windows.sh [extra libtest arguments, e.g. a filter]
#
# Needs: the rustup target x86_64-pc-windows-gnu, x86_64-w64-mingw32-gcc
# (Debian: gcc-mingw-w64-x86-64) and Wine (Debian: wine64). No display.
#
# Fails when a build fails, when a test binary fails or crashes, and when a
# binary does not print libtest's "test result: ok." summary, or when no
# test at all ran: a run that silently tested nothing is a failure.
set -euo pipefail

TARGET=x86_64-pc-windows-gnu

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

die() {
    echo "test-windows: $*" >&2
    exit 1
}

target_dir=$(cargo metadata --format-version 1 --no-deps |
    grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
[[ -n $target_dir ]] || die "cannot find cargo's target directory"
work=$target_dir/wine

# 1-2. Wine, the ProcessPrng shim DLL and the Wine prefix (shared with
#      scripts/test-c-windows.sh).
# shellcheck source=scripts/windows/wine-env.sh
source scripts/windows/wine-env.sh
wine_setup "$work"

# 3. Build the test binaries and collect their paths from cargo's JSON
#    messages (artifacts built with the test profile and an executable).
build_log=$work/build.json
cargo test -p mallocator --target "$TARGET" --lib --tests --no-run \
    --message-format=json-render-diagnostics >"$build_log"
mapfile -t binaries < <(
    grep '"reason":"compiler-artifact"' "$build_log" |
        grep -E '"profile":\{[^}]*"test":true' |
        grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | sort -u
)
((${#binaries[@]} > 0)) || die "cargo built no test binary"

# 4. Run each binary (from the crate directory, as cargo does) and check
#    libtest's summary line.
total=0
for exe in "${binaries[@]}"; do
    name=$(basename "$exe")
    echo "test-windows: running $name under Wine"
    log=$work/${name%.exe}.log
    status=0
    (cd crates/mallocator && "$wine" "$exe" "$@" </dev/null 2>&1) | tee "$log" || status=$?
    ((status == 0)) || die "$name failed (exit status $status)"
    summary=$(grep -E '^test result: ' "$log" | tail -n 1 || true)
    [[ $summary == "test result: ok. "* ]] || die "$name printed no passing libtest summary"
    passed=$(sed -E 's/^test result: ok\. ([0-9]+) passed.*/\1/' <<<"$summary")
    total=$((total + passed))
done
((total > 0)) || die "no test ran"
echo "test-windows: ${#binaries[@]} test binaries, $total tests passed under Wine"
