//! Thread cancellation for the tests that check that the tracker's calls
//! are not cancellation points: included by path into the unit tests of
//! `mallocator` and of `mallocator-c`. Linux only.

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

/// Runs `child` in a process forked from this one, after asking for the
/// cancellation of the child's only thread; `child` returns the status
/// the child then ends with (by `_exit`, not a cancellation point; 101
/// if it panics). Returns the child's wait status. A child that has not
/// ended within 60 s is killed and the test fails: a fork under an
/// emulator such as `qemu-user` (the cross-compiled tests) can hang in
/// the emulator's own locks.
pub fn in_cancelled_child(child: impl FnOnce() -> core::ffi::c_int) -> core::ffi::c_int {
    // SAFETY: the child runs `child` and `_exit`s, never returning into
    // the test harness; the C library's allocator is usable in it (its
    // fork handlers).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        cancel_this_thread();
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
        // SAFETY: ends the child without the test harness's exit.
        unsafe { libc::_exit(code) };
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut status = 0;
    loop {
        // SAFETY: polling for the child forked above.
        match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
            0 if std::time::Instant::now() > deadline => {
                // SAFETY: the child forked above, not yet waited for.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                panic!("the child hung");
            }
            0 => std::thread::sleep(std::time::Duration::from_millis(10)),
            waited => {
                assert_eq!(waited, pid, "waitpid");
                return status;
            }
        }
    }
}
