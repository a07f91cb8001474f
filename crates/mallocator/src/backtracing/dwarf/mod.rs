//! Stack capture by DWARF call-frame information, with `framehop`: exact
//! stacks through code built without frame pointers (distribution
//! packages, `gcc -O2`), at a fraction of the C library unwinder's cost.
//!
//! The choice between frame pointers and call-frame information is made
//! per object: an object with an `.eh_frame_hdr` index (every object a
//! GNU toolchain links, unless told otherwise) is unwound by its
//! call-frame information, any other address by its frame pointer
//! (framehop's fallback). The rule framehop derives for a return
//! address is learned once and then applied without framehop
//! (`rules.rs`): a program's usual stacks cost a table lookup and a load
//! or two per frame.
//!
//! # Invariants
//! 1. **Every stack read is bounds-checked** against the stack this code
//!    runs on, as the frame-pointer walk's are (`stack.rs`): aligned, at
//!    or above the stack pointer taken at the start, below the top of
//!    that stack. A corrupt or foreign frame ends the stack, never a
//!    fault.
//! 2. **The unwinder reads only memory the tracker owns**, besides the
//!    stack: each object's `.eh_frame_hdr` and `.eh_frame` are copied
//!    when the object is first seen. An object unloaded since
//!    (`dlclose`) then costs wrong frames at worst, never a read of an
//!    unmapped page (and none once the tracker is told of the unload:
//!    [`objects_unloaded`]).
//! 3. **Unwinding allocates nothing** (framehop's
//!    `MustNotAllocateDuringUnwind`); only a scan of the loaded objects
//!    does, as the tracker's own work.
//! 4. **Lock order: the loader's lock, then [`UNWINDING`]**, never the
//!    other way: a scan walks the loaded objects (the loader's lock)
//!    under [`UNWINDING`], and a thread inside its own `dl_iterate_phdr`
//!    callback that allocates wants [`UNWINDING`] next. So a scan takes
//!    the loader's lock first ([`os::with_loader_locked`]), and an unwind
//!    that needs one lets go of [`UNWINDING`] before it starts.
//! 5. **A thread never waits for [`UNWINDING`] while it holds it**: a
//!    signal handler that allocates while its thread unwinds finds
//!    `HOLDING` set and is answered `None` (the caller walks frame
//!    pointers instead).
//! 6. **The learned steps are read without a lock** ([`RULES`], a
//!    sequence lock: `rules.rs`), and written only under [`UNWINDING`],
//!    like everything else of the unwinder. An unwind first walks by the
//!    learned steps alone, so that threads unwind at once; it walks again
//!    under the lock when it meets a frame without a learned step, when
//!    its first or last frame lies in no known object, or when a write
//!    raced it.

use core::cell::Cell;
use core::mem::{ManuallyDrop, MaybeUninit};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{
    ExplicitModuleSectionInfo, FrameAddress, Module, MustNotAllocateDuringUnwind, Unwinder as _,
};

use super::os;
use super::sync::{SpinGuard, SpinLock};
use rules::{Rules, Step};

mod rules;

type Policy = MustNotAllocateDuringUnwind;

/// framehop's unwinder over the loaded objects, and its cache.
pub(crate) struct Unwinding {
    unwinder: UnwinderX86_64<Vec<u8>, Policy>,
    cache: CacheX86_64<Policy>,
    /// Every loaded object as last scanned (with or without call-frame
    /// information), sorted by address: a frame outside all of them may
    /// lie in an object loaded since.
    known: Vec<Known>,
    /// Recent frame addresses that were in no object even after a scan
    /// (generated code, a garbage frame): not scanned for again.
    strangers: [usize; STRANGERS],
    next_stranger: usize,
}

/// How many [`Unwinding::strangers`] are remembered.
const STRANGERS: usize = 16;

/// A loaded object as a scan saw it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Known {
    start: usize,
    end: usize,
    /// Where its code starts, which names its module in the unwinder;
    /// `None` when it has no call-frame information there.
    text: Option<usize>,
}

/// The process's unwinder (one for all threads: unwinds are short, and
/// the rule cache is best shared); `None` until the first unwind.
pub(crate) static UNWINDING: SpinLock<Option<Unwinding>> = SpinLock::new(None);

/// The steps learned from [`UNWINDING`]'s framehop: read by every unwind
/// without a lock, written under it (see [`Rules`]).
static RULES: Rules = Rules::new();

std::thread_local! {
    /// Whether this thread holds [`UNWINDING`] (invariant 5).
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// Sets or clears `HOLDING` for the fork handlers, which take
/// [`UNWINDING`] without [`lock`] and hold it while other libraries' fork
/// handlers run on this thread: set after the lock is taken, cleared
/// after it is released (signals are blocked meanwhile).
pub(crate) fn held_across_fork(holding: bool) {
    let _ = HOLDING.try_with(|h| h.set(holding));
}

/// [`UNWINDING`], held with `HOLDING` set; `None` when this thread holds
/// it already (a signal handler interrupted its unwind). `HOLDING` is
/// set before the lock is taken and cleared after it is released, so a
/// handler never finds the lock held by its thread with the flag clear.
fn lock() -> Option<Held> {
    if HOLDING.try_with(|h| h.replace(true)).unwrap_or(true) {
        return None;
    }
    Some(Held(ManuallyDrop::new(UNWINDING.lock())))
}

/// [`UNWINDING`] taken by [`lock`]: released, then `HOLDING` cleared,
/// when dropped.
struct Held(ManuallyDrop<SpinGuard<'static, Option<Unwinding>>>);

impl core::ops::Deref for Held {
    type Target = Option<Unwinding>;
    fn deref(&self) -> &Option<Unwinding> {
        &self.0
    }
}

impl core::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Option<Unwinding> {
        &mut self.0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: dropped once, here; the field is not used after.
        unsafe { ManuallyDrop::drop(&mut self.0) };
        let _ = HOLDING.try_with(|h| h.set(false));
    }
}

/// Frames the unwind yields before the first one the caller wants: the
/// instruction pointer inside [`unwind`], and the return into the
/// function that called it. What is left starts, like the frame-pointer
/// walk, at the return address of the function `capture` is inlined
/// into.
const SKIPPED: usize = 2;

/// Captures the caller's stack into `out` (return addresses, innermost
/// first): the number written, or `None` when this thread cannot unwind
/// now (it is unwinding already, below a signal handler; or no object
/// could be scanned). `top` is the top of the stack the caller runs on
/// ([`top_of_current_stack`](super::stack::top_of_current_stack)),
/// found there: the caller has its thread's state at hand, which in a
/// shared library saves a call into the dynamic loader. Unless
/// `may_scan`, it never scans the loaded objects, which allocates (a
/// signal handler's capture, whose thread may hold the locks an
/// allocation takes): `None` when nothing was scanned yet, and a stack
/// that ends at a frame in no known object.
#[inline(never)]
pub(crate) fn unwind(out: &mut [MaybeUninit<usize>], top: usize, may_scan: bool) -> Option<usize> {
    #[cfg(test)]
    tests::interrupt();
    let regs = os::registers();
    // Without the lock first: the usual stack, every step learned (or
    // nothing asked for). Tested here, not in the walk: there the test
    // cost 30 instructions an unwind (the loop compiled worse).
    let lock_free = if out.is_empty() {
        Some(0)
    } else {
        walk_learned(regs, top, out)
    };
    if let Some(n) = lock_free {
        #[cfg(test)]
        tests::LOCK_FREE.with(|c| c.set(c.get() + 1));
        return Some(n);
    }
    let mut held = lock()?;
    if held.is_none() {
        if !may_scan {
            return None;
        }
        drop(held);
        scan();
        held = lock()?;
    }
    let (n, unknown) = walk(held.as_mut()?, regs, top, out);
    let Some(ip) = unknown.filter(|_| may_scan) else {
        return Some(n);
    };
    // A frame in no object known: one loaded since? Scan again, and
    // unwind again if the objects changed.
    drop(held);
    let changed = scan();
    let mut held = lock()?;
    let u = held.as_mut()?;
    if !u.knows(ip) {
        u.strangers[u.next_stranger] = ip;
        u.next_stranger = (u.next_stranger + 1) % STRANGERS;
    }
    Some(if changed {
        walk(u, regs, top, out).0
    } else {
        n
    })
}

/// The lock-free walk (invariant 6): the frames of a stack whose every
/// step is learned, into `out` after the [`SKIPPED`] frames, as
/// [`walk`] would find them; `None` when it cannot tell without the
/// unwinder (a step not learned, a first or last frame in no known
/// object, a read refused in one) or a write raced it. What it read of
/// the steps counts only if no write raced it (see [`Rules`]).
///
/// A loop of its own rather than [`walk`]'s without the unwinder: with
/// no steps to learn and no suspects to collect, fewer values are live
/// per frame and fewer spill to memory (about 41 instructions a frame
/// against 58 when it was that walk with the unwinder left out).
#[inline(never)]
fn walk_learned(
    regs: (usize, usize, usize),
    top: usize,
    out: &mut [MaybeUninit<usize>],
) -> Option<usize> {
    let generation = RULES.begin_read()?;
    let n = walk_steps(regs, top, out)?;
    RULES.unchanged_since(generation).then_some(n)
}

/// [`walk_learned`]'s walk, before the check that no write raced it.
#[inline(always)]
fn walk_steps(
    (pc, sp, bp): (usize, usize, usize),
    top: usize,
    out: &mut [MaybeUninit<usize>],
) -> Option<usize> {
    let Some(mut read_stack) = stack_reader(sp, top) else {
        return Some(0);
    };
    let (mut sp, mut bp) = (sp as u64, bp as u64);
    let mut step = RULES.get(pc as u64)?;
    let mut ra = rules::apply(step, &mut sp, &mut bp, &mut read_stack).ok()?;
    // The frames before the first one kept: walked, not written.
    for _ in 1..SKIPPED {
        let Some(at) = ra.filter(|&at| at != 0) else {
            return Some(0);
        };
        step = RULES.get(at)?;
        ra = match rules::apply(step, &mut sp, &mut bp, &mut read_stack) {
            Ok(next) => next,
            Err(()) => return step.known().then_some(0),
        };
    }
    let mut n = 0;
    while let Some(at) = ra.filter(|&at| at != 0 && n < out.len()) {
        step = RULES.get(at)?;
        out[n].write(at as usize);
        n += 1;
        ra = match rules::apply(step, &mut sp, &mut bp, &mut read_stack) {
            Ok(next) => next,
            Err(()) => break,
        };
    }
    // The first and the last frame must lie in known objects (see
    // `walk`); `step` is the last one's when a frame was written.
    // SAFETY: the loop above initialised the first `n` words.
    let frames = unsafe { core::slice::from_raw_parts(out.as_ptr().cast::<usize>(), n) };
    (first_known(frames) && (n == 0 || step.known())).then_some(n)
}

/// Whether the first of a walk's `frames` lies in an object the
/// unwinder knows, as its learned step says (true with no frames, or no
/// step learned for it: nothing says it does not).
#[inline(always)]
fn first_known(frames: &[usize]) -> bool {
    frames
        .first()
        .is_none_or(|&ip| RULES.get(ip as u64).is_none_or(Step::known))
}

/// Reads the stack for a walk from `sp` (invariant 1): the word at an
/// address that is aligned and lies in `[sp, top - 8]`, any other
/// refused; `None` when that range is empty.
#[inline(always)]
fn stack_reader(sp: usize, top: usize) -> Option<impl FnMut(u64) -> Result<u64, ()>> {
    const WORD: u64 = core::mem::size_of::<usize>() as u64;
    let low = sp as u64;
    // The highest address a word may be read at, less `low`.
    let span = (top as u64).checked_sub(WORD)?.checked_sub(low)?;
    // `move`: the bounds are copied into the closure, not read through
    // references on every frame.
    Some(move |addr: u64| {
        if addr % WORD != 0 || addr.wrapping_sub(low) > span {
            return Err(());
        }
        // SAFETY: `addr` is aligned and lies between the stack pointer
        // the walk started from and the top of the stack it runs on
        // (invariant 1): mapped, readable memory while the walk runs.
        // Volatile: it is memory this code did not write.
        Ok(unsafe { core::ptr::read_volatile(addr as *const u64) })
    })
}

impl Unwinding {
    /// Whether `ip` lies in an object known to this unwinder.
    fn knows(&self, ip: usize) -> bool {
        let i = self.known.partition_point(|k| k.start <= ip);
        i.checked_sub(1).is_some_and(|i| ip < self.known[i].end)
    }
}

/// The walk under the unwinder's lock (`u`): unwinds from `regs`
/// (instruction, stack and frame pointer), reading the stack below `top`
/// (invariant 1), into `out` after the [`SKIPPED`] frames. Returns the
/// frames written, and an address where it met no object known, if it
/// did (see the comment at the end).
///
/// Each frame goes by the step learned for its address ([`RULES`]): the
/// first frame (the unwinder's own, stopped where it read the registers)
/// by its instruction's, every caller's by its return address's. A step
/// not learned yet is learned, and a frame whose rule has no learnable
/// form goes through framehop. [`walk_learned`] is the same walk without
/// those two.
#[inline(never)]
fn walk(
    u: &mut Unwinding,
    (pc, sp, bp): (usize, usize, usize),
    top: usize,
    out: &mut [MaybeUninit<usize>],
) -> (usize, Option<usize>) {
    let Some(mut read_stack) = stack_reader(sp, top) else {
        return (0, None);
    };
    let pc = pc as u64;
    // The instruction pointer is never a return address (it follows the
    // instruction that read it, not a call), so its step shares the table.
    let frame = Some(FrameAddress::from_instruction_pointer(pc));
    let (mut sp, mut bp) = (sp as u64, bp as u64);
    let first = match RULES.get(pc).or_else(|| learn(u, pc, frame, true)) {
        Some(step) => rules::apply(step, &mut sp, &mut bp, &mut read_stack),
        None => by_framehop(u, pc, frame, (&mut sp, &mut bp), &mut read_stack),
    };
    let mut ra = match first {
        Ok(Some(ra)) => ra,
        Ok(None) => return (0, None),
        Err(()) => return (0, Some(pc as usize)),
    };
    // The frames before the first one kept (the instruction pointer's
    // was the first): walked, not written.
    let mut skip = SKIPPED - 1;
    let mut n = 0;
    let mut last_known = true;
    let mut failed = false;
    while ra != 0 && n < out.len() {
        let frame = FrameAddress::from_return_address(ra);
        let (step, known) = match RULES.get(ra) {
            Some(step) => (Some(step), step.known()),
            None => {
                let known = u.knows(ra as usize);
                (learn(u, ra, frame, known), known)
            }
        };
        if skip == 0 {
            out[n].write(ra as usize);
            n += 1;
            last_known = known;
        } else {
            skip -= 1;
        }
        let next = match step {
            Some(step) => rules::apply(step, &mut sp, &mut bp, &mut read_stack),
            None => by_framehop(u, ra, frame, (&mut sp, &mut bp), &mut read_stack),
        };
        match next {
            Ok(Some(caller)) => ra = caller,
            Ok(None) => break,
            Err(()) => {
                failed = !known;
                break;
            }
        }
    }
    // Checked: the first frame (an object loaded since calls the
    // allocator) and where the unwind ended (a frame of an object it
    // cannot unwind is the last one it finds, or the one it fails at).
    // Not every frame: a frame of an unknown object in between was
    // unwound by its frame pointer correctly, or the unwind would have
    // ended there.
    // SAFETY: the loop above initialised the first `n` words.
    let frames = unsafe { core::slice::from_raw_parts(out.as_ptr().cast::<usize>(), n) };
    let first_known = first_known(frames);
    let suspects = [
        frames.first().filter(|_| !first_known),
        frames.last().filter(|_| !last_known),
    ];
    let unknown = suspects
        .into_iter()
        .flatten()
        .copied()
        .chain(failed.then_some(ra as usize))
        .find(|&ip| !u.strangers.contains(&ip));
    (n, unknown)
}

/// Learns the step of the frame at `frame` (address `at`: a return
/// address, or the innermost frame's instruction pointer) from framehop
/// (`rules.rs`), as a frame of a known object when `known`; no step when
/// there is no frame there or its rule has no learnable form.
#[cold]
#[inline(never)]
fn learn(u: &mut Unwinding, at: u64, frame: Option<FrameAddress>, known: bool) -> Option<Step> {
    let step = rules::probe(&u.unwinder, &mut u.cache, frame?).map(|rule| Step::new(rule, known));
    if let Some(step) = step {
        RULES.insert(at, step);
    }
    step
}

/// Unwinds the frame at `frame` (address `ip`) through framehop itself,
/// for a rule of no learnable form (every time): the caller's return
/// address (`None` at the end of the stack, or when there is no frame
/// there), with `sp` and `bp` now the caller's; `Err` when a read is
/// refused.
#[cold]
#[inline(never)]
fn by_framehop(
    u: &mut Unwinding,
    ip: u64,
    frame: Option<FrameAddress>,
    (sp, bp): (&mut u64, &mut u64),
    read_stack: &mut impl FnMut(u64) -> Result<u64, ()>,
) -> Result<Option<u64>, ()> {
    let mut regs = UnwindRegsX86_64::new(ip, *sp, *bp);
    let next = frame.map(|frame| {
        u.unwinder
            .unwind_frame(frame, &mut regs, &mut u.cache, read_stack)
    });
    (*sp, *bp) = (regs.sp(), regs.bp());
    next.unwrap_or(Ok(None)).map_err(|_| ())
}

/// Scans the loaded objects, bringing [`UNWINDING`] up to date: new
/// objects added (their sections copied), unloaded ones removed (lock
/// order: invariant 4). True when the objects changed since the last
/// scan (or there was none). An object whose sections cannot be copied
/// (out of memory) is left to the frame-pointer fallback.
///
/// The one part of an unwind that allocates (through the global
/// allocator, which may be a tracker): the tracker's own work
/// (invariant 12 in the tracker's module docs). The walks around it
/// allocate nothing, and stay in the hot path, where a signal handler's
/// events are deferred.
#[cold]
#[inline(never)]
fn scan() -> bool {
    let _own = super::thread::Busy::own();
    os::with_loader_locked(|| {
        let Some(mut held) = lock() else {
            return false;
        };
        let old: &[Known] = held.as_ref().map_or(&[], |u| &u.known);
        let mut known: Vec<Known> = Vec::new();
        let mut added = Vec::new();
        os::for_each_module(&mut |m| {
            if known.try_reserve(1).is_err() || added.try_reserve(1).is_err() {
                return;
            }
            let seen = old.iter().find(|k| (k.start, k.end) == (m.start, m.end));
            let text = match seen {
                Some(k) => k.text,
                None => m.unwind.and_then(|sections| {
                    let module = module(m.bias, &sections)?;
                    added.push(module);
                    Some(sections.text.0)
                }),
            };
            known.push(Known {
                start: m.start,
                end: m.end,
                text,
            });
        });
        known.sort_unstable();
        if held.as_ref().is_some_and(|u| u.known == known) {
            return false;
        }
        if held.is_none() {
            *held = Some(Unwinding {
                unwinder: UnwinderX86_64::new(),
                cache: CacheX86_64::new_in(),
                known: Vec::new(),
                strangers: [0; STRANGERS],
                next_stranger: 0,
            });
        }
        let Some(u) = held.as_mut() else {
            return false;
        };
        for gone in u.known.iter().filter(|k| !known.contains(k)) {
            if let Some(text) = gone.text {
                u.unwinder.remove_module(text as u64);
            }
        }
        for module in added {
            u.unwinder.add_module(module);
        }
        // framehop tags each rule in its cache with the modules it was
        // derived under, so its cache is kept; the rules learned from it
        // may have come from an object now gone.
        RULES.clear();
        u.known = known;
        u.strangers = [0; STRANGERS];
        true
    })
}

/// After objects were unloaded (`dlclose`): scans the loaded objects, so
/// that the unloaded ones, and the steps learned from them, are forgotten
/// before another object can be loaded at their addresses (a scan knows
/// an object by its address range alone: one loaded there unseen would be
/// unwound by the other's call-frame information). Nothing before the
/// first unwind that scanned.
pub(crate) fn objects_unloaded() {
    let started = match lock() {
        Some(held) => held.is_some(),
        // This thread is inside the unwinder (a signal handler's call).
        None => return,
    };
    if started {
        scan();
    }
}

/// framehop's description of one object, its sections copied
/// (invariant 2); `None` when out of memory.
fn module(bias: usize, s: &os::UnwindSections<'_>) -> Option<Module<Vec<u8>>> {
    let copy = |bytes: &[u8]| {
        let mut v = Vec::new();
        v.try_reserve_exact(bytes.len()).ok()?;
        v.extend_from_slice(bytes);
        Some(v)
    };
    // framehop wants each section at its address in the object file
    // (SVMA): the loaded address less the load bias.
    let svma = |start: usize, len: usize| {
        let start = start.wrapping_sub(bias) as u64;
        start..start + len as u64
    };
    let (hdr, eh_frame) = (s.eh_frame_hdr, s.eh_frame);
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: Some(svma(s.text.0, s.text.1 - s.text.0)),
        eh_frame_hdr_svma: Some(svma(hdr.as_ptr() as usize, hdr.len())),
        eh_frame_hdr: Some(copy(hdr)?),
        eh_frame_svma: Some(svma(eh_frame.as_ptr() as usize, eh_frame.len())),
        eh_frame: Some(copy(eh_frame)?),
        ..Default::default()
    };
    Some(Module::new(
        String::new(),
        s.text.0 as u64..s.text.1 as u64,
        bias as u64,
        info,
    ))
}

#[cfg(test)]
mod tests {
    use core::cell::Cell;
    use core::mem::MaybeUninit;

    std::thread_local! {
        /// Unwinds of this thread the lock-free walk answered.
        pub(super) static LOCK_FREE: Cell<usize> = const { Cell::new(0) };
        /// What the next unwind on this thread runs first, as a signal
        /// handler that interrupts it would.
        static INTERRUPT: Cell<Option<fn()>> = const { Cell::new(None) };
    }

    /// Runs (once) what [`INTERRUPT`] holds.
    pub(super) fn interrupt() {
        if let Some(handler) = INTERRUPT.with(Cell::take) {
            handler();
        }
    }

    static INTERRUPTED: crate::backtracing::Backtracing<'static> =
        crate::backtracing::Backtracing::with_config(
            crate::Valloc::libc(),
            crate::backtracing::Config {
                stack_mode: crate::backtracing::StackMode::Dwarf,
                ..crate::backtracing::Config::DEFAULT
            },
        );
    static KEPT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

    /// A signal handler that interrupts the DWARF walk of an allocation
    /// is in that allocation's hot path (invariant 12 in the tracker's
    /// module docs): its allocation is deferred and then tracked as the
    /// program's, not taken for the tracker's own.
    #[test]
    fn a_signal_handler_that_interrupts_the_walk_is_tracked() {
        fn handler() {
            let p = INTERRUPTED.valloc().malloc(8, 77);
            KEPT.store(p as usize, core::sync::atomic::Ordering::SeqCst);
        }
        let v = INTERRUPTED.valloc();
        // SAFETY: freeing what `v` returned (the objects are scanned now).
        unsafe { v.free(v.malloc(8, 8)) };
        INTERRUPT.with(|c| c.set(Some(handler)));
        let p = v.malloc(8, 24);
        // Taken out of the static (see `assert_both_tracked_then_free`).
        let kept = KEPT.swap(0, core::sync::atomic::Ordering::SeqCst) as *mut u8;
        super::super::tests::assert_both_tracked_then_free(&INTERRUPTED, p, kept);
    }

    /// The frames [`unwind`](super::unwind) finds from here, into `len`
    /// words.
    #[inline(never)]
    fn unwind_from_here(len: usize) -> Vec<usize> {
        let mut out = [MaybeUninit::uninit(); 64];
        let top = super::super::stack::top_of_current_stack(super::os::stack_pointer_estimate())
            .expect("a known stack");
        let n = super::unwind(&mut out[..len], top, true).expect("this thread can unwind");
        // SAFETY: `unwind` initialised the first `n` words.
        out[..n]
            .iter()
            .map(|w| unsafe { w.assume_init() })
            .collect()
    }

    /// From one call site, the first unwind learns its steps under the
    /// lock and the next ones walk without it: the same frames, however
    /// many are asked for (the lock-free walk skips, counts and stops on
    /// its own).
    #[test]
    fn the_lock_free_walk_finds_what_the_walk_under_the_lock_found() {
        for len in [0, 1, 2, 3, 8, 64] {
            let before = LOCK_FREE.with(Cell::get);
            let stacks: Vec<Vec<usize>> = (0..10).map(|_| unwind_from_here(len)).collect();
            // Not all ten: another test's `dlopen` may clear the steps.
            assert!(
                LOCK_FREE.with(Cell::get) > before,
                "{len} words: never lock-free"
            );
            assert!(
                stacks.iter().all(|s| *s == stacks[0]),
                "{len} words: {stacks:x?}"
            );
            if len <= 8 {
                // This test's stack is deeper than 8 frames.
                assert_eq!(stacks[0].len(), len);
            }
        }
    }
}
