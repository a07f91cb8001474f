//! One function, three allocators: code written against a [`Valloc`]
//! handle runs unchanged on the C library's allocator, on an arena and
//! under the backtracing leak tracker.
//!
//! ```text
//! cargo run --example plug_in
//! ```

use allocator_api2::vec::Vec;
use mallocator::backtracing::Backtracing;
use mallocator::{Arena, Sharing, Valloc};

/// Library code that only knows the handle: builds a table of squares in a
/// `Vec` placed by `v`, plus one raw C-style block, and frees both.
/// Works for thread-safe (`Shared`) and single-thread (`Local`) handles.
fn squares_sum<S: Sharing>(v: Valloc<'_, S>, n: u64) -> u64 {
    let mut squares = Vec::new_in(v);
    squares.extend((1..=n).map(|i| i * i));

    // The C interface of the same handle: malloc(align, size) / free(ptr).
    let raw = v.malloc(64, 256);
    assert!(!raw.is_null() && raw as usize % 64 == 0);
    // SAFETY: `raw` is a fresh 256-byte block from `v`.
    unsafe { raw.write_bytes(0xAB, 256) };
    // SAFETY: `raw` came from `v.malloc` and is freed once.
    unsafe { v.free(raw) };

    squares.iter().sum()
}

fn main() {
    let n = 1000;
    let expected = n * (n + 1) * (2 * n + 1) / 6;

    // 1. The C library's allocator (malloc / posix_memalign / free).
    let sum = squares_sum(Valloc::libc(), n);
    println!("libc:        sum of squares 1..={n} = {sum}");
    assert_eq!(sum, expected);

    // 2. A bump arena: frees are free (no-ops but for the last block), and
    //    everything goes at once when the arena is reset or dropped.
    let mut arena = Arena::with_capacity(1 << 20).expect("reserve 1 MiB");
    let sum = squares_sum(arena.valloc(), n);
    println!(
        "arena:       sum of squares 1..={n} = {sum}; arena used {} of {} bytes",
        arena.used(),
        arena.capacity()
    );
    assert_eq!(sum, expected);
    assert!(arena.used() >= 8 * n as usize, "the Vec lived in the arena");
    arena.reset();
    assert_eq!(arena.used(), 0);

    // 3. The leak tracker over libc: same code, and it proves nothing leaked.
    let tracker = Backtracing::new(Valloc::libc());
    let sum = squares_sum(tracker.valloc(), n);
    println!(
        "backtracing: sum of squares 1..={n} = {sum}; live blocks {}, peak {} bytes",
        tracker.live_blocks(),
        tracker.peak_bytes()
    );
    assert_eq!(sum, expected);
    assert_eq!(tracker.live_blocks(), 0, "{}", tracker.report());
    assert!(tracker.peak_bytes() >= 8 * n as usize);
}
