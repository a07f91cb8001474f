//! The library half of the `mallocator` command (the binary, `main.rs`,
//! only parses the command line, dispatches here, and reports an
//! [`Error`] on stderr with exit code 2). Every subcommand has the same
//! entry point: `run(&args) -> Result<ExitCode, Error>`.
//!
//! The subcommands live in a library rather than in the binary so that
//! code outside the binary can call them directly: the fuzz target in
//! `crates/mallocator-cli/fuzz` and the test replaying its corpus drive the
//! whole `leaks` pipeline through [`leaks::check_pipeline`]. Including the
//! modules into the fuzz crate by `#[path]` instead would make it repeat
//! every dependency of the CLI and compile the same code twice.

pub mod bench;
mod error;
pub mod leaks;
pub mod trace;

pub use error::Error;
