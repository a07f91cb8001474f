//! Each live shard's memory of its last few frees, so that a double
//! free can say where the block was first freed.

use super::live::Record;
use super::stacks::NO_STACK;
use super::sys_vec::{sys_vec, SysVec};

/// A freed block remembered to explain a later double free. The stack
/// of that free is kept raw in the [`RecentFrees`], not interned: it is
/// needed only when a double free is reported, so the free path spends
/// no hashing or lookup on it.
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

/// The last [`RING`] frees of one shard, oldest overwritten first.
#[derive(Debug)]
pub(crate) struct RecentFrees {
    entries: [Freed; RING],
    /// The stacks of the entries: entry `i`'s frames start at word
    /// `i * stride`. Allocated at the first free that has a stack,
    /// with room for the tracker's depth then.
    frames: SysVec<usize>,
    stride: usize,
    /// The entry the next free overwrites.
    next: usize,
}

impl RecentFrees {
    pub(crate) const fn new() -> Self {
        RecentFrees {
            entries: [Freed {
                addr: 0,
                size: 0,
                alloc_stack: NO_STACK,
                frames: 0,
            }; RING],
            frames: sys_vec(),
            stride: 0,
            next: 0,
        }
    }

    /// Remembers a free of the block `rec` (at `addr`), overwriting the
    /// oldest one, with the raw frames of the free's stack (`depth` is
    /// the tracker's: the room each entry gets when the ring's frame
    /// store is first allocated; longer stacks are cut to it). A copy of
    /// a few words: interning waits for [`find`](Self::find)
    /// to be needed.
    #[inline]
    pub(crate) fn remember(&mut self, addr: usize, rec: &Record, frames: &[usize], depth: usize) {
        let i = self.next;
        self.next = (i + 1) % RING;
        let mut kept = 0;
        if !frames.is_empty() && (self.stride != 0 || self.alloc_frames(depth)) {
            kept = frames.len().min(self.stride);
            self.frames[i * self.stride..][..kept].copy_from_slice(&frames[..kept]);
        }
        self.entries[i] = Freed {
            addr,
            size: rec.size(),
            alloc_stack: rec.stack,
            frames: kept as u32,
        };
    }

    /// Allocates the ring's frame store, `depth` words per entry; false
    /// when out of memory (the frees are then remembered without stacks).
    #[cold]
    fn alloc_frames(&mut self, depth: usize) -> bool {
        let words = RING * depth;
        if depth == 0 || self.frames.try_reserve_exact(words).is_err() {
            return false;
        }
        self.frames.resize(words, 0);
        self.stride = depth;
        true
    }

    /// The most recent remembered free of `addr`, with its stack's frames
    /// (empty when it had none).
    pub(crate) fn find(&self, addr: usize) -> Option<(Freed, &[usize])> {
        let i = (1..=RING)
            .map(|back| (self.next + RING - back) % RING)
            .find(|&i| self.entries[i].addr == addr)?;
        let f = self.entries[i];
        let at = i * self.stride;
        Some((f, &self.frames[at..at + f.frames as usize]))
    }

    /// Bytes of the ring's frame store (for the metadata figure).
    pub(crate) fn bytes(&self) -> usize {
        self.frames.capacity() * core::mem::size_of::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(addr: usize) -> Record {
        Record::new(addr, addr / 16, 3, 7, 9)
    }

    #[test]
    fn ring_remembers_recent_frees_only() {
        let mut s = RecentFrees::new();
        for a in 1..=(RING + 5) {
            // Stacks of 0, 1, 2 and 3 frames, one cut to the depth (2).
            let frames = [a, a + 1, a + 2];
            s.remember(a, &rec(a * 16), &frames[..a % 4], 2);
        }
        assert!(s.find(1).is_none());
        assert!(s.find(5).is_none(), "the oldest one left the ring");
        let (f, frames) = s.find(RING + 5).unwrap();
        assert_eq!((f.size, f.alloc_stack), (RING + 5, 7));
        assert_eq!(frames, [RING + 5]);
        let (f, frames) = s.find(6).unwrap();
        assert_eq!((f.size, frames), (6, &[6, 7][..]));
        assert_eq!(s.find(8).unwrap().1, &[] as &[usize]);
        assert_eq!(s.find(7).unwrap().1, [7, 8], "cut to the depth");
        assert_eq!(s.bytes(), RING * 2 * core::mem::size_of::<usize>());
        // A newer free of the same address wins.
        s.remember(6, &rec(16), &[], 2);
        let (f, frames) = s.find(6).unwrap();
        assert_eq!((f.size, frames), (1, &[][..]));
    }
}
