//! Errors for C: a return code and a thread-local message
//! (`mlc_last_error`).

use core::cell::RefCell;
use core::ffi::{c_char, c_int};
use std::ffi::CString;

/// Return codes (`MLC_OK`, `MLC_ERR_*` in `mallocator.h`).
pub const MLC_OK: c_int = 0;
/// A NULL object, a bad value.
pub const MLC_ERR_ARGUMENT: c_int = -1;
/// Out of memory, or the arena is full.
pub const MLC_ERR_MEMORY: c_int = -2;
/// The operating system refused.
pub const MLC_ERR_OS: c_int = -3;

std::thread_local! {
    /// The message of this thread's last failed call.
    static LAST: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Records `message` as this thread's last error and returns `code`.
pub(crate) fn fail(code: c_int, message: impl Into<String>) -> c_int {
    let mut text: Vec<u8> = message.into().into_bytes();
    text.retain(|&b| b != 0);
    let text = CString::new(text).unwrap_or_default();
    let _ = LAST.try_with(|l| *l.borrow_mut() = Some(text));
    code
}

/// Records `message` and returns NULL.
pub(crate) fn fail_null<T>(message: impl Into<String>) -> *mut T {
    fail(MLC_ERR_ARGUMENT, message);
    core::ptr::null_mut()
}

/// Runs `f`, turning a panic (which must not unwind into C) into an
/// error: `on_panic` is returned and the panic message recorded.
pub(crate) fn guard<R>(on_panic: R, f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            fail(MLC_ERR_ARGUMENT, format!("internal error: {what}"));
            on_panic
        }
    }
}

/// A description of this thread's last failed call, or NULL if none
/// failed yet. Valid until this thread's next mallocator call.
#[no_mangle]
pub extern "C" fn mlc_last_error() -> *const c_char {
    LAST.try_with(|l| {
        l.borrow()
            .as_ref()
            .map_or(core::ptr::null(), |m| m.as_ptr())
    })
    .unwrap_or(core::ptr::null())
}
