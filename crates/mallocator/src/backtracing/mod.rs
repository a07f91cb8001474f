//! The backtracing allocator: a leak and bad-free detector that wraps any
//! thread-safe [`Valloc`] (the Rust twin of Firedancer's
//! `fd_backtracing_alloc_virtual`, without its dangling inner pointer and
//! process-wide spin lock).
//!
//! * For every live block it keeps a 24-byte record (address; size and
//!   alignment packed in one word; interned stack id; a scope stamp: the
//!   id of the last scope the allocating thread opened, or 0) in one of
//!   256 shards chosen by the address's 4 KiB page (neighbouring blocks
//!   have neighbouring records, see `live.rs`), so threads working in
//!   pages of their own rarely meet on a lock. Each
//!   shard's table, once past its first 16 slots, is 6/11 to 3/4 full
//!   while the live set grows (at most 44 bytes of table per live block),
//!   never under 3/8 full after an insertion (at most 64), and never
//!   under 1/16 full while it only falls (at most 384;
//!   [`Backtracing::metadata`]).
//! * Stacks are raw return addresses, captured by a bounds-checked
//!   frame-pointer walk or the `backtrace` crate's unwinder
//!   ([`StackMode`]), interned once per distinct stack, and symbolized only
//!   by [`Backtracing::report`]. A free's stack is not interned: its raw
//!   frames wait in the shard's ring of its last 8 frees, for a double
//!   free to report them (a double free whose first free has left that
//!   ring is reported as an invalid free).
//! * Double frees and frees of unknown pointers are recorded with their
//!   stacks and **not** passed to the inner allocator, so the program
//!   keeps running.
//! * [`Backtracing::scope`] checks one thread's leaks inside a test,
//!   undisturbed by other tests running in parallel.
//! * [`GlobalBacktracing`] tracks a whole program as its
//!   `#[global_allocator]`, with a leak report at exit.
//! * Log mode ([`LogTarget`]) writes every event to a log, compact by
//!   default or in the C tool's text format ([`LogFormat`]).
//!
//! # Invariants
//!
//! Every invariant the tracker relies on, stated once; the code that
//! keeps one points back here by number. Most exist because the tracker
//! runs inside programs that did not ask for its failure modes.
//!
//! 1. **A stack walk reads only the stack it runs on** (`stack.rs`, and
//!    the DWARF unwinder's reads, `dwarf/mod.rs`): the thread's stack or
//!    the signal alternate stack, between the current stack pointer and
//!    that stack's top. Code on any other stack (a coroutine) gets an
//!    empty stack, counted in [`LeakReport::off_stack_captures`]. The
//!    DWARF unwinder reads no object's memory either, only copies of
//!    their call-frame information (see its own invariants).
//! 2. **Every lock is fork-safe** (`fork.rs`): all tracker locks are
//!    spin locks (`sync.rs`) reachable from the fork handlers, which take
//!    them all before `fork` and release them on both sides. Other
//!    libraries' fork handlers that run while they are held (those
//!    registered before the tracker's) are taken like signal handlers in
//!    the hot path (invariant 12; `thread.rs`, `FORKING`): their calls
//!    wait for no lock, and are recorded once the locks are free. No other
//!    library's lock is held across a tracker lock where it can be
//!    avoided (the unwinder runs without the `backtrace` crate's lock).
//! 3. **No unbounded loop under a lock** (`live.rs`, `stacks.rs`): a live
//!    table is never more than 3/4 full and the stack index never more
//!    than 1/2, so every probe ends. A block whose record cannot be
//!    stored (out of memory) is given back to the inner allocator and the
//!    allocation fails (returns null), counted in
//!    [`LeakReport::refused_allocations`]: a block the tracker does not
//!    know would later look like an invalid free and never be freed.
//! 4. **Reentrancy is per tracker** (`thread.rs`): a thread records the
//!    epoch of the tracker it is inside; an allocation is the tracker's
//!    own (recorded with the stack id `INTERNAL`, never
//!    reported) only when it reaches that very tracker. A tracker
//!    wrapping another, or an inner allocator that allocates through
//!    [`GlobalBacktracing`], is tracked as usual.
//! 5. **Memory follows the live set** (`live.rs`): each of the 256
//!    shards' tables is a 24-byte record per slot; it grows at 3/4 full
//!    to 11/8 of its size (so it is then 6/11 full: 24 × 11/6 = 44 bytes
//!    per live block) and shrinks to half full when an insertion finds
//!    it under 3/8 full (24 × 8/3 = 64 bytes per live block at most) or
//!    a free leaves it under 1/16 (24 × 16 = 384 at most while the live
//!    set only falls: a program freeing what it built does not rebuild
//!    every table at each quarter). Interned stacks are kept (each
//!    distinct stack once), recent frees in a fixed ring per shard.
//! 6. **Ids never wrap**: tracker epochs and thread ids are 64-bit and
//!    start at 1 (0 means "none"); scope ids are `1..u32::MAX`, and
//!    opening one more panics instead of wrapping (`scope.rs`).
//! 7. **No lock is held while calling the inner allocator** (or the
//!    global allocator: every table is a `SysVec` from the C library), so
//!    the inner allocator may itself be tracked, or take locks of its own.
//! 8. **Stored stacks never change** (`stacks.rs`): an interned stack's
//!    frames are written once, into a chunk that is never reallocated or
//!    freed while the tracker lives, so an id names the same frames for
//!    good (the threads' stack caches and the text log's cache of each
//!    stack's lines rely on it).
//! 9. **Stack ids are below 2^31**: 4 shard bits above 27 index bits,
//!    the index stopping one short of its top. The ids above are
//!    sentinels: `NO_STACK` (no stack captured) and
//!    `INTERNAL` (the tracker's own block).
//! 10. **A record's size is below 2^56** (`live.rs`): the top byte holds
//!     the alignment's log2; larger requests fail before reaching the
//!     inner allocator (no 64-bit platform can satisfy them).
//! 11. **A thread's stack cache trusts the 64-bit hash** (`stacks.rs`):
//!     a stack whose hash and length match a cached entry of the same
//!     tracker gets that entry's id without comparing frames; the stack
//!     table itself compares every frame. Two distinct stacks of the same
//!     length share a hash with a chance of about 2^-64 per pair (the
//!     hash is a non-linear chain finished by a full avalanche), so that
//!     a wrong attribution is not a practical concern, and the compare it
//!     saves was a tenth of the tracker's time.
//! 12. **A signal handler never waits for a lock its thread holds**
//!     (`pending.rs`): the hot path (the allocation and free paths
//!     proper, and a reallocation's look-up of the old block's record)
//!     allocates nothing through a global allocator (its tables
//!     and the log's buffers come from the tracker's own heap; what may
//!     allocate, the `backtrace` unwinder, the DWARF unwinder's scan of
//!     the loaded objects, a log callback, reading the thread's stack
//!     bounds, is marked as the tracker's own work, kept as short as it
//!     can be: a handler's call made there is taken for the tracker's
//!     own, neither reported nor logged), so a call that
//!     reaches a tracker while its thread is in that tracker's hot path
//!     comes from a signal handler. It takes no lock: its block comes
//!     from the inner allocator at once (a free keeps its block), and the
//!     event waits in the thread's queue until the interrupted path has
//!     released its locks and records it (the tracker's own reading of
//!     its tables under those locks, for a report or an accessor, is
//!     marked as the hot path is, `State::reading`, and records them
//!     once done, `Backtracing::read`);
//!     a reallocation's look-up tries
//!     the record's lock once, and does without the record when it is
//!     taken (`Block::Unreadable`). The one lock
//!     shared by all trackers on that path, the DWARF unwinder's, is
//!     never waited for by the thread that holds it: a handler walks
//!     frame pointers instead. A handler's stack capture allocates
//!     nothing: the `backtrace` unwinder gives way to frame pointers, the
//!     DWARF unwinder does not scan for objects loaded since, and a
//!     thread that never asked for its stack bounds gets no stack. Nor
//!     does a handler wait for the registry of states its thread holds
//!     (a first call that would create a state fails instead: `fork.rs`,
//!     `REGISTRY_HELD`).
//!
//! ```
//! use mallocator::backtracing::Backtracing;
//! use mallocator::Valloc;
//!
//! let tracker = Backtracing::new(Valloc::libc());
//! let v = tracker.valloc();
//! let kept = v.malloc(8, 24);
//! let freed = v.malloc(8, 100);
//! // SAFETY: `freed` came from `v`; the second free is a bug the tracker
//! // catches and does not pass on.
//! unsafe { v.free(freed); v.free(freed) };
//! let report = tracker.report();
//! assert_eq!((report.leaked_blocks, report.leaked_bytes), (1, 24));
//! assert_eq!(report.errors[0].kind, mallocator::backtracing::ErrorKind::DoubleFree);
//! # unsafe { v.free(kept) };
//! ```

mod config;
#[cfg(dwarf_unwinder)]
mod dwarf;
mod errors;
mod fork;
mod global;
mod live;
mod log;
mod os;
mod own_heap;
mod peak;
mod pending;
mod prefetch;
mod reachability;
mod recent_frees;
mod report;
mod scope;
mod settings;
mod stack;
mod stacks;
mod state;
mod suppressions;
mod symbolize;
mod sync;
mod sys_vec;
#[cfg(test)]
mod tests;
mod thread;
mod trim;

use core::ffi::c_void;
use core::marker::PhantomData;
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};

pub use config::Config;
pub use global::{ExitReport, GlobalBacktracing};
use live::LiveShard;
pub use log::{create_log_file, LogFormat, LogTarget};
pub use os::NoCancel;
#[cfg(unix)]
pub use os::{holds_descriptor, log_descriptors, HeldLogFile, LogDescriptors};
pub use reachability::LeakKind;
pub use report::{ErrorEntry, ErrorKind, Frame, LeakGroup, LeakReport};
pub use scope::Scope;
pub use stack::{learn_thread_stack, StackMode, MAX_DEPTH};
use stack::{ActiveCell, Captured, Method, StackStorage};
use state::State;
pub use suppressions::{SuppressionError, Suppressions};
pub use symbolize::public_symbol_name;
use sync::{RawLock, SpinGuard};
use thread::{Busy, ThreadState};
pub use trim::{user_frames, FrameInfo, PRELOAD_LIBRARY};

use crate::valloc::{Valloc, VallocVtable};
use live::Record;
use stacks::{INTERNAL, NO_STACK};

/// Memory the tracker uses for its bookkeeping, from
/// [`Backtracing::metadata`].
///
/// ```
/// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
/// assert!(t.metadata().record_bytes <= 24);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// Bytes of one live-block record (24 on 64-bit targets).
    pub record_bytes: usize,
    /// Bytes of the live-block tables, empty slots and growth slack
    /// included: at most 44 per live block while the live set grows (a
    /// table that has grown is 6/11 to 3/4 full), at most 64 after an
    /// insertion (which shrinks a table under 3/8 full), at most 384 while
    /// blocks are only freed (a free shrinks a table under 1/16 full);
    /// each of the 256 shards keeps at least 16 slots.
    pub live_table_bytes: usize,
    /// Live blocks (the tracker's own excluded).
    pub live_blocks: usize,
    /// Distinct stacks interned.
    pub stacks: usize,
    /// Bytes holding the interned stacks and their index, and the raw
    /// stacks of the recent frees (each shard's ring: 8 entries of
    /// `depth` words, allocated at the shard's first free with a stack).
    pub stack_bytes: usize,
}

/// What [`Backtracing::block_of`] knows of a pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    /// A live block: its requested size and scope stamp (see `scope.rs`).
    Live { size: usize, stamp: u32 },
    /// Not a live block of this tracker.
    NotLive,
    /// Not known now: a signal handler asked while its thread was in the
    /// tracker's hot path, and the record's shard lock was taken (by that
    /// path, or by another thread: the handler cannot tell which, and
    /// must not wait; invariant 12).
    Unreadable,
}

impl Block {
    /// What the record found in the table says.
    fn of(rec: Option<Record>) -> Block {
        match rec {
            Some(rec) => Block::Live {
                size: rec.size(),
                stamp: rec.stamp,
            },
            None => Block::NotLive,
        }
    }
}

/// The backtracing allocator: wraps a thread-safe inner handle, hands out
/// its own [`Valloc`] and keeps a record of every live block.
///
/// ```
/// use mallocator::backtracing::Backtracing;
/// use mallocator::Valloc;
///
/// let t = Backtracing::new(Valloc::libc());
/// let v = t.valloc();
/// let p = v.malloc(16, 64);
/// assert_eq!((t.live_blocks(), t.live_bytes()), (1, 64));
/// // SAFETY: `p` came from `v`.
/// unsafe { v.free(p) };
/// assert_eq!((t.live_blocks(), t.live_bytes(), t.peak_bytes()), (0, 0, 64));
/// ```
pub struct Backtracing<'a> {
    inner: Valloc<'a>,
    stack_mode: StackMode,
    active: ActiveCell,
    depth: AtomicUsize,
    free_stacks: AtomicBool,
    full_stacks: AtomicBool,
    log_on: AtomicBool,
    /// The log target and format the state starts with.
    log_target: LogTarget,
    log_format: LogFormat,
    /// Tables, locks and counters, allocated at the first use (null
    /// before; see `state.rs` for why they live apart from the tracker).
    state: AtomicPtr<State>,
}

impl core::fmt::Debug for Backtracing<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Backtracing")
            .field("inner", &self.inner)
            .field("live_bytes", &self.live_bytes())
            .field("peak_bytes", &self.peak_bytes())
            .finish_non_exhaustive()
    }
}

impl Drop for Backtracing<'_> {
    fn drop(&mut self) {
        let p = *self.state.get_mut();
        if !p.is_null() {
            // SAFETY: `p` is live until destroyed below.
            let st = unsafe { &*p };
            log::detach(st);
            let busy = thread::Busy::enter(st.epoch);
            st.log.finish();
            drop(busy);
            // A tracker dropped by a signal handler that interrupted its
            // thread in the registry keeps its state, leaked.
            if fork::unregister(p) {
                // SAFETY: `p` came from `State::create`, is unregistered
                // now, and `&mut self` proves no handle or thread uses it.
                unsafe { State::destroy(p) };
            }
        }
    }
}

/// The vtable of every tracker handle.
static VTABLE: VallocVtable = VallocVtable {
    malloc: vt_malloc,
    free: vt_free,
};

/// # Safety
/// `self_` points to a live `Backtracing` (the handle's contract).
unsafe extern "C" fn vt_malloc(self_: *mut c_void, align: usize, size: usize) -> *mut c_void {
    // SAFETY: handles with this vtable are only made by `valloc()`, whose
    // `self` is the tracker, alive for the handle's lifetime; the longer
    // lifetime named here does not escape this call.
    let tracker = unsafe { &*self_.cast::<Backtracing<'static>>() };
    tracker.alloc_raw(align, size).cast()
}

/// # Safety
/// As [`vt_malloc`]; `ptr` may be anything (bad frees are caught).
unsafe extern "C" fn vt_free(self_: *mut c_void, ptr: *mut c_void) {
    // SAFETY: as in `vt_malloc`.
    let tracker = unsafe { &*self_.cast::<Backtracing<'static>>() };
    tracker.free_raw(ptr.cast());
}

/// Has the compact log map the objects `frames` lie in (see
/// [`Log::map_objects_of`](log::Log::map_objects_of)), as the tracker's
/// own work: out of the hot path's way (once per new stack).
#[cold]
#[inline(never)]
fn map_objects_of(st: &State, frames: &[usize]) {
    let _own = Busy::own();
    st.log.map_objects_of(frames);
}

/// Calls `f` on every process-wide tracker lock, in the order the fork
/// handlers take them; stops at the first `false`.
fn global_locks(f: &mut dyn FnMut(&dyn RawLock) -> bool) -> bool {
    #[cfg(dwarf_unwinder)]
    if !f(&dwarf::UNWINDING) {
        return false;
    }
    f(&log::BUFFERS) && f(&os::SYMBOLIZING) && f(&scope::SCOPES) && global::each_lock(f)
}

impl<'a> Backtracing<'a> {
    /// A tracker over `inner` with [`Config::DEFAULT`].
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// assert_eq!(t.live_blocks(), 0);
    /// ```
    pub const fn new(inner: Valloc<'a>) -> Self {
        Self::with_config(inner, Config::DEFAULT)
    }

    /// A tracker over `inner` with `config`.
    ///
    /// ```
    /// use mallocator::backtracing::{Backtracing, Config};
    /// let t = Backtracing::with_config(mallocator::Valloc::libc(), Config { depth: 4, ..Config::DEFAULT });
    /// # let _ = t;
    /// ```
    pub const fn with_config(inner: Valloc<'a>, config: Config) -> Self {
        let depth = if config.depth > MAX_DEPTH {
            MAX_DEPTH
        } else {
            config.depth
        };
        Backtracing {
            inner,
            stack_mode: config.stack_mode,
            active: ActiveCell::new(),
            depth: AtomicUsize::new(depth),
            free_stacks: AtomicBool::new(config.free_stacks),
            full_stacks: AtomicBool::new(config.full_stacks),
            log_on: AtomicBool::new(!matches!(config.log, LogTarget::None)),
            log_target: config.log,
            log_format: config.log_format,
            state: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// A handle that allocates through the tracker. Its `free` accepts any
    /// pointer: bad ones are reported, not passed on.
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// let v = t.valloc();
    /// // SAFETY: the tracker accepts (and reports) any pointer.
    /// unsafe { v.free(0x1000 as *mut u8) };
    /// assert_eq!(t.report().errors_total, 1);
    /// ```
    pub fn valloc(&self) -> Valloc<'_> {
        // SAFETY: `VTABLE`'s functions accept any arguments with `self` a
        // live tracker, which `&self` guarantees for the handle's lifetime;
        // the tracker is `Sync` (sharded locks, atomics) and its inner
        // handle is a thread-safe `Valloc<'a>`.
        unsafe { Valloc::from_raw(self as *const Self as *mut c_void, &VTABLE) }
    }

    /// The tracker's state, created at the first call; `None` only when
    /// it cannot be made: out of memory, or asked by a signal handler
    /// or a fork handler on a thread that holds the registry of states
    /// (`fork.rs`, `REGISTRY_HELD`) and cannot wait for it. Every
    /// allocation then fails, every free is ignored (no block was handed
    /// out); a later call tries again.
    #[inline]
    fn state(&self) -> Option<&State> {
        match self.made_state() {
            Some(st) => Some(st),
            None => self.create_state(),
        }
    }

    /// The tracker's state if made already (see [`state`](Self::state)).
    #[inline]
    fn made_state(&self) -> Option<&State> {
        let p = self.state.load(Ordering::Acquire);
        // SAFETY: a non-null pointer here came from `State::create` and
        // stays valid until `drop`, which cannot run while `self` is
        // borrowed.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    #[cold]
    #[inline(never)]
    fn create_state(&self) -> Option<&State> {
        let fresh = State::create(self.log_target, self.log_format)?;
        // Registered before it is published: no thread can hold one of its
        // locks at a fork without the fork handlers knowing it.
        if !fork::register(fresh) {
            // SAFETY: just created, never published or registered.
            unsafe { State::destroy(fresh) };
            return None;
        }
        let p = match self.state.compare_exchange(
            core::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(first) => {
                if fork::unregister(fresh) {
                    // SAFETY: `fresh` lost the race, was never published,
                    // and is unregistered now.
                    unsafe { State::destroy(fresh) };
                }
                first
            }
        };
        // SAFETY: as in `state`.
        Some(unsafe { &*p })
    }

    /// The capture mode in use and why (see [`StackMode`]); resolves
    /// [`StackMode::Auto`] now if no stack was captured yet.
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// let (mode, why) = t.stack_mode();
    /// assert_ne!(mode, mallocator::backtracing::StackMode::Auto);
    /// println!("{mode:?}: {why}");
    /// ```
    pub fn stack_mode(&self) -> (StackMode, &'static str) {
        let _busy = self.state().map(|st| Busy::enter(st.epoch));
        self.active().describe()
    }

    #[inline]
    fn active(&self) -> stack::Active {
        self.active.get_or_resolve(self.stack_mode)
    }

    /// Bytes in live blocks (as requested; the tracker's own excluded).
    /// The shards are read one after another: exact when no other thread
    /// allocates or frees through the tracker meanwhile.
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// let p = t.valloc().malloc(0, 10);
    /// assert_eq!(t.live_bytes(), 10);
    /// # unsafe { t.valloc().free(p) };
    /// ```
    pub fn live_bytes(&self) -> usize {
        self.read(State::live_bytes).unwrap_or(0)
    }

    /// The largest [`live_bytes`](Self::live_bytes) seen. Exact while one
    /// thread allocates (through up to six trackers in turn, this one
    /// among them); with several, an estimate: each thread sees its
    /// own changes since the last resynchronisation of the count, not the
    /// other threads' (less than 64 KiB each, either way), nor a change
    /// under 64 KiB made while a resynchronisation ran. That keeps the hot
    /// path free of shared atomic counters.
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// let v = t.valloc();
    /// // SAFETY: freeing what `v` returned.
    /// unsafe { v.free(v.malloc(8, 1000)) };
    /// assert_eq!(t.peak_bytes(), 1000);
    /// ```
    pub fn peak_bytes(&self) -> usize {
        self.read(|st| st.peak_bytes.load(Ordering::Relaxed).max(st.live_bytes()))
            .unwrap_or(0)
    }

    /// Live blocks (the tracker's own excluded).
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// assert_eq!(t.live_blocks(), 0);
    /// ```
    pub fn live_blocks(&self) -> usize {
        self.read(|st| st.reading(|| st.live.iter().map(|s| s.lock().tracked()).sum()))
            .unwrap_or(0)
    }

    /// The tracker's bookkeeping memory.
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// let p = t.valloc().malloc(8, 8);
    /// let m = t.metadata();
    /// assert_eq!((m.live_blocks, m.stacks), (1, 1));
    /// assert!(m.live_table_bytes >= m.record_bytes);
    /// # unsafe { t.valloc().free(p) };
    /// ```
    pub fn metadata(&self) -> Metadata {
        let record_bytes = core::mem::size_of::<Record>();
        let read = self.read(|st| {
            st.reading(|| {
                (
                    st.live.iter().map(|s| s.lock().table_bytes()).sum(),
                    st.stacks.footprint(),
                    st.live
                        .iter()
                        .map(|s| s.lock().frees.bytes())
                        .sum::<usize>(),
                )
            })
        });
        let Some((live_table_bytes, (stacks, interned_bytes), ring_bytes)) = read else {
            return Metadata {
                record_bytes,
                live_table_bytes: 0,
                live_blocks: 0,
                stacks: 0,
                stack_bytes: 0,
            };
        };
        Metadata {
            record_bytes,
            live_table_bytes,
            live_blocks: self.live_blocks(),
            stacks,
            stack_bytes: interned_bytes + ring_bytes,
        }
    }

    /// Runs the reader `f` on the state (`None` without one), then
    /// records the events this thread's signal handlers left in its queue
    /// while `f` read the tables under their locks (`State::reading`,
    /// invariant 12), so that none waits for the thread's next call.
    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> Option<R> {
        let st = self.state()?;
        let read = f(st);
        if let Some(t) = thread::current() {
            self.after_hot(st, t);
        }
        Some(read)
    }

    /// Captures the current stack into `storage`; counts a capture made
    /// off the known stacks (invariant 1 in the module docs).
    ///
    /// `in_handler`: for a signal handler's deferred event (invariant 12),
    /// which must allocate nothing, since the thread it interrupted may
    /// hold the locks an allocation through a tracker takes. On Unix the
    /// `backtrace` unwinder (which allocates) then gives way to the
    /// frame-pointer walk (elsewhere no signal handler interrupts a
    /// thread), and [`stack::capture`] allocates nothing.
    #[inline(always)]
    fn capture<'s, const HASH: bool>(
        &self,
        st: &State,
        storage: &'s mut StackStorage,
        in_handler: bool,
    ) -> Captured<'s> {
        let method = match self.active.method(self.stack_mode) {
            Method::Unwind if in_handler && cfg!(unix) => Method::FramePointers,
            method => method,
        };
        let depth = self.depth.load(Ordering::Relaxed);
        // The `backtrace` unwinder may allocate: the tracker's own work
        // (invariant 12). The DWARF unwinder marks the one step of its
        // own that may (`dwarf::scan`), so that a signal handler that
        // interrupts its walk is deferred as in the rest of the hot path.
        let _own = (method == Method::Unwind).then(Busy::own);
        let captured = stack::capture::<HASH>(method, depth, storage, !in_handler);
        if captured.off_stack {
            st.off_stack.fetch_add(1, Ordering::Relaxed);
        }
        captured
    }

    /// The id of the stack `frames` (whose hash is `hash`), interned;
    /// when it is new and a compact log is on, the log maps the objects
    /// its frames lie in now, while they are loaded (one may be unloaded
    /// before the stack is written).
    #[inline]
    fn intern(&self, st: &State, t: &ThreadState, frames: &[usize], hash: u64) -> u32 {
        let (id, new) = st.stacks.intern_cached(t, st.epoch, frames, hash);
        if new && self.log_on.load(Ordering::Relaxed) {
            map_objects_of(st, frames);
        }
        id
    }

    /// The allocation path behind the handle.
    /// Never inlined: the frame-pointer walk leaves out exactly this
    /// function's frame.
    #[inline(never)]
    pub(crate) fn alloc_raw(&self, align: usize, size: usize) -> *mut u8 {
        let Some(st) = self.state() else {
            return core::ptr::null_mut();
        };
        let align_log2 = if align == 0 {
            0xff
        } else {
            align.trailing_zeros() as u8
        };
        // A size the record cannot hold fails here (no 64-bit platform
        // can allocate 2^56 bytes).
        let recordable = (size as u64) < live::SIZE_LIMIT;
        // The thread's state is read once an event, here (see
        // `thread::Busy`); without it (gone, where thread-locals are
        // not native) the block counts as the tracker's own.
        match thread::current() {
            Some(t) => self.alloc_on(st, t, align, align_log2, size, recordable),
            None => self.alloc_own(st, None, align, align_log2, size, recordable),
        }
    }

    /// [`alloc_raw`](Self::alloc_raw) on thread `t`: inlined there, so
    /// that it adds no frame to the walk.
    #[inline(always)]
    fn alloc_on(
        &self,
        st: &State,
        t: &ThreadState,
        align: usize,
        align_log2: u8,
        size: usize,
        recordable: bool,
    ) -> *mut u8 {
        let Some(tracking) = t.track(st.epoch) else {
            if recordable && t.interrupted_hot(st.epoch) {
                return self.defer_alloc(st, t, align, align_log2, size);
            }
            return self.alloc_own(st, Some(t), align, align_log2, size, recordable);
        };
        if t.has_pending() {
            self.record_pending(st, t);
        }
        let stamp = t.stamp.get();
        let mut storage = StackStorage::uninit();
        let captured = self.capture::<true>(st, &mut storage, false);
        let stack = self.intern(st, t, captured.frames, captured.hash);
        let mut ptr = if recordable {
            self.inner.malloc(align, size)
        } else {
            core::ptr::null_mut()
        };
        ptr = self.keep(st, Some(t), ptr, size, align_log2, stack, stamp);
        if self.log_on.load(Ordering::Relaxed) {
            log::alloc(
                st,
                Some(t),
                ptr,
                align,
                align_log2,
                size,
                stack,
                captured.frames,
            );
        }
        drop(tracking);
        self.after_hot(st, t);
        ptr
    }

    /// The tracker's own allocation: recorded (so that its free is
    /// recognised), never reported, no stack. Null for a size no record
    /// can hold (not `recordable`).
    #[cold]
    #[inline(never)]
    fn alloc_own(
        &self,
        st: &State,
        t: Option<&ThreadState>,
        align: usize,
        align_log2: u8,
        size: usize,
        recordable: bool,
    ) -> *mut u8 {
        if !recordable {
            return core::ptr::null_mut();
        }
        let ptr = self.inner.malloc(align, size);
        self.keep(st, t, ptr, size, align_log2, INTERNAL, 0)
    }

    /// A signal handler's allocation while its thread is in this
    /// tracker's hot path (invariant 12): the block at once, its record
    /// left for later. Null when the thread's queue is full (counted as
    /// refused).
    #[cold]
    #[inline(never)]
    fn defer_alloc(
        &self,
        st: &State,
        t: &ThreadState,
        align: usize,
        align_log2: u8,
        size: usize,
    ) -> *mut u8 {
        let ptr = self.inner.malloc(align, size);
        if ptr.is_null() {
            return ptr;
        }
        let mut event = self.deferred(st, true);
        event.ptr = ptr as usize;
        event.size = size;
        event.align = align;
        event.align_log2 = align_log2;
        event.stamp = t.stamp.get();
        if t.pending.push(event) {
            return ptr;
        }
        st.refused.fetch_add(1, Ordering::Relaxed);
        // SAFETY: just allocated, never handed out.
        unsafe { self.inner.free(ptr) };
        core::ptr::null_mut()
    }

    /// A signal handler's free while its thread is in this tracker's hot
    /// path (invariant 12): left for later with its stack; the block stays
    /// allocated until then. When the thread's queue is full, the block is
    /// never freed (it cannot be recorded as freed, and giving it back
    /// unrecorded would let its address be handed out while still live in
    /// the table).
    #[cold]
    #[inline(never)]
    fn defer_free(&self, st: &State, t: &ThreadState, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        let wanted =
            self.log_on.load(Ordering::Relaxed) || self.free_stacks.load(Ordering::Relaxed);
        let mut event = self.deferred(st, wanted);
        event.ptr = ptr as usize;
        event.free = true;
        // A full queue: see above.
        let _ = t.pending.push(event);
    }

    /// A deferred event with the current stack when `stack`.
    fn deferred(&self, st: &State, stack: bool) -> pending::Deferred {
        let mut event = pending::Deferred {
            epoch: st.epoch,
            ..pending::Deferred::EMPTY
        };
        if stack {
            let mut storage = StackStorage::uninit();
            let captured = self.capture::<true>(st, &mut storage, true);
            let n = captured.frames.len().min(pending::DEFERRED_DEPTH);
            event.frames[..n].copy_from_slice(&captured.frames[..n]);
            event.len = n;
            event.hash = if n == captured.frames.len() {
                captured.hash
            } else {
                stacks::hash_stack(&event.frames[..n])
            };
        }
        event
    }

    /// The end of a hot path on thread `t`, once its guard is dropped:
    /// records what signal handlers left while it ran (invariant 12).
    /// Checked after the drop, not before: a handler that runs before
    /// the drop leaves its event, one that runs after it is tracked at
    /// once, so none is left behind until this thread's next call.
    #[inline(always)]
    fn after_hot(&self, st: &State, t: &ThreadState) {
        // The guard's release is a store the compiler must not move past
        // the queue's length, which a handler on this thread may change.
        compiler_fence(Ordering::SeqCst);
        if t.has_pending() {
            self.drain_pending(st, t);
        }
    }

    /// After `fork`, on either side, once the fork handlers have released
    /// the locks: records the events this thread's calls left while it
    /// held them all (other libraries' fork handlers: `thread.rs`,
    /// `FORKING`). Makes no state where there is none.
    pub(super) fn record_left_at_fork(&self) {
        let p = self.state.load(Ordering::Acquire);
        if p.is_null() {
            return;
        }
        // SAFETY: as in `state`.
        let st = unsafe { &*p };
        if let Some(t) = thread::current() {
            self.after_hot(st, t);
        }
    }

    /// Records this tracker's events that this thread's signal handlers
    /// left (invariant 12), in order, as the interrupted path's own;
    /// called with no lock held. Events of other trackers (a handler
    /// that interrupted a tracker nested around this one) stay for them.
    /// Runs inside the hot path's guard again, so that a handler that
    /// interrupts it leaves its event too; that event is taken after the
    /// guard is dropped, as in [`after_hot`](Self::after_hot).
    #[cold]
    #[inline(never)]
    fn drain_pending(&self, st: &State, t: &ThreadState) {
        while t.pending.has(st.epoch) {
            // Refused only inside this tracker's own work, where no hot
            // path runs, so no event of it can wait.
            let Some(tracking) = t.track(st.epoch) else {
                return;
            };
            self.record_pending(st, t);
            drop(tracking);
            compiler_fence(Ordering::SeqCst);
        }
    }

    /// [`drain_pending`](Self::drain_pending)'s recording, inside the
    /// hot path's guard.
    #[cold]
    #[inline(never)]
    fn record_pending(&self, st: &State, t: &ThreadState) {
        // Each event leaves the queue only once recorded: a handler in
        // between finds it in one place or both, never in neither (see
        // `block_of`).
        while let Some(event) = t.pending.oldest(st.epoch) {
            self.record_deferred(st, t, &event);
            t.pending.pop(st.epoch);
        }
    }

    /// Records one deferred `event` (see [`record_pending`](Self::record_pending)).
    fn record_deferred(&self, st: &State, t: &ThreadState, event: &pending::Deferred) {
        let frames = event.frames();
        if event.free {
            let logged = self.free_log_id(st, t, frames, event.hash);
            self.release(st, Some(t), event.ptr as *mut u8, frames, logged, false);
            return;
        }
        let stack = self.intern(st, t, frames, event.hash);
        let ptr = event.ptr as *mut u8;
        let rec = Record::new(event.ptr, event.size, event.align_log2, stack, event.stamp);
        // The program has the block already: if its record cannot be
        // stored, it stays unrecorded (its free will look invalid).
        if !self.insert(st, Some(t), rec) {
            st.refused.fetch_add(1, Ordering::Relaxed);
        }
        if self.log_on.load(Ordering::Relaxed) {
            log::alloc(
                st,
                Some(t),
                ptr,
                event.align,
                event.align_log2,
                event.size,
                stack,
                frames,
            );
        }
    }

    /// Records the block `ptr` (if not null; `size` is then below
    /// [`live::SIZE_LIMIT`]); returns `ptr`, or null when the record could
    /// not be stored: the block then goes back to the inner allocator
    /// (invariant 3 in the module docs). `t` is the calling thread's
    /// state (`None` once it is gone).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn keep(
        &self,
        st: &State,
        t: Option<&ThreadState>,
        ptr: *mut u8,
        size: usize,
        align_log2: u8,
        stack: u32,
        stamp: u32,
    ) -> *mut u8 {
        if ptr.is_null()
            || self.insert(
                st,
                t,
                Record::new(ptr as usize, size, align_log2, stack, stamp),
            )
        {
            return ptr;
        }
        st.refused.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `inner.malloc` just now and was never
        // handed out.
        unsafe { self.inner.free(ptr) };
        core::ptr::null_mut()
    }

    /// Stores `rec` (for thread `t`, as [`keep`](Self::keep)); false when
    /// its table could not take it.
    fn insert(&self, st: &State, t: Option<&ThreadState>, rec: Record) -> bool {
        // A replaced record means the inner allocator handed out a live
        // address again: the old block is gone as far as anyone can tell.
        let gen = st.sync_gen.load(Ordering::Acquire);
        let i = live::shard_of(rec.addr);
        let (old, stored) = st.live[i].lock().insert(rec, &st.live_hints[i]);
        let tracked_size = |r: Record| {
            if r.stack == INTERNAL {
                0
            } else {
                r.size() as isize
            }
        };
        let change = if stored { tracked_size(rec) } else { 0 } - old.map_or(0, tracked_size);
        if change != 0 {
            st.account(t, change, gen);
        }
        stored
    }

    /// The free path behind the handle.
    /// Never inlined, as [`alloc_raw`](Self::alloc_raw).
    ///
    /// The free's stack is not interned: its raw frames go into the
    /// shard's ring of recent frees, and are interned only if a double
    /// free of the block is reported.
    #[inline(never)]
    pub(crate) fn free_raw(&self, ptr: *mut u8) {
        let Some(st) = self.state() else {
            return;
        };
        // As early as can be: a free has little work ahead of its table
        // removal to overlap the load with.
        let hint = &st.live_hints[live::shard_of(ptr as usize)];
        if hint.is_large() {
            hint.prefetch(ptr as usize);
        }
        // As in `alloc_raw`: without the thread's state, the tracker's
        // own free.
        match thread::current() {
            Some(t) => self.free_on(st, t, ptr),
            None => self.release(st, None, ptr, &[], None, false),
        }
    }

    /// [`free_raw`](Self::free_raw) on thread `t`: inlined there, as
    /// [`alloc_on`](Self::alloc_on).
    #[inline(always)]
    fn free_on(&self, st: &State, t: &ThreadState, ptr: *mut u8) {
        let Some(tracking) = t.track(st.epoch) else {
            if t.interrupted_hot(st.epoch) {
                return self.defer_free(st, t, ptr);
            }
            // The tracker's own free: no stack, not logged.
            return self.release(st, Some(t), ptr, &[], None, false);
        };
        if t.has_pending() {
            self.record_pending(st, t);
        }
        let mut storage = StackStorage::uninit();
        // Only the frames, unless the log needs the stack's id: a bad
        // free (rare) hashes its frames when it interns them.
        let mut frames: &[usize] = &[];
        // The stack id to log this free with, when it is logged.
        let mut logged = None;
        let log_on = self.log_on.load(Ordering::Relaxed);
        // The compact log wants a free's stack only with free stacks; the
        // text format writes every event's.
        let wanted = self.free_stacks.load(Ordering::Relaxed)
            || (log_on && st.log.format() != LogFormat::Compact);
        if wanted {
            let stack = if log_on {
                self.capture::<true>(st, &mut storage, false)
            } else {
                self.capture::<false>(st, &mut storage, false)
            };
            logged = self.free_log_id(st, t, stack.frames, stack.hash);
            frames = stack.frames;
        } else if log_on {
            logged = Some(NO_STACK);
        }
        self.release(st, Some(t), ptr, frames, logged, true);
        drop(tracking);
        self.after_hot(st, t);
    }

    /// The stack id a free with `frames` is logged with, or `None` when
    /// nothing is logged. Interned for the compact log's stack id (when
    /// free stacks are wanted) and for the text format's cache of whole
    /// stacks' lines.
    #[inline]
    fn free_log_id(&self, st: &State, t: &ThreadState, frames: &[usize], hash: u64) -> Option<u32> {
        if !self.log_on.load(Ordering::Relaxed) {
            return None;
        }
        let compact = st.log.format() == LogFormat::Compact;
        Some(if !compact || self.free_stacks.load(Ordering::Relaxed) {
            self.intern(st, t, frames, hash)
        } else {
            NO_STACK
        })
    }

    /// The free of `ptr` proper, made at `frames`: its record removed and
    /// the block given back, or a bad free recorded; logged with stack id
    /// `logged` when that is given. A bad free made without its stack
    /// (free stacks off) gets it now when `tracked` (the program's own).
    /// `t` is the calling thread's state (`None` once it is gone).
    fn release(
        &self,
        st: &State,
        t: Option<&ThreadState>,
        ptr: *mut u8,
        frames: &[usize],
        logged: Option<u32>,
        tracked: bool,
    ) {
        // Logged once the block's record says whether it is the
        // tracker's own (never logged: its allocation was not), and
        // before the block goes back to the inner allocator (which may
        // hand its address out again at once, to an allocation that must
        // come after this free in the log).
        // The clock is read first: its 25 ns or so then overlap the wait
        // for the record's slot (see `TableHint`).
        let ts = if logged.is_some() { log::now(st) } else { 0 };
        let log_free = || {
            if let Some(id) = logged {
                log::free(st, t, ts, ptr, id, frames);
            }
        };
        if ptr.is_null() {
            log_free();
            return;
        }
        let addr = ptr as usize;
        let depth = self.depth.load(Ordering::Relaxed);
        let gen = st.sync_gen.load(Ordering::Acquire);
        let i = live::shard_of(addr);
        let mut shard = st.live[i].lock();
        match shard.remove(addr, &st.live_hints[i]) {
            Some(rec) => {
                shard.frees.remember(addr, &rec, frames, depth);
                drop(shard);
                if rec.stack != INTERNAL {
                    st.account(t, -(rec.size() as isize), gen);
                    log_free();
                }
                // SAFETY: `rec` proves `ptr` came from `inner.malloc` and
                // was live until the removal above, which makes this the
                // only free of it.
                unsafe { self.inner.free(ptr) };
            }
            None => self.bad_free(st, t, shard, addr, frames, logged, tracked, ts),
        }
    }

    /// The rest of [`release`](Self::release) for a pointer that is not
    /// live in `shard` (locked, where it would be): a double free (its
    /// first free still in the shard's ring) or an invalid free, logged
    /// and recorded with its stack, taken now when the free path had none
    /// and `tracked`; `t` as for `release`.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn bad_free(
        &self,
        st: &State,
        t: Option<&ThreadState>,
        shard: SpinGuard<'_, LiveShard>,
        addr: usize,
        frames: &[usize],
        logged: Option<u32>,
        tracked: bool,
        ts: u64,
    ) {
        // Copied out so that the interning runs without the lock.
        let mut first_frames = [0usize; MAX_DEPTH];
        let first = shard.frees.find(addr).map(|(f, frames)| {
            first_frames[..frames.len()].copy_from_slice(frames);
            (f, frames.len())
        });
        drop(shard);
        let mut storage = StackStorage::uninit();
        let (frames, logged) = match t {
            Some(t) if frames.is_empty() && tracked => {
                let stack = self.capture::<true>(st, &mut storage, false);
                let id = logged.map(|_| self.intern(st, t, stack.frames, stack.hash));
                (stack.frames, id)
            }
            _ => (frames, logged),
        };
        if let Some(id) = logged {
            log::free(st, t, ts, addr as *mut u8, id, frames);
        }
        errors::record_bad_free(st, addr, frames, first, &first_frames);
    }

    /// Writes the compact log's events that threads hold in their
    /// buffers now (they are written anyway when a buffer fills, when its
    /// thread ends, when the tracker is dropped, and at exit).
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// t.flush_log(); // no log: nothing to do
    /// ```
    pub fn flush_log(&self) {
        if let Some(st) = self.state() {
            let _busy = Busy::enter(st.epoch);
            log::flush(st);
        }
    }

    /// Tells the tracker that the program unloaded shared objects: call
    /// it after `dlclose` (the preload library of `mallocator trace` does,
    /// for every `dlclose` the program makes). Another object loaded at
    /// the same addresses is then unwound by its own call-frame
    /// information ([`StackMode::Dwarf`]), and gets its own module record
    /// in the compact log, and its own frame lines in the text format,
    /// instead of being named after the one unloaded.
    ///
    /// A stack already stored keeps its record: one the new object makes
    /// with exactly the same return addresses as a stack of the unloaded
    /// object is named after that one.
    ///
    /// Does nothing on a thread inside a tracker, holding a lock all
    /// trackers share, or forking (a library's fork handler, a log
    /// callback): it could wait forever for a lock it holds itself.
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// t.objects_unloaded(); // no log, no unwind yet: nothing to do
    /// ```
    pub fn objects_unloaded(&self) {
        if Busy::inside_any() {
            return;
        }
        // The unwinder is the process's, whatever this tracker has done.
        #[cfg(dwarf_unwinder)]
        dwarf::objects_unloaded();
        // A tracker that has logged nothing has nothing to forget.
        let Some(st) = self.made_state() else {
            return;
        };
        if self.log_on.load(Ordering::Relaxed) {
            let _busy = Busy::enter(st.epoch);
            st.log.objects_unloaded(&st.stacks);
        }
    }

    /// What the process does to its logs when it exits, now: writes
    /// every thread's buffered events and ends every tracker's compact
    /// log, which takes no event after this. For a process about to end
    /// another way (`_exit`, `abort`, a fatal signal): the preload library
    /// of `mallocator trace` calls it there.
    ///
    /// Does nothing, and returns false, on a thread that is inside a
    /// tracker, or holds a lock all trackers share (a signal handler that
    /// interrupted the tracker's own code): it could wait forever for a
    /// lock it holds itself.
    ///
    /// ```no_run
    /// assert!(mallocator::backtracing::Backtracing::end_logs_now());
    /// ```
    pub fn end_logs_now() -> bool {
        if Busy::inside_any() {
            return false;
        }
        // A second fatal signal meanwhile finds this thread busy.
        let _marked = Busy::shared_lock();
        log::finish_all();
        true
    }

    /// [`end_logs_now`](Self::end_logs_now) for a process about to replace
    /// itself with `exec`, which throws away the threads' buffered events
    /// and runs no exit hook: writes those events, and ends each compact
    /// log whose end can be taken back (one in a file the tracker
    /// created: the end record is cut off again). A log elsewhere (a
    /// pipe, a descriptor it was given) is left going on, without its
    /// end. Dropping the answer, after an `exec` that failed, takes the
    /// ends back; until then the process's other threads that have
    /// events to write wait (the `exec` ends them when it succeeds). The
    /// preload library of `mallocator trace` does this around each `exec`.
    ///
    /// `None`, and nothing done, where `end_logs_now` does nothing.
    ///
    /// ```no_run
    /// use mallocator::backtracing::Backtracing;
    /// let ended = Backtracing::end_logs_for_exec();
    /// // An exec that fails and returns: the logs go on.
    /// drop(ended);
    /// ```
    pub fn end_logs_for_exec() -> Option<LogsEndedForExec> {
        if Busy::inside_any() {
            return None;
        }
        let marked = Busy::shared_lock()?;
        log::finish_all_for_exec();
        Some(LogsEndedForExec { _marked: marked })
    }

    /// What this tracker knows of `ptr` now (see [`Block`]).
    ///
    /// The record is read inside the hot path's guard: the shard lock is
    /// held meanwhile, so a signal handler that arrives then must leave
    /// its calls for later, as in the allocation and free paths
    /// (invariant 12). A call from a handler that interrupted this
    /// tracker's hot path (whose code may hold that very lock) tries the
    /// lock once and does not wait.
    ///
    /// A block a handler allocated or freed while its thread was in the
    /// hot path is in the thread's queue, not yet in the table: its
    /// newest event there says whether it is live, with the size and
    /// stamp its record will have.
    pub(crate) fn block_of(&self, ptr: *mut u8) -> Block {
        let Some(st) = self.state() else {
            return Block::NotLive;
        };
        let addr = ptr as usize;
        let shard = &st.live[live::shard_of(addr)];
        let Some(t) = thread::current() else {
            // As in `free_raw`: without the thread's state, the tracker's
            // own work.
            return Block::of(shard.lock().get(addr));
        };
        if t.has_pending() {
            if let Some(event) = t.pending.newest(st.epoch, addr) {
                return if event.free {
                    Block::NotLive
                } else {
                    Block::Live {
                        size: event.size,
                        stamp: event.stamp,
                    }
                };
            }
        }
        Block::of(match t.track(st.epoch) {
            Some(tracking) => {
                if t.has_pending() {
                    self.record_pending(st, t);
                }
                let rec = shard.lock().get(addr);
                drop(tracking);
                self.after_hot(st, t);
                rec
            }
            None if t.interrupted_hot(st.epoch) => match shard.try_lock() {
                Some(shard) => shard.get(addr),
                None => return Block::Unreadable,
            },
            // The tracker's own work, which reallocates through it
            // holding no shard lock (its tables are not the global
            // allocator's; where it reads them under their locks, it is
            // marked as the hot path is: the arm above).
            None => shard.lock().get(addr),
        })
    }

    /// Bad frees so far (double and invalid).
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// assert_eq!(t.error_count(), 0);
    /// ```
    pub fn error_count(&self) -> usize {
        self.read(|st| st.reading(|| st.errors.lock().total))
            .unwrap_or(0)
    }

    /// Never-freed blocks grouped by allocation stack (largest first), and
    /// every bad free with its stacks. Symbolizes each distinct stack once.
    ///
    /// # Panics
    /// When the memory the report needs for the live blocks cannot be had
    /// (see [`try_report`](Self::try_report), which answers `None` then).
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// assert!(t.report().is_clean());
    /// ```
    #[track_caller]
    pub fn report(&self) -> LeakReport {
        self.try_report().unwrap_or_else(|| report::out_of_memory())
    }

    /// [`report`](Self::report), or `None` when the memory that grows
    /// with the live blocks (their records, copied out of the tables; the
    /// blocks reported) cannot be had: for a program that must not stop
    /// when its memory runs out (the process-wide tracker's exit report
    /// and the C library's report answer so). What grows with the
    /// distinct stacks (the groups, their symbols) is allocated as any
    /// Rust code does.
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// let p = t.valloc().malloc(8, 40);
    /// assert_eq!(t.try_report().unwrap().leaked_bytes, 40);
    /// # unsafe { t.valloc().free(p) };
    /// ```
    pub fn try_report(&self) -> Option<LeakReport> {
        self.build_report(&|_| true, true, report::Reach::Unclassified)
    }

    /// A leak check for the current thread: only blocks this thread
    /// allocates through this tracker after this call count, so tests
    /// running in parallel do not disturb each other.
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// let v = t.valloc();
    /// let before = v.malloc(8, 8); // allocated before the scope: ignored
    /// let scope = t.scope();
    /// // SAFETY: freeing what `v` returned.
    /// unsafe { v.free(v.malloc(8, 32)) };
    /// scope.assert_no_leaks();
    /// # unsafe { v.free(before) };
    /// ```
    ///
    /// Each scope costs 8 bytes for the rest of the process (a registry of
    /// scope ids); panics if that memory cannot be had, or after
    /// `u32::MAX - 1` scopes.
    #[track_caller]
    pub fn scope(&self) -> Scope<'_, 'a> {
        Scope {
            tracker: self,
            start: scope::open(),
            _not_send: PhantomData,
        }
    }
}

/// The logs ended for an `exec`, from
/// [`Backtracing::end_logs_for_exec`]; dropped after an `exec` that
/// failed, it takes their ends back and they go on.
///
/// While it lives, its thread counts as holding a lock shared by all
/// trackers: what a signal handler allocates on it is the tracker's own
/// work, not logged, and a handler's `exit` or fatal signal does not end
/// the logs. Either would otherwise write chunks, which wait for this
/// `exec`: the thread would wait for itself.
#[must_use = "dropping it takes the ends back"]
pub struct LogsEndedForExec {
    _marked: Busy<'static>,
}

impl core::fmt::Debug for LogsEndedForExec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("LogsEndedForExec")
    }
}

impl Drop for LogsEndedForExec {
    fn drop(&mut self) {
        log::resume_all_after_exec();
    }
}
