//! The allocation loops that `scripts/callgrind.sh` counts with callgrind:
//! each `loop_*` function allocates `2 * n` blocks (two per iteration) and
//! is `#[inline(never)]` so that `--toggle-collect=loop_*` counts exactly
//! the loop. Usable on its own too: `cargo run --release -p
//! mallocator-harness --bin callgrind -- 1000000` runs every loop once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use mallocator::{Arena, CommitPolicy};

/// Runtime sizes and alignments, cycled (indexed by the iteration).
static SIZES: [usize; 8] = [8, 16, 24, 32, 40, 48, 56, 64];
static ALIGNS: [usize; 4] = [1, 8, 16, 8];

#[inline(never)]
fn loop_empty_u64(n: usize) {
    for i in 0..n as u64 {
        black_box(i);
        black_box(i + 1);
    }
}

#[inline(never)]
fn loop_arena_u64(arena: &Arena, n: usize) {
    for i in 0..n as u64 {
        black_box(arena.alloc(i));
        black_box(arena.alloc(i + 1));
    }
}

#[inline(never)]
fn loop_bumpalo_u64(bump: &bumpalo::Bump, n: usize) {
    for i in 0..n as u64 {
        black_box(bump.alloc(i));
        black_box(bump.alloc(i + 1));
    }
}

#[inline(never)]
fn loop_system_u64(n: usize) {
    let layout = Layout::new::<u64>();
    for i in 0..n as u64 {
        // SAFETY: a non-zero layout; the blocks are leaked on purpose (an
        // arena never frees either), and written only when non-null.
        unsafe {
            let a = System.alloc(layout).cast::<u64>();
            if !a.is_null() {
                a.write(i);
            }
            let b = System.alloc(layout).cast::<u64>();
            if !b.is_null() {
                b.write(i + 1);
            }
            black_box(a);
            black_box(b);
        }
    }
}

/// The request of iteration `i`, second block: (size, align).
#[inline(always)]
fn request(i: usize) -> (usize, usize) {
    (SIZES[i % SIZES.len()], ALIGNS[i % ALIGNS.len()])
}

#[inline(never)]
fn loop_empty_raw(n: usize) {
    for i in 0..n {
        let (s1, a1) = request(i);
        let (s2, a2) = request(i + 1);
        black_box((black_box(s1), black_box(a1)));
        black_box((black_box(s2), black_box(a2)));
    }
}

#[inline(never)]
fn loop_arena_raw(arena: &Arena, n: usize) {
    for i in 0..n {
        let (s1, a1) = request(i);
        let (s2, a2) = request(i + 1);
        black_box(arena.alloc_raw(black_box(s1), black_box(a1)).ok());
        black_box(arena.alloc_raw(black_box(s2), black_box(a2)).ok());
    }
}

#[inline(never)]
fn loop_bumpalo_raw(bump: &bumpalo::Bump, n: usize) {
    for i in 0..n {
        let (s1, a1) = request(i);
        let (s2, a2) = request(i + 1);
        let l1 = Layout::from_size_align(black_box(s1), black_box(a1)).ok();
        black_box(l1.and_then(|l| bump.try_alloc_layout(l).ok()));
        let l2 = Layout::from_size_align(black_box(s2), black_box(a2)).ok();
        black_box(l2.and_then(|l| bump.try_alloc_layout(l).ok()));
    }
}

#[inline(never)]
fn loop_system_raw(n: usize) {
    for i in 0..n {
        let (s1, a1) = request(i);
        let (s2, a2) = request(i + 1);
        for (s, a) in [
            (black_box(s1), black_box(a1)),
            (black_box(s2), black_box(a2)),
        ] {
            if let Ok(l) = Layout::from_size_align(s, a) {
                // SAFETY: a non-zero layout; leaked on purpose, as above.
                black_box(unsafe { System.alloc(l) });
            }
        }
    }
}

/// Strings of 0 to 60 bytes, cycled.
static WORDS: [&str; 4] = [
    "",
    "arena",
    "mallocator bump arena",
    "a string of sixty bytes, long enough for a memcpy call .....",
];

#[inline(never)]
fn loop_empty_str(n: usize) {
    for i in 0..n {
        black_box(black_box(WORDS[i % 4]).len());
        black_box(black_box(WORDS[(i + 1) % 4]).len());
    }
}

#[inline(never)]
fn loop_arena_str(arena: &Arena, n: usize) {
    for i in 0..n {
        black_box(arena.alloc_str(black_box(WORDS[i % 4])));
        black_box(arena.alloc_str(black_box(WORDS[(i + 1) % 4])));
    }
}

#[inline(never)]
fn loop_bumpalo_str(bump: &bumpalo::Bump, n: usize) {
    for i in 0..n {
        black_box(bump.alloc_str(black_box(WORDS[i % 4])));
        black_box(bump.alloc_str(black_box(WORDS[(i + 1) % 4])));
    }
}

#[inline(never)]
fn loop_system_str(n: usize) {
    for i in 0..n {
        // Leaked on purpose, as above.
        black_box(Box::leak(Box::<str>::from(black_box(WORDS[i % 4]))));
        black_box(Box::leak(Box::<str>::from(black_box(WORDS[(i + 1) % 4]))));
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("usage: callgrind [iterations]"))
        .unwrap_or(1_000_000);
    // Room for every block of every loop (2 * n blocks of at most 64
    // bytes plus padding, three times), committed up front like bumpalo's pre-sized
    // chunk, so that no loop takes a slow path.
    let room = 2 * n * 256 + (1 << 20);
    let arena = Arena::builder()
        .capacity(room)
        .commit_policy(CommitPolicy::Eager)
        .build()
        .expect("arena");
    let bump = bumpalo::Bump::with_capacity(room);

    loop_empty_u64(n);
    loop_arena_u64(&arena, n);
    loop_bumpalo_u64(&bump, n);
    loop_system_u64(n);
    loop_empty_raw(n);
    loop_arena_raw(&arena, n);
    loop_bumpalo_raw(&bump, n);
    loop_system_raw(n);
    loop_empty_str(n);
    loop_arena_str(&arena, n);
    loop_bumpalo_str(&bump, n);
    loop_system_str(n);
    println!(
        "iterations: {n}; arena used {} bytes, bumpalo {} bytes",
        arena.used(),
        bump.allocated_bytes()
    );
}
