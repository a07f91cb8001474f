//! Fork safety, the way glibc's malloc does it: `pthread_atfork`
//! handlers take every tracker lock before `fork`, and release them in
//! the parent and in the child afterwards.
//!
//! Without them, a thread that held a shard lock when another thread
//! called `fork` does not exist in the child, its lock stays taken
//! forever, and the child hangs at its first allocation that needs it.
//! With them, the forking thread holds every lock at the moment of the
//! fork, so the child's copy of each table is consistent and each lock
//! free once the child handler has run.
//!
//! The handlers find the locks through [`REGISTRY`]: the process-wide
//! locks (`GLOBAL_LOCKS`) and every live tracker's [`State`].
//!
//! Some tracker locks are taken while another is held (a log callback
//! may allocate through a tracker, taking its locks under the log lock),
//! so taking them all in a fixed order could deadlock with such a thread.
//! [`acquire_all`] therefore only ever *tries* each lock for a while; if
//! one stays busy it releases everything it took, yields, and starts
//! over. No tracker lock is held for long or while waiting on anything
//! the handler holds, so this ends.

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};

use super::os;
use super::state::State;
use super::sync::{RawLock, SpinLock};
use super::sys_vec::{sys_vec, SysVec};
use super::thread::Busy;

/// What the registry lock guards.
struct Registry {
    /// Every registered tracker state (as addresses; see `state.rs` for
    /// why they stay put while registered).
    states: SysVec<usize>,
    /// The forking thread's signal mask from before [`prepare`], which
    /// blocks every signal until the handlers after `fork` have released
    /// the locks: a signal handler that allocated while this thread held
    /// them would wait forever for a lock of its own thread. The fork
    /// system call can take milliseconds, and a signal that comes
    /// meanwhile is handled as it returns, before those handlers run.
    mask_before_fork: Option<os::SignalMask>,
    /// The forking thread's reentrancy mark from before [`prepare`], which
    /// marks it as forking (`thread.rs`, `FORKING`) until the handlers
    /// after `fork` have released the locks: the fork handlers of
    /// libraries that registered theirs before the tracker's run in
    /// between, on this thread, and may allocate.
    busy_before_fork: Option<u64>,
}

/// The registered tracker states; held across `fork` (see the module
/// docs).
static REGISTRY: SpinLock<Registry> = SpinLock::new(Registry {
    states: sys_vec(),
    mask_before_fork: None,
    busy_before_fork: None,
});

std::thread_local! {
    /// Whether this thread holds [`REGISTRY`] (or is taking it): from
    /// [`with_registry`], and across `fork` from [`prepare`] to
    /// [`release_locks`]. A call on this thread that needs the registry
    /// meanwhile, from a signal handler that interrupted it there or
    /// from another library's fork handler, would wait for it forever:
    /// it is refused instead. No destructor, so always readable.
    static REGISTRY_HELD: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on the registry, locked; `None` (nothing done) when this
/// thread holds it already (see [`REGISTRY_HELD`]).
fn with_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> Option<R> {
    if REGISTRY_HELD.with(|held| held.replace(true)) {
        return None;
    }
    let result = {
        let _marked = Busy::shared_lock();
        f(&mut REGISTRY.lock())
    };
    REGISTRY_HELD.with(|held| held.set(false));
    Some(result)
}

/// Who installs the handlers: [`NOBODY`] yet, [`INSTALLED`] (done, in
/// this process or in the parent it was forked from), or else the id of
/// the process one of whose threads is installing them now.
///
/// A plain "installing" flag would not do: a process forked while
/// another of its threads was inside `pthread_atfork` inherits the flag
/// set by a thread it does not have, and would wait for it forever. The
/// process id tells the child that nobody installs for it. The child then
/// installs them itself, unless the fork ran them (then `pthread_atfork`
/// had finished before the fork, and [`in_child`] marks them installed).
static INSTALLER: AtomicU32 = AtomicU32::new(NOBODY);
const NOBODY: u32 = 0;
const INSTALLED: u32 = u32::MAX;

/// Installs the handlers when the library is loaded (by the dynamic
/// loader, or at the program's start), while a process has, as a rule,
/// one thread. Installed later, at the first tracker's creation, they can
/// race a `fork` in another thread: glibc runs in the child only the
/// handlers that ran before the fork, so a fork whose `prepare` handlers
/// had run just before ours was added copied into its child the locks a
/// thread took after them, and the child hung at its first allocation.
/// [`register`] still installs them where this did not run (a target
/// without a constructor section, or a linker that left this out).
/// Constructors are `.init_array` in ELF, `__mod_init_func` in Mach-O.
#[cfg(all(
    any(target_os = "linux", target_os = "freebsd", target_vendor = "apple"),
    not(miri)
))]
#[used]
#[cfg_attr(not(target_vendor = "apple"), link_section = ".init_array")]
#[cfg_attr(target_vendor = "apple", link_section = "__DATA,__mod_init_func")]
static INSTALL_AT_LOAD: extern "C" fn() = {
    extern "C" fn install_at_load() {
        install_handlers();
    }
    install_at_load
};

/// Returns once the handlers are installed, installing them if no thread
/// of this process is doing it already. Every tracker state is
/// registered after this, so no fork copies a tracker lock without the
/// handlers taking it first.
fn install_handlers() {
    loop {
        let installer = INSTALLER.load(Ordering::Acquire);
        if installer == INSTALLED {
            return;
        }
        let me = std::process::id();
        if installer == me {
            std::thread::yield_now();
            continue;
        }
        // Nobody, or a thread of the parent this process was forked from.
        if INSTALLER
            .compare_exchange(installer, me, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            os::at_fork(prepare, release_all, in_child);
            INSTALLER.store(INSTALLED, Ordering::Release);
            return;
        }
    }
}

/// Adds a state; installs the handlers at the first call. False when out
/// of memory, or when this thread holds the registry (see
/// [`REGISTRY_HELD`]): the state must then not be used (a fork could copy
/// its locks taken).
pub(crate) fn register(state: *mut State) -> bool {
    install_handlers();
    with_registry(|registry| {
        if registry.states.try_reserve(1).is_err() {
            return false;
        }
        registry.states.push(state as usize);
        true
    })
    .unwrap_or(false)
}

/// Removes a state, which may then be freed. False when this thread
/// holds the registry (see [`REGISTRY_HELD`]): the state stays listed,
/// and must never be freed.
#[must_use]
pub(crate) fn unregister(state: *mut State) -> bool {
    with_registry(|registry| {
        let states = &mut registry.states;
        if let Some(i) = states.iter().position(|&s| s == state as usize) {
            states.swap_remove(i);
        }
    })
    .is_some()
}

/// Calls `f` on every tracker lock, in order; stops at the first `false`.
/// The caller holds [`REGISTRY`], so no state is freed meanwhile.
fn each_lock(states: &[usize], f: &mut dyn FnMut(&dyn RawLock) -> bool) -> bool {
    super::global_locks(f)
        && states.iter().all(|&s| {
            // SAFETY: a registered state is live until it is unregistered,
            // which needs the registry lock the caller holds.
            let state = unsafe { &*(s as *const State) };
            state.each_lock(f)
        })
}

/// How many times to try a busy lock before starting over.
const TRIES: u32 = 2000;

/// Takes the registry lock and every tracker lock (see the module docs).
fn acquire_all() {
    loop {
        let guard = REGISTRY.lock();
        let states: &[usize] = &guard.states;
        let mut taken = 0usize;
        let all = each_lock(states, &mut |l| {
            for i in 0..TRIES {
                if l.try_acquire() {
                    taken += 1;
                    return true;
                }
                if i < 64 {
                    core::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            false
        });
        if all {
            // Held across fork; `release_all` releases it.
            core::mem::forget(guard);
            return;
        }
        let mut left = taken;
        each_lock(states, &mut |l| {
            if left == 0 {
                return false;
            }
            left -= 1;
            // SAFETY: one of the first `taken` locks, which this loop took.
            unsafe { l.release() };
            true
        });
        drop(guard);
        std::thread::yield_now();
    }
}

/// The `prepare` handler: runs in the forking thread before `fork`.
/// Signals are blocked first, before any lock is taken
/// ([`Registry::mask_before_fork`]).
extern "C" fn prepare() {
    let mask = os::block_signals();
    let busy = Busy::begin_fork();
    REGISTRY_HELD.with(|held| held.set(true));
    acquire_all();
    #[cfg(dwarf_unwinder)]
    super::dwarf::held_across_fork(true);
    // SAFETY: `acquire_all` left the registry lock held by this thread.
    unsafe {
        let registry = &mut *REGISTRY.data_ptr();
        registry.mask_before_fork = Some(mask);
        registry.busy_before_fork = busy;
    }
}

/// The `parent` handler: releases what [`prepare`] took, records what
/// other libraries' fork handlers did meanwhile, then lets signals in
/// again.
extern "C" fn release_all() {
    let mask = release_locks();
    super::global::record_left_at_fork();
    if let Some(mask) = mask {
        os::restore_signals(&mask);
    }
}

/// Releases the locks [`prepare`] took; returns the signal mask it
/// replaced. In the child this is the reinitialisation: the forking
/// thread is its only thread, and every table is as the parent had it at
/// the fork.
fn release_locks() -> Option<os::SignalMask> {
    // SAFETY: `prepare` left the registry lock and every lock below held
    // by this thread (in the child, by the thread this one continues).
    let (mask, busy) = unsafe {
        let registry = &mut *REGISTRY.data_ptr();
        let mask = registry.mask_before_fork.take();
        let busy = registry.busy_before_fork.take();
        each_lock(&registry.states, &mut |l| {
            l.release();
            true
        });
        REGISTRY.release();
        (mask, busy)
    };
    REGISTRY_HELD.with(|held| held.set(false));
    #[cfg(dwarf_unwinder)]
    super::dwarf::held_across_fork(false);
    Busy::end_fork(busy);
    mask
}

/// The `child` handler: [`release_locks`], then what only the child
/// does: a configuration of the process-wide tracker under way in
/// another thread is over (`global.rs`); its compact logs stop (the
/// parent writes those files), but for the process-wide tracker's when
/// its path names the process (it starts over in a file of the child's
/// own); and the other threads' event buffers are forgotten (see
/// `log/threads.rs`); then what other libraries' fork handlers did
/// meanwhile is recorded. Signals wait until all of that is done, since
/// it takes tracker locks too.
extern "C" fn in_child() {
    INSTALLER.store(INSTALLED, Ordering::Release);
    super::global::configuration_after_fork_in_child();
    let mask = release_locks();
    super::log::after_fork_in_child();
    for_each_state(&mut |st| st.log.stop_in_child());
    super::global::log_again_in_child();
    super::global::record_left_at_fork();
    if let Some(mask) = mask {
        os::restore_signals(&mask);
    }
}

/// Calls `f` on every live tracker state; on none when this thread
/// holds the registry (see [`REGISTRY_HELD`]).
pub(crate) fn for_each_state(f: &mut dyn FnMut(&State)) {
    with_registry(|registry| {
        for &s in registry.states.iter() {
            // SAFETY: a registered state is live until it is
            // unregistered, which needs the registry lock held here.
            f(unsafe { &*(s as *const State) });
        }
    });
}

/// The handlers as `fork` runs them, for tests elsewhere.
#[cfg(test)]
pub(crate) mod tests_support {
    /// `prepare` then the `parent` handler.
    pub(crate) fn prepare_and_release() {
        in_fork_window(|| {});
    }

    /// Runs `f` between `prepare` and the `parent` handler, as another
    /// library's fork handler runs.
    pub(crate) fn in_fork_window<R>(f: impl FnOnce() -> R) -> R {
        super::prepare();
        let result = f();
        super::release_all();
        result
    }

    /// Runs `f` in a child process (forked from this one, whose other
    /// threads it does not have) with a watchdog (60 s natively, see
    /// `test_util::in_child_status`); whether it returned true. (The
    /// out-of-memory test's child takes 5 to 8 s alone on a loaded 2-core
    /// machine, and passed 10 s beside the other tests there.) For a
    /// scenario that would hang, or that ends every log of the process.
    /// The trackers' locks are free in the child (their fork handlers
    /// ran).
    #[cfg(all(unix, not(miri)))]
    pub(crate) fn in_child(f: impl FnOnce() -> bool) -> bool {
        let status = crate::test_util::in_child_status(|| if f() { 0 } else { 1 });
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtracing::Backtracing;
    use crate::Valloc;

    /// In a process that has made no tracker, the handlers are installed
    /// already (`INSTALL_AT_LOAD`): checked in a child process that runs
    /// this test alone.
    #[test]
    #[cfg(all(
        any(target_os = "linux", target_os = "freebsd", target_vendor = "apple"),
        not(miri)
    ))]
    fn handlers_are_installed_when_the_library_loads() {
        const CHILD: &str = "MALLOCATOR_TEST_INSTALLED_AT_LOAD";
        if std::env::var_os(CHILD).is_some() {
            assert_eq!(INSTALLER.load(Ordering::Acquire), INSTALLED);
            return;
        }
        let name = "backtracing::fork::tests::handlers_are_installed_when_the_library_loads";
        let out = crate::test_util::run_alone(name, CHILD, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{out:?}"
        );
    }

    /// The fork handlers of libraries that registered theirs before the
    /// tracker's run while the forking thread holds every tracker lock:
    /// what they allocate and free then is kept for the thread's next
    /// call, not waited for (a child process runs it: a regression hangs
    /// until its watchdog).
    #[test]
    #[cfg(all(unix, not(miri)))]
    fn fork_handlers_that_run_inside_the_trackers_may_allocate() {
        let t = Backtracing::new(Valloc::libc());
        let v = t.valloc();
        // SAFETY: freeing what `v` returned.
        unsafe { v.free(v.malloc(8, 8)) };
        assert!(tests_support::in_child(|| {
            prepare();
            // Another library's `prepare`, then its `child` handler.
            let theirs = v.malloc(8, 100);
            // SAFETY: freeing what `v` returned.
            unsafe { v.free(v.malloc(8, 50)) };
            in_child();
            // Recorded at this thread's next call.
            // SAFETY: as above.
            unsafe { v.free(v.malloc(8, 8)) };
            let kept = !theirs.is_null() && t.live_blocks() == 1 && t.live_bytes() == 100;
            // SAFETY: `theirs` came from `v`.
            unsafe { v.free(theirs) };
            kept && t.live_blocks() == 0
        }));
    }

    /// A tracker's first call, made by another library's fork handler
    /// while the tracker's handlers hold the registry across `fork`, or
    /// by a signal handler that interrupted its thread in the registry,
    /// fails at once rather than wait for the registry forever (a child
    /// process runs it: a regression hangs until its watchdog); the
    /// tracker works once the registry is free.
    #[test]
    #[cfg(all(unix, not(miri)))]
    fn a_first_call_made_while_its_thread_holds_the_registry_fails() {
        assert!(tests_support::in_child(|| {
            let t = Backtracing::new(Valloc::libc());
            let v = t.valloc();
            prepare();
            let in_fork_window = v.malloc(8, 8);
            in_child();
            let in_registry = with_registry(|_| v.malloc(8, 8)).unwrap();
            let after = v.malloc(8, 8);
            // SAFETY: freeing what `v` returned.
            unsafe { v.free(after) };
            in_fork_window.is_null()
                && in_registry.is_null()
                && !after.is_null()
                && t.live_blocks() == 0
        }));
    }

    /// `dlclose` called by another library's fork handler, while the
    /// tracker's handlers hold its log's lock across `fork`: the tracker
    /// is not told (it would wait for that lock forever; a child process
    /// runs it: a regression hangs until its watchdog), and is told once
    /// the locks are free.
    #[test]
    #[cfg(all(unix, not(miri)))]
    fn an_unload_in_the_fork_window_does_not_wait_for_the_log() {
        fn discard(_: &[u8]) {}
        assert!(tests_support::in_child(|| {
            let t = crate::backtracing::tests::logging_to(discard);
            let v = t.valloc();
            // SAFETY: freeing what `v` returned.
            unsafe { v.free(v.malloc(8, 8)) };
            t.flush_log();
            tests_support::in_fork_window(|| t.objects_unloaded());
            t.objects_unloaded();
            true
        }));
    }

    /// The handlers as `fork` would run them, without forking (Miri can
    /// run this): every lock of a live tracker is held in between, and
    /// free after.
    #[test]
    fn handlers_take_and_release_every_lock() {
        let t = Backtracing::new(Valloc::libc());
        let v = t.valloc();
        // SAFETY: freeing what `v` returned.
        unsafe { v.free(v.malloc(8, 8)) };
        let state = t.state().unwrap();
        prepare();
        let mut held = 0;
        let mut all = 0;
        state.each_lock(&mut |l| {
            all += 1;
            if !l.try_acquire() {
                held += 1;
            }
            true
        });
        assert_eq!(held, all, "every lock held between prepare and fork");
        release_all();
        // SAFETY: freeing what `v` returned; every lock is free again.
        unsafe { v.free(v.malloc(8, 8)) };
        // Under the registry lock: another test's `fork` takes every
        // registered tracker's locks (this one's too) after that lock.
        with_registry(|_| {
            state.each_lock(&mut |l| {
                assert!(l.try_acquire(), "every lock free after the handlers");
                // SAFETY: just taken.
                unsafe { l.release() };
                true
            })
        })
        .unwrap();
    }
    /// Ending the logs from a thread that holds the registry lock (as a
    /// fatal signal's handler would, interrupting a tracker's creation,
    /// drop, or the exit's own flush) answers false at once instead of
    /// waiting forever for that lock. In a child process with a watchdog,
    /// since it ends every log of the process.
    #[test]
    #[cfg(all(unix, not(miri)))]
    fn ending_the_logs_while_holding_the_registry_does_not_wait() {
        let t = Backtracing::new(Valloc::libc());
        let v = t.valloc();
        // SAFETY: freeing what `v` returned; the tracker is registered.
        unsafe { v.free(v.malloc(8, 8)) };
        assert!(tests_support::in_child(|| {
            let mut answers = Vec::new();
            for_each_state(&mut |_| answers.push(Backtracing::end_logs_now()));
            !answers.is_empty() && answers.iter().all(|a| !a)
        }));
    }

    /// A signal that comes while the handlers hold the locks (as one
    /// that comes during the fork system call) is handled only once they
    /// have released them: its handler allocates through a tracker, which
    /// would otherwise wait forever for a lock its own thread holds. Run
    /// in a child process with a watchdog, so that a hang fails the test
    /// instead of stopping the run.
    #[test]
    #[cfg(all(unix, not(miri)))]
    fn a_signal_between_the_handlers_waits_for_the_locks() {
        use core::sync::atomic::AtomicBool;

        static TRACKER: Backtracing<'static> = Backtracing::new(Valloc::libc());
        static HANDLED: AtomicBool = AtomicBool::new(false);
        extern "C" fn on_signal(_: libc::c_int) {
            let v = TRACKER.valloc();
            // SAFETY: freeing what `v` returned.
            unsafe { v.free(v.malloc(8, 24)) };
            HANDLED.store(true, Ordering::SeqCst);
        }

        let v = TRACKER.valloc();
        // SAFETY: freeing what `v` returned; the tracker is registered.
        unsafe { v.free(v.malloc(8, 8)) };
        assert!(tests_support::in_child(|| {
            // SAFETY: a handler for SIGUSR2, raised below at a known
            // point, where its allocation through the C library cannot
            // interrupt the C library's allocator.
            unsafe { libc::signal(libc::SIGUSR2, on_signal as *const () as libc::sighandler_t) };
            prepare();
            // SAFETY: raising a signal on this thread.
            unsafe { libc::raise(libc::SIGUSR2) };
            let early = HANDLED.load(Ordering::SeqCst);
            release_all();
            !early && HANDLED.load(Ordering::SeqCst)
        }));
    }
}
