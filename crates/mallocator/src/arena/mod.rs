//! The bump arena: one contiguous region, a bump pointer, and nothing else
//! on the fast path.
//!
//! [`Arena`] is the Rust version of the C# `Mallocator.C` arena: it reserves
//! the whole capacity up front (address space only; a 1 TiB arena is fine)
//! and commits pages in chunks as the bump pointer advances, so addresses
//! never change. It can also run over a caller-provided buffer
//! ([`Arena::from_buffer`]: no OS calls, no `std`).
//!
//! ```
//! use mallocator::Arena;
//!
//! let arena = Arena::with_capacity(1 << 20).unwrap();
//! let x = arena.alloc(41u64);
//! *x += 1;
//! let name = arena.alloc_str("mallocator");
//! let c = arena.alloc_c_str("for C").unwrap();
//! assert_eq!((*x, name, c.to_bytes()), (42, "mallocator", &b"for C"[..]));
//! assert!(arena.used() >= 8 + 10 + 6);
//! ```
//!
//! # Design
//!
//! * The bump pointer moves **up**. For a type `T` the fast path is one
//!   load of the pointer, one add-and-mask that yields the new pointer
//!   (`size_of::<T>()` is a multiple of `align_of::<T>()`, so the block
//!   start is `new - size`), one compare with the committed end, and one
//!   store. Upward bumping also lets the most recent block grow in place
//!   ([`Allocator::grow`]).
//! * No overflow checks on the const-size fast path: the arena's end is
//!   kept at least 64 KiB below `usize::MAX`, so adding a size and
//!   alignment below that bound cannot wrap. Runtime layouts compare the
//!   padded size against the room left, which cannot overflow either.
//! * Everything else (committing more pages, errors, panics) is in a
//!   `#[cold]`, `#[inline(never)]` slow path.
//!
//! # Destructors
//!
//! The arena never runs destructors (as `bumpalo`): a value with `Drop`
//! stored by [`Arena::alloc`] is forgotten when the arena is reset, rolled
//! back or dropped. That is memory-safe (leaking is), and keeps reset and
//! drop O(1). Call [`core::ptr::drop_in_place`] yourself if it matters.
//!
//! # Safety by borrowing
//!
//! Allocation takes `&self` and returns references that borrow the arena.
//! Everything that makes memory reusable takes `&mut self`
//! ([`reset`](Arena::reset), [`rollback`](Arena::rollback),
//! [`scope`](Arena::scope), [`protect`](Arena::protect)), so the borrow
//! checker proves no reference into the arena is alive at that point:
//!
//! ```compile_fail,E0502
//! let mut arena = mallocator::Arena::new();
//! let x = arena.alloc(1u32);
//! arena.reset(); // error: `arena` is borrowed by `x`
//! *x += 1;
//! ```

use core::alloc::Layout;
use core::cell::Cell;
use core::fmt;
use core::mem::{align_of, size_of, MaybeUninit};
use core::ptr::{self, NonNull};

use allocator_api2::alloc::Allocator;

use crate::sys::OsError;
use crate::valloc::{request_layout, AllocError, Local, RawAlloc, Valloc};

mod backing;
mod strings;

pub use backing::{ArenaBuilder, Buffer, CommitPolicy, VirtualMemory};
pub use strings::WideCStr;

/// The arena's end is kept at least this far below `usize::MAX`, so that
/// the const-size fast path can add `size + align - 1` without checking
/// for overflow whenever that sum is at most `MARGIN`.
const MARGIN: usize = 1 << 16;

/// Where an arena's memory comes from: [`VirtualMemory`] (reserved
/// address space, the default) or a caller's [`Buffer`]. Sealed.
///
/// ```
/// fn used<B: mallocator::arena::Backing>(a: &mallocator::Arena<B>) -> usize { a.used() }
/// assert_eq!(used(&mallocator::Arena::new()), 0);
/// ```
pub trait Backing: backing::Sealed {}

/// A bump allocator over one contiguous region that never moves.
///
/// * [`Arena::new`] / [`Arena::with_capacity`] / [`Arena::builder`]:
///   reserved virtual memory, committed in chunks as needed.
/// * [`Arena::from_buffer`]: a caller-provided buffer (no OS calls).
///
/// `Arena` is `Send` (it can move to another thread) but not `Sync` (its
/// bump pointer is a plain `Cell`):
///
/// ```
/// let arena = mallocator::Arena::new();
/// std::thread::spawn(move || *arena.alloc(7u8)).join().unwrap();
/// ```
///
/// ```compile_fail,E0277
/// let arena = mallocator::Arena::new();
/// std::thread::scope(|s| {
///     s.spawn(|| arena.alloc(7u8)); // error: `Arena` is not `Sync`
/// });
/// ```
pub struct Arena<B: Backing = VirtualMemory> {
    /// The bump pointer, carrying the provenance of the whole region.
    ptr: Cell<*mut u8>,
    /// The fast path's limit (an address): the committed end while the
    /// memory is writable, the bump pointer itself while it is not.
    /// Invariant: `base <= ptr <= end <= limit <= usize::MAX - MARGIN`.
    end: Cell<usize>,
    /// The most recent block handed out through [`RawAlloc`] (start and
    /// end addresses; both 0 when there is none), so that `free` can give
    /// it back.
    last: Cell<(usize, usize)>,
    /// Start of the region.
    base: NonNull<u8>,
    /// End of the usable region (`base + capacity`).
    limit: usize,
    /// This arena's identity, stamped into its checkpoints (see [`ArenaId`]).
    id: ArenaId,
    backing: B,
}

// SAFETY: the arena exclusively owns its region (a reservation of its own
// or a `&mut` buffer, whose `Send`-ness `B` carries); nothing in it is tied
// to the creating thread. It is not `Sync` (the `Cell`s).
unsafe impl<B: Backing + Send> Send for Arena<B> {}

/// A position of an arena's bump pointer, from [`Arena::checkpoint`], to
/// go back to with [`Arena::rollback`].
///
/// ```
/// let mut arena = mallocator::Arena::new();
/// let cp = arena.checkpoint();
/// arena.alloc([0u8; 100]);
/// arena.rollback(cp);
/// assert_eq!(arena.used(), 0);
/// ```
///
/// A checkpoint remembers which arena it was taken on, not only the
/// address: an arena built later over the same memory (a buffer lent
/// again, or a reservation the OS handed out again at the same address)
/// rejects it, see [`Arena::rollback`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Checkpoint {
    /// The arena it was taken on.
    arena: ArenaId,
    /// The bump pointer's address then.
    pos: usize,
}

impl Checkpoint {
    /// The checkpoint's parts: the id of its arena and the bump pointer's
    /// address then (for a C caller, who keeps them in a plain struct).
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// let cp = arena.checkpoint();
    /// let (id, pos) = cp.to_raw();
    /// assert_eq!(pos, arena.ptr() as usize);
    /// assert_eq!(mallocator::Checkpoint::from_raw(id, pos), cp);
    /// ```
    pub fn to_raw(self) -> (u64, usize) {
        (self.arena, self.pos)
    }

    /// A checkpoint from the parts [`to_raw`](Self::to_raw) gave. Safe:
    /// a rollback checks the arena and the position anyway.
    ///
    /// ```
    /// let mut arena = mallocator::Arena::new();
    /// let forged = mallocator::Checkpoint::from_raw(u64::MAX, 0);
    /// assert!(arena.try_rollback(forged).is_err());
    /// ```
    pub fn from_raw(arena: u64, pos: usize) -> Checkpoint {
        Checkpoint { arena, pos }
    }
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The position in hex, as the bump pointer is shown in panics.
        f.debug_struct("Checkpoint")
            .field("arena", &self.arena)
            .field("pos", &format_args!("{:#x}", self.pos))
            .finish()
    }
}

/// A number told apart from every other arena's, from a global counter.
///
/// With 64-bit atomics it never repeats in practice (2^64 arenas); on a
/// target with only 32-bit atomics it repeats after 2^32 arenas; on a
/// target with no atomics at all every arena gets 0, and a checkpoint is
/// told apart by its address only.
type ArenaId = u64;

/// The id of a new arena.
fn next_arena_id() -> ArenaId {
    #[cfg(target_has_atomic = "64")]
    {
        use core::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        // Relaxed: only uniqueness matters, no other memory is published.
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
    #[cfg(all(not(target_has_atomic = "64"), target_has_atomic = "ptr"))]
    {
        use core::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        // Relaxed: only uniqueness matters, no other memory is published.
        NEXT.fetch_add(1, Ordering::Relaxed) as ArenaId
    }
    #[cfg(not(any(target_has_atomic = "64", target_has_atomic = "ptr")))]
    {
        0
    }
}

/// What can go wrong with an arena besides plain exhaustion of an
/// allocation (which is an [`AllocError`] or a panic).
///
/// ```
/// let arena = mallocator::Arena::new();
/// let e = arena.alloc_c_str("a\0b").unwrap_err();
/// assert_eq!(e, mallocator::ArenaError::InteriorNul { position: 1 });
/// assert!(e.to_string().contains("NUL"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArenaError {
    /// The operating system refused (reserve, commit, protect).
    Os(OsError),
    /// The capacity overflows the address space once rounded to pages.
    CapacityOverflow,
    /// Arenas are created writable: [`Protection::ReadWrite`] or
    /// [`Protection::ReadWriteExecute`].
    ///
    /// [`Protection::ReadWrite`]: crate::Protection::ReadWrite
    /// [`Protection::ReadWriteExecute`]: crate::Protection::ReadWriteExecute
    InvalidProtection(crate::Protection),
    /// Not enough room: `requested` bytes (with alignment padding
    /// excluded), `remaining` bytes left before the capacity.
    OutOfMemory {
        /// Bytes asked for.
        requested: usize,
        /// Bytes left in the arena.
        remaining: usize,
    },
    /// A C string cannot contain NUL; the byte offset of the first one.
    InteriorNul {
        /// Byte offset of the NUL.
        position: usize,
    },
    /// A [`Checkpoint`] of another arena, or above the bump pointer (see
    /// [`Arena::try_rollback`]).
    BadCheckpoint,
    /// A byte string holds characters up to U+00FF only.
    NotLatin1 {
        /// Index (in characters) of the first character above U+00FF.
        position: usize,
        /// That character.
        ch: char,
    },
}

impl fmt::Display for ArenaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArenaError::Os(e) => write!(f, "arena: {e}"),
            ArenaError::CapacityOverflow => {
                f.write_str("arena: capacity overflows the address space")
            }
            ArenaError::InvalidProtection(p) => {
                write!(f, "arena: an arena must be created writable, not {p:?}")
            }
            ArenaError::OutOfMemory {
                requested,
                remaining,
            } => write!(
                f,
                "arena: out of memory: {requested} bytes requested, {remaining} bytes left"
            ),
            ArenaError::BadCheckpoint => f.write_str(
                "arena: the checkpoint belongs to another arena or lies above the bump pointer",
            ),
            ArenaError::InteriorNul { position } => {
                write!(f, "arena: C string has an interior NUL at byte {position}")
            }
            ArenaError::NotLatin1 { position, ch } => write!(
                f,
                "arena: character {ch:?} (U+{:04X}) at index {position} does not fit in one byte",
                *ch as u32
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ArenaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ArenaError::Os(e) => Some(e),
            _ => None,
        }
    }
}

impl From<OsError> for ArenaError {
    fn from(e: OsError) -> Self {
        ArenaError::Os(e)
    }
}

impl<'a> Arena<Buffer<'a>> {
    /// An arena over a caller-provided buffer: no OS calls, works without
    /// `std` and under Miri. Capacity is the buffer's length (less only
    /// for a buffer in the top 64 KiB of the address space, which the
    /// arena does not use); nothing is ever committed or protected.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use mallocator::Arena;
    ///
    /// let mut buf = [MaybeUninit::<u8>::uninit(); 256];
    /// let arena = Arena::from_buffer(&mut buf);
    /// let xs = arena.alloc_slice_copy(&[1u32, 2, 3]);
    /// assert_eq!(xs, [1, 2, 3]);
    /// assert!(arena.try_alloc([0u8; 300]).is_err());
    /// ```
    pub fn from_buffer(buf: &'a mut [MaybeUninit<u8>]) -> Self {
        Arena::over_region(buf.as_mut_ptr().cast(), buf.len())
    }

    /// An arena over the `len` bytes at `ptr`, which the caller lends to it
    /// for `'a` (as [`from_buffer`](Arena::from_buffer)'s slice).
    fn over_region(ptr: *mut u8, len: usize) -> Self {
        // A slice pointer is never null (an empty one is dangling).
        let base = NonNull::new(ptr).unwrap_or(NonNull::dangling());
        let start = base.as_ptr() as usize;
        // The region must end `MARGIN` below `usize::MAX` (the fast path
        // adds without overflow checks). Only a buffer in the top 64 KiB of
        // the address space (possible on 32-bit targets) is affected: it is
        // cut short there, or, if it starts above, not used at all.
        let Some(room) = (usize::MAX - MARGIN).checked_sub(start) else {
            let empty = NonNull::dangling();
            let at = empty.as_ptr() as usize;
            return Arena::from_parts(empty, at, at, Buffer::new());
        };
        let limit = start + len.min(room);
        Arena::from_parts(base, limit, limit, Buffer::new())
    }
}

impl<B: Backing> Arena<B> {
    /// Assembles an arena; `committed_end` and `limit` are addresses in
    /// `[base, usize::MAX - MARGIN]`.
    fn from_parts(base: NonNull<u8>, committed_end: usize, limit: usize, backing: B) -> Self {
        debug_assert!(committed_end <= limit && limit <= usize::MAX - MARGIN);
        let arena = Arena {
            ptr: Cell::new(base.as_ptr()),
            end: Cell::new(committed_end),
            last: Cell::new((0, 0)),
            base,
            limit,
            id: next_arena_id(),
            backing,
        };
        arena.sync_end();
        arena
    }

    /// Recomputes the fast-path limit from the backing's state.
    #[inline]
    fn sync_end(&self) {
        let end = if self.backing.writable() {
            self.backing.committed_end(self.limit)
        } else {
            self.ptr.get() as usize
        };
        self.end.set(end);
    }

    /// Moves the bump pointer to `addr` (in `[base, limit]`, below the
    /// committed end) and forgets the most recent valloc block.
    #[inline]
    fn set_ptr(&self, addr: usize) {
        let base = self.base.as_ptr();
        self.ptr.set(base.wrapping_add(addr - base as usize));
        self.last.set((0, 0));
        if !self.backing.writable() {
            self.end.set(addr);
        }
    }

    /// Start of the region.
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// assert_eq!(arena.base(), arena.ptr());
    /// ```
    #[inline]
    pub fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The bump pointer: where the next block starts (before alignment).
    /// It moves up.
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// arena.alloc(1u32);
    /// assert_eq!(arena.ptr() as usize, arena.base() as usize + 4);
    /// ```
    #[inline]
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.get()
    }

    /// The usable size in bytes (for virtual memory: the requested capacity
    /// rounded up to the page size; `Mallocator.C`'s `Size`).
    ///
    /// ```
    /// let arena = mallocator::Arena::with_capacity(10_000).unwrap();
    /// assert_eq!(arena.capacity() % mallocator::sys::page_size(), 0);
    /// assert!(arena.capacity() >= 10_000);
    /// ```
    #[inline]
    pub fn capacity(&self) -> usize {
        self.limit - self.base.as_ptr() as usize
    }

    /// Bytes between the base and the bump pointer (padding included).
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// arena.alloc(1u8);
    /// arena.alloc(1u64); // 7 bytes of padding first
    /// assert_eq!(arena.used(), 16);
    /// ```
    #[inline]
    pub fn used(&self) -> usize {
        self.ptr.get() as usize - self.base.as_ptr() as usize
    }

    /// Bytes left: `capacity() - used()`.
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// arena.alloc(0u16);
    /// assert_eq!(arena.remaining(), arena.capacity() - 2);
    /// ```
    #[inline]
    pub fn remaining(&self) -> usize {
        self.limit - self.ptr.get() as usize
    }

    /// Bytes of the region that are committed (backed by memory). Equal to
    /// the capacity for a buffer-backed arena.
    ///
    /// ```
    /// let arena = mallocator::Arena::with_capacity(1 << 24).unwrap();
    /// assert_eq!(arena.committed(), 0);
    /// arena.alloc(1u8);
    /// assert!(arena.committed() >= mallocator::sys::page_size());
    /// ```
    #[inline]
    pub fn committed(&self) -> usize {
        self.backing.committed_end(self.limit) - self.base.as_ptr() as usize
    }

    /// The fast path for a const-size type: `Some(block)` if the block fits
    /// below the committed end, `None` to take the slow path.
    #[inline(always)]
    fn bump_sized<T>(&self) -> Option<NonNull<u8>> {
        let (size, align) = (size_of::<T>(), align_of::<T>());
        if size + (align - 1) > MARGIN {
            return None;
        }
        let cur = self.ptr.get();
        let addr = cur as usize;
        // No overflow: `addr <= end <= usize::MAX - MARGIN` and
        // `size + align - 1 <= MARGIN`. `size` is a multiple of `align`,
        // so the block is `[new - size, new)` and `new - size >= addr`.
        let new = (addr + (size + (align - 1))) & !(align - 1);
        if new > self.end.get() {
            return None;
        }
        self.ptr.set(cur.wrapping_add(new - addr));
        // SAFETY: `new - size >= addr >= base`, which is non-null.
        Some(unsafe { NonNull::new_unchecked(cur.wrapping_add(new - size - addr)) })
    }

    /// A pointer for a value of type `T`: the fast path, else the slow
    /// path, which may fail.
    #[inline(always)]
    fn place_for<T>(&self) -> Result<NonNull<T>, AllocError> {
        if size_of::<T>() == 0 {
            return Ok(NonNull::dangling());
        }
        match self.bump_sized::<T>() {
            Some(p) => Ok(p.cast()),
            None => self.alloc_slow(Layout::new::<T>()).map(NonNull::cast),
        }
    }

    /// Moves `value` into the arena and returns a reference to it that
    /// lives as long as the borrow of the arena. The value's destructor is
    /// never run (see the [module docs](self#destructors)).
    ///
    /// # Panics
    ///
    /// When the arena is full (or not writable after [`protect`]), with a
    /// message naming the request and what is left; [`try_alloc`] returns
    /// an error instead.
    ///
    /// [`protect`]: Arena::protect
    /// [`try_alloc`]: Arena::try_alloc
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// let a = arena.alloc(1u64);
    /// let b = arena.alloc([2u8; 3]);
    /// *a += b[0] as u64;
    /// assert_eq!(*a, 3);
    /// ```
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    #[track_caller]
    pub fn alloc<T>(&self, value: T) -> &mut T {
        let p = if size_of::<T>() == 0 {
            NonNull::dangling()
        } else {
            match self.bump_sized::<T>() {
                Some(p) => p.cast::<T>(),
                None => self.alloc_slow_or_panic(Layout::new::<T>()).cast::<T>(),
            }
        };
        // SAFETY: `p` is aligned for `T`, valid for a `T` (or dangling for a
        // zero-sized `T`) and disjoint from every other live block; nothing
        // else refers to it until the arena is reset or rolled back, which
        // needs `&mut self` and so ends the returned borrow first.
        unsafe {
            p.as_ptr().write(value);
            &mut *p.as_ptr()
        }
    }

    /// Like [`alloc`](Arena::alloc), but returns `Err` (dropping `value`)
    /// when the arena is full.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// let mut buf = [MaybeUninit::uninit(); 16];
    /// let arena = mallocator::Arena::from_buffer(&mut buf);
    /// assert!(arena.try_alloc([1u8; 10]).is_ok());
    /// assert!(arena.try_alloc([0u8; 7]).is_err());
    /// assert!(arena.try_alloc([2u8; 6]).is_ok()); // still usable
    /// ```
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub fn try_alloc<T>(&self, value: T) -> Result<&mut T, AllocError> {
        let p = self.place_for::<T>()?;
        // SAFETY: as in `alloc`.
        unsafe {
            p.as_ptr().write(value);
            Ok(&mut *p.as_ptr())
        }
    }

    /// `Mallocator.C`'s `Alloc(size, align)`: an uninitialized block, validated
    /// by [`request_layout`] (`align == 0` means 16, a non-power-of-two
    /// alignment or an overflowing size is an error, `size == 0` reserves
    /// one byte so the pointer is unique).
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// let p = arena.alloc_raw(100, 64).unwrap();
    /// assert_eq!(p.as_ptr() as usize % 64, 0);
    /// assert!(arena.alloc_raw(8, 3).is_err());
    /// assert!(arena.alloc_raw(usize::MAX - 10, 8).is_err());
    /// assert!(arena.alloc_raw(1 << 40, 8).is_err()); // more than the capacity
    /// ```
    #[inline(always)]
    pub fn alloc_raw(&self, size: usize, align: usize) -> Result<NonNull<u8>, AllocError> {
        self.alloc_layout(request_layout(align, size)?)
    }

    /// An uninitialized block for a Rust [`Layout`]. A zero-size layout
    /// gets an aligned pointer and takes no room past it (the bump pointer
    /// still moves over the padding up to that alignment).
    ///
    /// ```
    /// use core::alloc::Layout;
    /// let arena = mallocator::Arena::new();
    /// let p = arena.alloc_layout(Layout::new::<[u16; 8]>()).unwrap();
    /// assert_eq!(p.as_ptr() as usize % 2, 0);
    /// arena.alloc(1u8);
    /// let z = arena.alloc_layout(Layout::from_size_align(0, 8).unwrap()).unwrap();
    /// assert_eq!((z.as_ptr() as usize % 8, arena.used()), (0, 24));
    /// ```
    #[inline(always)]
    pub fn alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let cur = self.ptr.get();
        let addr = cur as usize;
        let pad = addr.wrapping_neg() & (layout.align() - 1);
        // No overflow: `pad < align` and a `Layout`'s size is at most
        // `isize::MAX - (align - 1)`; `addr <= end` by the invariant.
        let needed = pad + layout.size();
        if needed <= self.end.get() - addr {
            self.ptr.set(cur.wrapping_add(needed));
            // SAFETY: `addr + pad >= base`, which is non-null.
            return Ok(unsafe { NonNull::new_unchecked(cur.wrapping_add(pad)) });
        }
        self.alloc_slow(layout)
    }

    /// The slow path: commits more memory if the block fits the capacity.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let cur = self.ptr.get();
        let addr = cur as usize;
        let pad = addr.wrapping_neg() & (layout.align() - 1);
        let needed = pad.checked_add(layout.size()).ok_or(AllocError)?;
        if needed > self.limit - addr || !self.backing.writable() {
            return Err(AllocError);
        }
        let new_end = addr + needed;
        if new_end > self.end.get() {
            let end = self
                .backing
                .grow(self.base, new_end, self.limit)
                .map_err(|_| AllocError)?;
            self.end.set(end);
        }
        self.ptr.set(cur.wrapping_add(needed));
        // SAFETY: `addr + pad >= base`, which is non-null.
        Ok(unsafe { NonNull::new_unchecked(cur.wrapping_add(pad)) })
    }

    /// The slow path of the infallible methods: panics with the request
    /// and what is left.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn alloc_slow_or_panic(&self, layout: Layout) -> NonNull<u8> {
        match self.alloc_slow(layout) {
            Ok(p) => p,
            Err(AllocError) => self.exhausted(layout),
        }
    }

    /// The panic of the infallible methods, naming the request and what
    /// is left.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn exhausted(&self, layout: Layout) -> ! {
        panic!(
            "mallocator::Arena: cannot allocate {} bytes aligned to {}: {} of {} bytes left{}",
            layout.size(),
            layout.align(),
            self.remaining(),
            self.capacity(),
            if self.backing.writable() {
                ""
            } else {
                " (the arena is not writable)"
            }
        )
    }

    /// The error of a failed `bytes`-byte request, for [`ArenaError`].
    fn out_of_memory(&self, requested: usize) -> ArenaError {
        ArenaError::OutOfMemory {
            requested,
            remaining: self.remaining(),
        }
    }

    /// The current position, to [`rollback`](Arena::rollback) to later.
    ///
    /// ```
    /// let mut arena = mallocator::Arena::new();
    /// arena.alloc(1u8);
    /// let cp = arena.checkpoint();
    /// arena.alloc_str("scratch");
    /// arena.rollback(cp);
    /// assert_eq!(arena.used(), 1);
    /// ```
    #[inline]
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            arena: self.id,
            pos: self.ptr.get() as usize,
        }
    }

    /// Frees everything allocated since `to` was taken. Safe because it
    /// takes `&mut self`: no reference into the arena can be alive.
    ///
    /// # Panics
    ///
    /// If `to` was taken on another arena, even one over the same memory
    /// (each arena has its own id, which its checkpoints carry), or is
    /// above the bump pointer (taken after a position that was since
    /// rolled back or reset).
    ///
    /// ```should_panic
    /// let mut arena = mallocator::Arena::new();
    /// arena.alloc(0u32);
    /// let cp = arena.checkpoint();
    /// arena.reset();
    /// arena.rollback(cp); // above the bump pointer: panics
    /// ```
    ///
    /// ```should_panic
    /// use core::mem::MaybeUninit;
    /// let mut buf = [MaybeUninit::<u8>::uninit(); 64];
    /// let cp = {
    ///     let first = mallocator::Arena::from_buffer(&mut buf);
    ///     first.alloc(0u32);
    ///     first.checkpoint()
    /// };
    /// let mut second = mallocator::Arena::from_buffer(&mut buf);
    /// second.alloc(0u64);
    /// second.rollback(cp); // same buffer, another arena: panics
    /// ```
    #[track_caller]
    pub fn rollback(&mut self, to: Checkpoint) {
        if to.arena != self.id {
            // Not an `assert!` so that the message can name both arenas.
            foreign_checkpoint(to, self.id);
        }
        assert!(
            self.rewind_within(to),
            "mallocator::Arena::rollback: {to:?} is not a position of this arena below its bump pointer {:p}",
            self.ptr.get()
        );
    }

    /// [`rollback`](Self::rollback) that reports a bad checkpoint as
    /// [`ArenaError::BadCheckpoint`] (and changes nothing) instead of
    /// panicking: for checkpoints that come from outside Rust's view, such
    /// as a C caller's.
    ///
    /// ```
    /// let mut arena = mallocator::Arena::new();
    /// let cp = arena.checkpoint();
    /// arena.alloc(1u8);
    /// let later = arena.checkpoint();
    /// assert!(arena.try_rollback(cp).is_ok());
    /// assert_eq!(arena.try_rollback(later), Err(mallocator::ArenaError::BadCheckpoint));
    /// ```
    pub fn try_rollback(&mut self, to: Checkpoint) -> Result<(), ArenaError> {
        if self.rewind_within(to) {
            Ok(())
        } else {
            Err(ArenaError::BadCheckpoint)
        }
    }

    /// Moves the bump pointer back to `to` if `to` was taken on this arena
    /// and lies in `[base, ptr]`.
    fn rewind_within(&mut self, to: Checkpoint) -> bool {
        let ok = to.arena == self.id
            && (self.base.as_ptr() as usize..=self.ptr.get() as usize).contains(&to.pos);
        if ok {
            self.set_ptr(to.pos);
        }
        ok
    }

    /// Runs `f` on the arena, then frees everything `f` allocated. `f`
    /// cannot return references into the arena (its result type cannot
    /// borrow from the `&mut Arena` it receives), and nothing allocated
    /// before can be used inside (the arena is mutably borrowed), so the
    /// rollback is safe. Scopes nest.
    ///
    /// ```
    /// let mut arena = mallocator::Arena::new();
    /// let kept = arena.alloc(1u64) as *const u64;
    /// let total = arena.scope(|a| {
    ///     let xs = a.alloc_slice_copy(&[1u32, 2, 3]);
    ///     xs.iter().sum::<u32>()
    /// });
    /// assert_eq!(total, 6);
    /// assert_eq!(arena.used(), 8);
    /// # let _ = kept;
    /// ```
    ///
    /// Returning a reference out of the scope does not compile:
    ///
    /// ```compile_fail
    /// let mut arena = mallocator::Arena::new();
    /// let leaked = arena.scope(|a| a.alloc(5u32)); // error
    /// ```
    ///
    /// Nor does using an earlier reference inside it:
    ///
    /// ```compile_fail,E0502
    /// let mut arena = mallocator::Arena::new();
    /// let x = arena.alloc(5u32);
    /// arena.scope(|a| *a.alloc(1u32) + 1);
    /// *x += 1; // error: `arena` was mutably borrowed while `x` lived
    /// ```
    pub fn scope<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let cp = self.checkpoint();
        let result = f(self);
        // `f` may have reset the arena (then there is nothing to undo) or
        // swapped it for another one (then `cp` carries another arena's id).
        self.rewind_within(cp);
        result
    }

    /// Frees everything, keeping the reservation (`Mallocator.C`'s `Free()` then
    /// re-use). Committed pages stay committed unless the arena was built
    /// with [`ArenaBuilder::decommit_on_reset`].
    ///
    /// ```
    /// let mut arena = mallocator::Arena::new();
    /// arena.alloc([0u8; 100]);
    /// arena.reset();
    /// assert_eq!(arena.used(), 0);
    /// ```
    pub fn reset(&mut self) {
        let base = self.base.as_ptr() as usize;
        self.set_ptr(base);
        self.backing.reset(self.base);
        self.sync_end();
    }

    /// A [`Valloc`] handle to this arena, for code written against the C
    /// interface. `free` through it gives back the most recent block only;
    /// it ignores every other pointer (like Zig's `FixedBufferAllocator`).
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// let v = arena.valloc();
    /// let p = v.malloc(8, 64);
    /// assert_eq!(arena.used(), 64);
    /// // SAFETY: `p` came from `v`.
    /// unsafe { v.free(p) }; // the most recent block: given back
    /// assert_eq!(arena.used(), 0);
    /// ```
    #[inline]
    pub fn valloc(&self) -> Valloc<'_, Local> {
        Valloc::new_local(self)
    }

    /// True if `ptr..ptr + size` is the block just below the bump pointer.
    #[inline]
    fn is_last(&self, ptr: NonNull<u8>, size: usize) -> bool {
        (ptr.as_ptr() as usize).wrapping_add(size) == self.ptr.get() as usize
    }

    /// Grows the most recent block `[ptr, ptr + old)` to `new` bytes in
    /// place, committing memory if needed. `false` if it does not fit.
    fn grow_last_in_place(&self, ptr: NonNull<u8>, new: usize) -> bool {
        let start = ptr.as_ptr() as usize;
        if new > self.limit - start {
            return false;
        }
        let new_end = start + new;
        if new_end > self.end.get() {
            if !self.backing.writable() {
                return false;
            }
            match self.backing.grow(self.base, new_end, self.limit) {
                Ok(end) => self.end.set(end),
                Err(_) => return false,
            }
        }
        let cur = self.ptr.get();
        self.ptr.set(cur.wrapping_add(new_end - cur as usize));
        true
    }
}

/// The panic of [`Arena::rollback`] given another arena's checkpoint.
#[cold]
#[inline(never)]
#[track_caller]
fn foreign_checkpoint(to: Checkpoint, this: ArenaId) -> ! {
    panic!(
        "mallocator::Arena::rollback: {to:?} is not a position of this arena: it was taken on \
         arena #{}, and this is arena #{this} (a checkpoint belongs to the arena that made it, \
         even when another arena later uses the same memory)",
        to.arena
    )
}

#[cfg(any(unix, windows))]
impl Default for Arena {
    /// [`Arena::new`].
    ///
    /// ```
    /// let arena: mallocator::Arena = Default::default();
    /// assert_eq!(arena.capacity(), mallocator::sys::allocation_granularity());
    /// ```
    fn default() -> Self {
        Arena::new()
    }
}

impl<B: Backing> Drop for Arena<B> {
    fn drop(&mut self) {
        self.backing.release(self.base);
    }
}

impl<B: Backing> fmt::Debug for Arena<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("base", &self.base)
            .field("used", &self.used())
            .field("committed", &self.committed())
            .field("capacity", &self.capacity())
            .finish()
    }
}

// SAFETY: blocks come from the bump allocator: aligned, of the requested
// size, inside the region and disjoint from every other live block (the
// bump pointer only moves back over a block in `free`, for the most recent
// block, or through `&mut self`). They stay valid until freed, or until the
// arena is reset, rolled back or dropped, which needs `&mut self` and so
// ends every handle's borrow first.
unsafe impl<B: Backing> RawAlloc for Arena<B> {
    #[inline]
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let p = self.alloc_layout(layout)?;
        self.last
            .set((p.as_ptr() as usize, self.ptr.get() as usize));
        Ok(p)
    }

    /// Gives back `ptr` if it is the most recent block from
    /// [`RawAlloc::alloc`] and nothing was allocated since; otherwise does
    /// nothing (any pointer is accepted).
    #[inline]
    unsafe fn free(&self, ptr: NonNull<u8>) {
        let (start, end) = self.last.get();
        if ptr.as_ptr() as usize == start && self.ptr.get() as usize == end {
            self.set_ptr(start);
        }
    }
}

// SAFETY: as for `RawAlloc` above; `deallocate`, `grow` and `shrink` move
// the bump pointer only for the block just below it, which the caller
// gives up (or keeps, resized) by contract.
unsafe impl<B: Backing> Allocator for &Arena<B> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let p = self.alloc_layout(layout)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 && self.is_last(ptr, layout.size()) {
            self.set_ptr(ptr.as_ptr() as usize);
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let aligned = ptr.as_ptr() as usize & (new.align() - 1) == 0;
        if aligned && old.size() != 0 && self.is_last(ptr, old.size()) {
            if self.grow_last_in_place(ptr, new.size()) {
                return Ok(NonNull::slice_from_raw_parts(ptr, new.size()));
            }
            return Err(AllocError);
        }
        let fresh = self.alloc_layout(new)?;
        // SAFETY: `ptr` is valid for `old.size()` bytes (caller), `fresh`
        // for `new.size() >= old.size()`, and they are disjoint (`fresh`
        // is above the bump pointer, which is above `ptr`'s block).
        unsafe { ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.as_ptr(), old.size()) };
        Ok(NonNull::slice_from_raw_parts(fresh, new.size()))
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded contract.
        let block = unsafe { self.grow(ptr, old, new) }?;
        // SAFETY: the block is valid for `new.size()` bytes and the tail
        // past `old.size()` is ours to initialize.
        unsafe {
            block
                .cast::<u8>()
                .as_ptr()
                .add(old.size())
                .write_bytes(0, new.size() - old.size())
        };
        Ok(block)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if ptr.as_ptr() as usize & (new.align() - 1) == 0 {
            if old.size() != 0 && self.is_last(ptr, old.size()) {
                self.set_ptr(ptr.as_ptr() as usize + new.size());
            }
            return Ok(NonNull::slice_from_raw_parts(ptr, new.size()));
        }
        let fresh = self.alloc_layout(new)?;
        // SAFETY: `ptr` is valid for `old.size() >= new.size()` bytes,
        // `fresh` for `new.size()`, disjoint as in `grow`.
        unsafe { ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.as_ptr(), new.size()) };
        Ok(NonNull::slice_from_raw_parts(fresh, new.size()))
    }
}

#[cfg(test)]
mod tests;
