//! The churn workload on the system allocator (the baseline; also what
//! heaptrack and Valgrind run). See `scripts/bench-leak-tracking.sh`.

// The workload is compiled into each program, not linked from a library
// crate: linked, the tracked program counted 68 more instructions per
// alloc/free pair under callgrind (1189 against 1121), which would shift
// the figures measured with it compiled in.
#[path = "../churn.rs"]
mod churn;

fn main() {
    churn::run();
}
