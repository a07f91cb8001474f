//! The process: hooks on its exit and on `fork`, its id, executable and
//! working directory, and ending it at once.

/// Runs `f` when the process exits normally (C `atexit`); on Linux also
/// when it ends by `quick_exit` (C11's exit without cleanup, which runs
/// only the `at_quick_exit` functions): the log's end and the exit
/// report belong to every way out that runs code of the process's.
///
/// On Linux `f` is registered for the process, not for the shared object
/// this code is in (C `atexit` in a shared library registers it for that
/// object, whose finalizer then runs it from inside the loader's
/// `_dl_fini`): so `exit` runs it itself, after every object's
/// destructors (whose frees the log then holds), and with `exit`'s frame
/// on the stack for the leak scan to start at (the finalizer's caller in
/// the C runtime has no call-frame information, and no unwinder gets
/// past it). A shared library holding this code is linked so that it is
/// never unloaded (`-z nodelete`), so `f` is still there at exit.
#[cfg(all(unix, not(miri)))]
pub(crate) fn at_exit(f: extern "C" fn()) {
    #[cfg(target_os = "linux")]
    {
        use core::ffi::{c_int, c_void};
        // Not in the `libc` crate; in glibc and musl.
        extern "C" {
            fn at_quick_exit(f: extern "C" fn()) -> c_int;
            fn __cxa_atexit(
                f: unsafe extern "C" fn(*mut c_void),
                arg: *mut c_void,
                dso: *mut c_void,
            ) -> c_int;
        }
        // `__cxa_atexit` calls its function with one argument; `f` takes
        // none. C's own `atexit` registers its function the same way (cast,
        // with a null argument): the C calling convention lets a callee
        // ignore arguments it does not declare. Registering `f` itself
        // rather than a trampoline that takes `f` as its argument matters
        // under ThreadSanitizer, whose interceptor treats a null object
        // handle as `atexit` and calls the function with no argument.
        // SAFETY: the two function-pointer types have one size and
        // representation; the call with an extra argument is the C ABI's
        // (see above), made by the C library, not by Rust code.
        let g = unsafe {
            core::mem::transmute::<extern "C" fn(), unsafe extern "C" fn(*mut c_void)>(f)
        };
        // SAFETY: `f` is a plain function valid for the whole program
        // (see above).
        unsafe {
            at_quick_exit(f);
            __cxa_atexit(g, core::ptr::null_mut(), core::ptr::null_mut());
        }
    }
    #[cfg(not(target_os = "linux"))]
    // SAFETY: `f` is a plain function valid for the whole program.
    unsafe {
        libc::atexit(f)
    };
}

/// Runs `f` when the process exits normally (the C runtime's `atexit`).
#[cfg(all(windows, not(miri)))]
pub(crate) fn at_exit(f: extern "C" fn()) {
    extern "C" {
        fn atexit(cb: extern "C" fn()) -> i32;
    }
    // SAFETY: `f` is a plain function valid for the whole program.
    unsafe { atexit(f) };
}

/// No exit hooks here (Miri, other platforms): the report must be asked
/// for explicitly.
#[cfg(any(miri, not(any(unix, windows))))]
pub(crate) fn at_exit(_f: extern "C" fn()) {}

/// Runs `f` with every signal blocked for this thread, so that no
/// handler runs on it meanwhile.
pub(crate) fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    let mask = block_signals();
    let result = f();
    restore_signals(&mask);
    result
}

/// A thread's signal mask, as [`block_signals`] found it.
#[cfg(all(unix, not(miri)))]
pub(crate) struct SignalMask(libc::sigset_t);

/// No signal handlers interrupt a thread here (Windows), or none are
/// run (Miri): nothing to keep.
#[cfg(any(not(unix), miri))]
pub(crate) struct SignalMask;

/// Blocks every signal for this thread, so that no handler runs on it
/// until [`restore_signals`]; returns the mask to restore.
#[cfg(all(unix, not(miri)))]
pub(crate) fn block_signals() -> SignalMask {
    // SAFETY: `sigset_t`s are plain data, filled by `sigfillset` and by
    // `pthread_sigmask`; blocking this thread's signals has no other
    // effect.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        SignalMask(old)
    }
}

/// Sets this thread's signal mask back to `mask`: a signal that came
/// while they were blocked is handled now.
#[cfg(all(unix, not(miri)))]
pub(crate) fn restore_signals(mask: &SignalMask) {
    // SAFETY: `mask.0` is a mask `pthread_sigmask` filled.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &mask.0, core::ptr::null_mut()) };
}

/// See [`SignalMask`]: nothing to block.
#[cfg(any(not(unix), miri))]
pub(crate) fn block_signals() -> SignalMask {
    SignalMask
}

/// See [`SignalMask`]: nothing to restore.
#[cfg(any(not(unix), miri))]
pub(crate) fn restore_signals(_mask: &SignalMask) {}

/// Runs `prepare` in the forking thread before every `fork`, `parent`
/// and `child` after it on each side (`pthread_atfork`).
#[cfg(all(unix, not(miri)))]
pub(crate) fn at_fork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    // SAFETY: plain functions valid for the whole program.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// No `fork` here (Windows), or no way to hook it (Miri).
#[cfg(any(not(unix), miri))]
pub(crate) fn at_fork(
    _prepare: extern "C" fn(),
    _parent: extern "C" fn(),
    _child: extern "C" fn(),
) {
}

/// What the compact log's header says about the process.
pub(crate) struct Process {
    pub pid: u32,
    /// Wall-clock time now, nanoseconds since the Unix epoch.
    pub now_ns: u64,
}

/// The process's id and the wall-clock time (0 under Miri, whose
/// isolation has no wall clock).
pub(crate) fn process() -> Process {
    #[cfg(miri)]
    let now_ns = 0;
    #[cfg(not(miri))]
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Process {
        pid: std::process::id(),
        now_ns,
    }
}

/// Longest path [`executable`] and [`working_directory`] report.
pub(crate) const PATH_MAX: usize = 4096;

/// Writes the executable's absolute path into `buf`, returning its
/// length (0 when unknown). No allocation: it runs under the log lock.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(miri)))]
pub(crate) fn executable(buf: &mut [u8; PATH_MAX]) -> usize {
    // SAFETY: the path is NUL-terminated; `buf` is writable for its length.
    let n = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 || n as usize >= buf.len() {
        0
    } else {
        n as usize
    }
}

/// Unknown on this platform (the log says so with an empty path).
#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(miri))))]
pub(crate) fn executable(_buf: &mut [u8; PATH_MAX]) -> usize {
    0
}

/// Writes the working directory into `buf`, returning its length (0
/// when unknown or too long).
#[cfg(all(unix, not(miri)))]
pub(crate) fn working_directory(buf: &mut [u8; PATH_MAX]) -> usize {
    // SAFETY: `buf` is writable for its length; `getcwd` NUL-terminates
    // what it writes, or fails.
    let p = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if p.is_null() {
        return 0;
    }
    buf.iter().position(|&b| b == 0).unwrap_or(0)
}

/// Unknown here.
#[cfg(any(not(unix), miri))]
pub(crate) fn working_directory(_buf: &mut [u8; PATH_MAX]) -> usize {
    0
}

/// Ends the process now with `status`, without running the remaining
/// exit hooks (for an exit hook that decides the status; calling `exit`
/// again from inside one is undefined). C stdio buffers are flushed.
#[cfg(unix)]
pub(crate) fn exit_now(status: u8) -> ! {
    // SAFETY: flushing every stdio stream and ending the process have no
    // preconditions.
    unsafe {
        libc::fflush(core::ptr::null_mut());
        libc::_exit(status as libc::c_int)
    }
}

/// Ends the process now with `status` (see the Unix version).
#[cfg(windows)]
pub(crate) fn exit_now(status: u8) -> ! {
    // SAFETY: ends the process; no preconditions.
    unsafe { windows_sys::Win32::System::Threading::ExitProcess(status as u32) }
}

/// Ends the process now with `status`.
#[cfg(not(any(unix, windows)))]
pub(crate) fn exit_now(status: u8) -> ! {
    std::process::exit(status as i32)
}
