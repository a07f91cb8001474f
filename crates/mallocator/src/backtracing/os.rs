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
//! * [`at_fork`]: run functions around `fork`.

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

/// Writes all of `bytes` (retrying short writes and interruptions); an
/// error drops the rest of the record.
#[cfg(unix)]
pub(crate) fn write_all(sink: &Sink, mut bytes: &[u8]) {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = match sink {
        Sink::Borrowed(fd) => fd.as_raw_fd(),
        Sink::Owned(fd) => fd.as_fd().as_raw_fd(),
    };
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable buffer of that length; a bad
        // descriptor only makes `write` fail.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Portable version.
#[cfg(not(unix))]
pub(crate) fn write_all(sink: &Sink, bytes: &[u8]) {
    use std::io::Write;
    let _ = match sink {
        Sink::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        }
        Sink::Stderr => std::io::stderr().lock().write_all(bytes),
        Sink::File(file) => (&*file).write_all(bytes),
    };
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
