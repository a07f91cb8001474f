//! Stack capture: a bounds-checked frame-pointer walk, or the unwinder.
//!
//! Frame pointers make capture cheap (two loads per frame).
//!
//! **The rule that keeps the walk from faulting: it reads only the stack
//! it is running on.** It first finds that stack: the current thread's
//! (bounds asked from the OS once per thread), or, when the stack pointer
//! is not inside it, the signal alternate stack if it is inside that.
//! Code on any other stack (a `makecontext` coroutine, a green thread)
//! gets an empty stack, counted in the report, never a guess. Then each
//! frame record is read only when it lies between the walker's own frame
//! and the top of that stack, aligned, and strictly above the previous
//! record, so a broken chain (code built without frame pointers, a C
//! library using the frame-pointer register for data, the interrupted
//! code below a signal frame) ends the walk instead of faulting.
//!
//! [`StackMode::Auto`] decides once per process, at the first capture:
//! it walks the frame pointers and runs the unwinder from the same point,
//! and keeps the walk only when both agree on the first frames.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

use super::os;
use super::stacks::{hash_finish, hash_stack, hash_step, HASH_SEED};

/// The most frames a stack can hold ([`Config::depth`](super::Config::depth) is capped to it).
pub const MAX_DEPTH: usize = 64;

/// Room for one stack, not zeroed first (capture runs on every
/// allocation; only the prefix a capture writes is ever read).
pub(crate) type StackStorage = MaybeUninit<[usize; MAX_DEPTH]>;

/// A captured stack (in some [`StackStorage`]) and its [`hash_stack`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Captured<'s> {
    pub frames: &'s [usize],
    pub hash: u64,
    /// The code ran on a stack the walk does not know, so `frames` is
    /// empty (see the module docs).
    pub off_stack: bool,
}

/// How stacks are captured.
///
/// ```
/// use mallocator::backtracing::{Backtracing, Config, StackMode};
/// use mallocator::Valloc;
///
/// let t = Backtracing::with_config(Valloc::libc(), Config { stack_mode: StackMode::Unwind, ..Config::DEFAULT });
/// let (mode, why) = t.stack_mode();
/// assert_eq!(mode, StackMode::Unwind);
/// assert!(!why.is_empty());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StackMode {
    /// Frame pointers when a calibration at the first capture shows that
    /// the chain is intact (build with `-C force-frame-pointers=yes`),
    /// else the unwinder. The default.
    Auto,
    /// Always walk frame pointers (where the platform allows it: x86-64
    /// or AArch64 with known thread stack bounds); a broken chain gives
    /// short stacks, never a crash.
    FramePointers,
    /// Always use the `backtrace` crate's unwinder: exact without frame
    /// pointers, but tens of times slower per capture.
    Unwind,
    /// DWARF call-frame information where an object has it, frame
    /// pointers where it has none, chosen per object (see `dwarf/mod.rs`):
    /// exact stacks through code built without frame pointers, at a few
    /// times the frame-pointer walk's cost. Linux on x86-64 with the
    /// `dwarf-unwind` feature; elsewhere the unwinder.
    Dwarf,
}

/// How a capture gets its frames (what the hot path needs of [`Active`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    FramePointers,
    Dwarf,
    Unwind,
}

/// The mode a capture really uses, with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Active {
    FramePointers(&'static str),
    Dwarf(&'static str),
    Unwind(&'static str),
}

impl Active {
    pub(crate) fn describe(self) -> (StackMode, &'static str) {
        match self {
            Active::FramePointers(why) => (StackMode::FramePointers, why),
            Active::Dwarf(why) => (StackMode::Dwarf, why),
            Active::Unwind(why) => (StackMode::Unwind, why),
        }
    }

    fn method(self) -> Method {
        match self {
            Active::FramePointers(_) => Method::FramePointers,
            Active::Dwarf(_) => Method::Dwarf,
            Active::Unwind(_) => Method::Unwind,
        }
    }
}

/// A tracker's resolved capture mode: resolved at its first capture and
/// kept (an atomic, not a `OnceLock`: a thread resolving it when another
/// forks must not leave a half-done initialisation behind in the child;
/// resolving twice is harmless, it gives the same answer).
#[derive(Debug)]
pub(crate) struct ActiveCell(AtomicU8);

/// Every value an [`ActiveCell`] can hold; it stores the index + 1.
const ACTIVE_VALUES: [Active; 8] = [
    Active::FramePointers(WHY_FORCED_FP),
    Active::FramePointers(WHY_CALIBRATED),
    Active::Dwarf(WHY_FORCED_DWARF),
    Active::Unwind(WHY_NO_DWARF),
    Active::Unwind(WHY_FORCED_UNWIND),
    Active::Unwind(WHY_NO_FP),
    Active::Unwind(WHY_BROKEN),
    Active::Unwind(WHY_MIRI),
];

impl ActiveCell {
    pub(crate) const fn new() -> Self {
        ActiveCell(AtomicU8::new(0))
    }

    /// The mode in use, resolving `mode` if not done yet.
    pub(crate) fn get_or_resolve(&self, mode: StackMode) -> Active {
        match self.0.load(Ordering::Acquire) {
            0 => self.set(resolve(mode)),
            i => ACTIVE_VALUES[i as usize - 1],
        }
    }

    /// How captures get their frames, resolving `mode` if not done yet:
    /// what the hot path needs, without the reason (the first two entries
    /// of `ACTIVE_VALUES` are the walks, the third the DWARF unwinder).
    #[inline(always)]
    pub(crate) fn method(&self, mode: StackMode) -> Method {
        match self.0.load(Ordering::Acquire) {
            0 => self.set(resolve(mode)).method(),
            1 | 2 => Method::FramePointers,
            3 => Method::Dwarf,
            _ => Method::Unwind,
        }
    }

    /// Replaces the mode in use; returns it.
    pub(crate) fn set(&self, active: Active) -> Active {
        let i = ACTIVE_VALUES
            .iter()
            .position(|&a| a == active)
            .expect("every resolved mode is listed");
        self.0.store(i as u8 + 1, Ordering::Release);
        active
    }
}

const WHY_FORCED_FP: &str = "frame pointers: forced by Config::stack_mode";
const WHY_FORCED_UNWIND: &str = "unwinder: forced by Config::stack_mode";
const WHY_FORCED_DWARF: &str =
    "DWARF call-frame information, frame pointers where an object has none: forced by Config::stack_mode";
const WHY_NO_DWARF: &str =
    "unwinder: DWARF unwinding needs Linux on x86-64 and the dwarf-unwind feature";
const WHY_NO_FP: &str =
    "unwinder: frame-pointer walking needs x86-64 or AArch64 and known thread stack bounds";
const WHY_CALIBRATED: &str =
    "frame pointers: Auto found an intact frame-pointer chain that matches the unwinder";
const WHY_BROKEN: &str = "unwinder: Auto found the frame-pointer chain broken or disagreeing \
     with the unwinder (build with -C force-frame-pointers=yes)";
const WHY_MIRI: &str = "unwinder: under Miri, a synthetic stand-in stack";

/// Whether this platform can walk frame pointers at all.
// Under Miri `resolve` always answers the stand-in: unused there.
#[cfg_attr(miri, allow(dead_code))]
fn fp_supported() -> bool {
    !cfg!(miri)
        && cfg!(any(target_arch = "x86_64", target_arch = "aarch64"))
        && thread_bounds().is_some()
}

/// The process-wide result of `Auto`'s calibration: 0 undecided, 1 frame
/// pointers, 2 unwinder.
// Under Miri `resolve` always answers the stand-in: unused there.
#[cfg_attr(miri, allow(dead_code))]
static AUTO: AtomicU8 = AtomicU8::new(0);

/// Resolves a configured mode into the one used.
pub(crate) fn resolve(mode: StackMode) -> Active {
    #[cfg(miri)]
    {
        let _ = mode;
        Active::Unwind(WHY_MIRI)
    }
    #[cfg(not(miri))]
    match mode {
        StackMode::Unwind => Active::Unwind(WHY_FORCED_UNWIND),
        StackMode::Dwarf if DWARF_SUPPORTED && thread_bounds().is_some() => {
            Active::Dwarf(WHY_FORCED_DWARF)
        }
        StackMode::Dwarf => Active::Unwind(WHY_NO_DWARF),
        StackMode::FramePointers if fp_supported() => Active::FramePointers(WHY_FORCED_FP),
        StackMode::FramePointers => Active::Unwind(WHY_NO_FP),
        StackMode::Auto => match AUTO.load(Ordering::Relaxed) {
            1 => Active::FramePointers(WHY_CALIBRATED),
            2 if fp_supported() => Active::Unwind(WHY_BROKEN),
            2 => Active::Unwind(WHY_NO_FP),
            _ => {
                // The unwinder may allocate: the tracker's own work
                // (invariant 12).
                let _own = super::thread::Busy::own();
                let fp_ok = fp_supported() && calibrate();
                AUTO.store(if fp_ok { 1 } else { 2 }, Ordering::Relaxed);
                resolve(mode)
            }
        },
    }
}

/// Captures from the same frame with both methods and compares.
#[inline(never)]
// Under Miri `resolve` always answers the stand-in: unused there.
#[cfg_attr(miri, allow(dead_code))]
fn calibrate() -> bool {
    let (mut a, mut b) = ([MaybeUninit::uninit(); 16], [MaybeUninit::uninit(); 24]);
    let (nw, _) = walk(&mut a);
    let nu = os::unwind(&mut b);
    // SAFETY: the walk and the unwinder initialised that many words.
    let (walked, unwound) = unsafe {
        (
            core::slice::from_raw_parts(a.as_ptr().cast::<usize>(), nw),
            core::slice::from_raw_parts(b.as_ptr().cast::<usize>(), nu),
        )
    };
    agree(calibrate as fn() -> bool as usize, walked, unwound)
}

/// True when the walk saw exactly the frames the unwinder saw. The
/// first walked frame is the return into the calibrating function after
/// `walk`; the unwinder has the return into it after `unwind`, a few bytes
/// away. From there on both must list the same callers, for at least 3
/// frames (or all there are): a walk that skips a frame built without
/// frame pointers disagrees.
fn agree(home: usize, walked: &[usize], unwound: &[usize]) -> bool {
    let inside = |ip: usize| ip.wrapping_sub(home) < 1024;
    let Some((_, above)) = walked.split_first().filter(|(&ip, _)| inside(ip)) else {
        return false;
    };
    let Some(j) = unwound.iter().position(|&ip| inside(ip)) else {
        return false;
    };
    let rest = &unwound[j + 1..];
    let common = above.len().min(rest.len());
    common >= 3.min(rest.len()) && above[..common] == rest[..common]
}

std::thread_local! {
    /// This thread's stack bounds: `(0, 0)` not yet asked, `(1, 1)` unknown
    /// (also while being asked: a call nested in the question, which the
    /// question's own functions may make, finds them unknown instead of
    /// asking again).
    static BOUNDS: core::cell::Cell<(usize, usize)> = const { core::cell::Cell::new((0, 0)) };
}

/// The current thread's stack bounds, asked from the OS once per thread.
#[inline(always)]
fn thread_bounds() -> Option<(usize, usize)> {
    match BOUNDS.try_with(|b| b.get()) {
        Ok(known) if known.0 > 1 => Some(known),
        _ => thread_bounds_slow(),
    }
}

/// Asks the OS for the calling thread's stack bounds now, unless they
/// were asked for already (the tracker asks at the thread's first stack
/// capture, and keeps the answer for the thread's life).
///
/// For a library that defines `pthread_getattr_np` over the C library's
/// (as mallocator's preload library does), to call before the C
/// library's: glibc's allocates while it holds the thread's own lock,
/// and the tracker's question is that same function, so asked first from
/// inside that allocation it would wait for the lock forever (a new
/// thread of the JVM does exactly this first). Asked here, before any
/// lock is taken, it is known by then. Does nothing on a platform where
/// the tracker cannot ask.
///
/// ```
/// mallocator::backtracing::learn_thread_stack();
/// ```
pub fn learn_thread_stack() {
    let _ = thread_bounds();
}

/// Whether this thread's stack bounds were asked for already (known or
/// not): [`thread_bounds`] then allocates nothing.
pub(crate) fn thread_bounds_asked() -> bool {
    BOUNDS.try_with(|b| b.get() != (0, 0)).unwrap_or(false)
}

/// [`thread_bounds`] when not known yet, unknown, or during teardown.
#[cold]
#[inline(never)]
fn thread_bounds_slow() -> Option<(usize, usize)> {
    let cached = BOUNDS.try_with(|b| b.get()).unwrap_or((1, 1));
    let bounds = if cached == (0, 0) {
        let _ = BOUNDS.try_with(|b| b.set((1, 1)));
        // glibc reads /proc for the main thread, allocating: the
        // tracker's own work (invariant 12).
        let fresh = {
            let _own = super::thread::Busy::own();
            os::stack_bounds().unwrap_or((1, 1))
        };
        let _ = BOUNDS.try_with(|b| b.set(fresh));
        fresh
    } else {
        cached
    };
    (bounds != (1, 1)).then_some(bounds)
}

/// Whether this build can unwind by DWARF call-frame information (not
/// asked under Miri, which always uses its stand-in unwinder).
#[cfg(any(not(miri), test))]
const DWARF_SUPPORTED: bool = cfg!(dwarf_unwinder);

/// Captures the current stack (return addresses, innermost first, at
/// most `depth` of them) into `storage` by `method`, with its
/// [`hash_stack`] when `HASH` (else the hash is 0: the free path needs
/// only the frames). A frame-pointer walk, and the DWARF unwinder, start
/// at the return address of the function `capture` is inlined into (the
/// tracker's, which must not be inlined itself, and has a frame record
/// when built with frame pointers); the `backtrace` unwinder's extra
/// frames are trimmed by name at report time.
///
/// Unless `may_allocate` (a signal handler's capture, whose thread may
/// hold the locks an allocation takes), the capture allocates nothing:
/// it gives up (no frames) when the thread's stack bounds are not known
/// yet (the C library allocates to find them), and the DWARF unwinder
/// does not scan for objects (see `dwarf::unwind`).
/// The `backtrace` unwinder allocates: not `method` then.
#[inline(always)]
pub(crate) fn capture<const HASH: bool>(
    method: Method,
    depth: usize,
    storage: &mut StackStorage,
    may_allocate: bool,
) -> Captured<'_> {
    if !may_allocate && !thread_bounds_asked() {
        return Captured {
            frames: &[],
            hash: if HASH { hash_stack(&[]) } else { 0 },
            off_stack: false,
        };
    }
    // SAFETY: `[usize; N]` and `[MaybeUninit<usize>; N]` have the same
    // layout, and the latter may hold uninitialised words.
    let all: &mut [MaybeUninit<usize>; MAX_DEPTH] = unsafe {
        &mut *storage
            .as_mut_ptr()
            .cast::<[MaybeUninit<usize>; MAX_DEPTH]>()
    };
    let out = &mut all[..depth.min(MAX_DEPTH)];
    let (len, hash, frame_pointers) = match method {
        Method::FramePointers => {
            let (len, hash) = walk_from::<HASH>(os::frame_pointer(), out);
            (len, hash, true)
        }
        Method::Dwarf => match top_of_current_stack(os::stack_pointer_estimate())
            .and_then(|top| dwarf_unwind(out, top, may_allocate))
        {
            Some(len) => (len, 0, false),
            // This thread cannot unwind now (see `dwarf::unwind`), or
            // runs on a stack the walks do not know (the walk below then
            // finds nothing either, and the capture counts as off-stack).
            None => {
                let (len, hash) = walk_from::<HASH>(os::frame_pointer(), out);
                (len, hash, true)
            }
        },
        Method::Unwind => (os::unwind(out), 0, false),
    };
    // Asked again only for an empty walk (rare), keeping the walk's own
    // code as small as before the check existed.
    let off_stack = frame_pointers && len == 0 && runs_off_known_stacks();
    // SAFETY: the walk and the unwinder initialise the first `len` words
    // of `out` and report how many.
    let frames = unsafe { core::slice::from_raw_parts(out.as_ptr().cast::<usize>(), len) };
    let hash = if frame_pointers || !HASH {
        hash
    } else {
        hash_stack(frames)
    };
    Captured {
        frames,
        hash,
        off_stack,
    }
}

/// The frame-pointer walk from this function's own frame record: its
/// first frame is the return into its caller.
#[inline(never)]
#[cfg_attr(miri, allow(dead_code))]
fn walk(out: &mut [MaybeUninit<usize>]) -> (usize, u64) {
    walk_from::<true>(os::frame_pointer(), out)
}

/// The frame-pointer walk from the frame record at `fp` (the frame
/// pointer of the function this is inlined into). Each record is `[saved
/// frame pointer, return address]`; it is read only if it lies in `[our
/// frame, top of the stack we run on)`, is aligned, and is above the
/// previous one (invariant 1 in the tracker's module docs).
/// Returns the number of frames written and, when `HASH`, their
/// [`hash_stack`] (else 0); none when the code runs on a stack it does
/// not know. The chain's end shows as a saved frame pointer that breaks
/// the invariant (the outermost frame saves 0), so the loop tests no
/// return address (but on Windows): its cost is per frame, on every
/// allocation.
#[inline(always)]
fn walk_from<const HASH: bool>(mut fp: usize, out: &mut [MaybeUninit<usize>]) -> (usize, u64) {
    const WORD: usize = core::mem::size_of::<usize>();
    let mut hash = HASH_SEED;
    let sp = os::stack_pointer_estimate();
    let Some(high) = top_of_current_stack(sp) else {
        return (0, hash_finish(hash, 0));
    };
    // The highest address a record may start at.
    let limit = high.saturating_sub(2 * WORD);
    // Records only go up from here (each next one must lie above `fp`).
    if fp < sp || fp > limit || fp % WORD != 0 {
        return (0, hash_finish(hash, 0));
    }
    // Invariant from here on: `fp` is aligned and lies in
    // `[our frame, limit]`: inside the stack this code runs on, between
    // its stack pointer and its top, i.e. mapped and readable.
    let mut n = 0;
    while n < out.len() {
        let record = fp as *const usize;
        // SAFETY: by the invariant, `record` and `record + 1` lie between
        // the current function's own frame (below the first `fp`, and
        // records only go up) and the top of the stack this code runs on,
        // which is mapped, readable memory for as long as this call runs;
        // the address is aligned. Volatile: the compiler must not assume
        // anything about memory it did not write.
        let (next, ret) = unsafe {
            (
                core::ptr::read_volatile(record),
                core::ptr::read_volatile(record.add(1)),
            )
        };
        // On Windows a thread's outermost record can hold a zero return
        // address above a valid saved frame pointer; elsewhere the chain
        // ends with a saved frame pointer of 0, which the bounds check
        // below catches, and this test would only cost every frame.
        if cfg!(windows) && ret == 0 {
            break;
        }
        out[n].write(ret);
        if HASH {
            hash = hash_step(hash, ret);
        }
        n += 1;
        // Keep the invariant: aligned, in `(fp, limit]`.
        if next <= fp || next > limit || next % WORD != 0 {
            break;
        }
        fp = next;
    }
    (n, if HASH { hash_finish(hash, n) } else { 0 })
}

/// [`dwarf::unwind`](super::dwarf::unwind) where it exists.
#[inline(always)]
fn dwarf_unwind(out: &mut [MaybeUninit<usize>], top: usize, may_allocate: bool) -> Option<usize> {
    #[cfg(dwarf_unwinder)]
    return super::dwarf::unwind(out, top, may_allocate);
    #[cfg(not(dwarf_unwinder))]
    {
        let _ = (out, top, may_allocate);
        None
    }
}

/// Whether the calling code runs on a stack the walk does not know.
#[cold]
#[inline(never)]
fn runs_off_known_stacks() -> bool {
    top_of_current_stack(os::stack_pointer_estimate()).is_none()
}

/// The top (exclusive) of the stack the stack pointer `sp` lies in: the
/// thread's stack or the signal alternate stack; `None` for any other.
#[inline(always)]
pub(crate) fn top_of_current_stack(sp: usize) -> Option<usize> {
    match thread_bounds() {
        Some((low, high)) if low <= sp && sp < high => Some(high),
        _ => top_of_other_stack(sp),
    }
}

/// [`top_of_current_stack`] off the thread's stack (rare: a handler on
/// the alternate signal stack, a coroutine): one system call.
#[cold]
#[inline(never)]
fn top_of_other_stack(sp: usize) -> Option<usize> {
    os::alt_stack_bounds()
        .filter(|&(low, high)| low <= sp && sp < high)
        .map(|(_, high)| high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_rules() {
        // Calibration function at 0x5000: walk returns to 0x5010, the
        // unwinder to 0x5020.
        let h = 0x5000;
        assert!(agree(h, &[0x5010, 6, 7, 8], &[1, 2, 0x5020, 6, 7, 8, 9]));
        assert!(agree(h, &[0x5010, 6], &[1, 0x5020, 6]));
        // A skipped frame (7 missing) or a wrong one.
        assert!(!agree(h, &[0x5010, 6, 8, 9], &[1, 0x5020, 6, 7, 8, 9]));
        assert!(!agree(h, &[0x5010, 9, 7], &[1, 0x5020, 6, 7]));
        assert!(!agree(h, &[], &[1, 2]));
        // The walk skipped the calibration function itself.
        assert!(!agree(h, &[6, 7, 8], &[0x5020, 6, 7, 8]));
        assert!(!agree(h, &[0x9000, 6, 7], &[0x5020, 6, 7]));
        // A walk that stops too early.
        assert!(!agree(h, &[0x5010], &[0x5020, 6, 7, 8]));
    }

    #[test]
    fn a_configured_mode_replaces_one_resolved_earlier() {
        // The global tracker's configuration may arrive after another
        // thread's allocation resolved the default mode: it still wins.
        let cell = ActiveCell::new();
        assert_eq!(
            cell.get_or_resolve(StackMode::Unwind).describe().0,
            StackMode::Unwind
        );
        let wanted = Active::FramePointers(WHY_FORCED_FP);
        cell.set(wanted);
        assert_eq!(cell.get_or_resolve(StackMode::Unwind), wanted);
        assert_eq!(cell.method(StackMode::Unwind), Method::FramePointers);
        cell.set(Active::Unwind(WHY_BROKEN));
        assert_eq!(cell.method(StackMode::FramePointers), Method::Unwind);
    }

    #[test]
    fn every_resolved_mode_has_its_method() {
        // The hot path reads the method from the stored index alone.
        for active in ACTIVE_VALUES {
            let cell = ActiveCell::new();
            cell.set(active);
            assert_eq!(cell.method(StackMode::Auto), active.method(), "{active:?}");
        }
    }

    /// The frames [`walk_from`] finds from `fp`, at most `depth`.
    #[inline(never)]
    fn walked(fp: usize, depth: usize) -> Vec<usize> {
        let mut storage = StackStorage::uninit();
        // SAFETY: as in `capture`: the same layout, uninitialised words allowed.
        let all = unsafe {
            &mut *storage
                .as_mut_ptr()
                .cast::<[MaybeUninit<usize>; MAX_DEPTH]>()
        };
        let (n, hash) = walk_from::<true>(fp, &mut all[..depth]);
        // SAFETY: the walk initialised the first `n` words.
        let frames = unsafe { core::slice::from_raw_parts(all.as_ptr().cast::<usize>(), n) };
        assert_eq!(hash, hash_stack(frames));
        frames.to_vec()
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn the_walk_reads_no_record_that_breaks_the_chain() {
        if !fp_supported() {
            return;
        }
        const WORD: usize = core::mem::size_of::<usize>();
        // Frame records in this test's own frame: on the thread's stack,
        // above the walk's.
        let mut fake = [0usize; 16];
        let at = |fake: &[usize; 16], i: usize| fake.as_ptr() as usize + i * WORD;
        // chain(links): records at slots 0, 4 and 8 returning to 0x100,
        // 0x104, 0x108, linked as `links` says; the last saves 0.
        let chain = |fake: &mut [usize; 16], links: [usize; 2]| {
            *fake = [0; 16];
            for (i, slot) in [0, 4, 8].into_iter().enumerate() {
                fake[slot + 1] = 0x100 + 4 * i;
            }
            fake[0] = links[0];
            fake[4] = links[1];
            core::hint::black_box(&mut *fake);
            at(fake, 0)
        };
        let (r4, r8) = (at(&fake, 4), at(&fake, 8));
        // Intact, ending at a saved frame pointer of 0.
        let fp = chain(&mut fake, [r4, r8]);
        assert_eq!(walked(fp, MAX_DEPTH), [0x100, 0x104, 0x108]);
        // At most `depth` frames.
        assert_eq!(walked(fp, 2), [0x100, 0x104]);
        assert!(walked(fp, 0).is_empty());
        // A link down, to itself, misaligned, or out of the stack: the
        // record it names is not read.
        let top = thread_bounds().unwrap().1;
        for bad in [
            at(&fake, 2),
            r4,
            r8 + 1,
            top,
            top - WORD,
            usize::MAX & !(WORD - 1),
        ] {
            let fp = chain(&mut fake, [r4, bad]);
            assert_eq!(walked(fp, MAX_DEPTH), [0x100, 0x104], "link to {bad:#x}");
        }
        // A start below the walk's own frame, misaligned, or off the stack:
        // nothing is read.
        let fp = chain(&mut fake, [r4, r8]);
        let below = os::stack_pointer_estimate() - 16 * 1024;
        for start in [below, fp + 1, top, 8] {
            assert!(walked(start, MAX_DEPTH).is_empty(), "start at {start:#x}");
        }
    }

    #[test]
    fn dwarf_is_used_where_supported_and_said_otherwise() {
        let (mode, why) = resolve(StackMode::Dwarf).describe();
        if DWARF_SUPPORTED {
            assert_eq!(mode, StackMode::Dwarf);
            assert!(why.starts_with("DWARF"), "{why}");
        } else if cfg!(miri) {
            assert_eq!((mode, why), (StackMode::Unwind, WHY_MIRI));
        } else {
            assert_eq!((mode, why), (StackMode::Unwind, WHY_NO_DWARF));
        }
    }

    #[test]
    fn forced_unwind_is_reported() {
        let (mode, why) = resolve(StackMode::Unwind).describe();
        assert_eq!(mode, StackMode::Unwind);
        assert!(why.starts_with("unwinder"));
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn frame_pointer_walk_finds_callers() {
        // std and this test binary keep frame pointers on x86-64 Linux
        // when built with -C force-frame-pointers=yes; otherwise the walk
        // may be short, but never crashes and never returns zeroes.
        let (mut a, mut b) = (StackStorage::uninit(), StackStorage::uninit());
        let walked = capture::<true>(Method::FramePointers, MAX_DEPTH, &mut a, true);
        assert!(walked.frames.iter().all(|&ip| ip != 0));
        assert_eq!(walked.hash, hash_stack(walked.frames));
        let mut c = StackStorage::uninit();
        let unhashed = capture::<false>(Method::FramePointers, MAX_DEPTH, &mut c, true);
        assert_eq!(unhashed.hash, 0);
        if matches!(resolve(StackMode::Auto), Active::FramePointers(_)) {
            // An intact chain: the same callers, without the hash.
            assert_eq!(unhashed.frames.len(), walked.frames.len());
        }
        let unwound = capture::<true>(Method::Unwind, 5, &mut b, true);
        assert_eq!(
            unwound.frames.len(),
            5,
            "the unwinder sees this test's callers"
        );
        assert_eq!(unwound.hash, hash_stack(unwound.frames));
        if matches!(resolve(StackMode::Auto), Active::FramePointers(_)) {
            assert!(
                walked.frames.len() >= 3,
                "calibrated frame pointers give real stacks"
            );
        }
    }
}
