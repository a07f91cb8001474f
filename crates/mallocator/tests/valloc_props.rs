//! Property tests: random sequences of malloc/free, with random sizes and
//! alignments (valid and invalid), through every allocator of the handle
//! module: libc, null, a custom thread-safe `RawAlloc` (`Valloc::new`) and
//! a custom non-thread-safe one (`Valloc::new_local`).
//!
//! For every request the expected answer is computed here, independently
//! of the crate's own validation: a valid request gives a block that is
//! aligned, writable over its whole size (a fill pattern written at
//! allocation still holds when it is freed) and disjoint from every other
//! live block; an invalid one gives null / `Err`. The null allocator fails
//! everything.

mod common;

use core::ptr::{self, NonNull};

use common::{Recorder, Unsync};
use mallocator::{Sharing, Valloc, VallocVtable};
use proptest::prelude::*;
use proptest::sample::Index;

/// Largest "normal" request: 1 MiB natively, less under Miri, which
/// interprets every byte access.
const MAX_SIZE: usize = if cfg!(miri) { 16 << 10 } else { 1 << 20 };

/// The entry point a request goes through.
#[derive(Debug, Clone, Copy)]
enum Api {
    /// `Valloc::malloc` / `Valloc::free`.
    Malloc,
    /// `Valloc::try_malloc` / `Valloc::free`.
    TryMalloc,
    /// The C vtable's function pointers, as C code would call them.
    Vtable,
}

#[derive(Debug, Clone)]
enum Op {
    Alloc {
        align: usize,
        size: usize,
        api: Api,
    },
    /// Frees the live block chosen by the index (nothing if none is live).
    Free {
        which: Index,
        api: Api,
    },
    FreeNull {
        api: Api,
    },
}

fn api() -> impl Strategy<Value = Api> {
    prop_oneof![Just(Api::Malloc), Just(Api::TryMalloc), Just(Api::Vtable)]
}

fn align() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => (0u32..=12).prop_map(|k| 1usize << k),
        1 => Just(0),
        // Not powers of two, and one power of two too large for any size.
        2 => prop::sample::select(vec![
            3,
            5,
            6,
            24,
            100,
            4095,
            4097,
            usize::MAX,
            isize::MAX as usize,
            1 << (usize::BITS - 1),
        ]),
    ]
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=256,
        3 => 0usize..=MAX_SIZE,
        // Larger than `isize::MAX`: invalid whatever the alignment.
        1 => prop::sample::select(vec![usize::MAX, usize::MAX - 15, isize::MAX as usize + 1]),
    ]
}

/// A size that fits in `isize` but overflows when rounded up to `align`.
fn overflowing() -> impl Strategy<Value = (usize, usize)> {
    (1u32..=12, any::<Index>()).prop_map(|(k, slack)| {
        let align = 1usize << k;
        (align, isize::MAX as usize - slack.index(align - 1))
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (align(), size(), api()).prop_map(|(align, size, api)| Op::Alloc { align, size, api }),
        1 => (overflowing(), api()).prop_map(|((align, size), api)| Op::Alloc { align, size, api }),
        5 => (any::<Index>(), api()).prop_map(|(which, api)| Op::Free { which, api }),
        1 => api().prop_map(|api| Op::FreeNull { api }),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..if cfg!(miri) { 12 } else { 40 })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        // Miri's isolation forbids the regression files.
        failure_persistence: if cfg!(miri) {
            None
        } else {
            ProptestConfig::default().failure_persistence
        },
        ..ProptestConfig::default()
    }
}

/// The answer the crate documents for `(align, size)`, computed without
/// the crate: `Some((align, size))` of the block it must give, or `None`
/// when the request must fail.
fn expected(align: usize, size: usize) -> Option<(usize, usize)> {
    let align = if align == 0 { 16 } else { align };
    if !align.is_power_of_two() {
        return None;
    }
    let size = size.max(1);
    let rounded = size.checked_add(align - 1)? & !(align - 1);
    (rounded <= isize::MAX as usize).then_some((align, size))
}

struct Block {
    ptr: *mut u8,
    /// The size asked for (0 stays 0 here: nothing may be written then).
    size: usize,
    fill: u8,
}

/// Whether all `size` bytes at `ptr` still hold `fill`.
///
/// # Safety
/// `ptr` is valid for reads of `size` bytes.
unsafe fn holds(ptr: *const u8, size: usize, fill: u8) -> bool {
    if size == 0 {
        return true;
    }
    // SAFETY: the caller's contract.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, size) };
    // All bytes equal the first one: compare the block with itself shifted
    // by one (a memcmp, cheap even unoptimised and under Miri).
    bytes[0] == fill && bytes[1..] == bytes[..size - 1]
}

/// What a run saw, for the checks specific to an allocator.
#[derive(Debug, Default)]
struct Outcome {
    /// Layouts (align, size) of the valid requests, in order.
    valid: Vec<(usize, usize)>,
    /// How many blocks were freed (by `Free` ops and at the end).
    freed: usize,
}

fn alloc_through<S: Sharing>(v: Valloc<'_, S>, align: usize, size: usize, api: Api) -> *mut u8 {
    let vt: *const VallocVtable = v.vtable();
    match api {
        Api::Malloc => v.malloc(align, size),
        Api::TryMalloc => v
            .try_malloc(align, size)
            .map_or(ptr::null_mut(), NonNull::as_ptr),
        Api::Vtable if vt.is_null() => v.malloc(align, size),
        // SAFETY: a non-null vtable of a handle built by the crate, which
        // accepts any arguments (it validates them itself).
        Api::Vtable => unsafe { ((*vt).malloc)(v.self_ptr(), align, size).cast() },
    }
}

/// # Safety
/// `ptr` is null or a live block of `v`.
unsafe fn free_through<S: Sharing>(v: Valloc<'_, S>, ptr: *mut u8, api: Api) {
    let vt = v.vtable();
    match api {
        Api::Vtable if !vt.is_null() => {
            // SAFETY: the handle's own vtable, and the caller's contract.
            unsafe { ((*vt).free)(v.self_ptr(), ptr.cast()) }
        }
        // SAFETY: the caller's contract.
        _ => unsafe { v.free(ptr) },
    }
}

/// Runs `ops` through `v` and checks every answer. `can_allocate` is false
/// only for the null allocator.
fn run<S: Sharing>(
    v: Valloc<'_, S>,
    can_allocate: bool,
    ops: &[Op],
) -> Result<Outcome, TestCaseError> {
    let mut live: Vec<Block> = Vec::new();
    let mut outcome = Outcome::default();
    let mut next_fill = 0u8;
    let result = (|| -> Result<(), TestCaseError> {
        for op in ops {
            match *op {
                Op::Alloc { align, size, api } => {
                    let p = alloc_through(v, align, size, api);
                    let Some((eff_align, eff_size)) =
                        expected(align, size).filter(|_| can_allocate)
                    else {
                        prop_assert!(p.is_null(), "({align}, {size}) must fail, got {p:p}");
                        continue;
                    };
                    outcome.valid.push((eff_align, eff_size));
                    prop_assert!(!p.is_null(), "({align}, {size}) failed");
                    prop_assert_eq!(
                        p as usize % eff_align,
                        0,
                        "({}, {}) misaligned",
                        align,
                        size
                    );
                    let (start, end) = (p as usize, p as usize + eff_size);
                    for b in &live {
                        let (b_start, b_end) = (b.ptr as usize, b.ptr as usize + b.size.max(1));
                        prop_assert!(
                            end <= b_start || b_end <= start,
                            "[{start:#x}, {end:#x}) overlaps live [{b_start:#x}, {b_end:#x})"
                        );
                    }
                    next_fill = next_fill.wrapping_add(1).max(1);
                    // SAFETY: a fresh block of at least `size` bytes.
                    unsafe { ptr::write_bytes(p, next_fill, size) };
                    live.push(Block {
                        ptr: p,
                        size,
                        fill: next_fill,
                    });
                }
                Op::Free { which, api } => {
                    if live.is_empty() {
                        continue;
                    }
                    let b = live.swap_remove(which.index(live.len()));
                    // SAFETY: a live block of `size` bytes.
                    let intact = unsafe { holds(b.ptr, b.size, b.fill) };
                    // SAFETY: a live block of `v`, freed once.
                    unsafe { free_through(v, b.ptr, api) };
                    outcome.freed += 1;
                    prop_assert!(intact, "a block of {} bytes was overwritten", b.size);
                }
                // SAFETY: null is always accepted.
                Op::FreeNull { api } => unsafe { free_through(v, ptr::null_mut(), api) },
            }
        }
        Ok(())
    })();
    // Free what is left, even after a failed check, and check it too.
    let mut intact = true;
    for b in live.drain(..) {
        // SAFETY: live blocks of `v`, of `size` bytes, freed once.
        unsafe {
            intact &= holds(b.ptr, b.size, b.fill);
            v.free(b.ptr);
        }
        outcome.freed += 1;
    }
    result?;
    prop_assert!(intact, "a block was overwritten before the final free");
    Ok(outcome)
}

/// The checks for a handle over a [`Recorder`]: it received exactly the
/// valid requests, with the documented layouts, and got every block back.
fn check_recorder(rec: &Recorder, outcome: &Outcome) -> Result<(), TestCaseError> {
    let log = rec.log();
    let received: Vec<(usize, usize)> =
        log.requests.iter().map(|l| (l.align(), l.size())).collect();
    prop_assert_eq!(&received, &outcome.valid);
    prop_assert!(log.errors.is_empty(), "{:?}", log.errors);
    prop_assert!(log.live.is_empty(), "blocks never freed: {:?}", log.live);
    // `free(NULL)` never reaches the allocator.
    prop_assert_eq!(log.frees, outcome.freed);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn libc_blocks_are_aligned_writable_and_disjoint(ops in ops()) {
        run(Valloc::libc(), true, &ops)?;
    }

    #[test]
    fn null_allocator_fails_everything(ops in ops()) {
        let outcome = run(Valloc::null(), false, &ops)?;
        prop_assert!(outcome.valid.is_empty());
    }

    #[test]
    fn custom_shared_allocator_sees_only_valid_layouts(ops in ops()) {
        let rec = Recorder::new();
        let outcome = run(Valloc::new(&rec), true, &ops)?;
        check_recorder(&rec, &outcome)?;
    }

    #[test]
    fn custom_local_allocator_sees_only_valid_layouts(ops in ops()) {
        let rec = Unsync::new(Recorder::new());
        let outcome = run(Valloc::new_local(&rec), true, &ops)?;
        check_recorder(&rec.0, &outcome)?;
    }
}
