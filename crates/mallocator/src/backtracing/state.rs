//! The tracker's tables and counters, kept in one block of memory of
//! their own.
//!
//! A [`Backtracing`](super::Backtracing) value may be moved between uses
//! (safe Rust allows it once no handle borrows it), but the fork
//! handlers must find every tracker lock at any moment. So everything
//! lockable lives in a [`State`] allocated straight from the C library at
//! the tracker's first use, registered with the fork handlers there, and
//! unregistered and freed when the tracker is dropped: its address never
//! changes while it is registered.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::errors::ErrorRecord;
use super::live::{LiveShard, TableHint, LIVE_SHARDS};
use super::log::{Log, LogFormat, LogTarget};
use super::own_heap::own_heap;
use super::stacks::StackTable;
use super::sync::SpinLock;
use super::sys_vec::{sys_vec, SysVec};
use super::thread::Busy;

/// Tracker epochs: each [`State`] gets a fresh one, never reused (64-bit,
/// so it cannot wrap). It names the tracker in each thread's reentrancy
/// flag and stack cache. 0 means "no tracker".
static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

/// Bad frees kept for the report, and how many there were in all.
pub(crate) struct Errors {
    pub(crate) kept: SysVec<ErrorRecord>,
    pub(crate) total: usize,
    /// The double frees among `total` (the rest are invalid frees),
    /// counted apart because `kept` stops growing at its cap.
    pub(crate) double_frees: usize,
}

/// A tracker's lockable state (see the module docs).
pub(crate) struct State {
    /// This tracker's epoch.
    pub(crate) epoch: u64,
    pub(crate) log: Log,
    /// Live blocks, sharded by address page (see `live.rs`).
    pub(crate) live: [SpinLock<LiveShard>; LIVE_SHARDS],
    /// Where each shard's table lies, for prefetching without its lock.
    pub(crate) live_hints: [TableHint; LIVE_SHARDS],
    pub(crate) stacks: StackTable,
    pub(crate) errors: SpinLock<Errors>,
    /// The exact live bytes at the last synchronisation (see `peak.rs`).
    pub(crate) synced_bytes: AtomicUsize,
    /// Synchronisations so far (wrapping; only compared for equality
    /// over one thread's next few allocations); bumped after the shards
    /// are summed and before `synced_bytes` is stored.
    pub(crate) sync_gen: AtomicU32,
    pub(crate) peak_bytes: AtomicUsize,
    /// Stacks captured with no frames because the code ran off its
    /// thread's known stack (see `stack.rs`).
    pub(crate) off_stack: AtomicUsize,
    /// Allocations refused because their record could not be stored.
    pub(crate) refused: AtomicUsize,
}

impl State {
    /// Runs `f`, which takes locks of the hot path (the live shards, the
    /// stack table, the errors) for the tracker's own reading, with this
    /// thread marked as in the hot path: a signal handler that interrupts
    /// it leaves its call in the thread's queue rather than wait for a
    /// lock its thread holds (invariant 12), for the caller to record
    /// once it is done (`Backtracing::read`). `f` allocates nothing
    /// through the tracker.
    pub(crate) fn reading<R>(&self, f: impl FnOnce() -> R) -> R {
        let _hot = Busy::enter_hot(self.epoch);
        f()
    }

    /// Allocates and initialises a state with log target `log` in
    /// `format`; `None`
    /// when out of memory. Built in place: it is about 100 KiB, too big
    /// for a small thread stack.
    pub(crate) fn create(log: LogTarget, format: LogFormat) -> Option<*mut State> {
        let p = own_heap()
            .malloc(
                core::mem::align_of::<State>(),
                core::mem::size_of::<State>(),
            )
            .cast::<State>();
        if p.is_null() {
            return None;
        }
        let epoch = NEXT_EPOCH.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `p` is a fresh, suitably aligned block of
        // `size_of::<State>()` bytes; every field is written exactly once
        // through raw field pointers (no reference to uninitialised memory
        // is made), the array element by element.
        unsafe {
            use core::ptr::addr_of_mut;
            addr_of_mut!((*p).epoch).write(epoch);
            addr_of_mut!((*p).log).write(Log::new(log, format));
            let live = addr_of_mut!((*p).live).cast::<SpinLock<LiveShard>>();
            let hints = addr_of_mut!((*p).live_hints).cast::<TableHint>();
            for i in 0..LIVE_SHARDS {
                live.add(i).write(SpinLock::new(LiveShard::new()));
                hints.add(i).write(TableHint::new());
            }
            addr_of_mut!((*p).stacks).write(StackTable::new());
            addr_of_mut!((*p).errors).write(SpinLock::new(Errors {
                kept: sys_vec(),
                total: 0,
                double_frees: 0,
            }));
            addr_of_mut!((*p).synced_bytes).write(AtomicUsize::new(0));
            addr_of_mut!((*p).sync_gen).write(AtomicU32::new(0));
            addr_of_mut!((*p).peak_bytes).write(AtomicUsize::new(0));
            addr_of_mut!((*p).off_stack).write(AtomicUsize::new(0));
            addr_of_mut!((*p).refused).write(AtomicUsize::new(0));
        }
        Some(p)
    }

    /// Drops and frees a state made by [`create`](Self::create).
    ///
    /// # Safety
    /// `p` came from `create`, is not registered with the fork handlers,
    /// and nothing uses it any more.
    pub(crate) unsafe fn destroy(p: *mut State) {
        // SAFETY: by the contract, `p` is a live, initialised state that
        // nobody else refers to, in a block from the libc handle.
        unsafe {
            core::ptr::drop_in_place(p);
            own_heap().free(p.cast());
        }
    }

    /// Calls `f` on every lock of this state, in the order the fork
    /// handlers take them (the log lock first: a log callback may
    /// allocate, which takes the other locks); stops at the first `false`.
    pub(crate) fn each_lock(&self, f: &mut dyn FnMut(&dyn super::sync::RawLock) -> bool) -> bool {
        f(self.log.lock())
            && f(&self.errors)
            && self.stacks.each_lock(f)
            && self.live.iter().all(|l| f(l))
    }
}
