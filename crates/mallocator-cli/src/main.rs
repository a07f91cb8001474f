//! `mallocator`: the command-line front end of the mallocator allocators.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mallocator_cli::{bench, leaks, trace, Error};

/// Composable memory allocators: benchmarks and leak reports.
#[derive(Parser, Debug)]
#[command(name = "mallocator", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    Bench(bench::BenchArgs),
    Leaks(leaks::LeaksArgs),
    Trace(trace::TraceArgs),
}

/// The exit code of a subcommand's result: its own code, or 2 with the
/// error on stderr as `mallocator <subcommand>: <message>`.
fn exit_code(subcommand: &str, result: Result<ExitCode, Error>) -> ExitCode {
    match result {
        Ok(code) => code,
        // `mallocator leaks log | head` is normal use, not an error.
        Err(e) if e.is_closed_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mallocator {subcommand}: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Bench(args) => exit_code("bench", bench::run(&args)),
        Command::Leaks(args) => exit_code("leaks", leaks::run(&args)),
        Command::Trace(args) => exit_code("trace", trace::run(&args)),
    }
}
