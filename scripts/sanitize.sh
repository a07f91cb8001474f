#!/usr/bin/env bash
# Runs the mallocator library's tests (unit and integration tests, not
# doctests) under a sanitizer, with the nightly toolchain.
#
#   scripts/sanitize.sh address      # AddressSanitizer (+ LeakSanitizer)
#   scripts/sanitize.sh thread       # ThreadSanitizer
#   scripts/sanitize.sh thread -- some_test_name   # extra args go to the test binaries
#
# Each sanitizer builds into its own target directory
# ($CARGO_TARGET_DIR or target, then sanitize-<name>), so a sanitizer run
# does not invalidate the normal build, and the two sanitizers do not
# invalidate each other.
#
# The explicit --target keeps build scripts and proc macros (which run on
# the host during the build) uninstrumented: with --target, RUSTFLAGS only
# applies to code built for the target.
#
# The build sets `--cfg mallocator_sanitize="<name>"`, so that a test
# that cannot run meaningfully under one sanitizer can be ignored under
# exactly that one, with #[cfg_attr(mallocator_sanitize = "...", ignore)]
# and a comment saying why (`grep -rn mallocator_sanitize crates` lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/sanitize.sh address|thread [-- TEST-ARGS...]" >&2
  exit 2
}
(($# >= 1)) || usage
sanitizer=$1
shift
if (($# > 0)); then
  [[ $1 == -- ]] || usage
  shift
fi

TARGET=x86_64-unknown-linux-gnu
start=$SECONDS

# RUSTFLAGS replaces the build.rustflags of .cargo/config.toml, so the
# frame pointers the backtracing tracker walks are asked for again here.
flags=(-Zsanitizer="$sanitizer" -C force-frame-pointers=yes --cfg "mallocator_sanitize=\"$sanitizer\"")
build_std=()
case $sanitizer in
  address)
    # detect_leaks: LeakSanitizer checks each test binary at exit, so a
    # test that leaks on purpose must free its block before it ends.
    # halt_on_error: the first report ends the binary with a non-zero
    # status, which fails the run.
    # detect_stack_use_after_return: also catch uses of a returned
    # function's locals (off by default because it costs memory).
    # Options already in the environment come after ours and win.
    options=detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1
    export ASAN_OPTIONS="$options${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    ;;
  thread)
    # ThreadSanitizer must see every synchronisation, including the ones
    # inside the standard library (an uninstrumented std's mutexes and
    # channels look like races), hence -Zbuild-std, which builds std from
    # the rust-src component with the same flags. AddressSanitizer does not
    # need it: it intercepts malloc and free, the tests run clean with the
    # prebuilt std, and not building std saves over a minute.
    build_std=(-Zbuild-std)
    # halt_on_error: the first race ends the binary with a non-zero status.
    # second_deadlock_stack: lock-order reports show both stacks.
    options=halt_on_error=1:second_deadlock_stack=1
    export TSAN_OPTIONS="$options${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
    ;;
  *) usage ;;
esac

# What a fresh machine may lack: the nightly toolchain, and for
# -Zbuild-std the standard library's sources.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ((${#build_std[@]} > 0)); then
  rustup +nightly component add rust-src
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/sanitize-$sanitizer"
export RUSTFLAGS="${flags[*]}"
export RUSTDOCFLAGS="${flags[*]}"
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

echo "sanitize.sh: $sanitizer; RUSTFLAGS=$RUSTFLAGS"
echo "sanitize.sh: ASAN_OPTIONS=${ASAN_OPTIONS-} TSAN_OPTIONS=${TSAN_OPTIONS-}"
status=0
# With the DWARF unwinder (x86-64 Linux, the target here), so that its
# stack reads and its lock run under the sanitizer too.
cargo +nightly test "${build_std[@]}" --no-fail-fast -p mallocator --features dwarf-unwind \
  --target "$TARGET" --lib --tests -- "$@" || status=$?
elapsed=$((SECONDS - start))
printf 'sanitize.sh: %s sanitizer run took %dm%02ds (exit status %d)\n' \
  "$sanitizer" $((elapsed / 60)) $((elapsed % 60)) "$status"
exit "$status"
