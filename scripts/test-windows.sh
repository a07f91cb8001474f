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
MINGW_CC=${MINGW_CC:-x86_64-w64-mingw32-gcc}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

die() {
    echo "test-windows: $*" >&2
    exit 1
}

# The Wine loader: the 64-bit one directly when Debian's layout is there
# (the /usr/bin/wine wrapper prefers a 32-bit Wine and nags without one).
if [[ -x /usr/lib/wine/wine64 ]]; then
    wine=/usr/lib/wine/wine64
    export WINELOADER=$wine
elif command -v wine64 >/dev/null; then
    wine=$(command -v wine64)
elif command -v wine >/dev/null; then
    wine=$(command -v wine)
else
    die "Wine not found (Debian: apt-get install wine64)"
fi
command -v "$MINGW_CC" >/dev/null || die "$MINGW_CC not found (Debian: apt-get install gcc-mingw-w64-x86-64)"

target_dir=$(cargo metadata --format-version 1 --no-deps |
    grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
[[ -n $target_dir ]] || die "cannot find cargo's target directory"
work=$target_dir/wine

# 1. The ProcessPrng shim: Rust's std imports it from bcryptprimitives.dll,
#    which the packaged Wine lacks.
shim_src=$root/scripts/windows/bcryptprimitives.c
shim_dir=$work/dlls
shim=$shim_dir/bcryptprimitives.dll
mkdir -p "$shim_dir"
if [[ ! -f $shim || $shim_src -nt $shim ]]; then
    "$MINGW_CC" -shared -O2 -Wall -Werror -o "$shim.tmp" "$shim_src" -ladvapi32
    mv "$shim.tmp" "$shim"
fi

# 2. A private, quiet Wine prefix inside the target directory. Creating it
#    takes a few seconds the first time; mono/gecko installers are disabled
#    so that nothing asks questions, and no display is needed.
export WINEPREFIX=$work/prefix
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d"
export WINEPATH="Z:${shim_dir//\//\\}"
unset DISPLAY WAYLAND_DISPLAY
# wineboot now and then fails on a fresh prefix ("could not load
# kernel32.dll", seen once in a clean CI run and not reproducible): try up
# to three times, each time from an empty prefix, and wait for the Wine
# server to finish writing the prefix.
wineserver=$(dirname "$wine")/wineserver
[[ -x $wineserver ]] || wineserver=$(command -v wineserver || true)
attempt=0
while [[ ! -f $WINEPREFIX/system.reg ]]; do
    attempt=$((attempt + 1))
    ((attempt <= 3)) || { cat "$work/wineboot.log" >&2; die "wineboot failed 3 times"; }
    echo "test-windows: creating the Wine prefix $WINEPREFIX (attempt $attempt)"
    rm -rf "$WINEPREFIX"
    mkdir -p "$WINEPREFIX"
    if "$wine" wineboot --init </dev/null >"$work/wineboot.log" 2>&1; then
        [[ -z $wineserver ]] || "$wineserver" -w || true
    else
        [[ -z $wineserver ]] || "$wineserver" -k || true
        rm -rf "$WINEPREFIX"
    fi
done

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
