//! `mallocator`: the command-line front end of the mallocator allocators.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod leaks;

/// Composable memory allocators: benchmarks and leak reports.
#[derive(Parser, Debug)]
#[command(name = "mallocator", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Leaks(leaks::LeaksArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Leaks(args) => leaks::run(&args),
    }
}
