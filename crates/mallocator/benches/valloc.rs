//! Handle overhead: malloc/free pairs of 16 to 256 bytes through
//! `Valloc::libc()` against calling the C library directly, in one run,
//! with the same sizes and the same loop (`pairs/mod.rs`).
//!
//! `cargo bench -p mallocator --bench valloc -- --warm-up-time 1 --measurement-time 3`
//!
//! * `libc_direct`: `libc::malloc` / `libc::free`;
//! * `valloc_libc`: `Valloc::libc()`, hidden from the optimiser;
//! * `valloc_vtable`: a handle with its own vtable (the general path).
//!
//! On a busy machine prefer `benches/valloc_overhead.rs` (paired timing)
//! or `scripts/valloc-overhead.sh` (instruction counts).

mod pairs;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn malloc_free_pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group("malloc_free_pair_16_256");
    group.throughput(Throughput::Elements(pairs::PAIRS as u64));
    for (name, run) in pairs::variants() {
        group.bench_function(name, |b| b.iter(&run));
    }
    group.finish();
}

criterion_group!(benches, malloc_free_pairs);
criterion_main!(benches);
