//! [`LeakReport`]: never-freed blocks grouped by stack, plus the errors
//! the tracker survived; text and JSON renderings.

use core::fmt;

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::errors::ErrorRecord;
use super::live::Record;
use super::stacks::INTERNAL;
use super::symbolize::Symbolizer;
use super::sys_vec::{sys_vec, SysVec};
use super::thread::Busy;
use super::Backtracing;

/// One symbolized stack frame. Inlined functions give several frames with
/// the same `ip`, innermost first.
///
/// ```
/// let f = mallocator::backtracing::Frame { ip: 0x10, function: Some("main".into()), file: None, line: None };
/// assert_eq!(f.to_string(), "0x10 main");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// The return address (instruction pointer).
    pub ip: usize,
    /// Demangled function name, when known.
    pub function: Option<String>,
    /// Source file, when debug info is present.
    pub file: Option<String>,
    /// Source line, when debug info is present.
    pub line: Option<u32>,
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x} {}",
            self.ip,
            self.function.as_deref().unwrap_or("??")
        )?;
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, " at {file}:{line}"),
            (Some(file), None) => write!(f, " at {file}"),
            _ => Ok(()),
        }
    }
}

/// Never-freed blocks allocated from one stack.
///
/// ```
/// let g = mallocator::backtracing::LeakGroup { bytes: 48, count: 2, frames: vec![] };
/// assert_eq!(g.bytes / g.count, 24);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeakGroup {
    /// Total bytes requested by the blocks.
    pub bytes: usize,
    /// Number of blocks.
    pub count: usize,
    /// The allocation stack, innermost first, the tracker's own frames removed.
    pub frames: Vec<Frame>,
}

/// What went wrong in an [`ErrorEntry`].
///
/// ```
/// use mallocator::backtracing::ErrorKind;
/// assert_eq!(serde_json::to_string(&ErrorKind::DoubleFree).unwrap(), "\"double_free\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A block freed twice (the second free was not passed on).
    DoubleFree,
    /// A free of a pointer the tracker never handed out, or one freed so
    /// long ago that its first free is forgotten (not passed on either).
    InvalidFree,
}

/// A bad free the tracker detected and survived.
///
/// ```
/// use mallocator::backtracing::{ErrorEntry, ErrorKind};
/// let e = ErrorEntry { kind: ErrorKind::InvalidFree, address: 0x40, size: None, thread: 1,
///     frames: vec![], alloc_frames: vec![], first_free_frames: vec![] };
/// assert!(e.to_string().starts_with("invalid free of 0x40"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorEntry {
    /// Double or invalid free.
    pub kind: ErrorKind,
    /// The pointer passed to `free`.
    pub address: usize,
    /// The block's size, for a double free.
    pub size: Option<usize>,
    /// Tracker id of the thread of the bad free.
    pub thread: u64,
    /// Where the bad (second) free happened.
    pub frames: Vec<Frame>,
    /// Where the block was allocated (double free only).
    pub alloc_frames: Vec<Frame>,
    /// Where it was freed the first time (double free only).
    pub first_free_frames: Vec<Frame>,
}

fn write_frames(f: &mut fmt::Formatter<'_>, title: &str, frames: &[Frame]) -> fmt::Result {
    writeln!(f, "    {title}:")?;
    if frames.is_empty() {
        writeln!(f, "      (no stack)")?;
    }
    for (i, frame) in frames.iter().enumerate() {
        writeln!(f, "      #{i} {frame}")?;
    }
    Ok(())
}

impl fmt::Display for ErrorEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::DoubleFree => "double free",
            ErrorKind::InvalidFree => "invalid free",
        };
        write!(f, "{what} of {:#x}", self.address)?;
        if let Some(size) = self.size {
            write!(f, " ({size} bytes)")?;
        }
        writeln!(f, " on thread {}", self.thread)?;
        write_frames(f, "freed at", &self.frames)?;
        if self.kind == ErrorKind::DoubleFree {
            write_frames(f, "first freed at", &self.first_free_frames)?;
            write_frames(f, "allocated at", &self.alloc_frames)?;
        }
        Ok(())
    }
}

/// The tracker's findings: never-freed blocks grouped by allocation
/// stack (largest total first), and the bad frees it survived.
///
/// Renders as text ([`Display`](fmt::Display) / [`to_text`](LeakReport::to_text))
/// and JSON ([`to_json`](LeakReport::to_json)): one object with
/// `leaked_bytes`, `leaked_blocks`, `groups` (each `bytes`, `count`,
/// `frames` of `{ip, function, file, line}`), `errors`, `errors_total`,
/// `off_stack_captures`, `refused_allocations`.
///
/// ```
/// use mallocator::backtracing::Backtracing;
/// use mallocator::Valloc;
///
/// let t = Backtracing::new(Valloc::libc());
/// let p = t.valloc().malloc(8, 100);
/// let r = t.report();
/// assert_eq!((r.leaked_bytes, r.leaked_blocks), (100, 1));
/// assert!(r.to_text().contains("100 bytes in 1 block"));
/// let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
/// assert_eq!(json["groups"][0]["count"], 1);
/// // SAFETY: `p` came from this tracker.
/// unsafe { t.valloc().free(p) };
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct LeakReport {
    /// Total bytes of never-freed blocks.
    pub leaked_bytes: usize,
    /// Number of never-freed blocks.
    pub leaked_blocks: usize,
    /// Groups by allocation stack, largest `bytes` first.
    pub groups: Vec<LeakGroup>,
    /// Bad frees, in the order they happened (the first 4096 kept).
    pub errors: Vec<ErrorEntry>,
    /// Bad frees in total (may exceed `errors.len()`).
    pub errors_total: usize,
    /// Stacks captured empty because the code ran on a stack the
    /// frame-pointer walk does not know (a coroutine or green-thread
    /// stack): their blocks are tracked, but listed without frames.
    pub off_stack_captures: usize,
    /// Allocations the tracker refused (returned null) because it could
    /// not store their record, being out of memory itself.
    pub refused_allocations: usize,
}

impl LeakReport {
    /// True when nothing leaked and no error happened.
    ///
    /// ```
    /// assert!(mallocator::backtracing::LeakReport::default().is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        self.leaked_blocks == 0 && self.errors_total == 0
    }

    /// The report as pretty-printed JSON.
    ///
    /// ```
    /// let j = mallocator::backtracing::LeakReport::default().to_json();
    /// assert!(j.contains("\"leaked_bytes\": 0"));
    /// ```
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The report as text (same as `to_string()`).
    ///
    /// ```
    /// let t = mallocator::backtracing::LeakReport::default().to_text();
    /// assert!(t.starts_with("no leaks"));
    /// ```
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.leaked_blocks == 0 {
            writeln!(f, "no leaks")?;
        } else {
            writeln!(
                f,
                "leaked {} bytes in {} block{} from {} stack{}",
                self.leaked_bytes,
                self.leaked_blocks,
                plural(self.leaked_blocks),
                self.groups.len(),
                plural(self.groups.len())
            )?;
        }
        for g in &self.groups {
            writeln!(
                f,
                "  {} bytes in {} block{} allocated at:",
                g.bytes,
                g.count,
                plural(g.count)
            )?;
            for (i, frame) in g.frames.iter().enumerate() {
                writeln!(f, "      #{i} {frame}")?;
            }
        }
        if self.errors_total > 0 {
            writeln!(
                f,
                "{} bad free{}:",
                self.errors_total,
                plural(self.errors_total)
            )?;
            for e in &self.errors {
                write!(f, "  {e}")?;
            }
        }
        if self.off_stack_captures > 0 {
            writeln!(
                f,
                "{} stack{} not captured: the code ran off its thread's stack \
                 (a coroutine or similar stack the walk cannot check)",
                self.off_stack_captures,
                plural(self.off_stack_captures)
            )?;
        }
        if self.refused_allocations > 0 {
            writeln!(
                f,
                "{} allocation{} refused: the tracker was out of memory for its records",
                self.refused_allocations,
                plural(self.refused_allocations)
            )?;
        }
        Ok(())
    }
}

impl Backtracing<'_> {
    pub(crate) fn build_report(
        &self,
        keep: &dyn Fn(&Record) -> bool,
        with_errors: bool,
    ) -> LeakReport {
        let Some(st) = self.state() else {
            return LeakReport::default();
        };
        let _busy = Busy::enter(st.epoch);
        let mut records: SysVec<Record> = sys_vec();
        for shard in &st.live {
            shard
                .lock()
                .collect(&mut records, &|r| r.stack != INTERNAL && keep(r));
        }
        let mut errors: SysVec<ErrorRecord> = sys_vec();
        let mut errors_total = 0;
        if with_errors {
            let e = st.errors.lock();
            errors.extend_from_slice(&e.kept);
            errors_total = e.total;
        }
        let mut by_stack: HashMap<u32, (usize, usize)> = HashMap::new();
        for r in records.iter() {
            let g = by_stack.entry(r.stack).or_default();
            g.0 += r.size();
            g.1 += 1;
        }
        let mut symbols = Symbolizer {
            stacks: &st.stacks,
            cache: HashMap::new(),
        };
        let mut groups: Vec<LeakGroup> = by_stack
            .into_iter()
            .map(|(stack, (bytes, count))| LeakGroup {
                bytes,
                count,
                frames: symbols.frames(stack),
            })
            .collect();
        groups.sort_by(|a, b| {
            (b.bytes, b.count).cmp(&(a.bytes, a.count)).then_with(|| {
                a.frames
                    .first()
                    .map(|f| f.ip)
                    .cmp(&b.frames.first().map(|f| f.ip))
            })
        });
        let errors = errors
            .iter()
            .map(|e| ErrorEntry {
                kind: e.kind,
                address: e.addr,
                size: e.size,
                thread: e.thread,
                frames: symbols.frames(e.stack),
                alloc_frames: symbols.frames(e.alloc_stack),
                first_free_frames: symbols.frames(e.first_free_stack),
            })
            .collect();
        LeakReport {
            leaked_bytes: records.iter().map(|r| r.size()).sum(),
            leaked_blocks: records.len(),
            groups,
            errors,
            errors_total,
            off_stack_captures: st.off_stack.load(Ordering::Relaxed),
            refused_allocations: st.refused.load(Ordering::Relaxed),
        }
    }
}
