//! The C library's allocator, as a [`RawAlloc`] (behind [`Valloc::libc`]).
//!
//! * Unix: `malloc` when the alignment is one `malloc` guarantees anyway
//!   (as Rust's `System` allocator does), else `posix_memalign`; `free`.
//! * Windows: `_aligned_malloc` / `_aligned_free` from the C runtime
//!   (blocks from `_aligned_malloc` must not go to plain `free`).
//!
//! ```
//! use mallocator::{libc_alloc::LibcAlloc, Valloc};
//!
//! static LIBC: LibcAlloc = LibcAlloc;
//! assert_eq!(Valloc::new(&LIBC).vtable(), Valloc::new(&LIBC).vtable());
//! let p = Valloc::libc().malloc(64, 64);
//! assert_eq!(p as usize % 64, 0);
//! // SAFETY: `p` came from the libc handle.
//! unsafe { Valloc::libc().free(p) };
//! ```
//!
//! [`Valloc::libc`]: crate::Valloc::libc

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::valloc::{AllocError, RawAlloc};

/// The C library's allocator. Stateless and thread-safe: its handle's
/// `self` pointer is never read.
///
/// ```
/// use core::alloc::Layout;
/// use mallocator::{libc_alloc::LibcAlloc, RawAlloc};
///
/// let p = LibcAlloc.alloc(Layout::from_size_align(100, 256).unwrap()).unwrap();
/// assert_eq!(p.as_ptr() as usize % 256, 0);
/// // SAFETY: `p` came from `LibcAlloc::alloc`.
/// unsafe { LibcAlloc.free(p) };
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LibcAlloc;

/// The alignment `malloc` guarantees on this target (as in Rust's `std`).
#[cfg(unix)]
const MALLOC_ALIGN: usize = if cfg!(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "loongarch64",
    target_arch = "powerpc64",
    target_arch = "riscv64",
    target_arch = "s390x",
    target_arch = "sparc64",
)) {
    16
} else {
    8
};

#[cfg(unix)]
// SAFETY: `malloc` and `posix_memalign` return blocks of the requested size
// (at least; `layout.size()` is never 0 through a handle, and `malloc(0)`'s
// unique pointer is fine otherwise), aligned as asked, until `free`.
unsafe impl RawAlloc for LibcAlloc {
    #[inline]
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let block = if layout.align() <= MALLOC_ALIGN && layout.align() <= layout.size() {
            // SAFETY: `malloc` has no preconditions.
            unsafe { libc::malloc(layout.size()) }
        } else {
            let mut out = core::ptr::null_mut();
            // posix_memalign wants a power of two multiple of sizeof(void *).
            let align = layout.align().max(core::mem::size_of::<usize>());
            // SAFETY: `out` is a valid place to write; `align` is a power of
            // two and a multiple of the pointer size.
            match unsafe { libc::posix_memalign(&mut out, align, layout.size()) } {
                0 => out,
                _ => core::ptr::null_mut(),
            }
        };
        NonNull::new(block.cast()).ok_or(AllocError)
    }

    #[inline]
    unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: forwarded from the trait's contract.
        unsafe { LibcAlloc::free_or_null(ptr.as_ptr()) }
    }
}

impl LibcAlloc {
    /// [`RawAlloc::free`], also accepting null (a no-op, as in C), which
    /// spares the libc handle a null check of its own.
    ///
    /// # Safety
    /// `ptr` is null or a live block from [`RawAlloc::alloc`] of `LibcAlloc`.
    #[cfg(unix)]
    #[inline]
    pub(crate) unsafe fn free_or_null(ptr: *mut u8) {
        // SAFETY: `ptr` is null or came from `malloc` or `posix_memalign`,
        // both of which pair with `free`; `free(NULL)` does nothing.
        unsafe { libc::free(ptr.cast()) }
    }

    /// [`RawAlloc::free`], also accepting null (a no-op, as in C), which
    /// spares the libc handle a null check of its own.
    ///
    /// # Safety
    /// `ptr` is null or a live block from [`RawAlloc::alloc`] of `LibcAlloc`.
    #[cfg(windows)]
    #[inline]
    pub(crate) unsafe fn free_or_null(ptr: *mut u8) {
        // SAFETY: `ptr` is null or came from `_aligned_malloc`;
        // `_aligned_free(NULL)` does nothing.
        unsafe { crt::_aligned_free(ptr.cast()) }
    }
}

#[cfg(windows)]
mod crt {
    use core::ffi::c_void;
    extern "C" {
        pub fn _aligned_malloc(size: usize, alignment: usize) -> *mut c_void;
        pub fn _aligned_free(block: *mut c_void);
    }
}

#[cfg(windows)]
// SAFETY: `_aligned_malloc` returns a block of `size` bytes aligned to the
// requested power of two, valid until `_aligned_free`.
unsafe impl RawAlloc for LibcAlloc {
    #[inline]
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: `layout.align()` is a power of two, as the CRT requires.
        let block = unsafe { crt::_aligned_malloc(layout.size(), layout.align()) };
        NonNull::new(block.cast()).ok_or(AllocError)
    }

    #[inline]
    unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: forwarded from the trait's contract.
        unsafe { LibcAlloc::free_or_null(ptr.as_ptr()) }
    }
}
