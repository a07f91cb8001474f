//! The live-block table of one shard: a record per live block, found by
//! address.
//!
//! Every probe loop ends: a live table is never more than 3/4 full (an
//! insert that would pass that and cannot grow the table is refused).
//! No table lock is ever held while calling the global allocator or the
//! inner allocator.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::prefetch::prefetch;
use super::recent_frees::RecentFrees;
use super::stacks::INTERNAL;
use super::sys_vec::{sys_vec, SysVec};

/// Sizes this large or larger cannot be recorded (the top byte of
/// [`Record::size_align`] holds the alignment); the tracker fails such
/// requests (no 64-bit platform can satisfy them anyway).
pub(crate) const SIZE_LIMIT: u64 = 1 << 56;

/// One live block: 24 bytes on 64-bit targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Record {
    /// Block address; 0 marks an empty slot.
    pub addr: usize,
    /// Requested size (below [`SIZE_LIMIT`]) in the low 56 bits, log2 of
    /// the requested alignment in the top 8 (`0xff` when the caller
    /// passed 0).
    size_align: u64,
    /// Interned allocation stack, or [`INTERNAL`].
    pub stack: u32,
    /// The allocating thread's stamp: the id of the last scope it opened,
    /// or 0 (see `scope.rs`).
    pub stamp: u32,
}

impl Record {
    const EMPTY: Record = Record {
        addr: 0,
        size_align: 0,
        stack: 0,
        stamp: 0,
    };

    /// A record; `size` must be below [`SIZE_LIMIT`].
    #[inline]
    pub(crate) fn new(addr: usize, size: usize, align_log2: u8, stack: u32, stamp: u32) -> Record {
        debug_assert!((size as u64) < SIZE_LIMIT);
        Record {
            addr,
            size_align: size as u64 | (align_log2 as u64) << 56,
            stack,
            stamp,
        }
    }

    /// The requested size.
    #[inline]
    pub(crate) fn size(&self) -> usize {
        (self.size_align & (SIZE_LIMIT - 1)) as usize
    }

    /// log2 of the requested alignment (`0xff`: the caller passed 0);
    /// recorded for every block, read by no report yet (a log that starts
    /// over writes it).
    pub(crate) fn align_log2(&self) -> u8 {
        (self.size_align >> 56) as u8
    }
}

/// Number of live-block shards (a power of two). With 64, two threads
/// churning a handful of addresses each often shared a shard, and its
/// lock's cache line went back and forth between their cores (the
/// 2-thread churn benchmark was slow and erratic); with 256 they rarely
/// do, and one thread gets a little faster too (smaller shards).
pub(crate) const LIVE_SHARDS: usize = 256;

fn mix(x: usize) -> u64 {
    (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// log2 of [`LIVE_SHARDS`].
const SHARD_BITS: u32 = LIVE_SHARDS.trailing_zeros();

// Where a record lives: its shard and its home slot.
//
// A program allocates and frees in runs over neighbouring addresses (a
// parser's nodes, a vector's elements, a tree torn down in the order it
// was built). Hashing each address on its own scattered those runs over
// every shard and every slot: with a large live set, megabytes of
// tables, each table operation then missed the caches and the TLB
// (sampled with `perf` in a traced jq parsing 20 MB of JSON, the insert's
// and the removal's first slot load were 40 % of the run). So:
//
// * A block's shard is chosen by its page of addresses (`PAGE_SHIFT`).
// * In a table of at least `WINDOW` slots, the blocks of one page have
//   their homes in one window of `WINDOW` consecutive slots (12 KiB of
//   table, wrapping), placed by the page's hash: each 16-byte granule of
//   the page owns two neighbouring slots, in address order, so that
//   neighbouring blocks have neighbouring records and one page's blocks,
//   however densely packed, fill at most half of its window. Blocks
//   closer than 16 bytes apart (an allocator with 8-byte or byte spacing)
//   differ in the address's low bits, which choose one of `LANES`
//   windows a sixteenth of the table apart.
// * A smaller table hashes the whole address: there a window would wrap
//   onto itself, and its blocks would share half the slots.
// * Windows can pile up where a table holds many densely packed pages
//   (1M blocks 8 bytes apart: records 7 slots from home on average, 87
//   in the worst table, against 0.6 when hashed). A table that sees too
//   many inserts land far from home hashes the whole address from then
//   on, for as long as it keeps at least `WINDOW` slots
//   ([`LiveShard::watch`]). Blocks as far apart as glibc's smallest
//   chunk (32 bytes) or more keep their windows; blocks 16 bytes apart
//   in every page cost most tables theirs.
//
// The run of a traced jq then touches a few table pages for a few heap
// pages: 1.73 s to 1.40 s (medians of 9 alternating runs of the preload
// library). A program with a handful of live blocks pays a little for
// them sharing a few shards: the churn benchmark's blocks lie in a few
// pages, whose tables are fuller than when all 256 shared them (54 more
// instructions a pair in `scripts/callgrind-tracker.sh`).

/// log2 of the bytes of addresses that share a shard and a window.
const PAGE_SHIFT: u32 = 12;
/// log2 of the bytes of addresses that share a pair of slots in a window.
const GRANULE_SHIFT: u32 = 4;
/// The window of one page's homes: two slots for each granule of the page.
const WINDOW: usize = 2 << (PAGE_SHIFT - GRANULE_SHIFT);
/// Windows for blocks closer than a granule apart: one per byte offset
/// within a granule.
const LANES: usize = 1 << GRANULE_SHIFT;
/// Windows have piled up in a table when, within as many inserts as it
/// has slots, more than one in `FAR_SHARE` of its length lands more than
/// `FAR` slots from home (see [`LiveShard::watch`]).
const FAR: usize = 16;
const FAR_SHARE: usize = 16;

/// The shard of an address: its page's.
pub(crate) fn shard_of(addr: usize) -> usize {
    (mix(addr >> PAGE_SHIFT) >> (64 - SHARD_BITS)) as usize
}

/// `h` scaled to `0..len` (0 when `len` is 0).
#[inline]
fn scale(h: u64, len: usize) -> usize {
    ((h as u128 * len as u128) >> 64) as usize
}

/// The home slot of `addr` in a table of `len` slots (below `len`, or 0
/// when `len` is 0), from the whole address's hash when `scattered`; see
/// "Where a record lives" above.
#[inline]
fn home_in(len: usize, addr: usize, scattered: bool) -> usize {
    if scattered || len < WINDOW {
        // The bits below the shard's, unrelated to them anyway (the
        // shard hashes the page).
        return scale(mix(addr) << SHARD_BITS, len);
    }
    let window = scale(mix(addr >> PAGE_SHIFT) << SHARD_BITS, len);
    let granule = (addr >> GRANULE_SHIFT) & (WINDOW / 2 - 1);
    let lane = (addr & (LANES - 1)) * len / LANES;
    // `window` and `lane` are below `len`, `2 * granule` below `WINDOW`,
    // which is at most `len`: the sum is below `3 * len`.
    let mut home = window + 2 * granule + lane;
    if home >= len {
        home -= len;
    }
    if home >= len {
        home -= len;
    }
    home
}

/// Where a shard's table lies, readable without the shard's lock, so
/// that a free can ask for its record's slot on entry, before its stack
/// walk: with a large live set the slot is often not in the cache, and
/// the thread would wait for it holding the shard's lock. With 1M blocks
/// live that load took 290-390 cycles on average without the prefetch
/// and 180 with it (`rdtsc` around the load, homes hashed from the
/// address); with homes that follow pages the prefetch still makes a
/// traced jq or perl some 3 % faster. An allocation has no such early
/// point: taking its block before its stack walk to prefetch measured no
/// faster once homes followed pages.
///
/// The three fields are written under the shard's lock whenever the table
/// moves (see [`LiveShard::rebuild`]) and read with no lock: a reader may
/// see one table's base with another's length, or a table since freed.
/// That is harmless because a hint is only ever used for a prefetch (see
/// `prefetch.rs`), never to read memory.
#[derive(Debug)]
pub(crate) struct TableHint {
    base: AtomicUsize,
    len: AtomicUsize,
    scattered: AtomicBool,
}

impl TableHint {
    pub(crate) const fn new() -> Self {
        TableHint {
            base: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            scattered: AtomicBool::new(false),
        }
    }

    /// Records where a table of `len` slots at `base` lies, and how its
    /// homes are found (the caller holds the lock of the shard it
    /// belongs to).
    fn publish(&self, base: *const Record, len: usize, scattered: bool) {
        self.base.store(base as usize, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
        self.scattered.store(scattered, Ordering::Relaxed);
    }

    /// Whether the table is larger than a page: below that its slots are
    /// likely in the cache (all 256 tables of that size are 1 MiB, a
    /// core's L2 cache on a recent x86 processor), and a prefetch only
    /// costs time (3 % of the churn benchmark's).
    #[inline]
    pub(crate) fn is_large(&self) -> bool {
        self.len.load(Ordering::Relaxed) > 4096 / core::mem::size_of::<Record>()
    }

    /// Starts loading the home slot of `addr` into the cache.
    #[inline]
    pub(crate) fn prefetch(&self, addr: usize) {
        let base = self.base.load(Ordering::Relaxed);
        let len = self.len.load(Ordering::Relaxed);
        let scattered = self.scattered.load(Ordering::Relaxed);
        let slot = home_in(len, addr, scattered) * core::mem::size_of::<Record>();
        prefetch(base.wrapping_add(slot));
    }
}

/// Smallest live-table capacity (slots).
const MIN_SLOTS: usize = 16;

/// A live table grows when an insert would make it fuller than
/// `MAX_LOAD_NUM / MAX_LOAD_DEN`...
const MAX_LOAD_NUM: usize = 3;
const MAX_LOAD_DEN: usize = 4;
/// ...to `GROW_NUM / GROW_DEN` times its capacity, so that a table that
/// has just grown is `(3/4) / (11/8) = 6/11` (54.5%) full: with 24-byte
/// records, at most 44 bytes of table per live block while the live set
/// grows (a power-of-two table at the same load limit would need up to 64).
const GROW_NUM: usize = 11;
const GROW_DEN: usize = 8;
/// A table larger than [`MIN_SLOTS`] shrinks to twice its length (half
/// full) when an insertion finds it less than `SHRINK_NUM / SHRINK_DEN`
/// (3/8) full: far enough from both limits that a live set moving up and
/// down a little never rebuilds the table back and forth (it must grow by
/// half or fall by a quarter first). So a table that is written to is
/// between 3/8 and 3/4 full after each insertion once past its first 16
/// slots: at most 64 bytes per live block, however many blocks were live
/// before.
const SHRINK_NUM: usize = 3;
const SHRINK_DEN: usize = 8;
/// Removals alone shrink a table only once it is less than
/// `1 / IDLE_SHRINK` full (at most 384 bytes per live block in a table
/// nothing is inserted into). A program that frees what it built (jq
/// freeing a parsed document, any program tearing down at exit) would
/// otherwise rebuild each table every time it fell by a quarter: moving
/// one and a half times the peak's records for nothing, a third of all
/// the rebuilding work on such a program. Its next insertion, if any,
/// brings the table back within the bounds above in one rebuild.
const IDLE_SHRINK: usize = 16;

/// One shard: an open-addressing table (linear probing, backward-shift
/// deletion, at most 3/4 full, any capacity: slots are indexed by a
/// multiply-shift of the hash, not a mask) plus a ring of recent frees.
#[derive(Debug)]
pub(crate) struct LiveShard {
    /// The table. Slot indices: every index a probe uses comes from
    /// [`home`](Self::home) (below `slots.len()` when that is not 0, see
    /// [`home_in`]) or [`next`](Self::next) (which wraps at
    /// `slots.len()`), and a probe only starts in a table with slots:
    /// so every such index is below `slots.len()`, which
    /// [`slot`](Self::slot) and [`slot_mut`](Self::slot_mut) rely on to
    /// skip the bounds checks (a fifth of the free path's table work).
    slots: SysVec<Record>,
    len: usize,
    /// The load limits of this length of table, as record counts (set by
    /// each rebuild, so that the hot path compares instead of
    /// multiplying): an insertion into a table holding `len` records
    /// grows it when `len >= grow_at` ([`MAX_LOAD_NUM`]) and shrinks it
    /// when `len < shrink_under` ([`SHRINK_NUM`]); a removal that leaves
    /// `len < idle_under` shrinks it ([`IDLE_SHRINK`]). Both shrink limits
    /// are 0 at [`MIN_SLOTS`] or fewer.
    grow_at: usize,
    shrink_under: usize,
    idle_under: usize,
    /// Homes come from the whole address's hash, not from windows (see
    /// "Where a record lives"): set when the windows' records pile up
    /// (see [`watch`](Self::watch)), cleared by a rebuild to fewer than
    /// `WINDOW` slots.
    scattered: bool,
    /// Inserts counted since the last rebuild, or since the count last
    /// reached `slots.len()`, and how many of them landed more than `FAR`
    /// slots from home.
    inserts: usize,
    far: usize,
    /// Records that are not [`INTERNAL`], and their bytes.
    tracked: usize,
    bytes: usize,
    /// This shard's recent frees.
    pub(crate) frees: RecentFrees,
}

impl LiveShard {
    pub(crate) const fn new() -> Self {
        LiveShard {
            slots: sys_vec(),
            len: 0,
            grow_at: 0,
            shrink_under: 0,
            idle_under: 0,
            scattered: false,
            inserts: 0,
            far: 0,
            tracked: 0,
            bytes: 0,
            frees: RecentFrees::new(),
        }
    }

    /// Slot `i`, which must be below `slots.len()` (see `slots`).
    #[inline(always)]
    fn slot(&self, i: usize) -> &Record {
        debug_assert!(i < self.slots.len());
        // SAFETY: `i` is a probe's index, below `slots.len()` by the
        // invariant on `slots`.
        unsafe { self.slots.get_unchecked(i) }
    }

    /// Slot `i`, writable; `i` as in [`slot`](Self::slot).
    #[inline(always)]
    fn slot_mut(&mut self, i: usize) -> &mut Record {
        debug_assert!(i < self.slots.len());
        // SAFETY: as in `slot`.
        unsafe { self.slots.get_unchecked_mut(i) }
    }

    /// The home slot of `addr`.
    #[inline]
    fn home(&self, addr: usize) -> usize {
        home_in(self.slots.len(), addr, self.scattered)
    }

    /// The slot after `i`, wrapping.
    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// How far slot `i` lies after slot `from`, wrapping.
    #[inline]
    fn distance(&self, from: usize, i: usize) -> usize {
        if i >= from {
            i - from
        } else {
            i + self.slots.len() - from
        }
    }

    /// Live records in this shard, the tracker's own excluded.
    pub(crate) fn tracked(&self) -> usize {
        self.tracked
    }

    /// Bytes of the live records in this shard, the tracker's own excluded.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Counts `rec` in (or out of) `tracked` and `bytes`.
    #[inline]
    fn count(&mut self, rec: &Record, add: bool) {
        if rec.stack != INTERNAL {
            if add {
                self.tracked += 1;
                self.bytes += rec.size();
            } else {
                self.tracked -= 1;
                self.bytes -= rec.size();
            }
        }
    }

    /// Bytes of table memory (for the metadata figure): every slot the
    /// table has allocated, empty ones included.
    pub(crate) fn table_bytes(&self) -> usize {
        self.slots.capacity() * core::mem::size_of::<Record>()
    }

    /// Inserts (or replaces) the record for `rec.addr`; returns the record
    /// it replaced, if any. `false` in `.1` when the record was not
    /// stored: the table is at its load limit and could not grow (out of
    /// memory). It never fills past that limit, so every probe ends.
    #[inline]
    pub(crate) fn insert(&mut self, rec: Record, hint: &TableHint) -> (Option<Record>, bool) {
        debug_assert_ne!(rec.addr, 0);
        if self.len < self.shrink_under {
            // Rare: only after removals alone (see `IDLE_SHRINK`). Out
            // of memory, the table stays as it is.
            self.shrink(hint);
        }
        if self.len >= self.grow_at && !self.grow(hint) {
            // Full: only a replacement of a live address can be stored.
            return match self.find(rec.addr) {
                Some(i) => (Some(self.replace_at(i, rec)), true),
                None => (None, false),
            };
        }
        let home = self.home(rec.addr);
        let mut i = home;
        loop {
            let slot = self.slot_mut(i);
            if slot.addr == 0 {
                *slot = rec;
                self.len += 1;
                self.count(&rec, true);
                self.watch(self.distance(home, i), hint);
                return (None, true);
            }
            if slot.addr == rec.addr {
                return (Some(self.replace_at(i, rec)), true);
            }
            i = self.next(i);
        }
    }

    /// Puts `rec` in slot `i` (which holds a record of the same address)
    /// and returns the old record.
    fn replace_at(&mut self, i: usize, rec: Record) -> Record {
        let old = core::mem::replace(self.slot_mut(i), rec);
        self.count(&old, false);
        self.count(&rec, true);
        old
    }

    /// The record of `addr`, if it is live.
    pub(crate) fn get(&self, addr: usize) -> Option<Record> {
        #[cfg(test)]
        test_hooks::looked_up();
        self.find(addr).map(|i| *self.slot(i))
    }

    /// The slot holding `addr`, if any.
    #[inline]
    fn find(&self, addr: usize) -> Option<usize> {
        if self.len == 0 || addr == 0 {
            return None;
        }
        let mut i = self.home(addr);
        loop {
            match self.slot(i).addr {
                a if a == addr => return Some(i),
                0 => return None,
                _ => i = self.next(i),
            }
        }
    }

    #[cold]
    fn grow(&mut self, hint: &TableHint) -> bool {
        self.rebuild(
            (self.slots.len() * GROW_NUM / GROW_DEN).max(MIN_SLOTS),
            self.scattered,
            hint,
        )
    }

    /// Counts an insert that landed `distance` slots from its home, while
    /// the table's homes are windows; when more than one in `FAR_SHARE` of
    /// the table's length lands more than `FAR` slots away within as many
    /// inserts, the windows have piled up: the table is rebuilt scattered
    /// (see "Where a record lives"). If that rebuild fails (out of
    /// memory), the table stays as it is, and the next far insert tries
    /// again.
    #[inline]
    fn watch(&mut self, distance: usize, hint: &TableHint) {
        let len = self.slots.len();
        if self.scattered || len < WINDOW {
            return;
        }
        if distance > FAR {
            self.far += 1;
            if self.far * FAR_SHARE > len {
                self.rebuild(len, true, hint);
                return;
            }
        }
        self.inserts += 1;
        if self.inserts >= len {
            self.inserts = 0;
            self.far = 0;
        }
    }

    /// Moves every record into a new table of `new_len` slots (which must
    /// keep it within the load limit), scattered when `scatter` (and the
    /// table has windows at all: `WINDOW` slots), and publishes where it
    /// lies in `hint`; false, and nothing changed, when that memory cannot
    /// be had.
    #[cold]
    fn rebuild(&mut self, new_len: usize, scatter: bool, hint: &TableHint) -> bool {
        debug_assert!(self.len * MAX_LOAD_DEN <= new_len * MAX_LOAD_NUM);
        #[cfg(test)]
        if test_hooks::growth_fails() {
            return false;
        }
        let mut slots = sys_vec();
        if slots.try_reserve_exact(new_len).is_err() {
            return false;
        }
        slots.resize(new_len, Record::EMPTY);
        let old = core::mem::replace(&mut self.slots, slots);
        self.set_limits();
        self.scattered = scatter && new_len >= WINDOW;
        self.inserts = 0;
        self.far = 0;
        // Each record goes to the first free slot from its home. No
        // address is in the old table twice and the new one stays under
        // its load limit (so this probe ends), hence no replacement, no
        // growth: `len` and the counts stay as they are.
        for rec in old.iter().filter(|r| r.addr != 0) {
            let mut i = self.home(rec.addr);
            while self.slot(i).addr != 0 {
                i = self.next(i);
            }
            *self.slot_mut(i) = *rec;
        }
        hint.publish(self.slots.as_ptr(), self.slots.len(), self.scattered);
        true
    }

    /// Removes and returns the record of `addr`.
    #[inline]
    pub(crate) fn remove(&mut self, addr: usize, hint: &TableHint) -> Option<Record> {
        let i = self.find(addr)?;
        let found = *self.slot(i);
        // Backward-shift deletion: pull later entries of the probe run
        // into the hole when the hole lies between their home and them.
        let mut hole = i;
        let mut k = i;
        loop {
            k = self.next(k);
            let a = self.slot(k).addr;
            if a == 0 {
                break;
            }
            let home = self.home(a);
            if self.distance(home, k) >= self.distance(hole, k) {
                *self.slot_mut(hole) = *self.slot(k);
                hole = k;
            }
        }
        *self.slot_mut(hole) = Record::EMPTY;
        self.len -= 1;
        self.count(&found, false);
        if self.len < self.idle_under {
            self.shrink(hint);
        }
        Some(found)
    }

    /// Sets the load limits (see `grow_at`) for the table's length `n`:
    /// `len >= grow_at` exactly when one more record would make the table
    /// more than 3/4 full (`(len + 1) * 4 > n * 3`), `len < shrink_under`
    /// exactly when it is less than 3/8 full, `len < idle_under` less
    /// than 1/16.
    fn set_limits(&mut self) {
        let n = self.slots.len();
        self.grow_at = n * MAX_LOAD_NUM / MAX_LOAD_DEN;
        let shrinks = n > MIN_SLOTS;
        self.shrink_under = if shrinks {
            (n * SHRINK_NUM).div_ceil(SHRINK_DEN)
        } else {
            0
        };
        self.idle_under = if shrinks { n.div_ceil(IDLE_SHRINK) } else { 0 };
    }

    /// Rebuilds the table half full (see [`SHRINK_NUM`]); keeps the old
    /// one when out of memory.
    #[cold]
    fn shrink(&mut self, hint: &TableHint) {
        self.rebuild((self.len * 2).max(MIN_SLOTS), self.scattered, hint);
    }

    /// Calls `f` on every live record.
    pub(crate) fn for_each(&self, f: &mut dyn FnMut(&Record)) {
        self.slots.iter().filter(|r| r.addr != 0).for_each(f);
    }

    /// Appends every live record that passes `keep` to `out`; false, with
    /// nothing appended, when `out` cannot grow enough (out of memory).
    pub(crate) fn collect(&self, out: &mut SysVec<Record>, keep: &dyn Fn(&Record) -> bool) -> bool {
        // Room for every live record first: the appending cannot outgrow it.
        if out.try_reserve(self.len).is_err() {
            return false;
        }
        out.extend(
            self.slots
                .iter()
                .filter(|r| r.addr != 0 && keep(r))
                .copied(),
        );
        true
    }
}

/// Fault injection for the tests: makes this thread's table growth fail
/// as if out of memory, or interrupts a look-up as a signal handler would.
#[cfg(test)]
pub(crate) mod test_hooks {
    use core::cell::Cell;

    std::thread_local! {
        static FAIL: Cell<bool> = const { Cell::new(false) };
        static ON_LOOKUP: Cell<Option<fn()>> = const { Cell::new(None) };
    }

    /// Runs `f` once, the next time this thread looks a record up
    /// ([`LiveShard::get`](super::LiveShard::get)) while it holds the
    /// shard's lock: as a signal handler arriving then would.
    pub(crate) fn interrupt_next_lookup(f: fn()) {
        ON_LOOKUP.with(|h| h.set(Some(f)));
    }

    pub(super) fn looked_up() {
        if let Some(f) = ON_LOOKUP.with(Cell::take) {
            f();
        }
    }

    /// While `on`, every live-table growth or shrink on this thread fails.
    pub(crate) fn fail_growth(on: bool) {
        FAIL.with(|f| f.set(on));
    }

    pub(super) fn growth_fails() -> bool {
        FAIL.with(|f| f.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(addr: usize) -> Record {
        Record::new(addr, addr / 16, 3, 7, 9)
    }

    #[test]
    fn record_is_small_and_packs_its_fields() {
        assert!(core::mem::size_of::<Record>() <= 24);
        let r = Record::new(0x1000, (SIZE_LIMIT - 1) as usize, 0xff, 5, 6);
        assert_eq!(
            (r.size(), r.align_log2()),
            ((SIZE_LIMIT - 1) as usize, 0xff)
        );
        let r = Record::new(0x1000, 0, 12, 5, 6);
        assert_eq!((r.size(), r.align_log2(), r.stack, r.stamp), (0, 12, 5, 6));
    }

    #[test]
    fn live_shard_table_stays_dense() {
        // Every size past the first growth: at least 6/11 full.
        let mut s = LiveShard::new();
        let h = TableHint::new();
        let n = if cfg!(miri) { 200 } else { 20_000 };
        for i in 1..=n {
            s.insert(rec(i * 16), &h);
            if i > MIN_SLOTS {
                assert!(
                    s.slots.capacity() * 6 <= i * 11 + 11,
                    "{i} in {}",
                    s.slots.capacity()
                );
            }
        }
    }

    #[test]
    fn live_shard_insert_remove_many() {
        let mut s = LiveShard::new();
        let h = TableHint::new();
        let n = if cfg!(miri) { 300 } else { 5000 };
        for i in 1..=n {
            assert_eq!(s.insert(rec(i * 16), &h), (None, true));
        }
        assert_eq!(s.tracked(), n);
        assert_eq!(s.bytes(), (1..=n).sum::<usize>());
        // Remove every third, then check all lookups.
        for i in (1..=n).step_by(3) {
            assert_eq!(s.remove(i * 16, &h), Some(rec(i * 16)));
            assert_eq!(s.remove(i * 16, &h), None);
        }
        for i in 1..=n {
            let expect = if (i - 1) % 3 == 0 {
                None
            } else {
                Some(rec(i * 16))
            };
            assert_eq!(s.remove(i * 16, &h), expect, "addr {}", i * 16);
        }
        assert_eq!((s.tracked(), s.bytes()), (0, 0));
        assert_eq!(s.remove(0, &h), None);
    }

    #[test]
    fn a_table_that_cannot_grow_refuses_inserts_and_every_probe_ends() {
        let mut s = LiveShard::new();
        let h = TableHint::new();
        s.insert(rec(16), &h);
        test_hooks::fail_growth(true);
        // 16 slots, at most 3/4 full: 12 records, then refusals.
        let stored = (2..=40).filter(|i| s.insert(rec(i * 16), &h).1).count();
        assert_eq!(s.tracked(), 12);
        assert_eq!(stored, 11);
        // A replacement of a live address is still stored.
        let newer = Record::new(32, 5, 0, 1, 1);
        assert_eq!(s.insert(newer, &h), (Some(rec(32)), true));
        // Lookups of absent addresses end (the table keeps an empty slot);
        // before this rule a full table probed forever under its lock.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let absent = (1000..1100).all(|i| s.remove(i * 16, &h).is_none());
            let _ = tx.send(absent);
        });
        let answer = rx.recv_timeout(std::time::Duration::from_secs(20));
        assert_eq!(answer, Ok(true), "a lookup in a full table never ended");
        test_hooks::fail_growth(false);
    }

    #[test]
    fn the_load_limits_are_the_load_ratios() {
        let mut s = LiveShard::new();
        for n in 0..if cfg!(miri) { 40 } else { 600 } {
            s.slots.resize(n, Record::EMPTY);
            s.set_limits();
            for len in 0..=n {
                let big = n > MIN_SLOTS;
                assert_eq!(len >= s.grow_at, (len + 1) * 4 > n * 3, "{len} in {n}");
                assert_eq!(len < s.shrink_under, big && len * 8 < n * 3, "{len} in {n}");
                assert_eq!(len < s.idle_under, big && len * 16 < n, "{len} in {n}");
            }
        }
    }

    #[test]
    fn tables_shrink_when_the_live_set_falls() {
        let mut s = LiveShard::new();
        let h = TableHint::new();
        let n = if cfg!(miri) { 300 } else { 20_000 };
        for i in 1..=n {
            s.insert(rec(i * 16), &h);
        }
        let grown = s.table_bytes();
        let mut rebuilds = 0;
        for i in 1..=n {
            let before = s.slots.len();
            s.remove(i * 16, &h);
            rebuilds += usize::from(s.slots.len() != before);
            // Past the first 16 slots, never under 1/16 full.
            if s.slots.len() > MIN_SLOTS {
                assert!(
                    s.len * IDLE_SHRINK >= s.slots.len(),
                    "{} in {}",
                    s.len,
                    s.slots.len()
                );
            }
        }
        assert!(grown >= n * 24);
        assert_eq!(s.table_bytes(), MIN_SLOTS * core::mem::size_of::<Record>());
        // Each shrink to an eighth of the table's length, not by a quarter
        // of its records (26 rebuilds for 20,000 records).
        assert!(rebuilds <= if cfg!(miri) { 3 } else { 5 }, "{rebuilds}");
        // Removals leave a table under 3/8 full; the next insertion
        // shrinks it to half full.
        for i in 1..=n {
            s.insert(rec(i * 16), &h);
        }
        for i in 1..=n * 3 / 4 {
            s.remove(i * 16, &h);
        }
        assert!(s.len * SHRINK_DEN < s.slots.len() * SHRINK_NUM);
        s.insert(rec(16), &h);
        assert!(
            s.len * 2 >= s.slots.len() && s.len * 2 <= s.slots.len() + 2,
            "{} in {}",
            s.len,
            s.slots.len()
        );
        for i in n * 3 / 4 + 1..=n {
            s.remove(i * 16, &h);
        }
        s.remove(16, &h);
        assert_eq!(s.len, 0);
        // Up and down around one size: no rebuild each time.
        for i in 1..=100 {
            s.insert(rec(i * 16), &h);
        }
        let cap = s.slots.len();
        for _ in 0..50 {
            s.remove(16, &h);
            s.insert(rec(16), &h);
        }
        assert_eq!(s.slots.len(), cap);
    }

    /// Whether `h` names the table `s` has now.
    fn names(h: &TableHint, s: &LiveShard) -> bool {
        h.base.load(Ordering::Relaxed) == s.slots.as_ptr() as usize
            && h.len.load(Ordering::Relaxed) == s.slots.len()
            && h.scattered.load(Ordering::Relaxed) == s.scattered
    }

    #[test]
    fn the_hint_follows_the_table_as_it_grows_and_shrinks() {
        let mut s = LiveShard::new();
        let h = TableHint::new();
        let n = if cfg!(miri) { 300 } else { 5000 };
        assert!(!h.is_large());
        for i in 1..=n {
            s.insert(rec(i * 16), &h);
            assert!(names(&h, &s), "after inserting {i}");
        }
        // 300 records: at least 400 slots, 9,600 bytes.
        assert!(h.is_large());
        for i in 1..=n {
            s.remove(i * 16, &h);
            assert!(names(&h, &s), "after removing {i}");
        }
        assert!(!h.is_large());
        // A prefetch reads nothing: any hint is safe to use, even one
        // naming a table that is gone (the first one above) or none.
        h.prefetch(16);
        TableHint::new().prefetch(16);
    }

    #[test]
    fn a_page_has_one_shard_and_one_window_of_homes() {
        let lens = [0, 1, 16, 511, 512, 513, 1000, 4096, 100_003];
        for page in [0x10_0000usize, 0x7f12_3456_7000, 0x5555_0000_1000] {
            let shard = shard_of(page);
            for len in lens {
                for addr in (page..page + 4096).step_by(if cfg!(miri) { 61 } else { 1 }) {
                    assert_eq!(shard_of(addr), shard);
                    assert!(home_in(len, addr, false) < len.max(1), "{addr:#x} in {len}");
                    assert!(home_in(len, addr, true) < len.max(1), "{addr:#x} in {len}");
                }
                if len < WINDOW {
                    continue;
                }
                // A granule's two slots follow the previous granule's, from
                // the page's first slot on, lane by lane.
                for lane in [0, 1, 8, 15] {
                    let first = home_in(len, page + lane, false);
                    for granule in 0..WINDOW / 2 {
                        let home = home_in(len, page + (granule << GRANULE_SHIFT) + lane, false);
                        assert_eq!((home + len - first) % len, 2 * granule);
                    }
                }
            }
        }
    }

    /// The average distance of a record from its home: the slots a
    /// lookup of a live address reads, less one.
    fn mean_displacement(s: &LiveShard) -> f64 {
        let far: usize = (0..s.slots.len())
            .filter(|&i| s.slots[i].addr != 0)
            .map(|i| s.distance(s.home(s.slots[i].addr), i))
            .sum();
        far as f64 / s.len as f64
    }

    /// `n` addresses from one start: `spacing` bytes apart, or, for a
    /// spacing of 0, 32 to 528 bytes apart at random (as glibc's chunks
    /// of mixed sizes lie).
    fn run_of_blocks(spacing: usize, n: usize) -> Vec<usize> {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut addr = 0x7f00_0000_0000_usize;
        (0..n)
            .map(|_| {
                let here = addr;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                addr += if spacing == 0 {
                    32 + 16 * (x % 32) as usize
                } else {
                    spacing
                };
                here
            })
            .collect()
    }

    #[test]
    #[cfg_attr(miri, ignore = "fills the 256 shards with 300,000 records per spacing")]
    fn probes_stay_short_however_densely_blocks_are_packed() {
        // Blocks one after another, as a fresh heap or a bump allocator
        // hands them out, in the shards the tracker would use. Without
        // `watch`, 8-byte spacing left records 87 slots from home on
        // average in the worst table.
        let h = TableHint::new();
        for spacing in [0, 1, 8, 16, 24, 32, 48, 112, 4096 + 16] {
            let mut shards: Vec<LiveShard> = (0..LIVE_SHARDS).map(|_| LiveShard::new()).collect();
            let blocks = run_of_blocks(spacing, 300_000);
            for &a in &blocks {
                assert_eq!(shards[shard_of(a)].insert(rec(a), &h), (None, true));
            }
            for s in shards.iter().filter(|s| s.len > 0) {
                let far = mean_displacement(s);
                assert!(far < 3.0, "spacing {spacing}: {far:.2} slots from home");
            }
            // Blocks as far apart as glibc's keep their windows.
            if spacing == 0 || spacing >= 32 {
                assert!(shards.iter().all(|s| !s.scattered), "spacing {spacing}");
            }
            for &a in blocks.iter().step_by(2) {
                assert!(shards[shard_of(a)].remove(a, &h).is_some());
            }
            for s in shards.iter().filter(|s| s.len > 0) {
                let far = mean_displacement(s);
                assert!(far < 3.0, "spacing {spacing}, half freed: {far:.2}");
            }
        }
    }

    #[test]
    fn a_table_whose_windows_pile_up_scatters_until_it_is_small_again() {
        let h = TableHint::new();
        let mut s = LiveShard::new();
        // Blocks 8 bytes apart, from pages of one shard.
        let page = 0x7f00_0000_0000_usize;
        let pages: Vec<usize> = (0..)
            .map(|i| page + (i << PAGE_SHIFT))
            .filter(|&p| shard_of(p) == shard_of(page))
            .take(if cfg!(miri) { 2 } else { 40 })
            .collect();
        let blocks: Vec<usize> = pages
            .iter()
            .flat_map(|&p| (0..512).map(move |i| p + 8 * i))
            .collect();
        for &a in &blocks {
            s.insert(rec(a), &h);
            assert!(names(&h, &s));
        }
        assert!(s.scattered, "{:.2} from home", mean_displacement(&s));
        assert!(mean_displacement(&s) < 2.0);
        // Until the table is shorter than a window: then windows again.
        for &a in &blocks[..blocks.len() - 100] {
            assert_eq!(s.remove(a, &h), Some(rec(a)));
            assert!(names(&h, &s));
        }
        assert!(s.slots.len() < WINDOW && !s.scattered);
        for &a in &blocks[blocks.len() - 100..] {
            assert_eq!(s.remove(a, &h), Some(rec(a)));
        }
        assert_eq!(s.tracked(), 0);
    }

    #[test]
    fn a_table_that_cannot_scatter_keeps_its_records_where_they_are_found() {
        let h = TableHint::new();
        let mut s = LiveShard::new();
        let page = 0x7f00_0000_0000_usize;
        let pages = || (0..).map(move |i| page + (i << PAGE_SHIFT));
        // A window long (one block a page), then no more memory: a
        // scatter fails too.
        let mut kept: Vec<usize> = Vec::new();
        for p in pages() {
            if s.slots.len() >= WINDOW {
                break;
            }
            s.insert(rec(p + 16), &h);
            kept.push(p + 16);
        }
        // As few as it keeps without shrinking, for room to pile up.
        let len = s.slots.len();
        while s.len * SHRINK_DEN > len * SHRINK_NUM + SHRINK_DEN {
            assert!(s.remove(kept.pop().unwrap(), &h).is_some());
        }
        assert_eq!(s.slots.len(), len);
        test_hooks::fail_growth(true);
        // Blocks 16 bytes apart in pages whose windows start together.
        let starts: Vec<usize> = pages()
            .skip(kept.len())
            .filter(|&p| home_in(len, p, false) < 8)
            .take(8)
            .collect();
        let piled = (0..256).flat_map(|i| starts.iter().map(move |p| p + 16 * i));
        kept.extend(piled.take_while(|&a| s.insert(rec(a), &h).1));
        test_hooks::fail_growth(false);
        // The table saw its windows pile up and stayed as it was.
        assert!(!s.scattered && s.far * FAR_SHARE > s.slots.len());
        for a in kept {
            assert_eq!(s.remove(a, &h), Some(rec(a)), "{a:#x}");
        }
        assert_eq!(s.tracked(), 0);
    }

    #[test]
    fn insert_same_address_replaces() {
        let mut s = LiveShard::new();
        let h = TableHint::new();
        s.insert(rec(32), &h);
        let newer = Record::new(32, 99, 0xff, 1, 2);
        assert_eq!(s.insert(newer, &h), (Some(rec(32)), true));
        assert_eq!((s.tracked(), s.bytes()), (1, 99));
        assert_eq!(s.remove(32, &h), Some(newer));
    }
}
