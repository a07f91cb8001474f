//! Unix virtual memory through `libc`: `mmap` / `mprotect` / `madvise` /
//! `munmap`.

use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

use super::{OsError, Protection};

/// The page size, queried once.
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

pub(super) fn page_size() -> usize {
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: `sysconf` has no preconditions.
    let queried = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = if queried > 0 { queried as usize } else { 4096 };
    PAGE_SIZE.store(page, Ordering::Relaxed);
    page
}

pub(super) fn allocation_granularity() -> usize {
    page_size()
}

/// `MAP_NORESERVE` where it exists: no swap is set aside for a
/// reservation, so a 1 TiB arena costs nothing until it is touched.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(miri)))]
const NORESERVE: libc::c_int = libc::MAP_NORESERVE;
#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(miri))))]
const NORESERVE: libc::c_int = 0;

fn prot_flags(prot: Protection) -> libc::c_int {
    match prot {
        Protection::None => libc::PROT_NONE,
        Protection::Read => libc::PROT_READ,
        Protection::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        Protection::ReadExecute => libc::PROT_READ | libc::PROT_EXEC,
        Protection::ReadWriteExecute => libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
    }
}

/// The calling thread's `errno`.
#[cfg(feature = "std")]
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The calling thread's `errno` (without `std`: the libc accessor of the
/// platforms that have a known one, else 0).
#[cfg(not(feature = "std"))]
fn errno() -> i32 {
    #[cfg(any(target_os = "linux", target_os = "emscripten", target_os = "hurd"))]
    // SAFETY: `__errno_location` returns the thread's errno slot.
    return unsafe { *libc::__errno_location() };
    #[cfg(any(target_os = "android", target_os = "netbsd", target_os = "openbsd"))]
    // SAFETY: `__errno` returns the thread's errno slot.
    return unsafe { *libc::__errno() };
    #[cfg(any(
        target_vendor = "apple",
        target_os = "freebsd",
        target_os = "dragonfly"
    ))]
    // SAFETY: `__error` returns the thread's errno slot.
    return unsafe { *libc::__error() };
    #[allow(unreachable_code)]
    0
}

fn check(operation: &'static str, result: libc::c_int) -> Result<(), OsError> {
    if result == 0 {
        Ok(())
    } else {
        Err(OsError::new(operation, errno()))
    }
}

/// Under Miri, which supports only read-write anonymous mappings and no
/// `mprotect`/`madvise`, a reservation is an ordinary read-write mapping
/// of at most this size; commit and protect do nothing, and decommit
/// zeroes the pages. The arena's logic above this layer is the same, so
/// its doctests and tests run under Miri too.
#[cfg(miri)]
const MIRI_MAX_RESERVATION: usize = 64 << 20;

pub(super) fn reserve(len: usize) -> Result<NonNull<u8>, OsError> {
    #[cfg(miri)]
    if len > MIRI_MAX_RESERVATION {
        return Err(OsError::new("mmap", libc::ENOMEM));
    }
    let initial = if cfg!(miri) {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_NONE
    };
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            initial,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(OsError::new("mmap", errno()));
    }
    NonNull::new(p.cast()).ok_or(OsError::new("mmap", 0))
}

/// # Safety
/// See `sys::commit`.
pub(super) unsafe fn commit(ptr: NonNull<u8>, len: usize, prot: Protection) -> Result<(), OsError> {
    // SAFETY: the range is inside a reservation of ours (caller).
    unsafe { protect(ptr, len, prot) }
}

/// # Safety
/// See `sys::decommit`.
pub(super) unsafe fn decommit(ptr: NonNull<u8>, len: usize) -> Result<(), OsError> {
    if cfg!(miri) {
        // SAFETY: the range is inside a (read-write, under Miri)
        // reservation of ours and its contents are dead (caller).
        unsafe { ptr.as_ptr().write_bytes(0, len) };
        return Ok(());
    }
    let p = ptr.as_ptr().cast::<c_void>();
    // SAFETY: the range is inside a reservation of ours and its contents
    // are dead (caller); dropping the pages of a private anonymous mapping
    // makes them read back as zeros.
    check("madvise", unsafe {
        libc::madvise(p, len, libc::MADV_DONTNEED)
    })?;
    // SAFETY: as above.
    check("mprotect", unsafe {
        libc::mprotect(p, len, libc::PROT_NONE)
    })
}

/// # Safety
/// See `sys::protect`.
pub(super) unsafe fn protect(
    ptr: NonNull<u8>,
    len: usize,
    prot: Protection,
) -> Result<(), OsError> {
    if cfg!(miri) {
        return Ok(());
    }
    // SAFETY: the range is inside a reservation of ours (caller).
    check("mprotect", unsafe {
        libc::mprotect(ptr.as_ptr().cast(), len, prot_flags(prot))
    })
}

/// # Safety
/// See `sys::release`.
pub(super) unsafe fn release(ptr: NonNull<u8>, len: usize) -> Result<(), OsError> {
    // SAFETY: `ptr`/`len` are one whole reservation, no longer used (caller).
    check("munmap", unsafe { libc::munmap(ptr.as_ptr().cast(), len) })
}
