//! The churn workload under dhat-rs as global allocator (its heap
//! profile, with leaks, goes to `dhat-heap.json` at exit).
//! See `scripts/bench-leak-tracking.sh`.

// The workload is compiled into each program, not linked from a library
// crate: linked, the tracked program counted 68 more instructions per
// alloc/free pair under callgrind (1189 against 1121), which would shift
// the figures measured with it compiled in.
#[path = "../churn.rs"]
mod churn;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let _profiler = dhat::Profiler::builder().trim_backtraces(Some(32)).build();
    churn::run();
}
