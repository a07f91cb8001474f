//! The compact binary log (format v2, specified in `docs/log-format.md`
//! at the repository's root): pure encoders of its records and events,
//! one function per record kind, so that the format lives in one place
//! and is tested without a process around it.

use super::super::reachability::LeakKind;
use super::record_buf::RecordBuf;

/// The first 8 bytes of every compact log. The first byte is not ASCII,
/// so no text log starts with it; the last is a newline, so a transfer
/// that rewrites line ends breaks the magic.
pub(crate) const MAGIC: [u8; 8] = *b"\x89mallog\n";
/// The format version after the magic.
pub(crate) const VERSION: u32 = 2;
/// The stack id of "no stack" in events.
pub(crate) const NO_STACK_ID: u32 = u32::MAX;
/// Stack ids at or above this are not valid ids.
pub(crate) const FIRST_INVALID_ID: u32 = 0xFFFF_FFF0;
/// Most frames a stack record may hold.
pub(crate) const MAX_FRAMES: usize = 256;
/// Bytes of one allocation event.
pub(crate) const ALLOC_EVENT: usize = 30;
/// Bytes of one free event.
pub(crate) const FREE_EVENT: usize = 21;

const TAG_HEADER: u8 = b'H';
const TAG_MODULE: u8 = b'M';
const TAG_STACK: u8 = b'S';
const TAG_EVENTS: u8 = b'E';
const TAG_END: u8 = b'Z';
const TAG_REACHABILITY: u8 = b'R';
/// Bytes of one block's entry in a reachability record.
pub(crate) const REACHABILITY_ENTRY: usize = 9;
const EVENT_ALLOC: u8 = 1;
const EVENT_FREE: u8 = 2;

/// What the header record says.
pub(crate) struct Header<'a> {
    pub pid: u32,
    pub start_ns: u64,
    pub clock: u8,
    pub ticks_per_second: u64,
    pub exe: &'a [u8],
    pub cwd: &'a [u8],
}

/// At most `u16::MAX` bytes of `s` (paths longer than that are cut; no
/// platform's path limit comes near it).
fn short(s: &[u8]) -> &[u8] {
    &s[..s.len().min(u16::MAX as usize)]
}

/// Starts a record: its tag and payload length.
fn record(buf: &mut RecordBuf, tag: u8, len: usize) {
    buf.push(tag);
    buf.append(&(len as u32).to_le_bytes());
}

/// Appends a length-prefixed (u16) byte string.
fn string(buf: &mut RecordBuf, s: &[u8]) {
    buf.append(&(s.len() as u16).to_le_bytes());
    buf.append(s);
}

/// The start of a file: magic, version, header record.
pub(crate) fn file_start(buf: &mut RecordBuf, h: &Header<'_>) {
    let (exe, cwd) = (short(h.exe), short(h.cwd));
    buf.append(&MAGIC);
    buf.append(&VERSION.to_le_bytes());
    record(
        buf,
        TAG_HEADER,
        4 + 8 + 1 + 8 + 2 + exe.len() + 2 + cwd.len(),
    );
    buf.append(&h.pid.to_le_bytes());
    buf.append(&h.start_ns.to_le_bytes());
    buf.push(h.clock);
    buf.append(&h.ticks_per_second.to_le_bytes());
    string(buf, exe);
    string(buf, cwd);
}

/// A module record.
pub(crate) fn module(
    buf: &mut RecordBuf,
    bias: usize,
    start: usize,
    end: usize,
    build_id: &[u8],
    path: &[u8],
) {
    let build_id = &build_id[..build_id.len().min(u8::MAX as usize)];
    let path = short(path);
    record(buf, TAG_MODULE, 8 * 3 + 1 + build_id.len() + 2 + path.len());
    buf.append(&(bias as u64).to_le_bytes());
    buf.append(&(start as u64).to_le_bytes());
    buf.append(&(end as u64).to_le_bytes());
    buf.push(build_id.len() as u8);
    buf.append(build_id);
    string(buf, path);
}

/// A stack record (at most [`MAX_FRAMES`] frames are kept).
pub(crate) fn stack(buf: &mut RecordBuf, id: u32, frames: &[usize]) {
    debug_assert!(id < FIRST_INVALID_ID);
    let frames = &frames[..frames.len().min(MAX_FRAMES)];
    record(buf, TAG_STACK, 4 + 2 + 8 * frames.len());
    buf.append(&id.to_le_bytes());
    buf.append(&(frames.len() as u16).to_le_bytes());
    for &ip in frames {
        buf.append(&(ip as u64).to_le_bytes());
    }
}

/// The start of a chunk of `thread`'s events, `events` bytes of them,
/// which the caller appends right after.
pub(crate) fn chunk_start(buf: &mut RecordBuf, thread: u64, events: usize) {
    record(buf, TAG_EVENTS, 8 + events);
    buf.append(&thread.to_le_bytes());
}

/// The end record.
pub(crate) fn end(buf: &mut RecordBuf, events: u64, lost: u64) {
    record(buf, TAG_END, 16);
    buf.append(&events.to_le_bytes());
    buf.append(&lost.to_le_bytes());
}

/// A reachability record: the scan at `ts` found each block at the
/// address of `blocks` as reachable as its kind says.
pub(crate) fn reachability(
    buf: &mut RecordBuf,
    ts: u64,
    blocks: impl ExactSizeIterator<Item = (usize, LeakKind)>,
) {
    record(buf, TAG_REACHABILITY, 8 + REACHABILITY_ENTRY * blocks.len());
    buf.append(&ts.to_le_bytes());
    for (addr, kind) in blocks {
        buf.append(&(addr as u64).to_le_bytes());
        buf.push(kind_code(kind));
    }
}

/// A class's code in a reachability record.
fn kind_code(kind: LeakKind) -> u8 {
    match kind {
        LeakKind::DefinitelyLost => 1,
        LeakKind::IndirectlyLost => 2,
        LeakKind::PossiblyLost => 3,
        LeakKind::StillReachable => 4,
    }
}

/// An allocation event (`align_log2` 0xFF: no alignment asked for).
#[inline(always)]
pub(crate) fn alloc_event(
    ts: u64,
    addr: usize,
    size: usize,
    align_log2: u8,
    stack: u32,
) -> [u8; ALLOC_EVENT] {
    let mut e = [0u8; ALLOC_EVENT];
    e[0] = EVENT_ALLOC;
    e[1..9].copy_from_slice(&ts.to_le_bytes());
    e[9..17].copy_from_slice(&(addr as u64).to_le_bytes());
    e[17..25].copy_from_slice(&(size as u64).to_le_bytes());
    e[25] = align_log2;
    e[26..30].copy_from_slice(&stack.to_le_bytes());
    e
}

/// A free event.
#[inline(always)]
pub(crate) fn free_event(ts: u64, addr: usize, stack: u32) -> [u8; FREE_EVENT] {
    let mut e = [0u8; FREE_EVENT];
    e[0] = EVENT_FREE;
    e[1..9].copy_from_slice(&ts.to_le_bytes());
    e[9..17].copy_from_slice(&(addr as u64).to_le_bytes());
    e[17..21].copy_from_slice(&stack.to_le_bytes());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], i: usize) -> u64 {
        u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
    }

    /// Every record's length field covers exactly its payload, and the
    /// fields sit where `docs/log-format.md` puts them.
    #[test]
    fn records_are_laid_out_as_documented() {
        let mut b = RecordBuf::new();
        file_start(
            &mut b,
            &Header {
                pid: 42,
                start_ns: 7,
                clock: 1,
                ticks_per_second: 1_000_000_000,
                exe: b"/bin/x",
                cwd: b"/w",
            },
        );
        assert_eq!(&b[..8], b"\x89mallog\n");
        assert_eq!(u32_at(&b, 8), 2);
        assert_eq!((b[12], u32_at(&b, 13) as usize), (b'H', b.len() - 17));
        let h = &b[17..];
        assert_eq!(
            (u32_at(h, 0), u64_at(h, 4), h[12], u64_at(h, 13)),
            (42, 7, 1, 1_000_000_000)
        );
        assert_eq!(
            (u16::from_le_bytes([h[21], h[22]]), &h[23..29]),
            (6, &b"/bin/x"[..])
        );
        assert_eq!(
            (u16::from_le_bytes([h[29], h[30]]), &h[31..]),
            (2, &b"/w"[..])
        );

        let mut m = RecordBuf::new();
        module(&mut m, 0x1000, 0x2000, 0x3000, &[0xab; 20], b"/lib/y.so");
        assert_eq!((m[0], u32_at(&m, 1) as usize), (b'M', m.len() - 5));
        assert_eq!(
            (u64_at(&m, 5), u64_at(&m, 13), u64_at(&m, 21)),
            (0x1000, 0x2000, 0x3000)
        );
        assert_eq!((m[29], &m[30..50]), (20, &[0xab; 20][..]));
        assert_eq!(&m[52..], b"/lib/y.so");

        let mut s = RecordBuf::new();
        stack(&mut s, 5, &[0x10, 0x20]);
        assert_eq!((s[0], u32_at(&s, 1), u32_at(&s, 5)), (b'S', 4 + 2 + 16, 5));
        assert_eq!(
            (
                u16::from_le_bytes([s[9], s[10]]),
                u64_at(&s, 11),
                u64_at(&s, 19)
            ),
            (2, 0x10, 0x20)
        );
        let long = [1usize; MAX_FRAMES + 5];
        let mut s = RecordBuf::new();
        stack(&mut s, 6, &long);
        assert_eq!(u16::from_le_bytes([s[9], s[10]]) as usize, MAX_FRAMES);
        assert_eq!(s.len(), 5 + 6 + 8 * MAX_FRAMES);

        let a = alloc_event(9, 0xabc, 24, 0xff, 3);
        assert_eq!(
            (
                a[0],
                u64_at(&a, 1),
                u64_at(&a, 9),
                u64_at(&a, 17),
                a[25],
                u32_at(&a, 26)
            ),
            (1, 9, 0xabc, 24, 0xff, 3)
        );
        let f = free_event(10, 0xabc, NO_STACK_ID);
        assert_eq!(
            (f[0], u64_at(&f, 1), u64_at(&f, 9), u32_at(&f, 17)),
            (2, 10, 0xabc, u32::MAX)
        );

        let mut c = RecordBuf::new();
        chunk_start(&mut c, 77, ALLOC_EVENT + FREE_EVENT);
        c.append(&a);
        c.append(&f);
        assert_eq!(
            (c[0], u32_at(&c, 1) as usize, u64_at(&c, 5)),
            (b'E', c.len() - 5, 77)
        );

        let mut r = RecordBuf::new();
        let blocks = [
            (0x10, LeakKind::DefinitelyLost),
            (0x20, LeakKind::StillReachable),
        ];
        reachability(&mut r, 11, blocks.into_iter());
        assert_eq!(
            (r[0], u32_at(&r, 1) as usize, u64_at(&r, 5)),
            (b'R', r.len() - 5, 11)
        );
        assert_eq!(
            (u64_at(&r, 13), r[21], u64_at(&r, 22), r[30]),
            (0x10, 1, 0x20, 4)
        );
        assert_eq!(r.len(), 5 + 8 + 2 * REACHABILITY_ENTRY);

        let mut z = RecordBuf::new();
        end(&mut z, 100, 2);
        assert_eq!(
            (z[0], u32_at(&z, 1), u64_at(&z, 5), u64_at(&z, 13)),
            (b'Z', 16, 100, 2)
        );
    }
}
