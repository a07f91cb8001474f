//! Where log records and reports go: files created private to their
//! owner, and writes that put each record out whole.

use super::cancel::NoCancel;
#[cfg(unix)]
use super::descriptors::HeldFd;

/// Where whole records are written.
#[derive(Debug)]
pub(crate) enum Sink {
    /// A file descriptor the tracker does not own (never closed).
    #[cfg(unix)]
    Borrowed(std::os::fd::BorrowedFd<'static>),
    /// A file the tracker created, kept out of the program's way
    /// (`descriptors.rs`); closed when the sink is dropped.
    #[cfg(unix)]
    Owned(HeldFd),
    /// The process's standard output.
    #[cfg(not(unix))]
    Stdout,
    /// The process's standard error.
    #[cfg(not(unix))]
    Stderr,
    /// A file the tracker opened.
    #[cfg(not(unix))]
    File(std::fs::File),
}

impl Sink {
    /// Standard output.
    pub(crate) fn stdout() -> Sink {
        #[cfg(unix)]
        // SAFETY: descriptor 1 is the process's standard output, which
        // stays open (or is replaced in place) for the process's life.
        return Sink::Borrowed(unsafe { std::os::fd::BorrowedFd::borrow_raw(1) });
        #[cfg(not(unix))]
        return Sink::Stdout;
    }

    /// Standard error.
    pub(crate) fn stderr() -> Sink {
        #[cfg(unix)]
        // SAFETY: as for descriptor 1 in `stdout`.
        return Sink::Borrowed(unsafe { std::os::fd::BorrowedFd::borrow_raw(2) });
        #[cfg(not(unix))]
        return Sink::Stderr;
    }

    /// Creates (truncates) the file at `path` (see [`create_private_file`]).
    pub(crate) fn create(path: &str) -> std::io::Result<Sink> {
        let file = create_private_file(std::path::Path::new(path))?;
        #[cfg(unix)]
        return Ok(Sink::Owned(HeldFd::new(file.into())));
        #[cfg(not(unix))]
        return Ok(Sink::File(file));
    }
}

/// Creates the file at `path`, or empties it, for writing data only its
/// owner may read (it holds addresses of the process). On Unix: created
/// with mode 0600; a symbolic link at `path` is refused rather than
/// followed (another user could aim it at a file of ours); an existing
/// file is refused unless it is a regular file owned by this user with
/// no other name (a hard link to a file of ours, made where links to
/// others' files are allowed, would be a symbolic link's way in), and is
/// set to mode 0600 before it is emptied (so a file someone else put
/// there first is never written, nor truncated). Elsewhere: created or
/// truncated. Cancellation is held off meanwhile (`open` is a
/// cancellation point, see `cancel.rs`).
pub(crate) fn create_private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let _no_cancel = NoCancel::now();
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o600)
            // Never block on a FIFO without a reader: it is refused below.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?;
        let meta = file.metadata()?;
        // SAFETY: `geteuid` has no preconditions.
        let me = unsafe { libc::geteuid() };
        if !meta.is_file() || meta.uid() != me || meta.nlink() != 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "exists and is not a regular file of this user with one name",
            ));
        }
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.set_len(0)?;
        Ok(file)
    }
    #[cfg(not(unix))]
    std::fs::File::create(path)
}

/// The descriptor `sink` writes to.
#[cfg(unix)]
fn raw_fd(sink: &Sink) -> std::os::fd::RawFd {
    use std::os::fd::{AsFd, AsRawFd};
    match sink {
        Sink::Borrowed(fd) => fd.as_raw_fd(),
        Sink::Owned(fd) => fd.as_fd().as_raw_fd(),
    }
}

/// Writes all of `bytes` (retrying short writes and interruptions); an
/// error drops the rest of the record and returns false.
#[cfg(unix)]
pub(crate) fn write_all(sink: &Sink, mut bytes: &[u8]) -> bool {
    // `write` and `poll` are cancellation points (see `cancel.rs`).
    let _no_cancel = NoCancel::now();
    let fd = raw_fd(sink);
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable buffer of that length; a bad
        // descriptor only makes `write` fail.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if may_go_on(fd) {
                continue;
            }
            return false;
        }
        bytes = &bytes[n as usize..];
    }
    true
}

/// Writes all of `head` and then all of `tail` as one record, with one
/// system call when it can (a record's head and its bulk need not be
/// copied together first); retries short writes and interruptions. An
/// error drops the rest of the record and returns false.
#[cfg(unix)]
pub(crate) fn write_all_two<'a>(sink: &Sink, mut head: &'a [u8], mut tail: &'a [u8]) -> bool {
    // As in `write_all`.
    let _no_cancel = NoCancel::now();
    let fd = raw_fd(sink);
    while !head.is_empty() {
        let parts = [
            libc::iovec {
                iov_base: head.as_ptr().cast_mut().cast(),
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: tail.as_ptr().cast_mut().cast(),
                iov_len: tail.len(),
            },
        ];
        // SAFETY: both buffers are valid and readable for their lengths,
        // and `writev` only reads them; a bad descriptor only makes it
        // fail.
        let n = unsafe { libc::writev(fd, parts.as_ptr(), 2) };
        if n < 0 {
            if may_go_on(fd) {
                continue;
            }
            return false;
        }
        (head, tail) = unwritten(head, tail, n as usize);
    }
    write_all(sink, tail)
}

/// Where the next write to `sink` lands, when `sink` is a file the
/// tracker created (a regular file), which [`cut_back`] can cut there
/// again; `None` for a descriptor the tracker was given (standard output
/// or error, a caller's): a pipe or a terminal cannot take back what was
/// written, and cutting a file back could remove what others wrote to
/// it meanwhile.
#[cfg(unix)]
pub(crate) fn position(sink: &Sink) -> Option<u64> {
    // An owned sink is a regular file: `create_private_file` refuses
    // anything else.
    let Sink::Owned(_) = sink else {
        return None;
    };
    // SAFETY: no memory is passed; a bad descriptor only makes it fail.
    let at = unsafe { libc::lseek(raw_fd(sink), 0, libc::SEEK_CUR) };
    u64::try_from(at).ok()
}

/// Cuts the file `sink` writes back to its first `len` bytes (a
/// [`position`] it had), the next write landing there; false when it
/// could not.
#[cfg(unix)]
pub(crate) fn cut_back(sink: &Sink, len: u64) -> bool {
    let fd = raw_fd(sink);
    let Ok(len) = libc::off_t::try_from(len) else {
        return false;
    };
    // SAFETY: no memory is passed; a bad descriptor only makes them fail.
    unsafe { libc::ftruncate(fd, len) == 0 && libc::lseek(fd, len, libc::SEEK_SET) == len }
}

/// Portable version: no file is cut back.
#[cfg(not(unix))]
pub(crate) fn position(_sink: &Sink) -> Option<u64> {
    None
}

/// Portable version (never called: [`position`] gives none).
#[cfg(not(unix))]
pub(crate) fn cut_back(_sink: &Sink, _len: u64) -> bool {
    false
}

/// After a write to `fd` failed: whether to try again. An interruption,
/// yes; a descriptor that is non-blocking and full (a pipe whose reader
/// is slow: a log sent to a standard output some program set
/// non-blocking), once it has room, as a blocking one would wait, so
/// that no record is cut short in the middle; anything else, no.
#[cfg(unix)]
fn may_go_on(fd: std::os::fd::RawFd) -> bool {
    match std::io::Error::last_os_error().kind() {
        std::io::ErrorKind::Interrupted => true,
        std::io::ErrorKind::WouldBlock => loop {
            let mut room = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid `pollfd`, written only by `poll`.
            if unsafe { libc::poll(&mut room, 1, -1) } >= 0 {
                return true;
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return false;
            }
        },
        _ => false,
    }
}

/// What is left of a record in two parts once its first `n` bytes are
/// written (`n` at most their total length).
#[cfg(unix)]
fn unwritten<'a>(head: &'a [u8], tail: &'a [u8], n: usize) -> (&'a [u8], &'a [u8]) {
    match head.get(n..) {
        Some(rest) => (rest, tail),
        None => (&[], &tail[n - head.len()..]),
    }
}

/// Portable version.
#[cfg(not(unix))]
pub(crate) fn write_all_two(sink: &Sink, head: &[u8], tail: &[u8]) -> bool {
    write_all(sink, head) && write_all(sink, tail)
}

/// Portable version.
#[cfg(not(unix))]
pub(crate) fn write_all(sink: &Sink, bytes: &[u8]) -> bool {
    use std::io::Write;
    match sink {
        Sink::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        }
        Sink::Stderr => std::io::stderr().lock().write_all(bytes),
        Sink::File(file) => (&*file).write_all(bytes),
    }
    .is_ok()
}

#[cfg(test)]
mod tests {

    /// A log file created by a thread with a cancellation pending is
    /// created, and the thread goes on: `open` runs with cancellation
    /// held off. In a child process, whose only thread is the one
    /// cancelled.
    #[test]
    #[cfg(all(target_os = "linux", not(miri)))]
    fn a_file_created_with_a_cancellation_pending_is_created() {
        const WENT_ON: i32 = 42;
        let path = std::env::temp_dir().join(format!(
            "mallocator-cancelled-create-{}.log",
            std::process::id()
        ));
        let status = crate::test_util::in_cancelled_child(|| {
            let file = super::create_private_file(&path);
            let code = if file.is_ok() { WENT_ON } else { 1 };
            // Left open, for the child's exit to close: closing it here
            // would be a cancellation point of the test's own.
            std::mem::forget(file);
            code
        });
        let made = std::fs::remove_file(&path).is_ok();
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == WENT_ON && made,
            "status {status:#x}: the child was cancelled inside `open`"
        );
    }

    /// After a short write, what is left of a two-part record is exactly
    /// the record's unwritten bytes.
    #[test]
    #[cfg(unix)]
    fn a_short_write_leaves_the_rest_of_both_parts() {
        use super::unwritten;
        let (head, tail) = (b"head".as_slice(), b"and tail".as_slice());
        let whole = [head, tail].concat();
        for n in 0..=whole.len() {
            let (h, t) = unwritten(head, tail, n);
            assert_eq!([h, t].concat(), whole[n..], "after {n} bytes");
        }
        assert_eq!(unwritten(&[], tail, 3), (&[][..], &tail[3..]));
    }

    /// A record in two parts reaches a pipe whole and in order, larger
    /// than the pipe holds, with either part empty too.
    #[test]
    #[cfg(all(unix, not(miri)))]
    fn two_part_records_are_written_whole() {
        use super::{write_all_two, HeldFd, Sink};
        use std::io::Read;
        use std::os::fd::{FromRawFd, OwnedFd};
        let head: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let tail: Vec<u8> = (0..150_000u32).map(|i| (i % 241) as u8).collect();
        for (head, tail) in [
            (&head[..], &tail[..]),
            (&[][..], &tail[..]),
            (&head[..], &[][..]),
        ] {
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for the two descriptors.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: both descriptors are fresh and owned here only.
            let (reader, writer) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            let read_all = std::thread::spawn(move || {
                let mut got = Vec::new();
                std::fs::File::from(reader).read_to_end(&mut got).unwrap();
                got
            });
            let sink = Sink::Owned(HeldFd::new(writer));
            assert!(write_all_two(&sink, head, tail));
            drop(sink);
            assert_eq!(read_all.join().unwrap(), [head, tail].concat());
        }
    }

    /// A non-blocking pipe that fills up (its reader is late) gets every
    /// record whole: the writer waits for room instead of cutting one.
    #[test]
    #[cfg(all(unix, not(miri)))]
    fn a_full_non_blocking_pipe_waits_for_room() {
        use super::{write_all, write_all_two, HeldFd, Sink};
        use std::io::Read;
        use std::os::fd::{FromRawFd, OwnedFd};
        let record: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: `fds[1]` is a valid descriptor; only its flags change.
        let set = unsafe { libc::fcntl(fds[1], libc::F_SETFL, libc::O_NONBLOCK) };
        assert_eq!(set, 0);
        // SAFETY: both descriptors are fresh and owned here only.
        let (reader, writer) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let read_all = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut got = Vec::new();
            std::fs::File::from(reader).read_to_end(&mut got).unwrap();
            got
        });
        let sink = Sink::Owned(HeldFd::new(writer));
        assert!(write_all(&sink, &record));
        assert!(write_all_two(&sink, &record[..1000], &record[1000..]));
        drop(sink);
        assert_eq!(
            read_all.join().unwrap(),
            [&record[..], &record[..]].concat()
        );
    }
}
