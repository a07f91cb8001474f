//! Vectors whose memory comes from the tracker's own heap (see
//! `own_heap.rs`), never from Rust's global allocator, so that the
//! tracker can itself be the global allocator: every table of the
//! tracker is one.

use super::own_heap::own_heap;
use crate::valloc::Valloc;

/// A vector whose memory comes from the tracker's own heap, not the
/// global allocator.
pub(crate) type SysVec<T> = allocator_api2::vec::Vec<T, Valloc<'static>>;

/// An empty [`SysVec`].
pub(crate) const fn sys_vec<T>() -> SysVec<T> {
    SysVec::new_in(own_heap())
}
