//! Hunting a leak: a small program with a deliberate leak runs with its
//! allocations going through the backtracing tracker, which then prints
//! every never-freed block grouped by the stack that allocated it, with
//! function, file and line.
//!
//! ```text
//! cargo run --example leak_hunt
//! ```
//!
//! Stacks are cheapest with frame pointers
//! (`RUSTFLAGS="-C force-frame-pointers=yes"`); without them the tracker
//! falls back to unwinding, which is slower but gives the same report.

use allocator_api2::vec::Vec;
use mallocator::backtracing::{Backtracing, Config};
use mallocator::Valloc;

/// A session record; `load_sessions` forgets to free some of them.
struct Session<'a> {
    id: u32,
    name: Vec<u8, Valloc<'a>>,
}

/// Builds a session's name in memory from `v`.
#[inline(never)]
fn new_session(v: Valloc<'_>, id: u32) -> Session<'_> {
    let text = format!("session-{id:04}");
    let mut name = Vec::with_capacity_in(text.len(), v);
    name.extend_from_slice(text.as_bytes());
    Session { id, name }
}

/// The bug: sessions with an odd id are "parked" with `mem::forget`
/// instead of being dropped, so their names are never freed.
#[inline(never)]
fn load_sessions(v: Valloc<'_>, count: u32) -> usize {
    let mut kept = 0;
    for id in 0..count {
        let session = new_session(v, id);
        if session.id % 2 == 1 {
            std::mem::forget(session); // <- the leak
        } else {
            kept += session.name.len();
        }
    }
    kept
}

/// Correct code: everything it allocates is freed.
#[inline(never)]
fn well_behaved(v: Valloc<'_>) -> u64 {
    let mut xs = Vec::new_in(v);
    xs.extend(0..1000u64);
    xs.iter().sum()
}

fn main() {
    // 16 frames are plenty for this program (the default is 32).
    let config = Config {
        depth: 16,
        ..Config::DEFAULT
    };
    let tracker = Backtracing::with_config(Valloc::libc(), config);
    let (mode, why) = tracker.stack_mode();
    println!("stack capture: {mode:?} ({why})");

    let v = tracker.valloc();
    // `black_box`: a loop of a known count would be unrolled, giving each
    // iteration its own call site, hence its own stack.
    let kept = load_sessions(v, std::hint::black_box(10));
    let sum = well_behaved(v);
    println!("program done: {kept} bytes of names kept, checksum {sum}");

    let report = tracker.report();
    println!(
        "\nlive blocks: {}, live bytes: {}, peak bytes: {}",
        tracker.live_blocks(),
        tracker.live_bytes(),
        tracker.peak_bytes()
    );
    println!("{report}");

    // The tracker found exactly the deliberate leak: 5 names of 12 bytes,
    // all allocated from `new_session`, called by `load_sessions`.
    assert_eq!(report.leaked_blocks, 5);
    assert_eq!(report.leaked_bytes, 5 * "session-0001".len());
    assert_eq!(report.groups.len(), 1);
    let frames = &report.groups[0].frames;
    let shown = |f: &str| {
        frames.iter().any(|frame| {
            frame
                .function
                .as_deref()
                .is_some_and(|name| name.contains(f))
                && frame
                    .file
                    .as_deref()
                    .is_some_and(|file| file.ends_with("leak_hunt.rs"))
                && frame.line.is_some()
        })
    };
    assert!(shown("new_session") && shown("load_sessions"), "{report}");
}
