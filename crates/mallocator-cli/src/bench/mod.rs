//! `mallocator bench`: the allocators side by side on embedded workloads.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

// One direction only: render uses measure and clock, measure uses
// workloads, workloads uses clock.
mod clock;
mod measure;
mod render;
mod workloads;

use crate::Error;
use render::Report;
use workloads::{Group, GROUPS};

/// Timed runs per variant by default, and with `--quick`.
const RUNS: usize = 7;
const QUICK_RUNS: usize = 3;
/// `--quick` divides each workload's default operations per run by this.
const QUICK_DIVISOR: usize = 8;

/// Options of `mallocator bench`.
#[derive(Args, Debug)]
#[command(
    about = "Benchmark the allocators side by side: speed of malloc/free churn, \
             build-then-drop trees, FFI strings and leak-tracking overhead",
    long_about = long_about()
)]
pub struct BenchArgs {
    /// Fewer operations and runs: a smoke test in a few seconds, noisier numbers.
    #[arg(long)]
    quick: bool,
    /// Print the results as JSON on stdout instead of the table (no progress bar).
    #[arg(long)]
    json: bool,
    /// Run only these workloads (repeat the option or separate names with commas).
    #[arg(
        long = "workload",
        short = 'w',
        value_name = "NAME",
        value_delimiter = ','
    )]
    workloads: Vec<String>,
    /// List the workload names and what they measure, then exit.
    #[arg(long)]
    list: bool,
    /// Operations per timed run for every workload (default: each workload's own size).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    size: Option<u64>,
    /// Also write a bar chart of the ratios as an SVG image to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

/// Runs `mallocator bench`: `Ok` with exit code 0 when the results are
/// printed; an error (an unknown workload, a chart that cannot be written)
/// is exit code 2.
pub fn run(args: &BenchArgs) -> Result<ExitCode, Error> {
    let stdout = |e| Error::write("standard output", e);
    if args.list {
        io::stdout()
            .lock()
            .write_all(list().as_bytes())
            .map_err(stdout)?;
        return Ok(ExitCode::SUCCESS);
    }
    let groups = select(&args.workloads).map_err(Error::Failed)?;
    // Fail before the runs, not after them, if the chart cannot be written.
    if let Some(path) = &args.svg {
        std::fs::File::create(path)
            .map_err(|e| Error::write(format!("--svg {}", path.display()), e))?;
    }
    let runs = if args.quick { QUICK_RUNS } else { RUNS };
    let ops_of = |g: &Group| match args.size {
        Some(n) => n as usize,
        None if args.quick => (g.default_ops / QUICK_DIVISOR).max(1),
        None => g.default_ops,
    };
    let total_runs: usize = groups.iter().map(|g| g.variants.len() * (runs + 1)).sum();
    let progress = if args.json || !io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total_runs as u64).with_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} runs  {msg}  ({elapsed})",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        )
    };
    let start = Instant::now();
    let results: Vec<_> = groups
        .iter()
        .map(|g| measure::run_group(g, ops_of(g), runs, &progress))
        .collect();
    progress.finish_and_clear();
    let report = Report::new(&results, runs, args.quick, start.elapsed().as_secs_f64());
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{}", report.to_json()).map_err(stdout)?;
    } else {
        out.write_all(report.to_table().as_bytes())
            .map_err(stdout)?;
    }
    if let Some(path) = &args.svg {
        report.write_svg(path).map_err(Error::Failed)?;
        if !args.json {
            writeln!(out, "chart written to {}", path.display()).map_err(stdout)?;
        }
    }
    out.flush().map_err(stdout)?;
    Ok(ExitCode::SUCCESS)
}

/// The groups named by `--workload` (every group when none is named), in
/// table order, each once.
fn select(names: &[String]) -> Result<Vec<&'static Group>, String> {
    if names.is_empty() {
        return Ok(GROUPS.iter().collect());
    }
    for name in names {
        if workloads::find(name.trim()).is_none() {
            let known: Vec<&str> = GROUPS.iter().map(|g| g.name).collect();
            return Err(format!(
                "unknown workload `{name}`; the workloads are: {}",
                known.join(", ")
            ));
        }
    }
    Ok(GROUPS
        .iter()
        .filter(|g| names.iter().any(|n| n.trim() == g.name))
        .collect())
}

/// The long help of `mallocator bench`, naming the workloads.
fn long_about() -> String {
    let names: Vec<&str> = GROUPS.iter().map(|g| g.name).collect();
    format!(
        "Benchmark the allocators side by side on built-in workloads and print one table: \
         time per operation (median of several runs) and the ratio to each workload's \
         baseline (system malloc, heap CString, untracked run). With no options it runs \
         every workload in well under 30 s.\n\n\
         Workloads (for --workload): {}. --list says what each one measures.\n\n\
         Times are the benchmark thread's CPU time on Linux (time spent preempted by other \
         processes on a busy machine does not count), wall time elsewhere. The leak-tracking \
         rows walk frame pointers when the binary has them (this workspace's \
         .cargo/config.toml sets -C force-frame-pointers=yes; an explicit RUSTFLAGS \
         replaces it); otherwise they use the much slower unwinder. The table's note \
         says which.",
        names.join(", ")
    )
}

/// The text of `--list`.
fn list() -> String {
    let width = GROUPS.iter().map(|g| g.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for g in GROUPS {
        let allocators: Vec<&str> = g.variants.iter().map(|v| v.name).collect();
        out.push_str(&format!(
            "{:width$}  {}\n{:width$}  allocators: {} (baseline first); {} ops/run by default\n",
            g.name,
            g.description,
            "",
            allocators.join(", "),
            g.default_ops,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_dedups_keeps_order_and_rejects_unknown() {
        let all = select(&[]).unwrap();
        assert_eq!(all.len(), GROUPS.len());
        let names = |v: Vec<&Group>| v.iter().map(|g| g.name).collect::<Vec<_>>();
        let last = GROUPS.last().unwrap().name.to_owned();
        let first = GROUPS[0].name.to_owned();
        assert_eq!(
            names(select(&[last.clone(), first.clone(), last.clone()]).unwrap()),
            [first.as_str(), last.as_str()]
        );
        let Err(err) = select(&["churn".into(), "bogus".into()]) else {
            panic!("an unknown name is rejected");
        };
        assert!(err.contains("`bogus`") && err.contains("churn"), "{err}");
    }

    #[test]
    fn unknown_workloads_and_unwritable_charts_are_errors_not_exits() {
        let args = |workloads: &[&str], svg: Option<PathBuf>| BenchArgs {
            quick: true,
            json: true,
            workloads: workloads.iter().map(|w| w.to_string()).collect(),
            list: false,
            size: Some(1),
            svg,
        };
        match run(&args(&["bogus"], None)) {
            Err(Error::Failed(message)) => assert!(message.contains("`bogus`"), "{message}"),
            other => panic!("expected an error, got {other:?}"),
        }
        let dir = std::env::temp_dir();
        match run(&args(&["churn"], Some(dir.clone()))) {
            Err(e @ Error::Write { .. }) => {
                assert!(e.to_string().contains("--svg"), "{e}");
                assert!(!e.is_closed_pipe());
            }
            other => panic!("expected a write error, got {other:?}"),
        }
    }

    #[test]
    fn list_names_every_workload_and_allocator() {
        let text = list();
        for g in GROUPS {
            assert!(text.contains(g.name) && text.contains(g.description));
            for v in g.variants {
                assert!(text.contains(v.name));
            }
        }
    }
}
