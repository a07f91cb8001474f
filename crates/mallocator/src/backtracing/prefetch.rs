//! Asking the processor to start loading a cache line that the thread
//! will read soon, so that the wait for memory overlaps other work.
//!
//! A prefetch is only a hint: it never faults and has no effect the
//! program can observe, whatever the address (unmapped, freed, not yet
//! written), so the address may come from a racy or stale reading.

/// Starts loading the cache line holding `addr` into the nearest cache;
/// does nothing on targets without a prefetch instruction here, and
/// under Miri.
#[inline(always)]
pub(crate) fn prefetch(addr: usize) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: PREFETCHT0 (SSE, which every x86-64 processor has) reads
    // nothing the program can see and never faults, for any address.
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(addr as *const i8);
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    // SAFETY: PRFM is a hint: it never faults, for any address, and
    // changes no register, flag or memory the program can see.
    unsafe {
        core::arch::asm!(
            "prfm pldl1keep, [{addr}]",
            addr = in(reg) addr,
            options(nostack, preserves_flags, readonly)
        );
    }
    #[cfg(any(not(any(target_arch = "x86_64", target_arch = "aarch64")), miri))]
    let _ = addr;
}
