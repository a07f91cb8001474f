//! The file descriptors the tracker's log files are written through:
//! kept out of the program's way, and listed, so that the program does
//! not take them by mistake.
//!
//! A log's descriptor lives in the program's own descriptor table,
//! where the program can reach it without knowing it is there. A shell
//! script's `exec 3>file` makes descriptor 3 a copy of its file's with
//! `dup2`: had the log been at 3 (the lowest free descriptor when a
//! program starts), the log's records would have gone into the script's
//! file, and the script's lines into the log. OpenSSH, daemons and
//! sandboxes close every descriptor above 2 at start (`close_range`,
//! `closefrom`, or a loop of `close`), which ends the log unseen.
//!
//! So:
//! * a log file's descriptor is moved up to [`FLOOR`] or above (the
//!   lowest free one there, below the process's soft descriptor limit),
//!   away from the small numbers programs open, redirect and name;
//! * it is listed in [`HELD`] while the log holds it, for the preload
//!   library's `close`, `close_range`, `closefrom`, `dup2` and `dup3` to
//!   leave it alone ([`holds_descriptor`], [`log_descriptors`]).
//!
//! A file the caller opens and lends to a tracker is kept so too when it
//! is wrapped in a [`HeldLogFile`].
//!
//! A program that makes the system call itself, not through the C
//! library, still reaches it.

use core::mem::ManuallyDrop;
use core::sync::atomic::{AtomicI32, Ordering};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::cancel::NoCancel;

/// The lowest descriptor a log file is moved to, unless the process's
/// soft limit on descriptors is lower ([`floor`]).
/// Shells keep their own descriptors at 10 and above (bash's script at
/// 255); a program needing a thousand at once is rare.
const FLOOR: RawFd = 1000;

/// How many log descriptors can be listed at once: one per tracker with
/// a log file, of which a process has one or two (more in this crate's
/// tests, which run side by side).
const SLOTS: usize = 16;

/// The descriptors log files hold open now; `EMPTY` in a free slot.
/// A descriptor is listed from before the log's first write through it
/// until before it is closed ([`HeldFd`]), so it is never listed while
/// it could name a file of the program's. With every slot taken, a log
/// goes unlisted (it was moved up all the same).
static HELD: [AtomicI32; SLOTS] = [const { AtomicI32::new(EMPTY) }; SLOTS];

/// A free slot of [`HELD`].
const EMPTY: RawFd = -1;

/// A log file's descriptor, moved up and listed in [`HELD`] while it
/// lives; closed when dropped, with thread cancellation held off (`close`
/// is a cancellation point, see `cancel.rs`): a tracker dropped by a
/// thread with a cancellation pending must not be left half dropped, nor
/// unwind out of the C library into code that cannot unwind.
#[derive(Debug)]
pub(crate) struct HeldFd {
    /// Dropped (closed) only in `HeldFd`'s own drop.
    fd: ManuallyDrop<OwnedFd>,
    /// Its slot in [`HELD`], if it got one.
    slot: Option<usize>,
}

impl HeldFd {
    /// Takes `fd` (a file the tracker created), moving it up when it can
    /// (see the module docs) and listing it.
    pub(crate) fn new(fd: OwnedFd) -> HeldFd {
        // Moving it up closes the old number (see `HeldFd`).
        let _no_cancel = NoCancel::now();
        let fd = moved_up(fd);
        let slot = list(fd.as_raw_fd());
        HeldFd {
            fd: ManuallyDrop::new(fd),
            slot,
        }
    }
}

/// Lists `fd` in a free slot of [`HELD`]; the slot, or `None` when all
/// are taken.
fn list(fd: RawFd) -> Option<usize> {
    HELD.iter().position(|slot| {
        slot.compare_exchange(EMPTY, fd, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Takes the descriptor in `slot` (from [`list`]) off the list.
fn unlist(slot: usize) {
    HELD[slot].store(EMPTY, Ordering::Release);
}

impl AsFd for HeldFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for HeldFd {
    fn drop(&mut self) {
        // Unlisted before the descriptor is closed: once closed, its
        // number may be handed to the program, whose closes must then
        // work.
        if let Some(slot) = self.slot {
            unlist(slot);
        }
        let _no_cancel = NoCancel::now();
        // SAFETY: `fd` is dropped here only, once, and never used after.
        unsafe { ManuallyDrop::drop(&mut self.fd) };
    }
}

/// `fd` moved to the lowest free descriptor at or above [`floor`],
/// close-on-exec as the tracker opens everything; `fd` itself when it
/// cannot be moved (every such descriptor in use).
fn moved_up(fd: OwnedFd) -> OwnedFd {
    let Some(floor) = floor().filter(|&floor| fd.as_raw_fd() < floor) else {
        return fd;
    };
    // SAFETY: `fd` is open; the call makes a new descriptor or fails.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor) };
    if moved < 0 {
        return fd;
    }
    // SAFETY: `moved` was just made by `fcntl`, owned by nobody else;
    // `fd`, dropped on return, closes the old number.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(moved) }
}

/// The lowest descriptor a log file is moved to: [`FLOOR`], or the
/// highest the process's soft limit allows when that is lower; `None`
/// when the limit cannot be read (and under Miri, which has no limits).
fn floor() -> Option<RawFd> {
    if cfg!(miri) {
        return None;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid `rlimit` for `getrlimit` to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let highest = RawFd::try_from(limit.rlim_cur.saturating_sub(1)).unwrap_or(RawFd::MAX);
    Some(FLOOR.min(highest))
}

/// A log file opened by the caller (with [`create_log_file`]) to lend to
/// a tracker as [`LogTarget::Fd`], kept out of the program's way as the
/// tracker keeps the files it opens itself: its descriptor moved up to
/// 1000 or above and listed by [`holds_descriptor`] while this lives; the
/// file is closed when it is dropped (after the tracker it was lent to).
/// The C library's `mlc_tracker_new_with_log` keeps its log so.
///
/// [`create_log_file`]: crate::backtracing::create_log_file
/// [`LogTarget::Fd`]: crate::backtracing::LogTarget::Fd
///
/// ```
/// # #[cfg(not(miri))] { // Miri cannot create files in isolation
/// use mallocator::backtracing::{create_log_file, holds_descriptor, HeldLogFile};
/// use std::os::fd::{AsFd, AsRawFd};
///
/// let path = std::env::temp_dir().join(format!("mallocator-held-doc-{}.log", std::process::id()));
/// let log = HeldLogFile::new(create_log_file(&path).unwrap());
/// let fd = log.as_fd().as_raw_fd();
/// assert!(fd >= 3 && holds_descriptor(fd));
/// drop(log);
/// assert!(!holds_descriptor(fd));
/// # std::fs::remove_file(&path).unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct HeldLogFile(HeldFd);

impl HeldLogFile {
    /// Takes `file`, moving its descriptor up and listing it.
    pub fn new(file: std::fs::File) -> HeldLogFile {
        HeldLogFile(HeldFd::new(file.into()))
    }
}

impl AsFd for HeldLogFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Whether `fd` is a descriptor a tracker's log file is written through
/// now. Such a descriptor is at 1000 or above (unless the process's
/// limit on descriptors is lower), away from the numbers programs name,
/// and a program that closes or replaces descriptors it did not open
/// (`close_range`, `closefrom`, a loop of `close`, `dup2`) must leave it
/// alone, as the preload library of `mallocator trace` makes them do.
///
/// ```
/// # #[cfg(not(miri))] { // Miri cannot create files in isolation
/// use mallocator::backtracing::{holds_descriptor, log_descriptors, Backtracing, Config, LogTarget};
/// use mallocator::Valloc;
///
/// let path = std::env::temp_dir().join(format!("mallocator-fd-doc-{}.log", std::process::id()));
/// let path: &'static str = Box::leak(path.to_str().unwrap().into());
/// let t = Backtracing::with_config(Valloc::libc(), Config { log: LogTarget::Path(path), ..Config::DEFAULT });
/// let before = log_descriptors();
/// // The first event creates the log file.
/// let v = t.valloc();
/// unsafe { v.free(v.malloc(8, 16)) };
/// let fd = *log_descriptors().iter().find(|fd| !before.contains(fd)).unwrap();
/// assert!(fd >= 3 && holds_descriptor(fd));
/// assert!(!holds_descriptor(2));
/// drop(t);
/// assert!(!holds_descriptor(fd));
/// # std::fs::remove_file(path).unwrap();
/// # }
/// ```
pub fn holds_descriptor(fd: RawFd) -> bool {
    fd != EMPTY && HELD.iter().any(|slot| slot.load(Ordering::Acquire) == fd)
}

/// The descriptors of [`holds_descriptor`], in increasing order (see
/// there for an example).
pub fn log_descriptors() -> LogDescriptors {
    let mut held = LogDescriptors {
        fds: [EMPTY; SLOTS],
        len: 0,
    };
    for slot in &HELD {
        let fd = slot.load(Ordering::Acquire);
        if fd != EMPTY {
            held.fds[held.len] = fd;
            held.len += 1;
        }
    }
    held.fds[..held.len].sort_unstable();
    held
}

/// The descriptors tracker logs hold open, in increasing order, from
/// [`log_descriptors`](crate::backtracing::log_descriptors).
#[derive(Debug, Clone, Copy)]
pub struct LogDescriptors {
    fds: [RawFd; SLOTS],
    len: usize,
}

impl core::ops::Deref for LogDescriptors {
    type Target = [RawFd];

    fn deref(&self) -> &[RawFd] {
        &self.fds[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A held descriptor dropped by a thread with a cancellation pending
    /// is closed, and the thread goes on: the cancellation waits for the
    /// program's next cancellation point instead of acting inside the
    /// tracker's `close`. In a child process, whose only thread is the
    /// one cancelled.
    #[test]
    #[cfg(all(target_os = "linux", not(miri)))]
    fn a_pending_cancellation_waits_until_the_descriptor_is_closed() {
        use std::os::fd::FromRawFd;
        const WENT_ON: i32 = 42;
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors are fresh and owned here only.
        let (reader, writer) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let held = HeldFd::new(writer);
        // The parent's copy is dropped with the closure.
        let status = crate::test_util::in_cancelled_child(move || {
            drop(held);
            WENT_ON
        });
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == WENT_ON,
            "status {status:#x}: the child was cancelled inside `close`"
        );
        drop(reader);
    }

    /// Numbers no real descriptor has (above any limit), so that the
    /// list's logic runs under Miri too, beside the real files of other
    /// tests.
    const FAKE: [RawFd; 3] = [i32::MAX - 1, i32::MAX - 3, i32::MAX - 2];

    /// Listed descriptors are held until unlisted, and come out in
    /// increasing order, each once; a full list takes no more.
    #[test]
    fn listed_descriptors_are_held_until_unlisted() {
        let slots: Vec<usize> = FAKE.iter().map(|&fd| list(fd).unwrap()).collect();
        assert!(FAKE.iter().all(|&fd| holds_descriptor(fd)));
        let listed = log_descriptors();
        let ours: Vec<RawFd> = listed
            .iter()
            .copied()
            .filter(|fd| FAKE.contains(fd))
            .collect();
        assert_eq!(ours, [FAKE[1], FAKE[2], FAKE[0]]);
        assert!(listed.windows(2).all(|w| w[0] < w[1]));
        assert!(!holds_descriptor(EMPTY));
        for slot in slots {
            unlist(slot);
        }
        assert!(FAKE.iter().all(|&fd| !holds_descriptor(fd)));
        assert!(!log_descriptors().iter().any(|fd| FAKE.contains(fd)));
    }

    /// A log file's descriptor is moved up to the floor, close-on-exec,
    /// and listed while it is held, no longer once dropped.
    #[test]
    #[cfg(not(miri))] // Miri cannot create files in isolation
    fn a_log_file_is_moved_up_and_listed_while_held() {
        let path = std::env::temp_dir().join(format!("mallocator-held-{}", std::process::id()));
        let fd: OwnedFd = crate::backtracing::os::create_private_file(&path)
            .unwrap()
            .into();
        let _ = std::fs::remove_file(&path);
        let low = fd.as_raw_fd();
        let held = HeldFd::new(fd);
        let raw = held.as_fd().as_raw_fd();
        let floor = floor().unwrap();
        assert!(low < floor && raw >= floor, "{low} was not moved up: {raw}");
        // SAFETY: only asks for the flags of a descriptor.
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        assert!(holds_descriptor(raw));
        assert!(log_descriptors().contains(&raw));
        drop(held);
        assert!(!holds_descriptor(raw));
    }
}
