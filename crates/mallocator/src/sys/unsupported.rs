//! Targets without a virtual memory API known to this crate (neither Unix
//! nor Windows, e.g. bare metal): every reservation fails with code 0, so
//! only buffer-backed arenas work there.

use core::ptr::NonNull;

use super::{OsError, Protection};

pub(super) fn page_size() -> usize {
    4096
}

pub(super) fn allocation_granularity() -> usize {
    page_size()
}

pub(super) fn reserve(_len: usize) -> Result<NonNull<u8>, OsError> {
    Err(OsError::new("reserve (unsupported target)", 0))
}

/// # Safety
/// Never called: nothing can be reserved.
pub(super) unsafe fn commit(_: NonNull<u8>, _: usize, _: Protection) -> Result<(), OsError> {
    Err(OsError::new("commit (unsupported target)", 0))
}

/// # Safety
/// Never called: nothing can be reserved.
pub(super) unsafe fn decommit(_: NonNull<u8>, _: usize) -> Result<(), OsError> {
    Err(OsError::new("decommit (unsupported target)", 0))
}

/// # Safety
/// Never called: nothing can be reserved.
pub(super) unsafe fn protect(_: NonNull<u8>, _: usize, _: Protection) -> Result<(), OsError> {
    Err(OsError::new("protect (unsupported target)", 0))
}

/// # Safety
/// Never called: nothing can be reserved.
pub(super) unsafe fn release(_: NonNull<u8>, _: usize) -> Result<(), OsError> {
    Err(OsError::new("release (unsupported target)", 0))
}
