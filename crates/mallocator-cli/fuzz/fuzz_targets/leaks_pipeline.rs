//! Any bytes as a backtracing-allocator log, through the whole
//! `mallocator leaks` pipeline: strict and lenient parsing, the analysis,
//! and every report (the JSON one checked for the report schema's shape:
//! version, no nulls, frames as objects) and the flamegraph. Each input is
//! read twice: as it is (a text log, or a v2 log if it starts with the
//! magic) and as the records of a v2 log, after its magic and version. A
//! panic anywhere is a crash.

#![no_main]

libfuzzer_sys::fuzz_target!(|log: &[u8]| {
    mallocator_cli::leaks::check_fuzz_input(log);
});
