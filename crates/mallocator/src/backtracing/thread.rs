//! Per-thread tracker state: the thread's id and scope stamp, which
//! tracker it is inside and how (reentrancy), its cache of recently
//! interned stacks, its shares of the peak-byte accounting, the events its
//! signal handlers left for the tracker (`pending.rs`), and where its
//! compact-log buffer is.
//!
//! Kept in one `thread_local!` with a `const` initialiser and no
//! destructor, so it stays usable while the thread's other thread-locals
//! are torn down (allocations then still find it).

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

use super::log::ThreadBuffer;
use super::pending::Pending;

/// One thread's tracker state.
pub(crate) struct ThreadState {
    /// Tracker thread id (for error reports), 0 until the first use.
    id: Cell<u64>,
    /// What this thread's allocations are stamped with: 0, or the id of
    /// the last scope it opened (see `scope.rs`).
    pub(crate) stamp: Cell<u32>,
    /// The epoch of the tracker this thread is inside (0: none), with
    /// [`HOT`] set while that is its allocation or free path proper, or
    /// its own reading of its tables under their locks
    /// ([`Busy::enter_hot`]); or [`SHARED_LOCK`] or [`FORKING`]. An
    /// allocation that reaches that same tracker now is the tracker's own,
    /// or, with [`HOT`] (where nothing allocates through a global
    /// allocator), a signal handler's; one that reaches another tracker is
    /// an ordinary allocation of it (invariants 4 and 12).
    busy: Cell<u64>,
    /// What this thread's signal handlers left for the tracker.
    pub(crate) pending: Pending,
    /// Recently interned stacks of this thread, by hash.
    pub(crate) cache: [Cell<CacheEntry>; STACK_CACHE],
    /// This thread's shares of the peak accounting of the last two
    /// trackers it used (see `peak.rs`), the one used last first. Two, so
    /// that the trackers a thread commonly alternates between keep their
    /// shares: one nested in the other's inner allocator, or the
    /// process-wide tracker beside a local one.
    pub(crate) shares: [Cell<Share>; 2],
    /// Trackers (epochs, 0: none) whose share left `shares` while not
    /// empty: their estimates miss it, so each synchronises at its next
    /// use by this thread ([`ThreadState::use_share`]).
    owed: [Cell<u64>; OWED],
    /// This thread's compact-log buffer (see `log/threads.rs`).
    pub(crate) log: ThreadBuffer,
}

/// Entries in each thread's stack cache (a power of two).
pub(crate) const STACK_CACHE: usize = 128;

/// A thread's share of one tracker's peak accounting (see `peak.rs`).
#[derive(Clone, Copy)]
pub(crate) struct Share {
    /// The tracker (epoch); 0: none.
    pub(crate) epoch: u64,
    /// The synchronisation (`State::sync_gen`) `bytes` counts from.
    pub(crate) gen: u32,
    /// Net bytes this thread allocated through that tracker since then.
    pub(crate) bytes: isize,
}

impl Share {
    const EMPTY: Share = Share {
        epoch: 0,
        gen: 0,
        bytes: 0,
    };
}

/// Trackers [`ThreadState::owed`] remembers: a thread that alternates
/// between more than `OWED + 2` trackers can leave one of them short of
/// a share (under 64 KiB) until it next synchronises.
const OWED: usize = 4;

/// A stack this thread interned, named by its hash and length (see
/// invariant 11 in the tracker's module docs); `epoch` names the tracker.
#[derive(Clone, Copy)]
pub(crate) struct CacheEntry {
    pub(crate) epoch: u64,
    pub(crate) id: u32,
    pub(crate) hash: u64,
    pub(crate) len: u32,
}

impl CacheEntry {
    const EMPTY: CacheEntry = CacheEntry {
        epoch: 0,
        id: 0,
        hash: 0,
        len: 0,
    };
}

std::thread_local! {
    pub(crate) static THREAD: ThreadState = const {
        ThreadState {
            id: Cell::new(0),
            stamp: Cell::new(0),
            busy: Cell::new(0),
            pending: Pending::new(),
            cache: [const { Cell::new(CacheEntry::EMPTY) }; STACK_CACHE],
            shares: [const { Cell::new(Share::EMPTY) }; 2],
            owed: [const { Cell::new(0) }; OWED],
            log: ThreadBuffer::new(),
        }
    };
}

/// This thread's state; `None` only where thread-locals are not native
/// and the thread is being torn down.
///
/// A reference, not a closure run by `THREAD.with`: the allocation and
/// free paths must add no frame to the stacks they capture, and
/// `LocalKey::try_with` with a whole path in its closure is not always
/// inlined (it was not in the AddressSanitizer build).
#[inline(always)]
pub(crate) fn current() -> Option<&'static ThreadState> {
    let p = THREAD.try_with(|t| t as *const ThreadState).ok()?;
    // SAFETY: `THREAD` has a constant initialiser and no destructor, so
    // its storage is initialised from the thread's start and stays valid
    // until the thread ends, after which no code of the thread runs.
    // `ThreadState` is not `Sync`: the reference cannot reach another
    // thread.
    Some(unsafe { &*p })
}

/// Runs `f` with this thread's allocations stamped `stamp` (a
/// reallocation gives the new block the old one's stamp).
pub(crate) fn with_stamp<R>(stamp: u32, f: impl FnOnce() -> R) -> R {
    let saved = THREAD.try_with(|t| t.stamp.replace(stamp)).ok();
    let result = f();
    if let Some(saved) = saved {
        let _ = THREAD.try_with(|t| t.stamp.set(saved));
    }
    result
}

/// Thread ids: 64-bit, so they never wrap.
static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

/// The calling thread's tracker id (0 while its thread-locals are gone).
pub(crate) fn thread_id() -> u64 {
    THREAD
        .try_with(|t| {
            if t.id.get() == 0 {
                t.id.set(NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed));
            }
            t.id.get()
        })
        .unwrap_or(0)
}

/// Marks the current thread as inside one tracker until dropped. It
/// keeps the thread's state it changed, so that its drop looks nothing up
/// (in a shared library every thread-local access is a call into the
/// dynamic loader).
pub(crate) struct Busy<'t> {
    t: &'t ThreadState,
    was: u64,
}

/// Set in `ThreadState::busy` in a tracker's hot path, and while it reads
/// its tables under their locks (epochs stay far below it: invariant 6).
const HOT: u64 = 1 << 63;

/// `ThreadState::busy` while the thread, inside no tracker, holds a lock
/// shared by all trackers (the registry of tracker states, the list of
/// log buffers). Nothing there allocates through a tracker but a signal
/// handler, whose call is then the tracker's own work, neither reported
/// nor logged ([`ThreadState::track`]): logging it could need that very
/// lock. And [`Busy::inside_any`] is true, so that a fatal signal's
/// handler does not try to end the logs, which would wait for it forever.
const SHARED_LOCK: u64 = HOT - 1;

/// `ThreadState::busy` of the thread that forks, from the tracker's
/// `prepare` fork handler to its `parent` or `child` one (see `fork.rs`),
/// while it holds every tracker lock. The fork handlers of libraries that
/// registered theirs before the tracker's run in that window (`prepare`
/// handlers in the reverse order of registration, the others in order);
/// what they allocate or free is left in the thread's queue, as a signal
/// handler's is in a hot path ([`ThreadState::interrupted_hot`]), for
/// every tracker, and recorded once the locks are free: by the fork
/// handlers for the process-wide tracker, at its next call on this
/// thread for another. As for a signal handler, the queue holds 8
/// events (an allocation beyond them fails), and a reallocation of a
/// block older than the window fails, its record being out of reach.
const FORKING: u64 = HOT - 2;

impl Busy<'static> {
    /// Enters tracker `epoch` unconditionally, for the tracker's own work
    /// (reports, configuration, writing the log, unwinding): whatever it
    /// allocates through that tracker meanwhile is its own. `None` (no
    /// guard needed) where the thread's state is gone.
    pub(crate) fn enter(epoch: u64) -> Option<Self> {
        let t = current()?;
        let was = t.busy.replace(epoch);
        Some(Busy { t, was })
    }

    /// Enters tracker `epoch` as its hot path does, for the tracker's own
    /// work while it holds locks that the hot path takes (a report reading
    /// the live tables): a signal handler's call meanwhile waits in the
    /// thread's queue instead of for those locks (invariant 12), recorded
    /// once the reading is over (`Backtracing::read`). Nothing done under
    /// it may allocate through the tracker. `None` as for
    /// [`enter`](Self::enter).
    pub(crate) fn enter_hot(epoch: u64) -> Option<Self> {
        let t = current()?;
        let was = t.busy.replace(epoch | HOT);
        Some(Busy { t, was })
    }

    /// Marks what follows, until dropped, as the tracker's own work in
    /// whatever tracker this thread is in: work of the hot path that may
    /// allocate through a global allocator (invariant 12). `None` as for
    /// [`enter`](Self::enter).
    pub(crate) fn own() -> Option<Self> {
        let t = current()?;
        let was = t.busy.replace(t.busy.get() & !HOT);
        Some(Busy { t, was })
    }

    /// Marks what follows, until dropped, as holding a lock shared by
    /// all trackers (see [`SHARED_LOCK`]), unless this thread is inside a
    /// tracker already. `None` as for [`enter`](Self::enter).
    pub(crate) fn shared_lock() -> Option<Self> {
        let t = current()?;
        let was = t.busy.get();
        if was == 0 {
            t.busy.set(SHARED_LOCK);
        }
        Some(Busy { t, was })
    }

    /// Marks this thread as the one forking (see [`FORKING`]) until
    /// [`end_fork`](Self::end_fork); returns what the mark replaced
    /// (`None` where the thread's state is gone).
    pub(crate) fn begin_fork() -> Option<u64> {
        Some(current()?.busy.replace(FORKING))
    }

    /// Puts back what [`begin_fork`](Self::begin_fork) replaced.
    pub(crate) fn end_fork(was: Option<u64>) {
        if let (Some(t), Some(was)) = (current(), was) {
            t.busy.set(was);
        }
    }

    /// Whether this thread is inside tracker `epoch` now.
    pub(crate) fn inside(epoch: u64) -> bool {
        THREAD
            .try_with(|t| t.busy.get() & !HOT == epoch)
            .unwrap_or(false)
    }

    /// Whether this thread is the one forking (see [`FORKING`]).
    pub(crate) fn forking() -> bool {
        THREAD
            .try_with(|t| t.busy.get() == FORKING)
            .unwrap_or(false)
    }

    /// Whether this thread is inside any tracker now.
    pub(crate) fn inside_any() -> bool {
        THREAD.try_with(|t| t.busy.get() != 0).unwrap_or(false)
    }
}

impl Drop for Busy<'_> {
    #[inline]
    fn drop(&mut self) {
        self.t.busy.set(self.was);
    }
}

impl ThreadState {
    /// Enters tracker `epoch`'s hot path: `None` when this thread is
    /// already inside that tracker (the allocation is the tracker's own,
    /// or a signal handler's: [`interrupted_hot`](Self::interrupted_hot)),
    /// holds a lock all trackers share ([`SHARED_LOCK`]), or forks
    /// ([`FORKING`]), else the guard.
    #[inline]
    pub(crate) fn track(&self, epoch: u64) -> Option<Busy<'_>> {
        let was = self.busy.get();
        if was != 0 && (was & !HOT == epoch || was == SHARED_LOCK || was == FORKING) {
            return None;
        }
        self.busy.set(epoch | HOT);
        Some(Busy { t: self, was })
    }

    /// Whether a call that [`track`](Self::track) turned away came while
    /// this thread was in tracker `epoch`'s hot path (from a signal
    /// handler that interrupted it), or held every tracker's locks to
    /// fork (from another library's fork handler): either way it must
    /// take no lock, and leave its event for later.
    pub(crate) fn interrupted_hot(&self, epoch: u64) -> bool {
        let busy = self.busy.get();
        busy == epoch | HOT || busy == FORKING
    }

    /// Whether this thread's signal handlers left events for the tracker.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Makes `shares[0]` tracker `epoch`'s share (it was not): the
    /// second one moved up, or a new empty one, which pushes the second
    /// out. True when the tracker's estimate misses a share of this
    /// thread that was pushed out earlier: it must synchronise.
    #[cold]
    #[inline(never)]
    pub(crate) fn use_share(&self, epoch: u64) -> bool {
        let [first, second] = &self.shares;
        if second.get().epoch == epoch {
            first.swap(second);
            return false;
        }
        // Repaid before another is owed, which may push the oldest out.
        let owed = self.repay(epoch);
        let out = second.replace(first.get());
        if out.epoch != 0 && out.bytes != 0 {
            self.owe(out.epoch);
        }
        first.set(Share {
            epoch,
            ..Share::EMPTY
        });
        owed
    }

    /// Remembers that tracker `epoch` lost a share (see
    /// [`owed`](Self::owed)), after the others, oldest first; when all
    /// are taken, the oldest is forgotten.
    fn owe(&self, epoch: u64) {
        if self.owed.iter().any(|o| o.get() == epoch) {
            return;
        }
        let at = match self.owed.iter().position(|o| o.get() == 0) {
            Some(free) => free,
            None => {
                self.forget_owed(0);
                OWED - 1
            }
        };
        self.owed[at].set(epoch);
    }

    /// Whether tracker `epoch` lost a share; forgets it.
    fn repay(&self, epoch: u64) -> bool {
        match self.owed.iter().position(|o| o.get() == epoch) {
            Some(at) => {
                self.forget_owed(at);
                true
            }
            None => false,
        }
    }

    /// Removes `owed[at]`, keeping the others in order.
    fn forget_owed(&self, at: usize) {
        for i in at + 1..OWED {
            self.owed[i - 1].set(self.owed[i].get());
        }
        self.owed[OWED - 1].set(0);
    }
}
