//! `pthread_getattr_np`, defined here so that the tracker knows the
//! calling thread's stack before the C library's takes a thread's lock.
//!
//! glibc's `pthread_getattr_np` holds the lock of the thread it describes
//! while it allocates (`realloc`, for the thread's CPU set; for the main
//! thread, `fopen` of `/proc/self/maps`). The tracker learns a thread's
//! stack bounds at the thread's first stack capture, by calling this same
//! function for the thread. So a thread whose first allocation is the one
//! inside its own `pthread_getattr_np` (a new thread of the JVM asks for
//! its stack before anything else) would wait in that allocation for the
//! lock it holds, forever; and two new threads asking for each other's
//! would each wait for the lock the other holds. Learning the bounds
//! here first, before any lock is taken, avoids both.
//!
//! The tracker's own call resolves to this definition too (the process's
//! calls, this library's included, find this library's first): the
//! tracker marks the bounds as being learnt before it calls, so that
//! [`learn_thread_stack`] returns at once then.

use core::ffi::c_int;

use mallocator::backtracing::learn_thread_stack;

use crate::next::Next;

/// The C library's `pthread_getattr_np`, looked up when the library
/// starts ([`look_up`]), so that the tracker's own first call, maybe
/// inside another library's fork handler, looks up nothing.
static PTHREAD_GETATTR_NP: Next = Next::new(c"pthread_getattr_np");

type GetAttr = unsafe extern "C" fn(libc::pthread_t, *mut libc::pthread_attr_t) -> c_int;

/// Looks up the C library's function (when the library starts).
pub(crate) fn look_up() {
    PTHREAD_GETATTR_NP.look_up();
}

/// # Safety
/// As C's `pthread_getattr_np`: `thread` is a live thread of the process,
/// `attr` points to writable memory for a `pthread_attr_t`.
#[no_mangle]
pub unsafe extern "C" fn pthread_getattr_np(
    thread: libc::pthread_t,
    attr: *mut libc::pthread_attr_t,
) -> c_int {
    learn_thread_stack();
    // SAFETY: `pthread_getattr_np`'s C type.
    match unsafe { PTHREAD_GETATTR_NP.get::<GetAttr>() } {
        // SAFETY: the caller's promise.
        Some(getattr) => unsafe { getattr(thread, attr) },
        // No C library function (cannot happen with glibc).
        None => libc::ENOSYS,
    }
}
