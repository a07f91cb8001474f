//! The tracker inside hostile programs: allocations from a signal handler
//! on an alternate stack while the interrupted code holds garbage in the
//! frame-pointer register, from a coroutine stack, and `fork` while other
//! threads allocate. These need real stacks, signals and processes, so
//! they are Linux-only and do not run under Miri.
//!
//! A case that could kill the process runs in a child: the test re-runs
//! this binary with a filter selecting `child_process_entry` and an
//! environment variable naming the case, and checks how the child ended.
#![cfg(all(target_os = "linux", not(miri)))]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mallocator::backtracing::{Backtracing, Config, StackMode};
use mallocator::Valloc;

const CHILD_ENV: &str = "MALLOCATOR_HOSTILE_CHILD";

/// A tracker that always walks frame pointers (the mode that reads stack
/// memory itself).
static FP_TRACKER: Backtracing<'static> = Backtracing::with_config(
    Valloc::libc(),
    Config {
        stack_mode: StackMode::FramePointers,
        ..Config::DEFAULT
    },
);

/// Entry point of the child processes; ignored in normal runs.
#[test]
#[ignore = "run by the tests below in a child process"]
fn child_process_entry() {
    match std::env::var(CHILD_ENV)
        .expect("run by the tests only")
        .as_str()
    {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        "altstack" => altstack::run(),
        "coroutine" => coroutine::run(),
        "first_use_fork" => fork_while_allocating(&FIRST_USE_TRACKER, 4, 5),
        "dwarf_signals" => dwarf_signals::run(),
        other => panic!("unknown case {other}"),
    }
    println!("CHILD: survived");
}

/// Runs `child_process_entry` for `case`; returns its standard output
/// after checking that it exited normally.
fn run_child(case: &str) -> String {
    // The signal case allocates in a handler on purpose (programs do; it
    // is as safe as their malloc makes it): ThreadSanitizer must not stop
    // the child for that. Appended, so it wins over the caller's options.
    let tsan = std::env::var("TSAN_OPTIONS").unwrap_or_default() + ":report_signal_unsafe=0";
    let out = common::run_child_entry(CHILD_ENV, case, &[("TSAN_OPTIONS", tsan.into())]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("CHILD: survived"),
        "the child died: {out:?}"
    );
    stdout
}

/// A fresh anonymous mapping of `len` bytes with protection `prot`.
fn map(len: usize, prot: i32) -> usize {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p as usize
}

/// The calling thread's stack `(low, high)`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn thread_stack() -> (usize, usize) {
    // SAFETY: as in the library's own `stack_bounds`: `attr` is written by
    // `pthread_getattr_np` before it is read, and destroyed once.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
        let (mut addr, mut size) = (core::ptr::null_mut(), 0usize);
        assert_eq!(libc::pthread_attr_getstack(&attr, &mut addr, &mut size), 0);
        libc::pthread_attr_destroy(&mut attr);
        (addr as usize, addr as usize + size)
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod altstack {
    use super::*;

    /// The block the handler allocated.
    static BLOCK: AtomicUsize = AtomicUsize::new(0);

    /// Allocates through the frame-pointer tracker from the handler (and
    /// no more: the report, which symbolizes, runs on the thread's stack).
    extern "C" fn on_signal(_: i32) {
        BLOCK.store(FP_TRACKER.valloc().malloc(8, 48) as usize, Ordering::SeqCst);
    }

    /// Sends SIGUSR1 to this thread while the frame-pointer register
    /// (`rbp`) holds `garbage`, as code built without frame pointers may
    /// have it when a signal arrives.
    #[cfg(target_arch = "x86_64")]
    fn signal_with_frame_pointer(garbage: usize) {
        // SAFETY: saves `rbp`, loads `garbage` into it for the `tgkill`
        // system call only, and restores it; no memory is read through it
        // here. The handler runs on the alternate stack (SA_ONSTACK), so
        // the kernel does not write below this stack pointer.
        unsafe {
            core::arch::asm!(
                "push rbp",
                "mov rbp, {garbage}",
                "syscall",
                "pop rbp",
                garbage = in(reg) garbage,
                inout("rax") libc::SYS_tgkill => _,
                in("rdi") libc::getpid(),
                in("rsi") libc::gettid(),
                in("rdx") libc::SIGUSR1,
                out("rcx") _,
                out("r11") _,
            );
        }
    }

    /// [`signal_with_frame_pointer`] where the frame pointer is `x29`.
    #[cfg(target_arch = "aarch64")]
    fn signal_with_frame_pointer(garbage: usize) {
        // SAFETY: saves `x29` in a register the system call keeps, loads
        // `garbage` into it for the `tgkill` system call only, and
        // restores it; no memory is read through it here. The handler runs
        // on the alternate stack (SA_ONSTACK), so the kernel does not write
        // below this stack pointer.
        unsafe {
            core::arch::asm!(
                "mov {saved}, x29",
                "mov x29, {garbage}",
                "svc #0",
                "mov x29, {saved}",
                saved = out(reg) _,
                garbage = in(reg) garbage,
                inout("x0") libc::getpid() as usize => _,
                in("x1") libc::gettid() as usize,
                in("x2") libc::SIGUSR1 as usize,
                in("x8") libc::SYS_tgkill as usize,
            );
        }
    }

    /// The test proper, on a thread whose stack is the top of one mapping
    /// laid out as `[alternate stack | unreadable | thread stack]`, so that
    /// a "frame pointer" into the unreadable part lies above the handler's
    /// frames and below the thread's stack top: a walk that only checked
    /// those two bounds read it.
    fn on_thread(alt: usize, alt_len: usize, garbage: usize) {
        let (_, high) = thread_stack();
        assert!(
            alt < garbage && garbage < high,
            "the layout this test needs"
        );
        let stack = libc::stack_t {
            ss_sp: alt as *mut _,
            ss_flags: 0,
            ss_size: alt_len,
        };
        // SAFETY: `stack` describes our own writable mapping.
        assert_eq!(
            unsafe { libc::sigaltstack(&stack, core::ptr::null_mut()) },
            0
        );
        // SAFETY: an all-zero `sigaction` is valid; the handler is a
        // plain function.
        let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(i32) as usize;
        action.sa_flags = libc::SA_ONSTACK;
        // SAFETY: installs the handler for SIGUSR1.
        assert_eq!(
            unsafe { libc::sigaction(libc::SIGUSR1, &action, core::ptr::null_mut()) },
            0
        );
        signal_with_frame_pointer(garbage);
        let block = BLOCK.load(Ordering::SeqCst);
        assert_ne!(block, 0, "the handler ran and allocated");
        // The handler's own frames, cut at the signal frame.
        let report = FP_TRACKER.report();
        let frames = report.groups[0].frames.len();
        println!("CHILD: {frames} frames");
        assert!((1..10).contains(&frames), "{report}");
        // SAFETY: `block` came from this tracker.
        unsafe { FP_TRACKER.valloc().free(block as *mut u8) };
    }

    /// The layout of [`on_thread`]'s mapping.
    const ALT: usize = 1 << 18;
    const GUARD: usize = 1 << 16;
    const STACK: usize = 8 << 20;
    static MAPPING: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn thread_main(_: *mut libc::c_void) -> *mut libc::c_void {
        let base = MAPPING.load(Ordering::SeqCst);
        let ok = std::panic::catch_unwind(|| on_thread(base, ALT, base + ALT + 64)).is_ok();
        ok as usize as *mut libc::c_void
    }

    pub(super) fn run() {
        let base = map(ALT + GUARD + STACK, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: the middle of our own mapping becomes unreadable.
        assert_eq!(
            unsafe { libc::mprotect((base + ALT) as *mut _, GUARD, libc::PROT_NONE) },
            0
        );
        MAPPING.store(base, Ordering::SeqCst);
        // SAFETY: the thread runs on the top part of our mapping, which
        // outlives it (never unmapped); `attr` is initialised before use
        // and destroyed once; the thread is joined.
        let ok = unsafe {
            let mut attr: libc::pthread_attr_t = core::mem::zeroed();
            assert_eq!(libc::pthread_attr_init(&mut attr), 0);
            assert_eq!(
                libc::pthread_attr_setstack(&mut attr, (base + ALT + GUARD) as *mut _, STACK),
                0
            );
            let mut thread: libc::pthread_t = 0;
            assert_eq!(
                libc::pthread_create(&mut thread, &attr, thread_main, core::ptr::null_mut()),
                0
            );
            libc::pthread_attr_destroy(&mut attr);
            let mut ret = core::ptr::null_mut();
            assert_eq!(libc::pthread_join(thread, &mut ret), 0);
            !ret.is_null()
        };
        assert!(ok, "the test thread failed");
    }

    /// The frame-pointer walk on a signal alternate stack never reads the
    /// interrupted code's garbage frame pointer.
    #[test]
    fn a_handler_on_an_alternate_stack_allocates_safely() {
        run_child("altstack");
    }
}

mod coroutine {
    use super::*;

    static FRAMES: AtomicUsize = AtomicUsize::new(usize::MAX);
    static OFF_STACK: AtomicUsize = AtomicUsize::new(0);
    static mut MAIN: core::mem::MaybeUninit<libc::ucontext_t> = core::mem::MaybeUninit::uninit();

    extern "C" fn on_coroutine() {
        let t = Backtracing::with_config(
            Valloc::libc(),
            Config {
                stack_mode: StackMode::FramePointers,
                ..Config::DEFAULT
            },
        );
        let p = t.valloc().malloc(8, 32);
        let r = t.report();
        FRAMES.store(r.groups[0].frames.len(), Ordering::SeqCst);
        OFF_STACK.store(r.off_stack_captures, Ordering::SeqCst);
        // SAFETY: `p` came from `t`.
        unsafe { t.valloc().free(p) };
    }

    pub(super) fn run() {
        const LEN: usize = 1 << 18;
        let stack = map(LEN, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: `ctx` is filled by `getcontext` and given our own
        // mapping as its stack; `swapcontext` runs `on_coroutine` there and
        // comes back through `uc_link` when it returns. `MAIN` is only
        // touched by this one thread.
        unsafe {
            let mut ctx: libc::ucontext_t = core::mem::zeroed();
            assert_eq!(libc::getcontext(&mut ctx), 0);
            ctx.uc_stack.ss_sp = stack as *mut _;
            ctx.uc_stack.ss_size = LEN;
            ctx.uc_link = core::ptr::addr_of_mut!(MAIN).cast();
            libc::makecontext(&mut ctx, on_coroutine, 0);
            assert_eq!(
                libc::swapcontext(core::ptr::addr_of_mut!(MAIN).cast(), &ctx),
                0
            );
        }
        println!(
            "CHILD: {} frames, {} off-stack",
            FRAMES.load(Ordering::SeqCst),
            OFF_STACK.load(Ordering::SeqCst)
        );
        assert_eq!(FRAMES.load(Ordering::SeqCst), 0);
        assert_eq!(OFF_STACK.load(Ordering::SeqCst), 1);
    }

    /// Code on a stack the walk does not know gets an empty stack, and
    /// the report counts it.
    #[test]
    fn a_coroutine_stack_gives_an_empty_counted_stack() {
        run_child("coroutine");
    }
}

/// The stacks of a hung process's threads, from `gdb` when it is
/// installed, so that a hang seen once in CI can be diagnosed.
fn child_stacks(pid: libc::pid_t) -> String {
    match std::process::Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt",
        ])
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => format!("(gdb not available: {e})"),
    }
}

/// Forks `forks` times while `threads` threads allocate and free through
/// `tracker`; each child allocates through it too and exits. Fails if a
/// child does not finish within 10 s (a lock copied taken into it).
pub fn fork_while_allocating(tracker: &'static Backtracing<'static>, threads: usize, forks: usize) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for i in 0..threads {
            let stop = &stop;
            s.spawn(move || {
                let v = tracker.valloc();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let p = v.malloc(8, 16 + (n + i) % 200);
                    // SAFETY: `p` came from `v`.
                    unsafe { v.free(p) };
                    n += 1;
                }
            });
        }
        let result = std::panic::catch_unwind(|| {
            for round in 0..forks {
                // SAFETY: the child only allocates, frees and `_exit`s.
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0, "fork failed");
                if pid == 0 {
                    let v = tracker.valloc();
                    for k in 0..50 {
                        // SAFETY: `p` came from `v`.
                        unsafe { v.free(v.malloc(8, 8 + k)) };
                    }
                    let clean = tracker.live_blocks() < 1 << 20;
                    // SAFETY: ends the child without running the parent's
                    // exit handlers or test harness.
                    unsafe { libc::_exit(if clean { 0 } else { 3 }) };
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut status = 0;
                loop {
                    // SAFETY: waits for our own child without blocking.
                    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                    if r == pid {
                        break;
                    }
                    if Instant::now() > deadline {
                        let stacks = child_stacks(pid);
                        // SAFETY: our own child.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        // SAFETY: reaps it.
                        unsafe { libc::waitpid(pid, &mut status, 0) };
                        panic!("child {round} hung after fork; its stacks:\n{stacks}");
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                assert!(
                    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                    "child {round} ended with status {status:#x}"
                );
            }
        });
        stop.store(true, Ordering::Relaxed);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
}

static UNWIND_TRACKER: Backtracing<'static> = Backtracing::with_config(
    Valloc::libc(),
    Config {
        stack_mode: StackMode::Unwind,
        ..Config::DEFAULT
    },
);

/// A tracker that unwinds by DWARF call-frame information (the
/// `backtrace` unwinder where that is not built in).
static DWARF_TRACKER: Backtracing<'static> = Backtracing::with_config(
    Valloc::libc(),
    Config {
        stack_mode: StackMode::Dwarf,
        ..Config::DEFAULT
    },
);

/// Used first in a child process by the test below.
static FIRST_USE_TRACKER: Backtracing<'static> = Backtracing::new(Valloc::libc());

/// Forks while threads use a tracker for the first time in the process,
/// racing each other to install the fork handlers: no thread may take a
/// tracker lock before they are installed, or a fork copies it taken.
/// Each run is a fresh process, whose handlers are not installed yet.
///
/// Not under ThreadSanitizer, whose interception of `fork` differs from
/// glibc's own: there a child sometimes finds the registry lock taken
/// when a fork races the handlers' installation, which never happens in
/// the plain and AddressSanitizer runs (left to find out).
#[test]
#[cfg_attr(
    mallocator_sanitize = "thread",
    ignore = "ThreadSanitizer's fork handling, see the doc comment"
)]
fn forks_racing_the_first_use_of_a_tracker() {
    for _ in 0..20 {
        run_child("first_use_fork");
    }
}

#[test]
fn fork_while_threads_allocate_frame_pointers() {
    fork_while_allocating(&FP_TRACKER, 3, 300);
}

#[test]
fn fork_while_threads_allocate_unwinder() {
    fork_while_allocating(&UNWIND_TRACKER, 3, 100);
}

#[test]
fn fork_while_threads_allocate_dwarf() {
    fork_while_allocating(&DWARF_TRACKER, 3, 200);
}

/// Signal handlers that allocate through a DWARF-unwinding tracker, sent
/// at random moments to a thread that allocates through another: some
/// land while that thread holds the process's unwinder, where the
/// handler's capture must not wait for it (it would wait for itself).
/// (Through the same tracker, the handler's allocation would count as
/// the tracker's own while it unwinds, and capture nothing.)
///
/// Only with the DWARF unwinder built in: without it the mode falls back
/// to the `backtrace` crate's unwinder, which is not meant to be entered
/// again from a handler that interrupted it.
#[test]
#[cfg_attr(
    not(dwarf_unwinder),
    ignore = "needs the dwarf-unwind feature (Linux x86-64)"
)]
fn handlers_allocate_while_their_thread_unwinds() {
    run_child("dwarf_signals");
}

mod dwarf_signals {
    use super::*;

    /// Allocations the handler made.
    static HANDLED: AtomicUsize = AtomicUsize::new(0);

    /// Blocks for the two trackers' allocations: glibc's `malloc` must
    /// not be interrupted by a handler that calls it, so neither the
    /// worker nor the handler allocates their blocks from it (the
    /// trackers' own tables come from it, and stop growing once the
    /// worker has warmed up).
    struct Pool {
        blocks: [core::cell::UnsafeCell<[u128; 8]>; 128],
        used: [core::sync::atomic::AtomicU64; 2],
    }

    // SAFETY: a block belongs to whoever set its bit in `used` until it
    // is freed; the bits are atomic.
    unsafe impl Sync for Pool {}

    // SAFETY: blocks are 128 bytes aligned to 16, handed out once until
    // freed; larger or more aligned requests are refused.
    unsafe impl mallocator::RawAlloc for Pool {
        fn alloc(
            &self,
            layout: core::alloc::Layout,
        ) -> Result<core::ptr::NonNull<u8>, mallocator::AllocError> {
            if layout.size() > 128 || layout.align() > 16 {
                return Err(mallocator::AllocError);
            }
            for (w, word) in self.used.iter().enumerate() {
                let mut bits = word.load(Ordering::Relaxed);
                while bits != u64::MAX {
                    let bit = (!bits).trailing_zeros();
                    let was = word.fetch_or(1 << bit, Ordering::Acquire);
                    if was & (1 << bit) == 0 {
                        let block = self.blocks[w * 64 + bit as usize].get();
                        return Ok(core::ptr::NonNull::new(block.cast()).unwrap());
                    }
                    bits = was | (1 << bit);
                }
            }
            Err(mallocator::AllocError)
        }

        unsafe fn free(&self, ptr: core::ptr::NonNull<u8>) {
            let i = (ptr.as_ptr() as usize - self.blocks.as_ptr() as usize) / 128;
            self.used[i / 64].fetch_and(!(1 << (i % 64)), Ordering::Release);
        }
    }

    const fn pool() -> Pool {
        Pool {
            blocks: [const { core::cell::UnsafeCell::new([0; 8]) }; 128],
            used: [const { core::sync::atomic::AtomicU64::new(0) }; 2],
        }
    }
    static WORKER_POOL: Pool = pool();
    static HANDLER_POOL: Pool = pool();

    /// The worker's tracker and the handler's.
    static WORKER_TRACKER: Backtracing<'static> = Backtracing::with_config(
        Valloc::new(&WORKER_POOL),
        Config {
            stack_mode: StackMode::Dwarf,
            ..Config::DEFAULT
        },
    );
    static HANDLER_TRACKER: Backtracing<'static> = Backtracing::with_config(
        Valloc::new(&HANDLER_POOL),
        Config {
            stack_mode: StackMode::Dwarf,
            ..Config::DEFAULT
        },
    );

    extern "C" fn handler(_: libc::c_int) {
        let v = HANDLER_TRACKER.valloc();
        // SAFETY: `p` came from `v`.
        unsafe { v.free(v.malloc(8, 40)) };
        HANDLED.fetch_add(1, Ordering::Relaxed);
    }

    pub fn run() {
        // SAFETY: installs a handler that only allocates and frees
        // through the tracker (which handles interrupting itself).
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = handler as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            assert_eq!(
                libc::sigaction(libc::SIGUSR1, &sa, core::ptr::null_mut()),
                0
            );
        }
        // A handler waiting for the lock its own thread holds would hang
        // the child: end it with a status the test reports instead.
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(60));
            // SAFETY: ends the process at once, allocating nothing.
            unsafe { libc::_exit(4) };
        });
        let stop = AtomicBool::new(false);
        let me = AtomicUsize::new(0);
        const WANTED: usize = 1000;
        std::thread::scope(|s| {
            let worker = s.spawn(|| {
                let v = WORKER_TRACKER.valloc();
                // The handler tracker's tables, made here (not in a
                // handler).
                handler(0);
                HANDLED.store(0, Ordering::Relaxed);
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // One call site: after the first allocation, the
                    // worker's tracker needs no more memory for its
                    // tables, so no handler lands inside glibc's malloc.
                    // SAFETY: `p` came from `v`.
                    unsafe { v.free(v.malloc(8, 16 + n % 100)) };
                    n += 1;
                    if n == 1000 {
                        // SAFETY: no preconditions.
                        me.store(unsafe { libc::pthread_self() } as usize, Ordering::Release);
                    }
                }
                n
            });
            while me.load(Ordering::Acquire) == 0 {
                std::thread::yield_now();
            }
            let target = me.load(Ordering::Acquire) as libc::pthread_t;
            // Signals until enough were handled (each one a capture that
            // may land in the worker's unwind) or the time is up.
            let deadline = Instant::now() + Duration::from_secs(20);
            while HANDLED.load(Ordering::Relaxed) < WANTED && Instant::now() < deadline {
                // SAFETY: the worker runs until `stop` is set below.
                assert_eq!(unsafe { libc::pthread_kill(target, libc::SIGUSR1) }, 0);
                std::thread::sleep(Duration::from_micros(100));
            }
            stop.store(true, Ordering::Relaxed);
            assert!(worker.join().unwrap() > 0);
        });
        let handled = HANDLED.load(Ordering::Relaxed);
        assert!(handled >= WANTED, "only {handled} signals handled");
        assert_eq!(WORKER_TRACKER.live_blocks(), 0);
        assert_eq!(HANDLER_TRACKER.live_blocks(), 0);
    }
}

// Stress tests: long runs of the cases above and more, ignored by default
// (`scripts/stress.sh` runs them in release mode).

/// A tracker for the stress tests.
static STRESS_TRACKER: Backtracing<'static> = Backtracing::new(Valloc::libc());

#[test]
#[ignore = "stress: scripts/stress.sh"]
fn stress_many_threads_free_each_others_blocks() {
    const THREADS: usize = 16;
    const PER_THREAD: usize = 200_000;
    let before = STRESS_TRACKER.error_count();
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| std::sync::mpsc::sync_channel::<usize>(1024))
        .unzip();
    std::thread::scope(|s| {
        for (i, rx) in receivers.into_iter().enumerate() {
            let tx = senders[(i + 1) % THREADS].clone();
            s.spawn(move || {
                let v = STRESS_TRACKER.valloc();
                for n in 0..PER_THREAD {
                    tx.send(v.malloc(8, 16 + (n * 7 + i) % 300) as usize)
                        .unwrap();
                    // SAFETY: every address sent came from `v`, once.
                    unsafe { v.free(rx.recv().unwrap() as *mut u8) };
                }
                drop(tx);
                while let Ok(p) = rx.recv() {
                    // SAFETY: as above.
                    unsafe { v.free(p as *mut u8) };
                }
            });
        }
        drop(senders);
    });
    assert_eq!(STRESS_TRACKER.error_count(), before);
}

#[test]
#[ignore = "stress: scripts/stress.sh"]
fn stress_thread_churn_with_allocating_tls_destructors() {
    struct AllocatesOnDrop;
    impl Drop for AllocatesOnDrop {
        fn drop(&mut self) {
            let v = STRESS_TRACKER.valloc();
            // SAFETY: freeing what `v` returned.
            unsafe { v.free(v.malloc(8, 64)) };
        }
    }
    std::thread_local! {
        static TLS: AllocatesOnDrop = const { AllocatesOnDrop };
    }
    let before = STRESS_TRACKER.error_count();
    for _ in 0..500 {
        let threads: Vec<_> = (0..40)
            .map(|_| {
                std::thread::spawn(|| {
                    TLS.with(|_| {});
                    let v = STRESS_TRACKER.valloc();
                    // SAFETY: freeing what `v` returned.
                    unsafe { v.free(v.malloc(16, 100)) };
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
    assert_eq!(STRESS_TRACKER.error_count(), before);
}

#[test]
#[ignore = "stress: scripts/stress.sh"]
fn stress_fork_while_threads_allocate() {
    fork_while_allocating(&FP_TRACKER, 4, 3000);
    fork_while_allocating(&UNWIND_TRACKER, 4, 1000);
}

#[test]
#[ignore = "stress: scripts/stress.sh"]
fn stress_tiny_thread_stacks() {
    // 16 KiB: the smallest stack glibc allows (PTHREAD_STACK_MIN).
    let threads: Vec<_> = (0..64)
        .map(|i| {
            std::thread::Builder::new()
                .stack_size(16 << 10)
                .spawn(move || {
                    let t = Backtracing::new(Valloc::libc());
                    let v = t.valloc();
                    for n in 0..2000 {
                        // SAFETY: freeing what `v` returned.
                        unsafe { v.free(v.malloc(8, 8 + (n + i) % 100)) };
                    }
                    assert!(t.report().is_clean());
                })
                .unwrap()
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
#[ignore = "stress: scripts/stress.sh"]
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn stress_signal_handlers_on_an_alternate_stack() {
    for _ in 0..200 {
        run_child("altstack");
    }
}
