//! A forked child process with a watchdog, for tests of what would hang
//! or end the whole process: included by path into the unit tests of
//! `mallocator` and of `mallocator-c`. Unix only.

use std::time::{Duration, Instant};

/// Runs `f` in a process forked from this one (which has only the
/// calling thread), and returns the child's wait status: the child ends
/// by `_exit` with the status `f` returns (101 if `f` panics, which must
/// not unwind into the test harness's copy). A child that has not ended
/// within 60 s is killed and the test fails: the watchdog is this
/// process, so a child that hangs with its signals blocked is killed all
/// the same.
///
/// Under an emulator (`MALLOCATOR_TEST_RUNNER` set: `qemu-user` runs the
/// cross-compiled tests), a child is killed after 30 s and forked again,
/// three times in all before the test fails. A child forked under
/// `qemu-user` from a process with many threads sometimes never ends
/// (seen now and then: in one CI run, and in two of eight runs of the
/// unit tests with 16 test threads), in tests that pass in every native
/// run, under the sanitizers too. A real hang in `f` hangs every try,
/// and native runs keep the single 60 s watchdog. Each try's memory is
/// this process's at the call, so `f` may run more than once only under
/// emulation; what a killed try changed outside its memory (a file, a
/// shared mapping) the next try sees.
pub fn in_child_status(f: impl FnOnce() -> core::ffi::c_int) -> core::ffi::c_int {
    let emulated = std::env::var_os("MALLOCATOR_TEST_RUNNER").is_some();
    let (tries, patience) = if emulated {
        (3, Duration::from_secs(30))
    } else {
        (1, Duration::from_secs(60))
    };
    in_child_tries(f, tries, patience)
}

/// [`in_child_status`] with its number of tries and the time each child
/// is given.
pub fn in_child_tries(
    f: impl FnOnce() -> core::ffi::c_int,
    tries: u32,
    patience: Duration,
) -> core::ffi::c_int {
    // Each child takes `f` from its own copy of this process's memory;
    // this process's copy stays here and is dropped on return.
    let mut f = Some(f);
    for _ in 0..tries {
        // SAFETY: the child runs `f` and `_exit`s, never returning into
        // the test harness; the C library's allocator is usable in it
        // (its fork handlers), and anything else `f` waits for the
        // watchdog cuts short.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let f = f.take().expect("taken only in a child, once");
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            // SAFETY: ends the child without the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        if let Some(status) = wait_at_most(pid, patience) {
            return status;
        }
        eprintln!("child {pid} hung for {patience:?}: killed");
    }
    panic!("the child hung ({tries} tries of {patience:?})");
}

/// Waits for the child `pid` for at most `patience`: its wait status, or
/// `None` when it had to be killed.
fn wait_at_most(pid: libc::pid_t, patience: Duration) -> Option<core::ffi::c_int> {
    let deadline = Instant::now() + patience;
    let mut status = 0;
    loop {
        // SAFETY: polling for the caller's child, not yet waited for.
        match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
            0 if Instant::now() > deadline => {
                // SAFETY: the caller's child, not yet waited for (a
                // zombie if it ended since the poll: the signal is then
                // lost on it, and its own status is returned).
                let waited = unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0)
                };
                assert_eq!(waited, pid, "waitpid");
                let killed = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL;
                return (!killed).then_some(status);
            }
            0 => std::thread::sleep(Duration::from_millis(10)),
            waited => {
                assert_eq!(waited, pid, "waitpid");
                return Some(status);
            }
        }
    }
}
