//! The current thread's stack: its bounds, and the signal alternate
//! stack's when a handler runs on it.

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
