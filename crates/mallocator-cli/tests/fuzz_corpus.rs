//! Replays the committed fuzz corpus (`fuzz/corpus/leaks_pipeline`: small
//! valid and damaged logs, text and binary v2, and every input the fuzzer
//! ever crashed on) through the same pipeline as the fuzz target, so that
//! a regression shows up in `cargo test` without nightly or cargo-fuzz.

#[path = "support/v2_log.rs"]
mod v2_log;

use std::path::{Path, PathBuf};
use v2_log::{alloc, free, Log, NO_STACK};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/leaks_pipeline")
}

#[test]
fn every_corpus_input_goes_through_the_leaks_pipeline() {
    let dir = corpus();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 16, "the corpus lost its seeds: {paths:?}");
    for path in paths {
        let log = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| mallocator_cli::leaks::check_fuzz_input(&log));
        assert!(outcome.is_ok(), "{} breaks the pipeline", path.display());
    }
}

/// The v2 seeds of the corpus: valid logs (threads out of order, a module
/// replaced, every error the analysis reports) and damaged ones, so that
/// the fuzzer starts from records rather than from the magic.
fn v2_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let base = || {
        let mut l = Log::new();
        l.header("/opt/app/bin/app", "/opt/app")
            .module(0x1000, 0x1000, 0x9000, &[0xab; 20], b"/opt/app/bin/app")
            .module(
                0x7f00_0000,
                0x7f00_0000,
                0x7f10_0000,
                &[0xcd; 20],
                b"libc.so.6",
            )
            .stack(0, &[0x1234, 0x2345, 0x7f00_1234])
            .stack(1, &[0x3456, 0x7f00_5678])
            .stack(7, &[]);
        l
    };
    let mut seeds = Vec::new();

    let mut l = base();
    l.events(
        2,
        &[
            alloc(50, 0x5000, 64, 1),
            free(51, 0x5100, NO_STACK),
            alloc(52, 0, 1 << 40, 0),
            free(53, 0, 7),
        ],
    )
    .events(
        1,
        &[
            alloc(10, 0x5000, 32, 0),
            free(20, 0x5000, 1),
            free(21, 0x5000, 1),
        ],
    )
    .events(0, &[alloc(30, 0x6000, 8, 7)])
    .module(
        0x1000,
        0x1000,
        0x9000,
        &[0xee; 20],
        b"/opt/app/lib/plugin.so",
    )
    .stack(2, &[0x1234])
    .events(1, &[alloc(60, 0x6000, 16, 2)])
    .end(10, 0);
    seeds.push(("seed-v2-threads-and-errors.mallog", l.build()));

    let mut l = base();
    l.events(1, &[alloc(1, 0x10, 8, 0), alloc(2, 0x20, 8, 1)]);
    seeds.push(("seed-v2-cut-short.mallog", l.build()));

    let mut l = base();
    l.events(1, &[alloc(1, 0x10, 8, 0), alloc(2, 0x20, 8, 1)]);
    let mut cut = l.build();
    cut.truncate(cut.len() - 7);
    seeds.push(("seed-v2-truncated.mallog", cut));

    let mut l = base();
    let mut payload = 3u64.to_le_bytes().to_vec();
    alloc(1, 0x10, 8, 0).encode(&mut payload);
    alloc(2, 0x20, 8, 99).encode(&mut payload);
    payload.extend_from_slice(&[5, 1, 2, 3]);
    l.record(b'E', &payload).stack(99, &[0x10]).end(3, 1);
    seeds.push(("seed-v2-damaged-events.mallog", l.build()));

    let mut l = base();
    let frames: Vec<u64> = (0..256).map(|i| 0x1000 + 16 * i).collect();
    l.stack(3, &frames)
        .record(b'S', &[4, 0, 0, 0, 1, 1])
        .record(b'M', &[0; 10])
        .record(b'X', b"a record of a later kind")
        .events(1, &[alloc(1, 0x10, 8, 3)])
        .end(1, 0)
        .header("", "");
    seeds.push(("seed-v2-odd-records.mallog", l.build()));

    let mut l = Log::with_version(3);
    l.header("", "");
    let mut crlf = base().build();
    crlf[7] = b'\r';
    seeds.push(("seed-v2-wrong-version.mallog", l.build()));
    seeds.push(("seed-v2-crlf-magic.mallog", crlf));
    seeds
}

/// The committed v2 seeds are the ones [`v2_seeds`] makes; with
/// `MALLOCATOR_WRITE_SEEDS=1` this writes them instead.
#[test]
fn v2_seeds_are_committed() {
    let write = std::env::var_os("MALLOCATOR_WRITE_SEEDS").is_some();
    for (name, bytes) in v2_seeds() {
        let path = corpus().join(name);
        if write {
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (MALLOCATOR_WRITE_SEEDS=1 writes it)",
                path.display()
            )
        });
        assert_eq!(
            committed, bytes,
            "{name} differs from what v2_seeds() makes"
        );
    }
}
