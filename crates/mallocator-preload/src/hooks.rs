//! The C allocator's functions, each handing its call to the
//! process-wide tracker with the C library's own rules: `errno` on
//! failure, the alignment each function accepts, overflow checks on
//! element counts (as glibc's manual documents them).

use core::ffi::{c_int, c_void};

use mallocator::backtracing::{Config, GlobalBacktracing, StackMode};

use crate::next::Next;

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

/// C23's `free` told the block's size, which newer C libraries export
/// (a program built against one calls it instead of `free`). The size is
/// not checked against the block's, as the C library does not check it:
/// the block is freed as by [`free`].
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_sized(ptr: *mut c_void, _size: usize) {
    // SAFETY: the caller's promise.
    unsafe { free(ptr) }
}

/// C23's `free` of an `aligned_alloc` block told its alignment and size:
/// freed as by [`free`], neither checked (see [`free_sized`]).
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(ptr: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: the caller's promise.
    unsafe { free(ptr) }
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
        unsafe { clear(p.cast(), total) };
    }
    p
}

/// Blocks from this size up are cleared a page at a time (glibc's
/// default threshold for serving a block from a mapping of its own).
const CLEAR_BY_PAGE_FROM: usize = 128 * 1024;

/// Clears the `total` bytes at `p`, for `calloc`. glibc's own `calloc`
/// does not write a block fresh from the kernel, which is zero already;
/// this library cannot tell how glibc made the block, so a large one is
/// read a page at a time and only the pages holding something are
/// written. Reading a page never touched maps the kernel's shared zero
/// page, so a large sparse table stays out of memory as it does without
/// the trace, instead of every page of it becoming resident (which can
/// get a traced program killed for memory it never used).
///
/// # Safety
/// `p` is valid for writes of `total` bytes.
unsafe fn clear(p: *mut u8, total: usize) {
    if total < CLEAR_BY_PAGE_FROM {
        // SAFETY: the caller's promise.
        unsafe { p.write_bytes(0, total) };
        return;
    }
    let page = page_size();
    let mut at = 0;
    while at < total {
        // Up to the next page boundary, so that a page with something in
        // it is the only one written.
        let n = (page - (p as usize + at) % page).min(total - at);
        // SAFETY: `at + n <= total`, inside the block (the caller's
        // promise), which nothing else refers to yet. Its bytes are read
        // before this library writes them. Rust counts a fresh `malloc`
        // block as uninitialised, and reading it as undefined; this block
        // reaches here through calls the compiler cannot see into (the
        // tracker's vtable, glibc's `__libc_malloc`, not the `malloc` the
        // compiler knows), so to it these bytes are whatever those calls
        // returned, which is what is read. A direct `malloc` call here
        // would break that.
        let chunk = unsafe { core::slice::from_raw_parts_mut(p.add(at), n) };
        // An `or` of every byte rather than a search for the first
        // non-zero one: it compiles to wide loads without a branch each.
        if chunk.iter().fold(0, |acc, &b| acc | b) != 0 {
            chunk.fill(0);
        }
        at += n;
    }
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
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<usize>()) {
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

/// An alignment that is not a power of two fails with `EINVAL`, as C17
/// and glibc from 2.38 on answer it (glibc before 2.38 takes it as
/// `memalign` does): the stricter answer, which a program that works
/// traced also gets from every newer C library.
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

/// glibc's `malloc_usable_size`, for the one case the tracker cannot
/// answer; looked up at the library's start (`init.rs`), since that case
/// is a signal handler's call, or another library's fork handler's while
/// the tracker holds its locks across `fork`, where `dlsym` must not be.
pub(crate) static LIBC_USABLE_SIZE: Next = Next::new(c"malloc_usable_size");

/// The size the block was asked for, as Valgrind and AddressSanitizer
/// answer (see [`GlobalBacktracing::c_usable_size`]): `realloc` keeps
/// exactly those bytes, so glibc's larger answer would let a program
/// write bytes its next `realloc` drops. 0 for a pointer that is not a
/// live block. glibc's own answer only for a call that finds the block's
/// record locked (a signal handler's, or another library's fork
/// handler's while the tracker holds its locks across `fork`): a size
/// that is safe to write, if larger than the one `realloc` keeps.
///
/// # Safety
/// As C's `malloc_usable_size`: `ptr` is null or a live block from these
/// functions.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    if let Some(size) = TRACKER.c_usable_size(ptr.cast()) {
        return size;
    }
    // SAFETY: `malloc_usable_size`'s C type.
    let libc = unsafe { LIBC_USABLE_SIZE.known::<unsafe extern "C" fn(*mut c_void) -> usize>() };
    // SAFETY: `ptr` is a live glibc block (the caller's promise).
    libc.map_or(0, |f| unsafe { f(ptr) })
}
