//! A forked child process with a watchdog, for tests of what would hang
//! or end the whole process: included by path into the unit tests of
//! `mallocator` and of `mallocator-c`. Unix only.

/// Runs `f` in a process forked from this one (which has only the
/// calling thread), and returns the child's wait status: the child ends
/// by `_exit` with the status `f` returns (101 if `f` panics, which must
/// not unwind into the test harness's copy). A child that has not ended
/// within 60 s is killed and the test fails: the watchdog is this
/// process, so a child that hangs with its signals blocked, or in an
/// emulator's own locks (a fork under `qemu-user`, which runs the
/// cross-compiled tests), is killed all the same.
pub fn in_child_status(f: impl FnOnce() -> core::ffi::c_int) -> core::ffi::c_int {
    // SAFETY: the child runs `f` and `_exit`s, never returning into the
    // test harness; the C library's allocator is usable in it (its fork
    // handlers), and anything else `f` waits for the watchdog cuts short.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: ends the child without the parent's exit handlers.
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
