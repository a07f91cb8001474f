//! Where an arena's memory comes from: reserved virtual memory (with its
//! builder, commit policy and protection) or a caller's buffer.

use core::cell::Cell;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use super::{Arena, ArenaError, Backing, MARGIN};
use crate::sys::{self, OsError, Protection};

/// The backing's side of an arena. Private: the trait is sealed.
pub trait Sealed {
    /// Whether new blocks may be written (false after protecting the
    /// arena read-only or inaccessible).
    fn writable(&self) -> bool;
    /// The committed end (an address); `limit` is the arena's end.
    fn committed_end(&self, limit: usize) -> usize;
    /// Makes `[.., needed)` usable (`needed <= limit`); returns the new
    /// committed end.
    fn grow(&self, base: NonNull<u8>, needed: usize, limit: usize) -> Result<usize, OsError>;
    /// Called by `Arena::reset` after the bump pointer went back to `base`.
    fn reset(&mut self, base: NonNull<u8>);
    /// Called once, by `Arena`'s `Drop`.
    fn release(&mut self, base: NonNull<u8>);
}

/// The backing of [`Arena::from_buffer`]: a caller's buffer, borrowed
/// mutably for `'a`. Everything is "committed" from the start.
///
/// ```
/// use core::mem::MaybeUninit;
/// use mallocator::{arena::Buffer, Arena};
///
/// let mut buf = [MaybeUninit::uninit(); 64];
/// let arena: Arena<Buffer<'_>> = Arena::from_buffer(&mut buf);
/// assert_eq!(arena.committed(), 64);
/// ```
#[derive(Debug)]
pub struct Buffer<'a>(PhantomData<&'a mut [MaybeUninit<u8>]>);

impl Buffer<'_> {
    pub(super) fn new() -> Self {
        Buffer(PhantomData)
    }
}

impl Sealed for Buffer<'_> {
    #[inline]
    fn writable(&self) -> bool {
        true
    }
    #[inline]
    fn committed_end(&self, limit: usize) -> usize {
        limit
    }
    fn grow(&self, _: NonNull<u8>, _: usize, limit: usize) -> Result<usize, OsError> {
        // Unreachable in practice: the whole buffer is committed.
        Ok(limit)
    }
    fn reset(&mut self, _: NonNull<u8>) {}
    fn release(&mut self, _: NonNull<u8>) {}
}
impl Backing for Buffer<'_> {}

/// When an arena commits the pages of its reservation.
///
/// ```
/// use mallocator::{Arena, CommitPolicy};
///
/// let eager = Arena::builder().capacity(1 << 20).commit_policy(CommitPolicy::Eager).build().unwrap();
/// assert_eq!(eager.committed(), 1 << 20);
/// let lazy = Arena::builder().capacity(1 << 20).build().unwrap();
/// assert_eq!(lazy.committed(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitPolicy {
    /// Commit the whole capacity when the arena is created.
    Eager,
    /// Commit as the bump pointer advances: at least `min_chunk` bytes at a
    /// time (rounded up to pages), and at least as much as is already
    /// committed, up to 64 MiB per step, so that the number of commits is
    /// logarithmic in the size. The default, with a 64 KiB `min_chunk`.
    Lazy {
        /// Smallest commit step in bytes.
        min_chunk: usize,
    },
}

impl Default for CommitPolicy {
    /// `Lazy { min_chunk: 64 KiB }`.
    ///
    /// ```
    /// use mallocator::CommitPolicy;
    /// assert_eq!(CommitPolicy::default(), CommitPolicy::Lazy { min_chunk: 64 << 10 });
    /// ```
    fn default() -> Self {
        CommitPolicy::Lazy {
            min_chunk: 64 << 10,
        }
    }
}

/// The largest geometric commit step of [`CommitPolicy::Lazy`].
const MAX_GEOMETRIC_STEP: usize = 64 << 20;

/// The backing of OS arenas: a reservation of address space, committed
/// in chunks, released on drop.
///
/// ```
/// let arena: mallocator::Arena<mallocator::arena::VirtualMemory> = mallocator::Arena::new();
/// assert!(arena.capacity() > 0);
/// ```
#[derive(Debug)]
pub struct VirtualMemory {
    /// Bytes reserved at `base` (capacity plus guard page).
    reserved: usize,
    /// Committed end (an address).
    committed: Cell<usize>,
    /// Protection of the committed pages, and of pages committed later.
    protection: Protection,
    policy: CommitPolicy,
    decommit_on_reset: bool,
    page: usize,
}

impl Sealed for VirtualMemory {
    #[inline]
    fn writable(&self) -> bool {
        self.protection.is_writable()
    }

    #[inline]
    fn committed_end(&self, _limit: usize) -> usize {
        self.committed.get()
    }

    fn grow(&self, base: NonNull<u8>, needed: usize, limit: usize) -> Result<usize, OsError> {
        let committed = self.committed.get();
        let base_addr = base.as_ptr() as usize;
        let step = match self.policy {
            CommitPolicy::Eager => 0,
            CommitPolicy::Lazy { min_chunk } => {
                min_chunk.max((committed - base_addr).min(MAX_GEOMETRIC_STEP))
            }
        };
        let target = needed.max(committed.saturating_add(step)).min(limit);
        // `limit` is page-aligned, so rounding up stays within it.
        let target = round_up(target, self.page).map_or(limit, |t| t.min(limit));
        // Derived from `base` to keep its provenance; `committed >= base`.
        let start = NonNull::new(base.as_ptr().wrapping_add(committed - base_addr)).unwrap_or(base);
        // SAFETY: `[committed, target)` is page-aligned (both ends are) and
        // inside the reservation (`target <= limit`).
        unsafe { sys::commit(start, target - committed, self.protection) }?;
        self.committed.set(target);
        Ok(target)
    }

    fn reset(&mut self, base: NonNull<u8>) {
        let len = self.committed.get() - base.as_ptr() as usize;
        if !self.decommit_on_reset || len == 0 {
            return;
        }
        // SAFETY: `[base, committed)` is committed, page-aligned, and dead
        // (reset has `&mut` access to the arena). On failure the pages
        // simply stay committed.
        if unsafe { sys::decommit(base, len) }.is_ok() {
            self.committed.set(base.as_ptr() as usize);
        }
    }

    fn release(&mut self, base: NonNull<u8>) {
        // SAFETY: `base`/`reserved` are exactly our reservation, and the
        // arena is being dropped: nothing borrows it. A failure can only
        // leak address space, so it is ignored.
        let _ = unsafe { sys::release(base, self.reserved) };
    }
}
impl Backing for VirtualMemory {}

/// `x` rounded up to a multiple of the power of two `to`.
fn round_up(x: usize, to: usize) -> Option<usize> {
    Some(x.checked_add(to - 1)? & !(to - 1))
}

/// Options for an OS-backed [`Arena`]: capacity, protection, guard page,
/// commit policy, decommit on reset.
///
/// ```
/// use mallocator::{Arena, CommitPolicy, Protection};
///
/// let arena = Arena::builder()
///     .capacity(1 << 24)
///     .protection(Protection::ReadWrite)
///     .guard_page(true)
///     .commit_policy(CommitPolicy::Lazy { min_chunk: 1 << 20 })
///     .decommit_on_reset(true)
///     .build()
///     .unwrap();
/// assert_eq!(arena.capacity(), 1 << 24);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ArenaBuilder {
    capacity: usize,
    protection: Protection,
    guard_page: bool,
    policy: CommitPolicy,
    decommit_on_reset: bool,
}

impl Default for ArenaBuilder {
    /// The options of [`Arena::new`].
    ///
    /// ```
    /// let a = mallocator::ArenaBuilder::default().build().unwrap();
    /// assert_eq!(a.capacity(), mallocator::sys::allocation_granularity());
    /// ```
    fn default() -> Self {
        ArenaBuilder {
            capacity: sys::allocation_granularity(),
            protection: Protection::ReadWrite,
            guard_page: false,
            policy: CommitPolicy::default(),
            decommit_on_reset: false,
        }
    }
}

impl ArenaBuilder {
    /// The capacity in bytes, rounded up to the page size (at least one
    /// page). Default: one allocation-granularity unit.
    ///
    /// ```
    /// let a = mallocator::Arena::builder().capacity(1).build().unwrap();
    /// assert_eq!(a.capacity(), mallocator::sys::page_size());
    /// ```
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// The protection pages are committed with: [`Protection::ReadWrite`]
    /// (default) or [`Protection::ReadWriteExecute`]; anything else makes
    /// [`build`](ArenaBuilder::build) fail (use [`Arena::protect`] after
    /// filling the arena instead).
    ///
    /// ```
    /// use mallocator::{Arena, Protection};
    /// assert!(Arena::builder().protection(Protection::ReadWriteExecute).build().is_ok());
    /// assert!(Arena::builder().protection(Protection::Read).build().is_err());
    /// ```
    pub fn protection(mut self, protection: Protection) -> Self {
        self.protection = protection;
        self
    }

    /// Reserve one more page past the end that is never committed, so
    /// that a write running off the end of the arena faults.
    ///
    /// ```
    /// let a = mallocator::Arena::builder().guard_page(true).build().unwrap();
    /// assert_eq!(a.capacity(), mallocator::sys::allocation_granularity());
    /// ```
    pub fn guard_page(mut self, on: bool) -> Self {
        self.guard_page = on;
        self
    }

    /// When pages are committed (default: [`CommitPolicy::Lazy`]).
    ///
    /// ```
    /// use mallocator::{Arena, CommitPolicy};
    /// let a = Arena::builder().commit_policy(CommitPolicy::Eager).build().unwrap();
    /// assert_eq!(a.committed(), a.capacity());
    /// ```
    pub fn commit_policy(mut self, policy: CommitPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Whether [`Arena::reset`] gives the committed pages back to the OS
    /// (default: no, they are kept for re-use).
    ///
    /// ```
    /// let mut a = mallocator::Arena::builder().decommit_on_reset(true).build().unwrap();
    /// a.alloc(1u8);
    /// a.reset();
    /// assert_eq!(a.committed(), 0);
    /// ```
    pub fn decommit_on_reset(mut self, on: bool) -> Self {
        self.decommit_on_reset = on;
        self
    }

    /// Reserves the address space (and commits it all for
    /// [`CommitPolicy::Eager`]).
    ///
    /// ```
    /// let e = mallocator::Arena::builder().capacity(usize::MAX).build().unwrap_err();
    /// assert_eq!(e, mallocator::ArenaError::CapacityOverflow);
    /// ```
    pub fn build(self) -> Result<Arena, ArenaError> {
        if !self.protection.is_writable() {
            return Err(ArenaError::InvalidProtection(self.protection));
        }
        let page = sys::page_size();
        let capacity = round_up(self.capacity.max(1), page)
            .filter(|&c| c <= isize::MAX as usize)
            .ok_or(ArenaError::CapacityOverflow)?;
        let reserved = capacity
            .checked_add(if self.guard_page { page } else { 0 })
            .ok_or(ArenaError::CapacityOverflow)?;
        let base = sys::reserve(reserved)?;
        let start = base.as_ptr() as usize;
        let backing = VirtualMemory {
            reserved,
            committed: Cell::new(start),
            protection: self.protection,
            policy: self.policy,
            decommit_on_reset: self.decommit_on_reset,
            page,
        };
        let limit = match start.checked_add(capacity) {
            Some(limit) if limit <= usize::MAX - MARGIN => limit,
            _ => {
                // An address range this high cannot be used without
                // overflow checks on the fast path; give it back.
                let mut backing = backing;
                backing.release(base);
                return Err(ArenaError::CapacityOverflow);
            }
        };
        let arena = Arena::from_parts(base, start, limit, backing);
        if self.policy == CommitPolicy::Eager {
            let end = arena.backing.grow(base, limit, limit)?;
            arena.end.set(end);
        }
        Ok(arena)
    }
}

impl Arena {
    /// An arena of one allocation-granularity unit (64 KiB on Windows, a
    /// page on Unix), read-write, like the default constructor of the C# `Mallocator.C` it follows.
    ///
    /// # Panics
    ///
    /// If the OS refuses to reserve that much address space;
    /// [`Arena::with_capacity`] and [`Arena::builder`] return the error.
    ///
    /// ```
    /// let arena = mallocator::Arena::new();
    /// assert_eq!(arena.capacity(), mallocator::sys::allocation_granularity());
    /// assert_eq!(arena.used(), 0);
    /// ```
    #[track_caller]
    pub fn new() -> Arena {
        match ArenaBuilder::default().build() {
            Ok(arena) => arena,
            Err(e) => panic!("mallocator::Arena::new: {e}"),
        }
    }

    /// An arena of `bytes` (rounded up to the page size), read-write,
    /// committed lazily. The capacity is only reserved: a 1 TiB arena is
    /// fine on a small machine.
    ///
    /// ```
    /// let arena = mallocator::Arena::with_capacity(1 << 26).unwrap();
    /// assert_eq!(arena.capacity(), 1 << 26);
    /// assert_eq!(arena.committed(), 0);
    /// ```
    pub fn with_capacity(bytes: usize) -> Result<Arena, ArenaError> {
        ArenaBuilder::default().capacity(bytes).build()
    }

    /// Options: capacity, protection, guard page, commit policy.
    ///
    /// ```
    /// let arena = mallocator::Arena::builder().capacity(8192).build().unwrap();
    /// assert_eq!(arena.capacity(), 8192);
    /// ```
    pub fn builder() -> ArenaBuilder {
        ArenaBuilder::default()
    }

    /// The current protection of the committed pages.
    ///
    /// ```
    /// use mallocator::{Arena, Protection};
    /// assert_eq!(Arena::new().protection(), Protection::ReadWrite);
    /// ```
    pub fn protection(&self) -> Protection {
        self.backing.protection
    }

    /// Changes the protection of the whole committed range (e.g. write
    /// code or tables, then make them read-only or executable). Pages
    /// committed later get the same protection. While the protection is
    /// not writable, every allocation that needs a byte fails (the
    /// infallible methods panic) instead of faulting, and a zero-sized one
    /// succeeds only where it needs no padding (nothing is written);
    /// protecting it writable again resumes.
    ///
    /// It takes `&mut self`, so no reference into the arena is alive
    /// across the change: read the data back through raw pointers (e.g.
    /// from [`base`](Arena::base)) or as a function pointer.
    ///
    /// ```
    /// use mallocator::{Arena, Protection};
    ///
    /// let mut arena = Arena::new();
    /// let table = arena.alloc_slice_copy(&[1u32, 2, 3]).as_ptr();
    /// arena.protect(Protection::Read).unwrap();
    /// // SAFETY: the table is still there and readable.
    /// assert_eq!(unsafe { *table.add(2) }, 3);
    /// assert!(arena.try_alloc(4u32).is_err());
    /// arena.protect(Protection::ReadWrite).unwrap();
    /// assert!(arena.try_alloc(4u32).is_ok());
    /// ```
    pub fn protect(&mut self, protection: Protection) -> Result<(), ArenaError> {
        let len = self.committed();
        if len != 0 {
            // SAFETY: `[base, base + committed)` is committed and
            // page-aligned; `&mut self` means no reference into it is
            // alive, and the allocation paths never write to pages that
            // are not writable (the fast path's end is the bump pointer
            // while they are not).
            unsafe { sys::protect(self.base, len, protection) }?;
        }
        self.backing.protection = protection;
        self.sync_end();
        Ok(())
    }
}
