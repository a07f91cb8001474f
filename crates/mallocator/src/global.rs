//! [`GlobalValloc`]: any `'static` thread-safe handle as the program's
//! `#[global_allocator]`.

use core::alloc::{GlobalAlloc, Layout};

use crate::valloc::Valloc;

/// Adapts a `'static`, thread-safe [`Valloc`] to [`GlobalAlloc`].
///
/// ```
/// use mallocator::{GlobalValloc, Valloc};
///
/// #[global_allocator]
/// static GLOBAL: GlobalValloc = GlobalValloc::new(Valloc::libc());
///
/// let v: Vec<u32> = (0..1000).collect();
/// assert_eq!(v.iter().sum::<u32>(), 499_500);
/// ```
///
/// A null handle makes every allocation fail (the program aborts through
/// `handle_alloc_error`); a `Valloc<'_, Local>` is refused at compile time
/// because a global allocator must be `Sync`.
#[derive(Debug, Clone, Copy)]
pub struct GlobalValloc {
    handle: Valloc<'static>,
}

impl GlobalValloc {
    /// Wraps a handle; `const` so it can initialise a `static`.
    ///
    /// ```
    /// static GLOBAL: mallocator::GlobalValloc =
    ///     mallocator::GlobalValloc::new(mallocator::Valloc::libc());
    /// assert!(!GLOBAL.handle().is_null());
    /// ```
    pub const fn new(handle: Valloc<'static>) -> Self {
        GlobalValloc { handle }
    }

    /// The wrapped handle.
    ///
    /// ```
    /// let g = mallocator::GlobalValloc::new(mallocator::Valloc::null());
    /// assert!(g.handle().is_null());
    /// ```
    pub const fn handle(&self) -> Valloc<'static> {
        self.handle
    }
}

// SAFETY: `Valloc::malloc` returns null or a block of `layout.size()` bytes
// aligned to `layout.align()` (the handle's contract); `dealloc` gets only
// pointers that `alloc` returned, which is what `Valloc::free` requires.
unsafe impl GlobalAlloc for GlobalValloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.handle.malloc(layout.align(), layout.size())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `GlobalAlloc::dealloc`'s contract: `ptr` came from `alloc`.
        unsafe { self.handle.free(ptr) }
    }
}
