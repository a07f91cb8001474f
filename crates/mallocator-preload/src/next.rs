//! The C library's definitions of the functions this library defines
//! over them (`abort`, `dlclose`, the `exec` family, `close` and the
//! rest), which each definition here ends by calling.

use core::ffi::{c_char, c_void, CStr};
use core::sync::atomic::{AtomicUsize, Ordering};

/// The next definition of `name` (the C library's), as a function of
/// type `F`; `None` if there is none. Takes the dynamic loader's lock,
/// and may allocate: not for a signal handler, nor while another
/// library's fork handler runs (see [`Next`]).
///
/// # Safety
/// `F` is the C type of `name`.
pub(crate) unsafe fn next<F: Copy>(name: &CStr) -> Option<F> {
    // SAFETY: a valid name.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr() as *const c_char) };
    // SAFETY: `F` is a function pointer type for `name` (the caller's
    // promise), the size of a pointer.
    (!f.is_null()).then(|| unsafe { core::mem::transmute_copy::<*mut c_void, F>(&f) })
}

/// The C library's definition of one function, looked up once: when the
/// library starts ([`look_up`](Next::look_up), for the functions a
/// signal handler may call, where [`next`] must not run), or else at
/// the first call.
pub(crate) struct Next {
    name: &'static CStr,
    /// The function's address; [`UNKNOWN`] before it is looked up,
    /// [`NONE`] once it was and the C library has none.
    at: AtomicUsize,
}

/// [`Next::at`] before the function is looked up.
const UNKNOWN: usize = 0;
/// [`Next::at`] once the function is looked up and not found.
const NONE: usize = 1;

impl Next {
    /// The C library's function called `name`.
    pub(crate) const fn new(name: &'static CStr) -> Next {
        Next {
            name,
            at: AtomicUsize::new(UNKNOWN),
        }
    }

    /// Looks the function up now.
    pub(crate) fn look_up(&self) {
        // SAFETY: only the address is kept, and called as the function's
        // C type (`get`'s caller's promise).
        let f = unsafe { next::<*mut c_void>(self.name) };
        self.at
            .store(f.map_or(NONE, |f| f as usize), Ordering::Release);
    }

    /// The function, as type `F`, looked up now if it was not yet;
    /// `None` when the C library has none.
    ///
    /// # Safety
    /// `F` is the C type of the function.
    pub(crate) unsafe fn get<F: Copy>(&self) -> Option<F> {
        if self.at.load(Ordering::Acquire) == UNKNOWN {
            self.look_up();
        }
        // SAFETY: the caller's promise.
        unsafe { self.known() }
    }

    /// The function, as type `F`, if it was looked up and found; never
    /// looks it up (for a function the tracker itself calls, maybe
    /// inside an allocation before the library starts).
    ///
    /// # Safety
    /// `F` is the C type of the function.
    pub(crate) unsafe fn known<F: Copy>(&self) -> Option<F> {
        match self.at.load(Ordering::Acquire) {
            UNKNOWN | NONE => None,
            // SAFETY: a function's address, of type `F` (the caller's
            // promise), the size of a pointer.
            f => Some(unsafe { core::mem::transmute_copy::<usize, F>(&f) }),
        }
    }
}
