//! Slices, strings and bytes for FFI: the C# `Mallocator.C` arena's `AllocString(s, width)`,
//! `AllocBytes` and `AllocByteString`.

use core::alloc::Layout;
use core::ffi::CStr;
use core::fmt;
use core::ops::Deref;
use core::ptr::{self, NonNull};

use super::{Arena, ArenaError, Backing};
use crate::valloc::AllocError;

impl<B: Backing> Arena<B> {
    /// Room for `len` values of `T` (for zero bytes: an aligned pointer
    /// into the arena, which takes no room).
    #[inline]
    fn place_for_slice<T>(&self, len: usize) -> Result<NonNull<T>, AllocError> {
        let layout = Layout::array::<T>(len).map_err(|_| AllocError)?;
        self.alloc_layout(layout).map(NonNull::cast)
    }

    /// Copies a slice into the arena.
    ///
    /// # Panics
    ///
    /// When the arena is full, like [`alloc`](Arena::alloc).
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// let xs = arena.alloc_slice_copy(&[1u16, 2, 3]);
    /// xs[0] = 7;
    /// assert_eq!(xs, [7, 2, 3]);
    /// ```
    #[inline]
    #[allow(clippy::mut_from_ref)]
    #[track_caller]
    pub fn alloc_slice_copy<T: Copy>(&self, src: &[T]) -> &mut [T] {
        match self.try_alloc_slice_copy(src) {
            Ok(s) => s,
            Err(AllocError) => self.exhausted(Layout::for_value(src)),
        }
    }

    /// Like [`alloc_slice_copy`](Arena::alloc_slice_copy), returning `Err`
    /// when the arena is full.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// let mut buf = [MaybeUninit::uninit(); 8];
    /// let arena = mallocator::Arena::from_buffer(&mut buf);
    /// assert!(arena.try_alloc_slice_copy(&[0u8; 9]).is_err());
    /// assert_eq!(arena.try_alloc_slice_copy(&[5u8; 8]).unwrap(), [5; 8]);
    /// ```
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub fn try_alloc_slice_copy<T: Copy>(&self, src: &[T]) -> Result<&mut [T], AllocError> {
        // The layout of an existing slice is valid: no check needed.
        let p = self.alloc_layout(Layout::for_value(src))?.cast::<T>();
        // SAFETY: `p` is valid and aligned for `src.len()` values of `T`
        // (zero bytes take no room), and is a fresh block disjoint from
        // `src`; `T: Copy`, so a bitwise copy is a valid copy. The block is
        // ours until the arena is reset or rolled back (`&mut self`).
        unsafe {
            ptr::copy_nonoverlapping(src.as_ptr(), p.as_ptr(), src.len());
            Ok(core::slice::from_raw_parts_mut(p.as_ptr(), src.len()))
        }
    }

    /// Copies bytes into the arena (`Mallocator.C`'s `AllocBytes`).
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// let b = arena.alloc_bytes(b"\x01\x02");
    /// b[1] = 9;
    /// assert_eq!(b, [1, 9]);
    /// ```
    #[inline]
    #[allow(clippy::mut_from_ref)]
    #[track_caller]
    pub fn alloc_bytes(&self, bytes: &[u8]) -> &mut [u8] {
        self.alloc_slice_copy(bytes)
    }

    /// Like [`alloc_bytes`](Arena::alloc_bytes), returning `Err` when the
    /// arena is full.
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// assert!(arena.try_alloc_bytes(&vec![0; 1 << 20]).is_err());
    /// ```
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub fn try_alloc_bytes(&self, bytes: &[u8]) -> Result<&mut [u8], AllocError> {
        self.try_alloc_slice_copy(bytes)
    }

    /// Copies a string (UTF-8) into the arena.
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// assert_eq!(arena.alloc_str("héllo"), "héllo");
    /// ```
    #[inline]
    #[track_caller]
    pub fn alloc_str(&self, s: &str) -> &str {
        match self.try_alloc_str(s) {
            Ok(s) => s,
            Err(AllocError) => self.exhausted(Layout::for_value(s)),
        }
    }

    /// Like [`alloc_str`](Arena::alloc_str), returning `Err` when the
    /// arena is full.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// let mut buf = [MaybeUninit::uninit(); 4];
    /// let arena = mallocator::Arena::from_buffer(&mut buf);
    /// assert!(arena.try_alloc_str("hello").is_err());
    /// assert_eq!(arena.try_alloc_str("hi").unwrap(), "hi");
    /// ```
    #[inline]
    pub fn try_alloc_str(&self, s: &str) -> Result<&str, AllocError> {
        let bytes = self.try_alloc_slice_copy(s.as_bytes())?;
        // SAFETY: the bytes are a copy of a `str`, hence UTF-8.
        Ok(unsafe { core::str::from_utf8_unchecked(bytes) })
    }

    /// Copies a string as a NUL-terminated C string (`Mallocator.C`'s
    /// `AllocString(s, 1)`).
    ///
    /// # Errors
    ///
    /// [`ArenaError::InteriorNul`] if `s` contains NUL (a C string
    /// cannot), [`ArenaError::OutOfMemory`] if the arena is full.
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// let c = arena.alloc_c_str("abc").unwrap();
    /// assert_eq!(c.to_bytes_with_nul(), b"abc\0");
    /// assert!(arena.alloc_c_str("a\0c").is_err());
    /// ```
    pub fn alloc_c_str(&self, s: &str) -> Result<&CStr, ArenaError> {
        if let Some(position) = s.bytes().position(|b| b == 0) {
            return Err(ArenaError::InteriorNul { position });
        }
        let len = s.len();
        let requested = len.checked_add(1).ok_or(self.out_of_memory(usize::MAX))?;
        let p = self
            .place_for_slice::<u8>(requested)
            .map_err(|_| self.out_of_memory(requested))?;
        // SAFETY: `p` is a fresh block of `len + 1` bytes; the bytes of `s`
        // have no NUL, and the last byte is the terminator, which is what
        // `from_bytes_with_nul_unchecked` requires.
        unsafe {
            ptr::copy_nonoverlapping(s.as_ptr(), p.as_ptr(), len);
            p.as_ptr().add(len).write(0);
            Ok(CStr::from_bytes_with_nul_unchecked(
                core::slice::from_raw_parts(p.as_ptr(), requested),
            ))
        }
    }

    /// Copies a string as UTF-16 followed by a NUL `u16` (`Mallocator.C`'s
    /// `AllocString(s, 2)`, for Windows' wide strings). Characters outside
    /// the BMP become surrogate pairs. An interior NUL is copied as is (the
    /// [`WideCStr`] has a length; a C reader stops there).
    ///
    /// # Panics
    ///
    /// When the arena is full, like [`alloc`](Arena::alloc).
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// let w = arena.alloc_wide_str("a😀");
    /// assert_eq!(w.as_slice(), [0x61, 0xD83D, 0xDE00]);
    /// assert_eq!(w.as_slice_with_nul(), [0x61, 0xD83D, 0xDE00, 0]);
    /// assert_eq!(w.to_string(), "a😀");
    /// ```
    #[inline]
    #[track_caller]
    pub fn alloc_wide_str(&self, s: &str) -> &WideCStr {
        match self.try_alloc_wide_str(s) {
            Ok(w) => w,
            Err(AllocError) => {
                let units = s.encode_utf16().count().saturating_add(1);
                self.exhausted(Layout::array::<u16>(units).unwrap_or(Layout::new::<u16>()))
            }
        }
    }

    /// Like [`alloc_wide_str`](Arena::alloc_wide_str), returning `Err`
    /// when the arena is full.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// // 7 bytes: room for 3 `u16`s whatever the buffer's alignment.
    /// let mut buf = [MaybeUninit::uninit(); 7];
    /// let arena = mallocator::Arena::from_buffer(&mut buf);
    /// assert!(arena.try_alloc_wide_str("abc").is_err()); // needs 4 `u16`s
    /// assert_eq!(arena.try_alloc_wide_str("ab").unwrap().as_slice(), [0x61, 0x62]);
    /// ```
    pub fn try_alloc_wide_str(&self, s: &str) -> Result<&WideCStr, AllocError> {
        let units = s.encode_utf16().count();
        let with_nul = units.checked_add(1).ok_or(AllocError)?;
        let p = self.place_for_slice::<u16>(with_nul)?;
        // SAFETY: `p` is a fresh, aligned block of `units + 1` `u16`s;
        // `encode_utf16` yields exactly `units` values, then the NUL, so
        // the slice is initialized and ends with its only guaranteed NUL.
        unsafe {
            for (i, unit) in s.encode_utf16().enumerate() {
                p.as_ptr().add(i).write(unit);
            }
            p.as_ptr().add(units).write(0);
            Ok(WideCStr::from_units_with_nul_unchecked(
                core::slice::from_raw_parts(p.as_ptr(), with_nul),
            ))
        }
    }

    /// `Mallocator.C`'s `AllocByteString`: one byte per character (Latin-1),
    /// no terminator.
    ///
    /// # Errors
    ///
    /// [`ArenaError::NotLatin1`] for a character above U+00FF,
    /// [`ArenaError::OutOfMemory`] if the arena is full.
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// assert_eq!(arena.alloc_byte_string("café").unwrap(), b"caf\xE9");
    /// assert!(arena.alloc_byte_string("€").is_err());
    /// ```
    #[allow(clippy::mut_from_ref)]
    pub fn alloc_byte_string(&self, s: &str) -> Result<&mut [u8], ArenaError> {
        let mut len = 0;
        for (position, ch) in s.chars().enumerate() {
            if u32::from(ch) > 0xFF {
                return Err(ArenaError::NotLatin1 { position, ch });
            }
            len = position + 1;
        }
        let p = self
            .place_for_slice::<u8>(len)
            .map_err(|_| self.out_of_memory(len))?;
        // SAFETY: `p` is a fresh block of `len` bytes, one per character.
        unsafe {
            for (i, ch) in s.chars().enumerate() {
                p.as_ptr().add(i).write(u32::from(ch) as u8);
            }
            Ok(core::slice::from_raw_parts_mut(p.as_ptr(), len))
        }
    }
}

/// A NUL-terminated UTF-16 string in an arena (a Windows `LPCWSTR`), from
/// [`Arena::alloc_wide_str`]. It dereferences to its units *without* the
/// terminator; [`as_ptr`](WideCStr::as_ptr) is the pointer to hand to C
/// (valid up to and including the NUL).
///
/// ```
/// let arena = mallocator::Arena::new();
/// let w = arena.alloc_wide_str("hi");
/// assert_eq!(w.len(), 2);
/// // SAFETY: the pointer covers the units and the terminator.
/// assert_eq!(unsafe { *w.as_ptr().add(2) }, 0);
/// ```
#[repr(transparent)]
pub struct WideCStr {
    /// The units, then a NUL.
    units_with_nul: [u16],
}

impl WideCStr {
    /// # Safety
    /// `units` ends with a NUL `u16`.
    unsafe fn from_units_with_nul_unchecked(units: &[u16]) -> &WideCStr {
        // SAFETY: `WideCStr` is a transparent wrapper of `[u16]`, so the
        // fat pointer casts to it with the same length and provenance.
        unsafe { &*(units as *const [u16] as *const WideCStr) }
    }

    /// A pointer to the first unit, valid for reads of
    /// [`len`](slice::len)` + 1` units (the last one is the NUL).
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// let w = arena.alloc_wide_str("");
    /// // SAFETY: an empty string is just its terminator.
    /// assert_eq!(unsafe { *w.as_ptr() }, 0);
    /// ```
    #[inline]
    pub fn as_ptr(&self) -> *const u16 {
        self.units_with_nul.as_ptr()
    }

    /// The units without the terminator.
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// assert_eq!(arena.alloc_wide_str("é").as_slice(), [0xE9]);
    /// ```
    #[inline]
    pub fn as_slice(&self) -> &[u16] {
        &self.units_with_nul[..self.units_with_nul.len() - 1]
    }

    /// The units followed by the terminator.
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// assert_eq!(arena.alloc_wide_str("é").as_slice_with_nul(), [0xE9, 0]);
    /// ```
    #[inline]
    pub fn as_slice_with_nul(&self) -> &[u16] {
        &self.units_with_nul
    }
}

impl Deref for WideCStr {
    type Target = [u16];

    /// [`as_slice`](WideCStr::as_slice).
    #[inline]
    fn deref(&self) -> &[u16] {
        self.as_slice()
    }
}

impl fmt::Display for WideCStr {
    /// The string, with unpaired surrogates shown as U+FFFD.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in char::decode_utf16(self.as_slice().iter().copied()) {
            fmt::Write::write_char(f, c.unwrap_or(char::REPLACEMENT_CHARACTER))?;
        }
        Ok(())
    }
}

impl fmt::Debug for WideCStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WideCStr({:?})", self.as_slice())
    }
}
