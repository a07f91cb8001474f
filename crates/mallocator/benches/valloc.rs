//! Handle overhead: malloc/free pairs of 16 to 256 bytes through
//! `Valloc::libc()` against calling the C library directly, in one run.
//!
//! `cargo bench -p mallocator --bench valloc`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mallocator::Valloc;
use std::hint::black_box;

/// The request sizes, cycled: 16, 32, ..., 256 bytes.
const SIZES: [usize; 16] = {
    let mut s = [0; 16];
    let mut i = 0;
    while i < 16 {
        s[i] = 16 * (i + 1);
        i += 1;
    }
    s
};

/// How many pairs one measured iteration makes.
const PAIRS: u64 = 1024;

fn pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group("malloc_free_pair_16_256");
    group.throughput(Throughput::Elements(PAIRS));

    group.bench_function("libc_direct", |b| {
        b.iter_batched(
            || (),
            |()| {
                for i in 0..PAIRS as usize {
                    let size = black_box(SIZES[i % SIZES.len()]);
                    // SAFETY: plain malloc/free pairs.
                    unsafe {
                        let p = libc::malloc(size);
                        black_box(p);
                        libc::free(p);
                    }
                }
            },
            BatchSize::SmallInput,
        )
    });

    let v = black_box(Valloc::libc());
    group.bench_function("valloc_libc", |b| {
        b.iter_batched(
            || (),
            |()| {
                for i in 0..PAIRS as usize {
                    let size = black_box(SIZES[i % SIZES.len()]);
                    let p = v.malloc(0, size);
                    black_box(p);
                    // SAFETY: `p` came from `v.malloc`.
                    unsafe { v.free(p) };
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, pairs);
criterion_main!(benches);
