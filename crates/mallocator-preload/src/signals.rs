//! Fatal signals: a program that a signal ends (a crash, `kill`, Ctrl-C,
//! a closed pipe) still leaves a log holding every event up to its end.
//!
//! At load, each signal below whose action is still the default gets a
//! handler that ends the logs, puts the default action back and raises
//! the signal again, so the process ends by it as it would have. A
//! program that sets its own action for one of them later replaces the
//! handler (then its own handling decides). The handler runs on the
//! alternate signal stack when the thread has one.
//!
//! The logs are not written when the signal interrupted the tracker
//! itself (see `Backtracing::end_logs_now`).

use core::ffi::c_int;

/// The signals whose default action ends the process.
const FATAL: [c_int; 11] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGILL,
    libc::SIGABRT,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGSEGV,
    libc::SIGPIPE,
    libc::SIGTERM,
    libc::SIGSYS,
];

/// Installs the handler for each signal of [`FATAL`] left at its default.
pub(crate) fn install() {
    for signal in FATAL {
        // SAFETY: `sigaction` structs are plain data; zeroed is a valid
        // empty one, and `old` is written by the call.
        unsafe {
            let mut old: libc::sigaction = core::mem::zeroed();
            if libc::sigaction(signal, core::ptr::null(), &mut old) != 0
                || old.sa_sigaction != libc::SIG_DFL
            {
                continue;
            }
            let mut action: libc::sigaction = core::mem::zeroed();
            action.sa_sigaction = on_fatal_signal as extern "C" fn(c_int) as usize;
            action.sa_flags = libc::SA_ONSTACK | libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, core::ptr::null_mut());
        }
    }
}

extern "C" fn on_fatal_signal(signal: c_int) {
    crate::init::end_logs();
    // `SA_RESETHAND` put the default action back; the signal is blocked
    // until this handler returns, and then ends the process.
    // SAFETY: raising a signal has no preconditions.
    unsafe { libc::raise(signal) };
}
