//! The embedded workloads: groups of variants doing the same work through
//! different allocators. The first variant of a group is its baseline.
//!
//! Every timed run covers all the allocating *and* freeing of its
//! operations: dropping the heap objects, or resetting the arena / bump
//! allocator (which both keep their memory for the next run, as a
//! per-request arena would). Inputs (block sizes, strings) are generated
//! before the timed runs from a fixed seed, and results go through
//! [`black_box`] so that the optimizer cannot delete the work.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CString;
use std::hint::black_box;
use std::time::Duration;

use mallocator::backtracing::{Backtracing, Config};
use mallocator::{Arena, RawAlloc, Sharing, Valloc};

use super::clock::time;

/// One timed run of a prepared variant; returns the elapsed time.
pub type Runner = Box<dyn FnMut() -> Duration>;

/// One allocator doing a group's work.
pub struct Variant {
    /// Shown in the table's allocator column.
    pub name: &'static str,
    /// Prepares the variant's state and inputs for runs of `ops`
    /// operations (untimed) and returns the timed runner.
    pub setup: fn(ops: usize) -> Runner,
}

/// A workload and the allocators compared on it.
pub struct Group {
    /// The name `--workload` selects.
    pub name: &'static str,
    /// One line saying what one operation is.
    pub description: &'static str,
    /// Operations per run when `--size` is not given.
    pub default_ops: usize,
    /// The variants; the first one is the baseline.
    pub variants: &'static [Variant],
    /// A remark on how this run measured the group, known only at run time.
    pub note: Option<fn() -> String>,
}

/// A variant (short form for the table below).
const fn v(name: &'static str, setup: fn(usize) -> Runner) -> Variant {
    Variant { name, setup }
}

/// Every group, in the order of the table.
pub static GROUPS: &[Group] = &[
    Group {
        name: "churn",
        description: "allocate 4 blocks of 16-256 bytes, touch them, free them in reverse \
                      (1 op = 1 alloc + 1 free)",
        default_ops: 400_000,
        variants: &[
            v("system allocator (std::alloc::System)", setup_churn_system),
            v("Valloc::libc()", setup_churn_libc),
            v(
                "Arena via its Valloc handle + reset",
                setup_churn_arena_valloc,
            ),
            v(
                "Arena, RawAlloc calls (no vtable) + reset",
                setup_churn_arena_direct,
            ),
        ],
        note: None,
    },
    Group {
        name: "build-drop",
        description: "build a binary tree of small nodes, walk it, free it all at once \
                      (1 op = 1 node)",
        default_ops: 200_000,
        variants: &[
            v("system allocator (Box)", setup_tree_box),
            v("bumpalo::Bump + reset", setup_tree_bumpalo),
            v("Arena + reset", setup_tree_arena),
        ],
        note: None,
    },
    Group {
        name: "ffi-cstr",
        description: "copy a &str to a NUL-terminated C string, keep all until the end \
                      (1 op = 1 string)",
        default_ops: 200_000,
        variants: &[
            v("CString on the heap", setup_cstr_heap),
            v("Arena::alloc_c_str + reset", setup_cstr_arena),
        ],
        note: None,
    },
    Group {
        name: "ffi-wide",
        description: "encode a &str as NUL-terminated UTF-16, keep all until the end \
                      (1 op = 1 string)",
        default_ops: 200_000,
        variants: &[
            v("Vec<u16> on the heap", setup_wide_heap),
            v("Arena::alloc_wide_str + reset", setup_wide_arena),
        ],
        note: None,
    },
    Group {
        name: "leak-tracking",
        description: "the churn workload (3 calls deep), untracked and with a stack (depth 32) \
                      captured per alloc and per free",
        default_ops: 50_000,
        variants: &[
            v("plain: Valloc::libc()", setup_churn_libc),
            v("Backtracing over Valloc::libc()", setup_churn_tracked),
            v(
                "Backtracing, no stack on free (free_stacks: false)",
                setup_churn_tracked_alloc_stacks,
            ),
        ],
        note: Some(tracking_note),
    },
];

/// The group called `name`.
pub fn find(name: &str) -> Option<&'static Group> {
    GROUPS.iter().find(|g| g.name == name)
}

// ---------------------------------------------------------------- churn

/// How many blocks are live at once in the churn workload.
const CHURN_BATCH: usize = 4;
/// Alignment of the churn blocks (what `malloc` gives for free).
const CHURN_ALIGN: usize = 8;

/// Block sizes of the churn workload: 4096 sizes in 16..=256.
fn churn_sizes() -> Vec<usize> {
    // Seeded: every run and every variant sees the same sizes.
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    (0..4096).map(|_| rng.usize(16..=256)).collect()
}

/// An allocator as the churn loop sees it.
trait Churn {
    /// A block of `size` bytes aligned to [`CHURN_ALIGN`]; never null.
    fn alloc(&self, size: usize) -> *mut u8;
    /// # Safety
    /// `ptr` came from `self.alloc(size)` and was not freed since.
    unsafe fn free(&self, ptr: *mut u8, size: usize);
}

/// `std::alloc::System`, called directly (no handle, no vtable).
struct SystemChurn;

impl Churn for SystemChurn {
    fn alloc(&self, size: usize) -> *mut u8 {
        let layout = Layout::from_size_align(size, CHURN_ALIGN).expect("churn sizes are small");
        // SAFETY: the layout has a non-zero size (sizes are 16..=256).
        let p = unsafe { System.alloc(layout) };
        assert!(!p.is_null(), "system allocator out of memory");
        p
    }

    unsafe fn free(&self, ptr: *mut u8, size: usize) {
        let layout = Layout::from_size_align(size, CHURN_ALIGN).expect("churn sizes are small");
        // SAFETY: `ptr` came from `System.alloc` with this same layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

impl<S: Sharing> Churn for Valloc<'_, S> {
    fn alloc(&self, size: usize) -> *mut u8 {
        let p = self.malloc(CHURN_ALIGN, size);
        assert!(!p.is_null(), "churn allocation of {size} bytes failed");
        p
    }

    unsafe fn free(&self, ptr: *mut u8, _size: usize) {
        // SAFETY: `ptr` came from `self.malloc` and is freed once.
        unsafe { Valloc::free(*self, ptr) }
    }
}

/// The churn loop, three calls deep (so that a stack-capturing allocator
/// records a few frames, like a real program's allocation sites).
#[inline(never)]
fn churn_outer(a: &impl Churn, sizes: &[usize], ops: usize) {
    churn_middle(a, sizes, ops);
}

#[inline(never)]
fn churn_middle(a: &impl Churn, sizes: &[usize], ops: usize) {
    churn_inner(a, sizes, ops);
}

#[inline(never)]
fn churn_inner(a: &impl Churn, sizes: &[usize], ops: usize) {
    let mask = sizes.len() - 1;
    let mut live = [(core::ptr::null_mut::<u8>(), 0usize); CHURN_BATCH];
    let mut done = 0;
    while done < ops {
        let k = CHURN_BATCH.min(ops - done);
        for (i, slot) in live[..k].iter_mut().enumerate() {
            let size = sizes[(done + i) & mask];
            let p = a.alloc(size);
            // SAFETY: `p` is a fresh block of `size >= 16` bytes.
            unsafe {
                p.write(i as u8);
                p.add(size - 1).write(size as u8);
            }
            *slot = (black_box(p), size);
        }
        for &(p, size) in live[..k].iter().rev() {
            // SAFETY: `p` came from `a.alloc(size)` just above, freed once.
            unsafe { a.free(p, size) };
        }
        done += k;
    }
}

/// The arena's [`RawAlloc`] methods called directly, without the handle's
/// vtable. (`RawAlloc::alloc` records the block so that `free` can give
/// the most recent one back; `Arena::alloc_raw` does not.)
impl Churn for &Arena {
    fn alloc(&self, size: usize) -> *mut u8 {
        let layout = Layout::from_size_align(size, CHURN_ALIGN).expect("churn sizes are small");
        match RawAlloc::alloc(*self, layout) {
            Ok(p) => p.as_ptr(),
            Err(_) => panic!(
                "arena full: {size} bytes requested, {} left",
                self.remaining()
            ),
        }
    }

    unsafe fn free(&self, ptr: *mut u8, _size: usize) {
        let ptr = core::ptr::NonNull::new(ptr).expect("churn blocks are not null");
        // SAFETY: `ptr` came from this arena's `RawAlloc::alloc`, freed once.
        unsafe { RawAlloc::free(*self, ptr) }
    }
}

/// A churn runner over `a`.
fn churn_runner(a: impl Churn + 'static, ops: usize) -> Runner {
    let sizes = churn_sizes();
    Box::new(move || time(|| churn_outer(&a, &sizes, ops)))
}

fn setup_churn_system(ops: usize) -> Runner {
    churn_runner(SystemChurn, ops)
}

fn setup_churn_libc(ops: usize) -> Runner {
    churn_runner(Valloc::libc(), ops)
}

/// An arena for `ops` blocks of up to `block` bytes each (address space is
/// only reserved; pages are committed as they are used).
fn arena_for(ops: usize, block: usize) -> Arena {
    let bytes = ops.saturating_mul(block).saturating_add(1 << 20);
    Arena::with_capacity(bytes)
        .unwrap_or_else(|e| panic!("cannot reserve an arena of {bytes} bytes: {e}"))
}

fn setup_churn_arena_valloc(ops: usize) -> Runner {
    let sizes = churn_sizes();
    let mut arena = arena_for(ops, 256);
    Box::new(move || {
        time(|| {
            churn_outer(&arena.valloc(), &sizes, ops);
            arena.reset();
        })
    })
}

fn setup_churn_arena_direct(ops: usize) -> Runner {
    let sizes = churn_sizes();
    let mut arena = arena_for(ops, 256);
    Box::new(move || {
        time(|| {
            churn_outer(&&arena, &sizes, ops);
            arena.reset();
        })
    })
}

/// Which stack capture the tracker used, and why (frame pointers only
/// when this binary was built with them).
fn tracking_note() -> String {
    let (mode, why) = Backtracing::new(Valloc::libc()).stack_mode();
    format!("stacks captured with {mode:?}: {why}")
}

/// A churn runner through a tracker over libc with `config`.
fn tracked_runner(config: Config, ops: usize) -> Runner {
    let sizes = churn_sizes();
    let tracker = Backtracing::with_config(Valloc::libc(), config);
    Box::new(move || {
        let elapsed = time(|| churn_outer(&tracker.valloc(), &sizes, ops));
        assert_eq!(tracker.live_blocks(), 0, "the churn frees every block");
        elapsed
    })
}

fn setup_churn_tracked(ops: usize) -> Runner {
    tracked_runner(Config::DEFAULT, ops)
}

fn setup_churn_tracked_alloc_stacks(ops: usize) -> Runner {
    let config = Config {
        free_stacks: false,
        ..Config::DEFAULT
    };
    tracked_runner(config, ops)
}

// ----------------------------------------------------------- build-drop

/// A tree node owning its children (the system allocator's variant).
struct BoxNode {
    left: Option<Box<BoxNode>>,
    right: Option<Box<BoxNode>>,
    value: u64,
}

/// A balanced tree of `n` nodes holding `first..first + n` in order.
fn build_box(first: u64, n: usize) -> Option<Box<BoxNode>> {
    if n == 0 {
        return None;
    }
    let left_n = (n - 1) / 2;
    Some(Box::new(BoxNode {
        left: build_box(first, left_n),
        value: first + left_n as u64,
        right: build_box(first + left_n as u64 + 1, n - 1 - left_n),
    }))
}

fn sum_box(node: &Option<Box<BoxNode>>) -> u64 {
    node.as_ref()
        .map_or(0, |n| sum_box(&n.left) + n.value + sum_box(&n.right))
}

/// A tree node borrowing its children from an arena-like allocator.
struct RefNode<'a> {
    left: Option<&'a RefNode<'a>>,
    right: Option<&'a RefNode<'a>>,
    value: u64,
}

/// Like [`build_box`], with nodes placed by `place`.
fn build_ref<'a>(
    place: &impl Fn(RefNode<'a>) -> &'a RefNode<'a>,
    first: u64,
    n: usize,
) -> Option<&'a RefNode<'a>> {
    if n == 0 {
        return None;
    }
    let left_n = (n - 1) / 2;
    let left = build_ref(place, first, left_n);
    let right = build_ref(place, first + left_n as u64 + 1, n - 1 - left_n);
    Some(place(RefNode {
        left,
        right,
        value: first + left_n as u64,
    }))
}

fn sum_ref(node: Option<&RefNode<'_>>) -> u64 {
    node.map_or(0, |n| sum_ref(n.left) + n.value + sum_ref(n.right))
}

/// The sum every tree of `n` nodes must give: `0 + 1 + ... + (n - 1)`.
fn tree_sum(n: usize) -> u64 {
    let n = n as u64;
    n * n.saturating_sub(1) / 2
}

fn setup_tree_box(ops: usize) -> Runner {
    Box::new(move || {
        time(|| {
            let tree = build_box(0, black_box(ops));
            assert_eq!(sum_box(black_box(&tree)), tree_sum(ops));
            drop(tree);
        })
    })
}

/// Builds a tree of `ops` nodes placed by `place` and checks its sum.
fn build_and_walk<'a>(place: &impl Fn(RefNode<'a>) -> &'a RefNode<'a>, ops: usize) {
    let tree = build_ref(place, 0, black_box(ops));
    assert_eq!(sum_ref(black_box(tree)), tree_sum(ops));
}

fn setup_tree_bumpalo(ops: usize) -> Runner {
    let mut bump = bumpalo::Bump::new();
    Box::new(move || {
        time(|| {
            build_and_walk(&|n| &*bump.alloc(n), ops);
            bump.reset();
        })
    })
}

fn setup_tree_arena(ops: usize) -> Runner {
    let mut arena = arena_for(ops, core::mem::size_of::<RefNode<'_>>());
    Box::new(move || {
        time(|| {
            build_and_walk(&|n| &*arena.alloc(n), ops);
            arena.reset();
        })
    })
}

// ---------------------------------------------------------- FFI strings

/// Words of the FFI string inputs: ASCII, Latin-1, other BMP scripts and
/// characters outside the BMP (surrogate pairs in UTF-16).
const WORDS: &[&str] = &[
    "alloc",
    "free",
    "arena",
    "valloc",
    "pointer",
    "Grüße",
    "naïve",
    "façade",
    "日本語",
    "Ελληνικά",
    "кириллица",
    "🦀",
    "𝄞music",
    "path/to/file.txt",
    "C:\\Windows",
    "x",
];

/// 1024 strings of 1 to 8 words, without NUL.
fn ffi_inputs() -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    (0..1024)
        .map(|_| {
            let words = rng.usize(1..=8);
            (0..words)
                .map(|_| WORDS[rng.usize(..WORDS.len())])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn setup_cstr_heap(ops: usize) -> Runner {
    let inputs = ffi_inputs();
    let mut out: Vec<CString> = Vec::with_capacity(ops);
    Box::new(move || {
        time(|| {
            for i in 0..ops {
                let s = inputs[i & 1023].as_str();
                out.push(CString::new(black_box(s)).expect("inputs have no NUL"));
            }
            black_box(&out);
            out.clear();
        })
    })
}

/// The longest input string, in bytes (for sizing arenas).
fn longest(inputs: &[String]) -> usize {
    inputs.iter().map(String::len).max().unwrap_or(0)
}

fn setup_cstr_arena(ops: usize) -> Runner {
    let inputs = ffi_inputs();
    let mut arena = arena_for(ops, longest(&inputs) + 1);
    let mut out: Vec<*const std::ffi::c_char> = Vec::with_capacity(ops);
    Box::new(move || {
        time(|| {
            for i in 0..ops {
                let s = inputs[i & 1023].as_str();
                let c = arena.alloc_c_str(black_box(s)).expect("inputs have no NUL");
                out.push(c.as_ptr());
            }
            black_box(&out);
            out.clear();
            arena.reset();
        })
    })
}

/// `s` as UTF-16 with a NUL terminator, as idiomatic heap code builds it.
fn wide_heap(s: &str) -> Vec<u16> {
    let mut w = Vec::with_capacity(s.len() + 1);
    w.extend(s.encode_utf16());
    w.push(0);
    w
}

fn setup_wide_heap(ops: usize) -> Runner {
    let inputs = ffi_inputs();
    let mut out: Vec<Vec<u16>> = Vec::with_capacity(ops);
    Box::new(move || {
        time(|| {
            for i in 0..ops {
                out.push(wide_heap(black_box(inputs[i & 1023].as_str())));
            }
            black_box(&out);
            out.clear();
        })
    })
}

fn setup_wide_arena(ops: usize) -> Runner {
    let inputs = ffi_inputs();
    // UTF-16 never has more units than UTF-8 has bytes; plus the NUL.
    let mut arena = arena_for(ops, 2 * (longest(&inputs) + 1));
    let mut out: Vec<*const u16> = Vec::with_capacity(ops);
    Box::new(move || {
        time(|| {
            for i in 0..ops {
                out.push(
                    arena
                        .alloc_wide_str(black_box(inputs[i & 1023].as_str()))
                        .as_ptr(),
                );
            }
            black_box(&out);
            out.clear();
            arena.reset();
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_findable() {
        for (i, g) in GROUPS.iter().enumerate() {
            assert!(GROUPS[..i].iter().all(|o| o.name != g.name), "{}", g.name);
            assert!(std::ptr::eq(find(g.name).unwrap(), g));
            assert!(!g.variants.is_empty() && g.default_ops > 0);
        }
        assert!(find("nope").is_none());
    }

    #[test]
    fn every_variant_runs_small_sizes() {
        for g in GROUPS {
            for v in g.variants {
                for ops in [1, 5, 64] {
                    let mut run = (v.setup)(ops);
                    run();
                    run();
                }
            }
        }
    }

    #[test]
    fn trees_hold_every_value_once() {
        for n in [0, 1, 2, 3, 10, 1000] {
            assert_eq!(sum_box(&build_box(0, n)), tree_sum(n));
            let bump = bumpalo::Bump::new();
            let place = |node| &*bump.alloc(node);
            assert_eq!(sum_ref(build_ref(&place, 0, n)), tree_sum(n));
        }
    }

    #[test]
    fn inputs_are_in_range_and_stable() {
        let sizes = churn_sizes();
        assert!(sizes.len().is_power_of_two());
        assert!(sizes.iter().all(|s| (16..=256).contains(s)));
        assert_eq!(sizes, churn_sizes());
        let strings = ffi_inputs();
        assert_eq!(strings.len(), 1024);
        assert!(strings.iter().all(|s| !s.is_empty() && !s.contains('\0')));
        assert!(strings.iter().any(|s| s.chars().any(|c| c as u32 > 0xFFFF)));
        assert_eq!(wide_heap("a🦀"), [0x61, 0xD83E, 0xDD80, 0]);
    }
}
