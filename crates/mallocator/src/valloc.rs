//! The virtual allocator handle: a C-compatible `{self, vtable}` pair.
//!
//! [`Valloc`] is the Rust twin of Firedancer's `fd_valloc_t`:
//!
//! ```c
//! struct fd_valloc_vtable {
//!   void * (*malloc)( void * self, ulong align, ulong sz );
//!   void   (*free  )( void * self, void * addr );
//! };
//! struct fd_valloc { void * self; fd_valloc_vtable_t const * vt; };
//! ```
//!
//! It has the same size, alignment and field offsets, so a handle can
//! cross the FFI boundary in either direction ([`Valloc::from_raw`],
//! [`Valloc::self_ptr`], [`Valloc::vtable`]). Above that ABI everything is
//! safe Rust:
//!
//! * the lifetime `'a` ties a handle to the allocator state it points at,
//!   so a handle can never outlive its allocator;
//! * the marker `S` ([`Shared`] or [`Local`]) records whether the
//!   allocator behind the handle is thread-safe; only `Valloc<'a, Shared>`
//!   is `Send` and `Sync`;
//! * every input has a defined answer (see [`request_layout`]), where the
//!   C version has undefined behaviour.
//!
//! Any Rust allocator becomes a handle source by implementing [`RawAlloc`];
//! [`Valloc::new`] / [`Valloc::new_local`] then build a handle through a
//! `static` vtable generated per type (no allocation, no boxing).
//!
//! ```
//! use mallocator::Valloc;
//!
//! let v = Valloc::libc();
//! let p = v.malloc(64, 1000);
//! assert!(!p.is_null() && p as usize % 64 == 0);
//! // SAFETY: `p` came from `v.malloc` and is freed once.
//! unsafe { v.free(p) };
//! ```

use core::alloc::Layout;
use core::ffi::c_void;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

pub use allocator_api2::alloc::AllocError;

#[cfg(any(unix, windows))]
use crate::libc_alloc::LibcAlloc;

/// The alignment used when a caller asks for alignment `0` (the C
/// convention of Firedancer's heap allocators): 16 bytes, enough for any
/// scalar type on the supported targets.
///
/// ```
/// use mallocator::valloc::{request_layout, DEFAULT_ALIGN};
/// assert_eq!(request_layout(0, 24).unwrap().align(), DEFAULT_ALIGN);
/// let p = mallocator::Valloc::libc().malloc(0, 24);
/// assert_eq!(p as usize % DEFAULT_ALIGN, 0);
/// // SAFETY: `p` came from the libc handle.
/// unsafe { mallocator::Valloc::libc().free(p) };
/// ```
pub const DEFAULT_ALIGN: usize = 16;

/// The C vtable: two function pointers, laid out like `fd_valloc_vtable_t`.
///
/// Implementations built by this crate (through [`RawAlloc`]) accept any
/// `align` and `size`: they apply [`request_layout`] and return null for
/// an invalid request, and ignore `free(NULL)`. `self` must be the
/// allocator the vtable was made for, but for one mistake they answer
/// too: a null `self` where the allocator has state makes `malloc`
/// return null and `free` do nothing (the block stays allocated).
///
/// ```
/// use mallocator::{Valloc, VallocVtable};
///
/// let v = Valloc::libc();
/// // SAFETY: the libc handle's vtable is `'static`.
/// let vt: &VallocVtable = unsafe { &*v.vtable() };
/// // SAFETY: the libc vtable accepts any arguments; `self` is unused by it.
/// let p = unsafe { (vt.malloc)(v.self_ptr(), 8, 24) };
/// assert!(!p.is_null());
/// // SAFETY: `p` came from this vtable's malloc.
/// unsafe { (vt.free)(v.self_ptr(), p) };
/// ```
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VallocVtable {
    /// `malloc(self, align, size)`: a block of `size` bytes aligned to
    /// `align`, or null on failure.
    pub malloc: unsafe extern "C" fn(self_: *mut c_void, align: usize, size: usize) -> *mut c_void,
    /// `free(self, ptr)`: gives back a block from `malloc`; `ptr` may be null.
    pub free: unsafe extern "C" fn(self_: *mut c_void, ptr: *mut c_void),
}

impl fmt::Debug for VallocVtable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VallocVtable")
            .field("malloc", &(self.malloc as *const ()))
            .field("free", &(self.free as *const ()))
            .finish()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Shared {}
    impl Sealed for super::Local {}
}

/// Whether the allocator behind a [`Valloc`] may be used from several
/// threads at once: [`Shared`] or [`Local`]. Sealed. Code that takes
/// any handle is generic over it:
///
/// ```
/// use mallocator::{Sharing, Valloc};
///
/// fn roundtrip<S: Sharing>(v: Valloc<'_, S>) -> bool {
///     let p = v.malloc(8, 32);
///     // SAFETY: `p` is null or came from `v`.
///     unsafe { v.free(p) };
///     !p.is_null()
/// }
/// assert!(roundtrip(Valloc::libc()));
/// assert!(roundtrip(Valloc::libc().into_local()));
/// assert!(!roundtrip(Valloc::null()));
/// ```
pub trait Sharing: sealed::Sealed + 'static {}

/// Marker: the allocator is thread-safe, so the handle is `Send + Sync`.
/// This is the default, `Valloc<'a>` means `Valloc<'a, Shared>`.
///
/// ```
/// fn assert_send_sync<T: Send + Sync>(_: T) {}
/// assert_send_sync(mallocator::Valloc::libc());
/// ```
#[derive(Debug)]
pub enum Shared {}

/// Marker: the allocator is not thread-safe (an arena, a `Cell`-based
/// counter), so the handle is neither `Send` nor `Sync`.
///
/// ```compile_fail,E0277
/// use mallocator::{Local, Valloc};
/// fn assert_send<T: Send>(_: T) {}
/// let v: Valloc<'static, Local> = Valloc::libc().into_local();
/// assert_send(v); // error: `Valloc<'_, Local>` is not `Send`
/// ```
#[derive(Debug)]
pub enum Local {}

impl Sharing for Shared {}
impl Sharing for Local {}

/// A copyable allocator handle: `{ self, vt }`, exactly like C's
/// `fd_valloc_t` (two pointers, `self` first).
///
/// * [`Valloc::libc`]: the C library's allocator.
/// * [`Valloc::null`]: a marker meaning "do not allocate"; every `malloc`
///   fails, `free` is ignored, [`is_null`](Valloc::is_null) is true.
/// * [`Valloc::new`] / [`Valloc::new_local`]: any [`RawAlloc`].
/// * [`Valloc::from_raw`]: a handle that came from C.
///
/// Defined behaviour for every input (the C version has none):
///
/// | request | answer |
/// |---|---|
/// | `align == 0` | [`DEFAULT_ALIGN`] (16) |
/// | `align` not a power of two | failure (null / `Err`) |
/// | `size` overflows `isize` when rounded up to `align` | failure |
/// | `size == 0` | a unique, aligned, freeable pointer (1 byte is reserved) |
/// | `free(null)` | nothing |
///
/// ```
/// use mallocator::Valloc;
///
/// let v = Valloc::libc();
/// assert!(v.malloc(3, 8).is_null());            // 3 is not a power of two
/// assert!(v.malloc(4096, usize::MAX).is_null()); // overflows when rounded
/// let z = v.malloc(0, 0);                        // align 0 means 16
/// assert!(!z.is_null() && z as usize % 16 == 0);
/// // SAFETY: `z` came from `v.malloc`.
/// unsafe { v.free(z) };
/// ```
///
/// A handle to an allocator that is not thread-safe cannot be made
/// [`Shared`], nor sent to another thread:
///
/// ```compile_fail,E0277
/// # use core::{alloc::Layout, cell::Cell, ptr::NonNull};
/// # use mallocator::{AllocError, RawAlloc, Valloc};
/// # struct Counting(Cell<usize>);
/// # unsafe impl RawAlloc for Counting {
/// #     fn alloc(&self, l: Layout) -> Result<NonNull<u8>, AllocError> { Valloc::libc().alloc_layout(l) }
/// #     unsafe fn free(&self, p: NonNull<u8>) { unsafe { Valloc::libc().free(p.as_ptr()) } }
/// # }
/// let counting = Counting(Cell::new(0));
/// let v = Valloc::new(&counting); // error: `Cell<usize>` is not `Sync`
/// ```
///
/// ```compile_fail,E0277
/// # use core::{alloc::Layout, cell::Cell, ptr::NonNull};
/// # use mallocator::{AllocError, RawAlloc, Valloc};
/// # struct Counting(Cell<usize>);
/// # unsafe impl RawAlloc for Counting {
/// #     fn alloc(&self, l: Layout) -> Result<NonNull<u8>, AllocError> { Valloc::libc().alloc_layout(l) }
/// #     unsafe fn free(&self, p: NonNull<u8>) { unsafe { Valloc::libc().free(p.as_ptr()) } }
/// # }
/// let counting = Counting(Cell::new(0));
/// let v = Valloc::new_local(&counting);
/// std::thread::scope(|s| {
///     s.spawn(|| v.is_null()); // error: `Valloc<'_, Local>` is not `Sync`
/// });
/// ```
///
/// Nor can a handle outlive the allocator it points at:
///
/// ```compile_fail,E0597
/// use mallocator::{libc_alloc::LibcAlloc, Valloc};
/// let v;
/// {
///     let allocator = LibcAlloc;
///     v = Valloc::new(&allocator); // error: `allocator` does not live long enough
/// }
/// v.malloc(8, 8);
/// ```
#[repr(C)]
pub struct Valloc<'a, S: Sharing = Shared> {
    self_: *mut c_void,
    vt: *const VallocVtable,
    _marker: HandleMarker<'a, S>,
}

/// Covariant in `'a`; carries `S` without affecting auto traits.
type HandleMarker<'a, S> = PhantomData<(&'a (), fn() -> S)>;

// SAFETY: a `Shared` handle is only built from a `Sync` allocator
// (`Valloc::new`), from the libc or null allocators (both thread-safe), or
// through `from_raw`, whose contract requires a thread-safe allocator. The
// handle itself is two immutable pointers.
unsafe impl Send for Valloc<'_, Shared> {}
// SAFETY: as for `Send` above: all operations go through `&self` of a
// thread-safe allocator.
unsafe impl Sync for Valloc<'_, Shared> {}

impl<S: Sharing> Clone for Valloc<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: Sharing> Copy for Valloc<'_, S> {}

impl<S: Sharing> PartialEq for Valloc<'_, S> {
    /// Two handles are equal when they have the same `self` and `vt`.
    fn eq(&self, other: &Self) -> bool {
        self.self_ == other.self_ && ptr::eq(self.vt, other.vt)
    }
}
impl<S: Sharing> Eq for Valloc<'_, S> {}

impl<S: Sharing> fmt::Debug for Valloc<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Valloc")
            .field("self", &self.self_)
            .field("vt", &self.vt)
            .finish()
    }
}

/// Validates a C-style `(align, size)` request and turns it into the
/// [`Layout`] every allocator of this crate receives.
///
/// * `align == 0` becomes [`DEFAULT_ALIGN`];
/// * an alignment that is not a power of two is an error;
/// * `size == 0` becomes 1, so that the pointer is unique and freeable;
/// * a size that overflows `isize::MAX` when rounded up to `align` is an
///   error (never a small block).
///
/// ```
/// use mallocator::valloc::request_layout;
///
/// assert_eq!(request_layout(0, 0).unwrap().align(), 16);
/// assert_eq!(request_layout(0, 0).unwrap().size(), 1);
/// assert!(request_layout(24, 8).is_err());
/// assert!(request_layout(8, usize::MAX - 3).is_err());
/// ```
#[inline]
pub fn request_layout(align: usize, size: usize) -> Result<Layout, AllocError> {
    let align = if align == 0 { DEFAULT_ALIGN } else { align };
    // `from_size_align` rejects a non-power-of-two `align` and a `size`
    // that overflows `isize::MAX` once rounded up to `align`.
    Layout::from_size_align(size.max(1), align).map_err(|_| AllocError)
}

/// A Rust allocator that can stand behind a [`Valloc`] handle.
///
/// Like the C vtable, `free` receives no size: an implementation that
/// needs one must record it.
///
/// # Safety
///
/// Implementers guarantee that a successful [`alloc`](RawAlloc::alloc)
/// returns a block of at least `layout.size()` bytes, aligned to
/// `layout.align()`, valid for reads and writes and disjoint from every
/// other live block, until it is passed to [`free`](RawAlloc::free) or the
/// allocator is dropped.
///
/// ```
/// use core::{alloc::Layout, ptr::NonNull, sync::atomic::{AtomicUsize, Ordering}};
/// use mallocator::{AllocError, RawAlloc, Valloc};
///
/// /// Counts the calls, and delegates to libc.
/// struct Counting(AtomicUsize);
///
/// // SAFETY: blocks come from the libc allocator, which upholds the contract.
/// unsafe impl RawAlloc for Counting {
///     fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         Valloc::libc().alloc_layout(layout)
///     }
///     unsafe fn free(&self, ptr: NonNull<u8>) {
///         // SAFETY: `ptr` came from `alloc`, i.e. from the libc allocator.
///         unsafe { Valloc::libc().free(ptr.as_ptr()) }
///     }
/// }
///
/// let counting = Counting(AtomicUsize::new(0));
/// let v = Valloc::new(&counting);
/// let p = v.malloc(8, 100);
/// // SAFETY: `p` came from `v`.
/// unsafe { v.free(p) };
/// assert_eq!(counting.0.load(Ordering::Relaxed), 1);
/// ```
pub unsafe trait RawAlloc {
    /// Allocates a block for `layout`. The layout always has a non-zero
    /// size when it comes through a [`Valloc`] (see [`request_layout`]).
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError>;

    /// Gives back a block.
    ///
    /// # Safety
    ///
    /// `ptr` was returned by `self.alloc` and has not been freed since,
    /// unless the implementation documents a wider contract (the
    /// backtracing allocator accepts and reports any pointer).
    unsafe fn free(&self, ptr: NonNull<u8>);
}

/// The `static` vtable of one [`RawAlloc`] type, and the two `extern "C"`
/// trampolines that call into it.
struct VtableOf<T>(PhantomData<T>);

impl<T: RawAlloc> VtableOf<T> {
    const VTABLE: &'static VallocVtable = &VallocVtable {
        malloc: malloc_trampoline::<T>,
        free: free_trampoline::<T>,
    };
}

/// The allocator behind a handle's `self`. A zero-sized (stateless) `T`,
/// like [`LibcAlloc`](crate::libc_alloc::LibcAlloc), is reached through a
/// dangling pointer instead, so that its handle may carry C's `self == NULL`
/// (`fd_libc_alloc_virtual` does).
///
/// `None` when `self_` is null and `T` is not zero-sized (see
/// [`VallocVtable`]: a C caller's mistake, answered, not followed).
///
/// # Safety
/// `self_` is null or points to a `T` that outlives `'t`, unless `T` is
/// zero-sized.
#[inline(always)]
unsafe fn allocator_from_self<'t, T>(self_: *mut c_void) -> Option<&'t T> {
    let this = if core::mem::size_of::<T>() == 0 {
        NonNull::<T>::dangling().as_ptr().cast_const()
    } else if self_.is_null() {
        return None;
    } else {
        self_.cast_const().cast::<T>()
    };
    // SAFETY: a dangling, aligned, non-null pointer is a valid reference to
    // a zero-sized value; otherwise `this` is not null and the caller
    // guarantees a live `T` (the handle was built from a `&'a T` and is
    // only usable during `'a`, or came from C under `from_raw`'s contract).
    Some(unsafe { &*this })
}

/// # Safety
/// `self_` is null or points to a live `T` (the handle constructors
/// guarantee the latter).
unsafe extern "C" fn malloc_trampoline<T: RawAlloc>(
    self_: *mut c_void,
    align: usize,
    size: usize,
) -> *mut c_void {
    let Ok(layout) = request_layout(align, size) else {
        return ptr::null_mut();
    };
    // SAFETY: `self_` is null, a live `T` or, for a stateless `T`, anything.
    let Some(allocator) = (unsafe { allocator_from_self::<T>(self_) }) else {
        return ptr::null_mut();
    };
    match allocator.alloc(layout) {
        Ok(block) => block.as_ptr().cast(),
        Err(AllocError) => ptr::null_mut(),
    }
}

/// # Safety
/// `self_` is null or points to a live `T`; `ptr` is null or satisfies
/// `T::free`.
unsafe extern "C" fn free_trampoline<T: RawAlloc>(self_: *mut c_void, ptr: *mut c_void) {
    let Some(block) = NonNull::new(ptr.cast::<u8>()) else {
        return;
    };
    // SAFETY: `self_` is null, a live `T` or, for a stateless `T`, anything.
    let Some(allocator) = (unsafe { allocator_from_self::<T>(self_) }) else {
        return;
    };
    // SAFETY: forwarded from this function's contract.
    unsafe { allocator.free(block) }
}

impl<'a> Valloc<'a, Shared> {
    /// A handle to a thread-safe Rust allocator, through a `static`
    /// vtable generated for `T`.
    ///
    /// ```
    /// use mallocator::{libc_alloc::LibcAlloc, Valloc};
    ///
    /// static LIBC: LibcAlloc = LibcAlloc;
    /// let v: Valloc<'static> = Valloc::new(&LIBC);
    /// let p = v.malloc(8, 8);
    /// assert!(!p.is_null());
    /// // SAFETY: `p` came from `v`.
    /// unsafe { v.free(p) };
    /// ```
    pub const fn new<T: RawAlloc + Sync>(allocator: &'a T) -> Self {
        Valloc {
            self_: allocator as *const T as *mut c_void,
            vt: VtableOf::<T>::VTABLE,
            _marker: PhantomData,
        }
    }

    /// Wraps a handle received from C, e.g. `fd_valloc_t`'s two fields.
    ///
    /// # Safety
    ///
    /// For all of `'a`: `vt` is null (the null allocator) or points to a
    /// vtable whose functions, called with `self_`, behave like
    /// `malloc`/`free` for any power-of-two `align` and non-zero `size`
    /// that fit a [`Layout`], and may be called from any thread.
    ///
    /// ```
    /// use mallocator::Valloc;
    ///
    /// let c = Valloc::libc(); // stands in for a handle made in C
    /// // SAFETY: the parts come from a valid thread-safe handle.
    /// let v = unsafe { Valloc::from_raw(c.self_ptr(), c.vtable()) };
    /// assert_eq!(v, c);
    /// ```
    pub const unsafe fn from_raw(self_: *mut c_void, vt: *const VallocVtable) -> Self {
        Valloc {
            self_,
            vt,
            _marker: PhantomData,
        }
    }

    /// The null allocator: `{NULL, NULL}`, a marker meaning "memory is
    /// already laid out, do not allocate". Every `malloc` fails and `free`
    /// does nothing (in C, calling through it crashes).
    ///
    /// ```
    /// use mallocator::Valloc;
    ///
    /// let v = Valloc::null();
    /// assert!(v.is_null());
    /// assert!(v.malloc(8, 8).is_null());
    /// ```
    pub const fn null() -> Valloc<'static> {
        Valloc {
            self_: ptr::null_mut(),
            vt: ptr::null(),
            _marker: PhantomData,
        }
    }
}

impl<'a> Valloc<'a, Local> {
    /// A handle to an allocator that may not be thread-safe (for example
    /// an arena); the handle is neither `Send` nor `Sync`.
    ///
    /// ```
    /// use core::{alloc::Layout, cell::Cell, ptr::NonNull};
    /// use mallocator::{AllocError, RawAlloc, Valloc};
    ///
    /// struct Counting(Cell<usize>);
    /// // SAFETY: blocks come from the libc allocator.
    /// unsafe impl RawAlloc for Counting {
    ///     fn alloc(&self, l: Layout) -> Result<NonNull<u8>, AllocError> {
    ///         self.0.set(self.0.get() + 1);
    ///         Valloc::libc().alloc_layout(l)
    ///     }
    ///     unsafe fn free(&self, p: NonNull<u8>) {
    ///         // SAFETY: `p` came from the libc allocator.
    ///         unsafe { Valloc::libc().free(p.as_ptr()) }
    ///     }
    /// }
    /// let counting = Counting(Cell::new(0));
    /// let v = Valloc::new_local(&counting);
    /// // SAFETY: freeing what `v` returned.
    /// unsafe { v.free(v.malloc(8, 8)) };
    /// assert_eq!(counting.0.get(), 1);
    /// ```
    pub const fn new_local<T: RawAlloc>(allocator: &'a T) -> Self {
        Valloc {
            self_: allocator as *const T as *mut c_void,
            vt: VtableOf::<T>::VTABLE,
            _marker: PhantomData,
        }
    }

    /// Wraps a handle received from C whose allocator is not known to be
    /// thread-safe.
    ///
    /// # Safety
    ///
    /// As [`Valloc::from_raw`], except that the allocator need only be
    /// usable from the current thread.
    ///
    /// ```
    /// use mallocator::{Local, Valloc};
    ///
    /// let c = Valloc::libc();
    /// // SAFETY: the parts come from a valid handle.
    /// let v: Valloc<'_, Local> = unsafe { Valloc::from_raw_local(c.self_ptr(), c.vtable()) };
    /// assert!(!v.is_null());
    /// ```
    pub const unsafe fn from_raw_local(self_: *mut c_void, vt: *const VallocVtable) -> Self {
        Valloc {
            self_,
            vt,
            _marker: PhantomData,
        }
    }
}

impl<'a, S: Sharing> Valloc<'a, S> {
    /// Forgets that the allocator is thread-safe, so that functions taking
    /// a `Valloc<'a, Local>` accept every handle.
    ///
    /// ```
    /// use mallocator::{Local, Valloc};
    /// fn takes_any(v: Valloc<'_, Local>) -> bool { !v.is_null() }
    /// assert!(takes_any(Valloc::libc().into_local()));
    /// ```
    #[inline]
    pub const fn into_local(self) -> Valloc<'a, Local> {
        Valloc {
            self_: self.self_,
            vt: self.vt,
            _marker: PhantomData,
        }
    }

    /// True only for the null allocator (`vt == NULL`), like
    /// `fd_is_null_alloc_virtual`.
    ///
    /// ```
    /// use mallocator::Valloc;
    /// assert!(Valloc::null().is_null());
    /// assert!(!Valloc::libc().is_null());
    /// ```
    #[inline]
    pub fn is_null(self) -> bool {
        self.vt.is_null()
    }

    /// The `self` pointer, for handing the handle to C.
    ///
    /// ```
    /// assert!(mallocator::Valloc::null().self_ptr().is_null());
    /// ```
    #[inline]
    pub const fn self_ptr(self) -> *mut c_void {
        self.self_
    }

    /// The vtable pointer, for handing the handle to C (null for the null
    /// allocator).
    ///
    /// ```
    /// assert!(!mallocator::Valloc::libc().vtable().is_null());
    /// ```
    #[inline]
    pub const fn vtable(self) -> *const VallocVtable {
        self.vt
    }

    /// C-style allocation: a block of `size` bytes aligned to `align`, or
    /// null on failure. See the table on [`Valloc`] for `align == 0`,
    /// invalid alignments, overflowing sizes and `size == 0`.
    ///
    /// ```
    /// let v = mallocator::Valloc::libc();
    /// let p = v.malloc(32, 100);
    /// assert_eq!(p as usize % 32, 0);
    /// // SAFETY: `p` came from `v.malloc`.
    /// unsafe { v.free(p) };
    /// ```
    #[inline]
    pub fn malloc(self, align: usize, size: usize) -> *mut u8 {
        match self.try_malloc(align, size) {
            Ok(block) => block.as_ptr(),
            Err(AllocError) => ptr::null_mut(),
        }
    }

    /// Like [`malloc`](Valloc::malloc), as a `Result`.
    ///
    /// ```
    /// let v = mallocator::Valloc::libc();
    /// assert!(v.try_malloc(3, 8).is_err());
    /// let p = v.try_malloc(8, 8).unwrap();
    /// // SAFETY: `p` came from `v`.
    /// unsafe { v.free(p.as_ptr()) };
    /// ```
    #[inline]
    pub fn try_malloc(self, align: usize, size: usize) -> Result<NonNull<u8>, AllocError> {
        self.alloc_valid(request_layout(align, size)?)
    }

    /// Allocates for a Rust [`Layout`] (a zero size reserves 1 byte, so the
    /// pointer is unique and must be freed). A zero-size layout whose
    /// 1-byte stand-in overflows when rounded up to its alignment fails.
    ///
    /// ```
    /// use core::alloc::Layout;
    /// let v = mallocator::Valloc::libc();
    /// let p = v.alloc_layout(Layout::new::<[u64; 4]>()).unwrap();
    /// // SAFETY: `p` came from `v`.
    /// unsafe { v.free(p.as_ptr()) };
    /// ```
    #[inline]
    pub fn alloc_layout(self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        // A `Layout` is valid except, for size 0, once its size becomes 1.
        self.alloc_valid(request_layout(layout.align(), layout.size())?)
    }

    /// Allocates for a layout that came out of [`request_layout`].
    #[inline]
    fn alloc_valid(self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        // The libc vtable's `malloc` would validate `layout` a second time
        // and call `LibcAlloc::alloc`: do that directly, without the
        // indirect call (see `LIBC_VTABLE`).
        #[cfg(any(unix, windows))]
        if ptr::eq(self.vt, &LIBC_VTABLE) {
            return LibcAlloc.alloc(layout);
        }
        if self.vt.is_null() {
            return Err(AllocError);
        }
        // SAFETY: `vt` is non-null, and every constructor guarantees that
        // a non-null `vt` is a valid vtable for `self_` during `'a`. The
        // arguments satisfy `from_raw`'s contract: they form a `Layout`
        // with a non-zero size.
        let block = unsafe { ((*self.vt).malloc)(self.self_, layout.align(), layout.size()) };
        NonNull::new(block.cast()).ok_or(AllocError)
    }

    /// C-style free: gives `ptr` back to the allocator. `free(null)` and
    /// any free through the null allocator do nothing.
    ///
    /// # Safety
    ///
    /// `ptr` is null or was returned by this handle (or an equal one) and
    /// has not been freed since, unless the allocator documents a wider
    /// contract: the [backtracing](crate) allocator accepts any pointer and
    /// reports the invalid ones.
    ///
    /// ```
    /// let v = mallocator::Valloc::libc();
    /// // SAFETY: null is always accepted.
    /// unsafe { v.free(core::ptr::null_mut()) };
    /// ```
    #[inline]
    pub unsafe fn free(self, ptr: *mut u8) {
        #[cfg(any(unix, windows))]
        if ptr::eq(self.vt, &LIBC_VTABLE) {
            // SAFETY: `ptr` is null or came from a handle with the libc
            // vtable, i.e. from `LibcAlloc::alloc`; the vtable's `free`
            // would call `LibcAlloc::free` with it.
            return unsafe { LibcAlloc::free_or_null(ptr) };
        }
        if ptr.is_null() || self.vt.is_null() {
            return;
        }
        // SAFETY: `vt` is a valid vtable for `self_` (constructor
        // contracts) and `ptr` satisfies its `free` (this function's).
        unsafe { ((*self.vt).free)(self.self_, ptr.cast()) }
    }
}

/// The libc allocator's vtable. [`Valloc::malloc`] and [`Valloc::free`]
/// recognise it by address and call [`LibcAlloc`] directly, which is what
/// its trampolines do after validating the arguments again: the common
/// handle then costs one pointer comparison instead of an indirect call and
/// a second validation (other handles pay that comparison). C code calling
/// the vtable still goes through the validating trampolines.
///
/// A `static`, not a `const`: a constant may be instantiated at a
/// different address in every crate that uses it, and the comparison
/// would then miss in downstream crates. A static has one address.
#[cfg(any(unix, windows))]
static LIBC_VTABLE: VallocVtable = *VtableOf::<LibcAlloc>::VTABLE;

#[cfg(any(unix, windows))]
impl Valloc<'static, Shared> {
    /// The C library's allocator: `malloc`/`posix_memalign`/`free` on
    /// Unix, `_aligned_malloc`/`_aligned_free` on Windows. Its `self` is
    /// null, like `fd_libc_alloc_virtual`.
    ///
    /// ```
    /// let v = mallocator::Valloc::libc();
    /// let p = v.malloc(4096, 10);
    /// assert_eq!(p as usize % 4096, 0);
    /// // SAFETY: `p` came from `v`.
    /// unsafe { v.free(p) };
    /// ```
    pub const fn libc() -> Valloc<'static> {
        Valloc {
            self_: ptr::null_mut(),
            vt: &LIBC_VTABLE,
            _marker: PhantomData,
        }
    }
}

// SAFETY: every block comes from `Valloc::alloc_layout`, which returns a
// block of at least `layout.size()` bytes aligned to `layout.align()` (the
// handle's allocator guarantees it); copies of a handle share one allocator,
// and the lifetime `'a` keeps the allocator alive while blocks are used.
unsafe impl<S: Sharing> allocator_api2::alloc::Allocator for Valloc<'_, S> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.alloc_layout(layout)?;
        Ok(NonNull::slice_from_raw_parts(block, layout.size()))
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, _layout: Layout) {
        // SAFETY: `Allocator::deallocate`'s contract: `ptr` was allocated
        // by this allocator (a copy of this handle) and is freed once.
        unsafe { self.free(ptr.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    /// The C layout: `struct { void *self; const vtable *vt; }`.
    #[repr(C)]
    struct CValloc {
        self_: *mut c_void,
        vt: *const c_void,
    }

    #[repr(C)]
    struct CVtable {
        malloc: *const c_void,
        free: *const c_void,
    }

    #[test]
    fn layout_matches_c_fd_valloc_t() {
        assert_eq!(size_of::<Valloc<'_>>(), size_of::<CValloc>());
        assert_eq!(size_of::<Valloc<'_>>(), 2 * size_of::<*const ()>());
        assert_eq!(align_of::<Valloc<'_>>(), align_of::<CValloc>());
        assert_eq!(size_of::<Valloc<'_, Local>>(), size_of::<CValloc>());
        assert_eq!(offset_of!(Valloc<'_>, self_), offset_of!(CValloc, self_));
        assert_eq!(offset_of!(Valloc<'_>, vt), offset_of!(CValloc, vt));
        assert_eq!(size_of::<VallocVtable>(), size_of::<CVtable>());
        assert_eq!(align_of::<VallocVtable>(), align_of::<CVtable>());
        assert_eq!(
            offset_of!(VallocVtable, malloc),
            offset_of!(CVtable, malloc)
        );
        assert_eq!(offset_of!(VallocVtable, free), offset_of!(CVtable, free));
    }

    /// What C's `fd_valloc_malloc` / `fd_valloc_free` do with a handle
    /// passed by value across an `extern "C"` boundary.
    extern "C" fn c_style_malloc(v: Valloc<'_>, align: usize, size: usize) -> *mut c_void {
        // SAFETY: `v` is a valid handle; `vt` is checked by the caller.
        unsafe { ((*v.vt).malloc)(v.self_, align, size) }
    }
    extern "C" fn c_style_free(v: Valloc<'_>, ptr: *mut c_void) {
        // SAFETY: as above; `ptr` came from the same handle.
        unsafe { ((*v.vt).free)(v.self_, ptr) }
    }

    #[test]
    fn handle_passes_by_value_through_extern_c() {
        let v = Valloc::libc();
        let p = c_style_malloc(v, 64, 200);
        assert!(!p.is_null());
        assert_eq!(p as usize % 64, 0);
        c_style_free(v, p);
        // The trampolines validate C input too.
        assert!(c_style_malloc(v, 3, 8).is_null());
        assert!(c_style_malloc(v, 64, usize::MAX - 10).is_null());
        c_style_free(v, ptr::null_mut());
    }

    /// An allocator with state: its handle's `self` must be followed.
    struct Counting(core::cell::Cell<usize>);

    // SAFETY: blocks come from and go back to the libc handle.
    unsafe impl RawAlloc for Counting {
        fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
            self.0.set(self.0.get() + 1);
            Valloc::libc().alloc_layout(layout)
        }
        unsafe fn free(&self, block: NonNull<u8>) {
            self.0.set(self.0.get() - 1);
            // SAFETY: `block` came from `alloc`, so from the libc handle.
            unsafe { Valloc::libc().free(block.as_ptr()) }
        }
    }

    #[test]
    fn a_null_self_where_the_allocator_has_state_is_answered_not_followed() {
        let counting = Counting(core::cell::Cell::new(0));
        let v = Valloc::new_local(&counting);
        // SAFETY: the vtable of a live handle.
        let vt = unsafe { *v.vtable() };
        // SAFETY: a null `self` is part of the trampolines' contract.
        let p = unsafe { (vt.malloc)(ptr::null_mut(), 8, 8) };
        assert!(p.is_null());
        let q = v.malloc(8, 8);
        assert_eq!(counting.0.get(), 1);
        // SAFETY: as above; `q` is a block of this vtable's allocator.
        unsafe { (vt.free)(ptr::null_mut(), q.cast()) };
        assert_eq!(counting.0.get(), 1, "not freed without its allocator");
        // SAFETY: `q` came from `v` and is still allocated.
        unsafe { v.free(q) };
        assert_eq!(counting.0.get(), 0);
    }

    #[test]
    fn request_layout_rules() {
        assert_eq!(
            request_layout(0, 5).unwrap(),
            Layout::from_size_align(5, 16).unwrap()
        );
        assert_eq!(request_layout(1, 0).unwrap().size(), 1);
        assert!(request_layout(3, 1).is_err());
        assert!(request_layout(usize::MAX, 1).is_err());
        assert!(request_layout(2, isize::MAX as usize).is_err());
        assert!(request_layout(1, isize::MAX as usize).is_ok());
        assert!(request_layout(1 << 12, isize::MAX as usize - 4094).is_err());
    }

    #[test]
    fn null_allocator_never_crashes() {
        let v = Valloc::null();
        assert!(v.is_null());
        assert!(v.malloc(8, 8).is_null());
        assert!(v.try_malloc(0, 0).is_err());
        // SAFETY: the null allocator ignores every free.
        unsafe { v.free(NonNull::<u64>::dangling().as_ptr().cast()) };
        assert!(v.into_local().is_null());
        assert!(!Valloc::libc().is_null());
    }

    #[test]
    fn zero_size_blocks_are_unique_and_freeable() {
        let v = Valloc::libc();
        let a = v.malloc(8, 0);
        let b = v.malloc(8, 0);
        assert!(!a.is_null() && !b.is_null());
        assert_ne!(a, b);
        // SAFETY: both came from `v`.
        unsafe {
            v.free(a);
            v.free(b);
        }
    }

    #[test]
    fn handles_compare_by_both_pointers() {
        assert_eq!(Valloc::libc(), Valloc::libc());
        assert_ne!(Valloc::libc(), Valloc::null());
        let s = format!("{:?}", Valloc::null());
        assert!(s.contains("Valloc"), "{s}");
    }
}
