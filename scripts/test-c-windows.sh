#!/usr/bin/env bash
# Tests the mallocator C library on Windows (x86_64-pc-windows-gnu) under
# Wine: builds mallocator.dll and its import library with cargo, checks
# the headers with MinGW (C99, C11 and the layout asserts), builds the C
# test programs (crates/mallocator-c/tests/c/test_*.c; their POSIX-only
# parts are left out under _WIN32) against the import library, and runs
# each under Wine next to the DLL. fd_leak.c also runs, piped into the
# Linux `mallocator leaks`: the log format is the same on Windows.
#
#   bash scripts/test-c-windows.sh
#
# Reuses scripts/test-windows.sh's Wine setup (scripts/windows/wine-env.sh).
# Installs what it needs on Debian (MinGW, Wine, the rustup target). Ends
# with "N passed, M failed"; exits 1 if a check failed.
set -euo pipefail

TARGET=x86_64-pc-windows-gnu

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/c-common.sh
source scripts/c-common.sh

die() {
    echo "test-c-windows: $*" >&2
    exit 1
}

# --- tools -----------------------------------------------------------------
c_apt_install gcc-mingw-w64-x86-64 wine64 python3
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"

target_dir=$(c_target_dir)
[[ -n $target_dir ]] || die "cannot find cargo's target directory"
# shellcheck source=scripts/windows/wine-env.sh
source scripts/windows/wine-env.sh
wine_setup "$target_dir/wine"

crate=crates/mallocator-c
include=$crate/include
tests_dir=$crate/tests/c
tests=(test_valloc test_arena test_tracker test_errors test_fd_valloc)
lib=$target_dir/$TARGET/release
work=$target_dir/c-tests-windows
rm -rf "$work"
mkdir -p "$work"
c_checks_init "$work"

# --- build -------------------------------------------------------------------
echo "== building mallocator.dll ($TARGET, release)"
c_build_release --target "$TARGET"
cargo build --release -p mallocator-cli
[[ -f $lib/mallocator.dll ]] || die "cargo did not produce $lib/mallocator.dll"
[[ -f $lib/libmallocator.dll.a ]] || die "cargo did not produce the import library $lib/libmallocator.dll.a"
# The programs find the DLL next to them.
cp "$lib/mallocator.dll" "$work/"

exports_all() {
    # The DLL exports every function the headers declare.
    local declared exported
    declared=$(cat "$include"/*.h | grep -oE '\b(mlc|fd)_[a-z_]+\(' | tr -d '(' | sort -u)
    exported=$(x86_64-w64-mingw32-objdump -p "$lib/mallocator.dll" |
        grep -oE '\b(mlc|fd)_[a-z_]+$' | sort -u)
    diff <(printf '%s\n' "$declared") <(printf '%s\n' "$exported")
}
check "mallocator.dll exports exactly the declared functions" exports_all

# --- headers -----------------------------------------------------------------
strict=(-Wall -Wextra -Werror -pedantic)
for std in c99 c11; do
    check "headers: $MINGW_CC -std=$std" \
        "$MINGW_CC" -std=$std "${strict[@]}" -I"$include" -c "$tests_dir/headers/headers.c" -o "$work/h.o"
done
check "layout: $MINGW_CC -std=c11 (_Static_assert)" \
    "$MINGW_CC" -std=c11 "${strict[@]}" -I"$include" -c "$tests_dir/headers/layout.c" -o "$work/l.o"

# --- the test programs, linked against the import library --------------------
echo "== C tests under Wine"
cflags=(-std=c99 "${strict[@]}" -g -O1 -fno-omit-frame-pointer -I"$include" -I"$tests_dir")
for t in "${tests[@]}"; do
    check "$t: $MINGW_CC, mallocator.dll" "$MINGW_CC" "${cflags[@]}" -o "$work/$t.exe" "$tests_dir/$t.c" \
        "$lib/libmallocator.dll.a"
    check "$t: under Wine" run_test "$work/$t.exe" "$wine"
done
# The programs really depend on the DLL (not a static copy).
imports_dll() {
    x86_64-w64-mingw32-objdump -p "$work/test_valloc.exe" | grep -F 'DLL Name: mallocator.dll'
}
check "test programs import mallocator.dll" imports_dll

# fd_leak: the backtracing log written on Windows, read by mallocator leaks.
fd_leak_windows() {
    local json=$work/leaks.json
    "$wine" "$work/fd_leak.exe" | tr -d '\r' | "$target_dir/release/mallocator" leaks --json >"$json"
    python3 - "$json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
print("leaked_bytes", report["leaked_bytes"], "leaked_blocks", report["leaked_blocks"])
assert (report["leaked_bytes"], report["leaked_blocks"]) == (800, 4), "expected 800 bytes in 4 blocks"
assert sorted((g["bytes"], g["count"]) for g in report["groups"]) == [(300, 3), (500, 1)]
print("ok")
EOF
}
check "fd_leak: $MINGW_CC" "$MINGW_CC" -std=c99 "${strict[@]}" -g -O1 -I"$include" -o "$work/fd_leak.exe" \
    "$tests_dir/fd_leak.c" "$lib/libmallocator.dll.a"
check "fd_leak.exe (Wine) | mallocator leaks --json" fd_leak_windows

c_checks_summary
