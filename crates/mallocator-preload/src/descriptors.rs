//! `close`, `close_range`, `closefrom`, `dup2` and `dup3`, defined here
//! so that the program cannot close or replace the descriptor its log is
//! written through.
//!
//! The log's descriptor is in the program's table, which programs clean
//! without knowing it is there: OpenSSH, daemons and sandboxes close
//! every descriptor above 2 when they start (`close_range`, `closefrom`,
//! or `close` in a loop up to the limit). The log then ended with no end
//! record and its events lost, or, once the program opened a file of its
//! own under the freed number, went on into that file. The tracker moves
//! its log up, out of the numbers programs name (a shell script's `exec
//! 3>file` is a `dup2` onto descriptor 3), and lists it
//! (`mallocator::backtracing::holds_descriptor`); these functions leave
//! a listed descriptor alone, as Valgrind does its own:
//! * `close` of it fails with `EBADF`, as if it were not open;
//! * `close_range` and `closefrom` close everything else in their range
//!   (the ranges around it);
//! * `dup2` and `dup3` onto it fail with `EBADF`.
//!
//! A program that makes the system call itself, not through the C
//! library, still reaches it.

use core::ffi::{c_int, c_long, c_uint};

use mallocator::backtracing::{holds_descriptor, log_descriptors};

use crate::next::Next;

type Close = unsafe extern "C" fn(c_int) -> c_int;
type Dup2 = unsafe extern "C" fn(c_int, c_int) -> c_int;
type Dup3 = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;

/// The C library's functions, looked up when the library starts
/// ([`look_up`]): `close` and `dup2` may be called from a signal
/// handler, where `dlsym` must not run (`close` is never looked up
/// elsewhere, see there).
static CLOSE: Next = Next::new(c"close");
static DUP2: Next = Next::new(c"dup2");
static DUP3: Next = Next::new(c"dup3");

/// Looks the C library's functions up; called when the library starts.
pub(crate) fn look_up() {
    for f in [&CLOSE, &DUP2, &DUP3] {
        f.look_up();
    }
}

/// Sets `errno` to `code` and returns -1, as a failed call does.
fn fail(code: c_int) -> c_int {
    // SAFETY: `__errno_location` returns this thread's `errno`.
    unsafe { *libc::__errno_location() = code };
    -1
}

/// # Safety
/// As C's `close`.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if holds_descriptor(fd) {
        return fail(libc::EBADF);
    }
    // Not looked up here: the tracker closes descriptors too, maybe
    // inside the program's first allocation, where `dlsym` (which may
    // allocate) must not run.
    // SAFETY: `close`'s C type.
    match unsafe { CLOSE.known::<Close>() } {
        // SAFETY: as our caller promised.
        Some(close) => unsafe { close(fd) },
        // Before the library's start: the system call (which is all the
        // C library's `close` makes, but for thread cancellation).
        // SAFETY: as our caller promised.
        None => unsafe { libc::syscall(libc::SYS_close, fd) as c_int },
    }
}

/// # Safety
/// As C's `close_range`.
#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    if first > last {
        // SAFETY: as our caller promised (the kernel says `EINVAL`).
        return unsafe { close_range_call(first, last, flags) };
    }
    let mut from = first;
    for &fd in log_descriptors().iter() {
        let fd = fd as c_uint;
        if fd < from || fd > last {
            continue;
        }
        if from < fd {
            // SAFETY: as our caller promised, for a part of the range.
            let closed = unsafe { close_range_call(from, fd - 1, flags) };
            if closed != 0 {
                return closed;
            }
        }
        // A descriptor is below `c_int::MAX`: no overflow.
        from = fd + 1;
    }
    if from > last {
        // The range ended with a log's descriptor.
        return 0;
    }
    // SAFETY: as our caller promised.
    unsafe { close_range_call(from, last, flags) }
}

/// The `close_range` system call (the C library's function makes just
/// it, and lacks it before glibc 2.34).
///
/// # Safety
/// As C's `close_range`.
unsafe fn close_range_call(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    // SAFETY: as our caller promised; no memory is passed.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, flags as c_long) as c_int }
}

/// # Safety
/// As C's `closefrom`.
#[no_mangle]
pub unsafe extern "C" fn closefrom(low: c_int) {
    let low = low.max(0) as c_uint;
    // As the C library's: one `close_range` (this library's, around the
    // logs' descriptors) ...
    // SAFETY: as our caller promised.
    if unsafe { close_range(low, c_uint::MAX, 0) } == 0 {
        return;
    }
    // ... or, on a kernel without it (before Linux 5.9), one descriptor
    // at a time up to the process's limit, through this library's
    // `close`, which leaves the logs' alone.
    // SAFETY: no preconditions.
    let limit = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let last = c_int::try_from(limit).unwrap_or(c_int::MAX);
    for fd in low as c_int..last {
        // SAFETY: as our caller promised.
        unsafe { close(fd) };
    }
}

/// # Safety
/// As C's `dup2`.
#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    if old != new && holds_descriptor(new) {
        return fail(libc::EBADF);
    }
    // SAFETY: `dup2`'s C type.
    match unsafe { DUP2.get::<Dup2>() } {
        // SAFETY: as our caller promised.
        Some(dup2) => unsafe { dup2(old, new) },
        None => fail(libc::ENOSYS),
    }
}

/// # Safety
/// As C's `dup3`.
#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    if old != new && holds_descriptor(new) {
        return fail(libc::EBADF);
    }
    // SAFETY: `dup3`'s C type.
    match unsafe { DUP3.get::<Dup3>() } {
        // SAFETY: as our caller promised.
        Some(dup3) => unsafe { dup3(old, new, flags) },
        None => fail(libc::ENOSYS),
    }
}
