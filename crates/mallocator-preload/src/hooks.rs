//! The C allocator's functions, each handing its call to the
//! process-wide tracker with the C library's own rules: `errno` on
//! failure, the alignment each function accepts, overflow checks on
//! element counts (as glibc's manual documents them).

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use mallocator::backtracing::{Config, GlobalBacktracing, StackMode};

/// Every call goes to this tracker (one per process, whatever the
/// instance: see [`GlobalBacktracing`]), configured by the environment
/// over these defaults:
/// - stacks are unwound by each object's DWARF call-frame information,
///   and by frame pointers through code that has none
///   ([`StackMode::Dwarf`]): distributions build without frame pointers,
///   where a walk would stop at the first frame
///   (`MALLOCATOR_STACKS=fp` walks frame pointers only, cheaper for a
///   program built with them);
/// - no stack on free (`MALLOCATOR_FREE_STACKS=1` for them), as heaptrack:
///   it halves the walks, and a bad free still gets its own stack.
pub(crate) static TRACKER: GlobalBacktracing = GlobalBacktracing::from_env_over(Config {
    stack_mode: StackMode::Dwarf,
    free_stacks: false,
    ..Config::DEFAULT
});

/// What `malloc` aligns to on 64-bit glibc targets.
const MALLOC_ALIGN: usize = 16;

/// Sets `errno` and returns null, as a failing allocation function does.
fn fail(errno: c_int) -> *mut c_void {
    // SAFETY: `__errno_location` returns this thread's `errno`.
    unsafe { *libc::__errno_location() = errno };
    core::ptr::null_mut()
}

/// A block of `size` bytes aligned to `align` (0: `malloc`'s), or null
/// with `ENOMEM`.
fn allocate(align: usize, size: usize) -> *mut c_void {
    let p = TRACKER.c_malloc(align, size);
    if p.is_null() {
        return fail(libc::ENOMEM);
    }
    p.cast()
}

/// The page size, which `valloc` and `pvalloc` align to.
fn page_size() -> usize {
    // SAFETY: no preconditions; the page size is always known.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    allocate(0, size)
}

/// # Safety
/// As C's `free`: `ptr` is null or a live block from these functions
/// (anything else is reported as a bad free and not passed on).
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: the caller's promise is `c_free`'s.
    unsafe { TRACKER.c_free(ptr.cast()) }
}

#[no_mangle]
pub extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    let Some(total) = count.checked_mul(size) else {
        return fail(libc::ENOMEM);
    };
    let p = allocate(0, total);
    if !p.is_null() {
        // SAFETY: `p` is a fresh block of `total` bytes. The tracker's
        // blocks come from `malloc`, which does not clear them.
        unsafe { p.cast::<u8>().write_bytes(0, total) };
    }
    p
}

/// # Safety
/// As C's `realloc`: `ptr` is null or a live block from these functions.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if ptr.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // glibc frees the block and returns null.
        // SAFETY: the caller's promise.
        unsafe { free(ptr) };
        return core::ptr::null_mut();
    }
    // SAFETY: the caller's promise is `c_realloc`'s.
    let p = unsafe { TRACKER.c_realloc(ptr.cast(), size) };
    if p.is_null() {
        return fail(libc::ENOMEM);
    }
    p.cast()
}

/// # Safety
/// As [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        // SAFETY: the caller's promise.
        Some(total) => unsafe { realloc(ptr, total) },
        None => fail(libc::ENOMEM),
    }
}

/// # Safety
/// `out` is valid for a pointer-sized write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
        return libc::EINVAL;
    }
    let p = TRACKER.c_malloc(align, size);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller's promise.
    unsafe { *out = p.cast() };
    0
}

#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        return fail(libc::EINVAL);
    }
    allocate(align, size)
}

#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // glibc gives `malloc`'s alignment when less is asked, and rounds an
    // alignment that is not a power of two up to one.
    if align <= MALLOC_ALIGN {
        return allocate(0, size);
    }
    match align.checked_next_power_of_two() {
        Some(align) => allocate(align, size),
        None => fail(libc::EINVAL),
    }
}

#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    allocate(page_size(), size)
}

#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match size.checked_add(page - 1) {
        Some(s) => allocate(page, s & !(page - 1)),
        None => fail(libc::ENOMEM),
    }
}

/// glibc's `malloc_usable_size`, found once with `dlsym`: the tracker's
/// blocks are glibc's own, so its answer is right for them. 0: not
/// looked up yet; 1: not found.
static LIBC_USABLE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// # Safety
/// As C's `malloc_usable_size`: `ptr` is null or a live block from these
/// functions.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    if ptr.is_null() {
        return 0;
    }
    let mut f = LIBC_USABLE_SIZE.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: a valid, NUL-terminated name.
        let found = unsafe { libc::dlsym(libc::RTLD_NEXT, c"malloc_usable_size".as_ptr()) };
        f = if found.is_null() { 1 } else { found as usize };
        LIBC_USABLE_SIZE.store(f, Ordering::Release);
    }
    if f == 1 {
        return 0;
    }
    // SAFETY: `f` is glibc's `malloc_usable_size`, with this signature;
    // `ptr` is a live glibc block (the caller's promise).
    unsafe {
        let f: unsafe extern "C" fn(*mut c_void) -> usize = core::mem::transmute(f);
        f(ptr)
    }
}
