//! Per-thread event buffers of the compact log.
//!
//! Each thread appends its events to a buffer of its own and writes the
//! buffer as one chunk when it is full, when the thread ends, when the
//! tracker is dropped or flushed, and at exit; so the hot path takes no
//! shared lock and makes no system call, and chunks never interleave.
//!
//! A buffer is allocated from the C library at the thread's first event,
//! owned by the thread (freed by its thread-local destructor) and listed
//! in [`BUFFERS`], through which the exit flush, a flush of the log and a
//! dropped tracker reach the buffers of other threads. **Invariant:** a
//! buffer's `state` is either null or a live tracker state, and it is
//! only read, set or cleared under the [`BUFFERS`] lock; a tracker's drop
//! clears it there (after flushing) before the state is freed.
//!
//! **Order.** A thread's events must reach the log in the order it logged
//! them. The owner writes an event alone when it finds its buffer's lock
//! taken ([`push`]). Taken by the owner itself, re-entering (another
//! tracker's log callback, or a signal handler, calling this tracker
//! while the buffer is written or appended to), the buffer holds no event
//! of this tracker. Taken by a thread flushing it, that thread took the
//! buffer only while holding the log lock of the tracker the buffer is
//! attached to, and writes it before letting the log go
//! ([`flush_other`]): an event of that tracker written alone meanwhile
//! waits for that log and lands after the buffered ones, and an event of
//! another tracker has none there ([`attach`] wrote them out). An event
//! written alone because [`BUFFERS`] was taken has none there either: the
//! thread has no buffer yet, or its buffer holds another tracker's
//! events or none.
//!
//! Lock order: [`BUFFERS`], then a buffer, then the log; a thread
//! flushing another thread's buffer holds [`BUFFERS`] and the log and
//! only *tries* the buffer's lock, so it never waits for a buffer while
//! holding a log. It takes the loader's lock too (to write the module
//! map) while holding [`BUFFERS`]; a thread that allocates inside a
//! `dl_iterate_phdr` callback holds the loader's lock, so the hot path
//! only *tries* [`BUFFERS`] (to make or attach its buffer), and its
//! event goes alone when it is taken.
//!
//! (So a log callback that allocates during a flush, through another
//! tracker that logs too, does not wait for the [`BUFFERS`] its own
//! thread holds either.)
//!
//! **Waiting for an `exec`.** While a thread's `exec` has the log ended
//! ([`Log::finish_for_exec`]), every chunk waits for it, with the log
//! lock let go, before any buffer is taken: until the `exec` ends the
//! process's other threads, or fails and takes the end back. A thread
//! flushing others' buffers waits holding [`BUFFERS`] (and, in a rare
//! race, the loader's lock), so threads making their first buffer, and
//! `dlopen` in that race, wait for the `exec` too. The thread in `exec`
//! writes no chunk meanwhile (see `LogsEndedForExec`), so nothing waits
//! for itself.
//!
//! A known gap in that order, needing a rare combination (left as it
//! is: closing it changes the order itself):
//! * a signal handler that logs through a second tracker while its
//!   thread, inside the first one, holds that tracker's stack-table lock
//!   with its buffer attached there: writing the buffer out needs that
//!   lock.

use core::cell::Cell;
use core::sync::atomic::{AtomicPtr, Ordering};

use super::super::own_heap::own_heap;
use super::super::state::State;
use super::super::sync::{SpinGuard, SpinLock};
use super::super::sys_vec::{sys_vec, SysVec};
use super::super::thread::{thread_id, Busy, ThreadState, THREAD};
use super::super::{fork, os};
use super::record_buf::try_append;
use super::{ChunkWriter, Log};

/// Bytes of events one buffer holds (about 600 events).
pub(crate) const BUFFER_BYTES: usize = 16 * 1024;

/// One thread's buffer.
struct Buffer {
    /// The epoch of the tracker whose events it holds ([`Shared::state`];
    /// 0 when detached), for the owner to check without [`BUFFERS`].
    epoch: u64,
    /// The owner's tracker thread id.
    thread: u64,
    /// The events (capacity [`BUFFER_BYTES`], reserved at creation, so
    /// appending never allocates).
    bytes: SysVec<u8>,
    events: u64,
}

/// A buffer as [`BUFFERS`] lists it.
#[repr(C)]
struct Shared {
    buffer: SpinLock<Buffer>,
    /// The tracker whose events the buffer holds, or null: only read or
    /// written under [`BUFFERS`] (the module's invariant), which a thread
    /// flushing the buffer holds, so that it knows which log to take
    /// before the buffer (the module's order). Outside the buffer's lock,
    /// and past the cache lines [`push`] touches.
    state: AtomicPtr<State>,
}

/// Every thread's buffer (as addresses of [`Shared`]).
pub(crate) static BUFFERS: SpinLock<SysVec<usize>> = SpinLock::new(sys_vec());

/// [`BUFFERS`], locked by [`lock_buffers`].
struct AllBuffers {
    list: SpinGuard<'static, SysVec<usize>>,
    /// Dropped after the lock (fields drop in order).
    _marked: Option<Busy<'static>>,
}

/// Locks [`BUFFERS`], marking this thread as holding a lock all trackers
/// share (`Busy::shared_lock`): a fatal signal's handler then does not
/// try to end the logs, which would wait forever for it.
fn lock_buffers() -> AllBuffers {
    let marked = Busy::shared_lock();
    AllBuffers {
        list: BUFFERS.lock(),
        _marked: marked,
    }
}

/// [`lock_buffers`] for a thread on its hot path (making or attaching
/// its buffer), which may hold the loader's lock (inside a
/// `dl_iterate_phdr` callback) while a thread flushing the buffers holds
/// [`BUFFERS`] and waits for the loader's lock to write them: `None` when
/// the lock is taken, and the event goes alone instead of waiting.
fn try_lock_buffers() -> Option<AllBuffers> {
    let marked = Busy::shared_lock();
    Some(AllBuffers {
        list: BUFFERS.try_lock()?,
        _marked: marked,
    })
}

impl core::ops::Deref for AllBuffers {
    type Target = SysVec<usize>;
    fn deref(&self) -> &SysVec<usize> {
        &self.list
    }
}

impl core::ops::DerefMut for AllBuffers {
    fn deref_mut(&mut self) -> &mut SysVec<usize> {
        &mut self.list
    }
}

/// The calling thread's buffer; its destructor flushes and frees it.
struct Slot(Cell<*mut Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        let p = self.0.replace(core::ptr::null_mut());
        if !p.is_null() {
            let _ = THREAD.try_with(|t| t.log.0.set(core::ptr::null_mut()));
            retire(p);
        }
    }
}

/// The calling thread's buffer as its [`ThreadState`] holds it: the
/// pointer in its [`Slot`], null until the slot has one and again once
/// the slot's destructor has run. A copy, so that the hot path finds the
/// buffer with the rest of its thread's state (in a shared library every
/// thread-local access is a call into the dynamic loader).
pub(crate) struct ThreadBuffer(Cell<*mut Shared>);

impl ThreadBuffer {
    pub(crate) const fn new() -> Self {
        ThreadBuffer(Cell::new(core::ptr::null_mut()))
    }
}

std::thread_local! {
    static MINE: Slot = const { Slot(Cell::new(core::ptr::null_mut())) };
}

impl Buffer {
    /// Writes the buffered events to `st`'s log and empties the buffer,
    /// on its owner's thread. Inside the tracker, so that whatever the
    /// write allocates (a log callback may) is the tracker's own, neither
    /// logged nor waiting for this buffer's lock. From the tracker's hot
    /// path it stays there (a signal handler's allocation during the
    /// write is then deferred, invariant 12; the callback marks itself as
    /// the tracker's own work).
    fn flush_to(&mut self, st: &State) {
        let _busy = enter(st);
        if !self.bytes.is_empty() {
            st.log
                .write_chunk(&st.stacks, self.thread, &self.bytes, self.events);
        }
        self.clear();
    }

    /// Writes the buffered events with `w` and empties the buffer.
    fn write_with(&mut self, w: &mut ChunkWriter<'_>) {
        if !self.bytes.is_empty() {
            w.write(self.thread, &self.bytes, self.events);
        }
        self.clear();
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.events = 0;
    }
}

/// Enters tracker `st` for a write of its log, unless this thread is
/// inside it already (see [`Buffer::flush_to`]).
fn enter(st: &State) -> Option<Busy<'static>> {
    (!Busy::inside(st.epoch))
        .then(|| Busy::enter(st.epoch))
        .flatten()
}

impl Shared {
    /// The tracker the buffer is attached to, if any. The caller holds
    /// [`BUFFERS`] (the module's invariant), which keeps it alive.
    fn attached(&self) -> Option<&State> {
        // SAFETY: a non-null `state` is live while the caller holds
        // `BUFFERS` (module invariant).
        unsafe { self.state.load(Ordering::Relaxed).as_ref() }
    }
}

/// Appends `event` to the calling thread's buffer for tracker `st`,
/// flushing first if it is full. Without a buffer (out of memory, during
/// the thread's teardown, or while another thread holds [`BUFFERS`]:
/// [`try_lock_buffers`]) the event is written alone. An event is
/// a fixed-size array: its copy is a few moves (a `memcpy` call of a
/// length known only at run time cost 35 instructions an event). `t` is
/// the calling thread's state (`None` once it is gone).
#[inline]
pub(crate) fn push<const N: usize>(st: &State, t: Option<&ThreadState>, event: &[u8; N]) {
    let done = t.is_some_and(|t| {
        let mut p = t.log.0.get();
        if p.is_null() {
            p = adopt(t);
            if p.is_null() {
                return false;
            }
        }
        // SAFETY: the thread's buffer lives until its slot's destructor,
        // which nulls this copy first.
        let shared = unsafe { &*p };
        // Taken (by this very thread, re-entering, or by a thread
        // flushing it), the event goes alone, still in order: see the
        // module docs.
        let Some(mut b) = shared.buffer.try_lock() else {
            return false;
        };
        if b.epoch != st.epoch {
            drop(b);
            if !attach(shared, st) {
                return false;
            }
            b = shared.buffer.lock();
        }
        if b.bytes.len() + N > BUFFER_BYTES {
            b.flush_to(st);
        }
        if !append_event(&mut b.bytes, event) {
            // Out of memory, the buffer short of its room: the events it
            // holds go first, then this one alone.
            b.flush_to(st);
            return false;
        }
        b.events += 1;
        true
    });
    if !done {
        st.log.write_chunk(&st.stacks, thread_id(), event, 1);
    }
}

/// The calling thread's buffer, created at its first event and copied
/// into its state `t`; null when [`create`] cannot make one now, or
/// during the thread's teardown (its slot is gone: a buffer made now
/// would never be freed).
#[cold]
fn adopt(t: &ThreadState) -> *mut Shared {
    // The first use of `MINE` registers its destructor, for which the C
    // library allocates (glibc's `__cxa_thread_atexit_impl` calls
    // `calloc`): the tracker's own work (invariant 12), not a signal
    // handler's call into the hot path, nor the program's block.
    let _own = Busy::own();
    MINE.try_with(|slot| {
        let mut p = slot.0.get();
        if p.is_null() {
            p = create();
            slot.0.set(p);
        }
        t.log.0.set(p);
        p
    })
    .unwrap_or(core::ptr::null_mut())
}

/// Appends `event` to `bytes`, which has room for it in the buffer's
/// capacity ([`BUFFER_BYTES`], and the caller flushed it if full; should
/// that not hold, the general path grows it). False when it could not
/// (out of memory): the caller writes the event alone.
#[inline(always)]
fn append_event<const N: usize>(bytes: &mut SysVec<u8>, event: &[u8; N]) -> bool {
    let len = bytes.len();
    if bytes.capacity() - len < N {
        return try_append(bytes, event);
    }
    // SAFETY: the check above leaves room for `N` bytes past the length;
    // `event` is not part of `bytes` (borrowed mutably); the bytes are
    // initialised by the copy before the length covers them.
    unsafe {
        bytes
            .as_mut_ptr()
            .add(len)
            .cast::<[u8; N]>()
            .write_unaligned(*event);
        bytes.set_len(len + N);
    }
    true
}

/// A new buffer, listed in [`BUFFERS`]; null when out of memory, or when
/// the list is taken (see [`try_lock_buffers`]): the next event tries
/// again.
#[cold]
fn create() -> *mut Shared {
    // Buffered events must reach the file even if no thread ends first.
    flush_at_exit();
    // The list first: while it is taken, no buffer is made, and freed
    // again, for every event.
    let Some(mut all) = try_lock_buffers() else {
        return core::ptr::null_mut();
    };
    if all.try_reserve(1).is_err() {
        return core::ptr::null_mut();
    }
    let p = own_heap()
        .malloc(
            core::mem::align_of::<Shared>(),
            core::mem::size_of::<Shared>(),
        )
        .cast::<Shared>();
    let mut bytes = sys_vec();
    if p.is_null() || bytes.try_reserve_exact(BUFFER_BYTES).is_err() {
        if !p.is_null() {
            // SAFETY: allocated just above, never initialised or shared.
            unsafe { own_heap().free(p.cast()) };
        }
        return core::ptr::null_mut();
    }
    // SAFETY: a fresh block of the right size and alignment.
    unsafe {
        p.write(Shared {
            buffer: SpinLock::new(Buffer {
                epoch: 0,
                thread: thread_id(),
                bytes,
                events: 0,
            }),
            state: AtomicPtr::new(core::ptr::null_mut()),
        })
    };
    all.push(p as usize);
    p
}

/// Frees a buffer made by [`create`] that nobody else can reach.
///
/// # Safety
/// `p` came from `create`, is not listed in [`BUFFERS`] and not used again.
unsafe fn free(p: *mut Shared) {
    // SAFETY: by the contract.
    unsafe {
        core::ptr::drop_in_place(p);
        own_heap().free(p.cast());
    }
}

/// Attaches the calling thread's buffer to tracker `st`, after writing
/// what it holds for another tracker (a thread that logs to two); false
/// when [`BUFFERS`] is taken (see [`try_lock_buffers`]).
#[cold]
fn attach(shared: &Shared, st: &State) -> bool {
    let Some(_all) = try_lock_buffers() else {
        return false;
    };
    let mut b = shared.buffer.lock();
    if let Some(old) = shared.attached() {
        b.flush_to(old);
    }
    shared
        .state
        .store(st as *const State as *mut State, Ordering::Relaxed);
    b.epoch = st.epoch;
    true
}

/// The thread's end: flushes its buffer and frees it.
fn retire(p: *mut Shared) {
    let mut all = lock_buffers();
    {
        // SAFETY: the slot's buffer, alive until freed below.
        let shared = unsafe { &*p };
        let mut b = shared.buffer.lock();
        if let Some(st) = shared.attached() {
            b.flush_to(st);
        }
    }
    if let Some(i) = all.iter().position(|&q| q == p as usize) {
        all.swap_remove(i);
    }
    drop(all);
    // SAFETY: unlisted now, and the slot no longer points to it.
    unsafe { free(p) };
}

/// Writes every thread's buffered events for tracker `st` now.
pub(crate) fn flush(st: &State) {
    each_buffer_of(st, false);
}

/// Writes every thread's buffered events for tracker `st` and detaches
/// those buffers from it: `st` is about to be freed.
pub(crate) fn detach(st: &State) {
    each_buffer_of(st, true);
}

/// Flushes every buffer attached to `st`, and detaches it when `detach`.
fn each_buffer_of(st: &State, detach: bool) {
    let all = lock_buffers();
    for &p in all.iter() {
        // SAFETY: listed buffers are alive while `BUFFERS` is held (a
        // buffer is unlisted under it before being freed).
        let shared = unsafe { &*(p as *const Shared) };
        if shared.attached().is_some_and(|a| core::ptr::eq(a, st)) {
            flush_other(shared, st, detach);
            if detach {
                shared.state.store(core::ptr::null_mut(), Ordering::Relaxed);
            }
        }
    }
}

/// Writes every thread's buffered events, to whichever tracker each
/// belongs to.
fn flush_all() {
    let all = lock_buffers();
    for &p in all.iter() {
        // SAFETY: as in `each_buffer_of`.
        let shared = unsafe { &*(p as *const Shared) };
        if let Some(st) = shared.attached() {
            flush_other(shared, st, false);
        }
    }
}

/// Writes `shared`'s events to `st`'s log (the tracker it is attached
/// to) from any thread, its owner's or another's, which holds
/// [`BUFFERS`]; also detaches it from `st` when `detach`.
///
/// The buffer is taken only while `st`'s log lock is held, and with
/// `try_lock` (the module's order). Taking the buffer first and the log
/// after, as the owner does, left a window in which the owner's next
/// event reached the log before its older ones: a free before its
/// allocation, read as an invalid free and a leak.
///
/// Deadlock: nothing here waits for a buffer while holding a log lock (a
/// taken buffer makes it let the log go, and wait holding only
/// [`BUFFERS`], as it always did); and the owner, finding its buffer
/// taken, waits for nothing new (its event goes alone, as before). The
/// alternative, having the owner wait for its buffer, would make it wait
/// for whatever the flushing thread waits for while holding it (the
/// loader's lock, which the owner may hold inside a `dl_iterate_phdr`
/// callback; a log lock it may hold during a write; whatever a log
/// callback takes), with no way to tell those cases apart on the hot path.
fn flush_other(shared: &Shared, st: &State, detach: bool) {
    let _busy = enter(st);
    let mut tries = 0u32;
    loop {
        let done = st.log.with_chunk_writer(&st.stacks, |w| {
            let Some(mut b) = shared.buffer.try_lock() else {
                return false;
            };
            b.write_with(w);
            if detach {
                b.epoch = 0;
            }
            true
        });
        if done {
            return;
        }
        // Its owner holds it, appending or writing it (for which it may
        // want the log just let go).
        tries += 1;
        if tries < 64 {
            core::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Makes the process flush every buffer and end every compact log at
/// exit (registered once).
pub(crate) fn flush_at_exit() {
    static REGISTERED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if !REGISTERED.swap(true, core::sync::atomic::Ordering::Relaxed) {
        os::at_exit(at_exit);
    }
}

extern "C" fn at_exit() {
    // The registers first, before this function's code changes them:
    // roots of the leak scan.
    let registers = os::callee_saved_registers();
    // A thread inside a tracker (an `exit` from a signal handler that
    // interrupted it, or from one during an `exec`'s window, which
    // counts as holding a shared lock) could wait for a lock it holds,
    // or for chunks that wait for its own `exec`: its log is left as it
    // is.
    if !Busy::inside_any() {
        super::write_reachability_at_exit(registers);
        finish_all();
    }
}

/// Writes every thread's buffered events and ends every compact log
/// (nothing is logged after this).
pub(crate) fn finish_all() {
    flush_all();
    each_log(Log::finish);
}

/// [`finish_all`] before an `exec`, with every end that can be taken
/// back, and only those (see [`Log::finish_for_exec`]).
pub(crate) fn finish_all_for_exec() {
    flush_all();
    each_log(Log::finish_for_exec);
}

/// After a failed `exec`: the logs [`finish_all_for_exec`] ended go on.
pub(crate) fn resume_all_after_exec() {
    each_log(Log::resume_after_exec);
}

/// Calls `f` on every tracker's log, inside that tracker.
fn each_log(f: fn(&Log)) {
    fork::for_each_state(&mut |st| {
        let _busy = Busy::enter(st.epoch);
        f(&st.log);
    });
}

/// In the child after `fork` (single-threaded, every lock free): the
/// other threads' buffers are gone with their threads, and this thread's
/// events are the parent's to write. Forgets them all, without touching
/// the other threads' buffers (their locks may have been held at the fork).
pub(crate) fn after_fork_in_child() {
    let mut all = lock_buffers();
    all.clear();
    let _ = MINE.try_with(|slot| {
        let p = slot.0.get();
        if !p.is_null() {
            // SAFETY: the slot's buffer, alive until its destructor.
            unsafe { &*p }.buffer.lock().clear();
            // Listed again (its room is still there): a tracker dropped in
            // the child must find it to detach it (the module invariant).
            all.push(p as usize);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(unix, not(miri)))]
    use crate::backtracing::tests::logging_to;

    /// A signal handler that allocates and frees through a logging
    /// tracker while its thread holds [`BUFFERS`] (a thread's first event
    /// needs the list, for its new buffer) is not logged, and does not
    /// wait for the list: its calls are the tracker's own work.
    #[test]
    #[cfg(all(unix, not(miri)))]
    fn a_handlers_calls_while_holding_the_buffer_list_do_not_wait() {
        fn ignore(_: &[u8]) {}
        assert!(fork::tests_support::in_child(|| {
            let t = logging_to(ignore);
            let v = t.valloc();
            let all = lock_buffers();
            let p = v.malloc(8, 8);
            // SAFETY: freeing what `v` returned.
            unsafe { v.free(p) };
            drop(all);
            !p.is_null() && t.live_blocks() == 0
        }));
    }

    /// A thread whose first event comes while another thread holds
    /// [`BUFFERS`] (one flushing the buffers, waiting for the loader's
    /// lock that this thread may hold inside a `dl_iterate_phdr`
    /// callback) does not wait for the list: its events go alone, and
    /// are written. (In this process, not a forked child: ThreadSanitizer
    /// cannot start threads after a fork.)
    #[test]
    #[cfg(all(unix, not(miri)))]
    fn a_first_event_while_another_thread_holds_the_buffer_list_goes_alone() {
        static WRITTEN: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
        fn keep(record: &[u8]) {
            WRITTEN.lock().unwrap().extend_from_slice(record);
        }
        let t = logging_to(keep);
        let v = t.valloc();
        let all = lock_buffers();
        let (done, finished) = std::sync::mpsc::channel();
        let written = std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: freeing what `v` returned.
                unsafe { v.free(v.malloc(8, 8)) };
                done.send(()).unwrap();
            });
            // A thread that waits for the list does not finish until the
            // list is let go. One that does not wait may still take many
            // seconds to be scheduled and to finish its first event (seen
            // past 10 s under qemu-user on a loaded 2-core machine).
            let finished = finished
                .recv_timeout(std::time::Duration::from_secs(60))
                .is_ok();
            let log = WRITTEN.lock().unwrap().clone();
            drop(all);
            finished.then_some(log)
        });
        let log = written.expect("the thread waited for the buffer list");
        let kinds: Vec<u8> = crate::backtracing::tests::decode_compact(&log)
            .events
            .iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(kinds, [1, 2], "the allocation and the free, written");
        assert_eq!(t.live_blocks(), 0);
    }

    /// Ending the logs from a thread that holds [`BUFFERS`] (as a fatal
    /// signal's handler would, interrupting a thread's exit or the exit's
    /// own flush) answers false at once instead of waiting forever.
    #[test]
    #[cfg(all(unix, not(miri)))]
    fn ending_the_logs_while_holding_the_buffer_list_does_not_wait() {
        assert!(fork::tests_support::in_child(|| {
            let all = lock_buffers();
            let answer = crate::backtracing::Backtracing::end_logs_now();
            drop(all);
            !answer
        }));
    }

    #[test]
    fn events_append_whole_with_room_or_without() {
        let mut bytes = sys_vec();
        bytes.try_reserve_exact(8).unwrap();
        assert!(append_event(&mut bytes, &[1u8, 2, 3]));
        assert!(append_event(&mut bytes, &[4u8, 5, 6, 7, 8]));
        assert_eq!(&bytes[..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        // No room left: the general path grows the buffer.
        assert!(append_event(&mut bytes, &[9u8, 10]));
        assert_eq!(&bytes[..], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        // Out of memory: refused whole, nothing half-written.
        let mut starved = SysVec::new_in(crate::valloc::Valloc::null());
        assert!(!append_event(&mut starved, &[1u8, 2]));
        assert!(starved.is_empty());
    }
}
