//! The bytes of one write to the log, built before the write is made,
//! in a buffer whose growth never aborts the process.
//!
//! The log runs inside someone else's program, and its records (a stack,
//! the module map, a text record with its frame lines) have no size
//! known ahead. Growing a vector the usual way aborts the process when
//! memory runs out; here a byte that cannot be stored *cuts* the record
//! instead, and a cut record is never written: the log stops there, as
//! after a failed write (what it holds up to then stays readable).

use core::ops::Deref;

use super::super::sys_vec::{sys_vec, SysVec};

/// One record (or several, written together) being built.
pub(super) struct RecordBuf {
    bytes: SysVec<u8>,
    /// Some bytes could not be stored since the last [`clear`](Self::clear):
    /// `bytes` is not the record and must not be written.
    cut: bool,
}

impl RecordBuf {
    /// An empty buffer on the tracker's own heap.
    pub(super) const fn new() -> Self {
        RecordBuf {
            bytes: sys_vec(),
            cut: false,
        }
    }

    /// An empty buffer on `heap` (a test starves it with the null
    /// allocator).
    #[cfg(test)]
    pub(super) fn new_in(heap: crate::valloc::Valloc<'static>) -> Self {
        RecordBuf {
            bytes: SysVec::new_in(heap),
            cut: false,
        }
    }

    /// Empties the buffer for the next record, keeping its memory.
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.cut = false;
    }

    /// Whether a byte was lost since the last [`clear`](Self::clear).
    pub(super) fn is_cut(&self) -> bool {
        self.cut
    }

    /// Appends `bytes`, or marks the buffer cut when there is no memory
    /// for them. Inlined for its common case, room enough: a text record
    /// is dozens of appends.
    #[inline(always)]
    pub(super) fn append(&mut self, bytes: &[u8]) {
        if !try_append(&mut self.bytes, bytes) {
            self.cut = true;
        }
    }

    /// Appends one byte (as [`append`](Self::append)).
    #[inline(always)]
    pub(super) fn push(&mut self, byte: u8) {
        if self.bytes.len() < self.bytes.capacity() || self.bytes.try_reserve(1).is_ok() {
            // No reallocation: there is room.
            self.bytes.push(byte);
        } else {
            self.cut = true;
        }
    }

    /// Keeps the first `len` bytes.
    pub(super) fn truncate(&mut self, len: usize) {
        self.bytes.truncate(len);
    }
}

impl Deref for RecordBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Appends `bytes` to `buf` with one copy (`extend_from_slice` of this
/// vector type copies element by element: a third of log mode's time);
/// false, with `buf` unchanged, when it cannot grow.
#[inline(always)]
pub(super) fn try_append(buf: &mut SysVec<u8>, bytes: &[u8]) -> bool {
    if buf.capacity() - buf.len() < bytes.len() && !grow(buf, bytes.len()) {
        return false;
    }
    // SAFETY: there is room for `bytes.len()` more bytes past the length
    // (checked, or made by `grow`); `bytes` cannot overlap that spare
    // capacity (it is not part of the vector's initialised bytes, and
    // `buf` is borrowed mutably); those bytes are initialised by the copy
    // before the length covers them.
    unsafe {
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            buf.as_mut_ptr().add(buf.len()),
            bytes.len(),
        );
        buf.set_len(buf.len() + bytes.len());
    }
    true
}

/// Makes room in `buf` for `more` bytes; false when out of memory.
#[cold]
#[inline(never)]
fn grow(buf: &mut SysVec<u8>, more: usize) -> bool {
    buf.try_reserve(more).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::valloc::Valloc;

    #[test]
    fn a_buffer_that_cannot_grow_is_cut_until_cleared() {
        let mut b = RecordBuf::new_in(Valloc::null());
        b.append(b"");
        assert!(!b.is_cut(), "nothing to store, nothing lost");
        b.push(b'x');
        assert!(b.is_cut());
        b.append(b"yz");
        assert!(b.is_empty() && b.is_cut());
        b.clear();
        assert!(!b.is_cut());
    }

    #[test]
    fn a_buffer_grows_and_keeps_its_bytes_in_order() {
        let mut b = RecordBuf::new();
        for i in 0..1000u32 {
            b.append(&i.to_le_bytes());
            b.push(0xee);
        }
        assert!(!b.is_cut());
        assert_eq!(b.len(), 5000);
        assert_eq!(&b[4995..], &[0xe7, 0x03, 0, 0, 0xee]);
        b.truncate(5);
        assert_eq!(&*b, &[0, 0, 0, 0, 0xee]);
    }
}
