#!/usr/bin/env bash
# Fuzzes the `mallocator leaks` pipeline (parse, analyse, every report and
# the flamegraph) for SECONDS (default 60) with cargo-fuzz on nightly,
# installing cargo-fuzz first if it is missing.
#
#   scripts/fuzz-leaks.sh [SECONDS]
#
# Exits non-zero if the fuzzer finds a crash; the input is then in
# crates/mallocator-cli/fuzz/artifacts/leaks_pipeline/. To keep it as a
# regression test, copy it to fuzz/corpus/leaks_pipeline/crash-<name>
# (tests/fuzz_corpus.rs replays that folder in `cargo test`).
#
# New inputs the fuzzer finds go to a scratch folder, so the committed
# corpus is only read.
set -euo pipefail

seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ ]] || {
    echo "usage: $0 [SECONDS]" >&2
    exit 2
}
cd "$(dirname "${BASH_SOURCE[0]}")/../crates/mallocator-cli"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# -max_len: long enough for a few records with long frames, and for the
# 64 KiB line limit; -timeout: a slow input counts as a failure too.
cargo +nightly fuzz run leaks_pipeline "$scratch" fuzz/corpus/leaks_pipeline -- \
    -max_total_time="$seconds" \
    -max_len=70000 \
    -timeout=20 \
    -dict=fuzz/leaks_pipeline.dict \
    -print_final_stats=1
