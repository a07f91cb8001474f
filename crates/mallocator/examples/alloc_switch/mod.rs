//! The global allocator of the `leaky_*` examples: mallocator's global
//! leak tracker, or the plain system allocator when the environment has
//! `MALLOCATOR_SYSTEM_ALLOC=1`. `scripts/compare-valgrind.sh` runs each
//! example both ways: under Valgrind with the system allocator (so that
//! memcheck sees exactly the program's own allocations, not the
//! tracker's tables) and alone with the tracker.
//!
//! The choice is made once, at the first allocation, before any block
//! exists, so every block is freed by the allocator that made it.

use mallocator::backtracing::GlobalBacktracing;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

const UNDECIDED: u8 = 0;
const SYSTEM: u8 = 1;
const TRACKER: u8 = 2;

static CHOICE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// System allocator or leak tracker, as the environment says.
pub struct Switch {
    tracker: GlobalBacktracing,
}

impl Switch {
    /// The switch; the tracker reads its own settings (`MALLOCATOR_LEAKS`...)
    /// from the environment.
    pub const fn new() -> Self {
        Switch {
            tracker: GlobalBacktracing::new(),
        }
    }

    fn system(&self) -> bool {
        let mut choice = CHOICE.load(Ordering::Relaxed);
        if choice == UNDECIDED {
            // The first allocation happens before `main`, on one thread.
            choice = if system_requested() { SYSTEM } else { TRACKER };
            CHOICE.store(choice, Ordering::Relaxed);
        }
        choice == SYSTEM
    }
}

/// Reads `MALLOCATOR_SYSTEM_ALLOC` without allocating (`std::env` would
/// allocate, inside the allocator).
#[cfg(unix)]
fn system_requested() -> bool {
    // SAFETY: the name is NUL-terminated; getenv returns NULL or a pointer
    // to a NUL-terminated value, of which only the first byte is read (a
    // non-empty or empty string has at least that byte).
    unsafe {
        let value = libc::getenv(c"MALLOCATOR_SYSTEM_ALLOC".as_ptr());
        !value.is_null() && *value == b'1' as libc::c_char
    }
}

#[cfg(not(unix))]
fn system_requested() -> bool {
    false
}

// SAFETY: every call goes to one of two correct allocators, always the
// same one for the whole run (chosen before the first block), so each
// block is freed or resized by the allocator that made it.
unsafe impl GlobalAlloc for Switch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.system() {
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
            unsafe { System.alloc(layout) }
        } else {
            // SAFETY: as above.
            unsafe { self.tracker.alloc(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.system() {
            // SAFETY: `ptr` came from `System` with `layout` (one choice per run).
            unsafe { System.dealloc(ptr, layout) }
        } else {
            // SAFETY: `ptr` came from the tracker with `layout`.
            unsafe { self.tracker.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.system() {
            // SAFETY: `ptr` came from `System` with `layout`; the caller
            // upholds the rest of `realloc`'s contract.
            unsafe { System.realloc(ptr, layout, new_size) }
        } else {
            // SAFETY: as above, with the tracker.
            unsafe { self.tracker.realloc(ptr, layout, new_size) }
        }
    }
}
