//! Any bytes as a backtracing-allocator log, through the whole
//! `mallocator leaks` pipeline: strict and lenient parsing, the analysis,
//! and every report and the flamegraph. A panic anywhere is a crash.

#![no_main]

libfuzzer_sys::fuzz_target!(|log: &[u8]| {
    mallocator_cli::leaks::check_pipeline(log);
});
