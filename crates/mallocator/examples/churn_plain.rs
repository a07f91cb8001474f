//! The churn workload on the system allocator (the baseline; also what
//! heaptrack and Valgrind run). See `scripts/bench-leak-tracking.sh`.

#[path = "churn/workload.rs"]
mod workload;

fn main() {
    workload::run();
}
