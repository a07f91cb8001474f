//! Windows virtual memory through `windows-sys`: `VirtualAlloc` /
//! `VirtualProtect` / `VirtualFree`.

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

use windows_sys::Win32::Foundation::GetLastError;
use windows_sys::Win32::System::Memory::{
    VirtualAlloc, VirtualFree, VirtualProtect, MEM_COMMIT, MEM_DECOMMIT, MEM_RELEASE, MEM_RESERVE,
    PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, PAGE_NOACCESS, PAGE_PROTECTION_FLAGS, PAGE_READONLY,
    PAGE_READWRITE,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};

use super::{OsError, Protection};

/// Page size and allocation granularity, queried once.
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
static GRANULARITY: AtomicUsize = AtomicUsize::new(0);

fn query() -> (usize, usize) {
    let page = PAGE_SIZE.load(Ordering::Relaxed);
    let gran = GRANULARITY.load(Ordering::Relaxed);
    if page != 0 && gran != 0 {
        return (page, gran);
    }
    // SAFETY: SYSTEM_INFO is plain data; all-zero is a valid value.
    let mut info: SYSTEM_INFO = unsafe { core::mem::zeroed() };
    // SAFETY: `info` is a valid place to write a SYSTEM_INFO.
    unsafe { GetSystemInfo(&mut info) };
    let page = (info.dwPageSize as usize).max(4096);
    let gran = (info.dwAllocationGranularity as usize).max(page);
    PAGE_SIZE.store(page, Ordering::Relaxed);
    GRANULARITY.store(gran, Ordering::Relaxed);
    (page, gran)
}

pub(super) fn page_size() -> usize {
    query().0
}

pub(super) fn allocation_granularity() -> usize {
    query().1
}

fn prot_flags(prot: Protection) -> PAGE_PROTECTION_FLAGS {
    match prot {
        Protection::None => PAGE_NOACCESS,
        Protection::Read => PAGE_READONLY,
        Protection::ReadWrite => PAGE_READWRITE,
        Protection::ReadExecute => PAGE_EXECUTE_READ,
        Protection::ReadWriteExecute => PAGE_EXECUTE_READWRITE,
    }
}

fn last_error(operation: &'static str) -> OsError {
    // SAFETY: `GetLastError` has no preconditions.
    OsError::new(operation, unsafe { GetLastError() } as i32)
}

pub(super) fn reserve(len: usize) -> Result<NonNull<u8>, OsError> {
    // SAFETY: a fresh reservation at an address of the system's choosing
    // touches no existing memory.
    let p = unsafe { VirtualAlloc(ptr::null(), len, MEM_RESERVE, PAGE_NOACCESS) };
    NonNull::new(p.cast()).ok_or_else(|| last_error("VirtualAlloc"))
}

/// # Safety
/// See `sys::commit`.
pub(super) unsafe fn commit(ptr: NonNull<u8>, len: usize, prot: Protection) -> Result<(), OsError> {
    // SAFETY: the range is inside a reservation of ours (caller).
    let p = unsafe { VirtualAlloc(ptr.as_ptr().cast(), len, MEM_COMMIT, prot_flags(prot)) };
    if p.is_null() {
        Err(last_error("VirtualAlloc"))
    } else {
        Ok(())
    }
}

/// # Safety
/// See `sys::decommit`.
pub(super) unsafe fn decommit(ptr: NonNull<u8>, len: usize) -> Result<(), OsError> {
    // SAFETY: the range is inside a reservation of ours, contents dead.
    match unsafe { VirtualFree(ptr.as_ptr().cast(), len, MEM_DECOMMIT) } {
        0 => Err(last_error("VirtualFree")),
        _ => Ok(()),
    }
}

/// # Safety
/// See `sys::protect`.
pub(super) unsafe fn protect(
    ptr: NonNull<u8>,
    len: usize,
    prot: Protection,
) -> Result<(), OsError> {
    let mut old: PAGE_PROTECTION_FLAGS = 0;
    // SAFETY: the range is committed memory of ours (caller); `old` is a
    // valid place to write.
    match unsafe { VirtualProtect(ptr.as_ptr().cast(), len, prot_flags(prot), &mut old) } {
        0 => Err(last_error("VirtualProtect")),
        _ => Ok(()),
    }
}

/// # Safety
/// See `sys::release`.
pub(super) unsafe fn release(ptr: NonNull<u8>, _len: usize) -> Result<(), OsError> {
    // SAFETY: `ptr` is the base of a whole reservation of ours (caller);
    // MEM_RELEASE requires size 0.
    match unsafe { VirtualFree(ptr.as_ptr().cast(), 0, MEM_RELEASE) } {
        0 => Err(last_error("VirtualFree")),
        _ => Ok(()),
    }
}
