#!/usr/bin/env bash
# Tests the mallocator C library (crates/mallocator-c) from C:
#
#   1. header checks: both headers compile as C99 and C11 (gcc, clang) and
#      C++17 (g++, clang++) with -Wall -Wextra -Werror -pedantic; the
#      types' layout (tests/c/headers/layout.c, _Static_assert); every
#      hand-written prototype agrees with its Rust definition (cbindgen
#      declarations compiled after the headers: a mismatch is a
#      "conflicting types" error), and the headers declare exactly the
#      functions the library exports;
#   2. the C test programs (crates/mallocator-c/tests/c/test_*.c) built
#      with gcc and clang, each linked statically (libmallocator.a) and
#      dynamically (libmallocator.so), and run; and test_tracker_cpp.cc,
#      built with g++ and clang++: a C++ function's leak is reported
#      under its demangled name;
#   3. the same built with -fsanitize=address,undefined and run with leak
#      detection; then each run under Valgrind memcheck (no error, no
#      definite leak);
#   4. fd_leak.c, a program written against fd_valloc, piped into
#      `mallocator leaks --json --symbolize`: the planted leak (800 bytes
#      in 4 blocks, from two named functions) must be found;
#   5. scripts/install-c.sh into temporary prefixes, then examples/c built
#      through pkg-config (dynamically and really statically, checked with
#      ldd) and through its Makefile, and run.
#
#   bash scripts/test-c.sh
#
# Installs what it needs on Debian (clang, valgrind, pkg-config, ...;
# cbindgen with cargo install). Every check counts; the script goes on
# after a failure, prints each failure's log, ends with the line
# "N passed, M failed", and exits 1 if anything failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/c-common.sh
source scripts/c-common.sh

crate=crates/mallocator-c
include=$crate/include
tests_dir=$crate/tests/c
tests=(test_valloc test_arena test_tracker test_errors test_fd_valloc)

# --- tools -----------------------------------------------------------------
c_apt_install gcc g++ clang make pkg-config valgrind python3 binutils libc-bin
export PATH="$HOME/.cargo/bin:$PATH" # where cargo install puts cbindgen
command -v cbindgen >/dev/null || cargo install cbindgen --locked

target_dir=$(c_target_dir)
lib=$target_dir/release
work=$target_dir/c-tests
rm -rf "$work"
mkdir -p "$work"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

c_checks_init "$work"

# --- build -------------------------------------------------------------------
echo "== building libmallocator and the mallocator CLI (release)"
c_build_release --quiet
cargo build --release -p mallocator-cli
echo "native libraries for a static link: $MLC_NATIVE_LIBS"
# shellcheck disable=SC2206 # one word per library
native=($MLC_NATIVE_LIBS)

# --- 1. headers --------------------------------------------------------------
echo "== header checks"
strict=(-Wall -Wextra -Werror -pedantic)
for cc in gcc clang; do
    for std in c99 c11; do
        check "headers: $cc -std=$std" \
            "$cc" -std=$std "${strict[@]}" -Wstrict-prototypes -I"$include" -c "$tests_dir/headers/headers.c" -o "$work/h.o"
    done
    check "layout: $cc -std=c11 (_Static_assert)" \
        "$cc" -std=c11 "${strict[@]}" -I"$include" -c "$tests_dir/headers/layout.c" -o "$work/l.o"
done
for cxx in g++ clang++; do
    check "headers: $cxx -std=c++17" \
        "$cxx" -std=c++17 "${strict[@]}" -I"$include" -x c++ -c "$tests_dir/headers/headers.c" -o "$work/h.o"
done

# The prototypes against the Rust definitions.
gen=$work/gen
mkdir -p "$gen"
check "cbindgen: declarations generated from the Rust source" \
    cbindgen --quiet --config "$crate/cbindgen.toml" --output "$gen/mallocator_generated.h" "$crate"
for cc in gcc clang; do
    check "signatures: headers agree with the Rust definitions ($cc)" \
        "$cc" -std=c11 "${strict[@]}" -I"$include" -I"$gen" -c "$tests_dir/headers/signatures.c" -o "$work/s.o"
done
# The check must be able to fail: a prototype changed in the generated
# declarations (size_t -> unsigned) must be rejected.
changed_prototype() {
    mkdir -p "$gen/bad"
    sed 's/^size_t mlc_arena_used(/unsigned mlc_arena_used(/' "$gen/mallocator_generated.h" >"$gen/bad/mallocator_generated.h"
    grep -q '^unsigned mlc_arena_used(' "$gen/bad/mallocator_generated.h" || { echo "sed changed nothing"; return 1; }
    refute gcc -std=c11 "${strict[@]}" -I"$include" -I"$gen/bad" -c "$tests_dir/headers/signatures.c" -o "$work/s.o"
}
check "signatures: a disagreeing prototype is caught" changed_prototype
# The headers declare exactly the exported functions.
same_functions() {
    local declared exported
    declared=$(cat "$include"/*.h | grep -oE '\b(mlc|fd)_[a-z_]+\(' | tr -d '(' | sort -u)
    exported=$(grep -oE '\b(mlc|fd)_[a-z_]+\(' "$gen/mallocator_generated.h" | tr -d '(' | sort -u)
    echo "declared: $(wc -l <<<"$declared"), exported: $(wc -l <<<"$exported")"
    diff <(printf '%s\n' "$declared") <(printf '%s\n' "$exported")
    [[ $(wc -l <<<"$exported") -ge 35 ]]
    # And the shared library exports them (nm: defined text symbols).
    diff <(printf '%s\n' "$exported") \
        <(nm -D --defined-only "$lib/libmallocator.so" | awk '$2 == "T" {print $3}' | grep -E '^(mlc|fd)_' | sort -u)
}
check "the headers declare exactly the exported functions" same_functions

# --- 2. the test programs, static and dynamic, gcc and clang ---------------
echo "== C tests"
# Frame pointers, as the README advises C users of the tracker: its stack
# walk follows them, and through frames without one it reads stack slots
# that are not frame records (harmless, but Valgrind reports the reads as
# uses of uninitialised values).
cflags=(-std=c99 -D_POSIX_C_SOURCE=200809L "${strict[@]}" -g -O1 -fno-omit-frame-pointer -I"$include" -I"$tests_dir")
for cc in gcc clang; do
    for t in "${tests[@]}"; do
        check "$t: $cc, static" "$cc" "${cflags[@]}" -o "$work/$t.$cc.static" "$tests_dir/$t.c" \
            "$lib/libmallocator.a" -lpthread "${native[@]}"
        check "$t: $cc, static, run" run_test "$work/$t.$cc.static"
        check "$t: $cc, dynamic" "$cc" "${cflags[@]}" -o "$work/$t.$cc.dynamic" "$tests_dir/$t.c" \
            -L"$lib" -lmallocator -Wl,-rpath,"$lib" -lpthread
        check "$t: $cc, dynamic, run" run_test "$work/$t.$cc.dynamic"
    done
done
# From C++: the tracker's report names a C++ function demangled, with its
# parameter types.
cxxflags=(-std=c++17 "${strict[@]}" -g -O1 -fno-omit-frame-pointer -I"$include" -I"$tests_dir")
for cxx in g++ clang++; do
    check "test_tracker_cpp: $cxx, dynamic" "$cxx" "${cxxflags[@]}" -o "$work/test_tracker_cpp.$cxx" \
        "$tests_dir/test_tracker_cpp.cc" -L"$lib" -lmallocator -Wl,-rpath,"$lib" -lpthread
    check "test_tracker_cpp: $cxx, dynamic, run" run_test "$work/test_tracker_cpp.$cxx"
done
# The dynamic builds really use the shared library, the static ones not.
linkage() {
    ldd "$work/test_valloc.gcc.dynamic" | grep -F "$lib/libmallocator.so"
    ldd "$work/test_valloc.gcc.static" >"$work/ldd.txt"
    refute grep -F libmallocator "$work/ldd.txt"
}
check "linkage: dynamic builds load libmallocator.so, static ones do not" linkage

# --- 3. sanitizers and Valgrind -----------------------------------------------
echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
# Dynamic link: the library (not instrumented) is loaded by the
# instrumented program; ASan's malloc replaces the C library's for both.
# shellcheck disable=SC2054 # the commas belong to the option
san=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
no_sanitizer_report() {
    local log=$work/san.$RANDOM.txt status=0
    run_test "$@" >"$log" 2>&1 || status=$?
    cat "$log"
    ((status == 0)) || return 1
    refute grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log"
}
for cc in gcc clang; do
    for t in "${tests[@]}"; do
        check "$t: $cc, ASan+UBSan" "$cc" "${cflags[@]}" "${san[@]}" -o "$work/$t.$cc.asan" "$tests_dir/$t.c" \
            -L"$lib" -lmallocator -Wl,-rpath,"$lib" -lpthread
        check "$t: $cc, ASan+UBSan, run" no_sanitizer_report "$work/$t.$cc.asan"
    done
done
unset ASAN_OPTIONS UBSAN_OPTIONS

echo "== Valgrind memcheck"
# Errors and definite leaks fail; what the library keeps for the whole
# process (thread-local error messages, the fd_backtracing trackers) must
# be reachable, not lost.
vg=(valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --track-origins=yes --quiet)
for t in "${tests[@]}"; do
    check "$t: Valgrind (gcc, static)" run_test "$work/$t.gcc.static" "${vg[@]}"
done

# --- 4. fd_leak | mallocator leaks ----------------------------------------
echo "== fd_leak | mallocator leaks"
leaks_found() {
    local exe=$1 json=$work/leaks.$RANDOM.json
    "$exe" | "$lib/mallocator" leaks --json --symbolize >"$json"
    python3 - "$json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
print("leaked_bytes", report["leaked_bytes"], "leaked_blocks", report["leaked_blocks"])
assert (report["leaked_bytes"], report["leaked_blocks"]) == (800, 4), "expected 800 bytes in 4 blocks"
groups = {(g["bytes"], g["count"]): g["frames"] for g in report["groups"]}
print("groups", sorted(groups))
assert sorted(groups) == [(300, 3), (500, 1)], "expected groups 3 x 100 and 1 x 500"
def named(frames, fn):
    # Frame objects (docs/report-schema.md): symbolized, or the log's symbol.
    return any(f.get("function") == fn for f in frames)
assert named(groups[(300, 3)], "leak_parse_headers"), groups[(300, 3)]
assert named(groups[(500, 1)], "leak_load_config"), groups[(500, 1)]
assert not named(groups[(300, 3)], "leak_load_config")
counts = report["error_counts"]
assert all(v == 0 for v in counts.values()), counts
print("ok")
EOF
}
for cc in gcc clang; do
    check "fd_leak: $cc, static" "$cc" -std=c99 "${strict[@]}" -g -O1 -fno-omit-frame-pointer -I"$include" -o "$work/fd_leak.$cc" \
        "$tests_dir/fd_leak.c" "$lib/libmallocator.a" "${native[@]}"
    check "fd_leak: $cc | mallocator leaks --json --symbolize" leaks_found "$work/fd_leak.$cc"
done
check "fd_leak: dynamic" gcc -std=c99 "${strict[@]}" -g -O1 -fno-omit-frame-pointer -I"$include" -o "$work/fd_leak.dynamic" \
    "$tests_dir/fd_leak.c" -L"$lib" -lmallocator -Wl,-rpath,"$lib"
check "fd_leak: dynamic | mallocator leaks --json --symbolize" leaks_found "$work/fd_leak.dynamic"

# --- 5. install, pkg-config, examples/c ----------------------------------------
echo "== install-c.sh, pkg-config and examples/c"
dyn_prefix=$tmp/prefix
static_prefix=$tmp/prefix-static
check "install-c.sh $dyn_prefix" bash scripts/install-c.sh "$dyn_prefix"
# A second prefix without the shared library: there -lmallocator can only
# mean libmallocator.a.
# shellcheck disable=SC2016 # expanded by the inner shell
check "install-c.sh $static_prefix (archive only)" \
    bash -c 'bash scripts/install-c.sh "$1" && rm "$1/lib/libmallocator.so"' _ "$static_prefix"

installed() {
    local f
    for f in include/mallocator.h include/fd_valloc.h lib/libmallocator.a lib/libmallocator.so \
        lib/pkgconfig/mallocator.pc; do
        [[ -f $dyn_prefix/$f ]] || { echo "missing $f"; return 1; }
    done
    cmp "$include/mallocator.h" "$dyn_prefix/include/mallocator.h"
    cmp "$include/fd_valloc.h" "$dyn_prefix/include/fd_valloc.h"
    export PKG_CONFIG_PATH=$dyn_prefix/lib/pkgconfig
    cat "$dyn_prefix/lib/pkgconfig/mallocator.pc"
    pkg-config --validate mallocator
    [[ $(pkg-config --modversion mallocator) == "$(c_version)" ]]
    # (pkg-config ends its output with a space)
    [[ $(pkg-config --cflags mallocator | xargs) == "-I$dyn_prefix/include" ]]
    [[ $(pkg-config --libs mallocator | xargs) == "-L$dyn_prefix/lib -lmallocator" ]]
    pkg-config --static --libs mallocator | grep -F -- '-lpthread'
}
check "installed files and mallocator.pc" installed

# app_output EXE: the example runs and finds its planted leak.
app_output() {
    local out
    out=$("$1")
    printf '%s\n' "$out"
    grep -q '^tracker: 1 block(s), 48 bytes still live$' <<<"$out"
    grep -q '^leaked 48 bytes in 1 block' <<<"$out"
    grep -q 'handle_request' <<<"$out"
    grep -q 'after rollback' <<<"$out"
}
app_dynamic() {
    export PKG_CONFIG_PATH=$dyn_prefix/lib/pkgconfig
    # shellcheck disable=SC2046 # pkg-config's words are separate arguments
    cc examples/c/app.c $(pkg-config --cflags --libs mallocator) -Wl,-rpath,"$dyn_prefix/lib" -o "$work/app.dynamic"
    ldd "$work/app.dynamic" | grep -F "$dyn_prefix/lib/libmallocator.so"
    app_output "$work/app.dynamic"
}
check "examples/c/app.c: cc \$(pkg-config --cflags --libs mallocator), run" app_dynamic
app_static() {
    export PKG_CONFIG_PATH=$static_prefix/lib/pkgconfig
    # shellcheck disable=SC2046
    cc examples/c/app.c $(pkg-config --static --cflags --libs mallocator) -o "$work/app.static"
    ldd "$work/app.static" >"$work/ldd.app.txt"
    refute grep -F libmallocator "$work/ldd.app.txt"
    app_output "$work/app.static"
}
check "examples/c/app.c: cc \$(pkg-config --static --cflags --libs mallocator), run" app_static
app_make() {
    export PKG_CONFIG_PATH=$dyn_prefix/lib/pkgconfig
    rm -rf "$tmp/example"
    cp -r examples/c "$tmp/example"
    make -C "$tmp/example"
    ldd "$tmp/example/app" | grep -F "$dyn_prefix/lib/libmallocator.so"
    make -C "$tmp/example" --no-print-directory run >"$tmp/example/run.txt"
    grep -q '^leaked 48 bytes in 1 block' "$tmp/example/run.txt"
    make -C "$tmp/example" app-static
    ldd "$tmp/example/app-static" >"$tmp/example/ldd.txt"
    refute grep -F libmallocator "$tmp/example/ldd.txt"
    app_output "$tmp/example/app-static"
    make -C "$tmp/example" clean
    [[ ! -e $tmp/example/app && ! -e $tmp/example/app-static ]]
}
check "examples/c/Makefile: make, make run, make app-static, make clean" app_make

c_checks_summary
