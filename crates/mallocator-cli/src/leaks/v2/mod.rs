//! The compact binary event log, format v2 (`docs/log-format.md`): read,
//! checked, merged into time order and fed to the same [`Analyzer`] as
//! the text format.
//!
//! Two passes over the bytes (a mapped file or stdin read whole):
//!
//! 1. In file order: check every record and event (errors name the byte
//!    offset), build the module map, intern each stack once as a compact
//!    key (see [`modules`]), and index the chunks by thread.
//! 2. Merge the threads' chunks by timestamp ([`merge`]) and apply each
//!    event to the analyzer, its stack already interned.
//!
//! Memory follows the live blocks, the distinct stacks and the chunk
//! index (16 bytes a chunk of up to 16 KiB), not the events. Only the
//! stacks a report shows become text, at the end ([`stack_texts`]):
//! symbolized from the module map, or raw.

pub mod format;
mod merge;
pub mod modules;

use super::analyze::{Analysis, Analyzer, LogFormat, StackId};
use super::frames::{Frame, StackFrames};
use super::parse::{InputStats, Op};
use super::symbolize::{self, ModuleSymbolizer};
pub use format::looks_like_v2;
use format::{
    End, Error, ErrorKind, Header, EVENT_ALLOC, NO_STACK, TAG_END, TAG_EVENTS, TAG_HEADER,
    TAG_MODULE, TAG_REACHABILITY, TAG_STACK, THREAD_LEN,
};
use hashbrown::HashMap;
use mallocator::backtracing::LeakKind;
use merge::Streams;
use modules::{ModuleMap, StackKey};

/// How many lenient-mode warnings are kept (the total is always counted).
pub const MAX_KEPT_WARNINGS: usize = 100;

/// Stack ids below this are looked up in a flat table (4 bytes an id, so
/// at most 4 MiB whatever the log claims); larger ones in a hash map.
const FLAT_IDS: u32 = 1 << 20;
/// A flat-table slot with no stack.
const UNDEFINED: StackId = StackId::MAX;

/// The stacks defined so far: log id to analyzer id, and where each was
/// defined.
#[derive(Default)]
struct StackTable {
    flat: Vec<StackId>,
    defined: HashMap<u32, (StackId, u64)>,
}

impl StackTable {
    #[inline]
    fn get(&self, id: u32) -> Option<StackId> {
        match self.flat.get(id as usize) {
            Some(&s) if s != UNDEFINED => Some(s),
            Some(_) => None,
            None if id < FLAT_IDS => None,
            None => self.defined.get(&id).map(|d| d.0),
        }
    }

    /// Where `id` was defined, if it was.
    fn first(&self, id: u32) -> Option<u64> {
        self.defined.get(&id).map(|d| d.1)
    }

    fn define(&mut self, id: u32, stack: StackId, offset: u64) {
        self.defined.insert(id, (stack, offset));
        if id < FLAT_IDS {
            let i = id as usize;
            if self.flat.len() <= i {
                self.flat.resize(i + 1, UNDEFINED);
            }
            self.flat[i] = stack;
        }
    }
}

/// What a v2 log held besides its events, for the report and its notices.
#[derive(Debug, Default)]
pub struct Summary {
    /// The header record, if it could be read.
    pub header: Option<Header>,
    /// The end record, if the log has one (without it, it was cut short).
    pub end: Option<End>,
    /// Events read.
    pub events: u64,
    /// Chunks with events.
    pub chunks: usize,
    /// Distinct threads.
    pub threads: usize,
    /// Stack records read.
    pub stacks: usize,
    /// Records of kinds this reader does not know (skipped).
    pub unknown_records: u64,
}

/// A v2 log read and analyzed. The stacks of `analysis` are keys until
/// [`stack_texts`] turns those the report shows into text.
pub struct Reading {
    /// The analysis (its stacks still keys).
    pub analysis: Analysis,
    /// Every module record.
    pub modules: ModuleMap,
    /// Header, end record and counts.
    pub summary: Summary,
    /// Lenient-mode problems (the first [`MAX_KEPT_WARNINGS`]).
    pub warnings: Vec<Error>,
    /// Their total.
    pub warnings_total: u64,
}

/// The first pass's state.
struct Scan<'a> {
    data: &'a [u8],
    lenient: bool,
    analyzer: Analyzer,
    modules: ModuleMap,
    table: StackTable,
    streams: Streams,
    summary: Summary,
    header_at: Option<u64>,
    end_at: Option<u64>,
    /// Offsets of events whose stack was not defined before them (lenient).
    undefined_at: Vec<usize>,
    /// The analyzer's stand-in stack for each undefined id.
    undefined: HashMap<u32, StackId>,
    empty: StackId,
    allocs: u64,
    frees: u64,
    key: Vec<u8>,
    /// When the leak scan of the reachability records ran (the latest,
    /// if several scans were written).
    scanned_at: Option<u64>,
    /// Each block the scan classified.
    reachability: Vec<(u64, LeakKind)>,
    warnings: Vec<Error>,
    warnings_total: u64,
}

impl<'a> Scan<'a> {
    /// Strict: the problem is the error. Lenient: a warning, and reading
    /// goes on past the damaged record or event.
    fn problem(&mut self, e: Error) -> Result<(), Error> {
        if !self.lenient {
            return Err(e);
        }
        self.warnings_total += 1;
        if self.warnings.len() < MAX_KEPT_WARNINGS {
            self.warnings.push(e);
        }
        Ok(())
    }

    fn record(&mut self, r: format::Record<'a>) -> Result<(), Error> {
        if let Some(end) = self.end_at {
            self.problem(Error {
                offset: r.offset,
                kind: ErrorKind::RecordAfterEnd { tag: r.tag, end },
            })?;
        }
        match r.tag {
            TAG_HEADER => match (self.header_at, format::header(r)) {
                (Some(first), _) => self.problem(Error {
                    offset: r.offset,
                    kind: ErrorKind::HeaderTwice { first },
                })?,
                (None, Ok(h)) => {
                    self.summary.header = Some(h);
                    self.header_at = Some(r.offset);
                }
                (None, Err(e)) => self.problem(e)?,
            },
            TAG_MODULE => match format::module(r) {
                Ok(m) => {
                    self.modules.add(m, r.offset);
                }
                Err(e) => self.problem(e)?,
            },
            TAG_STACK => match format::stack(r) {
                Ok(s) => {
                    if let Some(first) = self.table.first(s.id) {
                        self.problem(Error {
                            offset: r.offset,
                            kind: ErrorKind::StackDefinedTwice { id: s.id, first },
                        })?;
                    } else {
                        modules::frames_key(s.frames(), &self.modules, &mut self.key);
                        let stack = self.analyzer.intern(&self.key);
                        self.table.define(s.id, stack, r.offset);
                        self.summary.stacks += 1;
                    }
                }
                Err(e) => self.problem(e)?,
            },
            TAG_EVENTS => self.chunk(r)?,
            TAG_END => match format::end(r) {
                Ok(z) => {
                    self.summary.end = Some(z);
                    self.end_at = Some(r.offset);
                }
                Err(e) => self.problem(e)?,
            },
            TAG_REACHABILITY => match format::reachability(r) {
                Ok(found) => {
                    self.scanned_at = self.scanned_at.max(Some(found.ts));
                    self.reachability.extend(found.blocks);
                }
                Err(e) => self.problem(e)?,
            },
            _ => self.summary.unknown_records += 1,
        }
        Ok(())
    }

    /// An event at `at` names stack `id`, not defined before it: an error,
    /// or (lenient) the event gets a stand-in stack saying so.
    #[cold]
    fn undefined_stack(&mut self, id: u32, at: usize) -> Result<(), Error> {
        self.problem(Error {
            offset: at as u64,
            kind: ErrorKind::UndefinedStack(id),
        })?;
        self.undefined_at.push(at);
        if !self.undefined.contains_key(&id) {
            let text = format!("[stack {id}: not defined before its use in the log]");
            let stack = self.analyzer.intern(&modules::text_key(&text));
            self.undefined.insert(id, stack);
        }
        Ok(())
    }

    /// Checks a chunk's events and indexes them; in lenient mode a chunk
    /// keeps its events up to the first it cannot read (events carry no
    /// length, so nothing after an unknown tag can be found again).
    fn chunk(&mut self, r: format::Record<'a>) -> Result<(), Error> {
        let thread = match format::chunk_thread(r) {
            Ok(t) => t,
            Err(e) => return self.problem(e),
        };
        let base = r.payload_offset() as usize + THREAD_LEN;
        let events = &r.payload[THREAD_LEN..];
        let (mut p, mut n, mut allocs) = (0, 0u64, 0u64);
        while p < events.len() {
            // The common case without branching on alloc/free; anything
            // else (an unknown tag, a cut event) is sorted out by event_len.
            let tag = events[p];
            let len = if tag == EVENT_ALLOC {
                format::ALLOC_LEN
            } else {
                format::FREE_LEN
            };
            let whole =
                (tag == EVENT_ALLOC || tag == format::EVENT_FREE) && events.len() - p >= len;
            if !whole {
                if let Err(kind) = format::event_len(&events[p..]) {
                    self.problem(Error {
                        offset: (base + p) as u64,
                        kind,
                    })?;
                }
                break;
            }
            let id = format::event_stack(&events[p..p + len]);
            if id != NO_STACK && self.table.get(id).is_none() {
                self.undefined_stack(id, base + p)?;
            }
            allocs += u64::from(tag == EVENT_ALLOC);
            n += 1;
            p += len;
        }
        self.allocs += allocs;
        self.frees += n - allocs;
        self.streams.push(thread, base..base + p);
        Ok(())
    }
}

/// What a [`Ready`] is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadyKind {
    Alloc,
    Free,
    /// The moment of the leak scan: the blocks live now are those it
    /// classified (see [`Analyzer::classify_live`]).
    Scan,
}

/// An event ready for the analyzer, decoded and its stack interned (32
/// bytes: what the merging thread hands over is most of its work).
#[derive(Clone, Copy)]
struct Ready {
    addr: u64,
    /// Requested size (allocations).
    size: u64,
    offset: u64,
    stack: StackId,
    /// log2 of the requested alignment (allocations).
    align_log2: u8,
    kind: ReadyKind,
}

impl Ready {
    /// The leak scan's moment in the merged events.
    const SCAN: Ready = Ready {
        addr: 0,
        size: 0,
        offset: 0,
        stack: 0,
        align_log2: 0,
        kind: ReadyKind::Scan,
    };

    #[inline]
    fn apply(&self, analyzer: &mut Analyzer, reachability: &mut Vec<(u64, LeakKind)>) {
        let op = match self.kind {
            ReadyKind::Alloc => Op::Alloc {
                addr: self.addr,
                align: format::align(self.align_log2),
                size: self.size,
            },
            ReadyKind::Free => Op::Free { addr: self.addr },
            ReadyKind::Scan => return analyzer.classify_live(&std::mem::take(reachability)),
        };
        analyzer.apply(op, self.offset, self.stack);
    }
}

/// Events handed from the merging thread to the analyzing one at a time.
const BATCH: usize = 4096;
/// Batches under way between the two (bounds the memory in flight).
const BATCHES_IN_FLIGHT: usize = 4;

/// The second pass: the checked chunks, merged and decoded.
struct Events<'a> {
    data: &'a [u8],
    streams: &'a Streams,
    table: &'a StackTable,
    undefined_at: &'a [usize],
    undefined: &'a HashMap<u32, StackId>,
    empty: StackId,
    /// When the leak scan ran, if the log has one: [`Ready::SCAN`] goes
    /// before the first event after it.
    scanned_at: Option<u64>,
}

impl Events<'_> {
    /// Calls `f` with every event, in merge order, and with
    /// [`Ready::SCAN`] at the leak scan's moment.
    fn each(&self, mut f: impl FnMut(Ready)) {
        let mut scan = self.scanned_at;
        merge::merge(self.data, self.streams, |pos| {
            if scan.is_some_and(|at| format::event_ts(&self.data[pos..]) > at) {
                scan = None;
                f(Ready::SCAN);
            }
            if let Some(r) = self.ready(pos) {
                f(r);
            }
        });
        if scan.is_some() {
            f(Ready::SCAN);
        }
    }

    /// The event at `pos`, decoded. Inlined into the merge loop: a call
    /// per event cost as much as the decoding.
    #[inline(always)]
    fn ready(&self, pos: usize) -> Option<Ready> {
        let data = self.data;
        // Allocations and frees share the layout up to the address; the
        // rest is picked without branching on the kind, which is as good
        // as random.
        let alloc = data[pos] == EVENT_ALLOC;
        let len = if alloc {
            format::ALLOC_LEN
        } else {
            format::FREE_LEN
        };
        // Checked in the first pass; only a mapped file changed since could
        // make this fail, and then the event is dropped.
        let bytes = data.get(pos..pos + len)?;
        let id = format::event_stack(bytes);
        let stack = if id == NO_STACK {
            self.empty
        } else if !self.undefined_at.is_empty() && self.undefined_at.binary_search(&pos).is_ok() {
            self.undefined.get(&id).copied().unwrap_or(self.empty)
        } else {
            self.table.get(id).unwrap_or(self.empty)
        };
        Some(Ready {
            addr: format::event_addr(bytes),
            size: if alloc { format::alloc_size(bytes) } else { 0 },
            offset: pos as u64,
            stack,
            align_log2: if alloc {
                format::alloc_align_log2(bytes)
            } else {
                0xFF
            },
            kind: if alloc {
                ReadyKind::Alloc
            } else {
                ReadyKind::Free
            },
        })
    }

    /// Applies every event to `analyzer`, in merge order. Merging and
    /// decoding take about as long as the analysis, so they run on a
    /// thread of their own and hand the events over in batches (on one
    /// thread if none can be started).
    fn apply(&self, analyzer: &mut Analyzer, mut reachability: Vec<(u64, LeakKind)>) {
        let reachability = &mut reachability;
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<Ready>>(BATCHES_IN_FLIGHT);
        let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Vec<Ready>>();
        std::thread::scope(|scope| {
            let producer = std::thread::Builder::new()
                .name("merge".into())
                .spawn_scoped(scope, move || {
                    let mut batch = Vec::with_capacity(BATCH);
                    self.each(|r| {
                        batch.push(r);
                        if batch.len() == BATCH {
                            let next = spare_rx
                                .try_recv()
                                .unwrap_or_else(|_| Vec::with_capacity(BATCH));
                            // The receiver only goes away if it panicked.
                            let _ = full_tx.send(std::mem::replace(&mut batch, next));
                        }
                    });
                    let _ = full_tx.send(batch);
                });
            if producer.is_err() {
                self.each(|r| r.apply(analyzer, reachability));
                return;
            }
            for mut batch in full_rx {
                for r in &batch {
                    r.apply(analyzer, reachability);
                }
                batch.clear();
                let _ = spare_tx.send(batch);
            }
        });
    }
}

/// Reads, checks and analyzes a whole v2 log. Strict: the first problem
/// is the error. Lenient: problems become warnings and what can be read
/// is analyzed; only a log whose magic or version is wrong still fails.
pub fn read(data: &[u8], lenient: bool) -> Result<Reading, Error> {
    let mut pos = format::check_preamble(data)?;
    let mut analyzer = Analyzer::new();
    let empty = analyzer.intern(&modules::empty_key());
    let mut scan = Scan {
        data,
        lenient,
        analyzer,
        modules: ModuleMap::default(),
        table: StackTable::default(),
        streams: Streams::default(),
        summary: Summary::default(),
        header_at: None,
        end_at: None,
        undefined_at: Vec::new(),
        undefined: HashMap::new(),
        empty,
        allocs: 0,
        frees: 0,
        key: Vec::new(),
        scanned_at: None,
        reachability: Vec::new(),
        warnings: Vec::new(),
        warnings_total: 0,
    };
    let mut first = true;
    loop {
        let (record, next) = match format::next_record(scan.data, pos) {
            Ok(Some(r)) => r,
            Ok(None) => break,
            // A record cut by the end of the file: nothing after it.
            Err(e) => {
                scan.problem(e)?;
                break;
            }
        };
        if first && record.tag != TAG_HEADER {
            scan.problem(Error {
                offset: record.offset,
                kind: ErrorKind::HeaderNotFirst { tag: record.tag },
            })?;
        }
        first = false;
        scan.record(record)?;
        pos = next;
    }
    scan.summary.events = scan.allocs + scan.frees;
    scan.summary.threads = scan.streams.threads();
    let Scan {
        mut analyzer,
        table,
        streams,
        undefined_at,
        undefined,
        empty,
        scanned_at,
        reachability,
        ..
    } = scan;
    let events = Events {
        data,
        streams: &streams,
        table: &table,
        undefined_at: &undefined_at,
        undefined: &undefined,
        empty,
        scanned_at,
    };
    events.apply(&mut analyzer, reachability);
    let mut analysis = analyzer.finish();
    analysis.input = InputStats {
        bytes: data.len() as u64,
        lines: 0,
        allocs: scan.allocs,
        frees: scan.frees,
        other_lines: 0,
    };
    analysis.log_format = LogFormat::V2;
    scan.summary.chunks = streams.chunks();
    Ok(Reading {
        analysis,
        modules: scan.modules,
        summary: scan.summary,
        warnings: scan.warnings,
        warnings_total: scan.warnings_total,
    })
}

/// Turns the stacks the report shows into text: each frame symbolized
/// through `symbolizer` (function and file:line from the module's object
/// file), or raw (`path+0xoffset [0xip]`, `[0xip]` outside any module)
/// where it cannot be, or without a symbolizer. Returns the frame objects
/// of the stacks of frames, one per line (every frame has its address,
/// and its module's path and offset when it is in one).
pub fn stack_texts(
    analysis: &mut Analysis,
    modules: &ModuleMap,
    mut symbolizer: Option<&mut ModuleSymbolizer<'_>>,
) -> StackFrames {
    let mut objects = StackFrames::default();
    for id in symbolize::shown_stacks(analysis) {
        let text = match modules::decode_key(analysis.stacks.text(id)) {
            // A note standing in for a stack: its frame object is its text.
            StackKey::Text(t) => t.to_vec(),
            StackKey::Frames(frames) => {
                let mut lines: Vec<String> = Vec::with_capacity(frames.len());
                let mut objs: Vec<Frame> = Vec::with_capacity(frames.len());
                for (ip, m) in frames {
                    let module = m.and_then(|m| modules.modules.get(m as usize));
                    let object = module.map(|m| m.path_text());
                    let offset = module.map(|m| ip.wrapping_sub(m.bias));
                    let resolved = match (&mut symbolizer, m) {
                        (Some(s), Some(m)) => s.frame(ip, m),
                        _ => None,
                    };
                    match resolved {
                        Some(symbols) => {
                            for s in symbols {
                                lines.push(s.line());
                                objs.push(s.frame(Some(ip), object.clone(), offset));
                            }
                        }
                        None => {
                            lines.push(modules::raw_frame(ip, module));
                            objs.push(Frame {
                                ip: Some(ip),
                                object,
                                offset,
                                ..Frame::default()
                            });
                        }
                    }
                }
                objects.set(id, objs);
                lines.join("\n").into_bytes()
            }
        };
        analysis.stacks.rewrite(id, text);
    }
    objects
}

/// What the report of a log with this summary cannot show, one sentence
/// each: the log was cut short (no end record), the tracker lost events,
/// or the events read are not the events the end record counts.
pub fn notices(summary: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    match summary.end {
        None => out.push(format!(
            "cut short: the log has no end record (the program was still running, crashed or was \
             killed); the report covers the {} events read, and a block whose free was still in \
             a thread's buffer shows as a leak",
            summary.events
        )),
        Some(end) => {
            if end.lost > 0 {
                out.push(format!(
                    "the tracker could not write {} events (a write failed): blocks freed by them \
                     show as leaks, and frees of blocks allocated by them as unknown frees",
                    end.lost
                ));
            }
            if end.events != summary.events {
                out.push(format!(
                    "the end record counts {} events written but the log holds {}: chunks are \
                     missing or damaged",
                    end.events, summary.events
                ));
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "../../../tests/support/v2_log.rs"]
mod v2_log;

#[cfg(test)]
mod tests {
    use super::v2_log::{alloc, first_event, free, Ev, Log, NO_STACK};
    use super::*;

    fn read_ok(log: &[u8]) -> Reading {
        match read(log, false) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    fn strict_error(log: &[u8]) -> Error {
        match read(log, false) {
            Err(e) => e,
            Ok(_) => panic!("the damaged log was accepted"),
        }
    }

    /// Leak groups as (bytes, count, raw stack text), in report order.
    fn groups(r: &mut Reading) -> Vec<(u64, u64, String)> {
        stack_texts(&mut r.analysis, &r.modules, None);
        r.analysis.group_texts()
    }

    /// A header, one module (`/app` at 0x1000..0x2000, bias 0x1000) and
    /// stacks 1 (two frames in `/app`) and 2 (one frame outside it).
    fn preamble() -> Log {
        let mut log = Log::new();
        log.header("/app", "/work")
            .module(0x1000, 0x1000, 0x2000, &[0xab, 0xcd], b"/app")
            .stack(1, &[0x1010, 0x1020])
            .stack(2, &[0x5000]);
        log
    }

    #[test]
    fn leaks_and_errors_of_a_small_log() {
        let mut log = preamble();
        let chunk = log.offset();
        log.events(
            1,
            &[
                alloc(1, 0x10, 100, 1),
                alloc(2, 0x20, 8, 2),
                free(3, 0x20, 2),
                free(4, 0x99, 2),
                free(5, 0, NO_STACK),
                alloc(6, 0, 1 << 40, 1),
            ],
        )
        .end(6, 0);
        let mut r = read_ok(&log.build());
        assert_eq!(
            groups(&mut r),
            vec![(100, 1, "/app+0x10 [0x1010]\n/app+0x20 [0x1020]".into())]
        );
        let a = &r.analysis;
        assert_eq!((a.leaked_bytes, a.leaked_blocks), (100, 1));
        assert_eq!(a.log_format, LogFormat::V2);
        assert_eq!(
            (a.input.allocs, a.input.frees, a.input.bytes),
            (3, 3, log.bytes.len() as u64)
        );
        // The unknown free is the fourth event: 30 + 30 + 21 bytes in.
        assert_eq!(a.unknown_frees.len(), 1);
        let unknown = a.unknown_frees[0].1.first_line;
        assert_eq!(unknown, (first_event(chunk) + 81) as u64);
        assert_eq!(a.stacks.text(a.unknown_frees[0].0), b"[0x5000]");
        assert_eq!(a.null_frees[0].1.count, 1);
        assert_eq!(a.stacks.text(a.null_frees[0].0), b"");
        assert_eq!(a.null_results[0].1.bytes, 1 << 40);
        let s = &r.summary;
        assert_eq!((s.events, s.chunks, s.threads, s.stacks), (6, 1, 1, 2));
        assert_eq!(s.header.as_ref().unwrap().cwd, b"/work");
        assert!(notices(s).is_empty(), "{:?}", notices(s));
    }

    #[test]
    fn raw_frames_objects_have_address_module_and_offset() {
        let mut log = preamble();
        log.events(1, &[alloc(1, 0x10, 100, 1), alloc(2, 0x20, 8, 2)])
            .end(2, 0);
        let mut r = read_ok(&log.build());
        let objects = stack_texts(&mut r.analysis, &r.modules, None);
        let a = &r.analysis;
        let frame = |ip, object: Option<&str>, offset| Frame {
            ip: Some(ip),
            object: object.map(str::to_owned),
            offset,
            ..Frame::default()
        };
        assert_eq!(
            objects.get(a, a.groups[0].stack),
            vec![
                frame(0x1010, Some("/app"), Some(0x10)),
                frame(0x1020, Some("/app"), Some(0x20))
            ]
        );
        assert_eq!(
            objects.get(a, a.groups[1].stack),
            vec![frame(0x5000, None, None)]
        );
    }

    #[test]
    fn an_earlier_event_written_later_is_merged_by_its_time() {
        // Thread 2 allocates X at ts 10 and keeps it; thread 1 allocated
        // and freed X at ts 1 and 2, but its chunk is written last. In
        // file order X would look freed; in time order thread 2's block
        // is the leak.
        let mut log = preamble();
        log.stack(3, &[0x1030])
            .events(2, &[alloc(10, 0x40, 64, 2)])
            .events(1, &[alloc(1, 0x40, 32, 1), free(2, 0x40, 3)])
            .end(3, 0);
        let mut r = read_ok(&log.build());
        assert_eq!(groups(&mut r), vec![(64, 1, "[0x5000]".into())]);
        let a = &r.analysis;
        assert!(a.live_reuses.is_empty() && a.unknown_frees.is_empty());
        assert_eq!(r.summary.threads, 2);
    }

    #[test]
    fn a_free_and_an_allocation_at_the_same_time_free_first() {
        // Thread 1 frees X and thread 2 is handed X within one clock tick.
        let mut log = preamble();
        log.events(1, &[alloc(1, 0x40, 8, 1)])
            .events(2, &[alloc(5, 0x40, 16, 2)])
            .events(1, &[free(5, 0x40, 1)])
            .end(3, 0);
        let mut r = read_ok(&log.build());
        assert_eq!(groups(&mut r), vec![(16, 1, "[0x5000]".into())]);
        assert!(r.analysis.live_reuses.is_empty());
    }

    /// A leak scan's classes hold for the blocks live at its moment in
    /// the merged events, wherever its record lies in the file: not for a
    /// block freed after it, nor one allocated after it (even at the
    /// address of one it classified).
    #[test]
    fn a_leak_scan_classifies_the_blocks_live_at_its_moment() {
        let mut log = preamble();
        log.stack(3, &[0x1030])
            .reachability(5, &[(0x10, 1), (0x20, 4), (0x30, 1), (0x40, 2)])
            .events(
                1,
                &[
                    alloc(1, 0x10, 100, 1),
                    alloc(2, 0x20, 8, 2),
                    alloc(3, 0x30, 16, 1),
                    alloc(4, 0x40, 24, 2),
                    free(8, 0x30, NO_STACK),
                    alloc(9, 0x30, 32, 3),
                ],
            )
            .events(2, &[alloc(7, 0x50, 64, 3)])
            .end(7, 0);
        let r = read_ok(&log.build());
        let a = &r.analysis;
        assert!(a.classified);
        let kinds: Vec<(u64, u64, Option<LeakKind>)> = a
            .groups
            .iter()
            .map(|g| (g.bytes, g.count, g.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                (100, 1, Some(LeakKind::DefinitelyLost)),
                (24, 1, Some(LeakKind::IndirectlyLost)),
                (96, 2, None),
                (8, 1, Some(LeakKind::StillReachable)),
            ]
        );
        assert_eq!((a.leaked_blocks, a.lost_blocks()), (5, 4));
        // Without the record, nothing is classified: every block counts.
        let mut plain = preamble();
        plain.events(1, &[alloc(1, 0x10, 100, 1)]).end(1, 0);
        let a = read_ok(&plain.build()).analysis;
        assert!(!a.classified && a.groups[0].kind.is_none());
        assert_eq!(a.lost_blocks(), 1);
    }

    #[test]
    fn a_module_loaded_over_an_old_range_owns_the_stacks_after_it() {
        let mut log = Log::new();
        log.header("", "")
            .module(0x1000, 0x1000, 0x2000, &[], b"/a.so")
            .stack(1, &[0x1010])
            .module(0x1000, 0x1000, 0x2000, &[], b"/b.so")
            .stack(2, &[0x1010])
            .events(1, &[alloc(1, 0x10, 2, 1), alloc(2, 0x20, 1, 2)])
            .end(2, 0);
        let mut r = read_ok(&log.build());
        assert_eq!(
            groups(&mut r),
            vec![
                (2, 1, "/a.so+0x10 [0x1010]".into()),
                (1, 1, "/b.so+0x10 [0x1010]".into())
            ]
        );
    }

    #[test]
    fn a_log_without_an_end_record_is_read_and_said_cut_short() {
        let mut log = preamble();
        log.events(1, &[alloc(1, 0x10, 8, 1)]);
        let r = read_ok(&log.build());
        assert_eq!(r.analysis.leaked_blocks, 1);
        let n = notices(&r.summary);
        assert_eq!(n.len(), 1);
        assert!(n[0].starts_with("cut short:"), "{n:?}");
        assert!(n[0].contains("the 1 events read"), "{n:?}");
        let mut lost = preamble();
        lost.events(1, &[alloc(1, 0x10, 8, 1)]).end(3, 2);
        let n = notices(&read_ok(&lost.build()).summary);
        assert_eq!(n.len(), 2, "{n:?}");
        assert!(n[0].contains("could not write 2 events"), "{n:?}");
        assert!(n[1].contains("counts 3 events written but the log holds 1"));
    }

    #[test]
    fn unknown_records_are_skipped() {
        let mut log = preamble();
        log.record(b'Q', b"from a later version")
            .events(1, &[alloc(1, 0x10, 8, 1)])
            .end(1, 0);
        let r = read_ok(&log.build());
        assert_eq!(r.summary.unknown_records, 1);
        assert_eq!(r.analysis.leaked_blocks, 1);
    }

    /// Damaged logs, each with the offset and the error strict reading
    /// must report.
    fn damaged() -> Vec<(&'static str, Vec<u8>, u64, ErrorKind)> {
        let mut cases = Vec::new();
        let mut log = preamble();
        let at = log.offset() as u64;
        log.events(1, &[alloc(1, 0x10, 8, 1)]);
        let mut cut = log.build();
        cut.truncate(cut.len() - 3);
        cases.push((
            "record past the end",
            cut,
            at,
            ErrorKind::RecordPastEnd {
                tag: b'E',
                declared: 38,
                present: 35,
            },
        ));
        let mut head_cut = preamble().build();
        let at = head_cut.len() as u64;
        head_cut.extend_from_slice(&[b'E', 1]);
        cases.push((
            "cut record head",
            head_cut,
            at,
            ErrorKind::RecordHeadCut { present: 2 },
        ));
        let mut v3 = Log::with_version(3);
        v3.header("", "");
        cases.push(("version", v3.build(), 8, ErrorKind::BadVersion(3)));
        let mut garbage = Log::new().build();
        garbage.extend_from_slice(b"\x01\x02\x00\x00\x00\xff\xff garbage after the magic");
        cases.push(("garbage", garbage, 12, ErrorKind::HeaderNotFirst { tag: 1 }));
        let mut twice = preamble();
        let at = twice.offset() as u64;
        twice.header("", "");
        cases.push((
            "header twice",
            twice.build(),
            at,
            ErrorKind::HeaderTwice { first: 12 },
        ));
        let mut short = preamble();
        let at = short.offset() as u64;
        short.record(b'M', &[0; 24]);
        cases.push((
            "payload too short",
            short.build(),
            at,
            ErrorKind::PayloadTooShort {
                tag: b'M',
                field: "build_id_len",
                needed: 25,
                len: 24,
            },
        ));
        let mut many = preamble();
        let at = many.offset() as u64;
        many.stack(9, &[0x10; 257]);
        cases.push((
            "too many frames",
            many.build(),
            at,
            ErrorKind::TooManyFrames { id: 9, count: 257 },
        ));
        let mut reserved = preamble();
        let at = reserved.offset() as u64;
        reserved.stack(0xFFFF_FFF0, &[]);
        cases.push((
            "reserved stack id",
            reserved.build(),
            at,
            ErrorKind::ReservedStackId(0xFFFF_FFF0),
        ));
        let mut again = preamble();
        // Stack 1 comes right after the header and the module.
        let mut up_to_stacks = Log::new();
        up_to_stacks
            .header("/app", "/work")
            .module(0x1000, 0x1000, 0x2000, &[0xab, 0xcd], b"/app");
        let first = up_to_stacks.offset() as u64;
        let at = again.offset() as u64;
        again.stack(1, &[]);
        cases.push((
            "stack defined twice",
            again.build(),
            at,
            ErrorKind::StackDefinedTwice { id: 1, first },
        ));
        let mut before = preamble();
        let chunk = before.offset();
        before
            .events(1, &[alloc(1, 0x10, 8, 1), free(2, 0x10, 7)])
            .stack(7, &[]);
        cases.push((
            "stack used before its definition",
            before.build(),
            (first_event(chunk) + 30) as u64,
            ErrorKind::UndefinedStack(7),
        ));
        let mut unknown = preamble();
        let chunk = unknown.offset();
        let mut payload = 1u64.to_le_bytes().to_vec();
        alloc(1, 0x10, 8, 1).encode(&mut payload);
        payload.extend_from_slice(&[3; 21]);
        unknown.record(b'E', &payload);
        cases.push((
            "unknown event tag",
            unknown.build(),
            (first_event(chunk) + 30) as u64,
            ErrorKind::UnknownEvent(3),
        ));
        let mut cut_event = preamble();
        let chunk = cut_event.offset();
        let mut payload = 1u64.to_le_bytes().to_vec();
        free(1, 0x10, 1).encode(&mut payload);
        payload.pop();
        cut_event.record(b'E', &payload);
        cases.push((
            "event cut by its chunk's end",
            cut_event.build(),
            first_event(chunk) as u64,
            ErrorKind::EventCut {
                tag: 2,
                needed: 21,
                left: 20,
            },
        ));
        let mut class = preamble();
        let at = class.offset() + 5 + 8 + 9;
        class.reachability(1, &[(0x10, 1), (0x20, 5)]);
        cases.push((
            "unknown reachability class",
            class.build(),
            at as u64,
            ErrorKind::UnknownLeakKind(5),
        ));
        let mut cut_entry = preamble();
        let at = cut_entry.offset() as u64;
        let mut payload = [0; 8 + 9 + 4];
        payload[8 + 8] = 1;
        cut_entry.record(b'R', &payload);
        cases.push((
            "reachability entry cut",
            cut_entry.build(),
            at,
            ErrorKind::PayloadTooShort {
                tag: b'R',
                field: "block address",
                needed: 8 + 9 + 8,
                len: 8 + 9 + 4,
            },
        ));
        let mut after = preamble();
        let end = after.offset() as u64;
        after.end(0, 0);
        let at = after.offset() as u64;
        after.events(1, &[alloc(1, 0x10, 8, 1)]);
        cases.push((
            "record after the end",
            after.build(),
            at,
            ErrorKind::RecordAfterEnd { tag: b'E', end },
        ));
        cases
    }

    #[test]
    fn damage_is_an_error_at_its_offset() {
        for (what, log, offset, kind) in damaged() {
            let e = strict_error(&log);
            assert_eq!(e, Error { offset, kind }, "{what}");
            assert!(
                e.to_string()
                    .starts_with(&format!("offset {offset} (0x{offset:x}): ")),
                "{what}: {e}"
            );
        }
    }

    #[test]
    fn lenient_reading_warns_and_keeps_what_it_can() {
        for (what, log, offset, kind) in damaged() {
            match read(&log, true) {
                Ok(r) => {
                    assert!(r.warnings_total >= 1, "{what}");
                    assert_eq!(r.warnings[0], Error { offset, kind }, "{what}");
                }
                Err(e) => assert_eq!(e.kind, ErrorKind::BadVersion(3), "{what}: {e}"),
            }
        }
        // A cut last record: the events before it are reported.
        let mut log = preamble();
        log.events(1, &[alloc(1, 0x10, 8, 1)]);
        log.events(1, &[free(2, 0x10, 1), alloc(3, 0x20, 4, 2)]);
        let mut cut = log.build();
        cut.truncate(cut.len() - 1);
        let mut r = read(&cut, true).unwrap();
        assert_eq!(
            groups(&mut r),
            vec![(8, 1, "/app+0x10 [0x1010]\n/app+0x20 [0x1020]".into())]
        );
        // An event naming a stack defined only later keeps its event,
        // with a stand-in stack.
        let mut log = preamble();
        log.events(1, &[alloc(1, 0x10, 8, 9)]).stack(9, &[0x1010]);
        let mut r = read(&log.build(), true).unwrap();
        assert_eq!(
            groups(&mut r),
            vec![(
                8,
                1,
                "[stack 9: not defined before its use in the log]".into()
            )]
        );
        // An unknown event tag loses the rest of its chunk only.
        let mut log = preamble();
        let mut payload = 1u64.to_le_bytes().to_vec();
        alloc(1, 0x10, 8, 1).encode(&mut payload);
        payload.push(7);
        alloc(2, 0x20, 16, 1).encode(&mut payload);
        log.record(b'E', &payload);
        log.events(2, &[alloc(3, 0x30, 32, 2)]);
        let mut r = read(&log.build(), true).unwrap();
        assert_eq!(r.warnings_total, 1);
        let got: Vec<u64> = groups(&mut r).iter().map(|g| g.0).collect();
        assert_eq!(got, vec![32, 8]);
    }

    #[test]
    fn a_log_of_only_magic_and_version_has_no_events() {
        let r = read_ok(&Log::new().build());
        assert_eq!(r.summary.events, 0);
        assert!(r.summary.header.is_none());
        assert!(notices(&r.summary)[0].starts_with("cut short"));
    }

    #[test]
    fn sparse_and_large_stack_ids() {
        let mut log = preamble();
        log.stack(FLAT_IDS + 5, &[0x1010])
            .stack(FLAT_IDS - 1, &[0x5000])
            .events(
                1,
                &[
                    alloc(1, 0x10, 8, FLAT_IDS + 5),
                    alloc(2, 0x20, 4, FLAT_IDS - 1),
                ],
            )
            .end(2, 0);
        let mut r = read_ok(&log.build());
        assert_eq!(
            groups(&mut r),
            vec![
                (8, 1, "/app+0x10 [0x1010]".into()),
                (4, 1, "[0x5000]".into())
            ]
        );
        let mut undefined = preamble();
        undefined.events(1, &[alloc(1, 0x10, 8, FLAT_IDS + 6)]);
        assert_eq!(
            strict_error(&undefined.build()).kind,
            ErrorKind::UndefinedStack(FLAT_IDS + 6)
        );
    }

    fn sample() -> Vec<u8> {
        let mut log = preamble();
        let evs: Vec<Ev> = (0..40)
            .map(|i| {
                if i % 3 == 2 {
                    free(i, 0x10 * (i - 1), 2)
                } else {
                    alloc(i, 0x10 * i, i, 1 + (i as u32 % 2))
                }
            })
            .collect();
        log.events(1, &evs[..20])
            .events(2, &evs[20..])
            .reachability(30, &[(0x10, 1), (0x30, 2), (0x40, 3), (0x60, 4)])
            .end(40, 0);
        log.build()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// A valid log with random bytes overwritten and cut, and random
        /// bytes after the magic: strict reading ends in a reading or an
        /// error, lenient reading too, and every report of either works
        /// (the fuzz target's checks).
        #[test]
        fn damaged_logs_never_panic(
            edits in proptest::collection::vec((0usize..2000, proptest::prelude::any::<u8>()), 0..6),
            cut in 0usize..2000,
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let mut log = sample();
            for (at, b) in edits {
                let at = 12 + at % (log.len() - 12);
                log[at] = b;
            }
            log.truncate(cut.max(8).min(log.len()));
            crate::leaks::check_pipeline(&log);
            let mut random = Log::new().build();
            random.extend_from_slice(&noise);
            crate::leaks::check_pipeline(&random);
        }
    }
}
