//! The handle's overhead measured so that other load on the machine
//! cancels out: the variants of `pairs/mod.rs` run in alternation, many
//! short rounds each, and the fastest rounds (low percentiles) are
//! compared. The ratio to `libc_direct` is printed.
//!
//! `cargo bench -p mallocator --bench valloc_overhead`
//!
//! With arguments `VARIANT ROUNDS` it runs one variant `ROUNDS` times and
//! prints nothing: `scripts/valloc-overhead.sh` counts its instructions
//! under callgrind.

mod pairs;

use std::time::{Duration, Instant};

const ROUNDS: usize = 3000;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let variants = pairs::variants();
    if let [name, rounds] = &args[..] {
        let rounds: usize = rounds.parse().expect("ROUNDS is a number");
        let (_, run) = variants
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("unknown variant {name}"));
        (0..rounds).for_each(|_| run());
        return;
    }
    assert!(args.is_empty(), "usage: valloc_overhead [VARIANT ROUNDS]");

    let mut times = vec![Vec::with_capacity(ROUNDS); variants.len()];
    for round in 0..ROUNDS {
        // Rotate the order so no variant always runs first.
        for k in 0..variants.len() {
            let i = (round + k) % variants.len();
            let start = Instant::now();
            (variants[i].1)();
            times[i].push(start.elapsed());
        }
    }
    let per_pair = |d: Duration| d.as_secs_f64() * 1e9 / pairs::PAIRS as f64;
    let pct = |t: &mut Vec<Duration>, p: usize| {
        t.sort_unstable();
        per_pair(t[(t.len() - 1) * p / 100])
    };
    let base: Vec<f64> = [1, 10, 50].iter().map(|&p| pct(&mut times[0], p)).collect();
    println!(
        "ns per malloc/free pair (16..256 bytes), {ROUNDS} alternating rounds of {} pairs",
        pairs::PAIRS
    );
    println!(
        "{:<14} {:>8} {:>8} {:>8}   ratio to libc_direct (p1, p10, p50)",
        "variant", "p1", "p10", "p50"
    );
    for (i, (name, _)) in variants.iter().enumerate() {
        let v: Vec<f64> = [1, 10, 50].iter().map(|&p| pct(&mut times[i], p)).collect();
        println!(
            "{name:<14} {:>8.2} {:>8.2} {:>8.2}   {:.3} {:.3} {:.3}",
            v[0],
            v[1],
            v[2],
            v[0] / base[0],
            v[1] / base[1],
            v[2] / base[2]
        );
    }
}
