//! `dlclose`, defined here to tell the tracker when the program unloads
//! a library: another one loaded at its addresses later must not be
//! named after it in the log (see `Backtracing::objects_unloaded`).

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::hooks::TRACKER;
use crate::init::next;

/// The C library's `dlclose`, looked up at the first call (0 before).
static LIBC_DLCLOSE: AtomicUsize = AtomicUsize::new(0);

type Dlclose = unsafe extern "C" fn(*mut c_void) -> c_int;

/// # Safety
/// As C's `dlclose`: `handle` came from `dlopen` and is closed once.
#[no_mangle]
pub unsafe extern "C" fn dlclose(handle: *mut c_void) -> c_int {
    let dlclose = match LIBC_DLCLOSE.load(Ordering::Acquire) {
        // SAFETY: `dlclose`'s C type.
        0 => match unsafe { next::<Dlclose>(c"dlclose") } {
            Some(f) => {
                LIBC_DLCLOSE.store(f as usize, Ordering::Release);
                f
            }
            // No C library `dlclose` (cannot happen with glibc): the
            // handle stays open, as after a failed close.
            None => return -1,
        },
        // SAFETY: stored from `next::<Dlclose>` above.
        f => unsafe { core::mem::transmute::<usize, Dlclose>(f) },
    };
    // SAFETY: the caller's promise.
    let closed = unsafe { dlclose(handle) };
    if closed == 0 {
        TRACKER.tracker().objects_unloaded();
    }
    closed
}
