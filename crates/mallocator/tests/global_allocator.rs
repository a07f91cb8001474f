//! `GlobalValloc` as this test binary's `#[global_allocator]`: a counting
//! allocator behind a `Valloc::new` handle, forwarding to libc, sees the
//! program's allocations (from this thread and others), reallocations and
//! frees, with the right alignment.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use mallocator::libc_alloc::LibcAlloc;
use mallocator::{AllocError, GlobalValloc, RawAlloc, Valloc};

/// A size nothing else in the process asks for, so the test can tell its
/// own request apart from the harness's.
const MARKED_SIZE: usize = 12_345;

/// Counts calls and remembers the last block of `MARKED_SIZE` bytes. It
/// must not allocate itself: it *is* the global allocator.
struct Counting {
    allocs: AtomicUsize,
    frees: AtomicUsize,
    marked: AtomicPtr<u8>,
    marked_freed: AtomicUsize,
}

// SAFETY: blocks come from `LibcAlloc`, which upholds the contract, and go
// back to it.
unsafe impl RawAlloc for Counting {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.allocs.fetch_add(1, SeqCst);
        let block = LibcAlloc.alloc(layout)?;
        if layout.size() == MARKED_SIZE {
            self.marked.store(block.as_ptr(), SeqCst);
        }
        Ok(block)
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        self.frees.fetch_add(1, SeqCst);
        if ptr.as_ptr() == self.marked.load(SeqCst) {
            self.marked_freed.fetch_add(1, SeqCst);
        }
        // SAFETY: `ptr` came from `alloc`, i.e. from `LibcAlloc`.
        unsafe { LibcAlloc.free(ptr) }
    }
}

static COUNTING: Counting = Counting {
    allocs: AtomicUsize::new(0),
    frees: AtomicUsize::new(0),
    marked: AtomicPtr::new(core::ptr::null_mut()),
    marked_freed: AtomicUsize::new(0),
};

#[global_allocator]
static GLOBAL: GlobalValloc = GlobalValloc::new(Valloc::new(&COUNTING));

/// The tests below read shared counters: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn counts() -> (usize, usize) {
    (COUNTING.allocs.load(SeqCst), COUNTING.frees.load(SeqCst))
}

#[test]
fn program_allocations_go_through_the_handle() {
    let _serial = SERIAL.lock().unwrap();
    let (allocs0, frees0) = counts();
    let marked = vec![0xa5u8; MARKED_SIZE];
    let p = marked.as_ptr().cast_mut();
    assert_eq!(
        COUNTING.marked.load(SeqCst),
        p,
        "the Vec's block came from COUNTING"
    );
    let freed0 = COUNTING.marked_freed.load(SeqCst);
    drop(marked);
    assert_eq!(
        COUNTING.marked_freed.load(SeqCst),
        freed0 + 1,
        "and went back to it"
    );
    let (allocs1, frees1) = counts();
    assert!(allocs1 > allocs0 && frees1 > frees0);

    // Boxes, strings, and growth (the default `realloc`: alloc, copy, free).
    let s: String = (0..1000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let b = Box::new(s.clone());
    assert_eq!(*b, s);
    let mut v = Vec::new();
    v.extend(0..10_000u32);
    assert!(v.iter().copied().eq(0..10_000));
    let (allocs2, _) = counts();
    assert!(allocs2 >= allocs1 + 3, "{allocs1} -> {allocs2}");
}

#[test]
fn other_threads_allocate_through_it_too() {
    let _serial = SERIAL.lock().unwrap();
    let freed0 = COUNTING.marked_freed.load(SeqCst);
    let addr = std::thread::spawn(|| {
        let marked = vec![1u8; MARKED_SIZE];
        marked.as_ptr() as usize
    })
    .join()
    .unwrap();
    assert_eq!(COUNTING.marked.load(SeqCst) as usize, addr);
    assert_eq!(COUNTING.marked_freed.load(SeqCst), freed0 + 1);
}

#[test]
fn alignment_and_zeroing_requests_are_honoured() {
    let _serial = SERIAL.lock().unwrap();
    for align in [1, 16, 64, 4096] {
        let layout = Layout::from_size_align(100, align).unwrap();
        // SAFETY: a non-zero-size layout; the block is freed below.
        unsafe {
            let p = std::alloc::alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            assert!(core::slice::from_raw_parts(p, 100).iter().all(|&b| b == 0));
            p.write_bytes(0xee, 100);
            let q = std::alloc::realloc(p, layout, 5000);
            assert!(!q.is_null());
            assert_eq!(q as usize % align, 0, "realloc keeps the alignment");
            assert!(core::slice::from_raw_parts(q, 100)
                .iter()
                .all(|&b| b == 0xee));
            std::alloc::dealloc(q, Layout::from_size_align(5000, align).unwrap());
        }
    }
}

#[test]
fn a_null_handle_as_global_allocator_refuses_everything() {
    // Not installed (the program would abort); called directly instead.
    let null = GlobalValloc::new(Valloc::null());
    let layout = Layout::new::<[u64; 4]>();
    // SAFETY: a non-zero-size layout; nothing is returned to free.
    unsafe {
        assert!(null.alloc(layout).is_null());
        assert!(null.alloc_zeroed(layout).is_null());
    }
}
