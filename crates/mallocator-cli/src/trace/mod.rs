//! `mallocator trace -- PROGRAM [ARGS...]`: runs a program with the
//! preload library (`crates/mallocator-preload`) in `LD_PRELOAD`, so
//! that its `malloc` family goes through the backtracing tracker, which
//! writes the compact event log (format v2); then prints the leak report
//! that `mallocator leaks` would make of that log, or leaves the log in
//! `--output` for it.
//!
//! Linux with glibc only: on other systems the command says so.

#[cfg(mlc_preload)]
mod library;
#[cfg(mlc_preload)]
mod program;
#[cfg(mlc_preload)]
mod run;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::Error;

/// Run a program with its malloc family traced: leaks by allocation stack, no rebuild (Linux, glibc).
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Run PROGRAM with mallocator's preload library in LD_PRELOAD, like heaptrack or \
valgrind --leak-check but at a fraction of their cost: every malloc, calloc, realloc, \
reallocarray, posix_memalign, aligned_alloc, memalign, valloc, pvalloc and free of the program \
(C, C++ or Rust, dynamically linked) goes through the backtracing tracker, which writes a compact \
event log (format v2) with the stack of every allocation. When the program exits, the tracker \
scans its memory, as memcheck does, for the blocks it can still reach (still reachable) and those \
it lost (definitely, indirectly or possibly lost). Then the leak report that `mallocator leaks` \
makes of that log is printed on standard error: lost blocks listed, reachable ones counted; with \
--output the log is kept there instead, for `mallocator leaks FILE` (any report option, flame \
graphs, JSON).\n\n\
Stacks are unwound by each object's DWARF call-frame information (.eh_frame), which \
distributions' packages and gcc -O2 keep even without frame pointers, and by frame pointers \
through an object that has none; --frame-pointers walks frame pointers only.\n\n\
Programs that PROGRAM starts (exec) are not traced, and a child made by fork stops writing to the \
log (the tracker keeps running in it); --follow-exec and --follow-fork trace them, each process \
into a log of its own: FILE.PID beside FILE (PROGRAM's), and the report has a part for each.\n\n\
A statically linked program cannot be traced, nor one the dynamic loader runs in secure-execution \
mode (setuid or setgid to another user or group, or with file capabilities), as it preloads \
nothing into them: that is an error, exit code 2.\n\n\
The tracker's MALLOCATOR_STACKS, MALLOCATOR_DEPTH and MALLOCATOR_FREE_STACKS are passed to \
PROGRAM from the environment; its settings for a program's own report at exit \
(MALLOCATOR_LEAKS, MALLOCATOR_LEAKS_FORMAT, MALLOCATOR_LEAKS_EXITCODE, MALLOCATOR_SUPPRESSIONS, \
MALLOCATOR_FULL_STACKS) are not, with a note: the trace makes the report.\n\n\
Exit code: PROGRAM's (with --error-exitcode N, N when the report finds something); 128+N when a \
signal N killed it (and a line says so); 2 when it could not be traced."
)]
pub struct TraceArgs {
    /// Keep the event log (compact format v2) in FILE for `mallocator leaks`, instead of printing
    /// the report. FILE is created new, mode 0600 (it holds addresses), never through a symbolic
    /// link; it must not exist, unless --force.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace --output FILE if it exists (a symbolic link there is removed, not followed); with
    /// --follow-fork or --follow-exec, remove the FILE.NUMBER files beside it too (an earlier
    /// run's per-process logs).
    #[arg(long, requires = "output")]
    pub force: bool,
    /// Trace the children PROGRAM makes with fork too, each into a log of its own,
    /// FILE.PID (without it, a child runs on untraced by the log).
    #[arg(long)]
    pub follow_fork: bool,
    /// Trace the programs PROGRAM runs (exec) too, each into a log of its own, FILE.PID
    /// (without it, they run untraced).
    #[arg(long)]
    pub follow_exec: bool,
    /// Show whole stacks in the report (see `mallocator leaks --full-stacks`).
    #[arg(long, conflicts_with = "output")]
    pub full_stacks: bool,
    /// List the N allocation stacks whose blocks held the most bytes at the heap's peak (see
    /// `mallocator leaks --peak-limit`); none by default, as the report on stderr is a summary.
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "output")]
    pub peak_limit: usize,
    /// Exit with N (1 to 255) when the report finds lost blocks (not suppressed: definitely or
    /// indirectly lost, or any never-freed block of a process that ended without the leak scan at
    /// exit), double frees or invalid frees in any traced process, instead of the program's own
    /// exit code (Valgrind's option of the same name; LeakSanitizer exits 23). A program killed by
    /// a signal keeps its 128+N.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u8).range(1..),
        conflicts_with = "output"
    )]
    pub error_exitcode: Option<u8>,
    /// Walk frame pointers only, no DWARF unwinding (MALLOCATOR_STACKS=fp): cheaper, for a
    /// program built with frame pointers everywhere; in code without them, stacks stop early.
    #[arg(long)]
    pub frame_pointers: bool,
    /// Leave out leaks whose stack a `leak:PATTERN` line of FILE matches (repeatable; see
    /// `mallocator leaks --suppressions`).
    #[arg(long, value_name = "FILE", conflicts_with = "output")]
    pub suppressions: Vec<PathBuf>,
    /// The program to run (looked up in PATH when it has no slash), then its arguments.
    #[arg(
        value_name = "PROGRAM",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

/// Runs `mallocator trace`: `Ok` with the program's exit code (128+N for
/// a death by signal N); an error (the program cannot be found or
/// traced, no log appeared, the log cannot be read) is exit code 2.
pub fn run(args: &TraceArgs) -> Result<ExitCode, Error> {
    #[cfg(mlc_preload)]
    return run::run(args);
    #[cfg(not(mlc_preload))]
    {
        let _ = args;
        Err(Error::Failed(
            "tracing needs Linux with glibc (a preloaded library replaces the program's malloc); \
             on other systems, make the program's global allocator mallocator's \
             GlobalBacktracing and read its log with `mallocator leaks`"
                .into(),
        ))
    }
}
