//! The leak tracker for C: `mlc_tracker_t`, a `Backtracing` tracker over
//! any handle.

use core::ffi::{c_char, c_int, CStr};

#[cfg(unix)]
use mallocator_core::backtracing::HeldLogFile;
use mallocator_core::backtracing::{
    create_log_file, Backtracing, Config, LogFormat, LogTarget, NoCancel,
};

use crate::error::{fail, fail_null, guard, MLC_ERR_ARGUMENT, MLC_ERR_MEMORY, MLC_ERR_OS, MLC_OK};
use crate::handle::{null_argument, MlcValloc};

/// `mlc_tracker_t`: a tracker and the log file it writes to, if any.
/// Fields drop in order: the tracker, which may write to the file, first.
pub struct MlcTracker {
    tracker: Backtracing<'static>,
    /// The log file lent to `tracker`, dropped after it.
    #[cfg(unix)]
    _log: Option<HeldLogFile>,
}

/// The tracker behind `t`, or the error recorded.
///
/// # Safety
/// `t` is NULL or a tracker from `mlc_tracker_new*` not yet deleted.
unsafe fn tracker<'t>(what: &str, t: *const MlcTracker) -> Result<&'t Backtracing<'static>, c_int> {
    if t.is_null() {
        return Err(null_argument(&format!("{what}: the tracker")));
    }
    // SAFETY: by the caller's promise, `t` is a live `Box<MlcTracker>`;
    // the tracker is `Sync`.
    Ok(unsafe { &(*t).tracker })
}

/// A tracker over `inner`, logging to `log` (`LogTarget::None`: no log).
///
/// # Safety
/// `inner` is valid for as long as the tracker lives, from every thread
/// that uses the tracker's handle (the header's contract).
unsafe fn make(
    what: &str,
    inner: MlcValloc,
    log: LogTarget,
) -> Result<Backtracing<'static>, c_int> {
    if inner.vt.is_null() {
        return Err(fail(
            MLC_ERR_ARGUMENT,
            format!("{what}: the inner handle is the null handle"),
        ));
    }
    // SAFETY: the caller's promise.
    let inner = unsafe { inner.to_valloc() };
    Ok(Backtracing::with_config(
        inner,
        Config {
            log,
            // The C API promises Firedancer's text format (C tooling reads it).
            log_format: LogFormat::Firedancer,
            ..Config::DEFAULT
        },
    ))
}

/// A tracker over `inner`.
#[no_mangle]
pub unsafe extern "C" fn mlc_tracker_new(inner: MlcValloc) -> *mut MlcTracker {
    guard(core::ptr::null_mut(), || {
        // SAFETY: the header's contract for `inner`.
        match unsafe { make("mlc_tracker_new", inner, LogTarget::None) } {
            Ok(tracker) => Box::into_raw(Box::new(MlcTracker {
                tracker,
                #[cfg(unix)]
                _log: None,
            })),
            Err(_) => core::ptr::null_mut(),
        }
    })
}

/// A tracker over `inner` that logs every call to the file at `path`.
#[no_mangle]
pub unsafe extern "C" fn mlc_tracker_new_with_log(
    inner: MlcValloc,
    path: *const c_char,
) -> *mut MlcTracker {
    const WHAT: &str = "mlc_tracker_new_with_log";
    guard(core::ptr::null_mut(), || {
        if path.is_null() {
            null_argument(&format!("{WHAT}: the path"));
            return core::ptr::null_mut();
        }
        // SAFETY: a NUL-terminated string (the caller's promise).
        let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
        // A path is bytes on Unix; elsewhere it must be UTF-8.
        #[cfg(unix)]
        let path = std::path::Path::new(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes),
        );
        #[cfg(not(unix))]
        let Ok(path) = core::str::from_utf8(bytes).map(std::path::Path::new) else {
            return fail_null(format!("{WHAT}: the path is not UTF-8"));
        };
        if inner.vt.is_null() {
            return fail_null(format!("{WHAT}: the inner handle is the null handle"));
        }
        let file = match create_log_file(path) {
            Ok(f) => f,
            Err(e) => {
                fail(
                    MLC_ERR_OS,
                    format!("{WHAT}: cannot create {}: {e}", path.display()),
                );
                return core::ptr::null_mut();
            }
        };
        #[cfg(unix)]
        {
            use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
            // Out of the program's way, as the files the tracker opens
            // itself: a program that closes or replaces the descriptors
            // it did not open can spare it (`mlc_holds_descriptor`).
            let held = HeldLogFile::new(file);
            // SAFETY: the descriptor is owned by the `MlcTracker` built
            // below, which drops its tracker (the only user of this
            // borrow) before the descriptor.
            let fd = unsafe { BorrowedFd::borrow_raw(held.as_fd().as_raw_fd()) };
            // SAFETY: the header's contract for `inner`.
            match unsafe { make(WHAT, inner, LogTarget::Fd(fd)) } {
                Ok(tracker) => Box::into_raw(Box::new(MlcTracker {
                    tracker,
                    _log: Some(held),
                })),
                Err(_) => core::ptr::null_mut(),
            }
        }
        #[cfg(not(unix))]
        {
            // No descriptor to lend here: the tracker reopens the file it
            // now knows it can create, by a path that lives as long as
            // the process (a few bytes per tracker).
            drop(file);
            let path: &'static str =
                Box::leak(path.to_string_lossy().into_owned().into_boxed_str());
            // SAFETY: the header's contract for `inner`.
            match unsafe { make(WHAT, inner, LogTarget::Path(path)) } {
                Ok(tracker) => Box::into_raw(Box::new(MlcTracker { tracker })),
                Err(_) => core::ptr::null_mut(),
            }
        }
    })
}

/// Whether `fd` is a descriptor a tracker's log is written through
/// (1) or not (0); always 0 where logs are not descriptors (Windows).
#[no_mangle]
pub extern "C" fn mlc_holds_descriptor(fd: c_int) -> c_int {
    #[cfg(unix)]
    return c_int::from(mallocator_core::backtracing::holds_descriptor(fd));
    #[cfg(not(unix))]
    {
        let _ = fd;
        0
    }
}

/// A handle allocating through the tracker (the null handle for NULL).
#[no_mangle]
pub unsafe extern "C" fn mlc_tracker_valloc(t: *mut MlcTracker) -> MlcValloc {
    // SAFETY: the header's contract for `t`; the handle points into the
    // box, which stays put until `mlc_tracker_delete`.
    match unsafe { tracker("mlc_tracker_valloc", t) } {
        Ok(t) => MlcValloc::from_valloc(t.valloc()),
        Err(_) => MlcValloc::NULL,
    }
}

/// Live blocks now (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn mlc_tracker_live_blocks(t: *const MlcTracker) -> usize {
    // SAFETY: the header's contract for `t`.
    unsafe { tracker("mlc_tracker_live_blocks", t) }.map_or(0, |t| t.live_blocks())
}

/// Live bytes now (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn mlc_tracker_live_bytes(t: *const MlcTracker) -> usize {
    // SAFETY: the header's contract for `t`.
    unsafe { tracker("mlc_tracker_live_bytes", t) }.map_or(0, |t| t.live_bytes())
}

/// The most bytes live at once (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn mlc_tracker_peak_bytes(t: *const MlcTracker) -> usize {
    // SAFETY: the header's contract for `t`.
    unsafe { tracker("mlc_tracker_peak_bytes", t) }.map_or(0, |t| t.peak_bytes())
}

/// Tells the tracker that the program unloaded shared objects (after
/// `dlclose`); MLC_OK, or MLC_ERR_ARGUMENT for NULL.
#[no_mangle]
pub unsafe extern "C" fn mlc_tracker_objects_unloaded(t: *const MlcTracker) -> c_int {
    guard(MLC_ERR_ARGUMENT, || {
        // SAFETY: the header's contract for `t`.
        match unsafe { tracker("mlc_tracker_objects_unloaded", t) } {
            Ok(t) => {
                t.objects_unloaded();
                MLC_OK
            }
            Err(code) => code,
        }
    })
}

/// Writes the leak report (text, or JSON if `json != 0`) to `fd`. Not a
/// cancellation point: reading symbols and writing are, and a
/// cancellation acting there could not unwind out of this function (the
/// process would abort).
#[no_mangle]
pub unsafe extern "C" fn mlc_tracker_report(t: *const MlcTracker, fd: c_int, json: c_int) -> c_int {
    const WHAT: &str = "mlc_tracker_report";
    let _no_cancel = NoCancel::now();
    guard(MLC_ERR_ARGUMENT, || {
        // SAFETY: the header's contract for `t`.
        let t = match unsafe { tracker(WHAT, t) } {
            Ok(t) => t,
            Err(code) => return code,
        };
        if fd < 0 {
            return fail(
                MLC_ERR_ARGUMENT,
                format!("{WHAT}: bad file descriptor {fd}"),
            );
        }
        let Some(report) = t.try_report() else {
            return fail(
                MLC_ERR_MEMORY,
                format!("{WHAT}: not enough memory for the report"),
            );
        };
        let text = if json != 0 {
            report.to_json() + "\n"
        } else {
            report.to_text()
        };
        match write_fd(fd, text.as_bytes()) {
            Ok(()) => MLC_OK,
            Err(e) => fail(
                MLC_ERR_OS,
                format!("{WHAT}: cannot write to descriptor {fd}: {e}"),
            ),
        }
    })
}

/// Writes all of `bytes` to the C descriptor `fd`.
#[cfg(unix)]
fn write_fd(fd: c_int, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is readable for its length; a bad descriptor
        // only makes `write` fail.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Writes all of `bytes` to the C runtime descriptor `fd`.
#[cfg(windows)]
fn write_fd(fd: c_int, mut bytes: &[u8]) -> std::io::Result<()> {
    extern "C" {
        fn _write(fd: c_int, buf: *const core::ffi::c_void, count: u32) -> c_int;
    }
    while !bytes.is_empty() {
        let chunk = bytes.len().min(1 << 30) as u32;
        // SAFETY: `bytes` is readable for `chunk` bytes; a bad descriptor
        // only makes `_write` fail.
        let n = unsafe { _write(fd, bytes.as_ptr().cast(), chunk) };
        if n < 0 {
            return Err(std::io::Error::other("the C runtime's _write failed"));
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Deletes the tracker (NULL does nothing).
#[no_mangle]
pub unsafe extern "C" fn mlc_tracker_delete(t: *mut MlcTracker) {
    if !t.is_null() {
        // SAFETY: `t` came from `Box::into_raw` in `mlc_tracker_new*` and is
        // deleted once (the caller's promise).
        drop(unsafe { Box::from_raw(t) });
    }
}

#[cfg(all(test, target_os = "linux", not(miri)))]
#[path = "../../mallocator/tests/common/address_space.rs"]
mod address_space;
#[cfg(all(test, target_os = "linux", not(miri)))]
#[path = "../../mallocator/tests/common/cancel.rs"]
mod cancel;
#[cfg(all(test, target_os = "linux", not(miri)))]
#[path = "../../mallocator/tests/common/child.rs"]
mod child;

#[cfg(all(test, target_os = "linux", not(miri)))]
mod tests {
    use super::*;
    use crate::handle::{mlc_libc_valloc, mlc_valloc_free, mlc_valloc_malloc};

    use super::address_space::{address_space_limits_hold, with_address_space_limited};

    /// A report asked for by a thread with a cancellation pending is
    /// written, and the thread goes on: the cancellation waits for the
    /// thread's next cancellation point (acting inside, it could not
    /// unwind out of the C function: the process would abort). In a
    /// child process, whose only thread is the one cancelled.
    #[test]
    fn a_report_with_a_cancellation_pending_is_written() {
        const WENT_ON: c_int = 42;
        // SAFETY: one tracker over the C library, with one live block,
        // used by this thread (and its copy in the child) only; the block
        // is freed through it, then it is deleted; `/dev/null` is open
        // for writing until closed at the end.
        unsafe {
            let t = mlc_tracker_new(mlc_libc_valloc());
            let h = mlc_tracker_valloc(t);
            let block = mlc_valloc_malloc(h, 8, 16);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            let status = super::cancel::in_cancelled_child(|| {
                if mlc_tracker_report(t, null, 0) == MLC_OK {
                    WENT_ON
                } else {
                    1
                }
            });
            mlc_valloc_free(h, block);
            mlc_tracker_delete(t);
            libc::close(null);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == WENT_ON,
                "child status {status:#x} (exit 1: no report)"
            );
        }
    }

    /// The report of a tracker with a million live blocks, under an
    /// address-space limit just above what the process uses: the error
    /// the header promises, and the program goes on; with the memory
    /// back, the report is written. In a child process (the limit is the
    /// process's), whose exit status says which step failed.
    #[test]
    fn a_report_without_memory_is_mlc_err_memory() {
        if !address_space_limits_hold() {
            eprintln!("skipped: this system does not enforce address-space limits");
            return;
        }
        // SAFETY: the child runs this thread only, then `_exit`s; the
        // allocator's locks are free in it (glibc's fork handlers).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let code = std::panic::catch_unwind(|| {
                // SAFETY: one tracker over the C library, used by this
                // thread only; every block is freed once through it, then
                // the tracker is deleted; `/dev/null` is open for writing.
                unsafe {
                    let t = mlc_tracker_new(mlc_libc_valloc());
                    let h = mlc_tracker_valloc(t);
                    let blocks: Vec<_> =
                        (0..1 << 20).map(|_| mlc_valloc_malloc(h, 8, 16)).collect();
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
                    let starved =
                        with_address_space_limited(4 << 20, || mlc_tracker_report(t, null, 0));
                    let whole = mlc_tracker_report(t, null, 1);
                    blocks.iter().for_each(|&p| mlc_valloc_free(h, p));
                    mlc_tracker_delete(t);
                    match (starved, whole) {
                        (MLC_ERR_MEMORY, MLC_OK) => 0,
                        (MLC_ERR_MEMORY, _) => 2,
                        _ => 1,
                    }
                }
            })
            .unwrap_or(3);
            // SAFETY: ends the child without the test harness's exit.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child made above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x} (exit 1: no MLC_ERR_MEMORY; 2: no report after)"
        );
    }
}
