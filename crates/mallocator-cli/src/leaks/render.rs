//! Output of a leak analysis: text for people, JSON for programs, the C
//! script's own layout, and a flamegraph of leaked bytes.

use super::analyze::{Analysis, Group, HeapUsage, LogFormat, StackId, Tally};
use super::frames::{Frame, StackFrames};
use super::parse::{InputStats, ParseError};
use mallocator::backtracing::{public_symbol_name, LeakKind};
use serde::Serialize;
use std::io::{self, Write};

/// How many groups / sites to show; `None` shows all.
pub type Top = Option<usize>;

fn take<T>(items: &[T], top: Top) -> &[T] {
    &items[..top.map_or(items.len(), |n| n.min(items.len()))]
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A leak group in the JSON report, or a peak consumer (the blocks of
/// one stack live at the heap's peak).
#[derive(Serialize)]
pub struct JsonGroup {
    /// Total bytes never freed (live at the peak).
    pub bytes: u64,
    /// Number of blocks.
    pub count: u64,
    /// The allocation stack, innermost frame first.
    pub frames: Vec<Frame>,
    /// How reachable the blocks were at exit, when the log holds the
    /// tracker's leak scan (never for peak consumers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<LeakKind>,
}

/// The kinds of error a log shows, as the report schema names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonErrorKind {
    /// A block freed again after it was freed.
    DoubleFree,
    /// A free of an address never allocated in the log (the in-process
    /// tracker's invalid free).
    InvalidFree,
    /// An allocation that returned NULL.
    NullResult,
    /// `free(NULL)` (allowed; listed for completeness).
    FreeNull,
    /// An allocation that returned an address still allocated (the log
    /// misses a FREE record).
    LiveAddressReused,
}

/// One error entry of the report: every occurrence of one kind of error
/// at one set of sites.
#[derive(Serialize)]
pub struct JsonError {
    /// What went wrong.
    pub kind: JsonErrorKind,
    /// Occurrences.
    pub count: u64,
    /// Bytes involved, summed over the occurrences: the block freed twice,
    /// the size requested (NULL result), the block dropped (address
    /// reused). Absent for the kinds that involve no block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Where it happened: the bad free, the allocation that returned NULL
    /// or a live address, the `free(NULL)`.
    pub frames: Vec<Frame>,
    /// Where the block was allocated: the one freed twice, or the one
    /// whose address was handed out again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alloc_frames: Option<Vec<Frame>>,
    /// Where a block freed twice was freed first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_free_frames: Option<Vec<Frame>>,
    /// Where the first occurrence is: `first_line` (text log) or
    /// `first_offset` (byte offset in a v2 log).
    #[serde(flatten)]
    pub first: First,
}

/// Totals of each kind of error (over all sites, not only the listed ones).
#[derive(Serialize)]
pub struct JsonErrorCounts {
    /// Double frees.
    pub double_free: u64,
    /// Frees of unknown addresses.
    pub invalid_free: u64,
    /// NULL results.
    pub null_result: u64,
    /// `free(NULL)` calls.
    pub free_null: u64,
    /// Live addresses handed out again.
    pub live_address_reused: u64,
}

/// Where in the log something is: a line of a text log, a byte offset
/// of a v2 log. In JSON, one member named after which it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum First {
    /// 1-based line number.
    #[serde(rename = "first_line")]
    Line(u64),
    /// Byte offset.
    #[serde(rename = "first_offset")]
    Offset(u64),
}

impl First {
    /// Where the first occurrence of `t` is, in `a`'s kind of log.
    pub fn of(a: &Analysis, t: &Tally) -> Self {
        match a.log_format {
            LogFormat::Text => First::Line(t.first_line),
            LogFormat::V2 => First::Offset(t.first_line),
        }
    }
}

impl std::fmt::Display for First {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            First::Line(n) => write!(f, "line {n}"),
            First::Offset(n) => write!(f, "offset {n}"),
        }
    }
}

/// A lenient-mode warning.
#[derive(Clone, Debug, Serialize)]
pub struct JsonWarning {
    /// Line number (text logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Byte offset (v2 logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// What was wrong.
    pub message: String,
}

impl From<&ParseError> for JsonWarning {
    fn from(e: &ParseError) -> Self {
        JsonWarning {
            line: Some(e.line),
            offset: None,
            message: e.to_string(),
        }
    }
}

impl From<&super::v2::format::Error> for JsonWarning {
    fn from(e: &super::v2::format::Error) -> Self {
        JsonWarning {
            line: None,
            offset: Some(e.offset),
            message: e.to_string(),
        }
    }
}

/// What only a log's report has.
#[derive(Serialize)]
pub struct JsonLog {
    /// The kind of log read: `text` (locations are `first_line`s) or
    /// `v2` (binary; locations are `first_offset`s).
    pub format: &'static str,
    /// What was read.
    pub input: InputStats,
    /// Bytes allocated in all, and the most live at once.
    pub heap: HeapUsage,
    /// The blocks live at the peak by allocation stack, most bytes
    /// first: the first `--peak-limit` stacks.
    pub peak_consumers: Vec<JsonGroup>,
    /// How many stacks held blocks at the peak.
    pub peak_consumers_total: usize,
    /// Number of leak groups (`groups` holds the first `--top`).
    pub groups_total: usize,
    /// Lenient-mode warnings (the first 100).
    pub warnings: Vec<JsonWarning>,
    /// Number of warnings.
    pub warnings_total: u64,
}

/// The whole JSON report: the report schema (`docs/report-schema.md`)
/// with `"source": "log"`, the same as the in-process tracker's report
/// but for the fields only one of them has.
#[derive(Serialize)]
pub struct JsonReport {
    /// The schema version ([`mallocator::backtracing::LeakReport::SCHEMA`]).
    pub schema: u32,
    /// Which producer wrote it: always `log` here.
    pub source: &'static str,
    /// Total bytes never freed.
    pub leaked_bytes: u64,
    /// Total blocks never freed.
    pub leaked_blocks: u64,
    /// Never-freed blocks left out of the groups and the totals by a
    /// suppression.
    pub suppressed_blocks: u64,
    /// Their bytes.
    pub suppressed_bytes: u64,
    /// Leak groups, largest total first.
    pub groups: Vec<JsonGroup>,
    /// Error totals per kind.
    pub error_counts: JsonErrorCounts,
    /// Error entries: each kind in the order of [`JsonErrorKind`], most
    /// frequent first, up to `--top` of each.
    pub errors: Vec<JsonError>,
    /// What only a log's report has.
    pub log: JsonLog,
}

/// The error entries of one kind (up to `top`), each from its sites' key.
fn entries<K: Copy>(
    a: &Analysis,
    items: &[(K, Tally)],
    top: Top,
    entry: impl Fn(K, &Tally, First) -> JsonError,
) -> Vec<JsonError> {
    take(items, top)
        .iter()
        .map(|(k, t)| entry(*k, t, First::of(a, t)))
        .collect()
}

impl JsonReport {
    /// Builds the report; `top` limits the listed groups and error
    /// entries of each kind; `frames` has the frame objects of the stacks
    /// symbolization rewrote.
    pub fn new(
        a: &Analysis,
        frames: &StackFrames,
        top: Top,
        warnings: (&[JsonWarning], u64),
    ) -> Self {
        let stack = |id| frames.get(a, id);
        let groups = |groups: &[Group]| {
            (groups.iter())
                .map(|g| JsonGroup {
                    bytes: g.bytes,
                    count: g.count,
                    frames: stack(g.stack),
                    kind: g.kind,
                })
                .collect()
        };
        let plain = |kind| {
            move |id, t: &Tally, first| JsonError {
                kind,
                count: t.count,
                bytes: None,
                frames: stack(id),
                alloc_frames: None,
                first_free_frames: None,
                first,
            }
        };
        let mut errors: Vec<JsonError> = Vec::new();
        errors.extend(entries(a, &a.double_frees, top, |s, t, first| JsonError {
            kind: JsonErrorKind::DoubleFree,
            count: t.count,
            bytes: Some(t.bytes),
            frames: stack(s.second_free),
            alloc_frames: Some(stack(s.alloc)),
            first_free_frames: Some(stack(s.first_free)),
            first,
        }));
        errors.extend(entries(
            a,
            &a.unknown_frees,
            top,
            plain(JsonErrorKind::InvalidFree),
        ));
        errors.extend(entries(a, &a.null_results, top, |s, t, first| JsonError {
            bytes: Some(t.bytes),
            ..plain(JsonErrorKind::NullResult)(s, t, first)
        }));
        errors.extend(entries(
            a,
            &a.null_frees,
            top,
            plain(JsonErrorKind::FreeNull),
        ));
        errors.extend(entries(a, &a.live_reuses, top, |s, t, first| JsonError {
            kind: JsonErrorKind::LiveAddressReused,
            count: t.count,
            bytes: Some(t.bytes),
            frames: stack(s.new),
            alloc_frames: Some(stack(s.old)),
            first_free_frames: None,
            first,
        }));
        JsonReport {
            schema: mallocator::backtracing::LeakReport::SCHEMA,
            source: "log",
            leaked_bytes: a.leaked_bytes,
            leaked_blocks: a.leaked_blocks,
            suppressed_blocks: a.suppressed_blocks,
            suppressed_bytes: a.suppressed_bytes,
            groups: groups(take(&a.groups, top)),
            error_counts: JsonErrorCounts {
                double_free: Tally::total(&a.double_frees),
                invalid_free: Tally::total(&a.unknown_frees),
                null_result: Tally::total(&a.null_results),
                free_null: Tally::total(&a.null_frees),
                live_address_reused: Tally::total(&a.live_reuses),
            },
            errors,
            log: JsonLog {
                format: match a.log_format {
                    LogFormat::Text => "text",
                    LogFormat::V2 => "v2",
                },
                input: a.input,
                heap: a.heap,
                peak_consumers: groups(&a.peak_consumers),
                peak_consumers_total: a.peak_consumers_total,
                groups_total: a.groups.len(),
                warnings: warnings.0.to_vec(),
                warnings_total: warnings.1,
            },
        }
    }
}

/// Writes the JSON report (one object, then a newline).
pub fn json(out: &mut dyn Write, report: &JsonReport) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report)?;
    writeln!(out)
}

fn stack(out: &mut dyn Write, a: &Analysis, id: StackId, indent: &str) -> io::Result<()> {
    let text = a.stacks.text(id);
    if text.is_empty() {
        return writeln!(out, "{indent}(no frames)");
    }
    for frame in text.split(|&b| b == b'\n') {
        out.write_all(indent.as_bytes())?;
        out.write_all(frame)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Group number `n` of a list: `#n: B bytes in C blocks` after `lead`
/// (and the class of a leak group, `leaks`, of a classified analysis),
/// then its stack, each frame after `indent`.
fn group(
    out: &mut dyn Write,
    a: &Analysis,
    n: usize,
    g: &Group,
    leaks: bool,
    lead: &str,
    indent: &str,
) -> io::Result<()> {
    write!(
        out,
        "{lead}#{n}: {} in {}",
        plural(g.bytes, "byte", "bytes"),
        plural(g.count, "block", "blocks")
    )?;
    match (g.kind, leaks && a.classified) {
        (Some(kind), _) => writeln!(out, ", {}", kind_name(kind))?,
        (None, true) => writeln!(out, ", not seen by the leak scan (allocated after it)")?,
        (None, false) => writeln!(out)?,
    }
    stack(out, a, g.stack, indent)
}

/// A class's name in the text report, as memcheck words it.
fn kind_name(kind: LeakKind) -> &'static str {
    match kind {
        LeakKind::DefinitelyLost => "definitely lost",
        LeakKind::IndirectlyLost => "indirectly lost",
        LeakKind::PossiblyLost => "possibly lost",
        LeakKind::StillReachable => "still reachable",
    }
}

/// The leak scan's summary, as memcheck's: bytes and blocks of each
/// class (and of those the scan did not see, allocated after it).
fn leak_summary(out: &mut dyn Write, a: &Analysis) -> io::Result<()> {
    writeln!(out, "(leak scan at exit, as memcheck's:")?;
    let kinds = [
        LeakKind::DefinitelyLost,
        LeakKind::IndirectlyLost,
        LeakKind::PossiblyLost,
        LeakKind::StillReachable,
    ];
    for kind in kinds {
        let (blocks, bytes) = a.total_of(|k| k == Some(kind));
        write!(
            out,
            "   {:>15}: {} in {}",
            kind_name(kind),
            plural(bytes, "byte", "bytes"),
            plural(blocks, "block", "blocks")
        )?;
        if kind == LeakKind::StillReachable && blocks > 0 {
            write!(out, " (not listed; --json lists them)")?;
        }
        writeln!(out)?;
    }
    let (blocks, bytes) = a.total_of(|k| k.is_none());
    if blocks > 0 {
        writeln!(
            out,
            "   not seen (allocated after it): {} in {}",
            plural(bytes, "byte", "bytes"),
            plural(blocks, "block", "blocks")
        )?;
    }
    writeln!(out, ")")
}

fn more(out: &mut dyn Write, shown: usize, all: usize, what: &str) -> io::Result<()> {
    if all > shown {
        writeln!(
            out,
            "  ... {} more {what} (use --top 0 to show all)",
            all - shown
        )?;
    }
    Ok(())
}

/// One error class: its title and total, then each site (up to `top`)
/// with its count, first line, optional bytes and its labelled stacks.
fn section<K: Copy>(
    out: &mut dyn Write,
    a: &Analysis,
    items: &[(K, Tally)],
    top: Top,
    title: &str,
    bytes_label: Option<&str>,
    stacks: impl Fn(K) -> Vec<(&'static str, StackId)>,
) -> io::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{}: {}", title, Tally::total(items))?;
    let shown = take(items, top);
    for (i, (key, t)) in shown.iter().enumerate() {
        write!(
            out,
            "  #{}: {}, first at {}",
            i + 1,
            plural(t.count, "time", "times"),
            First::of(a, t)
        )?;
        if let Some(label) = bytes_label {
            write!(out, ", {} {label}", t.bytes)?;
        }
        writeln!(out)?;
        for (label, id) in stacks(*key) {
            if !label.is_empty() {
                writeln!(out, "    {label}:")?;
            }
            stack(out, a, id, "      ")?;
        }
    }
    more(out, shown.len(), items.len(), "sites")
}

/// The human-readable report, largest leak first.
pub fn text(out: &mut dyn Write, a: &Analysis, top: Top, warnings_total: u64) -> io::Result<()> {
    let inp = &a.input;
    if a.groups.is_empty() && a.suppressed_blocks > 0 {
        writeln!(
            out,
            "No leaks but suppressed ones ({}, {}).",
            plural(inp.allocs, "allocation", "allocations"),
            plural(inp.frees, "free", "frees")
        )?;
    } else if a.groups.is_empty() {
        writeln!(
            out,
            "No leaks: every block allocated in the log was freed ({}, {}).",
            plural(inp.allocs, "allocation", "allocations"),
            plural(inp.frees, "free", "frees")
        )?;
    } else {
        writeln!(
            out,
            "Leaks: {} in {} never freed, from {}.",
            plural(a.leaked_bytes, "byte", "bytes"),
            plural(a.leaked_blocks, "block", "blocks"),
            plural(
                a.groups.len() as u64,
                "allocation stack",
                "allocation stacks"
            ),
        )?;
        let size = match a.log_format {
            LogFormat::Text => plural(inp.lines, "line", "lines"),
            LogFormat::V2 => plural(inp.bytes, "byte", "bytes"),
        };
        writeln!(
            out,
            "(log: {size}, {}, {})",
            plural(inp.allocs, "allocation", "allocations"),
            plural(inp.frees, "free", "frees")
        )?;
    }
    if a.heap.allocated_bytes > 0 {
        writeln!(
            out,
            "(heap: {} allocated in all; at most {} in {} live at once)",
            plural(a.heap.allocated_bytes, "byte", "bytes"),
            plural(a.heap.peak_bytes, "byte", "bytes"),
            plural(a.heap.peak_blocks, "block", "blocks")
        )?;
    }
    if a.suppressed_blocks > 0 {
        writeln!(
            out,
            "(suppressed: {} in {}, by --suppressions or the built-in list)",
            plural(a.suppressed_bytes, "byte", "bytes"),
            plural(a.suppressed_blocks, "block", "blocks")
        )?;
    }
    // free(NULL) is allowed: counted, not listed among the problems
    // (the JSON report has its sites).
    if !a.null_frees.is_empty() {
        writeln!(
            out,
            "(free(NULL) calls: {}, which C allows; --json lists where)",
            Tally::total(&a.null_frees)
        )?;
    }
    if a.classified {
        leak_summary(out, a)?;
    }
    // Still reachable blocks are counted in the summary, not listed (as
    // memcheck and LeakSanitizer do): the program could still free them.
    let listed: Vec<&Group> = (a.groups.iter())
        .filter(|g| g.kind != Some(LeakKind::StillReachable))
        .collect();
    if !listed.is_empty() {
        let shown = take(&listed, top);
        for (i, g) in shown.iter().enumerate() {
            group(out, a, i + 1, g, true, "\n", "    ")?;
        }
        if listed.len() > shown.len() {
            writeln!(out)?;
        }
        more(out, shown.len(), listed.len(), "leak groups")?;
    }
    let any_error = !(a.double_frees.is_empty()
        && a.unknown_frees.is_empty()
        && a.null_results.is_empty()
        && a.live_reuses.is_empty());
    if any_error {
        writeln!(out, "\nProblems the C leak script does not report:")?;
    }
    section(
        out,
        a,
        &a.double_frees,
        top,
        "Double frees (a block freed again after it was already freed)",
        Some("bytes"),
        |s| {
            vec![
                ("allocated at", s.alloc),
                ("first freed at", s.first_free),
                ("freed again at", s.second_free),
            ]
        },
    )?;
    section(
        out,
        a,
        &a.unknown_frees,
        top,
        "Frees of addresses never allocated in the log (invalid free, or allocated before logging began, \
         or a double free whose first free is more than 65536 frees back)",
        None,
        |s| vec![("", s)],
    )?;
    section(
        out,
        a,
        &a.null_results,
        top,
        "Allocations that returned NULL (out of memory or invalid request)",
        Some("bytes requested"),
        |s| vec![("", s)],
    )?;
    section(
        out,
        a,
        &a.live_reuses,
        top,
        "Allocations that returned a still-allocated address (a FREE record is missing; \
         the older block is dropped, as the C script does)",
        Some("bytes dropped"),
        |s| {
            vec![
                ("dropped block allocated at", s.old),
                ("new block allocated at", s.new),
            ]
        },
    )?;
    peak_consumers(out, a)?;
    if warnings_total > 0 {
        writeln!(
            out,
            "\nThe log had {} (see stderr); this report is a best effort.",
            plural(warnings_total, "problem", "problems")
        )?;
    }
    Ok(())
}

/// The stacks whose blocks were live at the heap's peak, most bytes first
/// (those the analysis kept: `--peak-limit`), as heaptrack's "peak memory
/// consumers": where to look to lower the peak.
fn peak_consumers(out: &mut dyn Write, a: &Analysis) -> io::Result<()> {
    if a.peak_consumers.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\nPeak heap use: {} in {} live at once, from {}; by allocation stack:",
        plural(a.heap.peak_bytes, "byte", "bytes"),
        plural(a.heap.peak_blocks, "block", "blocks"),
        plural(
            a.peak_consumers_total as u64,
            "allocation stack",
            "allocation stacks"
        ),
    )?;
    for (i, g) in a.peak_consumers.iter().enumerate() {
        group(out, a, i + 1, g, false, "  ", "      ")?;
    }
    let left = a
        .peak_consumers_total
        .saturating_sub(a.peak_consumers.len());
    if left > 0 {
        let what = if left == 1 { "stack" } else { "stacks" };
        writeln!(
            out,
            "  ... {left} more allocation {what} (raise --peak-limit to show more)"
        )?;
    }
    Ok(())
}

/// The C leak script's own layout: groups by total bytes ascending
/// (largest last), each as `<bytes> <count>` then its frames, then a blank
/// line.
pub fn c_layout(out: &mut dyn Write, a: &Analysis) -> io::Result<()> {
    for g in a.groups.iter().rev() {
        writeln!(out, "{} {}", g.bytes, g.count)?;
        if !a.stacks.text(g.stack).is_empty() {
            stack(out, a, g.stack, "")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// The flamegraph label of a frame with nothing to show (a blank frame
/// line, or `()`), as perf and other profilers name unknown frames.
pub const UNKNOWN_FRAME: &str = "[unknown]";

/// `label` as one frame of a folded-stack line that inferno reads back
/// exactly, and that can go into the SVG:
///
/// * `;` separates frames: it becomes `,`.
/// * Control characters (tabs, escape sequences; XML forbids most of them)
///   and the non-characters U+FFFE / U+FFFF become blanks, then runs of
///   blanks one space, and the ends are trimmed (inferno trims lines).
/// * A blank label would vanish (a line of only blank frames is not
///   parsed at all): it becomes [`UNKNOWN_FRAME`].
/// * inferno takes the last space-separated number of a line as its count
///   and a number before that as a second (differential) count, so a label
///   ending in ` <digits>` would lose that part: its last space becomes a
///   no-break space, which looks the same.
/// * inferno skips a line starting with `# ` as a comment, so a label
///   starting so (the outermost frame starts the line) gets a no-break
///   space there too.
pub fn folded_safe(label: &str) -> String {
    let cleaned: String = label
        .chars()
        .map(|c| match c {
            ';' => ',',
            '\u{fffe}' | '\u{ffff}' => ' ',
            c if c.is_control() || c.is_whitespace() => ' ',
            c => c,
        })
        .collect();
    let mut out = cleaned.split(' ').filter(|w| !w.is_empty()).fold(
        String::with_capacity(cleaned.len()),
        |mut out, word| {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
            out
        },
    );
    if out.is_empty() {
        return UNKNOWN_FRAME.to_owned();
    }
    if out.starts_with("# ") {
        out.replace_range(1..2, "\u{a0}");
    }
    if let Some(space) = out.rfind(' ') {
        if out[space + 1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.')
        {
            out.replace_range(space..=space, "\u{a0}");
        }
    }
    out
}

/// Demangles a Rust symbol (without its hash) or a C++ one (the Itanium
/// ABI's `_Z…`, as g++ and clang++ write them, with its parameter
/// types, as Valgrind and heaptrack show them). A glibc-internal alias
/// is shown by the C name it aliases ([`public_symbol_name`]). Other
/// names unchanged.
pub fn demangle(sym: &str) -> String {
    let public = public_symbol_name(sym);
    if public.len() != sym.len() {
        return public.to_owned();
    }
    if let Ok(d) = rustc_demangle::try_demangle(sym) {
        return format!("{d:#}");
    }
    if sym.starts_with("_Z") {
        if let Some(d) = cpp_demangle::Symbol::new(sym.as_bytes())
            .ok()
            .and_then(|s| s.demangle().ok())
        {
            return d;
        }
    }
    sym.to_owned()
}

/// Folded lines whose counts add up to at most this: inferno sums the
/// counts in a `u64` and would overflow on larger totals.
const MAX_FOLDED_TOTAL: u64 = 1 << 62;

/// The frame at the root of every folded stack: it names what the whole
/// width of the flame graph stands for (inferno's own root is unlabelled).
pub const ROOT_FRAME: &str = "all leaked bytes";

/// The folded stacks (`root;outer;...;inner count`, under [`ROOT_FRAME`])
/// of the leak groups with bytes (a group of zero-size blocks has no
/// width to draw), each frame named by [`Frame::label`], and the factor
/// from counts back to bytes: 1 unless the leaked bytes add up to more
/// than [`MAX_FOLDED_TOTAL`] (only seen in damaged logs), when every
/// count is scaled down (each at least 1, so no group vanishes).
pub fn folded(a: &Analysis, frames: &StackFrames) -> (Vec<String>, u64) {
    let total: u128 = a.groups.iter().map(|g| u128::from(g.bytes)).sum();
    let scale = u64::try_from(total.div_ceil(u128::from(MAX_FOLDED_TOTAL)))
        .unwrap_or(u64::MAX)
        .max(1);
    let lines = a
        .groups
        .iter()
        .filter(|g| g.bytes > 0)
        .map(|g| {
            let stack = frames.get(a, g.stack);
            let mut labels: Vec<String> = if stack.is_empty() {
                vec!["(no frames)".to_owned()]
            } else {
                stack.iter().map(Frame::label).collect()
            };
            labels.push(ROOT_FRAME.to_owned());
            labels.reverse();
            format!("{} {}", labels.join(";"), (g.bytes / scale).max(1))
        })
        .collect();
    (lines, scale)
}

/// Writes an SVG flamegraph of leaked bytes by allocation stack.
pub fn flamegraph(out: &mut dyn Write, a: &Analysis, frames: &StackFrames) -> io::Result<()> {
    let (lines, scale) = folded(a, frames);
    if lines.is_empty() {
        // inferno refuses empty input; say plainly that no byte leaked.
        let why = if a.leaked_blocks == 0 {
            "every block in the log was freed".to_owned()
        } else {
            format!(
                "the {} never freed are of size 0",
                plural(a.leaked_blocks, "block", "blocks")
            )
        };
        return writeln!(
            out,
            "<?xml version=\"1.0\" standalone=\"no\"?>\n\
             <svg version=\"1.1\" width=\"600\" height=\"60\" xmlns=\"http://www.w3.org/2000/svg\">\
             <text x=\"10\" y=\"35\" font-family=\"Verdana\" font-size=\"16\">\
             No leaked bytes: {why}.</text></svg>"
        );
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = "Leaked bytes by allocation stack".to_owned();
    opts.count_name = "bytes".to_owned();
    opts.name_type = "Function:".to_owned();
    opts.deterministic = true;
    // Scaled-down counts are shown as the bytes they stand for.
    opts.factor = scale as f64;
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
}

#[cfg(test)]
mod tests {
    use super::super::analyze::tests::analyze as analysis;
    use super::*;

    /// With a leak scan, the text report sums each class as memcheck
    /// does, lists the lost blocks with their class (and those the scan
    /// did not see), and only counts the still reachable ones.
    #[test]
    fn a_classified_report_lists_the_lost_blocks_and_counts_the_reachable() {
        use super::super::analyze::Analyzer;
        use super::super::parse::Op;
        let mut an = Analyzer::new();
        let alloc = |an: &mut Analyzer, addr, size, stack: &[u8]| {
            let stack = an.intern(stack);
            an.apply(
                Op::Alloc {
                    addr,
                    align: 0,
                    size,
                },
                addr,
                stack,
            );
        };
        alloc(&mut an, 0x10, 100, b"lost_here");
        alloc(&mut an, 0x20, 30, b"kept_here");
        alloc(&mut an, 0x30, 7, b"pointed_into");
        an.classify_live(&[
            (0x10, LeakKind::DefinitelyLost),
            (0x20, LeakKind::StillReachable),
            (0x30, LeakKind::PossiblyLost),
        ]);
        alloc(&mut an, 0x40, 5, b"late_here");
        let a = an.finish();
        let mut out = Vec::new();
        text(&mut out, &a, None, 0).unwrap();
        let out = String::from_utf8(out).unwrap();
        for line in [
            "Leaks: 142 bytes in 4 blocks never freed, from 4 allocation stacks.\n",
            "   definitely lost: 100 bytes in 1 block\n",
            "   indirectly lost: 0 bytes in 0 blocks\n",
            "     possibly lost: 7 bytes in 1 block\n",
            "   still reachable: 30 bytes in 1 block (not listed; --json lists them)\n",
            "   not seen (allocated after it): 5 bytes in 1 block\n",
            "\n#1: 100 bytes in 1 block, definitely lost\n    lost_here\n",
            "\n#2: 7 bytes in 1 block, possibly lost\n    pointed_into\n",
            "\n#3: 5 bytes in 1 block, not seen by the leak scan (allocated after it)\n    late_here\n",
        ] {
            assert!(out.contains(line), "{line:?} in\n{out}");
        }
        // (The peak's consumers, after the leaks, list every stack.)
        let leaks = &out[..out.find("Peak heap use").unwrap_or(out.len())];
        assert!(!leaks.contains("kept_here"), "{out}");
        assert!(!out.contains("Peak heap use: 142 bytes in 4 blocks live at once, from 4 allocation stacks; by allocation stack:\n  #1: 100 bytes in 1 block,"));
        assert_eq!(a.lost_blocks(), 2);
    }

    const LOG: &str = "\
+++ ALLOC:2:0x0000000000001000:16:100\n./prog(big+0x1)[0x1]\n./prog(main+0x2)[0x2]\n---\n\
+++ ALLOC:1:0x0000000000002000:16:10\n./prog(small+0x1)[0x3]\n---\n\
+++ ALLOC:1:0x0000000000003000:16:30\n./prog(small+0x1)[0x3]\n---\n\
+++ FREE:1:0x0000000000009000\n./prog(oops+0x1)[0x4]\n---\n";

    #[test]
    fn rust_and_cpp_names_are_demangled_and_others_kept() {
        for (raw, shown) in [
            ("_ZN4core3fmt5write17h0123456789abcdefE", "core::fmt::write"),
            ("_RNvCs1234_7mycrate4main", "mycrate::main"),
            (
                "_ZNSt13runtime_errorC2EPKc",
                "std::runtime_error::runtime_error(char const*)",
            ),
            ("_Z8make_keyPKcm", "make_key(char const*, unsigned long)"),
            ("malloc", "malloc"),
            ("__GI_setlocale", "setlocale"),
            ("__GI___strdup", "__strdup"),
            ("__GI_", "__GI_"),
            // Not a valid mangled name: kept as written.
            ("_Zfoo", "_Zfoo"),
            ("_Z", "_Z"),
        ] {
            assert_eq!(demangle(raw), shown, "{raw}");
        }
    }

    /// free(NULL), which C allows, is a count among the totals, not a
    /// problem with its sites.
    #[test]
    fn free_null_is_counted_not_listed_as_a_problem() {
        let log = "\
+++ ALLOC:1:0x0000000000001000:16:100\n./prog(big+0x1)[0x1]\n---\n\
+++ FREE:1:0x0000000000000000\n./prog(tidy+0x1)[0x4]\n---\n\
+++ FREE:1:0x0000000000000000\n./prog(tidy+0x1)[0x4]\n---\n";
        let a = analysis(log);
        let mut out = Vec::new();
        text(&mut out, &a, None, 0).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains("\n(free(NULL) calls: 2, which C allows; --json lists where)\n"),
            "{s}"
        );
        assert!(!s.contains("Problems") && !s.contains("tidy"), "{s}");
        assert_eq!(json(log, None)["error_counts"]["free_null"], 2);
    }

    #[test]
    fn text_lists_largest_first_and_the_extra_errors() {
        let a = analysis(LOG);
        let mut out = Vec::new();
        text(&mut out, &a, None, 0).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("Leaks: 140 bytes in 3 blocks never freed, from 2 allocation stacks."),
            "{s}"
        );
        let big = s
            .find("#1: 100 bytes in 1 block\n    ./prog(big+0x1)[0x1]")
            .unwrap();
        let small = s
            .find("#2: 40 bytes in 2 blocks\n    ./prog(small+0x1)[0x3]")
            .unwrap();
        assert!(big < small);
        assert!(s.contains("Frees of addresses never allocated"), "{s}");
        assert!(s.contains("      ./prog(oops+0x1)[0x4]"), "{s}");

        let mut out = Vec::new();
        text(&mut out, &a, Some(1), 0).unwrap();
        let s = String::from_utf8(out).unwrap();
        // The peak's consumers come after the leaks, whatever `--top`.
        let leaks = s.split("\nPeak heap use").next().unwrap();
        assert!(!leaks.contains("small"), "{s}");
        assert!(
            s.contains("1 more leak groups (use --top 0 to show all)"),
            "{s}"
        );
    }

    #[test]
    fn text_ends_with_the_peak_consumers_the_analysis_kept() {
        let mut a = analysis(LOG);
        let mut out = Vec::new();
        text(&mut out, &a, None, 0).unwrap();
        let s = String::from_utf8(out).unwrap();
        let peak = &s[s.find("\nPeak heap use").expect(&s)..];
        assert_eq!(
            peak,
            "\nPeak heap use: 140 bytes in 3 blocks live at once, from 2 allocation stacks; \
             by allocation stack:\n  \
             #1: 100 bytes in 1 block\n      ./prog(big+0x1)[0x1]\n      ./prog(main+0x2)[0x2]\n  \
             #2: 40 bytes in 2 blocks\n      ./prog(small+0x1)[0x3]\n"
        );

        a.keep_peak_consumers(1);
        let mut out = Vec::new();
        text(&mut out, &a, None, 0).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.ends_with(
                "#1: 100 bytes in 1 block\n      ./prog(big+0x1)[0x1]\n      ./prog(main+0x2)[0x2]\n  \
                 ... 1 more allocation stack (raise --peak-limit to show more)\n"
            ),
            "{s}"
        );

        a.keep_peak_consumers(0);
        let mut out = Vec::new();
        text(&mut out, &a, None, 0).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains("Peak heap use"), "{s}");
    }

    #[test]
    fn unknown_free_title_names_the_free_window() {
        let a = analysis(LOG);
        let mut out = Vec::new();
        text(&mut out, &a, None, 0).unwrap();
        let s = String::from_utf8(out).unwrap();
        let window = super::super::analyze::FREE_WINDOW;
        assert!(s.contains(&format!("more than {window} frees back")), "{s}");
    }

    #[test]
    fn c_layout_is_ascending() {
        let a = analysis(LOG);
        let mut out = Vec::new();
        c_layout(&mut out, &a).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "40 2\n./prog(small+0x1)[0x3]\n\n100 1\n./prog(big+0x1)[0x1]\n./prog(main+0x2)[0x2]\n\n"
        );
    }

    fn json(log: &str, top: Top) -> serde_json::Value {
        let a = analysis(log);
        let r = JsonReport::new(&a, &StackFrames::default(), top, (&[], 0));
        serde_json::to_value(&r).unwrap()
    }

    #[test]
    fn json_has_totals_groups_and_errors() {
        let v = json(LOG, Some(1));
        assert_eq!(v["schema"], 1);
        assert_eq!(v["source"], "log");
        assert_eq!(v["leaked_bytes"], 140);
        assert_eq!(v["leaked_blocks"], 3);
        assert_eq!(
            (
                v["suppressed_blocks"].as_u64(),
                v["suppressed_bytes"].as_u64()
            ),
            (Some(0), Some(0))
        );
        assert_eq!(v["log"]["groups_total"], 2);
        assert_eq!(v["log"]["format"], "text");
        // Not cut by `--top`: `--peak-limit` keeps them in the analysis.
        assert_eq!(v["log"]["peak_consumers_total"], 2);
        assert_eq!(
            v["log"]["peak_consumers"][1],
            serde_json::json!({"bytes": 40, "count": 2, "frames": [
                {"ip": 3, "function": "small", "object": "./prog"}]})
        );
        assert_eq!(v["groups"].as_array().unwrap().len(), 1);
        assert_eq!(v["groups"][0]["bytes"], 100);
        assert!(
            v["groups"][0].get("kind").is_none(),
            "log groups are not classified"
        );
        assert_eq!(
            v["groups"][0]["frames"][1],
            serde_json::json!({"ip": 2, "function": "main", "object": "./prog"})
        );
        assert_eq!(v["error_counts"]["invalid_free"], 1);
        assert_eq!(
            v["errors"],
            serde_json::json!([{"kind": "invalid_free", "count": 1, "first_line": 11,
                "frames": [{"ip": 4, "function": "oops", "object": "./prog"}]}])
        );
        assert_eq!(v["log"]["input"]["allocs"], 3);
    }

    #[test]
    fn json_errors_of_every_kind_with_their_stacks() {
        let log = "\
+++ ALLOC:1:0x0000000000001000:16:24\na\n---\n\
+++ FREE:1:0x0000000000001000\nf1\n---\n\
+++ FREE:1:0x0000000000001000\nf2\n---\n\
+++ FREE:1:0x0000000000009000\nunknown\n---\n\
+++ ALLOC:1:0x0000000000000000:16:4096\nnull\n---\n\
+++ FREE:1:0x0000000000000000\nfree_null\n---\n\
+++ ALLOC:1:0x0000000000002000:16:8\nold\n---\n\
+++ ALLOC:1:0x0000000000002000:16:16\nnew\n---\n";
        let v = json(log, None);
        let t = |s: &str| serde_json::json!([{"text": s}]);
        assert_eq!(
            v["error_counts"],
            serde_json::json!({"double_free": 1, "invalid_free": 1, "null_result": 1,
                "free_null": 1, "live_address_reused": 1})
        );
        let e = v["errors"].as_array().unwrap();
        let kinds: Vec<&str> = e.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "double_free",
                "invalid_free",
                "null_result",
                "free_null",
                "live_address_reused"
            ]
        );
        assert_eq!(e[0]["bytes"], 24);
        assert_eq!(e[0]["frames"], t("f2"));
        assert_eq!(e[0]["alloc_frames"], t("a"));
        assert_eq!(e[0]["first_free_frames"], t("f1"));
        assert_eq!(e[0]["first_line"], 7);
        assert!(e[1].get("bytes").is_none() && e[1].get("alloc_frames").is_none());
        assert_eq!(e[2]["bytes"], 4096);
        assert_eq!(e[2]["frames"], t("null"));
        assert!(e[3].get("bytes").is_none());
        assert_eq!(e[4]["bytes"], 8);
        assert_eq!(e[4]["frames"], t("new"));
        assert_eq!(e[4]["alloc_frames"], t("old"));
        assert!(e[4].get("first_free_frames").is_none());
        // `--top 0` of each kind still counts them all.
        let v = json(log, Some(0));
        assert_eq!(v["errors"], serde_json::json!([]));
        assert_eq!(v["error_counts"]["double_free"], 1);
    }

    #[test]
    fn folded_labels_survive_inferno_parsing() {
        assert_eq!(folded_safe(""), UNKNOWN_FRAME);
        assert_eq!(folded_safe(" \t "), UNKNOWN_FRAME);
        assert_eq!(folded_safe("a;b"), "a,b");
        assert_eq!(folded_safe(" x\t\x1b[0m\u{ffff}y  z "), "x [0m y z");
        assert_eq!(folded_safe("retry 3"), "retry\u{a0}3");
        assert_eq!(folded_safe("v 1.2"), "v\u{a0}1.2");
        assert_eq!(folded_safe("# x"), "#\u{a0}x");
        assert_eq!(folded_safe("#x y"), "#x y");
        assert_eq!(
            folded_safe("operator new(unsigned long)"),
            "operator new(unsigned long)"
        );
    }

    /// Each folded line's frames and count, as inferno's parser sees them:
    /// the line trimmed, not a `# ` comment, the count after the last
    /// space, then no second count, frames split at `;`, none blank.
    fn inferno_reads(line: &str) -> (Vec<&str>, u64) {
        let line = line.trim();
        assert!(
            !line.starts_with("# "),
            "{line:?} would be read as a comment"
        );
        let (stack, count) = line.rsplit_once(' ').unwrap();
        let stack = stack.trim_end();
        if let Some((_, tail)) = stack.rsplit_once(' ') {
            assert!(
                !tail.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
                "{line:?} would be read as a differential line"
            );
        }
        let frames: Vec<&str> = stack.split(';').collect();
        assert!(frames.iter().all(|f| !f.trim().is_empty()), "{line:?}");
        (frames, count.parse().unwrap())
    }

    #[test]
    fn blank_and_odd_frames_keep_every_group() {
        let log = "\
+++ ALLOC:2:0x0000000000001000:16:100\n   \n()\n---\n\
+++ ALLOC:2:0x0000000000002000:16:10\n./prog(small+0x1)[0x3]\n\t\n---\n\
+++ ALLOC:2:0x0000000000003000:16:30\nf<[u8; 4]>\nretry 3\n---\n\
+++ ALLOC:1:0x0000000000004000:16:5\n# not a comment\n---\n";
        let a = analysis(log);
        let (lines, scale) = folded(&a, &StackFrames::default());
        assert_eq!(scale, 1);
        let read: Vec<_> = lines.iter().map(|l| inferno_reads(l)).collect();
        assert_eq!(
            read,
            vec![
                (vec![ROOT_FRAME, UNKNOWN_FRAME, UNKNOWN_FRAME], 100),
                (vec![ROOT_FRAME, "retry\u{a0}3", "f<[u8, 4]>"], 30),
                (vec![ROOT_FRAME, UNKNOWN_FRAME, "small"], 10),
                (vec![ROOT_FRAME, "#\u{a0}not a comment"], 5),
            ]
        );
        let mut out = Vec::new();
        flamegraph(&mut out, &a, &StackFrames::default()).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.contains("[unknown] (100 bytes, "), "{svg}");
        assert!(svg.contains("small (10 bytes, "), "{svg}");
        assert!(svg.contains("(30 bytes, "), "{svg}");
        assert!(svg.contains("not a comment (5 bytes, "), "{svg}");
    }

    #[test]
    fn byte_totals_beyond_u64_are_scaled_not_overflowed() {
        let log = "\
+++ ALLOC:1:0x0000000000001000:16:18446744073709551615\na\n---\n\
+++ ALLOC:1:0x0000000000002000:16:18446744073709551615\nb\n---\n\
+++ ALLOC:1:0x0000000000003000:16:1\nc\n---\n";
        let a = analysis(log);
        let (lines, scale) = folded(&a, &StackFrames::default());
        assert!(scale > 1);
        let counts: Vec<u64> = lines.iter().map(|l| inferno_reads(l).1).collect();
        assert!(
            counts.iter().sum::<u64>() <= MAX_FOLDED_TOTAL + 3,
            "{counts:?}"
        );
        assert_eq!(counts[2], 1, "a tiny group keeps a count");
        let mut out = Vec::new();
        flamegraph(&mut out, &a, &StackFrames::default()).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("<svg"));
    }

    #[test]
    fn zero_size_leaks_are_not_called_freed() {
        let a = analysis("+++ ALLOC:1:0x0000000000001000:16:0\nz\n---\n");
        let mut out = Vec::new();
        flamegraph(&mut out, &a, &StackFrames::default()).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(
            svg.contains("No leaked bytes: the 1 block never freed are of size 0"),
            "{svg}"
        );
    }

    #[test]
    fn flamegraph_is_an_svg_with_the_functions() {
        let a = analysis(LOG);
        assert_eq!(
            folded(&a, &StackFrames::default()),
            (
                vec![
                    "all leaked bytes;main;big 100".to_owned(),
                    "all leaked bytes;small 40".to_owned()
                ],
                1
            )
        );
        let mut out = Vec::new();
        flamegraph(&mut out, &a, &StackFrames::default()).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("big") && svg.contains("small"));
        // The root names what the width stands for.
        assert!(
            svg.contains("all leaked bytes (140 bytes, 100.00%)"),
            "{svg}"
        );
        let empty = analysis("");
        let mut out = Vec::new();
        flamegraph(&mut out, &empty, &StackFrames::default()).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("No leaked bytes"));
    }
}
