//! Global mode: the tracker as the program's `#[global_allocator]`.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use super::os::{self, Sink};
use super::table::lock;
use super::{stack, Backtracing, Busy, Config, LogTarget, StackMode, MAX_DEPTH};
use crate::valloc::Valloc;

/// The one process-wide tracker behind every [`GlobalBacktracing`].
static TRACKER: Backtracing<'static> = Backtracing::new(Valloc::libc());

/// 0: not configured; 1: being configured; 2: configured.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Where the exit report goes: `(path or None for stderr, json)`.
static EXIT_DEST: Mutex<Option<(Option<String>, bool)>> = Mutex::new(None);

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
/// | `MALLOCATOR_LOG=stdout\|stderr\|<path>` | log mode (the C format) |
/// | `MALLOCATOR_DEPTH=<n>` | frames per stack (default 32, max 64) |
/// | `MALLOCATOR_STACKS=auto\|fp\|unwind` | [`StackMode`] |
/// | `MALLOCATOR_FREE_STACKS=0` | no stack on free ([`Config::free_stacks`]) |
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

    #[cold]
    fn configure(&self) {
        if STATE
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Configured, or being configured (by another thread, or by
            // this one, whose allocations meanwhile are the tracker's own).
            return;
        }
        let _busy = Busy::enter();
        let env = |name: &str| {
            if self.from_env
                || (name.starts_with("MALLOCATOR_LEAKS") && self.exit == ExitReport::FromEnv)
            {
                std::env::var(name).ok().filter(|v| !v.is_empty())
            } else {
                None
            }
        };
        let depth = env("MALLOCATOR_DEPTH")
            .and_then(|d| d.parse::<usize>().ok())
            .unwrap_or(self.config.depth)
            .min(MAX_DEPTH);
        TRACKER.depth.store(depth, Ordering::Relaxed);
        let free_stacks = match env("MALLOCATOR_FREE_STACKS").as_deref() {
            Some("0") => false,
            Some(_) => true,
            None => self.config.free_stacks,
        };
        TRACKER.free_stacks.store(free_stacks, Ordering::Relaxed);
        let mode = match env("MALLOCATOR_STACKS").as_deref() {
            Some("fp") => StackMode::FramePointers,
            Some("unwind") => StackMode::Unwind,
            Some("auto") => StackMode::Auto,
            _ => self.config.stack_mode,
        };
        let _ = TRACKER.active.set(stack::resolve(mode));
        match env("MALLOCATOR_LOG").as_deref() {
            Some("stdout") => TRACKER.set_log(LogTarget::Stdout),
            Some("stderr") => TRACKER.set_log(LogTarget::Stderr),
            Some(path) => {
                if let Ok(sink) = Sink::create(path) {
                    TRACKER.log.set_sink(sink);
                    TRACKER.log_on.store(true, Ordering::Relaxed);
                }
            }
            None => TRACKER.set_log(self.config.log),
        }
        let json = env("MALLOCATOR_LEAKS_FORMAT").as_deref() == Some("json");
        let dest = match self.exit {
            ExitReport::None => None,
            ExitReport::Stderr => Some((None, json)),
            ExitReport::Path(p) => Some((Some(p.to_owned()), json)),
            ExitReport::FromEnv => match env("MALLOCATOR_LEAKS") {
                Some(v) if v == "stderr" => Some((None, json)),
                Some(path) => Some((Some(path), json)),
                None => None,
            },
        };
        if dest.is_some() {
            *lock(&EXIT_DEST) = dest;
            os::at_exit(write_exit_report);
        }
        STATE.store(2, Ordering::Release);
    }
}

impl Backtracing<'_> {
    /// Switches log mode to `target`.
    fn set_log(&self, target: LogTarget) {
        self.log.set_target(target);
        self.log_on
            .store(!matches!(target, LogTarget::None), Ordering::Relaxed);
    }
}

/// The `atexit` hook: writes the report where [`EXIT_DEST`] says.
extern "C" fn write_exit_report() {
    let _busy = Busy::enter();
    let Some((path, json)) = lock(&EXIT_DEST).take() else {
        return;
    };
    let report = TRACKER.report();
    let text = if json {
        report.to_json() + "\n"
    } else {
        report.to_text()
    };
    match path {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, text) {
                let msg = format!("mallocator: cannot write the leak report to {path}: {e}\n");
                os::write_all(&Sink::stderr(), msg.as_bytes());
            }
        }
        None => {
            let text = format!("== mallocator leak report ==\n{text}");
            os::write_all(&Sink::stderr(), text.as_bytes());
        }
    }
}

// SAFETY: `alloc_raw` returns null or a block from the C library allocator
// of at least `layout.size()` bytes aligned to `layout.align()` (the libc
// handle's contract); `dealloc` receives only such blocks, which
// `free_raw` gives back exactly once (anything else is reported and not
// passed on).
unsafe impl GlobalAlloc for GlobalBacktracing {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if STATE.load(Ordering::Acquire) != 2 {
            self.configure();
        }
        TRACKER.alloc_raw(layout.align(), layout.size())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        TRACKER.free_raw(ptr)
    }
}
