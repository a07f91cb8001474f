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
use super::sys_vec::{sys_vec, SysVec};

/// Creates the file at `path` for a log, or empties it, the way the
/// tracker does for [`LogTarget::Path`] and `MALLOCATOR_LOG`: a log holds
/// addresses, so on Unix it is created with mode 0600, a symbolic link at
/// `path` is refused rather than followed, and an existing file is used
/// only if it is a regular file of this user (set to 0600, then emptied).
/// For a caller that opens the file itself and lends its descriptor
/// ([`LogTarget::Fd`]), to see the error at once.
///
/// ```
/// # #[cfg(not(miri))] { // Miri cannot open files with these flags
/// let path = std::env::temp_dir().join(format!("mallocator-doc-{}.log", std::process::id()));
/// let file = mallocator::backtracing::create_log_file(&path).unwrap();
/// # #[cfg(unix)] {
/// use std::os::unix::fs::PermissionsExt;
/// assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
/// # }
/// # drop(file);
/// # std::fs::remove_file(&path).unwrap();
/// # }
/// ```
pub fn create_log_file(path: impl AsRef<std::path::Path>) -> std::io::Result<std::fs::File> {
    os::create_private_file(path.as_ref())
}

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

/// The log: its target, opened at the first event, the record buffer,
/// and the frame lines already described.
pub(crate) struct Log {
    inner: SpinLock<(Output, SysVec<u8>, LineCache)>,
}

/// Frame lines already described, by instruction pointer: asking the
/// loader (`dladdr`) costs thousands of instructions, and a program's
/// allocation sites repeat. Direct-mapped ([`CACHE_SLOTS`] slots, a newer
/// line replaces an older one in its slot); the lines' text is kept in one
/// buffer of at most [`CACHE_TEXT`] bytes, emptied with the slots when
/// full. A line stays as first described: code unloaded with `dlclose`
/// and other code loaded at the same address keeps the old name.
struct LineCache {
    /// `(ip, start, len)` of each slot's line in `text`; ip 0: empty.
    slots: SysVec<(usize, u32, u32)>,
    text: SysVec<u8>,
}

/// Slots of the [`LineCache`] (a power of two).
const CACHE_SLOTS: usize = 4096;
/// Most bytes of cached line text.
const CACHE_TEXT: usize = 1 << 20;

impl LineCache {
    const fn new() -> Self {
        LineCache {
            slots: sys_vec(),
            text: sys_vec(),
        }
    }

    /// Appends the frame line of `ip` to `buf`, from the cache when it
    /// has it (the cache is skipped if its memory cannot be had).
    fn line(&mut self, ip: usize, buf: &mut SysVec<u8>) {
        if self.slots.is_empty() {
            if self.slots.try_reserve_exact(CACHE_SLOTS).is_err() {
                return describe_ip(ip, buf);
            }
            self.slots.resize(CACHE_SLOTS, (0, 0, 0));
        }
        let slot = ((ip as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize % CACHE_SLOTS;
        let (cached, start, len) = self.slots[slot];
        if cached == ip && ip != 0 {
            append(buf, &self.text[start as usize..(start + len) as usize]);
            return;
        }
        let from = buf.len();
        describe_ip(ip, buf);
        let line = &buf[from..];
        if self.text.len() + line.len() > CACHE_TEXT {
            self.text.clear();
            self.slots.iter_mut().for_each(|s| *s = (0, 0, 0));
        }
        if self.text.try_reserve(line.len()).is_ok() {
            let start = self.text.len();
            append(&mut self.text, line);
            self.slots[slot] = (ip, start as u32, line.len() as u32);
        }
    }
}

impl core::fmt::Debug for Log {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Log")
    }
}

impl Log {
    pub(crate) const fn new(target: LogTarget) -> Self {
        Log {
            inner: SpinLock::new((Output::Closed(target), sys_vec(), LineCache::new())),
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

    /// Writes the record of an allocation (`alloc`: `Some((align,
    /// size))`) or a free of `addr`, with its stack's `frames`.
    pub(crate) fn write_record(
        &self,
        addr: usize,
        alloc: Option<(usize, usize)>,
        frames: &[usize],
    ) {
        let mut guard = self.inner.lock();
        let (state, buf, cache) = &mut *guard;
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
        if matches!(state, Output::Closed(_) | Output::Failed) {
            return;
        }
        buf.clear();
        format_record(buf, addr, alloc, frames, &mut |ip, buf| cache.line(ip, buf));
        match state {
            Output::Open(sink) => os::write_all(sink, buf),
            Output::Callback(f) => f(buf),
            Output::Closed(_) | Output::Failed => {}
        }
    }
}

/// Appends one frame line in glibc's `backtrace_symbols_fd` format:
/// `file(symbol+0xoff)[0xip]`, `file(+0xoff)[0xip]` when the address has
/// no dynamic symbol (offset from the object's load address), or
/// `[0xip]` when it is in no known object.
fn describe_ip(ip: usize, buf: &mut SysVec<u8>) {
    os::with_code_site(ip, |site| {
        let Some(site) = site.filter(|s| !s.object.is_empty()) else {
            return;
        };
        append(buf, site.object);
        if site.symbol.is_some() || site.base != 0 {
            buf.push(b'(');
            if let Some(symbol) = site.symbol {
                append(buf, symbol);
            }
            if ip >= site.base {
                append(buf, b"+0x");
                push_hex(buf, (ip - site.base) as u64, 1);
            } else {
                append(buf, b"-0x");
                push_hex(buf, (site.base - ip) as u64, 1);
            }
            buf.push(b')');
        }
    });
    append(buf, b"[0x");
    push_hex(buf, ip as u64, 1);
    append(buf, b"]\n");
}

/// Appends `bytes` to `buf` with one copy (`extend_from_slice` of this
/// vector type copies element by element: a third of log mode's time).
fn append(buf: &mut SysVec<u8>, bytes: &[u8]) {
    buf.reserve(bytes.len());
    // SAFETY: `reserve` made room for `bytes.len()` more bytes past the
    // length; `bytes` cannot overlap that spare capacity (it is not part
    // of the vector's initialised bytes, and `buf` is borrowed mutably);
    // those bytes are initialised by the copy before the length covers them.
    unsafe {
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            buf.as_mut_ptr().add(buf.len()),
            bytes.len(),
        );
        buf.set_len(buf.len() + bytes.len());
    }
}

/// Appends `v` in lowercase hex, at least `width` digits.
fn push_hex(buf: &mut SysVec<u8>, v: u64, width: usize) {
    let digits = (16 - (v.leading_zeros() as usize) / 4).max(width).max(1);
    for i in (0..digits).rev() {
        let d = ((v >> (4 * i)) & 0xf) as usize;
        buf.push(b"0123456789abcdef"[d]);
    }
}

/// Appends `v` in decimal.
fn push_dec(buf: &mut SysVec<u8>, v: u64) {
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
    append(buf, &tmp[i..]);
}

/// One record: `+++ ALLOC:n:0x<addr>:<align>:<size>` when `alloc` is
/// `Some((align, size))`, else `+++ FREE:n:0x<addr>`; then the frames
/// and `---`.
fn format_record(
    buf: &mut SysVec<u8>,
    addr: usize,
    alloc: Option<(usize, usize)>,
    frames: &[usize],
    describe: &mut dyn FnMut(usize, &mut SysVec<u8>),
) {
    append(
        buf,
        if alloc.is_some() {
            b"+++ ALLOC:"
        } else {
            b"+++ FREE:"
        },
    );
    push_dec(buf, frames.len() as u64);
    append(buf, b":0x");
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
    append(buf, b"---\n");
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
    #[cfg(all(unix, not(miri)))]
    fn log_files_are_private_and_never_someone_elses() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = std::env::temp_dir().join(format!("mallocator-logfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // A new file: 0600.
        let fresh = dir.join("fresh.log");
        drop(create_log_file(&fresh).unwrap());
        assert_eq!(mode(&fresh), 0o600);
        // An existing file of ours, world-readable and not empty: 0600, emptied.
        let old = dir.join("old.log");
        std::fs::write(&old, b"old run").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(create_log_file(&old).unwrap());
        assert_eq!((mode(&old), std::fs::read(&old).unwrap().len()), (0o600, 0));
        // A symbolic link, to a file or to nowhere: refused, target untouched.
        let target = dir.join("target.txt");
        std::fs::write(&target, b"keep").unwrap();
        for (link, to) in [
            ("link.log", target.as_path()),
            ("dangling.log", dir.join("none").as_path()),
        ] {
            let link = dir.join(link);
            std::os::unix::fs::symlink(to, &link).unwrap();
            assert!(create_log_file(&link).is_err());
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(!dir.join("none").exists());
        // A FIFO: refused at once, not waited on.
        let fifo = dir.join("fifo.log");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(create_log_file(&fifo).is_err());
        // Another user's file (only root can make one): refused, untouched.
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let theirs = dir.join("theirs.log");
            std::fs::write(&theirs, b"theirs").unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            assert!(create_log_file(&theirs).is_err());
            assert_eq!(std::fs::read(&theirs).unwrap(), b"theirs");
            assert_eq!(std::fs::metadata(&theirs).unwrap().uid(), 65534);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cached_lines_are_the_described_lines() {
        let mut cache = LineCache::new();
        // This function's own address: a line with an object and a symbol
        // where `dladdr` exists; then addresses in no object.
        let here = cached_lines_are_the_described_lines as fn() as usize;
        let ips: Vec<usize> = [here, here + 1]
            .into_iter()
            .chain((1..200).map(|i| i * 4096))
            .collect();
        for round in 0..3 {
            for &ip in &ips {
                let (mut direct, mut cached) = (sys_vec(), sys_vec());
                describe_ip(ip, &mut direct);
                cache.line(ip, &mut cached);
                assert_eq!(text(&cached), text(&direct), "ip {ip:#x}, round {round}");
            }
        }
        // More text than the cache keeps: it starts over, still right.
        let n = if cfg!(miri) { 200 } else { CACHE_TEXT / 8 };
        for i in 0..n {
            let mut line = sys_vec();
            cache.line(0x1000_0000 + i * 8, &mut line);
        }
        assert!(cache.text.len() <= CACHE_TEXT);
        let (mut direct, mut cached) = (sys_vec(), sys_vec());
        describe_ip(here, &mut direct);
        cache.line(here, &mut cached);
        assert_eq!(text(&cached), text(&direct));
    }

    #[test]
    fn records_match_the_c_format() {
        let mut b = sys_vec();
        format_record(
            &mut b,
            0x1234,
            Some((16, 40)),
            &[0xaa, 0xbb],
            &mut describe_ip,
        );
        format_record(&mut b, 0, None, &[], &mut describe_ip);
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
