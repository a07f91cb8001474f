//! The `exec` family, defined here so that a process that replaces
//! itself with another program ends its log first.
//!
//! `exec` throws the process's memory away and runs no exit hook: the
//! events still in the threads' buffers were lost with it, and the log,
//! without its end record, was read as cut short, as after a crash (a
//! program run through a wrapper script, which `exec`s the real one,
//! left a log of no events at all). Each function here ends the logs
//! (`Backtracing::end_logs_for_exec`), calls the C library's, and, when
//! that fails and returns, takes the end back so that the log goes on,
//! with `errno` as the C library set it. Meanwhile the other threads
//! with events to write wait for it.
//!
//! `execl`, `execle` and `execlp` take C variadic arguments, which Rust
//! cannot define: `exec_variadic.c` gathers them into an array and calls
//! `execv`, `execve` and `execvp` (these definitions, unless the program
//! has its own). Each of the three is exported here as a jump to its C
//! definition, which leaves the caller's registers and stack, and so its
//! variadic arguments, as they were: a shared library built by Rust
//! exports no symbol of the C code linked into it.
//!
//! The logs are left alone where `_exit` leaves them alone (a `vfork`
//! child, which shares its parent's memory: they are the parent's), and
//! when the thread is inside the tracker (an `exec` from a signal handler
//! that interrupted it, which would wait for a lock it holds): that log
//! is then read as cut short.

use core::ffi::{c_char, c_int};

use mallocator::backtracing::Backtracing;

use crate::init::in_loading_process;
use crate::next::Next;

type Argv = *const *const c_char;
type Execve = unsafe extern "C" fn(*const c_char, Argv, Argv) -> c_int;
type Execv = unsafe extern "C" fn(*const c_char, Argv) -> c_int;
type Fexecve = unsafe extern "C" fn(c_int, Argv, Argv) -> c_int;
type Execveat = unsafe extern "C" fn(c_int, *const c_char, Argv, Argv, c_int) -> c_int;

/// The C library's functions, looked up when the library starts
/// ([`look_up`]): `exec` may be called from a signal handler, where
/// `dlsym` (which takes the loader's lock, and may allocate) must not run.
static EXECVE: Next = Next::new(c"execve");
static EXECV: Next = Next::new(c"execv");
static EXECVP: Next = Next::new(c"execvp");
static EXECVPE: Next = Next::new(c"execvpe");
static FEXECVE: Next = Next::new(c"fexecve");
static EXECVEAT: Next = Next::new(c"execveat");

/// Looks the C library's `exec` functions up; called when the library
/// starts.
pub(crate) fn look_up() {
    for f in [&EXECVE, &EXECV, &EXECVP, &EXECVPE, &FEXECVE, &EXECVEAT] {
        f.look_up();
    }
}

/// Runs `exec` (a call of the C library's) with the logs ended, and
/// takes the end back if it returns (it failed); its result, with
/// `errno` as it set it.
fn with_logs_ended(exec: impl FnOnce() -> c_int) -> c_int {
    let ended = in_loading_process()
        .then(Backtracing::end_logs_for_exec)
        .flatten();
    let result = exec();
    if ended.is_some() {
        // SAFETY: `__errno_location` returns this thread's `errno`.
        let errno = unsafe { *libc::__errno_location() };
        drop(ended);
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }
    result
}

/// What an `exec` function the C library lacks answers (cannot happen
/// with glibc, which has them all but `execveat` before 2.34).
fn missing() -> c_int {
    // SAFETY: `__errno_location` returns this thread's `errno`.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    -1
}

/// Makes `call` of the C library's function `f` with the logs
/// ended ([`with_logs_ended`]); `ENOSYS` when there is no such function.
///
/// # Safety
/// `F` is the C type of `f`, and `call` calls it as the caller of the
/// function being defined promised.
unsafe fn through<F: Copy>(f: &Next, call: impl FnOnce(F) -> c_int) -> c_int {
    // SAFETY: the caller's promise.
    match unsafe { f.get::<F>() } {
        Some(f) => with_logs_ended(|| call(f)),
        None => missing(),
    }
}

/// # Safety
/// As C's `execve`.
#[no_mangle]
pub unsafe extern "C" fn execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int {
    // SAFETY: `execve`'s C type, called as our caller promised.
    unsafe { through(&EXECVE, |f: Execve| f(path, argv, envp)) }
}

/// # Safety
/// As C's `execv`.
#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Argv) -> c_int {
    // SAFETY: `execv`'s C type, called as our caller promised.
    unsafe { through(&EXECV, |f: Execv| f(path, argv)) }
}

/// # Safety
/// As C's `execvp`.
#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Argv) -> c_int {
    // SAFETY: `execvp`'s C type (that of `execv`), called as our caller
    // promised.
    unsafe { through(&EXECVP, |f: Execv| f(file, argv)) }
}

/// # Safety
/// As GNU's `execvpe`.
#[no_mangle]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: Argv, envp: Argv) -> c_int {
    // SAFETY: `execvpe`'s C type (that of `execve`), called as our caller
    // promised.
    unsafe { through(&EXECVPE, |f: Execve| f(file, argv, envp)) }
}

/// # Safety
/// As C's `fexecve`.
#[no_mangle]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: Argv, envp: Argv) -> c_int {
    // SAFETY: `fexecve`'s C type, called as our caller promised.
    unsafe { through(&FEXECVE, |f: Fexecve| f(fd, argv, envp)) }
}

/// # Safety
/// As Linux's `execveat`.
#[no_mangle]
pub unsafe extern "C" fn execveat(
    dirfd: c_int,
    path: *const c_char,
    argv: Argv,
    envp: Argv,
    flags: c_int,
) -> c_int {
    // SAFETY: `execveat`'s C type, called as our caller promised.
    unsafe { through(&EXECVEAT, |f: Execveat| f(dirfd, path, argv, envp, flags)) }
}

/// The variadic three: each exported under its C name as a jump to its
/// definition in `exec_variadic.c` (see the module docs), on the
/// architectures whose jump is written here.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod variadic {
    extern "C" {
        fn mallocator_execl();
        fn mallocator_execle();
        fn mallocator_execlp();
    }

    /// Defines the exported function `$name` as a jump to `$target`.
    macro_rules! jump {
        ($name:ident to $target:ident) => {
            #[doc = concat!("A jump to `", stringify!($target), "`.")]
            #[unsafe(naked)]
            #[no_mangle]
            pub extern "C" fn $name() {
                #[cfg(target_arch = "x86_64")]
                core::arch::naked_asm!("jmp {}", sym $target);
                #[cfg(target_arch = "aarch64")]
                core::arch::naked_asm!("b {}", sym $target);
            }
        };
    }

    jump!(execl to mallocator_execl);
    jump!(execle to mallocator_execle);
    jump!(execlp to mallocator_execlp);
}
