//! The churn workload under the backtracing tracker as global allocator.
//! `MALLOCATOR_LEAKS=stderr` prints the leak report at exit.
//! See `scripts/bench-leak-tracking.sh`.

// The workload is compiled into each program, not linked from a library
// crate: linked, the tracked program counted 68 more instructions per
// alloc/free pair under callgrind (1189 against 1121), which would shift
// the figures measured with it compiled in.
#[path = "../churn.rs"]
mod churn;

use mallocator::backtracing::GlobalBacktracing;

#[global_allocator]
static GLOBAL: GlobalBacktracing = GlobalBacktracing::new();

fn main() {
    let pairs = churn::run();
    // CHURN_HOLD=n keeps n more 32-byte blocks live, to measure the
    // bookkeeping per live block.
    let held: Vec<Box<[u8; 32]>> = (0..std::env::var("CHURN_HOLD")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0usize))
        .map(|_| Box::new([0u8; 32]))
        .collect();
    if std::env::var_os("CHURN_STATS").is_some() {
        let t = GLOBAL.tracker();
        let m = t.metadata();
        let (mode, why) = t.stack_mode();
        eprintln!(
            "pairs {pairs} live_blocks {} live_bytes {} peak_bytes {} record_bytes {} \
             table_bytes {} ({:.1} per live block) stacks {} stack_bytes {} mode {mode:?} ({why})",
            m.live_blocks,
            t.live_bytes(),
            t.peak_bytes(),
            m.record_bytes,
            m.live_table_bytes,
            m.live_table_bytes as f64 / m.live_blocks.max(1) as f64,
            m.stacks,
            m.stack_bytes
        );
    }
    drop(held);
}
