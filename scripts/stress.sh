#!/usr/bin/env bash
# Stress tests of the backtracing tracker (Linux): many threads freeing
# each other's blocks, thread churn with allocating TLS destructors, fork
# while other threads allocate, tiny thread stacks, and signal handlers
# on an alternate stack. They are `#[ignore]`d in the normal test run;
# this runs them in release mode, one at a time.
#
#   scripts/stress.sh            all of them
#   scripts/stress.sh fork       those whose name contains "fork"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
filter=${1:-stress_}
start=$SECONDS
cargo test --release -p mallocator --test hostile -- --ignored --test-threads=1 \
    --skip child_process_entry "$filter"
echo "stress tests passed in $((SECONDS - start)) s"
