//! Arena logic over caller-provided buffers, so that everything here runs
//! under Miri. OS-backed behaviour (commit, protection, guard pages, huge
//! reservations) is in `tests/arena_os.rs`.

use super::*;
use crate::valloc::Valloc;
use core::cell::Cell as StdCell;
use proptest::prelude::*;
use std::vec::Vec as StdVec;

fn buffer(len: usize) -> StdVec<MaybeUninit<u8>> {
    let mut buf = StdVec::with_capacity(len);
    // SAFETY: `MaybeUninit<u8>` needs no initialization, and the capacity
    // is `len` (filling it element by element is slow under Miri).
    unsafe { buf.set_len(len) };
    buf
}

#[test]
fn values_are_aligned_and_packed() {
    let mut buf = buffer(256);
    let arena = Arena::from_buffer(&mut buf);
    let base = arena.base() as usize;
    let a = arena.alloc(1u8) as *mut u8 as usize;
    let b = arena.alloc(2u64) as *mut u64 as usize;
    let c = arena.alloc(3u16) as *mut u16 as usize;
    assert_eq!(a, base);
    assert_eq!(b % 8, 0);
    assert!(b > a && b < a + 9);
    assert_eq!(c, b + 8);
    assert_eq!(arena.used(), c + 2 - base);
    assert_eq!(arena.remaining(), 256 - arena.used());
    assert_eq!(arena.committed(), 256);
    assert_eq!(arena.capacity(), 256);
}

#[test]
fn zero_sized_values_take_no_room() {
    let mut buf = buffer(0);
    let arena = Arena::from_buffer(&mut buf);
    let unit: &mut () = arena.alloc(());
    *unit = ();
    assert!(arena.try_alloc([0u64; 0]).is_ok());
    assert!(arena.try_alloc(1u8).is_err());
    assert_eq!(arena.used(), 0);
}

#[test]
fn exhaustion_is_an_error_and_the_arena_stays_usable() {
    let mut buf = buffer(64);
    let arena = Arena::from_buffer(&mut buf);
    assert!(arena.try_alloc([0u8; 65]).is_err());
    assert!(arena.alloc_raw(65, 1).is_err());
    assert!(arena.try_alloc_slice_copy(&[0u8; 65]).is_err());
    assert!(arena.try_alloc_str(&"x".repeat(65)).is_err());
    assert_eq!(arena.used(), 0);
    let x = arena.alloc([7u8; 64]);
    assert_eq!(x[63], 7);
    assert!(arena.try_alloc(1u8).is_err());
    assert!(arena.alloc_raw(1, 1).is_err());
    assert_eq!(arena.remaining(), 0);
}

#[test]
#[should_panic(expected = "cannot allocate 16 bytes aligned to 8: 8 of 8 bytes left")]
fn the_infallible_forms_panic_with_the_request_and_what_is_left() {
    #[repr(align(8))]
    struct Aligned([MaybeUninit<u8>; 8]);
    let mut buf = Aligned([MaybeUninit::uninit(); 8]);
    let arena = Arena::from_buffer(&mut buf.0);
    arena.alloc([0u64; 2]);
}

#[test]
#[should_panic(expected = "cannot allocate 4 bytes aligned to 1")]
fn string_forms_panic_too() {
    let mut buf = buffer(3);
    let arena = Arena::from_buffer(&mut buf);
    arena.alloc_str("four");
}

#[test]
fn allocation_panics_point_at_the_caller() {
    let mut buf = buffer(8);
    let arena = Arena::from_buffer(&mut buf);
    let line = std::cell::Cell::new(0);
    let expect = |line: u32| (file!().to_owned(), line);
    let at = crate::test_util::panic_location(|| {
        line.set(line!() + 1);
        let _ = arena.alloc([0u64; 4]);
    });
    assert_eq!(at, expect(line.get()));
    let at = crate::test_util::panic_location(|| {
        line.set(line!() + 1);
        let _ = arena.alloc_str("much too long");
    });
    assert_eq!(at, expect(line.get()));
    let at = crate::test_util::panic_location(|| {
        line.set(line!() + 1);
        let _ = arena.alloc_bytes(&[1; 64]);
    });
    assert_eq!(at, expect(line.get()));
    let at = crate::test_util::panic_location(|| {
        line.set(line!() + 1);
        let _ = arena.alloc_wide_str("much too long");
    });
    assert_eq!(at, expect(line.get()));
}

#[test]
fn requests_near_usize_max_fail_cleanly() {
    let mut buf = buffer(128);
    let arena = Arena::from_buffer(&mut buf);
    arena.alloc(1u8);
    let used = arena.used();
    for (size, align) in [
        (usize::MAX, 1),
        (usize::MAX - 7, 8),
        (isize::MAX as usize, 1),
        (isize::MAX as usize - 4094, 4096),
        (1, 1 << (usize::BITS - 1)),
    ] {
        assert!(arena.alloc_raw(size, align).is_err(), "{size} {align}");
    }
    let huge = Layout::from_size_align(isize::MAX as usize - 7, 8).unwrap();
    assert!(arena.alloc_layout(huge).is_err());
    assert!((&arena).allocate(huge).is_err());
    assert_eq!(arena.used(), used);
    assert!(arena.alloc_raw(8, 8).is_ok());
}

#[test]
fn invalid_alignments() {
    let mut buf = buffer(256);
    let arena = Arena::from_buffer(&mut buf);
    for align in [3, 5, 6, 7, 12, 24, 100, usize::MAX] {
        assert!(arena.alloc_raw(8, align).is_err(), "{align}");
    }
    assert_eq!(arena.used(), 0);
    // Align 0 means 16 (`request_layout`); size 0 reserves one byte.
    let p = arena.alloc_raw(0, 0).unwrap();
    assert_eq!(p.as_ptr() as usize % 16, 0);
    let q = arena.alloc_raw(0, 1).unwrap();
    assert_ne!(p, q);
}

#[test]
fn checkpoints_rollback_and_scopes() {
    let mut buf = buffer(1024);
    let mut arena = Arena::from_buffer(&mut buf);
    arena.alloc(1u32);
    // The buffer's own alignment decides the padding before the `u32`.
    let first = arena.used();
    assert!((4..8).contains(&first));
    let cp = arena.checkpoint();
    arena.alloc([0u8; 100]);
    arena.rollback(cp);
    assert_eq!(arena.used(), first);
    let inner = arena.scope(|a| {
        a.alloc(5u64);
        let nested = a.scope(|b| {
            b.alloc([1u8; 200]);
            b.used()
        });
        assert!(nested > 200);
        a.used()
    });
    assert!(inner >= first + 8);
    assert_eq!(arena.used(), first);
    // A scope that resets leaves nothing to undo.
    arena.scope(|a| {
        a.alloc(1u8);
        a.reset();
        a.alloc(2u8);
    });
    assert_eq!(arena.used(), 1);
}

#[test]
fn scope_over_a_swapped_arena_does_not_rewind_the_other() {
    let mut buf1 = buffer(64);
    let mut buf2 = buffer(64);
    let mut a = Arena::from_buffer(&mut buf1);
    let mut b = Arena::from_buffer(&mut buf2);
    b.alloc([0u8; 10]);
    a.scope(|inner| core::mem::swap(inner, &mut b));
    // `a` is now the old `b` (10 bytes used): `a`'s checkpoint is foreign.
    assert_eq!(a.used(), 10);
    assert_eq!(b.used(), 0);
}

#[test]
#[should_panic(expected = "is not a position of this arena")]
fn rollback_to_a_foreign_checkpoint_panics() {
    let mut buf1 = buffer(64);
    let mut buf2 = buffer(64);
    let mut a = Arena::from_buffer(&mut buf1);
    let b = Arena::from_buffer(&mut buf2);
    b.alloc(0u8);
    a.alloc(0u8);
    let cp = b.checkpoint();
    a.rollback(cp);
}

#[test]
#[should_panic(expected = "is not a position of this arena: it was taken on arena #")]
fn rollback_to_a_checkpoint_of_an_earlier_arena_over_the_same_buffer_panics() {
    let mut buf = buffer(64);
    let cp = {
        let first = Arena::from_buffer(&mut buf);
        first.alloc(0u32);
        first.checkpoint()
    };
    let mut second = Arena::from_buffer(&mut buf);
    second.alloc([0u8; 16]);
    // The address alone cannot tell: it lies inside the second arena's
    // range, below its bump pointer.
    let range = second.base() as usize..=second.base() as usize + second.used();
    assert!(range.contains(&cp.pos));
    second.rollback(cp);
}

#[test]
fn scope_does_not_rewind_an_arena_swapped_in_over_the_same_buffer() {
    let mut buf = buffer(64);
    let mut a = Arena::from_buffer(&mut buf);
    a.alloc([0u8; 8]);
    let (p, len) = (a.base(), 64);
    a.scope(|inner| {
        inner.alloc([0u8; 4]);
        // A second arena over the same memory, as a later arena over a
        // reused buffer would be; `inner`'s old arena is forgotten below
        // and never used again, so only one arena uses the region at a time.
        let mut other = Arena::over_region(p, len);
        other.alloc([0u8; 32]);
        core::mem::swap(inner, &mut other);
        core::mem::forget(other);
    });
    // The checkpoint of the scope (8 bytes in) was the old arena's: the
    // swapped-in one keeps its 32 bytes.
    assert_eq!(a.used(), 32);
}

#[test]
fn reset_reuses_the_memory() {
    let mut buf = buffer(64);
    let mut arena = Arena::from_buffer(&mut buf);
    let first = arena.alloc([1u8; 64]).as_ptr();
    arena.reset();
    assert_eq!(arena.used(), 0);
    let again = arena.alloc([2u8; 64]);
    assert_eq!(again.as_ptr(), first);
    assert_eq!(again[0], 2);
}

#[test]
fn destructors_are_not_run() {
    struct Counted<'a>(&'a StdCell<u32>);
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let drops = StdCell::new(0);
    let mut buf = buffer(64);
    let mut arena = Arena::from_buffer(&mut buf);
    arena.alloc(Counted(&drops));
    arena.reset();
    arena.alloc(Counted(&drops));
    drop(arena);
    assert_eq!(drops.get(), 0);
    // `try_alloc` drops the value it could not place.
    let mut tiny = buffer(1);
    let arena = Arena::from_buffer(&mut tiny);
    assert!(arena.try_alloc(Counted(&drops)).is_err());
    assert_eq!(drops.get(), 1);
}

#[test]
fn strings_for_ffi() {
    let mut buf = buffer(512);
    let arena = Arena::from_buffer(&mut buf);
    assert_eq!(arena.alloc_str(""), "");
    assert_eq!(arena.alloc_str("ünïcode"), "ünïcode");
    let c = arena.alloc_c_str("hello").unwrap();
    assert_eq!(c.to_bytes_with_nul(), b"hello\0");
    assert_eq!(arena.alloc_c_str("").unwrap().to_bytes_with_nul(), b"\0");
    assert_eq!(
        arena.alloc_c_str("ab\0").unwrap_err(),
        ArenaError::InteriorNul { position: 2 }
    );
    let w = arena.alloc_wide_str("A€😀");
    assert_eq!(w.as_slice(), "A€😀".encode_utf16().collect::<StdVec<_>>());
    assert_eq!(w.len(), 4); // 😀 is a surrogate pair
    assert_eq!(w.as_ptr() as usize % 2, 0);
    // SAFETY: the pointer covers the terminator after the units.
    assert_eq!(unsafe { *w.as_ptr().add(w.len()) }, 0);
    assert_eq!(w.to_string(), "A€😀");
    assert_eq!(w.as_slice_with_nul().last(), Some(&0));
    assert!(format!("{w:?}").starts_with("WideCStr(["));
    assert!(arena.alloc_wide_str("").is_empty());
    assert_eq!(arena.alloc_wide_str("a\0b").as_slice(), [0x61, 0, 0x62]);
    assert_eq!(arena.alloc_byte_string("ÿes").unwrap(), [0xFF, b'e', b's']);
    assert_eq!(
        arena.alloc_byte_string("ab€").unwrap_err(),
        ArenaError::NotLatin1 {
            position: 2,
            ch: '€'
        }
    );
    assert_eq!(arena.alloc_bytes(&[1, 2, 3]), [1, 2, 3]);
    let used = arena.used();
    let mut small = buffer(3);
    let tiny = Arena::from_buffer(&mut small);
    assert!(matches!(
        tiny.alloc_c_str("abc"),
        Err(ArenaError::OutOfMemory {
            requested: 4,
            remaining: 3
        })
    ));
    assert!(tiny.alloc_byte_string("abcd").is_err());
    assert!(tiny.try_alloc_wide_str("ab").is_err());
    assert_eq!(tiny.alloc_byte_string("abc").unwrap(), b"abc");
    assert_eq!(arena.used(), used);
}

#[test]
fn valloc_free_gives_back_only_the_most_recent_block() {
    let mut buf = buffer(1024);
    let arena = Arena::from_buffer(&mut buf);
    let v: Valloc<'_, Local> = arena.valloc();
    let a = v.malloc(8, 32);
    let b = v.malloc(8, 32);
    assert!(!a.is_null() && !b.is_null());
    let used = arena.used();
    // SAFETY: `a` came from `v`; not the most recent block: a no-op.
    unsafe { v.free(a) };
    assert_eq!(arena.used(), used);
    // SAFETY: `b` came from `v` and is the most recent block.
    unsafe { v.free(b) };
    assert_eq!(arena.used(), used - 32);
    // A second free, or a free after other allocations, is ignored.
    // SAFETY: the arena accepts any pointer in `free`.
    unsafe { v.free(b) };
    assert_eq!(arena.used(), used - 32);
    let c = v.malloc(8, 16);
    arena.alloc(1u8);
    // SAFETY: as above.
    unsafe { v.free(c) };
    assert_eq!(arena.used(), used - 32 + 17);
    // Invalid requests through the C interface come back null.
    assert!(v.malloc(3, 8).is_null());
    assert!(v.malloc(8, usize::MAX).is_null());
    assert!(v.malloc(8, 4096).is_null()); // does not fit
                                          // SAFETY: null is always accepted.
    unsafe { v.free(core::ptr::null_mut()) };
}

#[test]
fn a_buffer_in_the_top_64_kib_of_the_address_space_is_never_overrun() {
    // Possible on 32-bit targets (e.g. a stack buffer of an i686 program
    // on a 64-bit kernel). The fast path relies on the arena's end being
    // `MARGIN` below `usize::MAX`; such a buffer must give an arena that
    // refuses every request instead of wrapping around. Nothing is written:
    // every request below must fail before touching memory.
    let high = NonNull::<u8>::dangling()
        .as_ptr()
        .wrapping_add(usize::MAX - 1 - 200);
    let arena = Arena::over_region(high, 100);
    assert!(arena.capacity() <= 100);
    assert!((arena.base() as usize).saturating_add(arena.capacity()) <= usize::MAX - MARGIN);
    assert!(arena.try_alloc([0u8; 1000]).is_err());
    assert!(arena.try_alloc(0u64).is_err());
    assert!(arena.alloc_raw(1000, 1).is_err());
    assert_eq!(arena.used(), 0);
}

#[test]
fn allocator_api2_vec_grows_in_place() {
    let mut buf = buffer(4096);
    let arena = Arena::from_buffer(&mut buf);
    let mut xs = allocator_api2::vec::Vec::with_capacity_in(1, &arena);
    xs.push(0u32);
    let first = xs.as_ptr();
    for i in 1..100 {
        xs.push(i);
    }
    // The vector was the most recent block all along: it never moved.
    assert_eq!(xs.as_ptr(), first);
    assert_eq!(xs.iter().sum::<u32>(), 4950);
    let start = first as usize - arena.base() as usize;
    let cap = xs.capacity();
    assert_eq!(arena.used(), start + cap * 4);
    xs.truncate(10);
    xs.shrink_to_fit();
    assert_eq!(xs.as_ptr(), first);
    assert_eq!(arena.used(), start + 40);
    drop(xs);
    assert_eq!(arena.used(), start);
}

#[test]
fn allocator_grow_copies_when_not_last() {
    let mut buf = buffer(16384);
    let arena = Arena::from_buffer(&mut buf);
    let mut xs = allocator_api2::vec::Vec::with_capacity_in(4, &arena);
    xs.extend_from_slice(&[1u64, 2, 3, 4]);
    let before = xs.as_ptr();
    arena.alloc(9u8); // xs is no longer the most recent block
    xs.push(5);
    assert_ne!(xs.as_ptr(), before);
    assert_eq!(xs, [1, 2, 3, 4, 5]);
    // Growth that cannot fit fails cleanly.
    let mut big = allocator_api2::vec::Vec::<u8, _>::new_in(&arena);
    assert!(big.try_reserve(1 << 16).is_err());
    // Zeroed growth of the last block zeroes the tail.
    let layout = Layout::from_size_align(8, 8).unwrap();
    let a = &arena;
    let p = a.allocate(layout).unwrap().cast::<u8>();
    // SAFETY: `p` is a live block of 8 bytes from `a`.
    unsafe {
        p.as_ptr().write_bytes(0xEE, 8);
        let grown = a
            .grow_zeroed(p, layout, Layout::from_size_align(32, 8).unwrap())
            .unwrap();
        assert_eq!(grown.cast::<u8>(), p);
        let bytes = core::slice::from_raw_parts(p.as_ptr(), 32);
        assert_eq!(&bytes[..8], &[0xEE; 8]);
        assert_eq!(&bytes[8..], &[0; 24]);
        // A shrink to a stricter alignment than the block has moves it.
        let old = Layout::from_size_align(32, 8).unwrap();
        let new = Layout::from_size_align(4, 4096).unwrap();
        if p.as_ptr() as usize % 4096 != 0 {
            let m = a.shrink(p, old, new).unwrap().cast::<u8>();
            assert_ne!(m, p);
            assert_eq!(m.as_ptr() as usize % 4096, 0);
            assert_eq!(core::slice::from_raw_parts(m.as_ptr(), 4), &[0xEE; 4]);
        }
        // Shrinking the last block in place gives the tail back.
        let q = a.allocate(old).unwrap().cast::<u8>();
        let used = arena.used();
        let small = Layout::from_size_align(8, 8).unwrap();
        assert_eq!(a.shrink(q, old, small).unwrap().cast::<u8>(), q);
        assert_eq!(arena.used(), used - 24);
        a.deallocate(q, small);
        assert_eq!(arena.used(), used - 32);
    }
}

#[test]
fn arena_is_send_and_its_handle_is_local() {
    fn send<T: Send>(_: &T) {}
    let mut buf = buffer(8);
    let arena = Arena::from_buffer(&mut buf);
    send(&arena);
    std::thread::scope(|s| {
        s.spawn(move || assert_eq!(*arena.alloc(3u8), 3));
    });
}

#[test]
fn debug_and_error_display() {
    let mut buf = buffer(8);
    let arena = Arena::from_buffer(&mut buf);
    let d = format!("{arena:?}");
    assert!(d.contains("capacity: 8"), "{d}");
    let e = ArenaError::OutOfMemory {
        requested: 5,
        remaining: 1,
    };
    assert!(e.to_string().contains("5 bytes requested, 1 bytes left"));
    let os: ArenaError = OsError::new("mmap", 12).into();
    assert!(std::error::Error::source(&os).is_some());
    assert!(ArenaError::CapacityOverflow
        .to_string()
        .contains("capacity"));
    assert!(ArenaError::InvalidProtection(crate::Protection::Read)
        .to_string()
        .contains("Read"));
    let latin = ArenaError::NotLatin1 {
        position: 0,
        ch: '€',
    };
    assert!(latin.to_string().contains("U+20AC"));
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    Alloc { size: usize, align_log2: u32 },
    Checkpoint,
    Rollback(usize),
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop_oneof![0usize..=256, 0usize..=(1 << 20)], 0u32..=12)
            .prop_map(|(size, align_log2)| Op::Alloc { size, align_log2 }),
        1 => Just(Op::Checkpoint),
        1 => any::<usize>().prop_map(Op::Rollback),
        1 => Just(Op::Reset),
    ]
}

/// A live block of the model: pointer, address, size, fill byte.
#[derive(Debug, Clone, Copy)]
struct Block {
    ptr: NonNull<u8>,
    addr: usize,
    size: usize,
    tag: u8,
}

/// Checks that a block still holds its fill byte: every byte of a small
/// block; the ends and every 509th byte of a large one (a later block
/// overlapping it would overwrite a contiguous run, which the sample hits).
fn intact(b: &Block) -> bool {
    // SAFETY: the block is live and was filled with `tag`.
    let bytes = unsafe { core::slice::from_raw_parts(b.ptr.as_ptr(), b.size) };
    if b.size <= 4096 {
        return bytes.iter().all(|&x| x == b.tag);
    }
    let ends = bytes[..64].iter().chain(&bytes[b.size - 64..]);
    ends.chain(bytes.iter().step_by(509)).all(|&x| x == b.tag)
}

/// Runs `ops` on `arena` against a model of the bump pointer and of the
/// live blocks.
fn run_model<B: Backing>(arena: &mut Arena<B>, ops: &[Op]) {
    let base = arena.base() as usize;
    let limit = base + arena.capacity();
    let mut pos = base;
    let mut live: StdVec<Block> = StdVec::new();
    let mut checkpoints: StdVec<(Checkpoint, usize, usize)> = StdVec::new();
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Alloc { size, align_log2 } => {
                let align = 1usize << align_log2;
                let start = (pos + align - 1) & !(align - 1);
                let fits = start + size.max(1) <= limit;
                match arena.alloc_raw(size, align) {
                    Ok(p) => {
                        assert!(fits, "op {i}: allocation should have failed");
                        let addr = p.as_ptr() as usize;
                        assert_eq!(addr, start, "op {i}: not the next aligned position");
                        assert_eq!(addr % align, 0);
                        assert!(addr >= base && addr + size.max(1) <= limit);
                        for b in &live {
                            assert!(
                                addr + size.max(1) <= b.addr || b.addr + b.size <= addr,
                                "op {i}: overlaps {b:?}"
                            );
                        }
                        let tag = (i % 251) as u8 + 1;
                        // SAFETY: `p` is a fresh block of `size` bytes.
                        unsafe { p.as_ptr().write_bytes(tag, size) };
                        live.push(Block {
                            ptr: p,
                            addr,
                            size,
                            tag,
                        });
                        pos = start + size.max(1);
                    }
                    Err(AllocError) => assert!(!fits, "op {i}: allocation should have fit"),
                }
            }
            Op::Checkpoint => checkpoints.push((arena.checkpoint(), pos, live.len())),
            Op::Rollback(k) => {
                if checkpoints.is_empty() {
                    continue;
                }
                let k = k % checkpoints.len();
                let (cp, at, n) = checkpoints[k];
                checkpoints.truncate(k + 1);
                arena.rollback(cp);
                pos = at;
                live.truncate(n);
            }
            Op::Reset => {
                arena.reset();
                pos = base;
                live.clear();
                checkpoints.clear();
            }
        }
        assert_eq!(arena.ptr() as usize, pos, "op {i}: bump pointer");
        assert_eq!(arena.used(), pos - base);
        assert!(live.iter().all(intact), "op {i}: a block was overwritten");
    }
}

/// Few cases under Miri, and no failure file (Miri isolates the file
/// system).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 4 } else { cases },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn model_over_a_buffer(ops in proptest::collection::vec(op(), 1..40)) {
        let mut buf = buffer(4 << 20);
        let mut arena = Arena::from_buffer(&mut buf);
        run_model(&mut arena, &ops);
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn model_over_virtual_memory() {
    let mut runner = proptest::test_runner::TestRunner::new(config(64));
    runner
        .run(&proptest::collection::vec(op(), 1..60), |ops| {
            let mut arena = Arena::builder()
                .capacity(6 << 20)
                .commit_policy(CommitPolicy::Lazy { min_chunk: 4096 })
                .decommit_on_reset(true)
                .build()
                .unwrap();
            run_model(&mut arena, &ops);
            assert!(arena.committed() >= arena.used());
            Ok(())
        })
        .unwrap();
}

#[test]
fn values_larger_than_the_fast_path_margin() {
    let mut buf = buffer(3 * MARGIN);
    let arena = Arena::from_buffer(&mut buf);
    let big = arena.alloc([7u8; MARGIN + 1]);
    assert_eq!(big[MARGIN], 7);
    assert!(arena.try_alloc([0u8; 2 * MARGIN]).is_err());
    assert_eq!(arena.used(), MARGIN + 1);
}
