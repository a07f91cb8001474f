//! Replays the committed fuzz corpus (`fuzz/corpus/leaks_pipeline`: small
//! valid and damaged logs, and every input the fuzzer ever crashed on)
//! through the same pipeline as the fuzz target, so that a regression
//! shows up in `cargo test` without nightly or cargo-fuzz.

use std::path::Path;

#[test]
fn every_corpus_input_goes_through_the_leaks_pipeline() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/leaks_pipeline");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "the corpus lost its seeds: {paths:?}");
    for path in paths {
        let log = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| mallocator_cli::leaks::check_pipeline(&log));
        assert!(outcome.is_ok(), "{} breaks the pipeline", path.display());
    }
}
