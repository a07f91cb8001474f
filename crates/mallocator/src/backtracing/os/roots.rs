//! Where a leak scan looks for pointers besides the stack: the loaded
//! objects' writable data and thread-local storage, read word by word.

#[cfg(all(any(target_os = "linux", target_os = "android"), not(miri)))]
use super::loader::{for_each_object, object_path, program_headers};

/// Whether [`for_each_root_range`] can list the roots here.
pub(crate) const ROOTS_KNOWN: bool = cfg!(all(
    any(target_os = "linux", target_os = "android"),
    not(miri)
));

/// Calls `f(start, len, starts_only)` on every range of memory a leak
/// scan treats as a root, besides the stack: the writable loaded segments
/// (data, BSS) of every object, and the calling thread's thread-local
/// storage block of each object that has one. Returns false where this
/// is not known (the report then does not classify reachability). The
/// ranges are mapped and readable while `f` runs (the loader's lock is
/// held: `f` must not load or unload objects).
///
/// `starts_only` is set for the C library's data: only a word pointing
/// to a block's first byte counts there. It holds `malloc`'s own
/// bookkeeping besides the program's pointers (the locale it loaded, a
/// buffer given to `setvbuf`): its arena's pointer to the top chunk, for
/// one, points just past the last block handed out, inside that block
/// when its size was not a multiple of 16, which would make it look
/// possibly lost instead of lost.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(miri)))]
pub(crate) fn for_each_root_range(f: &mut dyn FnMut(usize, usize, bool)) -> bool {
    for_each_object(&mut |info| {
        let bias = info.dlpi_addr as usize;
        let is_libc = super::super::trim::is_c_library(object_path(info));
        for ph in program_headers(info) {
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_W != 0 {
                let start = bias.wrapping_add(ph.p_vaddr as usize);
                f(start, ph.p_memsz as usize, is_libc);
            } else if ph.p_type == libc::PT_TLS && !info.dlpi_tls_data.is_null() {
                // This thread's copy of the object's TLS block (null when
                // the thread has not touched a dynamically loaded one).
                f(info.dlpi_tls_data as usize, ph.p_memsz as usize, false);
            }
        }
    });
    true
}

/// Not known here: no reachability classification.
#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(miri))))]
pub(crate) fn for_each_root_range(_f: &mut dyn FnMut(usize, usize, bool)) -> bool {
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
