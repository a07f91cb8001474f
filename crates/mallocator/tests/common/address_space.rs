//! Tests of what runs out of memory, under an address-space limit
//! (`RLIMIT_AS`): included by path into the unit tests of `mallocator`
//! and of `mallocator-c`, which have the same need. Linux only.

/// Runs `f` with this process's address space limited to what it uses
/// now (`VmSize`) and `headroom` bytes more (never above the hard
/// limit), then lifts the limit: for a test of what runs out of memory,
/// in a child process (the limit is the process's). Such a test first
/// asks [`address_space_limits_hold`].
pub fn with_address_space_limited<R>(headroom: u64, f: impl FnOnce() -> R) -> R {
    assert!(limit_address_space(address_space_used() + headroom));
    let result = f();
    assert!(limit_address_space(u64::MAX));
    result
}

/// Whether this system enforces an address-space limit (`RLIMIT_AS`):
/// an emulator such as `qemu-user`, which runs the cross-compiled tests,
/// accepts the limit and ignores it. Tried in a child process, which maps
/// 64 MiB under a limit of what it uses and 4 MiB more.
pub fn address_space_limits_hold() -> bool {
    // Under an emulator's runner, not tried: a child forked from the
    // emulated, many-threaded test process can hang in the emulator's own
    // locks (seen with qemu-user), and qemu-user ignores the limit anyway.
    if std::env::var_os("MALLOCATOR_TEST_RUNNER").is_some() {
        return false;
    }
    let used = address_space_used();
    // SAFETY: the child calls only async-signal-safe functions
    // (`getrlimit`, `setrlimit`, `mmap`, `_exit`), takes no lock and never
    // returns into the test harness.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork");
        if pid == 0 {
            if !limit_address_space(used + (4 << 20)) {
                libc::_exit(2);
            }
            let p = libc::mmap(
                core::ptr::null_mut(),
                64 << 20,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            libc::_exit(if p == libc::MAP_FAILED { 0 } else { 1 });
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }
}

/// Bytes of address space this process uses now (`VmSize`).
fn address_space_used() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Sets this process's address-space limit to `bytes` (never above its
/// hard limit; `u64::MAX` lifts it): false when the system refused.
/// Allocates nothing and never panics (the probe's forked child calls it).
fn limit_address_space(bytes: u64) -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid `rlimit` to fill, then to set.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_AS, &mut lim) != 0 {
            return false;
        }
        lim.rlim_cur = bytes.min(lim.rlim_max);
        libc::setrlimit(libc::RLIMIT_AS, &lim) == 0
    }
}
