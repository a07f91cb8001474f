//! Vectors whose memory comes from the C library, never from Rust's
//! global allocator, so that the tracker can itself be the global
//! allocator: every table of the tracker is one.

use crate::valloc::Valloc;

/// A vector whose memory comes from the C library, not the global allocator.
pub(crate) type SysVec<T> = allocator_api2::vec::Vec<T, Valloc<'static>>;

/// An empty [`SysVec`].
pub(crate) const fn sys_vec<T>() -> SysVec<T> {
    SysVec::new_in(Valloc::libc())
}
