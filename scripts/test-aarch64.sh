#!/usr/bin/env bash
# Linux on 64-bit ARM: the workspace passes clippy for
# aarch64-unknown-linux-gnu, and the tests of the library and the C
# library run there, under qemu-user's emulation of that processor (the
# frame-pointer walk through `x29`, the register and stack reads in
# inline assembly, signal handlers on an alternate stack).
#
#   bash scripts/test-aarch64.sh [extra libtest arguments, e.g. a filter]
#
# Needs: the rustup target aarch64-unknown-linux-gnu, a cross C toolchain
# and C library (Debian: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross) and
# qemu-user. The tests that start this test binary again as a child run it
# through the same emulator (MALLOCATOR_TEST_RUNNER); the ones that need an
# address-space limit say they are skipped (qemu-user ignores the limit).
# What emulation does not show: the processor's weaker memory ordering
# (qemu runs the threads with the host's), so the x86-64 runs under
# ThreadSanitizer remain the check of the atomics.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu
for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
    command -v "$tool" >/dev/null || {
        echo "test-aarch64: needs $tool (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)" >&2
        exit 2
    }
done
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $SYSROOT"
export MALLOCATOR_TEST_RUNNER=$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER

echo "cargo clippy --target $TARGET"
cargo clippy --workspace --all-targets --target "$TARGET" -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test -p mallocator -p mallocator-c --target "$TARGET" -- "$@" 2>&1 | tee "$log"
# cargo fails on a failed or crashed test; a run that tested nothing fails too.
passed=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$log" | awk '{ n += $1 } END { print n + 0 }')
((passed > 0)) || { echo "test-aarch64: no test ran" >&2; exit 1; }
echo "test-aarch64: $passed tests passed under qemu-aarch64"
