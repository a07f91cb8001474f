//! The platform layer: everything the tracker needs from the operating
//! system, behind one small internal API. Under Miri (which cannot read
//! real stack frames, resolve symbols or write to file descriptors of its
//! host) each function has a stand-in, so the logic above it stays
//! testable there.
//!
//! * [`stack_bounds`]: the current thread's stack `[low, high)`;
//! * [`alt_stack_bounds`]: the signal alternate stack, when running on it;
//! * [`frame_pointer`]: the frame-pointer register of the caller;
//! * [`unwind`]: the `backtrace` crate's unwinder (or the stand-in);
//! * [`symbolize`]: function, file and line of an instruction pointer;
//! * [`with_code_site`]: the object and symbol an address is in (`dladdr`);
//! * [`Sink`] / [`write_all`]: whole-record writes to a file or stream;
//! * [`at_exit`]: run a function when the process exits;
//! * [`at_fork`]: run functions around `fork`;
//! * [`ticks`] / [`CLOCK`]: a monotonic clock for event timestamps;
//! * [`process`]: pid, start time, executable and working directory;
//! * [`for_each_module`]: the loaded objects with their build-ids;
//! * [`for_each_root_range`]: memory that holds a program's pointers
//!   (writable data of every object, this thread's thread-local storage).

use core::mem::MaybeUninit;

use super::report::Frame;
use super::sync::SpinLock;

/// The current thread's stack bounds `(low, high)`, or `None` when the
/// platform cannot tell (the frame-pointer walk is then disabled).
#[cfg(all(any(target_os = "linux", target_os = "android"), not(miri)))]
pub(crate) fn stack_bounds() -> Option<(usize, usize)> {
    // SAFETY: an all-zero `pthread_attr_t` is a valid output buffer for
    // `pthread_getattr_np`, which initialises it.
    let mut attr: libc::pthread_attr_t = unsafe { core::mem::zeroed() };
    // SAFETY: `attr` is a writable attribute object, `pthread_self()` the
    // calling thread.
    if unsafe { libc::pthread_getattr_np(libc::pthread_self(), &mut attr) } != 0 {
        return None;
    }
    let mut addr = core::ptr::null_mut();
    let mut size = 0usize;
    // SAFETY: `attr` was initialised above; the outputs are writable.
    let rc = unsafe { libc::pthread_attr_getstack(&attr, &mut addr, &mut size) };
    // SAFETY: `attr` was initialised by `pthread_getattr_np` and is
    // destroyed once.
    unsafe { libc::pthread_attr_destroy(&mut attr) };
    (rc == 0 && size != 0).then(|| (addr as usize, addr as usize + size))
}

/// See the Linux version.
#[cfg(all(any(target_os = "macos", target_os = "ios"), not(miri)))]
pub(crate) fn stack_bounds() -> Option<(usize, usize)> {
    // SAFETY: both functions only read the calling thread's descriptor.
    let (top, size) = unsafe {
        let me = libc::pthread_self();
        (
            libc::pthread_get_stackaddr_np(me) as usize,
            libc::pthread_get_stacksize_np(me),
        )
    };
    (top != 0 && size != 0).then(|| (top - size, top))
}

/// See the Linux version.
#[cfg(all(windows, not(miri)))]
pub(crate) fn stack_bounds() -> Option<(usize, usize)> {
    let (mut low, mut high) = (0usize, 0usize);
    // SAFETY: both outputs are writable; the call has no other requirement.
    unsafe {
        windows_sys::Win32::System::Threading::GetCurrentThreadStackLimits(&mut low, &mut high)
    };
    (low < high).then_some((low, high))
}

/// See the Linux version (no portable way on this platform, or Miri).
#[cfg(any(
    miri,
    not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        windows
    ))
))]
pub(crate) fn stack_bounds() -> Option<(usize, usize)> {
    None
}

/// The bounds `(low, high)` of the signal alternate stack when the
/// calling code runs on it (a signal handler installed with
/// `SA_ONSTACK`), else `None`. One system call: only asked when the code
/// runs off its thread's stack.
#[cfg(all(unix, not(miri)))]
pub(crate) fn alt_stack_bounds() -> Option<(usize, usize)> {
    // SAFETY: an all-zero `stack_t` is a valid output buffer.
    let mut current: libc::stack_t = unsafe { core::mem::zeroed() };
    // SAFETY: a null new stack only queries; `current` is writable.
    let rc = unsafe { libc::sigaltstack(core::ptr::null(), &mut current) };
    let on = rc == 0 && current.ss_flags & libc::SS_ONSTACK != 0 && current.ss_size != 0;
    on.then(|| {
        let low = current.ss_sp as usize;
        (low, low.saturating_add(current.ss_size))
    })
}

/// No alternate signal stacks here (Windows, Miri).
#[cfg(any(not(unix), miri))]
pub(crate) fn alt_stack_bounds() -> Option<(usize, usize)> {
    None
}

/// The frame-pointer register of the function this is inlined into, or 0
/// where there is none (other architectures, Miri).
#[inline(always)]
pub(crate) fn frame_pointer() -> usize {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        let fp: usize;
        // SAFETY: reads a register; no memory access.
        unsafe {
            core::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags))
        };
        fp
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    {
        let fp: usize;
        // SAFETY: reads a register; no memory access.
        unsafe {
            core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags))
        };
        fp
    }
    #[cfg(any(miri, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
    {
        0
    }
}

/// The instruction, stack and frame pointers at this point of the
/// function this is inlined into: where an unwind by call-frame
/// information starts (the instruction pointer is that of the next
/// instruction, still inside the same function, at the same stack
/// depth).
#[cfg(dwarf_unwinder)]
#[inline(always)]
pub(crate) fn registers() -> (usize, usize, usize) {
    let (pc, sp, bp): (usize, usize, usize);
    // SAFETY: reads three registers and the instruction pointer; no
    // memory access.
    unsafe {
        core::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        )
    };
    (pc, sp, bp)
}

/// The stack pointer of the function this is inlined into: a lower bound
/// for every live frame above it. Read from the register, not taken as
/// the address of a local: with AddressSanitizer's use-after-return
/// detection, locals live on a separate "fake stack" on the heap.
#[inline(always)]
pub(crate) fn stack_pointer_estimate() -> usize {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        let sp: usize;
        // SAFETY: reads a register; no memory access.
        unsafe {
            core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
        };
        sp
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    {
        let sp: usize;
        // SAFETY: reads a register; no memory access.
        unsafe {
            core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
        };
        sp
    }
    #[cfg(any(miri, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
    {
        let marker = 0u8;
        core::hint::black_box(&marker) as *const u8 as usize
    }
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
#[cfg(miri)]
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
/// crate's resolver and its global lock.
#[cfg(not(miri))]
pub(crate) fn symbolize(ip: usize, out: &mut Vec<Frame>) {
    let _symbolizing = SYMBOLIZING.lock();
    let before = out.len();
    // A return address points after the call; the call itself is 1 byte
    // earlier, which gives the right line.
    let lookup = ip.saturating_sub(1) as *mut core::ffi::c_void;
    backtrace::resolve(lookup, |sym| {
        out.push(Frame {
            ip,
            function: sym.name().map(|n| format!("{n:#}")),
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

/// What the dynamic loader knows about the code at an address: the path
/// of the object it is in, the nearest dynamic symbol at or below it, and
/// the address [`CodeSite::offset`] counts from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CodeSite<'a> {
    /// The object's path as the loader has it (may be relative).
    pub object: &'a [u8],
    /// The symbol's name, if the address has one.
    pub symbol: Option<&'a [u8]>,
    /// The symbol's address, or the object's load address without one.
    pub base: usize,
}

/// Calls `f` with what the loader knows about `ip` (`dladdr`), or `None`
/// when it is in no known object (or on platforms without `dladdr`).
#[cfg(all(unix, not(miri)))]
pub(crate) fn with_code_site<R>(ip: usize, f: impl FnOnce(Option<CodeSite<'_>>) -> R) -> R {
    // SAFETY: `Dl_info` is plain data; all-zero is a valid output buffer.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: `dladdr` only reads the loader's tables; `info` is writable.
    let found = unsafe { libc::dladdr(ip as *const libc::c_void, &mut info) } != 0;
    if !found || info.dli_fname.is_null() {
        return f(None);
    }
    // SAFETY: `dli_fname` and `dli_sname` (when not null) are
    // NUL-terminated strings owned by the loader, which keeps them while
    // the object stays loaded; they are only used during `f`.
    let (object, symbol) = unsafe {
        (
            core::ffi::CStr::from_ptr(info.dli_fname).to_bytes(),
            (!info.dli_sname.is_null())
                .then(|| core::ffi::CStr::from_ptr(info.dli_sname).to_bytes()),
        )
    };
    let base = if symbol.is_some() {
        info.dli_saddr as usize
    } else {
        info.dli_fbase as usize
    };
    f(Some(CodeSite {
        object,
        symbol,
        base,
    }))
}

/// No `dladdr` here: every address is in no known object.
#[cfg(any(not(unix), miri))]
pub(crate) fn with_code_site<R>(_ip: usize, f: impl FnOnce(Option<CodeSite<'_>>) -> R) -> R {
    f(None)
}

/// Where whole records are written.
#[derive(Debug)]
pub(crate) enum Sink {
    /// A file descriptor the tracker does not own (never closed).
    #[cfg(unix)]
    Borrowed(std::os::fd::BorrowedFd<'static>),
    /// A file the tracker created (closed when the sink is dropped).
    #[cfg(unix)]
    Owned(std::os::fd::OwnedFd),
    /// The process's standard output.
    #[cfg(not(unix))]
    Stdout,
    /// The process's standard error.
    #[cfg(not(unix))]
    Stderr,
    /// A file the tracker opened.
    #[cfg(not(unix))]
    File(std::fs::File),
}

impl Sink {
    /// Standard output.
    pub(crate) fn stdout() -> Sink {
        #[cfg(unix)]
        // SAFETY: descriptor 1 is the process's standard output, which
        // stays open (or is replaced in place) for the process's life.
        return Sink::Borrowed(unsafe { std::os::fd::BorrowedFd::borrow_raw(1) });
        #[cfg(not(unix))]
        return Sink::Stdout;
    }

    /// Standard error.
    pub(crate) fn stderr() -> Sink {
        #[cfg(unix)]
        // SAFETY: as for descriptor 1 in `stdout`.
        return Sink::Borrowed(unsafe { std::os::fd::BorrowedFd::borrow_raw(2) });
        #[cfg(not(unix))]
        return Sink::Stderr;
    }

    /// Creates (truncates) the file at `path` (see [`create_private_file`]).
    pub(crate) fn create(path: &str) -> std::io::Result<Sink> {
        let file = create_private_file(std::path::Path::new(path))?;
        #[cfg(unix)]
        return Ok(Sink::Owned(file.into()));
        #[cfg(not(unix))]
        return Ok(Sink::File(file));
    }
}

/// Creates the file at `path`, or empties it, for writing data only its
/// owner may read (it holds addresses of the process). On Unix: created
/// with mode 0600; a symbolic link at `path` is refused rather than
/// followed (another user could aim it at a file of ours); an existing
/// file is refused unless it is a regular file owned by this user, and
/// is set to mode 0600 before it is emptied (so a file someone else put
/// there first is never written, nor truncated). Elsewhere: created or
/// truncated.
pub(crate) fn create_private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o600)
            // Never block on a FIFO without a reader: it is refused below.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?;
        let meta = file.metadata()?;
        // SAFETY: `geteuid` has no preconditions.
        let me = unsafe { libc::geteuid() };
        if !meta.is_file() || meta.uid() != me {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "exists and is not a regular file of this user",
            ));
        }
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.set_len(0)?;
        Ok(file)
    }
    #[cfg(not(unix))]
    std::fs::File::create(path)
}

/// The descriptor `sink` writes to.
#[cfg(unix)]
fn raw_fd(sink: &Sink) -> std::os::fd::RawFd {
    use std::os::fd::{AsFd, AsRawFd};
    match sink {
        Sink::Borrowed(fd) => fd.as_raw_fd(),
        Sink::Owned(fd) => fd.as_fd().as_raw_fd(),
    }
}

/// Writes all of `bytes` (retrying short writes and interruptions); an
/// error drops the rest of the record and returns false.
#[cfg(unix)]
pub(crate) fn write_all(sink: &Sink, mut bytes: &[u8]) -> bool {
    let fd = raw_fd(sink);
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable buffer of that length; a bad
        // descriptor only makes `write` fail.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        bytes = &bytes[n as usize..];
    }
    true
}

/// Writes all of `head` and then all of `tail` as one record, with one
/// system call when it can (a record's head and its bulk need not be
/// copied together first); retries short writes and interruptions. An
/// error drops the rest of the record and returns false.
#[cfg(unix)]
pub(crate) fn write_all_two<'a>(sink: &Sink, mut head: &'a [u8], mut tail: &'a [u8]) -> bool {
    let fd = raw_fd(sink);
    while !head.is_empty() {
        let parts = [
            libc::iovec {
                iov_base: head.as_ptr().cast_mut().cast(),
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: tail.as_ptr().cast_mut().cast(),
                iov_len: tail.len(),
            },
        ];
        // SAFETY: both buffers are valid and readable for their lengths,
        // and `writev` only reads them; a bad descriptor only makes it
        // fail.
        let n = unsafe { libc::writev(fd, parts.as_ptr(), 2) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        (head, tail) = unwritten(head, tail, n as usize);
    }
    write_all(sink, tail)
}

/// What is left of a record in two parts once its first `n` bytes are
/// written (`n` at most their total length).
#[cfg(unix)]
fn unwritten<'a>(head: &'a [u8], tail: &'a [u8], n: usize) -> (&'a [u8], &'a [u8]) {
    match head.get(n..) {
        Some(rest) => (rest, tail),
        None => (&[], &tail[n - head.len()..]),
    }
}

/// Portable version.
#[cfg(not(unix))]
pub(crate) fn write_all_two(sink: &Sink, head: &[u8], tail: &[u8]) -> bool {
    write_all(sink, head) && write_all(sink, tail)
}

/// Portable version.
#[cfg(not(unix))]
pub(crate) fn write_all(sink: &Sink, bytes: &[u8]) -> bool {
    use std::io::Write;
    match sink {
        Sink::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        }
        Sink::Stderr => std::io::stderr().lock().write_all(bytes),
        Sink::File(file) => (&*file).write_all(bytes),
    }
    .is_ok()
}

/// Runs `f` when the process exits normally (C `atexit`).
#[cfg(all(unix, not(miri)))]
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function valid for the whole program.
    unsafe { libc::atexit(f) };
}

/// Runs `f` when the process exits normally (the C runtime's `atexit`).
#[cfg(all(windows, not(miri)))]
pub(crate) fn at_exit(f: extern "C" fn()) {
    extern "C" {
        fn atexit(cb: extern "C" fn()) -> i32;
    }
    // SAFETY: `f` is a plain function valid for the whole program.
    unsafe { atexit(f) };
}

/// No exit hooks here (Miri, other platforms): the report must be asked
/// for explicitly.
#[cfg(any(miri, not(any(unix, windows))))]
pub(crate) fn at_exit(_f: extern "C" fn()) {}

/// Runs `f` with every signal blocked for this thread, so that no
/// handler runs on it meanwhile.
#[cfg(all(unix, not(miri)))]
pub(crate) fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: `sigset_t`s are plain data, filled by `sigfillset` and by
    // `pthread_sigmask`; blocking and restoring this thread's mask has no
    // other effect.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        let result = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        result
    }
}

/// No signal handlers interrupt a thread here (Windows), or none are
/// run (Miri).
#[cfg(any(not(unix), miri))]
pub(crate) fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Runs `prepare` in the forking thread before every `fork`, `parent`
/// and `child` after it on each side (`pthread_atfork`).
#[cfg(all(unix, not(miri)))]
pub(crate) fn at_fork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    // SAFETY: plain functions valid for the whole program.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// No `fork` here (Windows), or no way to hook it (Miri).
#[cfg(any(not(unix), miri))]
pub(crate) fn at_fork(
    _prepare: extern "C" fn(),
    _parent: extern "C" fn(),
    _child: extern "C" fn(),
) {
}

/// What [`ticks`] counts: the clock's id in the compact log's header (1:
/// `CLOCK_MONOTONIC` nanoseconds, 2: Windows performance-counter ticks)
/// and its ticks per second (0: ask [`ticks_per_second`]).
#[cfg(not(windows))]
pub(crate) const CLOCK: u8 = 1;
#[cfg(windows)]
pub(crate) const CLOCK: u8 = 2;

/// A monotonic, system-wide timestamp (see [`CLOCK`]): one vDSO call on
/// Linux, no system call.
#[cfg(unix)]
#[inline]
pub(crate) fn ticks() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// A monotonic, system-wide timestamp (see [`CLOCK`]).
#[cfg(windows)]
#[inline]
pub(crate) fn ticks() -> u64 {
    let mut t = 0i64;
    // SAFETY: `t` is writable; the call cannot fail on Windows XP or later.
    unsafe { windows_sys::Win32::System::Performance::QueryPerformanceCounter(&mut t) };
    t as u64
}

/// Elsewhere: nanoseconds since the first call (monotonic, per process).
#[cfg(not(any(unix, windows)))]
pub(crate) fn ticks() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// Units of [`ticks`] per second.
pub(crate) fn ticks_per_second() -> u64 {
    #[cfg(windows)]
    {
        let mut f = 0i64;
        // SAFETY: `f` is writable; the call cannot fail on XP or later.
        unsafe { windows_sys::Win32::System::Performance::QueryPerformanceFrequency(&mut f) };
        f as u64
    }
    #[cfg(not(windows))]
    1_000_000_000
}

/// What the compact log's header says about the process.
pub(crate) struct Process {
    pub pid: u32,
    /// Wall-clock time now, nanoseconds since the Unix epoch.
    pub now_ns: u64,
}

/// The process's id and the wall-clock time (0 under Miri, whose
/// isolation has no wall clock).
pub(crate) fn process() -> Process {
    #[cfg(miri)]
    let now_ns = 0;
    #[cfg(not(miri))]
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Process {
        pid: std::process::id(),
        now_ns,
    }
}

/// Longest path [`executable`] and [`working_directory`] report.
pub(crate) const PATH_MAX: usize = 4096;

/// Writes the executable's absolute path into `buf`, returning its
/// length (0 when unknown). No allocation: it runs under the log lock.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(miri)))]
pub(crate) fn executable(buf: &mut [u8; PATH_MAX]) -> usize {
    // SAFETY: the path is NUL-terminated; `buf` is writable for its length.
    let n = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 || n as usize >= buf.len() {
        0
    } else {
        n as usize
    }
}

/// Unknown on this platform (the log says so with an empty path).
#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(miri))))]
pub(crate) fn executable(_buf: &mut [u8; PATH_MAX]) -> usize {
    0
}

/// Writes the working directory into `buf`, returning its length (0
/// when unknown or too long).
#[cfg(all(unix, not(miri)))]
pub(crate) fn working_directory(buf: &mut [u8; PATH_MAX]) -> usize {
    // SAFETY: `buf` is writable for its length; `getcwd` NUL-terminates
    // what it writes, or fails.
    let p = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if p.is_null() {
        return 0;
    }
    buf.iter().position(|&b| b == 0).unwrap_or(0)
}

/// Unknown here.
#[cfg(any(not(unix), miri))]
pub(crate) fn working_directory(_buf: &mut [u8; PATH_MAX]) -> usize {
    0
}

/// A loaded object, as [`for_each_module`] reports it.
#[derive(Debug)]
pub(crate) struct Module<'a> {
    /// Load bias: an address minus this is the object file's own address.
    pub bias: usize,
    /// Lowest and one past the highest address of its loaded segments.
    pub start: usize,
    pub end: usize,
    /// The `NT_GNU_BUILD_ID` note (empty when it has none).
    pub build_id: &'a [u8],
    /// The loader's path (empty for the executable: see [`executable`]).
    pub path: &'a [u8],
    /// Its DWARF call-frame information, when it has an index of it the
    /// unwinder can read (see [`UnwindSections`]).
    #[cfg_attr(not(dwarf_unwinder), allow(dead_code))]
    pub unwind: Option<UnwindSections<'a>>,
}

/// A loaded object's DWARF call-frame information, in its mapped
/// segments: what the DWARF unwinder (`dwarf.rs`) needs of it.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(dwarf_unwinder), allow(dead_code))]
pub(crate) struct UnwindSections<'a> {
    /// `.eh_frame_hdr` (the `PT_GNU_EH_FRAME` segment), at its address.
    pub eh_frame_hdr: &'a [u8],
    /// `.eh_frame`, at its address, through the end of the loaded segment
    /// that holds it: its own length is recorded nowhere the loader maps
    /// (readers go by the index and the entries' own lengths).
    pub eh_frame: &'a [u8],
    /// The addresses of its executable segments (lowest start, highest
    /// end).
    pub text: (usize, usize),
}

/// The address of `.eh_frame` that the `.eh_frame_hdr` at `hdr_addr`
/// (whose bytes are `hdr`) points to: its version byte must be 1 and its
/// pointer encoded absolute, PC-relative or relative to the header, as 4
/// or 8 bytes (what linkers write); `None` for anything else.
// Used by the loader walk where there is one; tested everywhere.
#[cfg_attr(
    not(all(
        any(target_os = "linux", target_os = "android", target_os = "freebsd"),
        not(miri)
    )),
    allow(dead_code)
)]
pub(crate) fn eh_frame_address(hdr: &[u8], hdr_addr: usize) -> Option<usize> {
    const DW_EH_PE_OMIT: u8 = 0xff;
    if hdr.first() != Some(&1) {
        return None;
    }
    let encoding = *hdr.get(1)?;
    if encoding == DW_EH_PE_OMIT {
        return None;
    }
    let bytes = |n: usize| hdr.get(4..4 + n);
    let value: u64 = match encoding & 0x0f {
        // absptr (8 bytes on the 64-bit targets this serves), udata8, sdata8
        0x00 | 0x04 | 0x0c => u64::from_le_bytes(bytes(8)?.try_into().ok()?),
        // udata4
        0x03 => u32::from_le_bytes(bytes(4)?.try_into().ok()?) as u64,
        // sdata4
        0x0b => i32::from_le_bytes(bytes(4)?.try_into().ok()?) as i64 as u64,
        _ => return None,
    };
    let value = value as usize;
    match encoding & 0x70 {
        // absolute
        0x00 => Some(value),
        // PC-relative: from the field itself, 4 bytes into the header
        0x10 => Some(hdr_addr.wrapping_add(4).wrapping_add(value)),
        // data-relative: from the header
        0x30 => Some(hdr_addr.wrapping_add(value)),
        _ => None,
    }
}

/// Calls `f` on the loader's description of every loaded object
/// (`dl_iterate_phdr`), the executable first. The loader's own lock is
/// held during the walk, so `f` must not load or unload objects; it may
/// allocate (the loader's lock for `dl_iterate_phdr` is not the one
/// `dlopen` holds while it allocates).
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
fn for_each_object(f: &mut dyn FnMut(&libc::dl_phdr_info)) {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `&mut &mut dyn FnMut` passed below, alive
        // for the whole walk; `info` is the loader's description of one
        // object, valid during this call.
        let (f, info) = unsafe {
            (
                &mut *data.cast::<&mut dyn FnMut(&libc::dl_phdr_info)>(),
                &*info,
            )
        };
        f(info);
        0
    }
    let mut f = f;
    // SAFETY: `each` matches the callback type and only uses `data` as
    // the pointer to `f` given here, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(each),
            (&mut f as *mut &mut dyn FnMut(&libc::dl_phdr_info)).cast(),
        )
    };
}

/// A program header, as the loader describes an object.
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    target_pointer_width = "64",
    not(miri)
))]
type ProgramHeader = libc::Elf64_Phdr;
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    target_pointer_width = "32",
    not(miri)
))]
type ProgramHeader = libc::Elf32_Phdr;

/// ELF's values (the `libc` crate does not define them on every target
/// with a loader walk).
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
mod elf {
    /// The segment holding `.eh_frame_hdr`.
    pub(super) const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
    /// Segment flags: executable, readable.
    pub(super) const PF_X: u32 = 1;
    pub(super) const PF_R: u32 = 4;
}

/// An object's program headers.
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
fn program_headers(info: &libc::dl_phdr_info) -> &[ProgramHeader] {
    // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers, mapped
    // while the object is loaded (during the walk that gave `info`).
    unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
}

/// An object's path as the loader has it (empty for the executable).
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
fn object_path(info: &libc::dl_phdr_info) -> &[u8] {
    if info.dlpi_name.is_null() {
        return &[];
    }
    // SAFETY: a NUL-terminated string owned by the loader.
    unsafe { core::ffi::CStr::from_ptr(info.dlpi_name).to_bytes() }
}

/// Calls `f` on every loaded object (see [`for_each_object`]).
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
pub(crate) fn for_each_module(f: &mut dyn FnMut(&Module<'_>)) {
    for_each_object(&mut |info| {
        let bias = info.dlpi_addr as usize;
        let (mut start, mut end, mut build_id): (usize, usize, &[u8]) = (usize::MAX, 0, &[]);
        let (mut text, mut eh_frame_hdr): ((usize, usize), &[u8]) = ((usize::MAX, 0), &[]);
        for ph in program_headers(info) {
            let at = bias.wrapping_add(ph.p_vaddr as usize);
            let seg_end = at.wrapping_add(ph.p_memsz as usize);
            if ph.p_type == libc::PT_LOAD {
                start = start.min(at);
                end = end.max(seg_end);
                if ph.p_flags & elf::PF_X != 0 {
                    text = (text.0.min(at), text.1.max(seg_end));
                }
            } else if ph.p_type == elf::PT_GNU_EH_FRAME {
                // SAFETY: as the note segment below: inside a loaded,
                // readable segment while the object stays loaded.
                eh_frame_hdr =
                    unsafe { core::slice::from_raw_parts(at as *const u8, ph.p_memsz as usize) };
            } else if ph.p_type == libc::PT_NOTE && build_id.is_empty() {
                // SAFETY: a PT_NOTE segment of a loaded object lies inside
                // one of its loaded (readable) segments, `p_memsz` bytes
                // at `at`, mapped while the object stays loaded.
                let notes =
                    unsafe { core::slice::from_raw_parts(at as *const u8, ph.p_memsz as usize) };
                build_id = gnu_build_id(notes).unwrap_or(&[]);
            }
        }
        if start < end {
            f(&Module {
                bias,
                start,
                end,
                build_id,
                path: object_path(info),
                unwind: unwind_sections(info, eh_frame_hdr, text),
            });
        }
    });
}

/// The unwind sections of the object `info` describes, given its
/// `.eh_frame_hdr` and executable range: `None` without them, or when the
/// header's pointer leads outside every readable loaded segment.
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
fn unwind_sections<'a>(
    info: &'a libc::dl_phdr_info,
    eh_frame_hdr: &'a [u8],
    text: (usize, usize),
) -> Option<UnwindSections<'a>> {
    if eh_frame_hdr.is_empty() || text.0 >= text.1 {
        return None;
    }
    let eh_frame = eh_frame_address(eh_frame_hdr, eh_frame_hdr.as_ptr() as usize)?;
    let bias = info.dlpi_addr as usize;
    let segment_end = program_headers(info).iter().find_map(|ph| {
        let at = bias.wrapping_add(ph.p_vaddr as usize);
        let end = at.wrapping_add(ph.p_memsz as usize);
        (ph.p_type == libc::PT_LOAD
            && ph.p_flags & elf::PF_R != 0
            && at <= eh_frame
            && eh_frame < end)
            .then_some(end)
    })?;
    // SAFETY: `eh_frame..segment_end` lies inside a loaded, readable
    // segment of the object, mapped while it stays loaded.
    let eh_frame =
        unsafe { core::slice::from_raw_parts(eh_frame as *const u8, segment_end - eh_frame) };
    Some(UnwindSections {
        eh_frame_hdr,
        eh_frame,
        text,
    })
}

/// No loader walk here: the log has no module map (frames stay raw
/// unless the reader is told where the objects are).
#[cfg(not(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
)))]
pub(crate) fn for_each_module(_f: &mut dyn FnMut(&Module<'_>)) {}

/// The descriptor of the `NT_GNU_BUILD_ID` note in `notes` (a note
/// segment: `namesz, descsz, type` as 32-bit words, then the name and the
/// descriptor, each padded to 4 bytes); `None` when absent or malformed.
// Used by the loader walk where there is one; tested everywhere.
#[cfg_attr(
    not(all(
        any(target_os = "linux", target_os = "android", target_os = "freebsd"),
        not(miri)
    )),
    allow(dead_code)
)]
pub(crate) fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    let pad = |n: usize| n.checked_add(3).map(|n| n & !3);
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let name_end = 12usize.checked_add(pad(namesz as usize)?)?;
        let desc_end = name_end.checked_add(pad(descsz as usize)?)?;
        let name = notes.get(12..12 + namesz as usize)?;
        let desc = notes.get(name_end..name_end.checked_add(descsz as usize)?)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc);
        }
        notes = notes.get(desc_end..)?;
    }
    None
}

/// Whether [`for_each_root_range`] can list the roots here.
pub(crate) const ROOTS_KNOWN: bool = cfg!(all(
    any(target_os = "linux", target_os = "android"),
    not(miri)
));

/// Runs `f` holding the loader's lock (the one `dl_iterate_phdr` takes,
/// recursive in glibc, so `f` may walk the objects again). A thread that
/// allocates inside its own `dl_iterate_phdr` callback (the unwinder's
/// library list does) holds that lock and then wants the tracker's: the
/// tracker takes the loader's lock first wherever it needs both.
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
pub(crate) fn with_loader_locked<R>(f: impl FnOnce() -> R) -> R {
    unsafe extern "C" fn once(
        _info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `&mut dyn FnMut()` passed below, alive for
        // the walk.
        let run = unsafe { &mut *data.cast::<&mut dyn FnMut()>() };
        run();
        1 // the first object is enough: the lock is what is wanted
    }
    let mut f = Some(f);
    let mut result = None;
    let mut run = || {
        if let Some(f) = f.take() {
            result = Some(f());
        }
    };
    let mut run: &mut dyn FnMut() = &mut run;
    // SAFETY: `once` matches the callback type and uses `data` only as the
    // pointer to `run`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(once), (&mut run as *mut &mut dyn FnMut()).cast()) };
    // No object at all (impossible in a running program): run unlocked.
    let mut run_anyway = f;
    result.unwrap_or_else(|| (run_anyway.take().expect("runs once"))())
}

/// No loader lock to order with here.
#[cfg(not(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
)))]
pub(crate) fn with_loader_locked<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Calls `f(start, len)` on every range of memory a leak scan treats as
/// a root, besides the stack: the writable loaded segments (data, BSS) of
/// every object but the C library, and the calling thread's thread-local
/// storage block of each object that has one. Returns false where this
/// is not known (the report then does not classify reachability). The
/// ranges are mapped and readable while `f` runs (the loader's lock is
/// held: `f` must not load or unload objects).
///
/// The C library's data is left out because it holds `malloc`'s own
/// bookkeeping: its arena's pointer to the top chunk, for one, points just
/// past the last block handed out, inside a block whose size was not a
/// multiple of 16, which would make that block look possibly lost instead
/// of lost. A program pointer kept only in the C library's data (a
/// buffer given to `setvbuf`) is missed the same way.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(miri)))]
pub(crate) fn for_each_root_range(f: &mut dyn FnMut(usize, usize)) -> bool {
    for_each_object(&mut |info| {
        let bias = info.dlpi_addr as usize;
        let is_libc = super::trim::is_c_library(object_path(info));
        for ph in program_headers(info) {
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_W != 0 && !is_libc {
                f(bias.wrapping_add(ph.p_vaddr as usize), ph.p_memsz as usize);
            } else if ph.p_type == libc::PT_TLS && !info.dlpi_tls_data.is_null() {
                // This thread's copy of the object's TLS block (null when
                // the thread has not touched a dynamically loaded one).
                f(info.dlpi_tls_data as usize, ph.p_memsz as usize);
            }
        }
    });
    true
}

/// Not known here: no reachability classification.
#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(miri))))]
pub(crate) fn for_each_root_range(_f: &mut dyn FnMut(usize, usize)) -> bool {
    false
}

/// Calls `f` with every aligned word in `[start, start + len)`.
///
/// # Safety
/// The range must be readable memory for the whole call.
pub(crate) unsafe fn for_each_word(start: usize, len: usize, f: &mut dyn FnMut(usize)) {
    const WORD: usize = core::mem::size_of::<usize>();
    let end = start.saturating_add(len);
    let mut at = start.next_multiple_of(WORD);
    while at.saturating_add(WORD) <= end {
        // SAFETY: `[at, at + WORD)` lies in the range, readable by the
        // contract, and is aligned.
        f(unsafe { read_word(at) });
        at += WORD;
    }
}

/// Reads the word at `at` with a plain load the compiler cannot see
/// into: a leak scan reads memory it does not own on purpose (a global's
/// padding, which AddressSanitizer poisons; a block another thread is
/// writing, which ThreadSanitizer would call a race), so the load must
/// not be instrumented, and must not be assumed anything about.
///
/// # Safety
/// `at` is aligned and the word there is readable.
#[inline(always)]
unsafe fn read_word(at: usize) -> usize {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        let v: usize;
        // SAFETY: a load from readable memory (the caller's contract);
        // it touches no other state.
        unsafe {
            core::arch::asm!("mov {v}, qword ptr [{at}]", at = in(reg) at, v = out(reg) v,
                options(nostack, readonly, preserves_flags))
        };
        v
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    {
        let v: usize;
        // SAFETY: as above.
        unsafe {
            core::arch::asm!("ldr {v}, [{at}]", at = in(reg) at, v = out(reg) v,
                options(nostack, readonly, preserves_flags))
        };
        v
    }
    #[cfg(any(miri, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
    // SAFETY: the caller's contract.
    unsafe {
        core::ptr::read_volatile(at as *const usize)
    }
}

/// Ends the process now with `status`, without running the remaining
/// exit hooks (for an exit hook that decides the status; calling `exit`
/// again from inside one is undefined). C stdio buffers are flushed.
#[cfg(unix)]
pub(crate) fn exit_now(status: u8) -> ! {
    // SAFETY: flushing every stdio stream and ending the process have no
    // preconditions.
    unsafe {
        libc::fflush(core::ptr::null_mut());
        libc::_exit(status as libc::c_int)
    }
}

/// Ends the process now with `status` (see the Unix version).
#[cfg(windows)]
pub(crate) fn exit_now(status: u8) -> ! {
    // SAFETY: ends the process; no preconditions.
    unsafe { windows_sys::Win32::System::Threading::ExitProcess(status as u32) }
}

/// Ends the process now with `status`.
#[cfg(not(any(unix, windows)))]
pub(crate) fn exit_now(status: u8) -> ! {
    std::process::exit(status as i32)
}

/// In an exit hook: the stack pointer of the code that called the C
/// library's `exit` (the canonical frame address of `exit`'s own frame),
/// found by unwinding; `None` when `exit` is not on the stack. A leak
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
        let in_exit = with_code_site(ip, |site| site.and_then(|s| s.symbol) == Some(&b"exit"[..]));
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

/// The registers a function must preserve for its caller (x86-64: rbx,
/// rbp, r12-r15; AArch64: x19-x29), as they are where this is inlined:
/// a leak scan's roots, since a caller may keep a pointer there across a
/// call. A value the callers in between saved on their own stack frames
/// to use the register themselves is not among them. Zero where not
/// known.
pub(crate) type Registers = [usize; 11];

/// See [`Registers`].
#[inline(always)]
pub(crate) fn callee_saved_registers() -> Registers {
    #[allow(unused_mut)] // written only where the architecture is known
    let mut r: Registers = [0; 11];
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: moves between registers and locals; no memory or flags touched.
    unsafe {
        core::arch::asm!(
            "mov {0}, rbx", "mov {1}, rbp", "mov {2}, r12", "mov {3}, r13", "mov {4}, r14", "mov {5}, r15",
            out(reg) r[0], out(reg) r[1], out(reg) r[2], out(reg) r[3], out(reg) r[4], out(reg) r[5],
            options(nomem, nostack, preserves_flags)
        );
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    // SAFETY: as above.
    unsafe {
        core::arch::asm!(
            "mov {0}, x19", "mov {1}, x20", "mov {2}, x21", "mov {3}, x22", "mov {4}, x23", "mov {5}, x24",
            "mov {6}, x25", "mov {7}, x26", "mov {8}, x27", "mov {9}, x28", "mov {10}, x29",
            out(reg) r[0], out(reg) r[1], out(reg) r[2], out(reg) r[3], out(reg) r[4], out(reg) r[5],
            out(reg) r[6], out(reg) r[7], out(reg) r[8], out(reg) r[9], out(reg) r[10],
            options(nomem, nostack, preserves_flags)
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::{eh_frame_address, gnu_build_id};

    #[test]
    fn eh_frame_pointer_encodings() {
        // version 1, PC-relative sdata4 (what GNU ld writes): from the
        // field, 4 bytes into the header.
        let hdr = [1, 0x1b, 0x03, 0x3b, 0x10, 0, 0, 0];
        assert_eq!(eh_frame_address(&hdr, 0x1000), Some(0x1014));
        let back = [&[1u8, 0x1b, 0x03, 0x3b][..], &(-0x20i32).to_le_bytes()].concat();
        assert_eq!(eh_frame_address(&back, 0x1000), Some(0x1000 + 4 - 0x20));
        // data-relative udata4; absolute udata8
        assert_eq!(
            eh_frame_address(&[1, 0x33, 0, 0, 8, 0, 0, 0], 0x1000),
            Some(0x1008)
        );
        let abs = [&[1u8, 0x04, 0, 0][..], &0x7777_0000u64.to_le_bytes()].concat();
        assert_eq!(eh_frame_address(&abs, 0x1000), Some(0x7777_0000));
        // Refused: another version, an omitted pointer, an encoding not
        // handled (uleb128, text-relative), a header cut short.
        assert_eq!(eh_frame_address(&[2, 0x1b, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1, 0xff, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1, 0x01, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1, 0x2b, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1, 0x1b, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[], 0), None);
    }

    /// A note: namesz, descsz, type (native-endian words), then the name
    /// and the descriptor, each padded to 4 bytes.
    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        for w in [name.len() as u32, desc.len() as u32, kind] {
            n.extend_from_slice(&w.to_ne_bytes());
        }
        for part in [name, desc] {
            n.extend_from_slice(part);
            n.resize(n.len().next_multiple_of(4), 0);
        }
        n
    }

    #[test]
    fn build_ids_are_found_among_other_notes_and_bad_notes_are_refused() {
        let id = [0xab, 0xcd, 0xef, 0x01, 0x23];
        let mut notes = note(b"GNU\0", 1, &[9; 16]); // an ABI tag first
        notes.extend(note(b"GNU\0", 3, &id));
        assert_eq!(gnu_build_id(&notes), Some(&id[..]));
        // Another vendor's type 3 is not a build-id.
        assert_eq!(gnu_build_id(&note(b"Go\0\0", 3, &id)), None);
        // Cut short, or sizes that run past the end: no answer, no panic.
        assert_eq!(gnu_build_id(&notes[..notes.len() - 6]), None);
        let mut huge = note(b"GNU\0", 3, &id);
        huge[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(gnu_build_id(&huge), None);
        assert_eq!(gnu_build_id(&[]), None);
    }

    /// After a short write, what is left of a two-part record is exactly
    /// the record's unwritten bytes.
    #[test]
    #[cfg(unix)]
    fn a_short_write_leaves_the_rest_of_both_parts() {
        use super::unwritten;
        let (head, tail) = (b"head".as_slice(), b"and tail".as_slice());
        let whole = [head, tail].concat();
        for n in 0..=whole.len() {
            let (h, t) = unwritten(head, tail, n);
            assert_eq!([h, t].concat(), whole[n..], "after {n} bytes");
        }
        assert_eq!(unwritten(&[], tail, 3), (&[][..], &tail[3..]));
    }

    /// A record in two parts reaches a pipe whole and in order, larger
    /// than the pipe holds, with either part empty too.
    #[test]
    #[cfg(all(unix, not(miri)))]
    fn two_part_records_are_written_whole() {
        use super::{write_all_two, Sink};
        use std::io::Read;
        use std::os::fd::{FromRawFd, OwnedFd};
        let head: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let tail: Vec<u8> = (0..150_000u32).map(|i| (i % 241) as u8).collect();
        for (head, tail) in [
            (&head[..], &tail[..]),
            (&[][..], &tail[..]),
            (&head[..], &[][..]),
        ] {
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for the two descriptors.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: both descriptors are fresh and owned here only.
            let (reader, writer) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            let read_all = std::thread::spawn(move || {
                let mut got = Vec::new();
                std::fs::File::from(reader).read_to_end(&mut got).unwrap();
                got
            });
            let sink = Sink::Owned(writer);
            assert!(write_all_two(&sink, head, tail));
            drop(sink);
            assert_eq!(read_all.join().unwrap(), [head, tail].concat());
        }
    }
}
