//! The arena for C: `mlc_arena_t`, the `Mallocator.C` bump arena over one
//! reservation of virtual memory.

use core::ffi::{c_char, c_int, c_void, CStr};

use mallocator_core::{Arena, ArenaError, Checkpoint, Protection};

use crate::error::{fail, fail_null, guard, MLC_ERR_ARGUMENT, MLC_ERR_MEMORY, MLC_ERR_OS, MLC_OK};
use crate::handle::{null_argument, MlcValloc};

/// `mlc_arena_t`: an [`Arena`], owned by the C caller through the pointer
/// `mlc_arena_new` returns (a `Box`).
pub struct MlcArena(Arena);

/// `mlc_checkpoint_t`: a [`Checkpoint`]'s parts.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlcCheckpoint {
    /// The id of the arena it belongs to.
    pub arena: u64,
    /// The bump pointer then.
    pub pos: usize,
}

/// The protection `prot` (`MLC_PROT_*`) names, if any.
fn protection(prot: c_int) -> Option<Protection> {
    Some(match prot {
        0 => Protection::None,
        1 => Protection::Read,
        2 => Protection::ReadWrite,
        3 => Protection::ReadExecute,
        4 => Protection::ReadWriteExecute,
        _ => return None,
    })
}

/// The return code for an arena error, recording its message.
fn arena_error(what: &str, e: ArenaError) -> c_int {
    fail(code_of(&e), format!("{what}: {e}"))
}

/// [`arena_error`] for a failed allocation from `arena`, saying so when
/// the arena is not writable (after `mlc_arena_protect`): every
/// allocation fails then, however much room is left.
fn alloc_error(what: &str, arena: &Arena, e: ArenaError) -> c_int {
    let unwritable = if arena.protection().is_writable() {
        ""
    } else {
        " (the arena is not writable)"
    };
    fail(code_of(&e), format!("{what}: {e}{unwritable}"))
}

/// The `MLC_ERR_*` code of `e`.
fn code_of(e: &ArenaError) -> c_int {
    match e {
        ArenaError::Os(_) => MLC_ERR_OS,
        ArenaError::OutOfMemory { .. } => MLC_ERR_MEMORY,
        _ => MLC_ERR_ARGUMENT,
    }
}

/// A UTF-8 C string as `&str`, or the error recorded.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string.
unsafe fn utf8<'s>(what: &str, s: *const c_char) -> Result<&'s str, c_int> {
    if s.is_null() {
        return Err(null_argument(&format!("{what}: the string")));
    }
    // SAFETY: non-null, NUL-terminated by the caller's promise.
    let bytes = unsafe { CStr::from_ptr(s) };
    bytes.to_str().map_err(|e| {
        fail(
            MLC_ERR_ARGUMENT,
            format!(
                "{what}: the string is not UTF-8 (at byte {})",
                e.valid_up_to()
            ),
        )
    })
}

/// The arena behind `a`, or the error recorded.
///
/// # Safety
/// `a` is NULL or an arena from `mlc_arena_new` not yet deleted, used by
/// one thread at a time.
unsafe fn arena<'a>(what: &str, a: *const MlcArena) -> Result<&'a Arena, c_int> {
    if a.is_null() {
        return Err(null_argument(&format!("{what}: the arena")));
    }
    // SAFETY: by the caller's promise, `a` is a live `Box<MlcArena>`.
    Ok(unsafe { &(*a).0 })
}

/// [`arena`], to change it.
///
/// # Safety
/// As [`arena`]; no other call uses the arena meanwhile (one thread at a
/// time, and no call of ours keeps a reference past its return).
unsafe fn arena_mut<'a>(what: &str, a: *mut MlcArena) -> Result<&'a mut Arena, c_int> {
    if a.is_null() {
        return Err(null_argument(&format!("{what}: the arena")));
    }
    // SAFETY: by the caller's promise, `a` is a live `Box<MlcArena>` that
    // nothing else refers to during this call.
    Ok(unsafe { &mut (*a).0 })
}

/// Reserves `capacity` bytes (0: one allocation-granularity unit) with
/// protection `prot`.
#[no_mangle]
pub extern "C" fn mlc_arena_new(capacity: usize, prot: c_int) -> *mut MlcArena {
    guard(core::ptr::null_mut(), || {
        let Some(p) = protection(prot) else {
            return fail_null(format!("mlc_arena_new: unknown protection {prot}"));
        };
        let mut builder = Arena::builder().protection(p);
        if capacity != 0 {
            builder = builder.capacity(capacity);
        }
        match builder.build() {
            Ok(a) => Box::into_raw(Box::new(MlcArena(a))),
            Err(e) => {
                arena_error("mlc_arena_new", e);
                core::ptr::null_mut()
            }
        }
    })
}

/// A block of `size` bytes aligned to `align` (0 means 1).
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_alloc(
    a: *mut MlcArena,
    size: usize,
    align: usize,
) -> *mut c_void {
    // SAFETY: the header's contract for `a`.
    let Ok(arena) = (unsafe { arena("mlc_arena_alloc", a) }) else {
        return core::ptr::null_mut();
    };
    let align = align.max(1);
    if !align.is_power_of_two() {
        return fail_null(format!(
            "mlc_arena_alloc: align {align} is not a power of two"
        ));
    }
    match arena.alloc_raw(size, align) {
        Ok(p) => p.as_ptr().cast(),
        Err(_) => {
            let e = ArenaError::OutOfMemory {
                requested: size,
                remaining: arena.remaining(),
            };
            alloc_error(&format!("mlc_arena_alloc (align {align})"), arena, e);
            core::ptr::null_mut()
        }
    }
}

/// A copy of `utf8`: NUL-terminated bytes (width 1) or NUL-terminated
/// UTF-16 (width 2).
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_alloc_string(
    a: *mut MlcArena,
    utf8_string: *const c_char,
    width: c_int,
) -> *mut c_void {
    const WHAT: &str = "mlc_arena_alloc_string";
    // SAFETY: the header's contracts for `a` and `utf8_string`.
    let (arena, s) = match unsafe { (arena(WHAT, a), utf8(WHAT, utf8_string)) } {
        (Ok(arena), Ok(s)) => (arena, s),
        _ => return core::ptr::null_mut(),
    };
    let made = match width {
        1 => arena.alloc_c_str(s).map(|c| c.as_ptr() as *mut c_void),
        2 => arena
            .try_alloc_wide_str(s)
            .map(|w| w.as_ptr() as *mut c_void)
            .map_err(|_| ArenaError::OutOfMemory {
                requested: (s.encode_utf16().count() + 1) * 2,
                remaining: arena.remaining(),
            }),
        _ => return fail_null(format!("{WHAT}: width {width} is neither 1 nor 2")),
    };
    made.unwrap_or_else(|e| {
        alloc_error(WHAT, arena, e);
        core::ptr::null_mut()
    })
}

/// A copy of `len` bytes at `bytes`.
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_alloc_bytes(
    a: *mut MlcArena,
    bytes: *const c_void,
    len: usize,
) -> *mut c_void {
    const WHAT: &str = "mlc_arena_alloc_bytes";
    // SAFETY: the header's contract for `a`.
    let Ok(arena) = (unsafe { arena(WHAT, a) }) else {
        return core::ptr::null_mut();
    };
    let src: &[u8] = if len == 0 {
        &[]
    } else if bytes.is_null() {
        return fail_null(format!("{WHAT}: the bytes are NULL"));
    } else {
        // SAFETY: `bytes` points to `len` readable bytes (the caller's
        // promise); it is not NULL.
        unsafe { core::slice::from_raw_parts(bytes.cast(), len) }
    };
    match arena.try_alloc_bytes(src) {
        Ok(copy) => copy.as_mut_ptr().cast(),
        Err(_) => {
            let e = ArenaError::OutOfMemory {
                requested: len,
                remaining: arena.remaining(),
            };
            alloc_error(WHAT, arena, e);
            core::ptr::null_mut()
        }
    }
}

/// `utf8` as one byte per character (Latin-1), NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_alloc_byte_string(
    a: *mut MlcArena,
    utf8_string: *const c_char,
) -> *mut c_void {
    const WHAT: &str = "mlc_arena_alloc_byte_string";
    // SAFETY: the header's contracts for `a` and `utf8_string`.
    let (arena, s) = match unsafe { (arena(WHAT, a), utf8(WHAT, utf8_string)) } {
        (Ok(arena), Ok(s)) => (arena, s),
        _ => return core::ptr::null_mut(),
    };
    // C needs the terminator, which `alloc_byte_string` does not add; U+0000
    // is Latin-1, and cannot be in a C string before its end, so the
    // library's own conversion and checks make it the last byte.
    let mut with_nul = String::with_capacity(s.len() + 1);
    with_nul.push_str(s);
    with_nul.push('\0');
    match arena.alloc_byte_string(&with_nul) {
        Ok(bytes) => bytes.as_mut_ptr().cast(),
        Err(e) => {
            alloc_error(WHAT, arena, e);
            core::ptr::null_mut()
        }
    }
}

/// The start of the reservation (NULL for a NULL arena).
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_base(a: *const MlcArena) -> *mut c_void {
    // SAFETY: the header's contract for `a`.
    unsafe { arena("mlc_arena_base", a) }.map_or(core::ptr::null_mut(), |a| a.base().cast())
}

/// The bump pointer (NULL for a NULL arena).
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_ptr(a: *const MlcArena) -> *mut c_void {
    // SAFETY: the header's contract for `a`.
    unsafe { arena("mlc_arena_ptr", a) }.map_or(core::ptr::null_mut(), |a| a.ptr().cast())
}

/// The capacity in bytes (0 for a NULL arena).
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_size(a: *const MlcArena) -> usize {
    // SAFETY: the header's contract for `a`.
    unsafe { arena("mlc_arena_size", a) }.map_or(0, |a| a.capacity())
}

/// The bytes used so far (0 for a NULL arena).
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_used(a: *const MlcArena) -> usize {
    // SAFETY: the header's contract for `a`.
    unsafe { arena("mlc_arena_used", a) }.map_or(0, |a| a.used())
}

/// The current position (all zero for a NULL arena, which no arena
/// accepts).
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_checkpoint(a: *const MlcArena) -> MlcCheckpoint {
    // SAFETY: the header's contract for `a`.
    match unsafe { arena("mlc_arena_checkpoint", a) } {
        Ok(a) => {
            let (arena, pos) = a.checkpoint().to_raw();
            MlcCheckpoint { arena, pos }
        }
        Err(_) => MlcCheckpoint { arena: 0, pos: 0 },
    }
}

/// Frees everything allocated since `cp`.
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_rollback(a: *mut MlcArena, cp: MlcCheckpoint) -> c_int {
    // SAFETY: the header's contract for `a`.
    match unsafe { arena_mut("mlc_arena_rollback", a) } {
        Ok(a) => match a.try_rollback(Checkpoint::from_raw(cp.arena, cp.pos)) {
            Ok(()) => MLC_OK,
            Err(e) => arena_error("mlc_arena_rollback", e),
        },
        Err(code) => code,
    }
}

/// Frees everything; the memory stays reserved.
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_reset(a: *mut MlcArena) -> c_int {
    // SAFETY: the header's contract for `a`.
    match unsafe { arena_mut("mlc_arena_reset", a) } {
        Ok(a) => {
            a.reset();
            MLC_OK
        }
        Err(code) => code,
    }
}

/// Changes the protection of the committed memory.
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_protect(a: *mut MlcArena, prot: c_int) -> c_int {
    // SAFETY: the header's contract for `a`.
    let a = match unsafe { arena_mut("mlc_arena_protect", a) } {
        Ok(a) => a,
        Err(code) => return code,
    };
    let Some(p) = protection(prot) else {
        return fail(
            MLC_ERR_ARGUMENT,
            format!("mlc_arena_protect: unknown protection {prot}"),
        );
    };
    match a.protect(p) {
        Ok(()) => MLC_OK,
        Err(e) => arena_error("mlc_arena_protect", e),
    }
}

/// A handle allocating from the arena (the null handle for NULL).
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_valloc(a: *mut MlcArena) -> MlcValloc {
    // SAFETY: the header's contract for `a`.
    match unsafe { arena("mlc_arena_valloc", a) } {
        Ok(arena) => MlcValloc {
            // The arena's address taken from `a` itself, not from the
            // reference `arena`: `reset`, `rollback` and `protect` later
            // borrow the arena mutably through `a`, which ends every
            // borrow derived from an earlier reference (Rust's aliasing
            // rules), but not `a`'s own permission, which the handle then
            // shares. The box stays put until `mlc_arena_delete`.
            // SAFETY: `a` is a live box (checked just above).
            self_: unsafe { core::ptr::addr_of_mut!((*a).0) }.cast(),
            vt: arena.valloc().vtable(),
        },
        Err(_) => MlcValloc::NULL,
    }
}

/// Releases the reservation and the arena.
#[no_mangle]
pub unsafe extern "C" fn mlc_arena_delete(a: *mut MlcArena) {
    if !a.is_null() {
        // SAFETY: `a` came from `Box::into_raw` in `mlc_arena_new` and is
        // deleted once (the caller's promise).
        drop(unsafe { Box::from_raw(a) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MLC_OK;
    use crate::handle::{mlc_valloc_free, mlc_valloc_malloc};

    /// The arena's handle stays usable across the calls that borrow the
    /// arena mutably; under Miri this checks Rust's aliasing rules, which
    /// a handle made from a reference to the arena broke.
    #[test]
    fn the_handle_outlives_rollback_protect_and_reset() {
        // SAFETY: one arena, used by this thread only, deleted once at the
        // end; its handle is used only while it lives, and frees only a
        // block it returned.
        unsafe {
            let a = mlc_arena_new(0, 2);
            assert!(!a.is_null());
            let h = mlc_arena_valloc(a);
            let start = mlc_arena_checkpoint(a);
            assert!(!mlc_valloc_malloc(h, 8, 8).is_null());
            assert_eq!(mlc_arena_rollback(a, start), MLC_OK);
            assert!(!mlc_valloc_malloc(h, 8, 8).is_null());
            assert_eq!(mlc_arena_protect(a, 1), MLC_OK);
            assert!(mlc_valloc_malloc(h, 8, 8).is_null());
            assert_eq!(mlc_arena_protect(a, 2), MLC_OK);
            assert_eq!(mlc_arena_reset(a), MLC_OK);
            let p = mlc_valloc_malloc(h, 8, 8);
            assert!(!p.is_null());
            mlc_valloc_free(h, p);
            assert_eq!(mlc_arena_used(a), 0);
            mlc_arena_delete(a);
        }
    }
}
