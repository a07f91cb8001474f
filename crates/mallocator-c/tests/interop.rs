//! Handles across the language boundary, both ways: an allocator whose
//! vtable is written in C backs Rust collections and a tracker; handles
//! made in Rust (an arena's, a tracker's) are used by C code. The C half
//! is `tests/interop/counting.c`, compiled by the build script.
#![cfg(mlc_interop)]

use core::ffi::c_int;

use allocator_api2::vec::Vec as AVec;
use mallocator_core::backtracing::Backtracing;
use mallocator_core::{Arena, Valloc};

/// `counting_t` in the C file.
#[repr(C)]
#[derive(Default, Debug)]
struct Counting {
    allocs: usize,
    frees: usize,
    live: usize,
}

/// `mlc_valloc_t`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CValloc {
    self_: *mut core::ffi::c_void,
    vt: *const mallocator_core::VallocVtable,
}

extern "C" {
    fn counting_valloc(c: *mut Counting) -> CValloc;
    fn c_use_handle(v: CValloc, n: usize) -> c_int;
}

fn to_c<S: mallocator_core::Sharing>(v: Valloc<'_, S>) -> CValloc {
    CValloc {
        self_: v.self_ptr(),
        vt: v.vtable(),
    }
}

#[test]
fn a_vtable_written_in_c_backs_rust_collections_and_a_tracker() {
    let mut counting = Counting::default();
    // SAFETY: `counting` outlives every use of the handle below, and only
    // this thread uses it.
    let c = unsafe { counting_valloc(&mut counting) };
    // SAFETY: the C vtable serves blocks of the requested layout from the
    // C library and takes them back; its state lives on this stack frame
    // until the end of the test. (Shared is the C caller's promise: one
    // thread uses it here.)
    let v = unsafe { Valloc::from_raw(c.self_, c.vt) };
    {
        let mut xs = AVec::new_in(v);
        xs.extend(0u64..1000);
        assert_eq!(xs.iter().sum::<u64>(), 999 * 500);
    }
    // SAFETY: read after the vector is gone; the C side wrote plain counters.
    let (allocs, live) = unsafe {
        (
            core::ptr::read_volatile(&counting.allocs),
            core::ptr::read_volatile(&counting.live),
        )
    };
    assert!(allocs >= 1, "the vector allocated through the C allocator");
    assert_eq!(live, 0);

    let tracker = Backtracing::new(v);
    let tv = tracker.valloc();
    let mut kept = AVec::new_in(tv);
    kept.extend_from_slice(b"leaked through C");
    let kept = core::mem::ManuallyDrop::new(kept);
    let report = tracker.report();
    assert_eq!(report.leaked_blocks, 1, "{report}");
    // SAFETY: as above.
    assert_eq!(unsafe { core::ptr::read_volatile(&counting.live) }, 1);
    // SAFETY: the block came from `tv`.
    unsafe { tv.free(kept.as_ptr() as *mut u8) };
    assert!(tracker.report().is_clean());
    // SAFETY: as above.
    assert_eq!(unsafe { core::ptr::read_volatile(&counting.live) }, 0);
}

#[test]
fn c_code_uses_handles_made_in_rust() {
    let arena = Arena::with_capacity(1 << 20).unwrap();
    // SAFETY: the arena's handle is valid while `arena` lives, on this thread.
    assert_eq!(unsafe { c_use_handle(to_c(arena.valloc()), 200) }, 0);
    // The arena's handle takes back only the most recent block (its free
    // gets no size): the last one, of 64 bytes.
    let total: usize = (0..200).map(|i| 8 * (1 + i % 8)).sum();
    assert_eq!(arena.used(), total - 64);

    let tracker = Backtracing::new(Valloc::libc());
    // SAFETY: the tracker's handle is valid while `tracker` lives.
    assert_eq!(unsafe { c_use_handle(to_c(tracker.valloc()), 200) }, 0);
    let report = tracker.report();
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        tracker.peak_bytes(),
        (0..200).map(|i| 8 * (1 + i % 8)).sum::<usize>()
    );
}
