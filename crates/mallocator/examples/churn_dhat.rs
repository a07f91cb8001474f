//! The churn workload under dhat-rs as global allocator (its heap
//! profile, with leaks, goes to `dhat-heap.json` at exit).
//! See `scripts/bench-leak-tracking.sh`.

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[path = "churn/workload.rs"]
mod workload;

fn main() {
    let _profiler = dhat::Profiler::builder().trim_backtraces(Some(32)).build();
    workload::run();
}
