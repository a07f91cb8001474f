//! Per-thread event buffers of the compact log.
//!
//! Each thread appends its events to a buffer of its own and writes the
//! buffer as one chunk when it is full, when the thread ends, when the
//! tracker is dropped or flushed, and at exit; so the hot path takes no
//! shared lock and makes no system call, and chunks never interleave.
//!
//! A buffer is allocated from the C library at the thread's first event,
//! owned by the thread (freed by its thread-local destructor) and listed
//! in [`BUFFERS`], through which the exit flush and a dropped tracker
//! reach the buffers of other threads. **Invariant:** a buffer's `state`
//! is either null or a live tracker state, and it is only set, cleared or
//! followed by a thread other than the owner under the [`BUFFERS`] lock;
//! a tracker's drop clears it there (after flushing) before the state is
//! freed. The owner itself follows it only while it is inside a call on
//! that very tracker (which keeps it alive).
//!
//! Lock order: [`BUFFERS`], then a buffer, then the log.

use core::cell::Cell;

use super::super::own_heap::own_heap;
use super::super::state::State;
use super::super::sync::SpinLock;
use super::super::sys_vec::{sys_vec, SysVec};
use super::super::thread::{thread_id, Busy, ThreadState, THREAD};
use super::super::{fork, os};
use super::append;

/// Bytes of events one buffer holds (about 600 events).
pub(crate) const BUFFER_BYTES: usize = 16 * 1024;

/// One thread's buffer.
struct Buffer {
    /// The tracker whose events it holds (see the invariant in the
    /// module docs), and that tracker's epoch (0 when detached).
    state: *const State,
    epoch: u64,
    /// The owner's tracker thread id.
    thread: u64,
    /// The events (capacity [`BUFFER_BYTES`], reserved at creation, so
    /// appending never allocates).
    bytes: SysVec<u8>,
    events: u64,
}

type Shared = SpinLock<Buffer>;

/// Every thread's buffer (as addresses of [`Shared`]).
pub(crate) static BUFFERS: SpinLock<SysVec<usize>> = SpinLock::new(sys_vec());

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
    /// Writes the buffered events to `st`'s log and empties the buffer.
    /// Inside the tracker, so that whatever the write allocates (a log
    /// callback may) is the tracker's own, neither logged nor waiting for
    /// this buffer's lock. From the tracker's hot path it stays there (a
    /// signal handler's allocation during the write is then deferred,
    /// invariant 12; the callback marks itself as the tracker's own work).
    fn flush_to(&mut self, st: &State) {
        let _busy = (!Busy::inside(st.epoch)).then(|| Busy::enter(st.epoch));
        if !self.bytes.is_empty() {
            st.log
                .write_chunk(&st.stacks, self.thread, &self.bytes, self.events);
        }
        self.bytes.clear();
        self.events = 0;
    }

    /// Flushes to the attached tracker, if any. The caller holds
    /// [`BUFFERS`] (the module's invariant).
    fn flush_attached(&mut self) {
        if !self.state.is_null() {
            // SAFETY: a non-null `state` is live while the caller holds
            // `BUFFERS` (module invariant).
            let st = unsafe { &*self.state };
            self.flush_to(st);
        }
    }
}

/// Appends `event` to the calling thread's buffer for tracker `st`,
/// flushing first if it is full. Without a buffer (out of memory, or
/// during the thread's teardown) the event is written alone. An event is
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
        // Held by this very thread when another tracker's log callback
        // allocates through this one while the buffer is being written:
        // then the event goes alone.
        let Some(mut b) = shared.try_lock() else {
            return false;
        };
        if b.epoch != st.epoch {
            drop(b);
            attach(shared, st);
            b = shared.lock();
        }
        if b.bytes.len() + N > BUFFER_BYTES {
            b.flush_to(st);
        }
        append_event(&mut b.bytes, event);
        b.events += 1;
        true
    });
    if !done {
        st.log.write_chunk(&st.stacks, thread_id(), event, 1);
    }
}

/// The calling thread's buffer, created at its first event and copied
/// into its state `t`; null when out of memory or during the thread's
/// teardown (its slot is gone: a buffer made now would never be freed).
#[cold]
fn adopt(t: &ThreadState) -> *mut Shared {
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
/// that not hold, the general path grows it).
#[inline(always)]
fn append_event<const N: usize>(bytes: &mut SysVec<u8>, event: &[u8; N]) {
    let len = bytes.len();
    if bytes.capacity() - len < N {
        return append(bytes, event);
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
}

/// A new buffer, listed in [`BUFFERS`]; null when out of memory.
#[cold]
fn create() -> *mut Shared {
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
    // Buffered events must reach the file even if no thread ends first.
    flush_at_exit();
    // SAFETY: a fresh block of the right size and alignment.
    unsafe {
        p.write(SpinLock::new(Buffer {
            state: core::ptr::null(),
            epoch: 0,
            thread: thread_id(),
            bytes,
            events: 0,
        }))
    };
    let mut all = BUFFERS.lock();
    if all.try_reserve(1).is_err() {
        drop(all);
        // SAFETY: made above, never shared.
        unsafe { free(p) };
        return core::ptr::null_mut();
    }
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
/// what it holds for another tracker (a thread that logs to two).
#[cold]
fn attach(shared: &Shared, st: &State) {
    let _all = BUFFERS.lock();
    let mut b = shared.lock();
    b.flush_attached();
    b.state = st;
    b.epoch = st.epoch;
}

/// The thread's end: flushes its buffer and frees it.
fn retire(p: *mut Shared) {
    let mut all = BUFFERS.lock();
    {
        // SAFETY: the slot's buffer, alive until freed below.
        let mut b = unsafe { &*p }.lock();
        b.flush_attached();
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
    each_buffer_of(st, &mut |b| b.flush_to(st));
}

/// Writes every thread's buffered events for tracker `st` and detaches
/// those buffers from it: `st` is about to be freed.
pub(crate) fn detach(st: &State) {
    each_buffer_of(st, &mut |b| {
        b.flush_to(st);
        b.state = core::ptr::null();
        b.epoch = 0;
    });
}

/// Calls `f` on every buffer attached to `st`, under its lock.
fn each_buffer_of(st: &State, f: &mut dyn FnMut(&mut Buffer)) {
    let all = BUFFERS.lock();
    for &p in all.iter() {
        // SAFETY: listed buffers are alive while `BUFFERS` is held (a
        // buffer is unlisted under it before being freed).
        let mut b = unsafe { &*(p as *const Shared) }.lock();
        if core::ptr::eq(b.state, st) {
            f(&mut b);
        }
    }
}

/// Writes every thread's buffered events, to whichever tracker each
/// belongs to.
fn flush_all() {
    let all = BUFFERS.lock();
    for &p in all.iter() {
        // SAFETY: as in `detach`.
        unsafe { &*(p as *const Shared) }.lock().flush_attached();
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
    finish_all();
}

/// Writes every thread's buffered events and ends every compact log
/// (nothing is logged after this).
pub(crate) fn finish_all() {
    flush_all();
    fork::for_each_state(&mut |st| {
        let _busy = Busy::enter(st.epoch);
        st.log.finish();
    });
}

/// In the child after `fork` (single-threaded, every lock free): the
/// other threads' buffers are gone with their threads, and this thread's
/// events are the parent's to write. Forgets them all, without touching
/// the other threads' buffers (their locks may have been held at the fork).
pub(crate) fn after_fork_in_child() {
    let mut all = BUFFERS.lock();
    all.clear();
    let _ = MINE.try_with(|slot| {
        let p = slot.0.get();
        if !p.is_null() {
            // SAFETY: the slot's buffer, alive until its destructor.
            let mut b = unsafe { &*p }.lock();
            b.bytes.clear();
            b.events = 0;
            // Listed again (its room is still there): a tracker dropped in
            // the child must find it to detach it (the module invariant).
            all.push(p as usize);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_append_whole_with_room_or_without() {
        let mut bytes = sys_vec();
        bytes.try_reserve_exact(8).unwrap();
        append_event(&mut bytes, &[1u8, 2, 3]);
        append_event(&mut bytes, &[4u8, 5, 6, 7, 8]);
        assert_eq!(&bytes[..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        // No room left: the general path grows the buffer.
        append_event(&mut bytes, &[9u8, 10]);
        assert_eq!(&bytes[..], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    }
}
