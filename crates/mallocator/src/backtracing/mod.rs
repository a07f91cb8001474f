//! The backtracing allocator: a leak and bad-free detector that wraps any
//! thread-safe [`Valloc`] (the Rust twin of Firedancer's
//! `fd_backtracing_alloc_virtual`, without its dangling inner pointer and
//! process-wide spin lock).
//!
//! * For every live block it keeps a 24-byte record (address; size and
//!   alignment packed in one word; interned stack id; a thread stamp: the
//!   allocating thread's id, or the id of the last scope that thread
//!   opened, which the scope registry maps back to the thread) in one of
//!   256 shards chosen by address, so threads rarely meet on a lock. Each
//!   shard's table, once it has grown past its first 16 slots, is kept
//!   between 6/11 and 3/4 full: at most 44 bytes of table per live block
//!   ([`Backtracing::metadata`]).
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
//! * Log mode ([`LogTarget`]) streams every event in the C tool's format.
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

mod global;
mod log;
mod os;
mod report;
mod stack;
mod table;
#[cfg(test)]
mod tests;

use core::ffi::c_void;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

pub use global::{ExitReport, GlobalBacktracing};
pub use log::LogTarget;
pub use report::{ErrorEntry, ErrorKind, Frame, LeakGroup, LeakReport};
use stack::{Captured, StackStorage};
pub use stack::{StackMode, MAX_DEPTH};

use crate::valloc::{Valloc, VallocVtable};
use table::{
    lock, sys_vec, LiveShard, Record, SpinLock, StackTable, SysVec, INTERNAL, LIVE_SHARDS, NO_STACK,
};

/// Tracker settings; `const`, so a `static` tracker can use them.
///
/// ```
/// use mallocator::backtracing::{Config, StackMode};
/// let c = Config { depth: 8, stack_mode: StackMode::FramePointers, ..Config::DEFAULT };
/// assert!(c.free_stacks);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Frames kept per stack (default 32, at most [`MAX_DEPTH`]).
    pub depth: usize,
    /// How stacks are captured (default [`StackMode::Auto`]).
    pub stack_mode: StackMode,
    /// Log mode: where every event goes (default [`LogTarget::None`]).
    pub log: LogTarget,
    /// Capture a stack at every free, so that a double free can show
    /// where the block was first freed (default true). The frames are
    /// copied raw into the shard's ring of recent frees and interned only
    /// when a double free is reported; turning this off saves the stack
    /// walk on every free.
    pub free_stacks: bool,
}

impl Config {
    /// The defaults: depth 32, [`StackMode::Auto`], no log, free stacks on.
    ///
    /// ```
    /// assert_eq!(mallocator::backtracing::Config::DEFAULT.depth, 32);
    /// ```
    pub const DEFAULT: Config = Config {
        depth: 32,
        stack_mode: StackMode::Auto,
        log: LogTarget::None,
        free_stacks: true,
    };
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// Per-thread tracker state (no destructor, so it stays usable while the
/// thread's other thread-locals are torn down).
struct ThreadState {
    /// Tracker thread id, 0 until the first use.
    id: Cell<u32>,
    /// What this thread's allocations are stamped with: its id, or the
    /// id of the last scope it opened (0 until the first use).
    stamp: Cell<u32>,
    /// Inside the tracker: allocations now are the tracker's own.
    busy: Cell<bool>,
    /// Recently interned stacks of this thread, by hash.
    cache: [Cell<CacheEntry>; STACK_CACHE],
    /// The tracker (epoch) `delta` belongs to.
    delta_epoch: Cell<u32>,
    /// The synchronisation (`Backtracing::sync_gen`) `delta` counts from.
    delta_gen: Cell<u32>,
    /// Net bytes this thread allocated through that tracker since it last
    /// synchronised the tracker's byte count (see `Backtracing::account`).
    delta: Cell<isize>,
}

/// Entries in each thread's stack cache (a power of two).
const STACK_CACHE: usize = 128;

/// A stack this thread interned: `frames` is the tracker's stored copy
/// (immutable, in place while the tracker lives), `epoch` names the
/// tracker.
#[derive(Clone, Copy)]
struct CacheEntry {
    epoch: u32,
    id: u32,
    hash: u64,
    frames: *const usize,
    len: usize,
}

impl CacheEntry {
    const EMPTY: CacheEntry = CacheEntry {
        epoch: 0,
        id: 0,
        hash: 0,
        frames: core::ptr::null(),
        len: 0,
    };
}

std::thread_local! {
    static THREAD: ThreadState = const {
        ThreadState {
            id: Cell::new(0),
            stamp: Cell::new(0),
            busy: Cell::new(false),
            cache: [const { Cell::new(CacheEntry::EMPTY) }; STACK_CACHE],
            delta_epoch: Cell::new(0),
            delta_gen: Cell::new(0),
            delta: Cell::new(0),
        }
    };
}

/// Tracker epochs: a tracker's is set at its first interning and never
/// reused by another tracker.
static NEXT_EPOCH: AtomicU32 = AtomicU32::new(1);

static NEXT_THREAD_ID: AtomicU32 = AtomicU32::new(1);

fn thread_id(t: &ThreadState) -> u32 {
    if t.id.get() == 0 {
        let id = NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed);
        t.id.set(id);
        t.stamp.set(id);
    }
    t.id.get()
}

/// The first scope id; thread ids stay below it.
const FIRST_SCOPE: u32 = 1 << 31;

/// Every scope opened so far, `(scope id, thread id)`, in increasing id
/// order, and the next id. 8 bytes per scope ever opened (scopes are for
/// tests); a live record's stamp names the thread that allocated it and
/// the last scope that thread had opened by then.
static SCOPES: Mutex<(u32, SysVec<(u32, u32)>)> = Mutex::new((FIRST_SCOPE, sys_vec()));

/// Marks the current thread as inside the tracker until dropped.
struct Busy {
    was: bool,
}

impl Busy {
    /// Enters unconditionally (reports), remembering the previous state.
    fn enter() -> Busy {
        let was = THREAD.try_with(|t| t.busy.replace(true)).unwrap_or(true);
        Busy { was }
    }

    /// Enters for tracking: `None` when already inside the tracker (the
    /// allocation is the tracker's own) or the thread is being torn down;
    /// else the thread id and the thread's stamp.
    #[inline]
    fn track() -> Option<(Busy, u32, u32)> {
        THREAD
            .try_with(|t| {
                if t.busy.get() {
                    return None;
                }
                t.busy.set(true);
                let id = thread_id(t);
                Some((Busy { was: false }, id, t.stamp.get()))
            })
            .ok()
            .flatten()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let was = self.was;
        let _ = THREAD.try_with(|t| t.busy.set(was));
    }
}

/// A recorded bad free (stacks still as ids).
#[derive(Clone, Copy, Debug)]
struct ErrorRecord {
    kind: ErrorKind,
    addr: usize,
    size: Option<usize>,
    thread: u32,
    stack: u32,
    alloc_stack: u32,
    first_free_stack: u32,
}

/// Bad frees kept for the report.
const MAX_ERRORS: usize = 4096;

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
    /// included (at most 44 per live block once a shard's table has
    /// grown: each is kept between 6/11 and 3/4 full).
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
    epoch: AtomicU32,
    stack_mode: StackMode,
    active: OnceLock<stack::Active>,
    depth: AtomicUsize,
    free_stacks: AtomicBool,
    log_on: AtomicBool,
    log: log::Log,
    live: [SpinLock<LiveShard>; LIVE_SHARDS],
    stacks: StackTable,
    errors: Mutex<(SysVec<ErrorRecord>, usize)>,
    /// The exact live bytes at the last synchronisation (see `account`).
    synced_bytes: AtomicUsize,
    /// Synchronisations so far (wrapping); bumped after the shards are
    /// summed and before `synced_bytes` is stored.
    sync_gen: AtomicU32,
    peak_bytes: AtomicUsize,
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
            epoch: AtomicU32::new(0),
            stack_mode: config.stack_mode,
            active: OnceLock::new(),
            depth: AtomicUsize::new(depth),
            free_stacks: AtomicBool::new(config.free_stacks),
            log_on: AtomicBool::new(!matches!(config.log, LogTarget::None)),
            log: log::Log::new(config.log),
            live: [const { SpinLock::new(LiveShard::new()) }; LIVE_SHARDS],
            stacks: StackTable::new(),
            errors: Mutex::new((sys_vec(), 0)),
            synced_bytes: AtomicUsize::new(0),
            sync_gen: AtomicU32::new(0),
            peak_bytes: AtomicUsize::new(0),
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
        let _busy = Busy::enter();
        self.active().describe()
    }

    #[inline]
    fn active(&self) -> stack::Active {
        *self.active.get_or_init(|| stack::resolve(self.stack_mode))
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
        self.live.iter().map(|s| s.lock().bytes()).sum()
    }

    /// The largest [`live_bytes`](Self::live_bytes) seen. Exact while one
    /// thread allocates; with several, an estimate: each thread sees its
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
        self.peak_bytes
            .load(Ordering::Relaxed)
            .max(self.live_bytes())
    }

    /// Live blocks (the tracker's own excluded).
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// assert_eq!(t.live_blocks(), 0);
    /// ```
    pub fn live_blocks(&self) -> usize {
        self.live.iter().map(|s| s.lock().tracked()).sum()
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
        let live_table_bytes = self.live.iter().map(|s| s.lock().table_bytes()).sum();
        let (stacks, interned_bytes) = self.stacks.footprint();
        let ring_bytes: usize = self.live.iter().map(|s| s.lock().ring_bytes()).sum();
        Metadata {
            record_bytes: core::mem::size_of::<Record>(),
            live_table_bytes,
            live_blocks: self.live_blocks(),
            stacks,
            stack_bytes: interned_bytes + ring_bytes,
        }
    }

    /// Captures the current stack into `storage`.
    #[inline(always)]
    fn capture<'s>(&self, storage: &'s mut StackStorage) -> Captured<'s> {
        stack::capture(self.active(), self.depth.load(Ordering::Relaxed), storage)
    }

    fn epoch(&self) -> u32 {
        match self.epoch.load(Ordering::Relaxed) {
            0 => {
                let fresh = NEXT_EPOCH.fetch_add(1, Ordering::Relaxed);
                match self
                    .epoch
                    .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => fresh,
                    Err(first) => first,
                }
            }
            e => e,
        }
    }

    /// The stack id of `buf`: from this thread's cache when it interned
    /// the same stack recently (no lock), else from the stack table.
    #[inline]
    fn intern(&self, stack: Captured<'_>) -> u32 {
        let (frames, hash, epoch) = (stack.frames, stack.hash, self.epoch());
        let cached = THREAD.try_with(|t| {
            let slot = &t.cache[(hash >> 40) as usize % STACK_CACHE];
            let e = slot.get();
            // SAFETY: an entry with this tracker's epoch was filled by this
            // thread from this tracker's stack table (epochs are never
            // shared), whose stored frames stay immutable and in place
            // while the tracker (borrowed by `self`) lives.
            let hit = e.epoch == epoch
                && e.hash == hash
                && e.len == frames.len()
                && same_frames(
                    unsafe { core::slice::from_raw_parts(e.frames, e.len) },
                    frames,
                );
            (hit.then_some(e.id), slot as *const Cell<CacheEntry>)
        });
        if let Ok((Some(id), _)) = cached {
            return id;
        }
        let Some(stored) = self.stacks.intern(frames, hash) else {
            return NO_STACK;
        };
        if let Ok((_, slot)) = cached {
            let entry = CacheEntry {
                epoch,
                id: stored.id,
                hash,
                frames: stored.frames,
                len: frames.len(),
            };
            let _ = THREAD.try_with(|t| {
                let own = &t.cache[(hash >> 40) as usize % STACK_CACHE];
                debug_assert!(core::ptr::eq(own, slot));
                own.set(entry);
            });
        }
        stored.id
    }

    /// [`intern`](Self::intern) for frames without their hash (the free
    /// path keeps only the frames); [`NO_STACK`] for none.
    #[cold]
    fn intern_frames(&self, frames: &[usize]) -> u32 {
        if frames.is_empty() {
            return NO_STACK;
        }
        self.intern(Captured {
            frames,
            hash: table::hash_stack(frames),
        })
    }

    /// The allocation path behind the handle.
    /// Never inlined: the frame-pointer walk leaves out exactly this
    /// function's frame.
    #[inline(never)]
    pub(crate) fn alloc_raw(&self, align: usize, size: usize) -> *mut u8 {
        let align_log2 = if align == 0 {
            0xff
        } else {
            align.trailing_zeros() as u8
        };
        // A size the record cannot hold fails here (no 64-bit platform
        // can allocate 2^56 bytes).
        let recordable = (size as u64) < table::SIZE_LIMIT;
        let Some((busy, _, stamp)) = Busy::track() else {
            // The tracker's own allocation: recorded (so that its free is
            // recognised), never reported, no stack.
            if !recordable {
                return core::ptr::null_mut();
            }
            let ptr = self.inner.malloc(align, size);
            if !ptr.is_null() {
                self.insert(Record::new(ptr as usize, size, align_log2, INTERNAL, 0));
            }
            return ptr;
        };
        let mut storage = StackStorage::uninit();
        let captured = self.capture(&mut storage);
        let stack = self.intern(captured);
        let ptr = if recordable {
            self.inner.malloc(align, size)
        } else {
            core::ptr::null_mut()
        };
        if self.log_on.load(Ordering::Relaxed) {
            self.log.write(|buf| {
                log::format_record(
                    buf,
                    ptr as usize,
                    Some((align, size)),
                    captured.frames,
                    os::describe_ip,
                )
            });
        }
        if !ptr.is_null() {
            self.insert(Record::new(ptr as usize, size, align_log2, stack, stamp));
        }
        drop(busy);
        ptr
    }

    fn insert(&self, rec: Record) {
        // A replaced record means the inner allocator handed out a live
        // address again: the old block is gone as far as anyone can tell.
        let gen = self.sync_gen.load(Ordering::Acquire);
        let (old, stored) = self.live[table::shard_of(rec.addr)].lock().insert(rec);
        let tracked_size = |r: Record| {
            if r.stack == INTERNAL {
                0
            } else {
                r.size() as isize
            }
        };
        let change = if stored { tracked_size(rec) } else { 0 } - old.map_or(0, tracked_size);
        if change != 0 {
            self.account(change, gen);
        }
    }

    /// Keeps the peak up to date without a shared atomic counter on the
    /// hot path: the shards hold the exact bytes; each thread adds its
    /// own net change since the last synchronisation to the byte count
    /// of that moment, and re-synchronises (sums the shards) every 64 KiB
    /// of net change. Alone, a thread's estimate is exact; with others,
    /// their changes since the synchronisation (less than 64 KiB each, in
    /// either direction) are missing from it.
    ///
    /// `gen` is [`sync_gen`](Self::sync_gen) from before the change was
    /// made in its shard. A thread's delta holds only changes begun after
    /// the synchronisation it counts from had summed the shards, and is
    /// dropped when another synchronisation has happened since (which
    /// counted them). A change begun while a synchronisation ran may or
    /// may not have been summed by it: one under 64 KiB is left out, a
    /// larger one synchronises again, so that no big spike goes unseen.
    #[inline]
    fn account(&self, change: isize, gen: u32) {
        const SYNC: usize = 64 << 10;
        let epoch = self.epoch();
        let now = self.sync_gen.load(Ordering::Acquire);
        let raced = gen != now;
        let delta = THREAD
            .try_with(|t| {
                let base = if t.delta_epoch.get() == epoch && t.delta_gen.get() == now {
                    t.delta.get()
                } else {
                    t.delta_epoch.set(epoch);
                    t.delta_gen.set(now);
                    0
                };
                let delta = base + if raced { 0 } else { change };
                t.delta.set(if delta.unsigned_abs() >= SYNC {
                    0
                } else {
                    delta
                });
                delta
            })
            .unwrap_or(SYNC as isize);
        if delta.unsigned_abs() >= SYNC || (raced && change.unsigned_abs() >= SYNC) {
            self.synchronise();
        } else if change > 0 {
            let synced = self.synced_bytes.load(Ordering::Acquire);
            // Else another synchronisation began meanwhile, and the delta
            // no longer counts from `synced`.
            if self.sync_gen.load(Ordering::Acquire) == now {
                let estimate = synced.saturating_add_signed(delta);
                if estimate > self.peak_bytes.load(Ordering::Relaxed) {
                    self.peak_bytes.fetch_max(estimate, Ordering::Relaxed);
                }
            }
        }
    }

    /// Sums the shards into [`synced_bytes`](Self::synced_bytes), starting
    /// a new generation of thread deltas (see [`account`](Self::account)).
    #[cold]
    #[inline(never)]
    fn synchronise(&self) {
        let exact = self.live_bytes();
        self.sync_gen.fetch_add(1, Ordering::AcqRel);
        self.synced_bytes.store(exact, Ordering::Release);
        self.peak_bytes.fetch_max(exact, Ordering::Relaxed);
    }

    /// The free path behind the handle.
    /// Never inlined, as [`alloc_raw`](Self::alloc_raw).
    ///
    /// The free's stack is not interned: its raw frames go into the
    /// shard's ring of recent frees, and are interned only if a double
    /// free of the block is reported.
    #[inline(never)]
    pub(crate) fn free_raw(&self, ptr: *mut u8) {
        let tracking = Busy::track();
        let mut storage = StackStorage::uninit();
        // Only the frames: the hash the capture computes goes unused (and
        // is optimised away) unless a bad free is reported.
        let mut frames: &[usize] = &[];
        let mut thread = 0;
        if let Some((_, id, _)) = &tracking {
            thread = *id;
            let log_on = self.log_on.load(Ordering::Relaxed);
            if log_on || self.free_stacks.load(Ordering::Relaxed) {
                let stack = self.capture(&mut storage);
                if log_on {
                    self.log.write(|buf| {
                        log::format_record(buf, ptr as usize, None, stack.frames, os::describe_ip)
                    });
                }
                frames = stack.frames;
            }
        }
        if ptr.is_null() {
            return;
        }
        let addr = ptr as usize;
        let depth = self.depth.load(Ordering::Relaxed);
        let gen = self.sync_gen.load(Ordering::Acquire);
        let mut shard = self.live[table::shard_of(addr)].lock();
        match shard.remove(addr) {
            Some(rec) => {
                shard.remember_free(addr, &rec, frames, depth);
                drop(shard);
                if rec.stack != INTERNAL {
                    self.account(-(rec.size() as isize), gen);
                }
                // SAFETY: `rec` proves `ptr` came from `inner.malloc` and
                // was live until the removal above, which makes this the
                // only free of it.
                unsafe { self.inner.free(ptr) };
            }
            None => {
                // Copied out so that the interning runs without the lock.
                let mut first_frames = [0usize; MAX_DEPTH];
                let first = shard.recent_free(addr).map(|(f, frames)| {
                    first_frames[..frames.len()].copy_from_slice(frames);
                    (f, frames.len())
                });
                drop(shard);
                let first_free_stack = match first {
                    Some((_, n)) => self.intern_frames(&first_frames[..n]),
                    None => NO_STACK,
                };
                let error = ErrorRecord {
                    kind: if first.is_some() {
                        ErrorKind::DoubleFree
                    } else {
                        ErrorKind::InvalidFree
                    },
                    addr,
                    size: first.map(|(f, _)| f.size),
                    thread,
                    stack: self.intern_frames(frames),
                    alloc_stack: first.map_or(NO_STACK, |(f, _)| f.alloc_stack),
                    first_free_stack,
                };
                let mut errors = lock(&self.errors);
                errors.1 += 1;
                if errors.0.len() < MAX_ERRORS && errors.0.try_reserve(1).is_ok() {
                    errors.0.push(error);
                }
            }
        }
        drop(tracking);
    }

    /// Bad frees so far (double and invalid).
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// assert_eq!(t.error_count(), 0);
    /// ```
    pub fn error_count(&self) -> usize {
        lock(&self.errors).1
    }

    /// Never-freed blocks grouped by allocation stack (largest first), and
    /// every bad free with its stacks. Symbolizes each distinct stack once.
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// assert!(t.report().is_clean());
    /// ```
    pub fn report(&self) -> LeakReport {
        self.build_report(&|_| true, true)
    }

    fn build_report(&self, keep: &dyn Fn(&Record) -> bool, with_errors: bool) -> LeakReport {
        let _busy = Busy::enter();
        let mut records: SysVec<Record> = sys_vec();
        for shard in &self.live {
            shard
                .lock()
                .collect(&mut records, &|r| r.stack != INTERNAL && keep(r));
        }
        let mut errors: SysVec<ErrorRecord> = sys_vec();
        let mut errors_total = 0;
        if with_errors {
            let e = lock(&self.errors);
            errors.extend_from_slice(&e.0);
            errors_total = e.1;
        }
        let mut by_stack: HashMap<u32, (usize, usize)> = HashMap::new();
        for r in records.iter() {
            let g = by_stack.entry(r.stack).or_default();
            g.0 += r.size();
            g.1 += 1;
        }
        let mut symbols = Symbolizer {
            stacks: &self.stacks,
            cache: HashMap::new(),
        };
        let mut groups: Vec<LeakGroup> = by_stack
            .into_iter()
            .map(|(stack, (bytes, count))| LeakGroup {
                bytes,
                count,
                frames: symbols.frames(stack),
            })
            .collect();
        groups.sort_by(|a, b| {
            (b.bytes, b.count).cmp(&(a.bytes, a.count)).then_with(|| {
                a.frames
                    .first()
                    .map(|f| f.ip)
                    .cmp(&b.frames.first().map(|f| f.ip))
            })
        });
        let errors = errors
            .iter()
            .map(|e| ErrorEntry {
                kind: e.kind,
                address: e.addr,
                size: e.size,
                thread: e.thread,
                frames: symbols.frames(e.stack),
                alloc_frames: symbols.frames(e.alloc_stack),
                first_free_frames: symbols.frames(e.first_free_stack),
            })
            .collect();
        LeakReport {
            leaked_bytes: records.iter().map(|r| r.size()).sum(),
            leaked_blocks: records.len(),
            groups,
            errors,
            errors_total,
        }
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
    /// scope ids); panics if that memory cannot be had, or after 2^31
    /// scopes.
    pub fn scope(&self) -> Scope<'_, 'a> {
        let mut scopes = lock(&SCOPES);
        let start = scopes.0;
        let thread = THREAD.try_with(thread_id).unwrap_or(0);
        assert!(
            start != u32::MAX && scopes.1.try_reserve(1).is_ok(),
            "mallocator: cannot register another scope"
        );
        scopes.0 = start + 1;
        scopes.1.push((start, thread));
        drop(scopes);
        let _ = THREAD.try_with(|t| t.stamp.set(start));
        Scope {
            tracker: self,
            thread,
            start,
            _not_send: PhantomData,
        }
    }
}

/// `a == b` for two stacks, word by word: the frames were just written by
/// the walk one word at a time, and a scalar loop reads them back through
/// store forwarding, where the wide loads of the `memcmp` that `==` calls
/// would wait for those stores to retire (a measurable share of the
/// tracker's time on the churn benchmark).
#[inline(always)]
fn same_frames(a: &[usize], b: &[usize]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Symbolizes stacks for one report, once per distinct stack.
struct Symbolizer<'t> {
    stacks: &'t StackTable,
    cache: HashMap<u32, Vec<Frame>>,
}

impl Symbolizer<'_> {
    fn frames(&mut self, id: u32) -> Vec<Frame> {
        let stacks = self.stacks;
        self.cache
            .entry(id)
            .or_insert_with(|| {
                let mut frames = Vec::new();
                for &ip in stacks.get(id).iter() {
                    os::symbolize(ip, &mut frames);
                }
                let own = frames.iter().take_while(|f| is_tracker_frame(f)).count();
                frames.drain(..own);
                frames
            })
            .clone()
    }
}

/// The allocation machinery between user code and the capture (this
/// crate's tracker and handle, the unwinder, the global-allocator shims):
/// removed from the top of reported stacks. Decided by source file when
/// known (inlined functions often carry only a short name), else by name.
fn is_tracker_frame(frame: &Frame) -> bool {
    const OWN_FILES: [&str; 9] = [
        "mallocator/src/backtracing/",
        "mallocator/src/valloc.rs",
        "mallocator/src/global.rs",
        "mallocator/src/libc_alloc.rs",
        "/backtrace-0.",
        "library/alloc/src/alloc.rs",
        "library/core/src/alloc/global.rs",
        "library/std/src/alloc.rs",
        "library/std/src/sys/alloc/",
    ];
    const OWN_NAMES: [&str; 9] = [
        "mallocator::backtracing::",
        "mallocator::valloc::",
        "mallocator::global::",
        "backtrace::",
        "__rust_alloc",
        "__rust_dealloc",
        "__rust_realloc",
        "__rustc::",
        "__rdl_",
    ];
    let in_tests = |s: &str| s.contains("backtracing/tests.rs") || s.contains("backtracing::tests");
    let by_name = frame.function.as_deref().is_some_and(|f| {
        let f = f.trim_start_matches('<');
        OWN_NAMES.iter().any(|p| f.starts_with(p)) && !in_tests(f)
    });
    by_name
        || frame.file.as_deref().is_some_and(|file| {
            let file = file.replace('\\', "/");
            OWN_FILES.iter().any(|p| file.contains(p)) && !in_tests(&file)
        })
}

/// A per-thread leak check, from [`Backtracing::scope`]. Not `Send`: it
/// belongs to the thread that made it.
///
/// ```compile_fail
/// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
/// let scope = t.scope();
/// std::thread::scope(|s| { s.spawn(move || scope.assert_no_leaks()); }); // error: not `Send`
/// ```
#[derive(Debug)]
pub struct Scope<'t, 'a> {
    tracker: &'t Backtracing<'a>,
    thread: u32,
    start: u32,
    _not_send: PhantomData<*const ()>,
}

impl Scope<'_, '_> {
    /// This thread's blocks allocated since the scope began and still live
    /// (no errors: those are in [`Backtracing::report`]).
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// let scope = t.scope();
    /// let p = t.valloc().malloc(8, 40);
    /// assert_eq!(scope.leaks().leaked_bytes, 40);
    /// # unsafe { t.valloc().free(p) };
    /// ```
    pub fn leaks(&self) -> LeakReport {
        // The stamps of this scope and of the later ones of this thread.
        let mut stamps: SysVec<u32> = sys_vec();
        {
            let scopes = lock(&SCOPES);
            let later = scopes.1.partition_point(|&(id, _)| id < self.start);
            stamps.extend(
                scopes.1[later..]
                    .iter()
                    .filter(|&&(_, thread)| thread == self.thread)
                    .map(|&(id, _)| id),
            );
        }
        self.tracker.build_report(
            &|r| r.stamp >= self.start && stamps.binary_search(&r.stamp).is_ok(),
            false,
        )
    }

    /// Panics with the text report if [`leaks`](Self::leaks) finds any.
    ///
    /// ```should_panic
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// let scope = t.scope();
    /// let _leaked = t.valloc().malloc(8, 40);
    /// scope.assert_no_leaks(); // panics: 40 bytes in 1 block
    /// ```
    pub fn assert_no_leaks(self) {
        let leaks = self.leaks();
        assert!(leaks.leaked_blocks == 0, "leaks in scope: {leaks}");
    }
}
