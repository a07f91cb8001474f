//! The churn workload that each `churn_*` program compiles in:
//! alloc/free pairs of 16 to 80 bytes from a three-deep call chain, one
//! block in 1000 leaked. Usage: `<program> [pairs, default 4000000] [threads, default 1]`
//! (the pairs are split between the threads).

use std::hint::black_box;

#[inline(never)]
fn make_block(size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    v.push(size as u8);
    black_box(v)
}

#[inline(never)]
fn middle(i: usize) -> Vec<u8> {
    make_block(16 + (i * 7919) % 65)
}

#[inline(never)]
fn churn_one(i: usize) {
    let block = middle(i);
    if i % 1000 == 0 {
        // Leaked on purpose: what the leak detectors must find.
        black_box(Vec::leak(block));
    } else {
        drop(black_box(block));
    }
}

#[inline(never)]
fn churn(start: usize, pairs: usize) {
    for i in start..start + pairs {
        churn_one(i);
    }
}

/// Runs the workload as the command line says; returns the pair count.
pub fn run() -> usize {
    let mut args = std::env::args().skip(1);
    let pairs: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(4_000_000);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let per = pairs / threads;
    if threads == 1 {
        churn(0, per);
    } else {
        std::thread::scope(|s| {
            for t in 0..threads {
                s.spawn(move || churn(t * per, per));
            }
        });
    }
    per * threads
}
