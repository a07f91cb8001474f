//! The tracker's tables: live blocks (sharded by address), interned
//! stacks (sharded by hash) and recently freed blocks (per shard, for
//! double-free reports).
//!
//! Every table allocates straight from the C library ([`SysVec`]), never
//! through Rust's global allocator, so that the tracker can itself be the
//! global allocator. No table lock is ever held while calling the global
//! allocator or the inner allocator.
//!
//! Every probe loop ends: a live table is never more than 3/4 full (an
//! insert that would pass that and cannot grow the table is refused), and
//! the stack index never more than 1/2, so an empty slot always exists.

use super::sync::{RawLock, SpinLock};
use crate::valloc::Valloc;

/// A vector whose memory comes from the C library, not the global allocator.
pub(crate) type SysVec<T> = allocator_api2::vec::Vec<T, Valloc<'static>>;

/// An empty [`SysVec`].
pub(crate) const fn sys_vec<T>() -> SysVec<T> {
    SysVec::new_in(Valloc::libc())
}

/// The stack id of the tracker's own allocations (never reported).
pub(crate) const INTERNAL: u32 = u32::MAX;
/// The stack id when no stack was captured (`Config::free_stacks` off).
pub(crate) const NO_STACK: u32 = u32::MAX - 1;

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
    /// recorded for every block, read by no report yet.
    #[cfg(test)]
    pub(crate) fn align_log2(&self) -> u8 {
        (self.size_align >> 56) as u8
    }
}

/// A freed block remembered to explain a later double free. The stack
/// of that free is kept raw in the shard's ring (see
/// [`LiveShard::remember_free`]), not interned: it is needed only when a
/// double free is reported, so the free path spends no hashing or
/// lookup on it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Freed {
    pub addr: usize,
    pub size: usize,
    pub alloc_stack: u32,
    /// How many frames of the free's stack the ring holds (0: none).
    frames: u32,
}
/// How many recent frees each live shard remembers (2048 in all).
const RING: usize = 8;

/// Number of live-block shards (a power of two). With 64, two threads
/// churning a handful of addresses each often shared a shard, and its
/// lock's cache line went back and forth between their cores (the
/// 2-thread churn benchmark was slow and erratic); with 256 they rarely
/// do, and one thread gets a little faster too (smaller shards).
pub(crate) const LIVE_SHARDS: usize = 256;

fn mix(addr: usize) -> u64 {
    (addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// log2 of [`LIVE_SHARDS`].
const SHARD_BITS: u32 = LIVE_SHARDS.trailing_zeros();

/// The shard of an address.
pub(crate) fn shard_of(addr: usize) -> usize {
    (mix(addr) >> (64 - SHARD_BITS)) as usize
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
/// A table larger than [`MIN_SLOTS`] shrinks when a removal leaves it
/// less than `SHRINK_NUM / SHRINK_DEN` (3/8) full, to twice its length
/// (half full): far enough from both limits that a live set moving up
/// and down a little never rebuilds the table back and forth (it must
/// grow by half or fall by a quarter first). So a table is always
/// between 3/8 and 3/4 full once past its first 16 slots: at most
/// 64 bytes per live block, however many blocks were live before.
const SHRINK_NUM: usize = 3;
const SHRINK_DEN: usize = 8;

/// One shard: an open-addressing table (linear probing, backward-shift
/// deletion, at most 3/4 full, any capacity: slots are indexed by a
/// multiply-shift of the hash, not a mask) plus a ring of recent frees.
#[derive(Debug)]
pub(crate) struct LiveShard {
    slots: SysVec<Record>,
    len: usize,
    /// Records that are not [`INTERNAL`], and their bytes.
    tracked: usize,
    bytes: usize,
    ring: [Freed; RING],
    /// The stacks of the ring's frees: entry `i`'s frames start at word
    /// `i * ring_stride`. Allocated at the first free that has a stack,
    /// with room for the tracker's depth then.
    ring_frames: SysVec<usize>,
    ring_stride: usize,
    ring_next: usize,
}

impl LiveShard {
    pub(crate) const fn new() -> Self {
        LiveShard {
            slots: sys_vec(),
            len: 0,
            tracked: 0,
            bytes: 0,
            ring: [Freed {
                addr: 0,
                size: 0,
                alloc_stack: NO_STACK,
                frames: 0,
            }; RING],
            ring_frames: sys_vec(),
            ring_stride: 0,
            ring_next: 0,
        }
    }

    /// The home slot of `addr`: the hash bits below the shard bits,
    /// scaled to the capacity.
    #[inline]
    fn home(&self, addr: usize) -> usize {
        let h = mix(addr) << SHARD_BITS;
        ((h as u128 * self.slots.len() as u128) >> 64) as usize
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
    pub(crate) fn insert(&mut self, rec: Record) -> (Option<Record>, bool) {
        debug_assert_ne!(rec.addr, 0);
        if (self.len + 1) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM && !self.grow() {
            // Full: only a replacement of a live address can be stored.
            return match self.find(rec.addr) {
                Some(i) => (Some(self.replace_at(i, rec)), true),
                None => (None, false),
            };
        }
        let mut i = self.home(rec.addr);
        loop {
            let slot = &mut self.slots[i];
            if slot.addr == 0 {
                *slot = rec;
                self.len += 1;
                self.count(&rec, true);
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
        let old = core::mem::replace(&mut self.slots[i], rec);
        self.count(&old, false);
        self.count(&rec, true);
        old
    }

    /// The slot holding `addr`, if any.
    #[inline]
    fn find(&self, addr: usize) -> Option<usize> {
        if self.len == 0 || addr == 0 {
            return None;
        }
        let mut i = self.home(addr);
        loop {
            match self.slots[i].addr {
                a if a == addr => return Some(i),
                0 => return None,
                _ => i = self.next(i),
            }
        }
    }

    #[cold]
    fn grow(&mut self) -> bool {
        self.rebuild((self.slots.len() * GROW_NUM / GROW_DEN).max(MIN_SLOTS))
    }

    /// Moves every record into a new table of `new_len` slots (which must
    /// keep it within the load limit); false, and nothing changed, when
    /// that memory cannot be had.
    #[cold]
    fn rebuild(&mut self, new_len: usize) -> bool {
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
        self.len = 0;
        self.tracked = 0;
        self.bytes = 0;
        for rec in old.iter().filter(|r| r.addr != 0) {
            self.insert(*rec);
        }
        true
    }

    /// Removes and returns the record of `addr`.
    #[inline]
    pub(crate) fn remove(&mut self, addr: usize) -> Option<Record> {
        let i = self.find(addr)?;
        let found = self.slots[i];
        // Backward-shift deletion: pull later entries of the probe run
        // into the hole when the hole lies between their home and them.
        let mut hole = i;
        let mut k = i;
        loop {
            k = self.next(k);
            let a = self.slots[k].addr;
            if a == 0 {
                break;
            }
            let home = self.home(a);
            if self.distance(home, k) >= self.distance(hole, k) {
                self.slots[hole] = self.slots[k];
                hole = k;
            }
        }
        self.slots[hole] = Record::EMPTY;
        self.len -= 1;
        self.count(&found, false);
        if self.slots.len() > MIN_SLOTS && self.len * SHRINK_DEN < self.slots.len() * SHRINK_NUM {
            self.shrink();
        }
        Some(found)
    }

    /// Rebuilds the table half full (see [`SHRINK_NUM`]); keeps the old
    /// one when out of memory.
    #[cold]
    fn shrink(&mut self) {
        self.rebuild((self.len * 2).max(MIN_SLOTS));
    }

    /// Remembers a free of the block `rec` (at `addr`), overwriting the
    /// oldest one, with the raw frames of the free's stack (`depth` is
    /// the tracker's: the room each entry gets when the ring's frame
    /// store is first allocated; longer stacks are cut to it). A copy of
    /// a few words: interning waits for [`recent_free`](Self::recent_free)
    /// to be needed.
    #[inline]
    pub(crate) fn remember_free(
        &mut self,
        addr: usize,
        rec: &Record,
        frames: &[usize],
        depth: usize,
    ) {
        let i = self.ring_next;
        self.ring_next = (i + 1) % RING;
        let mut kept = 0;
        if !frames.is_empty() && (self.ring_stride != 0 || self.alloc_ring(depth)) {
            kept = frames.len().min(self.ring_stride);
            let at = i * self.ring_stride;
            self.ring_frames[at..at + kept].copy_from_slice(&frames[..kept]);
        }
        self.ring[i] = Freed {
            addr,
            size: rec.size(),
            alloc_stack: rec.stack,
            frames: kept as u32,
        };
    }

    /// Allocates the ring's frame store, `depth` words per entry; false
    /// when out of memory (the frees are then remembered without stacks).
    #[cold]
    fn alloc_ring(&mut self, depth: usize) -> bool {
        let words = RING * depth;
        if depth == 0 || self.ring_frames.try_reserve_exact(words).is_err() {
            return false;
        }
        self.ring_frames.resize(words, 0);
        self.ring_stride = depth;
        true
    }

    /// The most recent remembered free of `addr`, with its stack's frames
    /// (empty when it had none).
    pub(crate) fn recent_free(&self, addr: usize) -> Option<(Freed, &[usize])> {
        let i = (1..=RING)
            .map(|back| (self.ring_next + RING - back) % RING)
            .find(|&i| self.ring[i].addr == addr)?;
        let f = self.ring[i];
        let at = i * self.ring_stride;
        Some((f, &self.ring_frames[at..at + f.frames as usize]))
    }

    /// Bytes of the ring's frame store (for the metadata figure).
    pub(crate) fn ring_bytes(&self) -> usize {
        self.ring_frames.capacity() * core::mem::size_of::<usize>()
    }

    /// Appends every live record that passes `keep` to `out`.
    pub(crate) fn collect(&self, out: &mut SysVec<Record>, keep: &dyn Fn(&Record) -> bool) {
        out.extend(
            self.slots
                .iter()
                .filter(|r| r.addr != 0 && keep(r))
                .copied(),
        );
    }
}

/// Number of stack-interning shards (a power of two).
const STACK_SHARDS: usize = 16;
/// Bits of a stack id that index inside a shard.
const STACK_INDEX_BITS: u32 = 27;

#[derive(Clone, Copy, Debug)]
struct StackEntry {
    hash: u64,
    /// The frames, in one of the shard's chunks (never moved or freed
    /// while the shard lives).
    frames: *const usize,
    len: usize,
}

/// Words per frame chunk (32 KiB on 64-bit targets).
const CHUNK_WORDS: usize = 4096;

/// One interning shard: a hash index over entries whose frames live in
/// fixed-capacity chunks, so that a stored stack never moves and can be
/// read without the lock by whoever got its pointer under the lock.
#[derive(Debug)]
struct StackShard {
    /// `entry index + 1`, 0 for empty; at most half full.
    index: SysVec<u32>,
    entries: SysVec<StackEntry>,
    /// Each chunk is filled up to its capacity, never reallocated.
    chunks: SysVec<SysVec<usize>>,
}

// SAFETY: the raw pointers in `entries` point into `chunks`, which the
// shard owns; moving the shard to another thread moves both.
unsafe impl Send for StackShard {}

impl StackEntry {
    fn frames(&self) -> &[usize] {
        // SAFETY: `frames` points to `len` initialised words in a chunk of
        // the shard that owns this entry; chunks are never reallocated or
        // freed while the shard lives, and the words never change.
        unsafe { core::slice::from_raw_parts(self.frames, self.len) }
    }
}

impl StackShard {
    const fn new() -> Self {
        StackShard {
            index: sys_vec(),
            entries: sys_vec(),
            chunks: sys_vec(),
        }
    }

    fn find(&self, hash: u64, frames: &[usize]) -> Result<u32, usize> {
        if self.index.is_empty() {
            return Err(0);
        }
        let mask = self.index.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            match self.index[i] {
                0 => return Err(i),
                e => {
                    let entry = &self.entries[e as usize - 1];
                    if entry.hash == hash && entry.frames() == frames {
                        return Ok(e - 1);
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }

    fn grow_index(&mut self) -> bool {
        let new_len = (self.index.len() * 2).max(256);
        let mut index = sys_vec();
        if index.try_reserve_exact(new_len).is_err() {
            return false;
        }
        index.resize(new_len, 0u32);
        let mask = new_len - 1;
        for (e, entry) in self.entries.iter().enumerate() {
            let mut i = entry.hash as usize & mask;
            while index[i] != 0 {
                i = (i + 1) & mask;
            }
            index[i] = e as u32 + 1;
        }
        self.index = index;
        true
    }

    /// Copies `frames` into a chunk with room (a new one if needed).
    fn store(&mut self, frames: &[usize]) -> Option<*const usize> {
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= frames.len());
        if !fits {
            let mut chunk = sys_vec();
            chunk
                .try_reserve_exact(CHUNK_WORDS.max(frames.len()))
                .ok()?;
            self.chunks.try_reserve(1).ok()?;
            self.chunks.push(chunk);
        }
        let chunk = self.chunks.last_mut()?;
        let at = chunk.len();
        // Within capacity: the chunk's buffer does not move.
        chunk.extend_from_slice(frames);
        Some(chunk[at..].as_ptr())
    }
}

/// Interned stacks: each distinct stack is stored once and named by a
/// `u32` id.
#[derive(Debug)]
pub(crate) struct StackTable {
    shards: [SpinLock<StackShard>; STACK_SHARDS],
}

/// Stack hashing, one frame at a time (the frame-pointer walk hashes as
/// it goes).
pub(crate) const HASH_SEED: u64 = 0x243F_6A88_85A3_08D3;

/// Mixes one frame into a stack hash: cheap (no multiply in the
/// per-frame chain); [`hash_finish`] spreads the bits. Equal hashes are
/// always confirmed by comparing the frames.
#[inline(always)]
pub(crate) fn hash_step(h: u64, ip: usize) -> u64 {
    h.rotate_left(7) ^ ip as u64
}

/// Finishes a stack hash (a 64-bit finalizer over the state and length).
#[inline(always)]
pub(crate) fn hash_finish(h: u64, len: usize) -> u64 {
    let mut x = h ^ (len as u64).rotate_left(32);
    x = (x ^ (x >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x = (x ^ (x >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

/// A 64-bit hash of a stack.
pub(crate) fn hash_stack(frames: &[usize]) -> u64 {
    let h = frames.iter().fold(HASH_SEED, |h, &ip| hash_step(h, ip));
    hash_finish(h, frames.len())
}

/// A stored stack: its id and where its frames are (immutable, readable
/// without a lock for as long as the table lives).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Interned {
    pub id: u32,
    pub frames: *const usize,
}

impl StackTable {
    pub(crate) const fn new() -> Self {
        StackTable {
            shards: [const { SpinLock::new(StackShard::new()) }; STACK_SHARDS],
        }
    }

    /// The id of `frames` (whose [`hash_stack`] is `hash`), storing them
    /// if new; `None` when out of memory.
    pub(crate) fn intern(&self, frames: &[usize], hash: u64) -> Option<Interned> {
        let s = (hash >> (64 - STACK_SHARDS.trailing_zeros())) as usize;
        let make_id = |e: u32| ((s as u32) << STACK_INDEX_BITS) | e;
        let mut shard = self.shards[s].lock();
        let mut slot = match shard.find(hash, frames) {
            Ok(e) => {
                return Some(Interned {
                    id: make_id(e),
                    frames: shard.entries[e as usize].frames,
                })
            }
            Err(slot) => slot,
        };
        let e = shard.entries.len();
        if e >= (1 << STACK_INDEX_BITS) - 1 {
            return None;
        }
        if (e + 1) * 2 > shard.index.len() {
            if !shard.grow_index() {
                return None;
            }
            slot = shard.find(hash, frames).err()?;
        }
        shard.entries.try_reserve(1).ok()?;
        let stored = shard.store(frames)?;
        shard.entries.push(StackEntry {
            hash,
            frames: stored,
            len: frames.len(),
        });
        shard.index[slot] = e as u32 + 1;
        Some(Interned {
            id: make_id(e as u32),
            frames: stored,
        })
    }

    /// The frames of stack `id` (empty for [`NO_STACK`] and [`INTERNAL`]).
    /// (A [`SysVec`]: nothing may call the global allocator under a table lock.)
    pub(crate) fn get(&self, id: u32) -> SysVec<usize> {
        let mut out = sys_vec();
        if id >= NO_STACK {
            return out;
        }
        let shard = self.shards[(id >> STACK_INDEX_BITS) as usize].lock();
        let e = (id & ((1 << STACK_INDEX_BITS) - 1)) as usize;
        if let Some(entry) = shard.entries.get(e) {
            out.extend_from_slice(entry.frames());
        }
        out
    }

    /// Calls `f` on each shard's lock, in order (for the fork handlers);
    /// stops at the first `false`.
    pub(crate) fn each_lock(&self, f: &mut dyn FnMut(&dyn RawLock) -> bool) -> bool {
        self.shards.iter().all(|s| f(s))
    }

    /// Distinct stacks and the bytes they use.
    pub(crate) fn footprint(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(n, bytes), s| {
            let s = s.lock();
            (
                n + s.entries.len(),
                bytes
                    + s.index.capacity() * 4
                    + s.entries.capacity() * core::mem::size_of::<StackEntry>()
                    + s.chunks
                        .iter()
                        .map(|c| c.capacity() * core::mem::size_of::<usize>())
                        .sum::<usize>(),
            )
        })
    }
}

/// Fault injection for the tests: makes this thread's table growth fail
/// as if out of memory.
#[cfg(test)]
pub(crate) mod test_hooks {
    use core::cell::Cell;

    std::thread_local! {
        static FAIL: Cell<bool> = const { Cell::new(false) };
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
        let n = if cfg!(miri) { 200 } else { 20_000 };
        for i in 1..=n {
            s.insert(rec(i * 16));
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
        let n = if cfg!(miri) { 300 } else { 5000 };
        for i in 1..=n {
            assert_eq!(s.insert(rec(i * 16)), (None, true));
        }
        assert_eq!(s.tracked(), n);
        assert_eq!(s.bytes(), (1..=n).sum::<usize>());
        // Remove every third, then check all lookups.
        for i in (1..=n).step_by(3) {
            assert_eq!(s.remove(i * 16), Some(rec(i * 16)));
            assert_eq!(s.remove(i * 16), None);
        }
        for i in 1..=n {
            let expect = if (i - 1) % 3 == 0 {
                None
            } else {
                Some(rec(i * 16))
            };
            assert_eq!(s.remove(i * 16), expect, "addr {}", i * 16);
        }
        assert_eq!((s.tracked(), s.bytes()), (0, 0));
        assert_eq!(s.remove(0), None);
    }

    #[test]
    fn a_table_that_cannot_grow_refuses_inserts_and_every_probe_ends() {
        let mut s = LiveShard::new();
        s.insert(rec(16));
        test_hooks::fail_growth(true);
        // 16 slots, at most 3/4 full: 12 records, then refusals.
        let stored = (2..=40).filter(|i| s.insert(rec(i * 16)).1).count();
        assert_eq!(s.tracked(), 12);
        assert_eq!(stored, 11);
        // A replacement of a live address is still stored.
        let newer = Record::new(32, 5, 0, 1, 1);
        assert_eq!(s.insert(newer), (Some(rec(32)), true));
        // Lookups of absent addresses end (the table keeps an empty slot);
        // before this rule a full table probed forever under its lock.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let absent = (1000..1100).all(|i| s.remove(i * 16).is_none());
            let _ = tx.send(absent);
        });
        let answer = rx.recv_timeout(std::time::Duration::from_secs(20));
        assert_eq!(answer, Ok(true), "a lookup in a full table never ended");
        test_hooks::fail_growth(false);
    }

    #[test]
    fn tables_shrink_when_the_live_set_falls() {
        let mut s = LiveShard::new();
        let n = if cfg!(miri) { 300 } else { 20_000 };
        for i in 1..=n {
            s.insert(rec(i * 16));
        }
        let grown = s.table_bytes();
        for i in 1..=n {
            s.remove(i * 16);
            // Past the first 16 slots, never under 3/8 full.
            if s.slots.len() > MIN_SLOTS {
                assert!(
                    s.len * 8 >= s.slots.len() * 3,
                    "{} in {}",
                    s.len,
                    s.slots.len()
                );
            }
        }
        assert!(grown >= n * 24);
        assert_eq!(s.table_bytes(), MIN_SLOTS * core::mem::size_of::<Record>());
        // Up and down around one size: no rebuild each time.
        for i in 1..=100 {
            s.insert(rec(i * 16));
        }
        let cap = s.slots.len();
        for _ in 0..50 {
            s.remove(16);
            s.insert(rec(16));
        }
        assert_eq!(s.slots.len(), cap);
    }

    #[test]
    fn insert_same_address_replaces() {
        let mut s = LiveShard::new();
        s.insert(rec(32));
        let newer = Record::new(32, 99, 0xff, 1, 2);
        assert_eq!(s.insert(newer), (Some(rec(32)), true));
        assert_eq!((s.tracked(), s.bytes()), (1, 99));
        assert_eq!(s.remove(32), Some(newer));
    }

    #[test]
    fn ring_remembers_recent_frees_only() {
        let mut s = LiveShard::new();
        for a in 1..=(RING + 5) {
            // Stacks of 0, 1, 2 and 3 frames, one cut to the depth (2).
            let frames = [a, a + 1, a + 2];
            s.remember_free(a, &rec(a * 16), &frames[..a % 4], 2);
        }
        assert!(s.recent_free(1).is_none());
        assert!(s.recent_free(5).is_none(), "the oldest one left the ring");
        let (f, frames) = s.recent_free(RING + 5).unwrap();
        assert_eq!((f.size, f.alloc_stack), (RING + 5, 7));
        assert_eq!(frames, [RING + 5]);
        let (f, frames) = s.recent_free(6).unwrap();
        assert_eq!((f.size, frames), (6, &[6, 7][..]));
        assert_eq!(s.recent_free(8).unwrap().1, &[] as &[usize]);
        assert_eq!(s.recent_free(7).unwrap().1, [7, 8], "cut to the depth");
        assert_eq!(s.ring_bytes(), RING * 2 * core::mem::size_of::<usize>());
        // A newer free of the same address wins.
        s.remember_free(6, &rec(16), &[], 2);
        let (f, frames) = s.recent_free(6).unwrap();
        assert_eq!((f.size, frames), (1, &[][..]));
    }

    const MAX_LONG: usize = CHUNK_WORDS / 3;

    #[test]
    fn interning_dedups_and_returns_frames() {
        let t = StackTable::new();
        let id = |frames: &[usize]| t.intern(frames, hash_stack(frames)).unwrap().id;
        let a = id(&[1, 2, 3]);
        let b = id(&[1, 2, 4]);
        assert_ne!(a, b);
        assert_eq!(id(&[1, 2, 3]), a);
        let stored = t.intern(&[1, 2, 3], hash_stack(&[1, 2, 3])).unwrap();
        assert_eq!(
            // SAFETY: interned frames stay valid while the table lives.
            unsafe { core::slice::from_raw_parts(stored.frames, 3) },
            [1, 2, 3]
        );
        assert_eq!(*t.get(a), [1, 2, 3]);
        assert_eq!(*t.get(b), [1, 2, 4]);
        let empty = id(&[]);
        assert!(t.get(empty).is_empty());
        assert!(t.get(NO_STACK).is_empty());
        let n = if cfg!(miri) { 200 } else { 3000 };
        let ids: Vec<u32> = (0..n).map(|i| id(&[i, i + 1])).collect();
        // Long stacks fill chunks and start new ones; earlier ones stay put.
        let long: Vec<usize> = (0..MAX_LONG).collect();
        let long_ids: Vec<u32> = (0..20).map(|k| id(&[&[k], &long[..]].concat())).collect();
        for (k, lid) in long_ids.iter().enumerate() {
            assert_eq!(*t.get(*lid), [&[k], &long[..]].concat()[..]);
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(*t.get(*id), [i, i + 1]);
        }
        assert_eq!(t.footprint().0, n + 3 + 20);
    }
}
