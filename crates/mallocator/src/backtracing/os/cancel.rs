//! Keeping thread cancellation (`pthread_cancel`) out of the tracker.
//!
//! A thread with deferred cancellation (the default) is cancelled at its
//! next *cancellation point*: `write`, `open`, `poll` and most other
//! calls that may block. The C library's allocator makes none, so a
//! program's thread that only allocates between its own cancellation
//! points is never cancelled inside `malloc`. The tracker does make some,
//! writing its log from inside `malloc` and `free`: cancelled there, the
//! thread would unwind out of the middle of a log write, losing stack
//! records that the log already counts as written (a damaged log) and
//! leaving the tracker's state half changed. So each such call runs
//! inside a [`NoCancel`]; a cancellation requested meanwhile waits for
//! the program's next cancellation point, as it would without the
//! tracker.
//!
//! Linux only (glibc and musl number the states alike); elsewhere a
//! no-op: Windows has no such cancellation, and the tracker is traced
//! into other programs only on Linux.

/// While it lives, the calling thread cannot be cancelled; then its
/// earlier cancelability is back (a cancellation requested meanwhile
/// then waits for the thread's next cancellation point). Every call of
/// the tracker's that opens, reads, writes or closes a file holds one;
/// code that writes a tracker's report itself from a function that must
/// not unwind (a C API, as `mallocator-c`'s `mlc_tracker_report`) holds
/// one too.
///
/// ```
/// use mallocator::backtracing::NoCancel;
///
/// let _no_cancel = NoCancel::now();
/// // `write`, `open`, `close`... cannot act on a `pthread_cancel` here.
/// ```
#[must_use]
#[derive(Debug)]
pub struct NoCancel {
    #[cfg(all(target_os = "linux", not(miri)))]
    before: core::ffi::c_int,
}

#[cfg(all(target_os = "linux", not(miri)))]
mod ffi {
    use core::ffi::c_int;

    pub(super) const PTHREAD_CANCEL_DISABLE: c_int = 1;

    // Not in the `libc` crate for Linux.
    extern "C" {
        pub(super) fn pthread_setcancelstate(state: c_int, before: *mut c_int) -> c_int;
    }
}

impl NoCancel {
    /// Disables cancellation of the calling thread.
    #[inline]
    pub fn now() -> NoCancel {
        #[cfg(all(target_os = "linux", not(miri)))]
        {
            let mut before = 0;
            // SAFETY: a valid state and a writable output; it changes only
            // the calling thread's cancelability.
            unsafe { ffi::pthread_setcancelstate(ffi::PTHREAD_CANCEL_DISABLE, &mut before) };
            NoCancel { before }
        }
        #[cfg(not(all(target_os = "linux", not(miri))))]
        NoCancel {}
    }
}

impl Drop for NoCancel {
    #[inline]
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", not(miri)))]
        {
            let mut ignored = 0;
            // SAFETY: as in `now`; `before` is a state it gave.
            unsafe { ffi::pthread_setcancelstate(self.before, &mut ignored) };
        }
    }
}
