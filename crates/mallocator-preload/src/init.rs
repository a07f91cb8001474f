//! The library's start and the process's ends.
//!
//! At load, [`init`] configures the tracker (it reads `MALLOCATOR_LOG`
//! and the rest at the first allocation) and then takes this library and
//! its log out of the environment, so that the programs this one runs
//! are not traced (they would all try to create the same log file), and
//! the program sees the environment it was given; unless
//! `MALLOCATOR_FOLLOW_EXEC=1` asks for them to be traced too (with a log
//! path naming each process, `%p`).
//!
//! A process that ends through `exit`, by returning from `main` or by
//! `quick_exit` ends its log in the tracker's exit hook. `_exit`,
//! `_Exit` and `abort`, as the program calls them, are defined here to do
//! the same first, so the log holds every event up to the end (fatal
//! signals: `signals.rs`; `exec`: `exec.rs`).

use core::ffi::{c_int, c_void, CStr};
use core::sync::atomic::{AtomicI32, Ordering};

use mallocator::backtracing::Backtracing;

use crate::environment;
use crate::hooks::{LIBC_USABLE_SIZE, TRACKER};
use crate::next::Next;

/// The process whose logs [`end_logs`] ends: the one that loaded the
/// library, or a child `fork` made of it (set again in the child, which
/// may log into a file of its own, `%p`). A `vfork` child runs no fork
/// handler and keeps the parent's id: it shares the parent's memory, and
/// must not write the parent's buffers at its `_exit`.
static LOADED_BY: AtomicI32 = AtomicI32::new(0);

/// The `fork` child handler: the child is the process [`LOADED_BY`]
/// names from now on.
extern "C" fn in_child() {
    // SAFETY: no preconditions.
    LOADED_BY.store(unsafe { libc::getpid() }, Ordering::Relaxed);
}

/// Run by the dynamic loader when the library is loaded.
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    // SAFETY: no preconditions; `in_child` is a plain function valid for
    // the whole program.
    unsafe {
        LOADED_BY.store(libc::getpid(), Ordering::Relaxed);
        libc::pthread_atfork(None, None, Some(in_child));
    }
    LIBC_USABLE_SIZE.look_up();
    ABORT.look_up();
    crate::exec::look_up();
    crate::descriptors::look_up();
    crate::thread_stack::look_up();
    // Settings read and log started before the program runs.
    TRACKER.configure_now();
    if !follow_exec() {
        forget_for_children();
    }
    crate::signals::install();
}

/// Whether `MALLOCATOR_FOLLOW_EXEC=1` asks for the programs this one
/// runs to be traced too (each then writes the log its `%p` names); any
/// other value is reported and taken as no.
fn follow_exec() -> bool {
    let Some(value) = environment::value(b"MALLOCATOR_FOLLOW_EXEC") else {
        return false;
    };
    // SAFETY: a NUL-terminated string of the environment.
    match unsafe { CStr::from_ptr(value) }.to_bytes() {
        b"1" => true,
        b"" | b"0" => false,
        _ => {
            let warning = b"mallocator: MALLOCATOR_FOLLOW_EXEC is not 1 or 0; the programs this one runs are not traced\n";
            // SAFETY: writes a buffer of its own length to standard error.
            unsafe { libc::write(2, warning.as_ptr().cast(), warning.len()) };
            false
        }
    }
}

/// Takes this library out of `LD_PRELOAD` and removes the log's
/// variables (the program then sees the environment it was given).
/// Nothing is allocated: the library's path is cut out of the variable's
/// own string, so the program's allocations are only its own.
fn forget_for_children() {
    let mut info = core::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: `init` is code of this library; `info` is writable.
    let found = unsafe { libc::dladdr(init as *const c_void, info.as_mut_ptr()) } != 0;
    // SAFETY: `dladdr` filled `info` when it returned non-zero.
    let ours = found
        .then(|| unsafe { info.assume_init() }.dli_fname)
        .filter(|p| !p.is_null())
        // SAFETY: `dli_fname` is a NUL-terminated path the loader keeps.
        .map(|p| unsafe { CStr::from_ptr(p) });
    if let (Some(ours), Some(preload)) = (ours, environment::value(b"LD_PRELOAD")) {
        // SAFETY: the value is NUL-terminated, inside its entry's own
        // writable string (the process's initial environment, or one
        // `setenv` allocated), and nothing else reads it meanwhile.
        let list = unsafe {
            let len = CStr::from_ptr(preload).to_bytes().len();
            core::slice::from_raw_parts_mut(preload.cast::<u8>(), len)
        };
        match environment::remove_library(list, ours.to_bytes()) {
            0 => environment::remove(b"LD_PRELOAD"),
            // SAFETY: `n` is at most the list's length: its NUL fits
            // where the list's was, or before.
            n => unsafe { *preload.add(n) = 0 },
        }
    }
    for name in [b"MALLOCATOR_LOG".as_slice(), b"MALLOCATOR_LOG_FORMAT"] {
        environment::remove(name);
    }
}

/// Whether this is the process [`LOADED_BY`] names, whose logs it may
/// end (not a `vfork` child).
pub(crate) fn in_loading_process() -> bool {
    // SAFETY: no preconditions.
    let pid = unsafe { libc::getpid() };
    pid == LOADED_BY.load(Ordering::Relaxed)
}

/// Ends the logs if this is the process that loaded the library.
pub(crate) fn end_logs() {
    if in_loading_process() {
        Backtracing::end_logs_now();
    }
}

#[no_mangle]
pub extern "C" fn _exit(status: c_int) -> ! {
    end_logs();
    // SAFETY: ends the process, as `_exit` does.
    unsafe { libc::syscall(libc::SYS_exit_group, status) };
    unreachable!("exit_group returned")
}

#[no_mangle]
pub extern "C" fn _Exit(status: c_int) -> ! {
    _exit(status)
}

/// The C library's `abort`, looked up when the library starts: `abort` is
/// often called from a signal handler, where `dlsym` (which takes the
/// loader's lock, and may allocate) must not be.
static ABORT: Next = Next::new(c"abort");

#[no_mangle]
pub extern "C" fn abort() -> ! {
    end_logs();
    // Looked up now only before the library's start (no handler of the
    // program's yet).
    // SAFETY: `abort`'s C type.
    if let Some(abort) = unsafe { ABORT.get::<extern "C" fn() -> !>() } {
        abort()
    }
    // No C library `abort` (cannot happen with glibc): end as it would.
    // SAFETY: raising a signal has no preconditions.
    unsafe { libc::raise(libc::SIGABRT) };
    // SAFETY: ends the process.
    unsafe { libc::syscall(libc::SYS_exit_group, 127) };
    unreachable!("exit_group returned")
}
