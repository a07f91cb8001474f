//! The allocator handle for C: `mlc_valloc_t`, the same two pointers as
//! the `mallocator` crate's `Valloc` and Firedancer's `fd_valloc_t`.

use core::ffi::{c_int, c_void};

use mallocator_core::valloc::request_layout;
use mallocator_core::{Valloc, VallocVtable};

use crate::error::{fail, fail_null, MLC_ERR_ARGUMENT};

/// `mlc_valloc_vtable_t`: the functions behind a handle.
pub type MlcVallocVtable = VallocVtable;

/// `mlc_valloc_t` (= `fd_valloc_t`): an allocator's state and its
/// functions, passed by value.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlcValloc {
    /// The allocator's state, passed to its functions.
    pub self_: *mut c_void,
    /// Its functions; NULL for the null handle.
    pub vt: *const MlcVallocVtable,
}

// `Valloc` is `#[repr(C)] { self_, vt, PhantomData }`: the same layout.
const _: () = assert!(core::mem::size_of::<MlcValloc>() == core::mem::size_of::<Valloc<'static>>());
const _: () =
    assert!(core::mem::align_of::<MlcValloc>() == core::mem::align_of::<Valloc<'static>>());

impl MlcValloc {
    /// The handle of a Rust `Valloc`.
    pub(crate) fn from_valloc<S: mallocator_core::Sharing>(v: Valloc<'_, S>) -> MlcValloc {
        MlcValloc {
            self_: v.self_ptr(),
            vt: v.vtable(),
        }
    }

    /// The null handle.
    pub(crate) const NULL: MlcValloc = MlcValloc {
        self_: core::ptr::null_mut(),
        vt: core::ptr::null(),
    };

    /// This handle as a Rust `Valloc`.
    ///
    /// # Safety
    /// The handle is the null handle, or its vtable's functions may be
    /// called with its `self_` for as long as the result is used, from
    /// any thread the result is used on (the C caller's promise).
    pub(crate) unsafe fn to_valloc(self) -> Valloc<'static> {
        if self.vt.is_null() {
            return Valloc::null();
        }
        // SAFETY: the caller's promise is `from_raw`'s contract.
        unsafe { Valloc::from_raw(self.self_, self.vt) }
    }
}

/// The C library's allocator.
#[no_mangle]
pub extern "C" fn mlc_libc_valloc() -> MlcValloc {
    MlcValloc::from_valloc(Valloc::libc())
}

/// The null handle.
#[no_mangle]
pub extern "C" fn mlc_null_valloc() -> MlcValloc {
    MlcValloc::NULL
}

/// 1 for the null handle, else 0.
#[no_mangle]
pub extern "C" fn mlc_valloc_is_null(v: MlcValloc) -> c_int {
    c_int::from(v.vt.is_null())
}

/// Allocates through `v`, checking the request first (see the header).
#[no_mangle]
pub unsafe extern "C" fn mlc_valloc_malloc(v: MlcValloc, align: usize, size: usize) -> *mut c_void {
    if v.vt.is_null() {
        return fail_null("mlc_valloc_malloc: the null handle does not allocate");
    }
    if request_layout(align, size).is_err() {
        return fail_null(format!(
            "mlc_valloc_malloc: invalid request: align {align} (a power of two, or 0 for 16), \
             size {size} (at most isize::MAX once rounded up to align)"
        ));
    }
    // SAFETY: a non-null handle from C is valid for this call (the
    // caller's promise, documented in the header).
    let v = unsafe { v.to_valloc() };
    match v.try_malloc(align, size) {
        Ok(p) => p.as_ptr().cast(),
        Err(_) => {
            fail(
                crate::error::MLC_ERR_MEMORY,
                format!("mlc_valloc_malloc: the allocator has no {size} bytes aligned to {align}"),
            );
            core::ptr::null_mut()
        }
    }
}

/// Frees `ptr` through `v`; NULL and the null handle do nothing.
#[no_mangle]
pub unsafe extern "C" fn mlc_valloc_free(v: MlcValloc, ptr: *mut c_void) {
    if v.vt.is_null() || ptr.is_null() {
        return;
    }
    // SAFETY: `v` is valid for this call and `ptr` came from it (the
    // caller's promise, as for free(3)).
    unsafe { v.to_valloc().free(ptr.cast()) }
}

/// `MLC_ERR_ARGUMENT` with "`what`: NULL"; for the entry points' checks.
pub(crate) fn null_argument(what: &str) -> c_int {
    fail(MLC_ERR_ARGUMENT, format!("{what} is NULL"))
}
