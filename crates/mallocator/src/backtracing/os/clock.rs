//! The clock that timestamps events.

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
