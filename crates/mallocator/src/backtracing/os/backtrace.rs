//! What the tracker asks of the `backtrace` crate: a general unwinder,
//! symbols for a report, and where `exit` was called from.

use core::mem::MaybeUninit;

use super::super::report::Frame;
use super::super::sync::SpinLock;
#[cfg(all(unix, not(miri)))]
use super::with_code_site;

#[cfg(test)]
std::thread_local! {
    /// Calls of this thread to [`unwind`], for the tests.
    pub(crate) static UNWINDS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// The unwinder: instruction pointers of the current stack, innermost
/// first, into `out`; returns how many.
///
/// On Unix it takes no lock: the `backtrace` crate's global lock, which
/// `backtrace::trace` holds, serialised every allocating thread, and a
/// thread holding it at a `fork` left it taken in the child forever. The
/// unwinder underneath (`_Unwind_Backtrace`) is thread-safe there; the
/// lock exists for Windows' `dbghelp`, which is not, so Windows keeps it.
#[cfg(not(miri))]
#[inline(never)]
pub(crate) fn unwind(out: &mut [MaybeUninit<usize>]) -> usize {
    #[cfg(test)]
    UNWINDS.with(|c| c.set(c.get() + 1));
    let mut n = 0;
    let mut each = |frame: &backtrace::Frame| {
        if n == out.len() {
            return false;
        }
        out[n].write(frame.ip() as usize);
        n += 1;
        true
    };
    #[cfg(unix)]
    // SAFETY: `trace_unsynchronized` requires that no other unwinding
    // runs concurrently only where the platform unwinder is not
    // thread-safe; on Unix it is `_Unwind_Backtrace`, which is.
    unsafe {
        backtrace::trace_unsynchronized(&mut each)
    };
    #[cfg(not(unix))]
    backtrace::trace(&mut each);
    n
}

#[cfg(miri)]
std::thread_local! {
    static STAND_IN_SITE: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// Sets the synthetic call site the Miri stand-in reports for this
/// thread's next captures (tests use it to make distinct stacks).
#[cfg(all(miri, test))]
pub(crate) fn set_stand_in_site(site: usize) {
    STAND_IN_SITE.with(|s| s.set(site));
}

/// Miri stand-in for the unwinder: a short synthetic stack
/// `[0x1000 + 16 * site, 0x2000, 0x3000]` where `site` is set by
/// [`set_stand_in_site`].
#[cfg(miri)]
pub(crate) fn unwind(out: &mut [MaybeUninit<usize>]) -> usize {
    let site = STAND_IN_SITE.try_with(|s| s.get()).unwrap_or(0);
    let fake = [0x1000 + 16 * site, 0x2000, 0x3000];
    let n = fake.len().min(out.len());
    for (slot, ip) in out.iter_mut().zip(fake) {
        slot.write(ip);
    }
    n
}

/// Function, file and line of the code at return address `ip`; one
/// [`Frame`] per (inlined) function, innermost first.
///
/// Runs under [`SYMBOLIZING`], so that `fork` (whose handlers take that
/// lock) never happens while a tracker thread is inside the `backtrace`
/// crate's resolver and its global lock; and with thread cancellation
/// held off: the resolver opens and reads the objects' files
/// (cancellation points, see `cancel.rs`), for a report that a thread
/// with a cancellation pending may ask for.
#[cfg(not(miri))]
pub(crate) fn symbolize(ip: usize, out: &mut Vec<Frame>) {
    let _no_cancel = super::cancel::NoCancel::now();
    let _symbolizing = SYMBOLIZING.lock();
    let before = out.len();
    // A return address points after the call, and the call's own line is
    // the one wanted: `backtrace::resolve` takes every address as a
    // return address and looks up the byte before it itself.
    backtrace::resolve(ip as *mut core::ffi::c_void, |sym| {
        out.push(Frame {
            ip,
            function: sym
                .name()
                .map(|n| crate::backtracing::public_symbol_name(&format!("{n:#}")).to_owned()),
            file: sym.filename().map(|f| f.display().to_string()),
            line: sym.lineno(),
        });
    });
    if out.len() == before {
        out.push(Frame {
            ip,
            function: None,
            file: None,
            line: None,
        });
    }
}

/// Held while the tracker symbolizes (see [`symbolize`]).
pub(crate) static SYMBOLIZING: SpinLock<()> = SpinLock::new(());

/// Miri stand-in: the synthetic frames name their site.
#[cfg(miri)]
pub(crate) fn symbolize(ip: usize, out: &mut Vec<Frame>) {
    out.push(Frame {
        ip,
        function: Some(format!("stand_in_{ip:#x}")),
        file: None,
        line: None,
    });
}

/// In an exit hook: the stack pointer of the code that called the C
/// library's `exit` or `quick_exit` (the canonical frame address of that
/// function's own frame), found by unwinding; `None` when neither is on
/// the stack. A leak
/// scan starts there: the exit machinery's frames below it hold no
/// pointers of the program's, but stale copies of ones it no longer has
/// (its frames reuse the stack where the program's returned functions
/// were).
#[cfg(all(unix, not(miri)))]
pub(crate) fn stack_of_exit_caller() -> Option<usize> {
    let mut found = None;
    let mut first = true;
    let mut each = |frame: &backtrace::Frame| {
        // Return addresses may point just past a call at a function's
        // end: look up the byte before (not for the innermost frame).
        let ip = (frame.ip() as usize).wrapping_sub(usize::from(!first));
        first = false;
        let in_exit = with_code_site(ip, |site| {
            matches!(site.and_then(|s| s.symbol), Some(b"exit" | b"quick_exit"))
        });
        if in_exit {
            found = Some(frame.sp() as usize).filter(|&sp| sp != 0);
        }
        !in_exit
    };
    // SAFETY: as in `unwind`.
    unsafe { backtrace::trace_unsynchronized(&mut each) };
    found
}

/// Not known here: the scan starts at the exit hook's own frame.
#[cfg(any(not(unix), miri))]
pub(crate) fn stack_of_exit_caller() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    /// A return address names the call before it, so `symbolize` looks
    /// up the byte before `ip`, once: one byte past a function's first
    /// instruction is that function. (Two bytes before it would be
    /// whatever precedes the function.)
    #[test]
    #[cfg(all(unix, not(miri)))]
    fn a_return_address_is_looked_up_one_byte_before_it() {
        #[inline(never)]
        extern "C" fn first_byte_marker() -> u32 {
            core::hint::black_box(7)
        }
        let mut frames = Vec::new();
        super::symbolize(first_byte_marker as *const () as usize + 1, &mut frames);
        assert!(
            frames.iter().any(|f| f
                .function
                .as_deref()
                .is_some_and(|n| n.contains("first_byte_marker"))),
            "{frames:?}"
        );
    }

    /// A thread with a cancellation pending symbolizes an address (the
    /// resolver opens this binary's file to read its symbols) and goes
    /// on: the cancellation waits for the program's next cancellation
    /// point. In a fresh run of this test binary, which has symbolized
    /// nothing yet (the resolver caches what it opened).
    #[test]
    #[cfg(all(target_os = "linux", not(miri)))]
    fn symbolizing_with_a_cancellation_pending_goes_on() {
        const CHILD: &str = "MALLOCATOR_TEST_SYMBOLIZE_CANCELLED";
        const WENT_ON: i32 = 42;
        if std::env::var_os(CHILD).is_some() {
            let mut frames = Vec::new();
            let here = symbolizing_with_a_cancellation_pending_goes_on as *const () as usize;
            crate::test_util::cancel_this_thread();
            // An address inside this function, taken as a return address.
            super::symbolize(here + 16, &mut frames);
            let named = frames.iter().any(|f| {
                f.function
                    .as_deref()
                    .is_some_and(|n| n.contains("symbolizing_with_a_cancellation_pending"))
            });
            // SAFETY: ends the process without the harness's exit.
            unsafe { libc::_exit(if named { WENT_ON } else { 1 }) };
        }
        let name =
            "backtracing::os::backtrace::tests::symbolizing_with_a_cancellation_pending_goes_on";
        let status = crate::test_util::run_alone(name, CHILD, &[]).status;
        assert_eq!(
            status.code(),
            Some(WENT_ON),
            "{status:?} (1: the address got no name)"
        );
    }
}
