//! Log mode: every event as a record in the C tool's exact format.
//!
//! ```text
//! +++ ALLOC:<n>:0x<address, 16 hex digits>:<align>:<size>
//! <n frame lines, glibc backtrace_symbols_fd style>
//! ---
//! +++ FREE:<n>:0x<address, 16 hex digits>
//! <n frame lines>
//! ---
//! ```
//!
//! A record is formatted into one buffer and written with one call
//! (retrying short writes) under the log lock, so records of different
//! threads never interleave.

use super::os::{self, Sink};
use super::sync::{RawLock, SpinLock};
use super::table::{sys_vec, SysVec};

/// Where log mode writes.
///
/// ```
/// use mallocator::backtracing::{Backtracing, Config, LogTarget};
/// use mallocator::Valloc;
///
/// fn collect(record: &[u8]) {
///     assert!(record.starts_with(b"+++ "));
/// }
/// let t = Backtracing::with_config(Valloc::libc(), Config { log: LogTarget::Callback(collect), ..Config::DEFAULT });
/// let v = t.valloc();
/// // SAFETY: freeing what `v` returned.
/// unsafe { v.free(v.malloc(8, 8)) };
/// ```
#[derive(Debug, Clone, Copy)]
pub enum LogTarget {
    /// No log (the default).
    None,
    /// The process's standard output (like the C version).
    Stdout,
    /// The process's standard error.
    Stderr,
    /// An open file descriptor, which the tracker never closes. Borrowed
    /// for the whole program: making one is `unsafe`
    /// ([`BorrowedFd::borrow_raw`](std::os::fd::BorrowedFd::borrow_raw)),
    /// so safe code cannot point the log at a descriptor it does not own.
    #[cfg(unix)]
    Fd(std::os::fd::BorrowedFd<'static>),
    /// A file, created (truncated) at the first event: mode 0600 on
    /// Unix, and never through a symbolic link (the log holds addresses).
    Path(&'static str),
    /// A function called with each whole record (under the log lock, so
    /// calls never overlap). It may allocate.
    Callback(fn(&[u8])),
}

/// Where the log stands: not opened yet, open, or failed to open.
enum Output {
    Closed(LogTarget),
    Open(Sink),
    Callback(fn(&[u8])),
    Failed,
}

/// The log: its target, opened at the first event, and the record buffer.
pub(crate) struct Log {
    inner: SpinLock<(Output, SysVec<u8>)>,
}

impl core::fmt::Debug for Log {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Log")
    }
}

impl Log {
    pub(crate) const fn new(target: LogTarget) -> Self {
        Log {
            inner: SpinLock::new((Output::Closed(target), sys_vec())),
        }
    }

    /// Replaces the target (opened at the next event).
    pub(crate) fn set_target(&self, target: LogTarget) {
        self.inner.lock().0 = Output::Closed(target);
    }

    /// Replaces the target with an already open sink.
    pub(crate) fn set_sink(&self, sink: Sink) {
        self.inner.lock().0 = Output::Open(sink);
    }

    /// The log's lock, for the fork handlers.
    pub(crate) fn lock(&self) -> &dyn RawLock {
        &self.inner
    }

    /// Formats one record with `fill` and writes it.
    pub(crate) fn write(&self, fill: impl FnOnce(&mut SysVec<u8>)) {
        let mut guard = self.inner.lock();
        let (state, buf) = &mut *guard;
        if let Output::Closed(target) = *state {
            *state = match target {
                LogTarget::None => Output::Failed,
                LogTarget::Stdout => Output::Open(Sink::stdout()),
                LogTarget::Stderr => Output::Open(Sink::stderr()),
                #[cfg(unix)]
                LogTarget::Fd(fd) => Output::Open(Sink::Borrowed(fd)),
                LogTarget::Path(p) => Sink::create(p).map_or(Output::Failed, Output::Open),
                LogTarget::Callback(f) => Output::Callback(f),
            };
        }
        buf.clear();
        match state {
            Output::Open(sink) => {
                fill(buf);
                os::write_all(sink, buf);
            }
            Output::Callback(f) => {
                fill(buf);
                f(buf);
            }
            Output::Closed(_) | Output::Failed => {}
        }
    }
}

/// Appends `v` in lowercase hex, at least `width` digits.
pub(crate) fn push_hex(buf: &mut SysVec<u8>, v: u64, width: usize) {
    let digits = (16 - (v.leading_zeros() as usize) / 4).max(width).max(1);
    for i in (0..digits).rev() {
        let d = ((v >> (4 * i)) & 0xf) as usize;
        buf.push(b"0123456789abcdef"[d]);
    }
}

/// Appends `v` in decimal.
pub(crate) fn push_dec(buf: &mut SysVec<u8>, v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut v = v;
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// One record: `+++ ALLOC:n:0x<addr>:<align>:<size>` when `alloc` is
/// `Some((align, size))`, else `+++ FREE:n:0x<addr>`; then the frames
/// and `---`.
pub(crate) fn format_record(
    buf: &mut SysVec<u8>,
    addr: usize,
    alloc: Option<(usize, usize)>,
    frames: &[usize],
    describe: fn(usize, &mut SysVec<u8>),
) {
    buf.extend_from_slice(if alloc.is_some() {
        b"+++ ALLOC:"
    } else {
        b"+++ FREE:"
    });
    push_dec(buf, frames.len() as u64);
    buf.extend_from_slice(b":0x");
    push_hex(buf, addr as u64, 16);
    if let Some((align, size)) = alloc {
        buf.push(b':');
        push_dec(buf, align as u64);
        buf.push(b':');
        push_dec(buf, size as u64);
    }
    buf.push(b'\n');
    for &ip in frames {
        describe(ip, buf);
    }
    buf.extend_from_slice(b"---\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(buf: &SysVec<u8>) -> &str {
        core::str::from_utf8(buf).unwrap()
    }

    #[test]
    fn numbers() {
        let mut b = sys_vec();
        push_hex(&mut b, 0, 1);
        b.push(b' ');
        push_hex(&mut b, 0xdead_beef, 16);
        b.push(b' ');
        push_hex(&mut b, u64::MAX, 1);
        b.push(b' ');
        push_dec(&mut b, 0);
        b.push(b' ');
        push_dec(&mut b, u64::MAX);
        assert_eq!(
            text(&b),
            "0 00000000deadbeef ffffffffffffffff 0 18446744073709551615"
        );
    }

    #[test]
    fn records_match_the_c_format() {
        let mut b = sys_vec();
        format_record(
            &mut b,
            0x1234,
            Some((16, 40)),
            &[0xaa, 0xbb],
            os::describe_ip,
        );
        format_record(&mut b, 0, None, &[], os::describe_ip);
        let t = text(&b);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "+++ ALLOC:2:0x0000000000001234:16:40");
        assert!(lines[1].ends_with("[0xaa]"), "{}", lines[1]);
        assert!(lines[2].ends_with("[0xbb]"), "{}", lines[2]);
        assert_eq!(lines[3], "---");
        assert_eq!(lines[4], "+++ FREE:0:0x0000000000000000");
        assert_eq!(lines[5], "---");
        assert_eq!(lines.len(), 6);
        assert!(t.ends_with("---\n"));
    }
}
