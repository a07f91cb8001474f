//! The operating system's virtual memory, behind one small API: page size
//! and allocation granularity, and the crate-internal reserve / commit /
//! decommit / protect / release used by the [`Arena`](crate::Arena).
//!
//! * Unix (`sys/unix.rs`, through `libc`): `mmap(PROT_NONE,
//!   MAP_NORESERVE)` reserves, `mprotect` commits and protects,
//!   `madvise(MADV_DONTNEED)` plus `mprotect(PROT_NONE)` decommits,
//!   `munmap` releases.
//! * Windows (`sys/windows.rs`, through `windows-sys`): `VirtualAlloc`
//!   with `MEM_RESERVE` / `MEM_COMMIT`, `VirtualProtect`, `VirtualFree`
//!   with `MEM_DECOMMIT` / `MEM_RELEASE`.
//!
//! Every failure comes back as an [`OsError`] carrying the OS error code
//! (`errno` or `GetLastError()`).
//!
//! ```
//! use mallocator::sys;
//!
//! let page = sys::page_size();
//! assert!(page.is_power_of_two());
//! assert_eq!(sys::allocation_granularity() % page, 0);
//! ```

use core::fmt;
use core::ptr::NonNull;

#[cfg(unix)]
#[path = "unix.rs"]
mod imp;
#[cfg(windows)]
#[path = "windows.rs"]
mod imp;
#[cfg(not(any(unix, windows)))]
#[path = "unsupported.rs"]
mod imp;

/// What the memory of an arena may be used for. Covers the protection
/// constants of the C# `Mallocator.C` arena (`PAGE_NOACCESS`, `PAGE_READONLY`,
/// `PAGE_READWRITE`, `PAGE_EXECUTE_READ`, `PAGE_EXECUTE_READWRITE`).
///
/// ```
/// use mallocator::Protection;
///
/// assert!(Protection::ReadWrite.is_writable());
/// assert!(!Protection::ReadExecute.is_writable());
/// assert_eq!(Protection::default(), Protection::ReadWrite);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protection {
    /// No access: any read or write faults.
    None,
    /// Read only.
    Read,
    /// Read and write (the default).
    #[default]
    ReadWrite,
    /// Read and execute (e.g. generated code once written).
    ReadExecute,
    /// Read, write and execute.
    ReadWriteExecute,
}

impl Protection {
    /// True for the protections that allow writing.
    ///
    /// ```
    /// use mallocator::Protection;
    /// assert!(Protection::ReadWriteExecute.is_writable());
    /// assert!(!Protection::Read.is_writable());
    /// ```
    #[inline]
    pub const fn is_writable(self) -> bool {
        matches!(self, Protection::ReadWrite | Protection::ReadWriteExecute)
    }
}

/// A failed virtual memory call: which operation, and the OS error code
/// (`errno` on Unix, `GetLastError()` on Windows).
///
/// ```
/// use mallocator::OsError;
///
/// let e = OsError::new("mmap", 12);
/// assert_eq!(e.code(), 12);
/// assert_eq!(e.operation(), "mmap");
/// assert!(e.to_string().contains("mmap failed"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OsError {
    operation: &'static str,
    code: i32,
}

impl OsError {
    /// An error of `operation` (a system call name) with OS code `code`.
    ///
    /// ```
    /// assert_eq!(mallocator::OsError::new("VirtualAlloc", 8).code(), 8);
    /// ```
    pub const fn new(operation: &'static str, code: i32) -> Self {
        OsError { operation, code }
    }

    /// The OS error code (`errno` / `GetLastError()`).
    ///
    /// ```
    /// assert_eq!(mallocator::OsError::new("munmap", 22).code(), 22);
    /// ```
    pub const fn code(&self) -> i32 {
        self.code
    }

    /// The system call that failed, e.g. `"mmap"` or `"VirtualAlloc"`.
    ///
    /// ```
    /// assert_eq!(mallocator::OsError::new("mprotect", 1).operation(), "mprotect");
    /// ```
    pub const fn operation(&self) -> &'static str {
        self.operation
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed with OS error {}", self.operation, self.code)?;
        #[cfg(feature = "std")]
        write!(f, " ({})", std::io::Error::from_raw_os_error(self.code))?;
        Ok(())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for OsError {}

/// The size of a virtual memory page (4096 on the usual targets): the
/// unit of commit and protection.
///
/// ```
/// assert!(mallocator::sys::page_size() >= 4096);
/// ```
#[inline]
pub fn page_size() -> usize {
    imp::page_size()
}

/// The unit (and alignment) of address space reservations: 65536 on
/// Windows, the page size on Unix.
///
/// ```
/// let g = mallocator::sys::allocation_granularity();
/// assert!(g.is_power_of_two() && g >= mallocator::sys::page_size());
/// ```
#[inline]
pub fn allocation_granularity() -> usize {
    imp::allocation_granularity()
}

/// Reserves `len` bytes of address space (a multiple of the page size),
/// inaccessible and not backed by memory until committed.
pub(crate) fn reserve(len: usize) -> Result<NonNull<u8>, OsError> {
    imp::reserve(len)
}

/// Makes `[ptr, ptr + len)` usable with protection `prot`.
///
/// # Safety
/// The range is page-aligned and lies inside a live reservation.
pub(crate) unsafe fn commit(ptr: NonNull<u8>, len: usize, prot: Protection) -> Result<(), OsError> {
    // SAFETY: forwarded contract.
    unsafe { imp::commit(ptr, len, prot) }
}

/// Gives the memory of `[ptr, ptr + len)` back to the OS; the range stays
/// reserved and becomes inaccessible.
///
/// # Safety
/// The range is page-aligned, inside a live reservation, and nothing
/// refers to its contents any more.
pub(crate) unsafe fn decommit(ptr: NonNull<u8>, len: usize) -> Result<(), OsError> {
    // SAFETY: forwarded contract.
    unsafe { imp::decommit(ptr, len) }
}

/// Changes the protection of the committed range `[ptr, ptr + len)`.
///
/// # Safety
/// The range is page-aligned, committed, and no Rust reference into it is
/// used in a way the new protection forbids.
pub(crate) unsafe fn protect(
    ptr: NonNull<u8>,
    len: usize,
    prot: Protection,
) -> Result<(), OsError> {
    // SAFETY: forwarded contract.
    unsafe { imp::protect(ptr, len, prot) }
}

/// Releases a whole reservation made by [`reserve`] with the same `len`.
///
/// # Safety
/// `ptr`/`len` are exactly one live reservation, no longer used.
pub(crate) unsafe fn release(ptr: NonNull<u8>, len: usize) -> Result<(), OsError> {
    // SAFETY: forwarded contract.
    unsafe { imp::release(ptr, len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_and_granularity() {
        let page = page_size();
        assert!(page.is_power_of_two() && page >= 4096);
        let gran = allocation_granularity();
        assert!(gran.is_power_of_two() && gran >= page);
        if cfg!(windows) {
            assert_eq!(gran, 65536);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn reserve_commit_decommit_release() {
        let page = page_size();
        let len = 16 * page;
        let p = reserve(len).unwrap();
        assert_eq!(p.as_ptr() as usize % allocation_granularity(), 0);
        // SAFETY: the ranges below are page-aligned and inside `p`'s
        // reservation; raw pointers only.
        unsafe {
            commit(p, 2 * page, Protection::ReadWrite).unwrap();
            p.as_ptr().write_bytes(0xAB, 2 * page);
            assert_eq!(*p.as_ptr().add(2 * page - 1), 0xAB);
            protect(p, 2 * page, Protection::Read).unwrap();
            assert_eq!(*p.as_ptr(), 0xAB);
            protect(p, 2 * page, Protection::ReadWrite).unwrap();
            decommit(p, 2 * page).unwrap();
            commit(p, page, Protection::ReadWrite).unwrap();
            // Decommitted memory comes back zeroed.
            assert_eq!(*p.as_ptr(), 0);
            release(p, len).unwrap();
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn errors_carry_the_os_code() {
        // Reserving more address space than exists fails with a code.
        let e = reserve(usize::MAX & !(page_size() - 1)).unwrap_err();
        assert_ne!(e.code(), 0);
        assert!(!e.operation().is_empty());
        #[cfg(feature = "std")]
        assert!(e.to_string().contains(e.operation()));
    }
}
