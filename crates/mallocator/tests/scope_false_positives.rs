//! Scoped leak checks and memory the runtime keeps for good: the first
//! `println!` (stdout's buffer), a thread-local's first use, output
//! captured by a harness, a vector made before the scope and grown in it.
//! None is a leak of the scope; a block forgotten in the same scope is.
//!
//! A program of its own (`harness = false`): its `main` makes the
//! process's very first `println!` inside a scope, which a test harness,
//! printing before any test runs, could not.

use std::cell::RefCell;
use std::io::Write;
use std::sync::Mutex;

use mallocator::backtracing::GlobalBacktracing;

#[global_allocator]
static GLOBAL: GlobalBacktracing = GlobalBacktracing::new();

std::thread_local! {
    static SEEN: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// What a test harness does with a test's output: a buffer it keeps.
static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

#[inline(never)]
fn forget_a_block(n: usize) {
    std::mem::forget(vec![1u8; n]);
}

/// Runs `body` in a scope; returns the bytes the scope reports.
fn leaked_in(body: impl FnOnce()) -> (usize, usize) {
    let scope = GLOBAL.tracker().scope();
    body();
    let leaks = scope.leaks();
    (leaks.leaked_blocks, leaks.leaked_bytes)
}

fn main() {
    if cfg!(miri) || !cfg!(target_os = "linux") {
        // The scan needs the loader's list of the process's static data,
        // which only Linux gives here (and Miri has no process).
        summary(0);
        return;
    }
    // The process's first println!: stdout's line buffer, kept in a static.
    assert_eq!(
        leaked_in(|| println!("scope_false_positives: first line")),
        (0, 0)
    );
    // A thread-local's first use: its vector, reachable from the thread's TLS.
    assert_eq!(leaked_in(|| SEEN.with(|s| s.borrow_mut().push(7))), (0, 0));
    // Output kept by a "harness": a static's buffer, grown in the scope.
    assert_eq!(
        leaked_in(|| CAPTURED.lock().unwrap().extend_from_slice(&[b'x'; 300])),
        (0, 0)
    );
    // A vector made before the scope and grown inside it.
    let mut grown: Vec<u8> = Vec::with_capacity(8);
    assert_eq!(leaked_in(|| grown.extend_from_slice(&[0; 1000])), (0, 0));
    // Each of those next to a real leak: only the leak is reported.
    let leaked = leaked_in(|| {
        println!("scope_false_positives: another line");
        SEEN.with(|s| s.borrow_mut().extend(0..100));
        grown.extend_from_slice(&[1; 5000]);
        forget_a_block(123);
    });
    assert_eq!(leaked, (1, 123));
    // A vector made inside the scope and grown there is still the scope's.
    assert_eq!(
        leaked_in(|| {
            let mut v: Vec<u8> = Vec::with_capacity(4);
            v.extend_from_slice(&[0; 500]);
            std::mem::forget(v);
        }),
        (1, 500)
    );
    drop(grown);
    std::io::stdout().flush().unwrap();
    summary(6);
}

/// The last line libtest would print, for test runners that read it
/// (`scripts/test-windows.sh` counts the tests of every binary by it).
fn summary(passed: usize) {
    println!("test result: ok. {passed} passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}
