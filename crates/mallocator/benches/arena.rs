//! The arena against bumpalo 3 and the system allocator, side by side:
//! `u64` values, runtime size/align requests, strings, vector pushes,
//! checkpoint/rollback, and 1 GiB of total allocation in 64-byte blocks.
//!
//! `cargo bench -p mallocator --bench arena`
//!
//! Each measured iteration does a batch of work and then frees it all
//! (`reset` for the arenas; freeing every block for the system
//! allocator), so that the memory in use stays bounded.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mallocator::{Arena, CommitPolicy};

/// Allocations per measured iteration of the small workloads.
const BATCH: usize = 1024;

/// Runtime sizes and alignments, cycled.
const SIZES: [usize; 8] = [8, 16, 24, 32, 40, 48, 56, 64];
const ALIGNS: [usize; 4] = [1, 8, 16, 8];

/// Strings of 0 to 60 bytes.
fn strings() -> Vec<String> {
    (0..BATCH).map(|i| "mallocator".repeat(i % 7)).collect()
}

fn arena(capacity: usize) -> Arena {
    Arena::builder()
        .capacity(capacity)
        .commit_policy(CommitPolicy::Eager)
        .build()
        .expect("arena")
}

fn u64_values(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_u64");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut a = arena(1 << 20);
    g.bench_function("arena", |b| {
        b.iter(|| {
            for i in 0..BATCH as u64 {
                black_box(a.alloc(i));
            }
            a.reset();
        })
    });
    let mut bump = bumpalo::Bump::with_capacity(1 << 20);
    g.bench_function("bumpalo", |b| {
        b.iter(|| {
            for i in 0..BATCH as u64 {
                black_box(bump.alloc(i));
            }
            bump.reset();
        })
    });
    let mut blocks = Vec::with_capacity(BATCH);
    g.bench_function("system", |b| {
        b.iter(|| {
            for i in 0..BATCH as u64 {
                blocks.push(black_box(Box::new(i)));
            }
            blocks.clear();
        })
    });
    g.finish();
}

fn runtime_layouts(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_raw_runtime_size_align");
    g.throughput(Throughput::Elements(BATCH as u64));
    let request = |i: usize| (black_box(SIZES[i % 8]), black_box(ALIGNS[i % 4]));
    let mut a = arena(1 << 20);
    g.bench_function("arena", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                let (size, align) = request(i);
                black_box(a.alloc_raw(size, align).ok());
            }
            a.reset();
        })
    });
    let mut bump = bumpalo::Bump::with_capacity(1 << 20);
    g.bench_function("bumpalo", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                let (size, align) = request(i);
                let layout = Layout::from_size_align(size, align).ok();
                black_box(layout.and_then(|l| bump.try_alloc_layout(l).ok()));
            }
            bump.reset();
        })
    });
    let mut blocks = Vec::with_capacity(BATCH);
    g.bench_function("system", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                let (size, align) = request(i);
                if let Ok(l) = Layout::from_size_align(size, align) {
                    // SAFETY: a non-zero layout.
                    blocks.push((unsafe { System.alloc(l) }, l));
                }
            }
            for (p, l) in blocks.drain(..) {
                // SAFETY: `p` came from `System.alloc(l)` (null is skipped).
                if !p.is_null() {
                    unsafe { System.dealloc(p, l) };
                }
            }
        })
    });
    g.finish();
}

fn string_copies(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_str");
    g.throughput(Throughput::Elements(BATCH as u64));
    let input = strings();
    let mut a = arena(1 << 20);
    g.bench_function("arena", |b| {
        b.iter(|| {
            for s in &input {
                black_box(a.alloc_str(s));
            }
            a.reset();
        })
    });
    let mut bump = bumpalo::Bump::with_capacity(1 << 20);
    g.bench_function("bumpalo", |b| {
        b.iter(|| {
            for s in &input {
                black_box(bump.alloc_str(s));
            }
            bump.reset();
        })
    });
    let mut copies: Vec<Box<str>> = Vec::with_capacity(BATCH);
    g.bench_function("system", |b| {
        b.iter(|| {
            for s in &input {
                copies.push(black_box(Box::from(s.as_str())));
            }
            copies.clear();
        })
    });
    g.finish();
}

fn vec_pushes(c: &mut Criterion) {
    let mut g = c.benchmark_group("vec_push_u32");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut a = arena(1 << 20);
    g.bench_function("arena", |b| {
        b.iter(|| {
            {
                let mut v = allocator_api2::vec::Vec::new_in(&a);
                for i in 0..BATCH as u32 {
                    v.push(black_box(i));
                }
                black_box(&v);
            }
            a.reset();
        })
    });
    let mut bump = bumpalo::Bump::with_capacity(1 << 20);
    g.bench_function("bumpalo", |b| {
        b.iter(|| {
            {
                let mut v = allocator_api2::vec::Vec::new_in(&bump);
                for i in 0..BATCH as u32 {
                    v.push(black_box(i));
                }
                black_box(&v);
            }
            bump.reset();
        })
    });
    g.bench_function("system", |b| {
        b.iter(|| {
            let mut v = allocator_api2::vec::Vec::new_in(allocator_api2::alloc::Global);
            for i in 0..BATCH as u32 {
                v.push(black_box(i));
            }
            black_box(&v);
        })
    });
    g.finish();
}

/// 16 `u64` allocations then undo them: the arena's scope and explicit
/// checkpoint; bumpalo has no checkpoint, so it resets (all it can do);
/// the system allocator frees each block.
fn checkpoints(c: &mut Criterion) {
    const N: u64 = 16;
    let mut g = c.benchmark_group("checkpoint_rollback_16");
    g.throughput(Throughput::Elements(N));
    let mut a = arena(1 << 20);
    a.alloc([0u8; 100]);
    g.bench_function("arena_scope", |b| {
        b.iter(|| {
            a.scope(|s| {
                for i in 0..N {
                    black_box(s.alloc(i));
                }
            })
        })
    });
    g.bench_function("arena_checkpoint", |b| {
        b.iter(|| {
            let cp = a.checkpoint();
            for i in 0..N {
                black_box(a.alloc(i));
            }
            a.rollback(cp);
        })
    });
    let mut bump = bumpalo::Bump::with_capacity(1 << 20);
    g.bench_function("bumpalo_reset", |b| {
        b.iter(|| {
            for i in 0..N {
                black_box(bump.alloc(i));
            }
            bump.reset();
        })
    });
    let mut blocks = Vec::with_capacity(N as usize);
    g.bench_function("system", |b| {
        b.iter(|| {
            for i in 0..N {
                blocks.push(black_box(Box::new(i)));
            }
            blocks.clear();
        })
    });
    g.finish();
}

/// 1 GiB of total allocation in 64-byte blocks per iteration (16 Mi
/// blocks). The arenas keep it all live and reset after; the system
/// allocator frees each block right away (1 GiB live would only measure
/// page faults).
fn one_gib(c: &mut Criterion) {
    const GIB: usize = 1 << 30;
    const BLOCKS: usize = GIB / 64;
    let mut g = c.benchmark_group("one_gib_in_64_byte_blocks");
    g.throughput(Throughput::Bytes(GIB as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(5));
    let mut a = arena(GIB);
    g.bench_function("arena", |b| {
        b.iter(|| {
            for _ in 0..BLOCKS {
                black_box(a.alloc([0u8; 64]));
            }
            a.reset();
        })
    });
    drop(a);
    let mut bump = bumpalo::Bump::with_capacity(GIB);
    g.bench_function("bumpalo", |b| {
        b.iter(|| {
            for _ in 0..BLOCKS {
                black_box(bump.alloc([0u8; 64]));
            }
            bump.reset();
        })
    });
    drop(bump);
    g.bench_function("system_alloc_free", |b| {
        b.iter(|| {
            for _ in 0..BLOCKS {
                drop(black_box(Box::new([0u8; 64])));
            }
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    u64_values,
    runtime_layouts,
    string_copies,
    vec_pushes,
    checkpoints,
    one_gib
);
criterion_main!(benches);
