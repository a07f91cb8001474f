//! `mallocator`: the command-line front end of the mallocator allocators.

use clap::Parser;

/// Composable memory allocators: benchmarks and leak reports.
#[derive(Parser, Debug)]
#[command(name = "mallocator", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
