//! Which parts of the address space can be read: a leak scan reads every
//! live block and every object's data, and a program may have made part
//! of one unreadable (`mprotect(PROT_NONE)` on a guard page at the end of
//! a coroutine's stack it allocated with `malloc`, or on a data page it
//! wants to catch writes to). Reading there would kill the program at its
//! exit, so the scan reads only what the kernel's map of the process
//! (`/proc/self/maps`) says is readable, and skips the rest (a pointer
//! kept only there is missed, as memcheck misses one in memory it does
//! not know).
//!
//! The map is read once a scan, before it starts; a page the program
//! makes unreadable while the scan runs (another thread's `mprotect`, as
//! the program exits) is not noticed.

use super::super::sys_vec::{sys_vec, SysVec};

/// The readable ranges of the address space, `[start, end)`, sorted and
/// not touching (neighbours merged).
pub(crate) struct Readable {
    ranges: SysVec<(usize, usize)>,
}

impl Readable {
    /// The readable ranges now, from the kernel's map of the process;
    /// `None` where it cannot be read (not Linux, no `/proc`, out of
    /// memory): a scan then does not classify.
    pub(crate) fn of_process() -> Option<Readable> {
        let mut readable = Readable { ranges: sys_vec() };
        let mut ok = true;
        let read = each_map_line(&mut |line| {
            if let Some((start, end, true)) = parse_map_line(line) {
                ok &= readable.add(start, end);
            }
        });
        (read && ok).then_some(readable)
    }

    /// Adds `[start, end)`, in address order; false out of memory.
    fn add(&mut self, start: usize, end: usize) -> bool {
        if let Some(last) = self.ranges.last_mut() {
            if last.1 == start {
                last.1 = end;
                return true;
            }
        }
        if self.ranges.try_reserve(1).is_err() {
            return false;
        }
        self.ranges.push((start, end));
        true
    }

    /// Calls `f(start, len)` on each readable part of `[start, start +
    /// len)`, in address order.
    pub(crate) fn each_part(&self, start: usize, len: usize, f: &mut dyn FnMut(usize, usize)) {
        let end = start.saturating_add(len);
        // The first range that ends after `start`.
        let first = self.ranges.partition_point(|&(_, e)| e <= start);
        for &(s, e) in &self.ranges[first..] {
            if s >= end {
                break;
            }
            let (from, to) = (s.max(start), e.min(end));
            f(from, to - from);
        }
    }
}

/// `start`, `end` and whether it is readable, of a line of
/// `/proc/self/maps` (`55d4c5a3c000-55d4c5a3e000 r--p 00000000 08:01 1234
/// /usr/bin/cat`); `None` for a line that does not start that way.
fn parse_map_line(line: &[u8]) -> Option<(usize, usize, bool)> {
    let hex = |s: &[u8]| {
        let s = core::str::from_utf8(s).ok()?;
        usize::from_str_radix(s, 16).ok()
    };
    let dash = line.iter().position(|&b| b == b'-')?;
    let space = dash + line[dash..].iter().position(|&b| b == b' ')?;
    let (start, end) = (hex(&line[..dash])?, hex(&line[dash + 1..space])?);
    let perms = line.get(space + 1..space + 5)?;
    (start <= end).then_some((start, end, perms[0] == b'r'))
}

/// Calls `line` with the start of each line of `/proc/self/maps` (at
/// least its first 256 bytes: its addresses and permissions); false when
/// the file cannot be read. Allocates nothing: a scan runs holding the
/// tracker's locks.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(miri)))]
fn each_map_line(line: &mut dyn FnMut(&[u8])) -> bool {
    // Reading is a cancellation point: not inside the tracker.
    let _no_cancel = super::cancel::NoCancel::now();
    // SAFETY: a NUL-terminated path; the flags ask for nothing unusual.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    let mut buf = [0u8; 4096];
    // Bytes of `buf` holding the start of a line not yet ended.
    let mut held = 0;
    // Inside a line longer than `buf`, already given to `line`.
    let mut skipping = false;
    let ok = loop {
        // SAFETY: writes at most the free end of `buf`, which is ours.
        let n = unsafe { libc::read(fd, buf[held..].as_mut_ptr().cast(), buf.len() - held) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break n == 0;
        }
        let filled = held + n as usize;
        let mut from = 0;
        while let Some(nl) = buf[from..filled].iter().position(|&b| b == b'\n') {
            if !skipping {
                line(&buf[from..from + nl]);
            }
            skipping = false;
            from += nl + 1;
        }
        if from == 0 && filled == buf.len() {
            // A line longer than the buffer (a very long path): its start
            // is enough.
            if !skipping {
                line(&buf[..256]);
            }
            skipping = true;
            held = 0;
        } else {
            buf.copy_within(from..filled, 0);
            held = filled - from;
        }
    };
    // SAFETY: `fd` is the descriptor opened above, closed once.
    unsafe { libc::close(fd) };
    ok
}

/// No map of the process here: nothing is known to be readable.
#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(miri))))]
fn each_map_line(_line: &mut dyn FnMut(&[u8])) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lines_give_their_range_and_whether_it_is_readable() {
        let line = b"55d4c5a3c000-55d4c5a3e000 r--p 00000000 08:01 1234   /usr/bin/cat";
        assert_eq!(
            parse_map_line(line),
            Some((0x55d4c5a3c000, 0x55d4c5a3e000, true))
        );
        assert_eq!(
            parse_map_line(b"7f0000000000-7f0000001000 ---p 00000000 00:00 0"),
            Some((0x7f0000000000, 0x7f0000001000, false))
        );
        for bad in [
            &b""[..],
            b"garbage",
            b"10-x r--p",
            b"20-10 r--p",
            b"10-20 r",
        ] {
            assert_eq!(parse_map_line(bad), None, "{bad:?}");
        }
    }

    /// A range is cut to its readable parts, whatever ranges it overlaps.
    #[test]
    fn each_part_is_the_readable_intersection() {
        let mut r = Readable { ranges: sys_vec() };
        for (s, e) in [
            (0x1000, 0x2000),
            (0x2000, 0x3000),
            (0x5000, 0x6000),
            (0x8000, 0x9000),
        ] {
            assert!(r.add(s, e));
        }
        // Touching ranges are one.
        assert_eq!(
            &r.ranges[..],
            &[(0x1000, 0x3000), (0x5000, 0x6000), (0x8000, 0x9000)]
        );
        let parts = |start, len| {
            let mut out = Vec::new();
            r.each_part(start, len, &mut |s, l| out.push((s, l)));
            out
        };
        assert_eq!(parts(0x1800, 0x100), [(0x1800, 0x100)]);
        assert_eq!(
            parts(0x2800, 0x6000),
            [(0x2800, 0x800), (0x5000, 0x1000), (0x8000, 0x800)]
        );
        assert_eq!(parts(0x3000, 0x2000), []);
        assert_eq!(parts(0x9000, 0x10), []);
        assert_eq!(parts(0, 0x1001), [(0x1000, 1)]);
        assert_eq!(parts(usize::MAX - 4, 100), []);
    }

    /// This process's own map: its stack and a static are readable.
    #[cfg(all(target_os = "linux", not(miri)))]
    #[test]
    fn the_process_map_holds_the_stack_and_the_data() {
        static DATA: [u8; 64] = [7; 64];
        let r = Readable::of_process().expect("/proc/self/maps");
        let local = 5u64;
        for (what, at) in [
            ("stack", &local as *const u64 as usize),
            ("data", DATA.as_ptr() as usize),
        ] {
            let mut seen = 0;
            r.each_part(at, 8, &mut |_, l| seen += l);
            assert_eq!(seen, 8, "{what}");
        }
    }
}
