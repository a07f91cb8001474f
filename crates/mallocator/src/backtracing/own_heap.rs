//! Where the tracker's own memory comes from: its tables, its state, its
//! log buffers, and the blocks of the process-wide tracker behind
//! [`GlobalBacktracing`](super::GlobalBacktracing).
//!
//! On glibc that is glibc's allocator proper (`__libc_malloc`,
//! `__libc_memalign`, `__libc_free`), not the `malloc` symbol: when the
//! tracker is itself the program's `malloc` (the preload library of
//! `mallocator trace` defines `malloc` and hands every call to the
//! process-wide tracker), a table that grew through `malloc` would call
//! back into the tracker while it holds that table's lock. Elsewhere it
//! is the C library's `malloc` (no interposition to avoid there).

use crate::valloc::Valloc;

/// glibc's allocator, reached by the names no interposing library
/// defines.
#[cfg(all(target_os = "linux", target_env = "gnu", not(miri)))]
mod glibc {
    use core::alloc::Layout;
    use core::ffi::c_void;
    use core::ptr::NonNull;

    use crate::valloc::{AllocError, RawAlloc};

    extern "C" {
        fn __libc_malloc(size: usize) -> *mut c_void;
        fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
        fn __libc_free(ptr: *mut c_void);
    }

    /// What `malloc` aligns to on the 64-bit targets glibc supports.
    const MALLOC_ALIGN: usize = 2 * core::mem::size_of::<usize>();

    pub(super) struct Glibc;

    // SAFETY: `__libc_malloc` and `__libc_memalign` are glibc's `malloc`
    // and `memalign` (blocks of at least the size asked, aligned as
    // asked, until `__libc_free`); `layout.size()` is never 0 through a
    // handle.
    unsafe impl RawAlloc for Glibc {
        #[inline]
        fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
            let block = if layout.align() <= MALLOC_ALIGN {
                // SAFETY: no preconditions.
                unsafe { __libc_malloc(layout.size()) }
            } else {
                // SAFETY: `layout.align()` is a power of two.
                unsafe { __libc_memalign(layout.align(), layout.size()) }
            };
            NonNull::new(block.cast()).ok_or(AllocError)
        }

        #[inline]
        unsafe fn free(&self, ptr: NonNull<u8>) {
            // SAFETY: `ptr` came from `alloc` above (the trait's contract).
            unsafe { __libc_free(ptr.as_ptr().cast()) }
        }
    }
}

/// The handle for the tracker's own memory (see the module docs).
#[cfg(all(target_os = "linux", target_env = "gnu", not(miri)))]
pub(crate) const fn own_heap() -> Valloc<'static> {
    Valloc::new(&glibc::Glibc)
}

/// The handle for the tracker's own memory (see the module docs).
#[cfg(not(all(target_os = "linux", target_env = "gnu", not(miri))))]
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
