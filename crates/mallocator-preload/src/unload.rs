//! `dlclose`, defined here to tell the tracker when the program unloads
//! a library: another one loaded at its addresses later must not be
//! named after it in the log (see `Backtracing::objects_unloaded`).

use core::ffi::{c_int, c_void};

use crate::hooks::TRACKER;
use crate::next::Next;

/// The C library's `dlclose`, looked up at the first call.
static DLCLOSE: Next = Next::new(c"dlclose");

type Dlclose = unsafe extern "C" fn(*mut c_void) -> c_int;

/// # Safety
/// As C's `dlclose`: `handle` came from `dlopen` and is closed once.
#[no_mangle]
pub unsafe extern "C" fn dlclose(handle: *mut c_void) -> c_int {
    // SAFETY: `dlclose`'s C type.
    let Some(dlclose) = (unsafe { DLCLOSE.get::<Dlclose>() }) else {
        // No C library `dlclose` (cannot happen with glibc): the handle
        // stays open, as after a failed close.
        return -1;
    };
    // SAFETY: the caller's promise.
    let closed = unsafe { dlclose(handle) };
    if closed == 0 {
        TRACKER.tracker().objects_unloaded();
    }
    closed
}
