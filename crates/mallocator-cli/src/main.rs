//! `mallocator`: the command-line front end of the mallocator allocators.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mallocator_cli::{bench, leaks};

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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Bench(args) => bench::main(&args),
        Command::Leaks(args) => leaks::run(&args),
    }
}
