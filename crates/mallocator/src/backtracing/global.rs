//! Global mode: the tracker as the program's `#[global_allocator]`.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::os::{self, Sink};
use super::own_heap::own_heap;
use super::report::Reach;
use super::settings::{self, ExitDest, LogSetting};
use super::stacks::INTERNAL;
use super::sync::{RawLock, SpinLock};
use super::thread::{self, Busy};
use super::{log, stack, Backtracing, Block, Config, LogFormat, LogTarget, Suppressions};

/// The one process-wide tracker behind every [`GlobalBacktracing`].
static TRACKER: Backtracing<'static> = Backtracing::new(own_heap());

/// Where [`TRACKER`]'s configuration stands ([`configure_once`]).
static CONFIG_STATE: AtomicU8 = AtomicU8::new(UNCONFIGURED);
const UNCONFIGURED: u8 = 0;
const CONFIGURING: u8 = 1;
const CONFIGURED: u8 = 2;

/// Where the exit report goes: `(path or None for stderr, json)`.
static EXIT_DEST: SpinLock<Option<ExitDest>> = SpinLock::new(None);

/// The suppressions of `MALLOCATOR_SUPPRESSIONS`, for every report of the
/// process (besides the built-in ones).
static USER_SUPPRESSIONS: SpinLock<Option<Suppressions>> = SpinLock::new(None);

/// The suppressions every report applies: the built-in list and the
/// file `MALLOCATOR_SUPPRESSIONS` names.
pub(crate) fn suppressions() -> Suppressions {
    let mut all = Suppressions::builtin();
    if let Some(user) = USER_SUPPRESSIONS.lock().clone() {
        all.extend(user);
    }
    all
}

/// `MALLOCATOR_LOG` when it names the process (`%p`): a child made by
/// `fork` starts a log of its own there.
static LOG_PER_PROCESS: SpinLock<Option<String>> = SpinLock::new(None);

/// Calls `f` on this module's locks (for the fork handlers).
pub(super) fn each_lock(f: &mut dyn FnMut(&dyn RawLock) -> bool) -> bool {
    f(&EXIT_DEST) && f(&USER_SUPPRESSIONS) && f(&LOG_PER_PROCESS)
}

/// After `fork`, on either side: the process-wide tracker records what
/// other libraries' fork handlers allocated and freed on this thread
/// while the fork handlers held its locks. (Another tracker records
/// them at its next call on this thread.)
pub(super) fn record_left_at_fork() {
    TRACKER.record_left_at_fork();
}

/// In a child process after `fork` (its compact logs stopped): when the
/// log path names the process, the process-wide tracker's log starts over
/// in the child's own file, with the blocks it inherited. A file that
/// cannot be created leaves it stopped.
pub(super) fn log_again_in_child() {
    // Held throughout: the child has this one thread.
    let template = LOG_PER_PROCESS.lock();
    let Some(template) = template.as_deref() else {
        return;
    };
    let Some(st) = TRACKER.state() else {
        return;
    };
    let _busy = Busy::enter(st.epoch);
    let Ok(sink) = Sink::create(&settings::expand_pid(template, std::process::id())) else {
        return;
    };
    st.log.restart_in_child(sink, &st.stacks);
    // The blocks the child has from its parent come first, as its own
    // allocations: so that their frees, and those never freed, are in its
    // log as they are in its heap.
    let t = thread::current();
    for shard in &st.live {
        shard.lock().for_each(&mut |rec| {
            if rec.stack != INTERNAL {
                let align_log2 = rec.align_log2();
                let align = if align_log2 == 0xff {
                    0
                } else {
                    1 << align_log2
                };
                log::alloc(
                    st,
                    t,
                    rec.addr as *mut u8,
                    align,
                    align_log2,
                    rec.size(),
                    rec.stack,
                    &[],
                );
            }
        });
    }
}

/// Runs `configure` once per `state`. Any other thread that arrives
/// meanwhile waits until it is done, so that its allocations run with
/// the whole configuration applied. The configuring thread itself
/// allocates while configuring (reading the environment); those
/// allocations, recognised by `reentered`, go through at once (as the
/// tracker's own).
///
/// The wait is bounded (one second): the configuring thread may need a
/// lock a waiting thread holds (`std::env::var` takes the lock that
/// `set_var` holds while it allocates). A thread that stops waiting
/// allocates with the defaults meanwhile; every setting is stored, not
/// set once, so the configuration still wins when it is applied.
fn configure_once(state: &AtomicU8, reentered: impl Fn() -> bool, configure: impl FnOnce()) {
    match state.compare_exchange(
        UNCONFIGURED,
        CONFIGURING,
        Ordering::Acquire,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            configure();
            state.store(CONFIGURED, Ordering::Release);
        }
        Err(CONFIGURED) => {}
        Err(_) if reentered() => {}
        Err(_) => {
            let mut spins = 0u32;
            let mut deadline = None;
            while state.load(Ordering::Acquire) != CONFIGURED {
                if spins < 64 {
                    spins += 1;
                    core::hint::spin_loop();
                    continue;
                }
                let now = std::time::Instant::now();
                if now > *deadline.get_or_insert(now + core::time::Duration::from_secs(1)) {
                    return;
                }
                std::thread::yield_now();
            }
        }
    }
}

/// In a child process after `fork`: a configuration under way in the
/// parent is over, since the thread applying it did not come along (the
/// child's allocations would each wait for it, a second at a time). The
/// child keeps what had been applied, and the defaults for the rest; it
/// does not apply it again, which could create the parent's log file anew.
/// So too when a call inside the fork window put the configuration off
/// (`put_off`, see [`GlobalBacktracing::configure`]): the child keeps the
/// defaults.
fn settle_configuration(state: &AtomicU8, put_off: bool) {
    let _ = state.compare_exchange(CONFIGURING, CONFIGURED, Ordering::AcqRel, Ordering::Acquire);
    if put_off {
        let _ = state.compare_exchange(
            UNCONFIGURED,
            CONFIGURED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

/// Set by a call that found the process-wide tracker unconfigured inside
/// the fork window and left its configuration for later; cleared by the
/// next call outside it.
static PUT_OFF_AT_FORK: AtomicBool = AtomicBool::new(false);

/// [`settle_configuration`] of the process-wide tracker, for the fork
/// handler in the child.
pub(super) fn configuration_after_fork_in_child() {
    settle_configuration(
        &CONFIG_STATE,
        PUT_OFF_AT_FORK.swap(false, Ordering::Relaxed),
    );
}

/// Where [`GlobalBacktracing`] writes the leak report when the program
/// exits (through C `atexit`, so after `main` returns or `exit` is
/// called; not on abort or a kill).
///
/// ```
/// use mallocator::backtracing::{Config, ExitReport, GlobalBacktracing};
/// static G: GlobalBacktracing = GlobalBacktracing::with_config(Config::DEFAULT, ExitReport::Stderr);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReport {
    /// As the environment says: `MALLOCATOR_LEAKS=stderr` or
    /// `MALLOCATOR_LEAKS=<path>`; nothing when unset.
    /// `MALLOCATOR_LEAKS_FORMAT=json` selects JSON.
    FromEnv,
    /// No report at exit.
    None,
    /// The text report on standard error.
    Stderr,
    /// The text report written to this file.
    Path(&'static str),
}

/// The tracker as a `#[global_allocator]`: every allocation of the
/// program, over the system (C library) allocator, with stacks.
///
/// All instances share one process-wide tracker ([`tracker`](Self::tracker));
/// the first allocation configures it from the instance it went through.
/// The tracker's own allocations (tables come straight from the C
/// library; reports, symbolization, environment reads are marked by a
/// thread-local flag) are never tracked and never re-enter it.
///
/// [`new`](Self::new) reads the environment at the first allocation:
///
/// | variable | effect |
/// |---|---|
/// | `MALLOCATOR_LEAKS=stderr\|<path>` | leak report at exit |
/// | `MALLOCATOR_LEAKS_FORMAT=json` | that report as JSON |
/// | `MALLOCATOR_SUPPRESSIONS=<path>` | leave out never-freed blocks whose stack a `leak:PATTERN` line of the file matches ([`Suppressions`]) |
/// | `MALLOCATOR_LEAKS_EXITCODE=<1-255>` | exit with this status when the report finds lost blocks (the report goes to stderr if `MALLOCATOR_LEAKS` says nowhere) |
/// | `MALLOCATOR_LOG=stdout\|stderr\|<path>` | log mode: every event, for `mallocator leaks`; `%p` in the path is the process id, and then a child made by `fork` writes a log of its own |
/// | `MALLOCATOR_LOG_FORMAT=v2\|fd` | that log compact (default) or in the Firedancer text format ([`LogFormat`](super::LogFormat)) |
/// | `MALLOCATOR_DEPTH=<n>` | frames per stack (default 32, max 64) |
/// | `MALLOCATOR_STACKS=auto\|fp\|dwarf\|unwind` | [`StackMode`](super::StackMode) |
/// | `MALLOCATOR_FULL_STACKS=1` | reports show whole stacks, the allocation machinery and the runtime below `main` included ([`Config::full_stacks`]) |
/// | `MALLOCATOR_FREE_STACKS=0\|1` | no stack on free ([`Config::free_stacks`]) |
///
/// A value it cannot use (not a number, an unknown mode, a log file that
/// cannot be created) is reported once on standard error, naming the
/// variable and what is used instead.
///
/// ```no_run
/// use mallocator::backtracing::GlobalBacktracing;
///
/// #[global_allocator]
/// static GLOBAL: GlobalBacktracing = GlobalBacktracing::new();
///
/// fn main() {
///     let scope = GLOBAL.tracker().scope();
///     let v: Vec<u8> = Vec::with_capacity(100);
///     drop(v);
///     scope.assert_no_leaks();
///     println!("{}", GLOBAL.tracker().report());
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct GlobalBacktracing {
    config: Config,
    exit: ExitReport,
    from_env: bool,
}

impl Default for GlobalBacktracing {
    fn default() -> Self {
        Self::new()
    }
}

impl GlobalBacktracing {
    /// Configured by the environment (see the table above).
    ///
    /// ```
    /// static G: mallocator::backtracing::GlobalBacktracing =
    ///     mallocator::backtracing::GlobalBacktracing::new();
    /// assert_eq!(G.tracker().live_blocks(), 0); // not the global allocator here
    /// ```
    pub const fn new() -> Self {
        GlobalBacktracing {
            config: Config::DEFAULT,
            exit: ExitReport::FromEnv,
            from_env: true,
        }
    }

    /// Configured by the environment (as [`new`](Self::new)), over
    /// `config` instead of [`Config::DEFAULT`]: a variable that is set
    /// wins, the rest is `config`.
    ///
    /// ```
    /// use mallocator::backtracing::{Config, GlobalBacktracing, StackMode};
    /// static G: GlobalBacktracing = GlobalBacktracing::from_env_over(Config {
    ///     stack_mode: StackMode::FramePointers,
    ///     ..Config::DEFAULT
    /// });
    /// ```
    pub const fn from_env_over(config: Config) -> Self {
        GlobalBacktracing {
            config,
            exit: ExitReport::FromEnv,
            from_env: true,
        }
    }

    /// Configured by the program; the environment is read only for
    /// [`ExitReport::FromEnv`].
    ///
    /// ```
    /// use mallocator::backtracing::{Config, ExitReport, GlobalBacktracing, LogTarget};
    /// static G: GlobalBacktracing = GlobalBacktracing::with_config(
    ///     Config { depth: 16, log: LogTarget::Path("alloc.log"), ..Config::DEFAULT },
    ///     ExitReport::Path("leaks.txt"),
    /// );
    /// ```
    pub const fn with_config(config: Config, exit: ExitReport) -> Self {
        GlobalBacktracing {
            config,
            exit,
            from_env: false,
        }
    }

    /// The process-wide tracker: [`report`](Backtracing::report),
    /// [`scope`](Backtracing::scope), the counters.
    ///
    /// ```
    /// let g = mallocator::backtracing::GlobalBacktracing::new();
    /// let _ = g.tracker().peak_bytes();
    /// ```
    pub fn tracker(&self) -> &'static Backtracing<'static> {
        &TRACKER
    }

    /// Configures the process-wide tracker now, as its first allocation
    /// would (reading the settings), and starts a compact log: for a
    /// library that starts the tracker before the program runs (the
    /// preload library of `mallocator trace`), so that the log holds the
    /// program's events only, and is whole even if it has none. Does
    /// nothing more once configured and started.
    ///
    /// ```
    /// let g = mallocator::backtracing::GlobalBacktracing::new();
    /// g.configure_now();
    /// assert_eq!(g.tracker().live_blocks(), 0);
    /// ```
    pub fn configure_now(&self) {
        self.configured();
        if let Some(st) = TRACKER.state() {
            let _busy = Busy::enter(st.epoch);
            st.log.start_now();
        }
    }

    /// C `malloc` through the process-wide tracker, for a library that
    /// defines the C allocator's functions (the preload library of
    /// `mallocator trace`): a block of `size` bytes (0 allowed: a unique
    /// block, recorded as 0 bytes) aligned to `align` (0: what `malloc`
    /// aligns to), or null when out of memory or `align` is not a power
    /// of two.
    ///
    /// ```
    /// let g = mallocator::backtracing::GlobalBacktracing::new();
    /// let p = g.c_malloc(64, 0);
    /// assert_eq!(p as usize % 64, 0);
    /// // SAFETY: `p` came from `c_malloc`.
    /// unsafe { g.c_free(p) };
    /// ```
    pub fn c_malloc(&self, align: usize, size: usize) -> *mut u8 {
        self.configured().alloc_raw(align, size)
    }

    /// C `free` through the process-wide tracker: null does nothing; a
    /// pointer the tracker did not hand out, or already freed, is
    /// reported as a bad free and not passed on.
    ///
    /// # Safety
    /// `ptr` is not used after this call if it came from
    /// [`c_malloc`](Self::c_malloc) or [`c_realloc`](Self::c_realloc).
    ///
    /// ```
    /// let g = mallocator::backtracing::GlobalBacktracing::new();
    /// // SAFETY: null is never a live block.
    /// unsafe { g.c_free(core::ptr::null_mut()) };
    /// ```
    pub unsafe fn c_free(&self, ptr: *mut u8) {
        TRACKER.free_raw(ptr)
    }

    /// C `realloc` through the process-wide tracker, for a live block
    /// from [`c_malloc`](Self::c_malloc) and a new size of at least 1: a
    /// new block (aligned as `malloc` aligns) with the old one's first
    /// bytes and its scope stamp, the old block freed; null when out of
    /// memory (the old block is then untouched). A pointer the tracker
    /// does not know is reported as a bad free and gets null, as
    /// Valgrind's memcheck answers it. A signal handler that interrupted
    /// the tracker may get null too, the old block untouched, when the
    /// block's record is behind a lock taken meanwhile.
    ///
    /// # Safety
    /// As [`c_free`](Self::c_free) for `ptr` when the result is not null.
    ///
    /// ```
    /// let g = mallocator::backtracing::GlobalBacktracing::new();
    /// let p = g.c_malloc(0, 4);
    /// // SAFETY: `p` is a live block of 4 bytes from `c_malloc`.
    /// let q = unsafe { p.copy_from([1u8, 2, 3, 4].as_ptr(), 4); g.c_realloc(p, 100) };
    /// // SAFETY: `q` holds the 4 bytes copied over.
    /// assert_eq!(unsafe { *q.add(3) }, 4);
    /// // SAFETY: `q` came from `c_realloc`.
    /// unsafe { g.c_free(q) };
    /// ```
    pub unsafe fn c_realloc(&self, ptr: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: the caller's promise is `realloc_raw`'s.
        unsafe { self.configured().realloc_raw(ptr, size) }
    }

    /// C `malloc_usable_size` through the process-wide tracker: the size
    /// a live block was asked for, as Valgrind's memcheck and
    /// AddressSanitizer answer it, not the larger size the allocator
    /// underneath may have rounded it to. [`c_realloc`](Self::c_realloc)
    /// keeps exactly the asked-for bytes, so a program that fills what
    /// this answer allows loses nothing when it grows the block. 0 for
    /// null and for a pointer that is not a live block of the tracker.
    /// `None` when a signal handler asks while the block's record is
    /// behind a lock its thread may hold, or another library's fork
    /// handler while the tracker's hold every lock across `fork` (as for
    /// `c_realloc`): the caller then has only the allocator's own answer
    /// to give.
    ///
    /// ```
    /// let g = mallocator::backtracing::GlobalBacktracing::new();
    /// let p = g.c_malloc(0, 10);
    /// assert_eq!(g.c_usable_size(p), Some(10));
    /// // SAFETY: `p` came from `c_malloc`.
    /// unsafe { g.c_free(p) };
    /// assert_eq!(g.c_usable_size(p), Some(0));
    /// ```
    pub fn c_usable_size(&self, ptr: *mut u8) -> Option<usize> {
        if ptr.is_null() {
            return Some(0);
        }
        match TRACKER.block_of(ptr) {
            Block::Live { size, .. } => Some(size),
            Block::NotLive => Some(0),
            Block::Unreadable => None,
        }
    }

    /// The process-wide tracker, configured first if it is not yet (the
    /// first allocation reads the settings). Inlined: the allocation path
    /// gets no frame of it.
    #[inline(always)]
    fn configured(&self) -> &'static Backtracing<'static> {
        if CONFIG_STATE.load(Ordering::Acquire) != CONFIGURED {
            self.configure();
        }
        &TRACKER
    }

    #[cold]
    fn configure(&self) {
        // Another library's fork handler, on the thread that holds every
        // tracker lock across `fork` (`thread.rs`, `FORKING`): reading the
        // settings allocates, through this tracker when it is the global
        // allocator, which would wait for those locks; and another thread
        // configuring would wait for them too. The first call after the
        // fork configures: in the parent; the child keeps the defaults
        // (`settle_configuration`).
        let forking = Busy::forking();
        PUT_OFF_AT_FORK.store(forking, Ordering::Relaxed);
        if forking {
            return;
        }
        let Some(epoch) = TRACKER.state().map(|st| st.epoch) else {
            // Out of memory: allocations fail until a state can be made.
            return;
        };
        configure_once(&CONFIG_STATE, || Busy::inside(epoch), || self.apply(epoch));
    }

    /// Reads the environment (as this instance says) into [`TRACKER`];
    /// warns once on standard error for every value it cannot use.
    fn apply(&self, epoch: u64) {
        let _busy = Busy::enter(epoch);
        let not_text = core::cell::RefCell::new(Vec::new());
        let (settings, mut warnings) = settings::settings(
            self.config,
            self.exit,
            self.from_env,
            &|name| match std::env::var(name) {
                Ok(value) => Some(value),
                Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(value)) => {
                    not_text.borrow_mut().push(format!(
                        "{name}={} is not UTF-8; not used",
                        value.to_string_lossy()
                    ));
                    None
                }
            },
        );
        warnings.append(&mut not_text.into_inner());
        TRACKER.depth.store(settings.depth, Ordering::Relaxed);
        TRACKER
            .free_stacks
            .store(settings.free_stacks, Ordering::Relaxed);
        TRACKER
            .full_stacks
            .store(settings.full_stacks, Ordering::Relaxed);
        TRACKER.active.set(stack::resolve(settings.stack_mode));
        match settings.log {
            LogSetting::Config(target) => TRACKER.set_log(target, settings.log_format),
            LogSetting::Stdout => TRACKER.set_log(LogTarget::Stdout, settings.log_format),
            LogSetting::Stderr => TRACKER.set_log(LogTarget::Stderr, settings.log_format),
            LogSetting::Path(path) => {
                match Sink::create(&settings::expand_pid(&path, std::process::id())) {
                    Ok(sink) => {
                        if let Some(st) = TRACKER.state() {
                            st.log.set_sink(sink, settings.log_format);
                            TRACKER.log_on.store(true, Ordering::Relaxed);
                        }
                        if settings::names_the_process(&path)
                            && settings.log_format == LogFormat::Compact
                        {
                            *LOG_PER_PROCESS.lock() = Some(path);
                        }
                    }
                    Err(e) => {
                        warnings.push(format!("MALLOCATOR_LOG: cannot create {path}: {e}; no log"))
                    }
                }
            }
        }
        if let Some(path) = &settings.suppressions {
            // Reading is a cancellation point (see `os::NoCancel`).
            let read = {
                let _no_cancel = os::NoCancel::now();
                std::fs::read_to_string(path)
            };
            match read {
                Ok(text) => match Suppressions::parse(&text) {
                    Ok(s) => *USER_SUPPRESSIONS.lock() = Some(s),
                    Err(e) => warnings.push(format!(
                        "MALLOCATOR_SUPPRESSIONS: {path}: {e}; none of its suppressions are used"
                    )),
                },
                Err(e) => {
                    warnings.push(format!("MALLOCATOR_SUPPRESSIONS: cannot read {path}: {e}"))
                }
            }
        }
        if let Some(dest) = settings.exit {
            *EXIT_DEST.lock() = Some(dest);
            os::at_exit(write_exit_report);
        }
        for w in warnings {
            os::write_all(&Sink::stderr(), format!("mallocator: {w}\n").as_bytes());
        }
    }
}

impl Backtracing<'_> {
    /// C `realloc` through this tracker, as
    /// [`GlobalBacktracing::c_realloc`] describes it.
    ///
    /// # Safety
    /// As there.
    pub(crate) unsafe fn realloc_raw(&self, ptr: *mut u8, size: usize) -> *mut u8 {
        let (old_size, stamp) = match self.block_of(ptr) {
            Block::Live { size, stamp } => (size, stamp),
            Block::NotLive => {
                self.free_raw(ptr);
                return core::ptr::null_mut();
            }
            // A signal handler's call that cannot read the record without
            // waiting for a lock its own thread may hold: it fails as an
            // allocation does, the old block untouched and still live,
            // which every caller of `realloc` must handle. A guessed size
            // could copy past the block's end, or cut it short; a stamp
            // can be guessed, a size cannot.
            Block::Unreadable => return core::ptr::null_mut(),
        };
        let new = thread::with_stamp(stamp, || self.alloc_raw(0, size));
        if !new.is_null() {
            // SAFETY: the old block is live with `old_size` bytes (its
            // record says so), the new one has `size`; they are distinct.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, old_size.min(size)) };
            self.free_raw(ptr);
        }
        new
    }

    /// Switches log mode to `target`, in `format`.
    fn set_log(&self, target: LogTarget, format: LogFormat) {
        if let Some(st) = self.state() {
            st.log.set_target(target, format);
            self.log_on
                .store(!matches!(target, LogTarget::None), Ordering::Relaxed);
        }
    }
}

/// The `atexit` hook: writes the report where [`EXIT_DEST`] says.
extern "C" fn write_exit_report() {
    // The scan for reachable blocks covers the stack from the code that
    // called `exit` up (see `os::stack_of_exit_caller`), or else from
    // here: this function's callees are the report's own.
    // The registers first, before this function's code changes them.
    let registers = os::callee_saved_registers();
    let sp = os::stack_of_exit_caller().unwrap_or_else(os::stack_pointer_estimate);
    let _busy = TRACKER.state().map(|st| Busy::enter(st.epoch));
    let Some(dest) = EXIT_DEST.lock().take() else {
        return;
    };
    let Some(report) = TRACKER.build_report(&|_| true, true, Reach::AllRoots { sp, registers })
    else {
        // The program ends as it would have; its exit status is its own.
        let msg = b"mallocator: not enough memory for the leak report\n";
        os::write_all(&Sink::stderr(), msg);
        return;
    };
    let text = if dest.json {
        report.to_json() + "\n"
    } else {
        report.to_text()
    };
    match &dest.path {
        Some(path) => {
            // Created as a log file is (`Sink::create`: private to its
            // owner, never through a symbolic link): the report holds the
            // program's addresses.
            let written = match Sink::create(path) {
                Ok(sink) if os::write_all(&sink, text.as_bytes()) => Ok(()),
                Ok(_) => Err("a write failed".to_owned()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = written {
                let msg = format!("mallocator: cannot write the leak report to {path}: {e}\n");
                os::write_all(&Sink::stderr(), msg.as_bytes());
            }
        }
        None => {
            let text = format!("== mallocator leak report ==\n{text}");
            os::write_all(&Sink::stderr(), text.as_bytes());
        }
    }
    if let Some(code) = dest.exit_code.filter(|_| report.lost_blocks() > 0) {
        let msg = format!(
            "mallocator: {} lost block{}: exiting with status {code} (MALLOCATOR_LEAKS_EXITCODE)\n",
            report.lost_blocks(),
            if report.lost_blocks() == 1 { "" } else { "s" }
        );
        os::write_all(&Sink::stderr(), msg.as_bytes());
        // The compact log's end, in case its own exit hook has not run
        // yet (hooks run in reverse order of registration).
        if let Some(st) = TRACKER.state() {
            super::log::detach(st);
            st.log.finish();
        }
        os::exit_now(code);
    }
}

// SAFETY: `alloc_raw` returns null or a block from the tracker's own
// heap (the C library's allocator) of at least `layout.size()` bytes aligned to `layout.align()` (the libc
// handle's contract); `dealloc` receives only such blocks, which
// `free_raw` gives back exactly once (anything else is reported and not
// passed on).
unsafe impl GlobalAlloc for GlobalBacktracing {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.configured().alloc_raw(layout.align(), layout.size())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        TRACKER.free_raw(ptr)
    }

    /// A new block with the old one's contents, and the old one's scope
    /// stamp: a vector made before a scope and grown inside it is not
    /// the scope's leak (its new block replaces one the scope never
    /// counted); one made inside it still is.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees that `new_size`, rounded up to
        // `layout.align()`, does not overflow `isize` (`GlobalAlloc::realloc`).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size (the caller's contract).
        let alloc = || unsafe { self.alloc(new_layout) };
        // The layout gives the old block's size: only its stamp is read.
        // When a signal handler cannot read it without waiting
        // (`Block::Unreadable`), the block takes the thread's stamp
        // rather than fail: a Rust caller mostly turns a null into an
        // abort, and a stamp only decides which scope counts the block.
        let new = match TRACKER.block_of(ptr) {
            Block::Live { stamp, .. } => thread::with_stamp(stamp, alloc),
            Block::NotLive | Block::Unreadable => alloc(),
        };
        if !new.is_null() {
            // SAFETY: both blocks are at least this long, and distinct
            // (the old one is live until the `dealloc` below).
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// The exit report, out of memory for the live blocks' records: one
    /// line on stderr says so, and the exit goes on (not the report's exit
    /// status either: nothing was found). In a child process: the limit
    /// is the process's, and so is its stderr.
    #[test]
    #[cfg(all(target_os = "linux", not(miri)))]
    #[cfg_attr(
        any(mallocator_sanitize = "address", mallocator_sanitize = "thread"),
        ignore = "the sanitizers' own memory does not fit under an address-space limit"
    )]
    fn an_exit_report_without_memory_says_so_and_the_exit_goes_on() {
        use std::io::{Read, Seek};
        use std::os::fd::AsRawFd;
        if !crate::test_util::address_space_limits_hold() {
            eprintln!("skipped: this system does not enforce address-space limits");
            return;
        }
        assert!(crate::backtracing::fork::tests_support::in_child(|| {
            const BLOCKS: usize = 1 << 20;
            let g = GlobalBacktracing::new();
            let blocks: Vec<*mut u8> = (0..BLOCKS).map(|_| g.c_malloc(0, 16)).collect();
            *EXIT_DEST.lock() = Some(ExitDest {
                path: None,
                json: false,
                exit_code: Some(9),
            });
            let path = std::env::temp_dir().join(format!("mallocator-oom-{}", std::process::id()));
            let mut stderr = std::fs::File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            std::fs::remove_file(&path).unwrap();
            // SAFETY: both descriptors are open; stderr is this child's.
            assert!(unsafe { libc::dup2(stderr.as_raw_fd(), 2) } == 2);
            crate::test_util::with_address_space_limited(4 << 20, || write_exit_report());
            let mut said = String::new();
            stderr.rewind().unwrap();
            stderr.read_to_string(&mut said).unwrap();
            for &p in &blocks {
                // SAFETY: each block came from `c_malloc`, freed once.
                unsafe { g.c_free(p) };
            }
            said == "mallocator: not enough memory for the leak report\n"
        }));
    }

    /// The global tracker's first call, on a thread with a cancellation
    /// pending, configures it (reading a suppressions file, creating a
    /// log file) and allocates: the cancellation waits for the program's
    /// next cancellation point instead of acting inside `malloc`. In a
    /// fresh run of this test binary, where nothing has configured the
    /// global tracker yet.
    #[test]
    #[cfg(all(target_os = "linux", not(miri)))]
    fn the_first_call_with_a_cancellation_pending_configures_and_goes_on() {
        const CHILD: &str = "MALLOCATOR_TEST_FIRST_CALL_CANCELLED";
        const WENT_ON: i32 = 42;
        if std::env::var_os(CHILD).is_some() {
            let g = GlobalBacktracing::new();
            crate::test_util::cancel_this_thread();
            let p = g.c_malloc(0, 16);
            let configured = CONFIG_STATE.load(Ordering::Acquire) == CONFIGURED
                && USER_SUPPRESSIONS.lock().is_some()
                && TRACKER.log_on.load(Ordering::Relaxed);
            // SAFETY: ends the process without the harness's exit.
            unsafe {
                libc::_exit(if !p.is_null() && configured {
                    WENT_ON
                } else {
                    1
                })
            };
        }
        let dir = std::env::temp_dir();
        let supp = dir.join(format!("mallocator-cancel-{}.supp", std::process::id()));
        let log = dir.join(format!("mallocator-cancel-{}.log", std::process::id()));
        std::fs::write(&supp, "leak:never_called_anywhere\n").unwrap();
        let name = "backtracing::global::tests::the_first_call_with_a_cancellation_pending_configures_and_goes_on";
        let vars = [
            ("MALLOCATOR_SUPPRESSIONS", supp.as_os_str()),
            ("MALLOCATOR_LOG", log.as_os_str()),
        ];
        let status = crate::test_util::run_alone(name, CHILD, &vars).status;
        let _ = std::fs::remove_file(&supp);
        let _ = std::fs::remove_file(&log);
        assert_eq!(
            status.code(),
            Some(WENT_ON),
            "{status:?} (1: not configured as the environment says)"
        );
    }

    #[test]
    fn other_threads_wait_for_the_configuration() {
        let state = AtomicU8::new(UNCONFIGURED);
        let applied = AtomicBool::new(false);
        let (started, wait_started) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                configure_once(
                    &state,
                    || false,
                    || {
                        started.send(()).unwrap();
                        std::thread::sleep(Duration::from_millis(if cfg!(miri) { 5 } else { 100 }));
                        // The configuring thread's own allocations pass.
                        configure_once(&state, || true, || unreachable!());
                        applied.store(true, Ordering::SeqCst);
                    },
                )
            });
            wait_started.recv().unwrap();
            configure_once(&state, || false, || unreachable!("configured twice"));
            assert!(
                applied.load(Ordering::SeqCst),
                "returned before the configuration was applied"
            );
        });
        assert_eq!(state.load(Ordering::SeqCst), CONFIGURED);
    }

    /// The process-wide tracker's first call, made by another library's
    /// fork handler while the tracker's hold every lock across `fork`,
    /// leaves the configuration to the first call after the fork (in a
    /// child process, where the configuration can be undone).
    #[test]
    #[cfg(all(unix, not(miri)))]
    fn a_first_call_in_the_fork_window_leaves_the_configuration_for_later() {
        use crate::backtracing::fork;
        assert!(fork::tests_support::in_child(|| {
            let g = GlobalBacktracing::new();
            let _ = TRACKER.state();
            CONFIG_STATE.store(UNCONFIGURED, Ordering::SeqCst);
            let p = fork::tests_support::in_fork_window(|| g.c_malloc(0, 24));
            let left = CONFIG_STATE.load(Ordering::SeqCst) == UNCONFIGURED
                && PUT_OFF_AT_FORK.load(Ordering::SeqCst);
            let q = g.c_malloc(0, 8);
            // SAFETY: `p` and `q` came from `c_malloc`.
            unsafe { (g.c_free(p), g.c_free(q)) };
            left && !p.is_null()
                && CONFIG_STATE.load(Ordering::SeqCst) == CONFIGURED
                && !PUT_OFF_AT_FORK.load(Ordering::SeqCst)
        }));
    }

    #[test]
    fn a_child_forked_while_another_thread_configures_does_not_wait_for_it() {
        let state = AtomicU8::new(CONFIGURING);
        settle_configuration(&state, false);
        let start = std::time::Instant::now();
        configure_once(&state, || false, || unreachable!("configured again"));
        assert!(start.elapsed() < Duration::from_millis(500));
        // Nothing changes otherwise.
        for was in [UNCONFIGURED, CONFIGURED] {
            let state = AtomicU8::new(was);
            settle_configuration(&state, false);
            assert_eq!(state.load(Ordering::SeqCst), was);
        }
        // A configuration a call inside the fork window put off: the
        // child keeps the defaults (applying them could create the
        // parent's log file anew); the parent configures later.
        for was in [UNCONFIGURED, CONFIGURING, CONFIGURED] {
            let state = AtomicU8::new(was);
            settle_configuration(&state, true);
            assert_eq!(state.load(Ordering::SeqCst), CONFIGURED);
        }
    }
}
