//! [`LeakReport`]: never-freed blocks grouped by stack, plus the errors
//! the tracker survived; text and JSON renderings.

mod json;

use core::fmt;

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::errors::ErrorRecord;
use super::live::{Record, LIVE_SHARDS};
use super::reachability::{self, LeakKind};
use super::stacks::INTERNAL;
use super::state::State;
use super::symbolize::Symbolizer;
use super::sys_vec::{sys_vec, SysVec};
use super::thread::Busy;
use super::Backtracing;
use super::{os, stack};

/// One symbolized stack frame. Inlined functions give several frames with
/// the same `ip`, innermost first. In JSON, a frame object of the report
/// schema (`docs/report-schema.md`): what is not known is left out.
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Source file, when debug info is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Source line, when debug info is present.
    #[serde(skip_serializing_if = "Option::is_none")]
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
/// let g = mallocator::backtracing::LeakGroup { bytes: 48, count: 2, frames: vec![], kind: None };
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
    /// How reachable the blocks were when the report was made; only the
    /// global tracker's exit report classifies (`None` elsewhere). A
    /// stack whose blocks fall in several classes gives a group for each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<LeakKind>,
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

/// A bad free the tracker detected and survived. In JSON, an error object
/// of the report schema (`docs/report-schema.md`) with a `count` of 1.
///
/// ```
/// use mallocator::backtracing::{ErrorEntry, ErrorKind};
/// let e = ErrorEntry { kind: ErrorKind::InvalidFree, address: 0x40, size: None, thread: 1,
///     frames: vec![], alloc_frames: vec![], first_free_frames: vec![] };
/// assert!(e.to_string().starts_with("invalid free of 0x40"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
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
/// and JSON ([`to_json`](LeakReport::to_json), or any serde serializer):
/// the leak report schema that `mallocator leaks --json` writes too,
/// version [`LeakReport::SCHEMA`], with `"source": "in_process"`. Every
/// field is described in `docs/report-schema.md`, and
/// `docs/report-schema.json` checks it.
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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeakReport {
    /// Total bytes of never-freed blocks.
    pub leaked_bytes: usize,
    /// Number of never-freed blocks.
    pub leaked_blocks: usize,
    /// Groups by allocation stack (and by [`LeakKind`] when classified:
    /// lost ones first), largest `bytes` first.
    pub groups: Vec<LeakGroup>,
    /// Bad frees, in the order they happened (the first 4096 kept).
    pub errors: Vec<ErrorEntry>,
    /// Bad frees in total (may exceed `errors.len()`).
    pub errors_total: usize,
    /// The double frees among them (all of them, kept in `errors` or not).
    pub double_frees: usize,
    /// The invalid frees among them (`errors_total - double_frees`).
    pub invalid_frees: usize,
    /// Stacks captured empty because the code ran on a stack the
    /// frame-pointer walk does not know (a coroutine or green-thread
    /// stack): their blocks are tracked, but listed without frames.
    pub off_stack_captures: usize,
    /// Allocations the tracker refused (returned null) because it could
    /// not store their record, being out of memory itself.
    pub refused_allocations: usize,
    /// Never-freed blocks left out of `groups` (and of the totals above)
    /// because a suppression matched their stack.
    pub suppressed_blocks: usize,
    /// Their bytes.
    pub suppressed_bytes: usize,
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

    /// Blocks the program can no longer free: definitely or indirectly
    /// lost, or, in a report that does not classify reachability, every
    /// never-freed block.
    ///
    /// ```
    /// assert_eq!(mallocator::backtracing::LeakReport::default().lost_blocks(), 0);
    /// ```
    pub fn lost_blocks(&self) -> usize {
        self.groups
            .iter()
            .filter(|g| g.kind.is_none_or(LeakKind::is_lost))
            .map(|g| g.count)
            .sum()
    }

    /// The report as pretty-printed JSON, in the report schema
    /// (`docs/report-schema.md`).
    ///
    /// ```
    /// let j = mallocator::backtracing::LeakReport::default().to_json();
    /// assert!(j.contains("\"leaked_bytes\": 0"));
    /// assert!(j.contains("\"source\": \"in_process\""));
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
        let classified = self.groups.iter().any(|g| g.kind.is_some());
        if classified {
            for kind in [
                LeakKind::DefinitelyLost,
                LeakKind::IndirectlyLost,
                LeakKind::PossiblyLost,
                LeakKind::StillReachable,
            ] {
                let (bytes, blocks) = self
                    .groups
                    .iter()
                    .filter(|g| g.kind == Some(kind))
                    .fold((0, 0), |(b, n), g| (b + g.bytes, n + g.count));
                writeln!(
                    f,
                    "  {:<16} {bytes} bytes in {blocks} block{}",
                    format!("{}:", kind.as_str().replace('_', " ")),
                    plural(blocks)
                )?;
            }
        }
        let mut reachable = (0, 0);
        for g in &self.groups {
            // Reachable memory is counted, not listed: the program could
            // still free it (the JSON report lists it).
            if g.kind == Some(LeakKind::StillReachable) {
                reachable = (reachable.0 + 1, reachable.1 + g.bytes);
                continue;
            }
            let how = g.kind.map_or(String::new(), |k| {
                format!(" {}", k.as_str().replace('_', " "))
            });
            writeln!(
                f,
                "  {} bytes in {} block{}{how}, allocated at:",
                g.bytes,
                g.count,
                plural(g.count)
            )?;
            for (i, frame) in g.frames.iter().enumerate() {
                writeln!(f, "      #{i} {frame}")?;
            }
        }
        if reachable.0 > 0 {
            writeln!(
                f,
                "  (still reachable: {} bytes from {} stack{}, not listed; the JSON report lists them)",
                reachable.1,
                reachable.0,
                plural(reachable.0)
            )?;
        }
        if self.suppressed_blocks > 0 {
            writeln!(
                f,
                "  (suppressed: {} bytes in {} block{})",
                self.suppressed_bytes,
                self.suppressed_blocks,
                plural(self.suppressed_blocks)
            )?;
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

/// Whether and how a report classifies reachability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// No classification.
    Unclassified,
    /// Every root: static data, thread-local storage, this thread's stack
    /// from `sp` up (the caller's frames, not the report's own), and the
    /// registers a callee must preserve, as the caller left them.
    AllRoots { sp: usize, registers: os::Registers },
    /// Static data and thread-local storage, not the stack: what a scope
    /// asks, where memory the runtime keeps for good is not a leak, but a
    /// block only a local variable still holds is.
    ScopeRoots,
}

impl Backtracing<'_> {
    /// The report of the records that pass `keep` (and the bad frees
    /// when `with_errors`), their reachability classified as `reach` says;
    /// `None` when the memory that grows with the live blocks (their
    /// records copied out, the blocks reported) cannot be had. What grows
    /// with the distinct stacks (the groups, their symbols) is allocated
    /// as any Rust code does.
    pub(crate) fn build_report(
        &self,
        keep: &dyn Fn(&Record) -> bool,
        with_errors: bool,
        reach: Reach,
    ) -> Option<LeakReport> {
        self.read(|st| self.report_of(st, keep, with_errors, reach))
            .unwrap_or_else(|| Some(LeakReport::default()))
    }

    /// [`build_report`](Self::build_report) on the state `st`.
    fn report_of(
        &self,
        st: &State,
        keep: &dyn Fn(&Record) -> bool,
        with_errors: bool,
        reach: Reach,
    ) -> Option<LeakReport> {
        let _busy = Busy::enter(st.epoch);
        let mut records: SysVec<Record> = sys_vec();
        let wanted = |r: &Record| r.stack != INTERNAL && keep(r);
        // Until the records and errors are copied out, with the hot path's
        // locks held: a signal handler's call waits in the queue.
        let (kinds, errors, errors_total, double_frees) = st.reading(|| {
            let kinds = if reach == Reach::Unclassified || !os::ROOTS_KNOWN {
                for shard in &st.live {
                    if !shard.lock().collect(&mut records, &wanted) {
                        return None;
                    }
                }
                None
            } else {
                // Every block is classified (the ones `keep` leaves out
                // may lead to the ones it keeps); those are dropped after.
                classified_live(st, &mut records, reach)?
            };
            let mut errors: SysVec<ErrorRecord> = sys_vec();
            if !with_errors {
                return Some((kinds, errors, 0, 0));
            }
            let e = st.errors.lock();
            errors.try_reserve_exact(e.kept.len()).ok()?;
            errors.extend_from_slice(&e.kept);
            Some((kinds, errors, e.total, e.double_frees))
        })?;
        // The blocks reported, with their class. A scope reports only
        // the lost ones, unclassified (its scan leaves out the stack).
        let mut entries: Vec<(Record, Option<LeakKind>)> = Vec::new();
        entries.try_reserve_exact(records.len()).ok()?;
        entries.extend(
            records
                .iter()
                .enumerate()
                .map(|(i, r)| (*r, kinds.as_ref().map(|k| k[i])))
                .filter(|&(r, _)| wanted(&r))
                .filter(|&(_, kind)| {
                    reach != Reach::ScopeRoots || kind.is_none_or(LeakKind::is_lost)
                })
                .map(|(r, kind)| (r, kind.filter(|_| reach != Reach::ScopeRoots))),
        );
        drop(records);
        // Each group's blocks next to each other (sorted in place: no
        // memory that grows with the blocks), summed a run at a time.
        entries.sort_unstable_by_key(|&(r, kind)| (r.stack, kind));
        let by_stack = entries
            .chunk_by(|a, b| (a.0.stack, a.1) == (b.0.stack, b.1))
            .map(|run| {
                let bytes = run.iter().map(|(r, _)| r.size()).sum::<usize>();
                ((run[0].0.stack, run[0].1), (bytes, run.len()))
            });
        let mut symbols = Symbolizer {
            stacks: &st.stacks,
            cache: HashMap::new(),
            full: self.full_stacks.load(Ordering::Relaxed),
        };
        // Suppressions see whole stacks (as LeakSanitizer's do: a pattern
        // may name a frame the report does not show).
        let suppressions = super::global::suppressions();
        let (mut suppressed_blocks, mut suppressed_bytes) = (0, 0);
        let mut groups: Vec<LeakGroup> = Vec::new();
        for ((stack, kind), (bytes, count)) in by_stack {
            if suppressions.matches_frames(symbols.whole(stack)) {
                suppressed_blocks += count;
                suppressed_bytes += bytes;
                continue;
            }
            groups.push(LeakGroup {
                bytes,
                count,
                frames: symbols.frames(stack),
                kind,
            });
        }
        // Stacks that differ only in frames the report does not show are
        // one group (as `mallocator leaks` groups them).
        let mut index: HashMap<(Vec<usize>, Option<LeakKind>), usize> = HashMap::new();
        let mut merged: Vec<LeakGroup> = Vec::with_capacity(groups.len());
        for g in groups {
            let key = (g.frames.iter().map(|f| f.ip).collect(), g.kind);
            match index.get(&key) {
                Some(&i) => {
                    merged[i].bytes += g.bytes;
                    merged[i].count += g.count;
                }
                None => {
                    index.insert(key, merged.len());
                    merged.push(g);
                }
            }
        }
        let mut groups = merged;
        // Lost blocks first (the kinds' order), then the largest.
        groups.sort_by(|a, b| {
            a.kind
                .cmp(&b.kind)
                .then((b.bytes, b.count).cmp(&(a.bytes, a.count)))
                .then_with(|| {
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
        Some(LeakReport {
            leaked_bytes: entries.iter().map(|(r, _)| r.size()).sum::<usize>() - suppressed_bytes,
            leaked_blocks: entries.len() - suppressed_blocks,
            groups,
            errors,
            errors_total,
            double_frees,
            invalid_frees: errors_total - double_frees,
            off_stack_captures: st.off_stack.load(Ordering::Relaxed),
            refused_allocations: st.refused.load(Ordering::Relaxed),
            suppressed_blocks,
            suppressed_bytes,
        })
    }
}

/// What a report that must answer does when the memory for the live
/// blocks cannot be had ([`Backtracing::report`], a scope's).
#[cold]
#[track_caller]
pub(crate) fn out_of_memory() -> LeakReport {
    panic!("mallocator: not enough memory for the leak report (try_report answers None)")
}

/// Copies every live block's record but the tracker's own into
/// `records`, sorted by address, and classifies them from the roots
/// `reach` names: `Some(None)` where the roots are not known (or the
/// scan had no memory), `None` when the records could not be copied. For the tracker's own reading (`State::reading`), on a
/// state whose tables are not locked by this thread.
pub(crate) fn classified_live(
    st: &State,
    records: &mut SysVec<Record>,
    reach: Reach,
) -> Option<Option<SysVec<LeakKind>>> {
    // Every shard stays locked through the scan, so that no block is
    // freed (and maybe unmapped) while it is read. Nothing in between
    // allocates through the tracker (it would wait for these locks): the
    // scan's memory comes from the C library. The loader's lock first
    // (see `os::with_loader_locked`).
    os::with_loader_locked(|| {
        let shards: [_; LIVE_SHARDS] = core::array::from_fn(|i| st.live[i].lock());
        shards
            .iter()
            .all(|s| s.collect(records, &|r| r.stack != INTERNAL))
            .then(|| classify(records, reach))
    })
}

/// The reachability of each of `records` (sorted here by address) from
/// the roots `reach` names; `None` where the roots or the readable memory
/// are not known, or out of memory. Allocates only from the C library
/// (see `build_report`).
fn classify(records: &mut SysVec<Record>, reach: Reach) -> Option<SysVec<LeakKind>> {
    // Only what can be read is: a program may have made part of a block
    // or of its data unreadable.
    let readable = os::Readable::of_process()?;
    records.sort_unstable_by_key(|r| r.addr);
    let mut blocks: SysVec<(usize, usize)> = sys_vec();
    blocks.try_reserve_exact(records.len()).ok()?;
    blocks.extend(records.iter().map(|r| (r.addr, r.size())));
    let (stack, registers) = match reach {
        Reach::AllRoots { sp, registers } => (
            Some((sp, stack::top_of_current_stack(sp)?)),
            Some(registers),
        ),
        _ => (None, None),
    };
    let mut known = false;
    let kinds = reachability::classify(
        &blocks,
        &mut |f| {
            registers.iter().flatten().for_each(|&w| f(w));
            if let Some((sp, top)) = stack {
                // SAFETY: between the stack pointer and the top of the
                // stack this thread runs on: mapped, and alive during the scan.
                unsafe { os::for_each_word(sp, top - sp, f) };
            }
            let is_start = |w: usize| blocks.binary_search_by_key(&w, |b| b.0).is_ok();
            known = os::for_each_root_range(&mut |start, len, starts_only| {
                let f = &mut |w| {
                    if !starts_only || is_start(w) {
                        f(w)
                    }
                };
                readable.each_part(start, len, &mut |start, len| {
                    // SAFETY: readable, in a range the loader lists as
                    // mapped and keeps while the walk runs.
                    unsafe { os::for_each_word(start, len, f) }
                });
            });
        },
        &mut |addr, size, f| {
            readable.each_part(addr, size, &mut |start, len| {
                // SAFETY: readable, in a live block (`size` bytes at
                // `addr`, allocated, and not freed while the caller holds
                // every live-table lock).
                unsafe { os::for_each_word(start, len, f) }
            });
        },
    )?;
    known.then_some(kinds)
}
