//! `fd_valloc.h`: Firedancer's fd_valloc interface under its own names,
//! over the same handle type (see the header for what differs).

use core::ffi::{c_int, c_void};
use std::sync::Mutex;

use mallocator_core::backtracing::{Backtracing, Config, LogFormat, LogTarget};

use crate::error::{fail, guard, MLC_ERR_ARGUMENT};
use crate::handle::{mlc_libc_valloc, mlc_valloc_free, mlc_valloc_malloc, MlcValloc};

/// Every tracker `fd_backtracing_alloc_virtual` made (as addresses): they
/// live until the process exits.
static TRACKERS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// The C library's allocator.
#[no_mangle]
pub extern "C" fn fd_libc_alloc_virtual() -> MlcValloc {
    mlc_libc_valloc()
}

/// The null handle.
#[no_mangle]
pub extern "C" fn fd_null_alloc_virtual() -> MlcValloc {
    MlcValloc::NULL
}

/// 1 for the null handle, else 0.
#[no_mangle]
pub extern "C" fn fd_is_null_alloc_virtual(valloc: MlcValloc) -> c_int {
    c_int::from(valloc.vt.is_null())
}

/// A tracker over a copy of `*inner_valloc` that logs every call to
/// standard output in the original's text format; it lives until the
/// process exits.
#[no_mangle]
pub unsafe extern "C" fn fd_backtracing_alloc_virtual(inner_valloc: *mut MlcValloc) -> MlcValloc {
    guard(MlcValloc::NULL, || {
        if inner_valloc.is_null() {
            fail(
                MLC_ERR_ARGUMENT,
                "fd_backtracing_alloc_virtual: inner_valloc is NULL",
            );
            return MlcValloc::NULL;
        }
        // SAFETY: a readable handle (the caller's promise); copied, so the
        // variable it points to may go away afterwards.
        let inner = unsafe { inner_valloc.read() };
        if inner.vt.is_null() {
            fail(
                MLC_ERR_ARGUMENT,
                "fd_backtracing_alloc_virtual: the inner handle is the null handle",
            );
            return MlcValloc::NULL;
        }
        // SAFETY: the inner handle stays usable for the program's life
        // (the fd_valloc contract: handles are not deleted).
        let inner = unsafe { inner.to_valloc() };
        let config = Config {
            log: LogTarget::Stdout,
            log_format: LogFormat::Firedancer,
            ..Config::DEFAULT
        };
        // Lives as long as the process: fd_valloc has no delete. Kept in
        // a list, so that leak checkers see it as reachable, not lost.
        let tracker: &'static Backtracing<'static> =
            Box::leak(Box::new(Backtracing::with_config(inner, config)));
        TRACKERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tracker as *const Backtracing<'static> as usize);
        MlcValloc::from_valloc(tracker.valloc())
    })
}

/// Allocates through `valloc` (as `mlc_valloc_malloc`).
#[no_mangle]
pub unsafe extern "C" fn fd_valloc_malloc(
    valloc: MlcValloc,
    align: usize,
    sz: usize,
) -> *mut c_void {
    // SAFETY: the same contract.
    unsafe { mlc_valloc_malloc(valloc, align, sz) }
}

/// Frees through `valloc` (as `mlc_valloc_free`).
#[no_mangle]
pub unsafe extern "C" fn fd_valloc_free(valloc: MlcValloc, ptr: *mut c_void) {
    // SAFETY: the same contract.
    unsafe { mlc_valloc_free(valloc, ptr) }
}
