//! The defined behaviour of the handle at its edges, through every entry
//! point: what reaches the allocator behind a handle (custom, and one that
//! came from C), zero sizes, the overflow boundary, `free(NULL)`, and
//! which handles are null.

mod common;

use core::alloc::Layout;
use core::cell::Cell;
use core::ffi::c_void;
use core::ptr::{self, NonNull};

use allocator_api2::alloc::Allocator;
use common::Recorder;
use mallocator::libc_alloc::LibcAlloc;
use mallocator::{AllocError, Local, RawAlloc, Sharing, Valloc, VallocVtable};

/// Every way to ask a handle for `(align, size)`.
fn every_entry_point<S: Sharing>(v: Valloc<'_, S>, align: usize, size: usize) -> [*mut u8; 3] {
    let via_layout = match Layout::from_size_align(size, if align == 0 { 16 } else { align }) {
        Ok(layout) => v
            .alloc_layout(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr),
        Err(_) => v.malloc(align, size),
    };
    [
        v.malloc(align, size),
        v.try_malloc(align, size)
            .map_or(ptr::null_mut(), NonNull::as_ptr),
        via_layout,
    ]
}

#[test]
fn the_allocator_sees_default_alignment_and_non_zero_sizes_only() {
    let rec = Recorder::new();
    let v = Valloc::new(&rec);
    let cases = [
        (0, 0, (16, 1)),
        (0, 40, (16, 40)),
        (1, 0, (1, 1)),
        (4096, 0, (4096, 1)),
        (8, 3, (8, 3)),
    ];
    for (align, size, (want_align, want_size)) in cases {
        let blocks = every_entry_point(v, align, size);
        for p in blocks {
            assert!(!p.is_null());
            assert_eq!(p as usize % want_align, 0);
            // SAFETY: `p` came from `v`.
            unsafe { v.free(p) };
        }
        let log = rec.log();
        let last = &log.requests[log.requests.len() - 3..];
        assert!(
            last.iter()
                .all(|l| (l.align(), l.size()) == (want_align, want_size)),
            "({align}, {size}) reached the allocator as {last:?}"
        );
    }
    let log = rec.log();
    assert!(log.live.is_empty() && log.errors.is_empty());
}

#[test]
fn invalid_requests_and_free_null_never_reach_the_allocator() {
    let rec = Recorder::new();
    let v = Valloc::new(&rec);
    let max = isize::MAX as usize;
    let invalid = [
        (3, 8),
        (24, 1),
        (usize::MAX, 1),
        (1 << (usize::BITS - 1), 1), // a power of two, too large
        (1, max + 1),
        (2, max),           // rounds up past isize::MAX
        (4096, max - 4094), // likewise, by one byte
        (16, usize::MAX),
        (0, max), // default alignment 16 applies before the size check
    ];
    for (align, size) in invalid {
        assert_eq!(
            every_entry_point(v, align, size),
            [ptr::null_mut(); 3],
            "({align}, {size})"
        );
        assert!(v.try_malloc(align, size).is_err());
        let vt = v.vtable();
        // SAFETY: the handle's own vtable accepts any arguments.
        assert!(unsafe { ((*vt).malloc)(v.self_ptr(), align, size) }.is_null());
    }
    // SAFETY: null is always accepted, by the handle and by its vtable.
    unsafe {
        v.free(ptr::null_mut());
        ((*v.vtable()).free)(v.self_ptr(), ptr::null_mut());
    }
    let log = rec.log();
    assert!(log.requests.is_empty(), "{:?}", log.requests);
    assert_eq!(log.frees, 0);
}

/// The largest valid requests do reach the allocator (which may refuse):
/// the boundary is exactly where the size rounded up passes `isize::MAX`.
#[test]
fn the_overflow_boundary_is_exact() {
    struct Refusing(Cell<Vec<(usize, usize)>>);
    // SAFETY: never returns a block.
    unsafe impl RawAlloc for Refusing {
        fn alloc(&self, l: Layout) -> Result<NonNull<u8>, AllocError> {
            let mut seen = self.0.take();
            seen.push((l.align(), l.size()));
            self.0.set(seen);
            Err(AllocError)
        }
        unsafe fn free(&self, _: NonNull<u8>) {}
    }
    let refusing = Refusing(Cell::new(Vec::new()));
    let v = Valloc::new_local(&refusing);
    let max = isize::MAX as usize;
    assert!(v.malloc(1, max).is_null());
    assert!(v.malloc(4096, max - 4095).is_null());
    assert!(v.malloc(4096, max - 4094).is_null());
    assert!(v.malloc(0, max - 15).is_null());
    assert_eq!(
        refusing.0.take(),
        [(1, max), (4096, max - 4095), (16, max - 15)]
    );
}

#[test]
fn zero_size_blocks_are_unique_aligned_and_freeable_everywhere() {
    let rec = Recorder::new();
    let handles = [Valloc::libc(), Valloc::new(&rec)];
    for v in handles {
        let mut blocks = Vec::new();
        for align in [0, 1, 2, 8, 16, 32, 64, 256, 4096] {
            let want_align = if align == 0 { 16 } else { align };
            for p in every_entry_point(v, align, 0) {
                assert!(!p.is_null());
                assert_eq!(p as usize % want_align, 0);
                blocks.push(p);
            }
            let block = v
                .allocate(Layout::from_size_align(0, align.max(1)).unwrap())
                .unwrap();
            blocks.push(block.cast().as_ptr());
        }
        let mut sorted = blocks.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            blocks.len(),
            "zero-size blocks must be unique"
        );
        for p in blocks {
            // SAFETY: each came from `v` and is freed once.
            unsafe { v.free(p) };
        }
    }
    assert!(rec.log().live.is_empty());
}

/// A C allocator behind a C vtable, like Firedancer's libc one: it checks
/// nothing, so the handle must validate before calling it.
#[repr(C)]
struct CAlloc {
    mallocs: Cell<usize>,
    frees: Cell<usize>,
    bad_args: Cell<usize>,
    refuse: Cell<bool>,
}

unsafe extern "C" fn c_malloc(self_: *mut c_void, align: usize, size: usize) -> *mut c_void {
    // SAFETY: the handle was built with a live `CAlloc` as `self`.
    let this = unsafe { &*self_.cast::<CAlloc>() };
    this.mallocs.set(this.mallocs.get() + 1);
    let Ok(layout) = Layout::from_size_align(size, align) else {
        this.bad_args.set(this.bad_args.get() + 1);
        return ptr::null_mut();
    };
    if size == 0 {
        this.bad_args.set(this.bad_args.get() + 1);
    }
    if this.refuse.get() {
        return ptr::null_mut();
    }
    LibcAlloc
        .alloc(layout)
        .map_or(ptr::null_mut(), |p| p.as_ptr().cast())
}

unsafe extern "C" fn c_free(self_: *mut c_void, ptr: *mut c_void) {
    // SAFETY: as in `c_malloc`.
    let this = unsafe { &*self_.cast::<CAlloc>() };
    this.frees.set(this.frees.get() + 1);
    match NonNull::new(ptr.cast()) {
        // SAFETY: `ptr` came from `c_malloc`, i.e. from `LibcAlloc`.
        Some(ptr) => unsafe { LibcAlloc.free(ptr) },
        None => this.bad_args.set(this.bad_args.get() + 1),
    }
}

static C_VTABLE: VallocVtable = VallocVtable {
    malloc: c_malloc,
    free: c_free,
};

#[test]
fn a_handle_from_c_gets_only_valid_arguments() {
    let state = CAlloc {
        mallocs: Cell::new(0),
        frees: Cell::new(0),
        bad_args: Cell::new(0),
        refuse: Cell::new(false),
    };
    let self_ = ptr::from_ref(&state).cast_mut().cast::<c_void>();
    // SAFETY: `C_VTABLE` implements malloc/free for `state`, which outlives
    // the handle; both are used from this thread only.
    let v: Valloc<'_, Local> = unsafe { Valloc::from_raw_local(self_, &C_VTABLE) };
    assert!(!v.is_null());
    assert_eq!(v.self_ptr(), self_);

    for (align, size) in [(3, 8), (0, usize::MAX), (8, isize::MAX as usize)] {
        assert!(v.malloc(align, size).is_null());
    }
    // A valid zero-size `Layout` whose 1-byte stand-in no longer fits once
    // rounded up to its alignment.
    let huge_align = Layout::from_size_align(0, 1 << (usize::BITS - 1)).unwrap();
    assert_eq!(v.alloc_layout(huge_align), Err(AllocError));
    assert!(v.allocate(huge_align).is_err());
    // SAFETY: null is always accepted.
    unsafe { v.free(ptr::null_mut()) };
    assert_eq!((state.mallocs.get(), state.frees.get()), (0, 0));

    let p = v.malloc(0, 0);
    assert_eq!(p as usize % 16, 0);
    let q = v.try_malloc(128, 1000).unwrap();
    assert_eq!(q.as_ptr() as usize % 128, 0);
    // SAFETY: both came from `v`.
    unsafe {
        v.free(p);
        v.free(q.as_ptr());
    }
    assert_eq!((state.mallocs.get(), state.frees.get()), (2, 2));

    state.refuse.set(true);
    assert_eq!(v.try_malloc(8, 8), Err(AllocError));
    assert!(v.allocate(Layout::new::<u32>()).is_err());
    assert_eq!(state.bad_args.get(), 0);
}

#[test]
fn only_a_null_vtable_makes_a_null_handle() {
    let rec = Recorder::new();
    assert!(!Valloc::new(&rec).is_null());
    assert!(!Valloc::new_local(&rec).is_null());
    assert!(!Valloc::libc().is_null());
    assert!(Valloc::null().is_null());
    assert!(Valloc::null().into_local().is_null());

    // Like `fd_is_null_alloc_virtual`: only `vt` matters. Such a handle
    // never dereferences its `self`.
    let bogus_self = NonNull::<u64>::dangling().as_ptr().cast::<c_void>();
    // SAFETY: a null vtable is the null allocator.
    let v = unsafe { Valloc::from_raw(bogus_self, ptr::null()) };
    assert!(v.is_null());
    assert!(v.malloc(8, 8).is_null());
    assert_eq!(v.try_malloc(0, 0), Err(AllocError));
    assert!(v.allocate(Layout::new::<u8>()).is_err());
    // SAFETY: the null allocator ignores every free.
    unsafe { v.free(NonNull::<u64>::dangling().as_ptr().cast()) };

    // A null `self` with a real vtable is not null (libc's `self` is null).
    let libc = Valloc::libc();
    assert!(libc.self_ptr().is_null());
    // SAFETY: the parts of a valid, thread-safe handle.
    let v = unsafe { Valloc::from_raw(ptr::null_mut(), libc.vtable()) };
    assert!(!v.is_null());
    assert_eq!(v, libc);
}

/// `Valloc::malloc`/`free` take a shortcut for the libc handle; blocks must
/// still cross freely between it and the C vtable that C code calls.
#[test]
fn libc_blocks_cross_between_the_handle_and_its_c_vtable() {
    let v = Valloc::libc();
    // SAFETY: the libc handle's vtable is a `static` that accepts any
    // arguments.
    let vt = unsafe { &*v.vtable() };
    for align in [0, 8, 16, 64, 4096] {
        let from_handle = v.malloc(align, 100);
        // SAFETY: as above.
        let from_c = unsafe { (vt.malloc)(v.self_ptr(), align, 100) }.cast::<u8>();
        assert!(!from_handle.is_null() && !from_c.is_null());
        // SAFETY: both are live libc blocks, each freed once by the other side.
        unsafe {
            from_handle.write_bytes(1, 100);
            from_c.write_bytes(2, 100);
            (vt.free)(v.self_ptr(), from_handle.cast());
            v.free(from_c);
        }
    }
    // A handle from C with the same parts behaves the same.
    // SAFETY: the parts of the thread-safe libc handle.
    let c = unsafe { Valloc::from_raw(v.self_ptr(), v.vtable()) };
    let p = c.malloc(32, 10);
    assert_eq!(p as usize % 32, 0);
    // SAFETY: `p` came from an equal handle.
    unsafe { v.free(p) };
}
