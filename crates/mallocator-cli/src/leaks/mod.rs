//! `mallocator leaks`: a memory leak report from a backtracing allocator
//! log (mallocator's log mode, or the C `fd_backtracing` allocator), in
//! the Firedancer text format or mallocator's binary format v2 (told
//! apart by the first bytes: [`input`]; v2 is read by [`v2`]).
//!
//! Memory follows the blocks live at any moment and the distinct stacks,
//! not the size of the log (a text log is streamed, a v2 log mapped or,
//! from standard input, held whole). Double frees
//! are recognised within a window of the last
//! [`FREE_WINDOW`](analyze::FREE_WINDOW) frees; an older first free makes
//! the second one an unknown free (see the `analyze` module).

mod analyze;
mod frames;
mod input;
mod parse;
mod render;
mod symbolize;
mod trim;
mod v2;

use analyze::{Analysis, Analyzer, Tally};
use frames::StackFrames;
use mallocator::backtracing::Suppressions;
use parse::{Error, ParseError, Parser};
use render::JsonWarning;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Inputs at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_FROM: u64 = 64 << 20;
/// Warnings printed on stderr in lenient mode (the rest are counted).
const PRINTED_WARNINGS: usize = 20;

/// Report layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: largest leak first, then the errors the C script misses.
    Text,
    /// One JSON object in the report schema (docs/report-schema.md), the
    /// same as the in-process tracker's JSON report.
    Json,
    /// The C leak script's layout: `<bytes> <count>` then the stack, largest last.
    C,
}

/// How many peak consumers a report lists by default (as heaptrack_print's
/// `--peak-limit`).
pub const PEAK_LIMIT: usize = 10;

/// Find memory leaks in an allocation log (like heaptrack or valgrind's leak check, offline).
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Find memory leaks, like heaptrack or valgrind's leak check but offline, in an allocation log written by mallocator's \
backtracing allocator (log mode) or by the C fd_backtracing allocator: every block allocated \
and never freed, grouped by allocation stack (backtrace), largest first. Also reports what the \
C leak script silently drops: double frees, frees of unknown (invalid) pointers, allocations \
that returned NULL, and free(NULL). Then the heap's totals (bytes allocated in all, the most \
live at once) and, as heaptrack's peak memory consumers, the allocation stacks whose blocks \
held the most bytes at that peak (--peak-limit of them): what to shrink to lower it.\n\n\
Two log formats are read, told apart by their first bytes:\n\
- the compact binary log (format v2, mallocator's default; docs/log-format.md): the threads' \
events are merged in time order, and frames are symbolized by default (function, file:line) \
from the log's module map. Each object file is found at its recorded path (relative paths: \
against the program's working directory in the log), or by --binary, or in a --search-path \
folder, and is used only if its build-id is the one in the log; otherwise a warning names it \
and its frames stay raw (path+0xoffset [0xip]). A log without its end record (the program is \
still running, crashed or was killed) is reported with a warning that it was cut short. A log \
that holds the tracker's leak scan at exit sorts its leaks as memcheck does: the definitely, \
indirectly and possibly lost blocks are listed, the still reachable ones counted (--json lists \
them, each group with its kind), and --fail-on-leaks fails only on lost blocks.\n\
- the Firedancer text format (+++ ALLOC / +++ FREE records with glibc frames, \
MALLOCATOR_LOG_FORMAT=fd): unrelated program output mixed into the log is skipped; \
--symbolize resolves object(+0xoffset) frames.\n\n\
--json writes the report schema of docs/report-schema.md (\"schema\": 1, \"source\": \"log\"), \
the same as the in-process tracker's JSON exit report: frames are objects (ip, function, file, line, \
object, offset, or the frame's text when it cannot be broken down).\n\n\
--flamegraph OUT.svg draws the leaked bytes by allocation stack: the root, \"all leaked bytes\", \
spans them all, and each frame above it is as wide as the bytes leaked through it. The SVG is then \
the output: standard output stays empty and one line on stderr says where the SVG went, unless \
--format or --json asks for a report too. Text logs are symbolized for it as with --symbolize \
(frames whose object cannot be read keep their glibc name). Frames without names are addresses, \
so the file is created mode 0600; an existing regular file of yours with no other name is emptied \
and made 0600, and anything else at the path (a symbolic link, /dev/stdout) is refused. \
--flamegraph - writes the SVG to standard output instead.\n\n\
Memory follows the live blocks and the distinct stacks, not the log size: to tell a double free \
from an unknown free only the last 65536 freed addresses are remembered, so a double free whose \
first free is further back than that is reported as a free of an unknown (invalid) pointer.\n\n\
Exit codes: 0 report (or flame graph) written; 1 leaks found with --fail-on-leaks; 2 the log is malformed \
(message with the line number, or the byte offset in a binary log), has no records at all \
(unless --allow-empty), or a file could not be read or written."
)]
pub struct LeaksArgs {
    /// The allocation log to read; `-` or nothing reads standard input (stdin).
    #[arg(value_name = "LOG")]
    pub log: Option<PathBuf>,
    /// Print the report as one JSON object (same as --format json).
    #[arg(long)]
    pub json: bool,
    /// Report layout [default: text; none with --flamegraph].
    #[arg(long, value_enum, conflicts_with = "json")]
    pub format: Option<Format>,
    /// Show only the N largest leak groups (and N sites of each error kind); 0 shows all.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub top: usize,
    /// List the N allocation stacks whose blocks held the most bytes at the heap's peak; 0 lists
    /// none.
    #[arg(long, value_name = "N", default_value_t = PEAK_LIMIT)]
    pub peak_limit: usize,
    /// Write a flamegraph (SVG) of leaked bytes by allocation stack to this file (- for stdout),
    /// instead of the report unless --format or --json asks for it too; symbolizes text logs (see
    /// --symbolize). Created mode 0600; a symbolic link or another user's file is refused.
    #[arg(long, value_name = "OUT.svg")]
    pub flamegraph: Option<PathBuf>,
    /// Do not stop at malformed log lines or records: warn on stderr (with line numbers, or byte
    /// offsets in a binary log) and report what can be read.
    #[arg(long)]
    pub lenient: bool,
    /// Exit with code 1 when leaks are found (for CI and test scripts): never-freed blocks, but
    /// for those the log's leak scan at exit (if it holds one) found still reachable or only
    /// possibly lost.
    #[arg(long)]
    pub fail_on_leaks: bool,
    /// Accept input with no allocation records at all (by default that is an error, exit 2:
    /// a wrong path or a program that never logged must not pass for "no leaks").
    #[arg(long)]
    pub allow_empty: bool,
    /// Text logs: resolve `object(+0xoffset)` frames to function, file and line from the object's
    /// debug info (on with --flamegraph; binary v2 logs are always symbolized).
    #[arg(long)]
    pub symbolize: bool,
    /// Leave out never-freed blocks whose stack a `leak:PATTERN` line of FILE matches
    /// (LeakSanitizer's format; repeatable). A small built-in list (one-time allocations of
    /// Rust's standard library) always applies; the report counts what was left out.
    #[arg(long, value_name = "FILE")]
    pub suppressions: Vec<PathBuf>,
    /// Show whole stacks. By default a stack shows the program's own frames: the allocation
    /// machinery above them (malloc, the global allocator, Vec's and Box's internals) and the
    /// runtime below them (std::rt, catch_unwind, __libc_start_main, a thread's start, the test
    /// harness) are cut off, and groups whose stacks differ only there are merged.
    #[arg(long)]
    pub full_stacks: bool,
    /// Read this object file for the object of the same file name, instead of the path the log
    /// recorded (repeatable; binary logs, and text logs with --symbolize). In a binary log its
    /// build-id must match the log's.
    #[arg(long, value_name = "PATH")]
    pub binary: Vec<PathBuf>,
    /// Look for object files missing at their recorded path in this folder, by file name
    /// (repeatable, searched in order; a text log's own folder is searched last).
    #[arg(long, value_name = "DIR")]
    pub search_path: Vec<PathBuf>,
    /// Look for separate debug info in this folder, as DIR/.build-id/ab/cdef….debug for an object
    /// with build-id abcdef… (repeatable, searched in order, then /usr/lib/debug, where
    /// distributions' debug packages install it).
    #[arg(long, value_name = "DIR")]
    pub debug_dir: Vec<PathBuf>,
    /// Never show the progress bar (it is shown only for large logs when stderr is a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// Progress bar on stderr, shown only for large inputs on a terminal.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
    total: Option<u64>,
    next: u64,
}

impl Progress {
    fn new(enabled: bool, total: Option<u64>) -> Self {
        Progress {
            bar: None,
            enabled,
            total,
            next: 1 << 20,
        }
    }

    #[inline]
    fn update(&mut self, bytes: u64) {
        if bytes >= self.next {
            self.next = bytes + (1 << 20);
            self.draw(bytes);
        }
    }

    #[cold]
    fn draw(&mut self, bytes: u64) {
        if self.bar.is_none() && self.enabled && self.total.unwrap_or(bytes) >= PROGRESS_FROM {
            let bar = match self.total {
                Some(len) => indicatif::ProgressBar::new(len).with_style(
                    indicatif::ProgressStyle::with_template(
                        "reading log {bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                ),
                None => indicatif::ProgressBar::no_length().with_style(
                    indicatif::ProgressStyle::with_template("reading log {bytes} {bytes_per_sec}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                ),
            };
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Reads a whole text log and analyzes it.
fn analyze<R: Read>(
    reader: R,
    lenient: bool,
    progress: &mut Progress,
) -> Result<(Analysis, Vec<ParseError>, u64), Error> {
    let mut parser = Parser::new(reader, lenient);
    let mut analyzer = Analyzer::new();
    while let Some(record) = parser.next_record()? {
        analyzer.record(&record);
        progress.update(parser.bytes_read());
    }
    let mut analysis = analyzer.finish();
    analysis.input = parser.stats();
    let (warnings, total) = parser.warnings();
    Ok((analysis, warnings.to_vec(), total))
}

/// Runs `log` through the whole `mallocator leaks` pipeline in memory, as
/// the command does with each of its output options, and panics if a stage
/// breaks its promises:
///
/// * parsing, strict and lenient: lenient never fails (for a v2 log: unless
///   its magic or version is wrong, when both fail alike), and when strict
///   succeeds lenient reads the same and warns about nothing;
/// * the analysis of each reading;
/// * every report (text, JSON, the C layout, with and without a `--top`
///   limit) and the flamegraph (folded stacks and SVG): none fails, the
///   JSON is valid JSON in the report schema's shape (`check_json_shape`),
///   and the flamegraph has a line for every group
///   with bytes.
///
/// For the fuzz target (`crates/mallocator-cli/fuzz`) and the test that
/// replays its corpus. Symbolization is left out (`--symbolize`, and the
/// module map of v2 logs, whose frames stay raw): it opens the object
/// files that the log names, which an arbitrary input should not direct.
pub fn check_pipeline(log: &[u8]) {
    if v2::looks_like_v2(&log[..log.len().min(8)]) {
        return check_v2_pipeline(log);
    }
    let read = |lenient| analyze(log, lenient, &mut Progress::new(false, None));
    let lenient = match read(true) {
        Ok(r) => r,
        Err(e) => panic!("lenient mode stopped at an error: {e}"),
    };
    let strict = read(false);
    match &strict {
        Ok((a, warnings, total)) => {
            assert!(warnings.is_empty() && *total == 0);
            assert_eq!(
                lenient.2, 0,
                "lenient warned about a log strict mode accepts"
            );
            let l = &lenient.0;
            assert_eq!(a.groups, l.groups);
            assert_eq!(
                (a.leaked_bytes, a.leaked_blocks),
                (l.leaked_bytes, l.leaked_blocks)
            );
            assert_eq!(a.input, l.input);
        }
        Err(Error::Parse(_)) => {
            assert!(
                lenient.2 > 0,
                "strict mode failed where lenient warned about nothing"
            )
        }
        Err(Error::Io(e)) => panic!("reading from memory failed: {e}"),
    }
    let warnings = |w: &[ParseError]| w.iter().map(JsonWarning::from).collect::<Vec<_>>();
    let frames = StackFrames::default();
    if let Ok((a, w, total)) = &strict {
        check_reports(a, &frames, &warnings(w), *total);
    }
    check_reports(&lenient.0, &frames, &warnings(&lenient.1), lenient.2);
}

/// [`check_pipeline`] on `input` as it is, and on `input` as the records
/// of a v2 log (after its magic and version), so that one fuzzer input
/// exercises both readers: arbitrary bytes rarely start with the magic.
/// For the fuzz target and the test that replays its corpus.
pub fn check_fuzz_input(input: &[u8]) {
    check_pipeline(input);
    let mut log = v2::format::MAGIC.to_vec();
    log.extend_from_slice(&v2::format::VERSION.to_le_bytes());
    log.extend_from_slice(input);
    check_pipeline(&log);
}

/// [`check_pipeline`] for a v2 log.
fn check_v2_pipeline(log: &[u8]) {
    let strict = v2::read(log, false);
    let lenient = v2::read(log, true);
    match (&strict, &lenient) {
        (Ok(s), Ok(l)) => {
            assert_eq!(
                l.warnings_total, 0,
                "lenient warned about a log strict mode accepts"
            );
            assert_eq!(s.analysis.groups, l.analysis.groups);
            assert_eq!(
                (s.analysis.leaked_bytes, s.analysis.leaked_blocks),
                (l.analysis.leaked_bytes, l.analysis.leaked_blocks)
            );
            assert_eq!(s.analysis.input, l.analysis.input);
        }
        (Err(_), Ok(l)) => assert!(
            l.warnings_total > 0,
            "strict mode failed where lenient warned about nothing"
        ),
        (Err(s), Err(l)) => {
            assert_eq!(s, l);
            assert!(
                matches!(
                    s.kind,
                    v2::format::ErrorKind::ShortPreamble { .. }
                        | v2::format::ErrorKind::BadMagic { .. }
                        | v2::format::ErrorKind::BadVersion(_)
                ),
                "lenient mode stopped at an error: {s}"
            );
        }
        (Ok(_), Err(e)) => panic!("lenient mode failed where strict did not: {e}"),
    }
    for reading in [strict, lenient].into_iter().flatten() {
        let v2::Reading {
            mut analysis,
            modules,
            warnings,
            warnings_total,
            ..
        } = reading;
        let frames = v2::stack_texts(&mut analysis, &modules, None);
        let warnings: Vec<JsonWarning> = warnings.iter().map(JsonWarning::from).collect();
        check_reports(&analysis, &frames, &warnings, warnings_total);
    }
}

/// Checks what a fuzzed log can break in the JSON report's shape, without
/// the JSON Schema validator the tests use (`docs/report-schema.json`): the
/// schema version and source, no `null` anywhere (unknown fields are left
/// out), and every frame an object with its address or its text.
fn check_json_shape(v: &serde_json::Value) {
    use serde_json::Value;
    fn no_nulls(v: &Value) {
        match v {
            Value::Null => panic!("the JSON report has a null"),
            Value::Array(items) => items.iter().for_each(no_nulls),
            Value::Object(fields) => fields.values().for_each(no_nulls),
            _ => {}
        }
    }
    fn frames(v: &Value) {
        let frames = v.as_array().expect("frames are an array");
        for f in frames {
            assert!(
                f.get("ip").is_some_and(Value::is_u64)
                    || f.get("text").is_some_and(Value::is_string),
                "a frame without its address or text: {f}"
            );
        }
    }
    no_nulls(v);
    assert_eq!(v["schema"], mallocator::backtracing::LeakReport::SCHEMA);
    assert_eq!(v["source"], "log");
    let consumers = v["log"]["peak_consumers"].as_array();
    let consumers = consumers.expect("peak consumers are an array");
    for g in v["groups"].as_array().expect("groups are an array") {
        frames(&g["frames"]);
    }
    for g in consumers {
        frames(&g["frames"]);
    }
    for e in v["errors"].as_array().expect("errors are an array") {
        frames(&e["frames"]);
        for key in ["alloc_frames", "first_free_frames"] {
            if let Some(f) = e.get(key) {
                frames(f);
            }
        }
    }
}

/// Every report of `a` succeeds and is well formed (see [`check_pipeline`]).
fn check_reports(a: &Analysis, frames: &StackFrames, warnings: &[JsonWarning], total: u64) {
    for top in [None, Some(1)] {
        let mut out = Vec::new();
        render::text(&mut out, a, top, total).expect("text report");
        assert!(
            std::str::from_utf8(&out).is_ok(),
            "text report is not UTF-8"
        );
        out.clear();
        let report = render::JsonReport::new(a, frames, top, (warnings, total));
        render::json(&mut out, &report).expect("JSON report");
        match serde_json::from_slice::<serde_json::Value>(&out) {
            Ok(v) => check_json_shape(&v),
            Err(e) => panic!("the JSON report does not parse: {e}"),
        }
    }
    let mut out = Vec::new();
    render::c_layout(&mut out, a).expect("C layout");
    let (lines, _) = render::folded(a, frames);
    let drawn = a.groups.iter().filter(|g| g.bytes > 0).count();
    assert_eq!(
        lines.len(),
        drawn,
        "a group is missing from the folded stacks"
    );
    out.clear();
    if let Err(e) = render::flamegraph(&mut out, a, frames) {
        panic!("the flamegraph failed: {e}");
    }
    let svg = String::from_utf8(out).expect("the flamegraph is not UTF-8");
    assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
}

/// The report layout asked for: `--json`, `--format`, else text, or none
/// when the flame graph is the output (`--flamegraph` alone).
fn report_format(args: &LeaksArgs) -> Option<Format> {
    match (args.json, args.format) {
        (true, _) => Some(Format::Json),
        (false, Some(format)) => Some(format),
        (false, None) => args.flamegraph.is_none().then_some(Format::Text),
    }
}

/// Whether the flame graph goes to standard output (`--flamegraph -`).
fn flamegraph_on_stdout(args: &LeaksArgs) -> bool {
    args.flamegraph
        .as_ref()
        .is_some_and(|p| p.as_os_str() == "-")
}

fn write_report(
    args: &LeaksArgs,
    format: Format,
    (a, frames, warnings, warnings_total): (&Analysis, &StackFrames, &[JsonWarning], &u64),
    out: &mut dyn Write,
) -> io::Result<()> {
    let top = (args.top > 0).then_some(args.top);
    let mut out = BufWriter::new(out);
    match format {
        Format::Text => render::text(&mut out, a, top, *warnings_total)?,
        Format::Json => {
            let report = render::JsonReport::new(a, frames, top, (warnings, *warnings_total));
            render::json(&mut out, &report)?
        }
        Format::C => render::c_layout(&mut out, a)?,
    }
    out.flush()
}

/// What a log gave: the analysis (stacks as text), the frame objects of
/// the stacks symbolization rewrote, the lenient-mode warnings kept and
/// their total.
type Outcome = (Analysis, StackFrames, Vec<JsonWarning>, u64);

/// Reads, checks and analyzes a text log (symbolized with `--symbolize`
/// or `--flamegraph`).
fn read_text(
    args: &LeaksArgs,
    name: &str,
    reader: Box<dyn Read>,
    size: Option<u64>,
) -> Result<Outcome, crate::Error> {
    let mut progress = Progress::new(!args.no_progress && io::stderr().is_terminal(), size);
    let result = analyze(reader, args.lenient, &mut progress);
    progress.finish();
    let (mut analysis, warnings, warnings_total) = result.map_err(|e| match e {
        Error::Parse(e) => crate::Error::Failed(format!(
            "{name}: {e}\n(use --lenient to skip malformed records and report what can be read)"
        )),
        Error::Io(e) => crate::Error::Failed(format!("{name}: cannot read the log: {e}")),
    })?;
    // Nothing that even looked like a record (a malformed one, skipped in
    // lenient mode, is reported as such instead).
    if analysis.input.allocs + analysis.input.frees == 0 && warnings_total == 0 && !args.allow_empty
    {
        return Err(crate::Error::Failed(format!(
            "no records found in {name} ({} lines read, none a +++ ALLOC or +++ FREE record; \
             use --allow-empty to accept a log with no allocations)",
            analysis.input.lines
        )));
    }
    // A flame graph of glibc frames shows one `libc.so.6+0x271ca` box
    // beside another: it is only readable with function names.
    let frames = if args.symbolize || args.flamegraph.is_some() {
        // Relative object paths are taken from here, then from the log's
        // folder (where a program usually runs); a log's time tells a
        // rebuilt object from the one it was written with.
        let log_file = args.log.as_deref().filter(|p| p.as_os_str() != "-");
        let log_time = log_file.and_then(|p| std::fs::metadata(p).ok()?.modified().ok());
        let mut files = symbolize::ObjectFiles {
            binaries: args.binary.clone(),
            search_path: args.search_path.clone(),
            cwd: None,
            debug_dirs: args.debug_dir.clone(),
        };
        if let Some(dir) = log_file
            .and_then(|p| p.parent())
            .filter(|d| !d.as_os_str().is_empty())
        {
            files.search_path.push(dir.to_owned());
        }
        let (frames, object_warnings) = symbolize::symbolize(&mut analysis, files, log_time);
        for w in object_warnings {
            eprintln!("mallocator leaks: warning: {name}: {w}");
        }
        if log_time.is_none() {
            eprintln!(
                "mallocator leaks: warning: {name}: read from standard input, so objects rebuilt \
                 since the log was written cannot be told apart (give the log's path)"
            );
        }
        frames
    } else {
        StackFrames::default()
    };
    let warnings = warnings.iter().map(JsonWarning::from).collect();
    Ok((analysis, frames, warnings, warnings_total))
}

/// Reads, checks, analyzes and symbolizes a v2 log; says on stderr what
/// the report cannot show (a log cut short, events the tracker lost,
/// objects that cannot be symbolized).
fn read_v2(args: &LeaksArgs, name: &str, data: &[u8]) -> Result<Outcome, crate::Error> {
    let reading = v2::read(data, args.lenient).map_err(|e| {
        let hint = match e.kind {
            v2::format::ErrorKind::ShortPreamble { .. }
            | v2::format::ErrorKind::BadMagic { .. }
            | v2::format::ErrorKind::BadVersion(_) => "",
            _ => "\n(use --lenient to skip damaged records and report what can be read)",
        };
        crate::Error::Failed(format!("{name}: {e}{hint}"))
    })?;
    let v2::Reading {
        mut analysis,
        modules,
        summary,
        warnings,
        warnings_total,
    } = reading;
    if analysis.input.allocs + analysis.input.frees == 0 && warnings_total == 0 && !args.allow_empty
    {
        return Err(crate::Error::Failed(format!(
            "no records found in {name} (a binary v2 log of {} bytes with no allocation or free \
             events; use --allow-empty to accept a log with no allocations)",
            data.len()
        )));
    }
    for notice in v2::notices(&summary) {
        eprintln!("mallocator leaks: warning: {name}: {notice}");
    }
    let files = symbolize::ObjectFiles {
        binaries: args.binary.clone(),
        search_path: args.search_path.clone(),
        cwd: summary
            .header
            .as_ref()
            .filter(|h| !h.cwd.is_empty())
            .map(|h| symbolize::recorded_path(&h.cwd)),
        debug_dirs: args.debug_dir.clone(),
    };
    let mut symbolizer = symbolize::ModuleSymbolizer::new(&modules.modules, files);
    let frames = v2::stack_texts(&mut analysis, &modules, Some(&mut symbolizer));
    for w in symbolizer.warnings() {
        eprintln!("mallocator leaks: warning: {name}: {w}");
    }
    let warnings = warnings.iter().map(JsonWarning::from).collect();
    Ok((analysis, frames, warnings, warnings_total))
}

/// Runs `mallocator leaks`: `Ok` with exit code 0 (report written) or 1
/// (leaks found with `--fail-on-leaks`); an error (bad input, an
/// unreadable or unwritable file) is exit code 2.
pub fn run(args: &LeaksArgs) -> Result<ExitCode, crate::Error> {
    let found = run_to(args, &mut io::stdout().lock(), "standard output")?;
    Ok(if args.fail_on_leaks && found.lost_blocks > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What a report found that a check may fail on (nothing found is
/// `Findings::default()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Findings {
    /// Blocks never freed, less the suppressed ones and, when the log
    /// holds a leak scan at exit, those it found still reachable or only
    /// possibly lost (as memcheck and LeakSanitizer count what was lost).
    pub lost_blocks: u64,
    /// Frees of blocks that were not live: double frees and frees of
    /// addresses never allocated (each survived, as the tracker does).
    pub bad_frees: u64,
}

impl Findings {
    fn of(a: &Analysis) -> Findings {
        Findings {
            lost_blocks: a.lost_blocks(),
            bad_frees: Tally::total(&a.double_frees).saturating_add(Tally::total(&a.unknown_frees)),
        }
    }
}

/// The findings of several reports (a traced process tree's) together.
impl std::ops::AddAssign for Findings {
    fn add_assign(&mut self, other: Findings) {
        self.lost_blocks += other.lost_blocks;
        self.bad_frees += other.bad_frees;
    }
}

/// [`run`], with the report written to `out` (named `out_name` in
/// errors); what it found.
pub(crate) fn run_to(
    args: &LeaksArgs,
    out: &mut dyn Write,
    out_name: &str,
) -> Result<Findings, crate::Error> {
    let name = match &args.log {
        Some(path) if path.as_os_str() != "-" => path.display().to_string(),
        _ => "<stdin>".to_owned(),
    };
    if flamegraph_on_stdout(args) && report_format(args).is_some() {
        return Err(crate::Error::Failed(
            "--flamegraph - writes the SVG to standard output: a report cannot go there too \
             (give the SVG a file name)"
                .into(),
        ));
    }
    let opened = input::open(args.log.as_deref())
        .map_err(|e| crate::Error::Failed(format!("{name}: {e}")))?;
    let suppressions = load_suppressions(&args.suppressions)?;
    let (mut analysis, mut frames, warnings, warnings_total) = match opened {
        input::Input::Text { reader, size } => read_text(args, &name, reader, size)?,
        input::Input::V2(bytes) => read_v2(args, &name, &bytes)?,
    };
    // Suppressions see whole stacks (a pattern may name a runtime frame);
    // the report shows the program's part.
    analysis.suppress(&suppressions);
    if !args.full_stacks {
        trim::trim(&mut analysis, &mut frames);
    }
    // Once stacks that read the same are merged: a loop the compiler
    // unrolled calls from several addresses of one line.
    analysis.keep_peak_consumers(args.peak_limit);
    let (analysis, frames, warnings) = (&analysis, &frames, &warnings);
    for w in warnings.iter().take(PRINTED_WARNINGS) {
        eprintln!("mallocator leaks: warning: {name}: {}", w.message);
    }
    if warnings_total > PRINTED_WARNINGS as u64 {
        eprintln!(
            "mallocator leaks: warning: {name}: {} more problems not shown",
            warnings_total - PRINTED_WARNINGS as u64
        );
    }
    let format = report_format(args);
    if flamegraph_on_stdout(args) {
        render::flamegraph(out, analysis, frames).map_err(|e| crate::Error::write(out_name, e))?;
    } else if let Some(path) = &args.flamegraph {
        let svg = || -> io::Result<()> {
            // Unsymbolized frames are addresses of the traced program:
            // created as privately as its log.
            let mut out = BufWriter::new(mallocator::backtracing::create_log_file(path)?);
            render::flamegraph(&mut out, analysis, frames)?;
            out.flush()
        };
        svg().map_err(|e| crate::Error::write(path.display().to_string(), e))?;
        if format.is_none() {
            eprintln!(
                "mallocator leaks: flame graph of {} leaked bytes in {} blocks written to {} \
                 (add --format text or --json for a report on stdout)",
                analysis.leaked_bytes,
                analysis.leaked_blocks,
                path.display()
            );
        }
    }
    if let Some(format) = format {
        write_report(
            args,
            format,
            (analysis, frames, warnings, &warnings_total),
            out,
        )
        .map_err(|e| crate::Error::write(out_name, e))?;
    }
    Ok(Findings::of(analysis))
}

/// The built-in suppressions and those of `files`; a file that cannot be
/// read or parsed is an error naming it (a CI job must not pass because
/// its suppressions were silently dropped).
pub(crate) fn load_suppressions(files: &[PathBuf]) -> Result<Suppressions, crate::Error> {
    let mut all = Suppressions::builtin();
    for file in files {
        let name = file.display();
        let text = std::fs::read_to_string(file)
            .map_err(|e| crate::Error::Failed(format!("--suppressions {name}: {e}")))?;
        let parsed = Suppressions::parse(&text)
            .map_err(|e| crate::Error::Failed(format!("--suppressions {name}: {e}")))?;
        all.extend(parsed);
    }
    Ok(all)
}
