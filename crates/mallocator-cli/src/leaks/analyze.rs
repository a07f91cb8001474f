//! The leak analysis: the C leak script's algorithm plus the errors it
//! silently drops.
//!
//! The C script keeps `map[addr] = (stack, size)`: an ALLOC sets the entry
//! (overwriting), a FREE deletes it if present, and what is left at the
//! end are the leaks, grouped by identical stack text. [`Analyzer`] does
//! exactly that, with stacks interned (each distinct stack text is stored
//! once and named by a `u32`), so memory follows the live set and the
//! number of distinct stacks, not the log size. On top it classifies what
//! the C script ignores: frees of addresses never allocated, double frees,
//! NULL results, `free(NULL)` and allocations returning a still-live
//! address. The one deliberate difference: address 0 is never a block (the
//! C script would keep a NULL result as a "leak" at 0x0).
//!
//! # Double frees: a window of recent frees
//!
//! Telling a double free from a free of an unknown address needs the
//! addresses already freed. Remembering all of them would make memory grow
//! with the number of distinct addresses ever freed (a long log of
//! short-lived blocks), so only the last [`FREE_WINDOW`] freed addresses
//! are kept, oldest forgotten first (an address allocated again is live,
//! so freeing it after that is an ordinary free, whatever the window
//! still holds for it). A double
//! free whose first free is more than [`FREE_WINDOW`] frees back is
//! therefore reported as an unknown (invalid) free: still an error, without
//! the first free's stack. The in-process tracker does the same with its
//! ring of recent frees. Leaks do not depend on the window.

use super::parse::{InputStats, Op, Record};
use hashbrown::hash_map::Entry;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use mallocator::backtracing::{LeakKind, Suppressions};
use std::collections::VecDeque;
use std::hash::BuildHasher;

/// How many of the most recent frees are remembered to recognise a double
/// free (see the module docs): about 3 MiB at most, whatever the log size.
pub const FREE_WINDOW: usize = 1 << 16;

/// Index of an interned stack.
pub type StackId = u32;

/// Each distinct stack text stored once.
#[derive(Default)]
pub struct Interner {
    texts: Vec<Box<[u8]>>,
    table: HashTable<StackId>,
    hasher: DefaultHashBuilder,
}

impl Interner {
    /// The id of `text`, adding it on first sight.
    pub fn intern(&mut self, text: &[u8]) -> StackId {
        let hash = self.hasher.hash_one(text);
        let texts = &self.texts;
        if let Some(&id) = self.table.find(hash, |&id| *texts[id as usize] == *text) {
            return id;
        }
        // More than 4 billion distinct stacks cannot come from a log that
        // fits on a disk; saturate rather than wrap if it ever happens.
        let id = StackId::try_from(self.texts.len()).unwrap_or(StackId::MAX);
        self.texts.push(text.into());
        let (texts, hasher) = (&self.texts, &self.hasher);
        self.table
            .insert_unique(hash, id, |&i| hasher.hash_one(&*texts[i as usize]));
        id
    }

    /// The text of `id`.
    pub fn text(&self, id: StackId) -> &[u8] {
        &self.texts[id as usize]
    }

    /// Replaces the text of `id` (symbolization). Texts are no longer
    /// deduplicated after this: it is meant for finished analyses.
    pub fn rewrite(&mut self, id: StackId, text: Vec<u8>) {
        self.texts[id as usize] = text.into_boxed_slice();
        self.table.clear();
    }

    /// The frames of `id`, one string per line.
    pub fn frames(&self, id: StackId) -> Vec<String> {
        let text = self.text(id);
        if text.is_empty() {
            return Vec::new();
        }
        String::from_utf8_lossy(text)
            .split('\n')
            .map(str::to_owned)
            .collect()
    }
}

#[derive(Clone, Copy)]
struct Live {
    stack: StackId,
    size: u64,
    /// How reachable the leak scan at exit found it; `None` before the
    /// scan, or when it was allocated after it.
    kind: Option<LeakKind>,
}

/// Bytes and blocks live at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Usage {
    bytes: u64,
    blocks: u64,
}

/// One allocation stack's live blocks now, and as they were when the
/// heap last reached a new peak: the peak's consumers (heaptrack's "peak
/// memory consumers") in one pass over the log.
///
/// While the heap grows, every allocation can be a new peak, so nothing is
/// copied then: a new peak only starts a new *peak epoch*
/// ([`Analyzer::peak_epoch`]), and a stack's figures are copied into
/// `at_peak` the first time they change within an epoch, just before the
/// change. So a stack changed since the last peak holds its figures at
/// that peak in `at_peak`, and any other stack still holds them in `now`
/// ([`StackUse::at_last_peak`]).
#[derive(Clone, Copy, Default)]
struct StackUse {
    now: Usage,
    at_peak: Usage,
    /// The peak epoch of its last change.
    epoch: u64,
}

impl StackUse {
    /// The figures at the peak of `epoch`, the last one.
    fn at_last_peak(&self, epoch: u64) -> Usage {
        if self.epoch == epoch {
            self.at_peak
        } else {
            self.now
        }
    }
}

#[derive(Clone, Copy)]
struct Freed {
    alloc: StackId,
    free: StackId,
    size: u64,
}

/// The last `capacity` frees: a FIFO of (address, free number) and an
/// index by address (holding the free number too). An address freed again
/// (after it was allocated again) takes a new FIFO slot and keeps its old
/// one until that slot is the oldest; the free number stops such a stale
/// slot from evicting the later free of the same address.
///
/// An address allocated again is not removed from the index: while the
/// block is live, its frees find it among the live blocks and never look
/// here, and its next free replaces the entry. That saves a lookup in this
/// large, cache-missing table for every allocation.
struct RecentFrees {
    order: VecDeque<(u64, u64)>,
    by_addr: HashMap<u64, (Freed, u64)>,
    capacity: usize,
    next_seq: u64,
}

impl RecentFrees {
    fn new(capacity: usize) -> Self {
        RecentFrees {
            order: VecDeque::new(),
            by_addr: HashMap::new(),
            // A window of 0 would evict before inserting; 1 is the least.
            capacity: capacity.max(1),
            next_seq: 0,
        }
    }

    /// Remembers that `addr` was freed, forgetting the oldest free if the
    /// window is full.
    fn insert(&mut self, addr: u64, freed: Freed) {
        if self.order.len() == self.capacity {
            if let Some((old, seq)) = self.order.pop_front() {
                if let Entry::Occupied(e) = self.by_addr.entry(old) {
                    if e.get().1 == seq {
                        e.remove();
                    }
                }
            }
        }
        self.order.push_back((addr, self.next_seq));
        self.by_addr.insert(addr, (freed, self.next_seq));
        self.next_seq += 1;
    }

    fn get(&self, addr: u64) -> Option<&Freed> {
        self.by_addr.get(&addr).map(|(f, _)| f)
    }
}

impl Default for RecentFrees {
    fn default() -> Self {
        RecentFrees::new(FREE_WINDOW)
    }
}

/// Occurrences of one kind of error at one set of sites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    /// How many times.
    pub count: u64,
    /// Bytes involved (block sizes, or requested sizes for NULL results).
    pub bytes: u64,
    /// Header line of the first occurrence.
    pub first_line: u64,
}

impl Tally {
    fn add<K: std::hash::Hash + Eq>(
        tallies: &mut HashMap<K, Tally>,
        key: K,
        bytes: u64,
        line: u64,
    ) {
        let t = tallies.entry(key).or_insert(Tally {
            count: 0,
            bytes: 0,
            first_line: line,
        });
        t.count = t.count.saturating_add(1);
        t.bytes = t.bytes.saturating_add(bytes);
    }

    /// How many times in all, over every site of `items` (saturating).
    pub fn total(items: &[(impl Sized, Tally)]) -> u64 {
        items
            .iter()
            .fold(0u64, |acc, (_, t)| acc.saturating_add(t.count))
    }
}

/// Sites of a double free: where the block was allocated, first freed and freed again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DoubleFreeSites {
    /// Allocation stack.
    pub alloc: StackId,
    /// First free.
    pub first_free: StackId,
    /// The free of an already freed block.
    pub second_free: StackId,
}

/// An allocation returned an address that was still live: the old block's
/// FREE record is missing. The C script overwrites the old block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReuseSites {
    /// Allocation stack of the block that was dropped.
    pub old: StackId,
    /// Allocation stack of the new block at the same address.
    pub new: StackId,
}

/// Streaming analyzer: feed it records, then call [`Analyzer::finish`].
#[derive(Default)]
pub struct Analyzer {
    stacks: Interner,
    live: HashMap<u64, Live>,
    /// The last [`FREE_WINDOW`] freed addresses, for double frees.
    freed: RecentFrees,
    double_frees: HashMap<DoubleFreeSites, Tally>,
    unknown_frees: HashMap<StackId, Tally>,
    null_results: HashMap<StackId, Tally>,
    null_frees: HashMap<StackId, Tally>,
    live_reuses: HashMap<ReuseSites, Tally>,
    heap: HeapUsage,
    /// Bytes in the blocks of `live` (saturating, as the sizes).
    live_bytes: u64,
    /// Each stack's share of the live blocks, by [`StackId`].
    uses: Vec<StackUse>,
    /// How many times the heap reached a new peak (see [`StackUse`]).
    peak_epoch: u64,
    /// Whether [`classify_live`](Self::classify_live) ran.
    classified: bool,
}

/// How much the program allocated: Valgrind's "total heap usage" and
/// heaptrack's "peak heap memory consumption", in the log's order of
/// events (time order; a v2 log's threads merged by timestamp).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HeapUsage {
    /// Bytes asked for by every allocation that succeeded (saturating).
    pub allocated_bytes: u64,
    /// The most bytes live at once.
    pub peak_bytes: u64,
    /// The live blocks at that moment (the first time it was reached).
    pub peak_blocks: u64,
}

/// Never-freed blocks with one stack (and, in a log with a leak scan,
/// one class).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The stack.
    pub stack: StackId,
    /// Total bytes.
    pub bytes: u64,
    /// Number of blocks.
    pub count: u64,
    /// How reachable its blocks were at exit, when the log says.
    pub kind: Option<LeakKind>,
}

/// The result of an analysis, sorted largest first.
pub struct Analysis {
    /// Interned stacks the ids below refer to.
    pub stacks: Interner,
    /// Leak groups, largest total first.
    pub groups: Vec<Group>,
    /// Total leaked bytes.
    pub leaked_bytes: u64,
    /// Total leaked blocks.
    pub leaked_blocks: u64,
    /// Whether the log held a leak scan of the blocks live at exit (the
    /// groups then have their `kind`, but for blocks allocated after it).
    pub classified: bool,
    /// Never-freed blocks left out of `groups` and the totals because a
    /// suppression matched their stack.
    pub suppressed_blocks: u64,
    /// Their bytes.
    pub suppressed_bytes: u64,
    /// Double frees by sites.
    pub double_frees: Vec<(DoubleFreeSites, Tally)>,
    /// Frees of addresses never allocated, by free site.
    pub unknown_frees: Vec<(StackId, Tally)>,
    /// Allocations that returned NULL, by site (bytes: requested).
    pub null_results: Vec<(StackId, Tally)>,
    /// `free(NULL)` calls, by site.
    pub null_frees: Vec<(StackId, Tally)>,
    /// Allocations that returned a still-live address.
    pub live_reuses: Vec<(ReuseSites, Tally)>,
    /// Bytes allocated in all, and the peak.
    pub heap: HeapUsage,
    /// The blocks live at the peak (the first time it was reached) by
    /// allocation stack, most bytes first (as [`groups`](Self::groups)):
    /// what to shrink to lower the peak. All of them, until
    /// [`keep_peak_consumers`](Self::keep_peak_consumers) keeps the first.
    pub peak_consumers: Vec<Group>,
    /// How many stacks held blocks at the peak (set by
    /// [`keep_peak_consumers`](Self::keep_peak_consumers), which may
    /// follow a merge of stacks).
    pub peak_consumers_total: usize,
    /// Counts of what was read (filled in by the caller).
    pub input: InputStats,
    /// The kind of log read, which says what a [`Tally::first_line`] is
    /// (filled in by the caller).
    pub log_format: LogFormat,
}

impl Analysis {
    /// Each group as (bytes, blocks, its stack's text), for tests.
    #[cfg(test)]
    pub(crate) fn group_texts(&self) -> Vec<(u64, u64, String)> {
        self.groups
            .iter()
            .map(|g| {
                let text = String::from_utf8(self.stacks.text(g.stack).to_vec()).unwrap();
                (g.bytes, g.count, text)
            })
            .collect()
    }

    /// Blocks and bytes of the groups whose class passes `keep`.
    pub fn total_of(&self, keep: impl Fn(Option<LeakKind>) -> bool) -> (u64, u64) {
        (self.groups.iter().filter(|g| keep(g.kind))).fold((0, 0), |(blocks, bytes), g| {
            (blocks + g.count, u64::saturating_add(bytes, g.bytes))
        })
    }

    /// Never-freed blocks the program could no longer free: definitely
    /// or indirectly lost, or not classified (every block of a log
    /// without a leak scan).
    pub fn lost_blocks(&self) -> u64 {
        self.total_of(|kind| kind.is_none_or(LeakKind::is_lost)).0
    }

    /// Keeps the first `n` of [`peak_consumers`](Self::peak_consumers),
    /// counting them all in [`peak_consumers_total`](Self::peak_consumers_total).
    pub fn keep_peak_consumers(&mut self, n: usize) {
        self.peak_consumers_total = self.peak_consumers.len();
        self.peak_consumers.truncate(n);
    }

    /// Leaves out the groups whose stack `suppressions` match (a frame
    /// line, as the report shows it, containing a pattern), counting them
    /// in `suppressed_blocks` and `suppressed_bytes` instead of the
    /// totals.
    pub fn suppress(&mut self, suppressions: &Suppressions) {
        let stacks = &self.stacks;
        let (mut blocks, mut bytes) = (0, 0);
        self.groups.retain(|g| {
            let text = String::from_utf8_lossy(stacks.text(g.stack));
            let out = text.lines().any(|line| suppressions.matches_text(line));
            if out {
                blocks += g.count;
                bytes = u64::saturating_add(bytes, g.bytes);
            }
            !out
        });
        // Sizes saturate (a log may claim anything), so the totals left
        // are summed again rather than found by subtraction.
        self.suppressed_blocks += blocks;
        self.suppressed_bytes = self.suppressed_bytes.saturating_add(bytes);
        self.leaked_blocks -= blocks;
        self.leaked_bytes = (self.groups.iter()).fold(0, |sum, g| sum.saturating_add(g.bytes));
    }
}

/// The kind of log an analysis was read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// The Firedancer text format: locations are line numbers.
    #[default]
    Text,
    /// The binary format v2: locations are byte offsets.
    V2,
}

/// Sorts groups as a report lists them: lost blocks first (definitely,
/// indirectly, possibly lost, not classified, still reachable), then most
/// bytes, then most blocks, then by stack text.
pub fn sort_groups(groups: &mut [Group], stacks: &Interner) {
    let rank = |kind: Option<LeakKind>| match kind {
        Some(LeakKind::DefinitelyLost) => 0,
        Some(LeakKind::IndirectlyLost) => 1,
        Some(LeakKind::PossiblyLost) => 2,
        None => 3,
        Some(LeakKind::StillReachable) => 4,
    };
    groups.sort_by(|a, b| {
        rank(a.kind)
            .cmp(&rank(b.kind))
            .then((b.bytes, b.count).cmp(&(a.bytes, a.count)))
            .then_with(|| stacks.text(a.stack).cmp(stacks.text(b.stack)))
    });
}

/// Sorts tallies by count (then bytes) descending, first line ascending.
fn sorted<K>(m: HashMap<K, Tally>) -> Vec<(K, Tally)> {
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by(|a, b| {
        (b.1.count, b.1.bytes, a.1.first_line).cmp(&(a.1.count, a.1.bytes, b.1.first_line))
    });
    v
}

impl Analyzer {
    /// A new, empty analysis.
    pub fn new() -> Self {
        Self::default()
    }

    /// An analysis remembering the last `window` frees instead of
    /// [`FREE_WINDOW`], so that tests can leave the window cheaply.
    #[cfg(test)]
    fn with_free_window(window: usize) -> Self {
        Analyzer {
            freed: RecentFrees::new(window),
            ..Self::default()
        }
    }

    /// Entries of the window of recent frees: (FIFO slots, indexed addresses).
    #[cfg(test)]
    fn free_window_len(&self) -> (usize, usize) {
        (self.freed.order.len(), self.freed.by_addr.len())
    }

    /// Applies one record.
    pub fn record(&mut self, r: &Record<'_>) {
        let stack = self.stacks.intern(r.stack);
        self.apply(r.op, r.line, stack);
    }

    /// The id of a stack, adding it on first sight: for readers whose log
    /// names each stack once and then refers to it (the v2 binary log), so
    /// that an event costs no hashing of its stack.
    pub fn intern(&mut self, stack: &[u8]) -> StackId {
        self.stacks.intern(stack)
    }

    /// Applies one operation whose stack is already interned; `line` says
    /// where it is (a line number in a text log, a byte offset in a v2 log).
    pub fn apply(&mut self, op: Op, line: u64, stack: StackId) {
        match op {
            Op::Alloc { addr: 0, size, .. } => {
                Tally::add(&mut self.null_results, stack, size, line);
            }
            Op::Alloc { addr, size, .. } => {
                match self.live.entry(addr) {
                    Entry::Occupied(mut e) => {
                        let old = e.get();
                        let sites = ReuseSites {
                            old: old.stack,
                            new: stack,
                        };
                        Tally::add(&mut self.live_reuses, sites, old.size, line);
                        // The old block is gone as far as anyone can tell.
                        self.live_bytes = self.live_bytes.saturating_sub(old.size);
                        let old = *old;
                        e.insert(Live {
                            stack,
                            size,
                            kind: None,
                        });
                        self.stack_change(old.stack, old.size, false);
                    }
                    Entry::Vacant(e) => {
                        e.insert(Live {
                            stack,
                            size,
                            kind: None,
                        });
                    }
                }
                self.stack_change(stack, size, true);
                self.live_bytes = self.live_bytes.saturating_add(size);
                let heap = &mut self.heap;
                heap.allocated_bytes = heap.allocated_bytes.saturating_add(size);
                if self.live_bytes > heap.peak_bytes {
                    heap.peak_bytes = self.live_bytes;
                    heap.peak_blocks = self.live.len() as u64;
                    self.peak_epoch += 1;
                }
            }
            Op::Free { addr: 0 } => Tally::add(&mut self.null_frees, stack, 0, line),
            Op::Free { addr } => {
                if let Some(block) = self.live.remove(&addr) {
                    self.live_bytes = self.live_bytes.saturating_sub(block.size);
                    self.stack_change(block.stack, block.size, false);
                    let freed = Freed {
                        alloc: block.stack,
                        free: stack,
                        size: block.size,
                    };
                    self.freed.insert(addr, freed);
                } else if let Some(f) = self.freed.get(addr) {
                    let sites = DoubleFreeSites {
                        alloc: f.alloc,
                        first_free: f.free,
                        second_free: stack,
                    };
                    Tally::add(&mut self.double_frees, sites, f.size, line);
                } else {
                    Tally::add(&mut self.unknown_frees, stack, 0, line);
                }
            }
        }
    }

    /// Counts a block of `size` bytes allocated at `stack` in (`add`) or
    /// out of that stack's live blocks, keeping its figures at the last
    /// peak first (see [`StackUse`]).
    #[inline]
    fn stack_change(&mut self, stack: StackId, size: u64, add: bool) {
        let i = stack as usize;
        if i >= self.uses.len() {
            self.uses.resize(i + 1, StackUse::default());
        }
        let used = &mut self.uses[i];
        if used.epoch != self.peak_epoch {
            used.at_peak = used.now;
            used.epoch = self.peak_epoch;
        }
        let now = &mut used.now;
        if add {
            now.bytes = now.bytes.saturating_add(size);
            now.blocks += 1;
        } else {
            now.bytes = now.bytes.saturating_sub(size);
            now.blocks -= 1;
        }
    }

    /// The leak scan at exit: each block of `found` that is live now gets
    /// its class (the scan's moment in the log's order of events).
    pub fn classify_live(&mut self, found: &[(u64, LeakKind)]) {
        for &(addr, kind) in found {
            if let Some(block) = self.live.get_mut(&addr) {
                block.kind = Some(kind);
            }
        }
        self.classified = true;
    }

    /// Groups the never-freed blocks by stack (and class), in
    /// [`sort_groups`]'s order.
    pub fn finish(self) -> Analysis {
        let mut by_stack: HashMap<(StackId, Option<LeakKind>), (u64, u64)> = HashMap::new();
        let (mut leaked_bytes, mut leaked_blocks) = (0u64, 0u64);
        for block in self.live.values() {
            let g = by_stack.entry((block.stack, block.kind)).or_default();
            g.0 = g.0.saturating_add(block.size);
            g.1 += 1;
            leaked_bytes = leaked_bytes.saturating_add(block.size);
            leaked_blocks += 1;
        }
        let mut groups: Vec<Group> = by_stack
            .into_iter()
            .map(|((stack, kind), (bytes, count))| Group {
                stack,
                bytes,
                count,
                kind,
            })
            .collect();
        let stacks = self.stacks;
        sort_groups(&mut groups, &stacks);
        let mut peak_consumers: Vec<Group> = (self.uses.iter().enumerate())
            .map(|(id, used)| (id, used.at_last_peak(self.peak_epoch)))
            .filter(|(_, at_peak)| at_peak.blocks > 0)
            .map(|(id, at_peak)| Group {
                stack: id as StackId,
                bytes: at_peak.bytes,
                count: at_peak.blocks,
                kind: None,
            })
            .collect();
        sort_groups(&mut peak_consumers, &stacks);
        Analysis {
            stacks,
            groups,
            leaked_bytes,
            leaked_blocks,
            classified: self.classified,
            suppressed_blocks: 0,
            suppressed_bytes: 0,
            double_frees: sorted(self.double_frees),
            unknown_frees: sorted(self.unknown_frees),
            null_results: sorted(self.null_results),
            null_frees: sorted(self.null_frees),
            live_reuses: sorted(self.live_reuses),
            heap: self.heap,
            peak_consumers_total: peak_consumers.len(),
            peak_consumers,
            input: InputStats::default(),
            log_format: LogFormat::Text,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::parse::Parser;
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap as StdMap;
    use std::fmt::Write as _;

    /// Parses and analyses a whole log (strict mode), with the parser's
    /// input statistics filled in, as `mallocator leaks` does. Shared by
    /// the renderer's tests.
    pub(in crate::leaks) fn analyze(log: &str) -> Analysis {
        let mut p = Parser::new(log.as_bytes(), false);
        let mut an = Analyzer::new();
        while let Some(r) = p.next_record().unwrap() {
            an.record(&r);
        }
        let mut a = an.finish();
        a.input = p.stats();
        a
    }

    /// Leak groups as (bytes, count, stack text), in report order.
    fn alloc(log: &mut String, addr: u64, size: u64, frames: &[&str]) {
        writeln!(log, "+++ ALLOC:{}:0x{addr:016x}:16:{size}", frames.len()).unwrap();
        for f in frames {
            writeln!(log, "{f}").unwrap();
        }
        log.push_str("---\n");
    }

    fn free(log: &mut String, addr: u64, frames: &[&str]) {
        writeln!(log, "+++ FREE:{}:0x{addr:016x}", frames.len()).unwrap();
        for f in frames {
            writeln!(log, "{f}").unwrap();
        }
        log.push_str("---\n");
    }

    #[test]
    fn leaks_grouped_by_identical_stack_text_largest_first() {
        let mut log = String::new();
        alloc(&mut log, 0x1000, 10, &["a", "main"]);
        alloc(&mut log, 0x2000, 20, &["b", "main"]);
        alloc(&mut log, 0x3000, 15, &["a", "main"]);
        alloc(&mut log, 0x4000, 7, &["a", "other"]);
        free(&mut log, 0x2000, &["f"]);
        let a = analyze(&log);
        assert_eq!(
            a.group_texts(),
            vec![(25, 2, "a\nmain".into()), (7, 1, "a\nother".into())]
        );
        assert_eq!((a.leaked_bytes, a.leaked_blocks), (32, 3));
        assert!(a.double_frees.is_empty() && a.unknown_frees.is_empty());
    }

    #[test]
    fn heap_usage_counts_what_was_allocated_and_the_most_live_at_once() {
        let mut log = String::new();
        alloc(&mut log, 0x1000, 10, &["a"]);
        alloc(&mut log, 0x2000, 20, &["b"]);
        free(&mut log, 0x1000, &["f"]);
        // 25 live: below the peak of 30 in 2 blocks.
        alloc(&mut log, 0x3000, 5, &["c"]);
        // A failed allocation, a double free and an unknown free change
        // nothing.
        alloc(&mut log, 0, 1 << 40, &["huge"]);
        free(&mut log, 0x1000, &["f"]);
        free(&mut log, 0x9000, &["f"]);
        // A live address handed out again replaces its block: 20 + 40 = 60
        // live in 2 blocks, the new peak.
        alloc(&mut log, 0x3000, 40, &["d"]);
        free(&mut log, 0x2000, &["f"]);
        let a = analyze(&log);
        assert_eq!(
            a.heap,
            HeapUsage {
                allocated_bytes: 75,
                peak_bytes: 60,
                peak_blocks: 2,
            }
        );
        assert_eq!((a.leaked_bytes, a.leaked_blocks), (40, 1));
    }

    /// The peak consumers as (bytes, blocks, stack text), in report order.
    fn peak_texts(a: &Analysis) -> Vec<(u64, u64, String)> {
        (a.peak_consumers.iter())
            .map(|g| {
                (
                    g.bytes,
                    g.count,
                    String::from_utf8_lossy(a.stacks.text(g.stack)).into(),
                )
            })
            .collect()
    }

    #[test]
    fn peak_consumers_are_the_stacks_live_when_the_peak_was_first_reached() {
        let mut log = String::new();
        alloc(&mut log, 0x1000, 10, &["a"]);
        alloc(&mut log, 0x2000, 20, &["b"]);
        alloc(&mut log, 0x3000, 30, &["a"]);
        // The peak: 60 bytes, 40 of them from `a`.
        free(&mut log, 0x1000, &["f"]);
        free(&mut log, 0x3000, &["f"]);
        // 60 again, all from `c`: not a new peak, so not what is listed.
        alloc(&mut log, 0x4000, 40, &["c"]);
        // `b`'s block replaced by one from `c`: `b` holds nothing now.
        alloc(&mut log, 0x2000, 5, &["c"]);
        let a = analyze(&log);
        assert_eq!((a.heap.peak_bytes, a.heap.peak_blocks), (60, 3));
        assert_eq!(
            peak_texts(&a),
            vec![(40, 2, "a".into()), (20, 1, "b".into())]
        );
        assert_eq!(a.peak_consumers_total, 2);
        let mut kept = analyze(&log);
        kept.keep_peak_consumers(1);
        assert_eq!(peak_texts(&kept), vec![(40, 2, "a".into())]);
        assert_eq!(kept.peak_consumers_total, 2);
    }

    #[test]
    fn address_reuse_overwrites_like_the_c_script() {
        let mut log = String::new();
        // Normal reuse after a free.
        alloc(&mut log, 0x1000, 8, &["first"]);
        free(&mut log, 0x1000, &["f"]);
        alloc(&mut log, 0x1000, 16, &["second"]);
        // Reuse of a live address (missing FREE): the old block is dropped.
        alloc(&mut log, 0x2000, 100, &["lost"]);
        alloc(&mut log, 0x2000, 5, &["winner"]);
        let a = analyze(&log);
        assert_eq!(
            a.group_texts(),
            vec![(16, 1, "second".into()), (5, 1, "winner".into())]
        );
        assert_eq!(a.live_reuses.len(), 1);
        let (sites, tally) = a.live_reuses[0];
        assert_eq!(a.stacks.text(sites.old), b"lost");
        assert_eq!(a.stacks.text(sites.new), b"winner");
        assert_eq!((tally.count, tally.bytes, tally.first_line), (1, 100, 13));
        // The address was re-allocated, so its earlier free does not
        // count: no double free anywhere.
        assert!(a.double_frees.is_empty());
    }

    #[test]
    fn freeing_a_reallocated_address_is_an_ordinary_free() {
        let mut an = Analyzer::new();
        feed(&mut an, alloc_op(0x10), "a1");
        feed(&mut an, Op::Free { addr: 0x10 }, "f1");
        feed(&mut an, alloc_op(0x10), "a2");
        feed(&mut an, Op::Free { addr: 0x10 }, "f2");
        let a = std::mem::take(&mut an).finish();
        assert!(a.double_frees.is_empty() && a.unknown_frees.is_empty());
        assert_eq!(a.leaked_blocks, 0);
        // Freed once more, it is a double free of the second block.
        feed(&mut an, alloc_op(0x10), "a1");
        feed(&mut an, Op::Free { addr: 0x10 }, "f1");
        feed(&mut an, alloc_op(0x10), "a2");
        feed(&mut an, Op::Free { addr: 0x10 }, "f2");
        feed(&mut an, Op::Free { addr: 0x10 }, "f3");
        let a = an.finish();
        assert_eq!(a.double_frees.len(), 1);
        let (sites, _) = a.double_frees[0];
        assert_eq!(a.stacks.text(sites.alloc), b"a2");
        assert_eq!(a.stacks.text(sites.first_free), b"f2");
    }

    #[test]
    fn double_free_names_all_three_sites() {
        let mut log = String::new();
        alloc(&mut log, 0x1000, 24, &["alloc_site"]);
        free(&mut log, 0x1000, &["first_free"]);
        free(&mut log, 0x1000, &["second_free"]);
        free(&mut log, 0x1000, &["second_free"]);
        let a = analyze(&log);
        assert_eq!(a.leaked_blocks, 0);
        assert_eq!(a.double_frees.len(), 1);
        let (s, t) = a.double_frees[0];
        assert_eq!(a.stacks.text(s.alloc), b"alloc_site");
        assert_eq!(a.stacks.text(s.first_free), b"first_free");
        assert_eq!(a.stacks.text(s.second_free), b"second_free");
        assert_eq!((t.count, t.bytes, t.first_line), (2, 48, 7));
        assert!(a.unknown_frees.is_empty());
    }

    #[test]
    fn unknown_frees_null_results_and_free_null() {
        let mut log = String::new();
        free(&mut log, 0xdead0, &["foreign"]);
        alloc(&mut log, 0, 1 << 40, &["huge"]);
        alloc(&mut log, 0, 1 << 40, &["huge"]);
        free(&mut log, 0, &["null_free"]);
        alloc(&mut log, 0x10, 0, &["zero_size"]);
        let a = analyze(&log);
        // NULL is never a block; a zero-size block is.
        assert_eq!(a.group_texts(), vec![(0, 1, "zero_size".into())]);
        assert_eq!(a.unknown_frees.len(), 1);
        assert_eq!(a.stacks.text(a.unknown_frees[0].0), b"foreign");
        assert_eq!(a.unknown_frees[0].1.first_line, 1);
        assert_eq!(a.null_results.len(), 1);
        assert_eq!(
            a.null_results[0].1,
            Tally {
                count: 2,
                bytes: 2 << 40,
                first_line: 4
            }
        );
        assert_eq!(a.null_frees.len(), 1);
        assert_eq!(a.null_frees[0].1.count, 1);
    }

    #[test]
    fn sizes_saturate_instead_of_overflowing() {
        let mut log = String::new();
        alloc(&mut log, 0x10, u64::MAX, &["x"]);
        alloc(&mut log, 0x20, u64::MAX, &["x"]);
        let a = analyze(&log);
        assert_eq!(a.leaked_bytes, u64::MAX);
        assert_eq!(a.groups[0].bytes, u64::MAX);
        assert_eq!(a.heap.allocated_bytes, u64::MAX);
        assert_eq!((a.heap.peak_bytes, a.heap.peak_blocks), (u64::MAX, 1));
    }

    /// Feeds one record straight to `an` (no text to parse: cheap enough
    /// to go round the full window several times).
    fn feed(an: &mut Analyzer, op: Op, stack: &str) {
        an.record(&Record {
            op,
            line: 1,
            stack: stack.as_bytes(),
        });
    }

    fn alloc_op(addr: u64) -> Op {
        Op::Alloc {
            addr,
            align: 16,
            size: 8,
        }
    }

    #[test]
    fn free_window_stays_bounded_over_many_distinct_frees() {
        let mut an = Analyzer::new();
        let mut largest = (0, 0);
        for i in 0..3 * FREE_WINDOW as u64 {
            let addr = 0x1000 + 16 * i;
            feed(&mut an, alloc_op(addr), "a");
            feed(&mut an, Op::Free { addr }, "f");
            let (slots, indexed) = an.free_window_len();
            assert!(slots <= FREE_WINDOW && indexed <= FREE_WINDOW, "{i}");
            largest = (largest.0.max(slots), largest.1.max(indexed));
        }
        assert_eq!(largest, (FREE_WINDOW, FREE_WINDOW));
        // Addresses freed and allocated again leave stale slots, which
        // still count against the bound.
        for _ in 0..2 * FREE_WINDOW {
            feed(&mut an, alloc_op(0x10), "a");
            feed(&mut an, Op::Free { addr: 0x10 }, "f");
            let (slots, indexed) = an.free_window_len();
            assert!(slots <= FREE_WINDOW && indexed <= FREE_WINDOW);
        }
        assert_eq!(an.free_window_len(), (FREE_WINDOW, 1));
    }

    /// `frees_between` other blocks are allocated and freed between the
    /// two frees of one block; returns (double frees, unknown frees).
    fn second_free_after(an: &mut Analyzer, frees_between: u64) -> (u64, u64) {
        feed(an, alloc_op(0x10), "alloc_site");
        feed(an, Op::Free { addr: 0x10 }, "first_free");
        for i in 0..frees_between {
            let addr = 0x1_0000 + 16 * i;
            feed(an, alloc_op(addr), "other");
            feed(an, Op::Free { addr }, "other_free");
        }
        feed(an, Op::Free { addr: 0x10 }, "second_free");
        let a = std::mem::take(an).finish();
        (
            Tally::total(&a.double_frees),
            Tally::total(&a.unknown_frees),
        )
    }

    #[test]
    fn double_free_inside_the_window_outside_it_an_unknown_free() {
        let window = FREE_WINDOW as u64;
        // The first free is the oldest one remembered: still a double free.
        let mut an = Analyzer::new();
        assert_eq!(second_free_after(&mut an, window - 1), (1, 0));
        // One free more and it has left the window.
        let mut an = Analyzer::new();
        assert_eq!(second_free_after(&mut an, window), (0, 1));
        // Any window size behaves the same.
        let mut an = Analyzer::with_free_window(3);
        assert_eq!(second_free_after(&mut an, 2), (1, 0));
        let mut an = Analyzer::with_free_window(3);
        assert_eq!(second_free_after(&mut an, 3), (0, 1));
    }

    #[test]
    fn a_stale_slot_of_a_reallocated_address_does_not_evict_its_later_free() {
        let mut an = Analyzer::with_free_window(2);
        feed(&mut an, alloc_op(0x10), "a1");
        feed(&mut an, Op::Free { addr: 0x10 }, "f1");
        feed(&mut an, alloc_op(0x10), "a2");
        feed(&mut an, Op::Free { addr: 0x10 }, "f2");
        // This free pushes out the oldest slot: the first free of 0x10,
        // whose block was allocated again. The second free must stay.
        feed(&mut an, alloc_op(0x20), "b");
        feed(&mut an, Op::Free { addr: 0x20 }, "g");
        feed(&mut an, Op::Free { addr: 0x10 }, "f3");
        let a = an.finish();
        assert!(a.unknown_frees.is_empty());
        assert_eq!(a.double_frees.len(), 1);
        let (sites, tally) = a.double_frees[0];
        assert_eq!(a.stacks.text(sites.alloc), b"a2");
        assert_eq!(a.stacks.text(sites.first_free), b"f2");
        assert_eq!(tally.count, 1);
    }

    /// The C leak script, written as plainly as possible: strings, a map,
    /// nothing clever. Address 0 is skipped (our one documented change).
    fn c_script(log: &str) -> Vec<(u64, u64, String)> {
        let lines: Vec<&str> = log.lines().collect();
        let mut map: StdMap<u64, (String, u64)> = StdMap::new();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            i += 1;
            let Some(rest) = line.strip_prefix("+++ ") else {
                continue;
            };
            let f: Vec<&str> = rest.split(':').collect();
            let n: usize = f[1].parse().unwrap();
            let addr = u64::from_str_radix(f[2].trim_start_matches("0x"), 16).unwrap();
            let stack = lines[i..i + n].join("\n");
            i += n;
            if addr == 0 {
                continue;
            }
            if f[0] == "ALLOC" {
                map.insert(addr, (stack, f[4].parse().unwrap()));
            } else {
                map.remove(&addr);
            }
        }
        let mut groups: StdMap<String, (u64, u64)> = StdMap::new();
        for (stack, size) in map.into_values() {
            let g = groups.entry(stack).or_default();
            g.0 += size;
            g.1 += 1;
        }
        let mut out: Vec<_> = groups.into_iter().map(|(s, (b, c))| (b, c, s)).collect();
        out.sort_by(|a, b| (b.0, b.1, &a.2).cmp(&(a.0, a.1, &b.2)));
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]
        /// Random logs over a few addresses and stacks (lots of reuse,
        /// double and unknown frees, NULL): same leaks as the C script.
        /// Only leaks are compared, and the window of recent frees (which
        /// decides double against unknown frees) never changes them, so
        /// logs of any length qualify.
        #[test]
        fn same_leaks_as_the_c_script(
            events in proptest::collection::vec((any::<bool>(), 0u64..6, 0u64..5, 0u64..64), 0..200)
        ) {
            let stacks = [&["f", "main"][..], &["g", "main"], &["h"], &[], &["f", "other"]];
            let mut log = String::new();
            for (is_alloc, addr, stack, size) in events {
                if size % 7 == 0 {
                    log.push_str("unrelated program output\n");
                }
                let addr = addr * 0x10;
                if is_alloc {
                    alloc(&mut log, addr, size, stacks[stack as usize]);
                } else {
                    free(&mut log, addr, stacks[stack as usize]);
                }
            }
            let a = analyze(&log);
            let expected = c_script(&log);
            prop_assert_eq!(a.group_texts(), expected.clone());
            prop_assert_eq!(a.leaked_blocks, expected.iter().map(|g| g.1).sum::<u64>());
            prop_assert_eq!(a.leaked_bytes, expected.iter().map(|g| g.0).sum::<u64>());
        }

        /// Random logs as above (but for NULL): the peak consumers are
        /// what a copy of every stack's live blocks, taken at each new
        /// peak, says.
        #[test]
        fn peak_consumers_match_a_copy_taken_at_each_new_peak(
            events in proptest::collection::vec((any::<bool>(), 1u64..7, 0u64..5, 1u64..64), 0..200)
        ) {
            let stacks = ["f", "g", "h", "i", "j"];
            let mut log = String::new();
            // The model: the live blocks, and a copy of them by stack at
            // each new peak.
            let mut live: StdMap<u64, (usize, u64)> = StdMap::new();
            let (mut peak, mut at_peak) = (0, StdMap::new());
            for (is_alloc, addr, stack, size) in events {
                let addr = addr * 0x10;
                if is_alloc {
                    alloc(&mut log, addr, size, &[stacks[stack as usize]]);
                    live.insert(addr, (stack as usize, size));
                    let bytes: u64 = live.values().map(|b| b.1).sum();
                    if bytes > peak {
                        peak = bytes;
                        at_peak = StdMap::new();
                        for &(s, size) in live.values() {
                            let e: &mut (u64, u64) = at_peak.entry(stacks[s]).or_default();
                            *e = (e.0 + size, e.1 + 1);
                        }
                    }
                } else {
                    free(&mut log, addr, &["free"]);
                    live.remove(&addr);
                }
            }
            let mut expected: Vec<(u64, u64, String)> =
                at_peak.into_iter().map(|(s, (bytes, n))| (bytes, n, s.to_owned())).collect();
            expected.sort_by(|a, b| (b.0, b.1).cmp(&(a.0, a.1)).then_with(|| a.2.cmp(&b.2)));
            let a = analyze(&log);
            prop_assert_eq!(a.heap.peak_bytes, peak);
            prop_assert_eq!(peak_texts(&a), expected);
        }
    }
}
