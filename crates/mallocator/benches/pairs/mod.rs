//! The measured loops, shared by `valloc.rs` (criterion) and
//! `valloc_overhead.rs` (paired timing, instruction counts): the same sizes
//! and the same loop for every variant.

use core::alloc::Layout;
use core::ptr::NonNull;
use std::hint::black_box;

use mallocator::libc_alloc::LibcAlloc;
use mallocator::{AllocError, RawAlloc, Valloc};

/// The request sizes, cycled: 16, 32, ..., 256 bytes.
pub const SIZES: [usize; 16] = {
    let mut s = [0; 16];
    let mut i = 0;
    while i < 16 {
        s[i] = 16 * (i + 1);
        i += 1;
    }
    s
};

/// How many malloc/free pairs one call of a loop makes.
pub const PAIRS: usize = 1024;

/// The C library behind a vtable of its own (not the libc handle's), so
/// its handle takes the general path: an indirect call through the C
/// vtable into a trampoline that validates the arguments again.
pub struct Forward;

// SAFETY: blocks come from `LibcAlloc`, which upholds the contract.
unsafe impl RawAlloc for Forward {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        LibcAlloc.alloc(layout)
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: `ptr` came from `LibcAlloc::alloc`.
        unsafe { LibcAlloc.free(ptr) }
    }
}

pub static FORWARD: Forward = Forward;

/// `PAIRS` pairs of `libc::malloc` / `libc::free`.
#[inline(never)]
pub fn direct() {
    for i in 0..PAIRS {
        let size = black_box(SIZES[i % SIZES.len()]);
        // SAFETY: plain malloc/free pairs.
        unsafe {
            let p = libc::malloc(size);
            black_box(p);
            libc::free(p);
        }
    }
}

/// `PAIRS` pairs of `v.malloc(0, size)` / `v.free`. Callers pass the
/// handle through `black_box`, so nothing is resolved at compile time.
#[inline(never)]
pub fn through(v: Valloc<'static>) {
    for i in 0..PAIRS {
        let size = black_box(SIZES[i % SIZES.len()]);
        let p = v.malloc(0, size);
        black_box(p);
        // SAFETY: `p` came from `v.malloc`.
        unsafe { v.free(p) };
    }
}

/// A named loop of `PAIRS` pairs.
pub type Variant = (&'static str, Box<dyn Fn()>);

/// The variants: the C library directly, the libc handle, and a handle
/// with its own vtable.
pub fn variants() -> [Variant; 3] {
    let libc = black_box(Valloc::libc());
    let forward = black_box(Valloc::new(&FORWARD));
    [
        ("libc_direct", Box::new(direct)),
        ("valloc_libc", Box::new(move || through(libc))),
        ("valloc_vtable", Box::new(move || through(forward))),
    ]
}
