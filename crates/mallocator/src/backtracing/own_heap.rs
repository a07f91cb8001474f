//! Where the tracker's own memory comes from: its tables, its state, its
//! log buffers, and the blocks of the process-wide tracker behind
//! [`GlobalBacktracing`](super::GlobalBacktracing).
//!
//! Normally the C library's `malloc`. With the feature `own-heap-glibc`
//! (on glibc), glibc's allocator proper (`__libc_malloc`,
//! `__libc_memalign`, `__libc_free`) instead: the preload library of
//! `mallocator trace` defines `malloc` and hands every call to the
//! process-wide tracker, so a table that grew through `malloc` would call
//! back into the tracker while it holds that table's lock. Only there:
//! a malloc replacement may take some of glibc's names but not all
//! (AddressSanitizer takes `__libc_malloc` but not `__libc_free`, so a
//! C program built with it crashed freeing the tracker's blocks), and
//! sanitizer builds of this crate (`scripts/sanitize.sh`) never use them.

use crate::valloc::Valloc;

/// glibc's allocator, reached by the names no interposing library
/// defines.
#[cfg(glibc_own_heap)]
mod glibc {
    use core::ffi::c_void;

    use crate::valloc::VallocVtable;

    extern "C" {
        fn __libc_malloc(size: usize) -> *mut c_void;
        fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
        fn __libc_free(ptr: *mut c_void);
    }

    /// What `malloc` aligns to on the 64-bit targets glibc supports.
    const MALLOC_ALIGN: usize = 2 * core::mem::size_of::<usize>();

    /// Written out rather than made from a `RawAlloc`: the handle's
    /// methods have checked the request already (`align` a power of two,
    /// `size` at least 1 and not overflowing), and this is every tracked
    /// allocation's path.
    pub(super) static VTABLE: VallocVtable = VallocVtable {
        malloc: glibc_malloc,
        free: glibc_free,
    };

    /// # Safety
    /// Called through a handle's methods only: `align` is a power of two.
    unsafe extern "C" fn glibc_malloc(
        _self: *mut c_void,
        align: usize,
        size: usize,
    ) -> *mut c_void {
        if align <= MALLOC_ALIGN {
            // SAFETY: no preconditions.
            unsafe { __libc_malloc(size) }
        } else {
            // SAFETY: `align` is a power of two (this function's contract).
            unsafe { __libc_memalign(align, size) }
        }
    }

    /// # Safety
    /// `ptr` is null or came from `glibc_malloc` and is not used after.
    unsafe extern "C" fn glibc_free(_self: *mut c_void, ptr: *mut c_void) {
        // SAFETY: this function's contract; `__libc_free(NULL)` does nothing.
        unsafe { __libc_free(ptr) }
    }
}

/// The handle for the tracker's own memory (see the module docs).
#[cfg(glibc_own_heap)]
pub(crate) const fn own_heap() -> Valloc<'static> {
    // SAFETY: the vtable's functions take any `self` (they ignore it),
    // and live for the whole program.
    unsafe { Valloc::from_raw(core::ptr::null_mut(), &glibc::VTABLE) }
}

/// The handle for the tracker's own memory (see the module docs).
#[cfg(not(glibc_own_heap))]
pub(crate) const fn own_heap() -> Valloc<'static> {
    Valloc::libc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_heap_blocks_are_aligned_and_writable() {
        let h = own_heap();
        for align in [1, 8, 16, 64, 4096] {
            let p = h.malloc(align, 100);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            // SAFETY: `p` is a fresh block of 100 bytes.
            unsafe {
                p.write_bytes(0xa5, 100);
                h.free(p);
            }
        }
    }
}
