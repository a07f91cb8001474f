//! Interned stacks: each distinct stack is stored once, named by a `u32`
//! id, and never moved or changed while the tracker lives (invariant 8
//! in the tracker's module docs); each thread's cache in front of the
//! table (invariant 11).
//! The stack index is never more than half full, so every probe ends.

use super::sync::{RawLock, SpinLock};
use super::sys_vec::{sys_vec, SysVec};
use super::thread::{CacheEntry, ThreadState, STACK_CACHE, THREAD};

/// The stack id of the tracker's own allocations (never reported).
pub(crate) const INTERNAL: u32 = u32::MAX;
/// The stack id when no stack was captured (`Config::free_stacks` off).
pub(crate) const NO_STACK: u32 = u32::MAX - 1;

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
    /// Entries before this one are in the compact log already.
    written: usize,
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
            written: 0,
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

/// Mixes one frame into a stack hash: an xor and a multiply by an odd
/// constant, so each step is a bijection of the state (two stacks that
/// differ in one frame never collide) and not linear (unlike a
/// rotate-and-xor chain, where differences in two frames can cancel);
/// [`hash_finish`] spreads the bits.
#[inline(always)]
pub(crate) fn hash_step(h: u64, ip: usize) -> u64 {
    (h ^ ip as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
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

impl StackTable {
    pub(crate) const fn new() -> Self {
        StackTable {
            shards: [const { SpinLock::new(StackShard::new()) }; STACK_SHARDS],
        }
    }

    /// The id of `frames` (whose [`hash_stack`] is `hash`), storing them
    /// if new, and whether they were; `None` when out of memory.
    fn intern(&self, frames: &[usize], hash: u64) -> Option<(u32, bool)> {
        let s = (hash >> (64 - STACK_SHARDS.trailing_zeros())) as usize;
        let make_id = |e: u32| ((s as u32) << STACK_INDEX_BITS) | e;
        let mut shard = self.shards[s].lock();
        let mut slot = match shard.find(hash, frames) {
            Ok(e) => return Some((make_id(e), false)),
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
        Some((make_id(e as u32), true))
    }

    /// The id of `frames` (whose [`hash_stack`] is `hash`) in the table of
    /// tracker `epoch`: from this thread's cache when it interned the
    /// same stack recently (no lock), else from the table;
    /// [`NO_STACK`] when it cannot be stored. With it, whether the stack
    /// was new to the table.
    #[inline]
    pub(crate) fn intern_cached(
        &self,
        t: &ThreadState,
        epoch: u64,
        frames: &[usize],
        hash: u64,
    ) -> (u32, bool) {
        let slot = &t.cache[(hash >> 40) as usize % STACK_CACHE];
        let e = slot.get();
        // The hash and length name the stack (invariant 11 in the module
        // docs of the tracker): no frame-by-frame compare.
        if e.epoch == epoch && e.hash == hash && e.len as usize == frames.len() {
            return (e.id, false);
        }
        let Some((id, new)) = self.intern(frames, hash) else {
            return (NO_STACK, false);
        };
        let entry = CacheEntry {
            epoch,
            id,
            hash,
            len: frames.len() as u32,
        };
        slot.set(entry);
        (id, new)
    }

    /// [`intern_cached`](Self::intern_cached) for frames without their hash (the free
    /// path keeps only the frames); [`NO_STACK`] for none.
    #[cold]
    pub(crate) fn intern_frames(&self, epoch: u64, frames: &[usize]) -> u32 {
        if frames.is_empty() {
            return NO_STACK;
        }
        let hash = hash_stack(frames);
        THREAD
            .try_with(|t| self.intern_cached(t, epoch, frames, hash).0)
            .unwrap_or_else(|_| self.intern(frames, hash).map_or(NO_STACK, |(id, _)| id))
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

    /// Calls `f` with the id and frames of every stack not passed to an
    /// earlier call, then counts them as written (the compact log writes
    /// each distinct stack once; it calls this under its own lock). In
    /// each shard it stops at the first stack whose frames `ready` refuses,
    /// leaving it and the later ones (stored after it) for another call.
    pub(crate) fn for_each_unwritten(
        &self,
        ready: &mut dyn FnMut(&[usize]) -> bool,
        f: &mut dyn FnMut(u32, &[usize]),
    ) {
        for (s, shard) in self.shards.iter().enumerate() {
            let mut shard = shard.lock();
            let shard = &mut *shard;
            let from = shard.written;
            for entry in &shard.entries[from..] {
                if !ready(entry.frames()) {
                    break;
                }
                f(
                    ((s as u32) << STACK_INDEX_BITS) | shard.written as u32,
                    entry.frames(),
                );
                shard.written += 1;
            }
        }
    }

    /// Counts every stack as not written (a log that starts over in a new
    /// file after `fork` writes them all again).
    pub(crate) fn forget_written(&self) {
        for shard in &self.shards {
            shard.lock().written = 0;
        }
    }

    /// Whether `f` is true of a stack not yet passed to
    /// [`for_each_unwritten`](Self::for_each_unwritten).
    pub(crate) fn any_unwritten(&self, f: &mut dyn FnMut(&[usize]) -> bool) -> bool {
        self.shards.iter().any(|shard| {
            let shard = shard.lock();
            shard.entries[shard.written..].iter().any(|e| f(e.frames()))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_LONG: usize = CHUNK_WORDS / 3;

    #[test]
    fn interning_dedups_and_keeps_frames() {
        let t = StackTable::new();
        let id = |frames: &[usize]| t.intern(frames, hash_stack(frames)).unwrap().0;
        let a = id(&[1, 2, 3]);
        let b = id(&[1, 2, 4]);
        assert_ne!(a, b);
        assert_eq!(id(&[1, 2, 3]), a);
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
