//! Thread cancellation for the tests that check that the tracker's calls
//! are not cancellation points: included by path into the unit tests of
//! `mallocator` and of `mallocator-c`, beside `child.rs`. Linux only.

use super::child::in_child_status;

// Not in the `libc` crate for Linux.
extern "C" {
    fn pthread_cancel(thread: libc::pthread_t) -> core::ffi::c_int;
}

/// Asks for the calling thread's cancellation, deferred (the default):
/// it acts at the thread's next cancellation point outside a `NoCancel`.
/// The test then ends its process with `_exit` (not a cancellation
/// point), in a child process or a fresh run of the test binary.
pub fn cancel_this_thread() {
    // SAFETY: `pthread_self()` is the calling thread, alive; a deferred
    // cancellation only sets its pending flag.
    unsafe { pthread_cancel(libc::pthread_self()) };
}

/// Runs `child` in a forked process (see [`in_child_status`]) after
/// asking for the cancellation of the child's only thread; `child`
/// returns the status the child ends with. Returns its wait status.
pub fn in_cancelled_child(child: impl FnOnce() -> core::ffi::c_int) -> core::ffi::c_int {
    in_child_status(|| {
        cancel_this_thread();
        child()
    })
}
