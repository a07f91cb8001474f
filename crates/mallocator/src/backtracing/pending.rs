//! Allocations and frees made by a signal handler that interrupted this
//! thread inside a tracker's allocation or free path (invariant 12 in
//! the module docs).
//!
//! The interrupted code may hold any of the tracker's locks, so the
//! handler's call must not take one: it gets its block from the inner
//! allocator at once (or, for a free, keeps the block allocated), walks
//! its stack (allocating nothing), and leaves the event here. The
//! interrupted path, once it has released its locks, records the events
//! in order as if they came after its own (`Backtracing::drain_pending`);
//! a call of the same tracker that comes first (another handler's, in
//! between) records them before its own. An event leaves the queue only
//! once recorded, so that a look-up finds a block in the queue or the
//! table, never in neither.
//!
//! The queue is the thread's, and trackers nest (one tracker's inner
//! allocator can be another tracker, whose hot path then runs inside the
//! first one's), so each event names the tracker whose path it
//! interrupted, and only that tracker takes it.

use core::cell::Cell;
use core::sync::atomic::{compiler_fence, Ordering};

use super::os;

/// Events a thread can hold (one handler's few allocations).
pub(crate) const PENDING: usize = 8;
/// Frames kept of each event's stack.
pub(crate) const DEFERRED_DEPTH: usize = 32;

/// One deferred allocation or free.
#[derive(Clone, Copy)]
pub(crate) struct Deferred {
    /// The epoch of the tracker whose hot path the handler interrupted:
    /// the one that records the event.
    pub(crate) epoch: u64,
    /// The block the inner allocator returned, or the one freed.
    pub(crate) ptr: usize,
    /// The allocation's requested size and alignment (as passed, and its
    /// log2 as the record keeps it).
    pub(crate) size: usize,
    pub(crate) align: usize,
    pub(crate) align_log2: u8,
    /// The allocating thread's scope stamp when the handler allocated:
    /// the record's (a reallocation gives its new block the old one's;
    /// the thread's may differ by the time the event is recorded).
    pub(crate) stamp: u32,
    pub(crate) free: bool,
    /// The stack: `frames[..len]`, hashed as the walk hashes.
    pub(crate) len: usize,
    pub(crate) hash: u64,
    pub(crate) frames: [usize; DEFERRED_DEPTH],
}

impl Deferred {
    pub(crate) const EMPTY: Deferred = Deferred {
        epoch: 0,
        ptr: 0,
        size: 0,
        align: 0,
        align_log2: 0,
        stamp: 0,
        free: false,
        len: 0,
        hash: 0,
        frames: [0; DEFERRED_DEPTH],
    };

    /// The stack's frames.
    pub(crate) fn frames(&self) -> &[usize] {
        &self.frames[..self.len]
    }
}

/// A thread's deferred events, oldest first. Only signal handlers on
/// this thread add to it, only the thread's own tracker code takes from
/// it, with signals blocked while it does.
pub(crate) struct Pending {
    events: [Cell<Deferred>; PENDING],
    len: Cell<usize>,
}

impl Pending {
    pub(crate) const fn new() -> Pending {
        Pending {
            events: [const { Cell::new(Deferred::EMPTY) }; PENDING],
            len: Cell::new(0),
        }
    }

    /// Adds `event` (from a signal handler); false when the queue is full.
    ///
    /// A handler that a second handler interrupts right here may lose its
    /// event to the second one's: both would have to allocate inside the
    /// tracker's path, interrupting each other.
    pub(crate) fn push(&self, event: Deferred) -> bool {
        let n = self.len.get();
        if n == PENDING {
            return false;
        }
        self.events[n].set(event);
        // The event is whole before the length says it is there.
        compiler_fence(Ordering::SeqCst);
        self.len.set(n + 1);
        true
    }

    /// Whether no event waits.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len.get() == 0
    }

    /// Whether an event for tracker `epoch` waits.
    pub(crate) fn has(&self, epoch: u64) -> bool {
        self.oldest(epoch).is_some()
    }

    /// The newest event for tracker `epoch` about the block at `ptr`:
    /// what a handler last did with it that the tracker has not recorded
    /// yet. Read without blocking signals: a handler only appends, past
    /// the length read here.
    pub(crate) fn newest(&self, epoch: u64, ptr: usize) -> Option<Deferred> {
        let n = self.len.get();
        self.events[..n]
            .iter()
            .rev()
            .map(Cell::get)
            .find(|e| e.epoch == epoch && e.ptr == ptr)
    }

    /// The oldest event for tracker `epoch`, left in the queue. Read
    /// without blocking signals: a handler only appends, past the length
    /// read here.
    pub(crate) fn oldest(&self, epoch: u64) -> Option<Deferred> {
        let n = self.len.get();
        self.events[..n]
            .iter()
            .map(Cell::get)
            .find(|e| e.epoch == epoch)
    }

    /// Takes the oldest event for tracker `epoch`; the others keep their
    /// order. Signals are blocked meanwhile, so that no handler adds one
    /// while the queue shifts.
    pub(crate) fn pop(&self, epoch: u64) -> Option<Deferred> {
        os::with_signals_blocked(|| {
            let n = self.len.get();
            let at = self.events[..n]
                .iter()
                .position(|e| e.get().epoch == epoch)?;
            let event = self.events[at].get();
            for i in at + 1..n {
                self.events[i - 1].set(self.events[i].get());
            }
            self.len.set(n - 1);
            Some(event)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(epoch: u64, ptr: usize) -> Deferred {
        Deferred {
            epoch,
            ptr,
            ..Deferred::EMPTY
        }
    }

    #[test]
    fn events_come_out_in_order_and_a_full_queue_refuses() {
        let q = Pending::new();
        assert!(q.is_empty());
        for i in 0..PENDING {
            assert!(q.push(event(1, i + 1)));
        }
        assert!(!q.push(event(1, 99)));
        for i in 0..PENDING {
            assert_eq!(q.pop(1).map(|e| e.ptr), Some(i + 1));
        }
        assert!(q.pop(1).is_none() && q.is_empty());
    }

    /// Each tracker takes its own events, in order, and leaves the
    /// others' where they were.
    #[test]
    fn a_tracker_takes_only_its_own_events() {
        let q = Pending::new();
        for (epoch, ptr) in [(2, 10), (1, 11), (2, 12), (1, 13)] {
            assert!(q.push(event(epoch, ptr)));
        }
        assert!(q.has(1) && q.has(2) && !q.has(3));
        assert!(q.pop(3).is_none());
        assert_eq!(q.pop(1).map(|e| e.ptr), Some(11));
        assert_eq!(q.pop(1).map(|e| e.ptr), Some(13));
        assert!(q.pop(1).is_none() && !q.has(1) && !q.is_empty());
        assert_eq!(q.pop(2).map(|e| e.ptr), Some(10));
        assert_eq!(q.pop(2).map(|e| e.ptr), Some(12));
        assert!(q.is_empty());
    }

    /// The newest event about a block is found, of its own tracker only.
    #[test]
    fn the_newest_event_about_a_block_is_found() {
        let q = Pending::new();
        let free = |epoch, ptr| Deferred {
            free: true,
            ..event(epoch, ptr)
        };
        for e in [event(1, 10), event(2, 11), free(1, 10), event(1, 12)] {
            assert!(q.push(e));
        }
        assert!(q.newest(1, 10).is_some_and(|e| e.free));
        assert!(q.newest(1, 12).is_some_and(|e| !e.free));
        assert!(q.newest(1, 11).is_none() && q.newest(3, 10).is_none());
    }
}
