//! The bytes of a v2 log (`docs/log-format.md`): the magic and version,
//! the records, and the events inside a chunk, each decoded with the byte
//! offset it starts at, and every way they can be damaged as an [`Error`]
//! naming that offset.
//!
//! Nothing here panics on any input: every read is checked against the
//! end of the record it belongs to.

use mallocator::backtracing::LeakKind;
use std::fmt;

/// The first 8 bytes of every v2 log.
pub const MAGIC: [u8; 8] = *b"\x89mallog\n";
/// The only layout version this reader knows.
pub const VERSION: u32 = 2;
/// Magic and version.
pub const PREAMBLE_LEN: usize = 12;
/// Tag and length in front of every record's payload.
pub const RECORD_HEAD_LEN: usize = 5;
/// Most frames a stack record may hold.
pub const MAX_FRAMES: u16 = 256;
/// Stack ids from here up are reserved (never defined).
pub const RESERVED_STACK_IDS: u32 = 0xFFFF_FFF0;
/// The stack id of an event whose stack was not captured.
pub const NO_STACK: u32 = u32::MAX;

/// Record tags.
pub const TAG_HEADER: u8 = b'H';
/// A loaded object.
pub const TAG_MODULE: u8 = b'M';
/// A distinct stack.
pub const TAG_STACK: u8 = b'S';
/// A chunk of one thread's events.
pub const TAG_EVENTS: u8 = b'E';
/// The end record.
pub const TAG_END: u8 = b'Z';
/// How reachable the blocks live at exit were.
pub const TAG_REACHABILITY: u8 = b'R';
/// Bytes of one block's entry in a reachability record.
pub const REACHABILITY_ENTRY: usize = 9;

/// Event tag of an allocation.
pub const EVENT_ALLOC: u8 = 1;
/// Event tag of a free.
pub const EVENT_FREE: u8 = 2;
/// Bytes of an allocation event, tag included.
pub const ALLOC_LEN: usize = 30;
/// Bytes of a free event, tag included.
pub const FREE_LEN: usize = 21;
/// Bytes of a chunk's thread id, in front of its events.
pub const THREAD_LEN: usize = 8;

/// Does input starting with `prefix` (its first 8 bytes, or all of it if
/// shorter) belong to the v2 reader? Yes for the magic, and also for the
/// magic with its last byte changed (a transfer that rewrote the line
/// end) and for a non-empty beginning of the magic (a log cut inside it),
/// so that those get the v2 reader's precise error rather than the text
/// parser's "binary data". No text log starts like that: the first byte
/// is not ASCII and cannot start UTF-8.
pub fn looks_like_v2(prefix: &[u8]) -> bool {
    if prefix.len() >= 7 {
        prefix[..7] == MAGIC[..7]
    } else {
        !prefix.is_empty() && MAGIC.starts_with(prefix)
    }
}

/// What is wrong at an offset of a v2 log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file ends inside the magic or the version.
    ShortPreamble {
        /// Bytes present.
        len: usize,
    },
    /// The magic's last byte is not `\n`.
    BadMagic {
        /// The 8 bytes found.
        found: [u8; 8],
    },
    /// A version other than [`VERSION`].
    BadVersion(u32),
    /// A record's length runs past the end of the file.
    RecordPastEnd {
        /// The record's tag.
        tag: u8,
        /// Payload bytes the record declares.
        declared: u64,
        /// Payload bytes present before the end of the file.
        present: u64,
    },
    /// The file ends inside a record's tag and length.
    RecordHeadCut {
        /// Bytes present.
        present: usize,
    },
    /// The first record is not the header.
    HeaderNotFirst {
        /// The first record's tag.
        tag: u8,
    },
    /// A second header.
    HeaderTwice {
        /// Offset of the first.
        first: u64,
    },
    /// A record's payload ends before its fields do.
    PayloadTooShort {
        /// Which record.
        tag: u8,
        /// Which field is cut.
        field: &'static str,
        /// Payload bytes the fields up to that one need.
        needed: usize,
        /// Payload bytes present.
        len: usize,
    },
    /// A stack with more than [`MAX_FRAMES`] frames.
    TooManyFrames {
        /// The stack's id.
        id: u32,
        /// Its frame count.
        count: u16,
    },
    /// A stack record with a reserved id.
    ReservedStackId(u32),
    /// A stack id defined a second time.
    StackDefinedTwice {
        /// The id.
        id: u32,
        /// Offset of the first definition.
        first: u64,
    },
    /// An event names a stack no earlier record defines.
    UndefinedStack(u32),
    /// An event tag other than alloc (1) and free (2).
    UnknownEvent(u8),
    /// A chunk ends inside an event.
    EventCut {
        /// The event's tag.
        tag: u8,
        /// Bytes the event needs.
        needed: usize,
        /// Bytes left in the chunk.
        left: usize,
    },
    /// A reachability record's class code other than 1 to 4.
    UnknownLeakKind(u8),
    /// A record after the end record.
    RecordAfterEnd {
        /// The record's tag.
        tag: u8,
        /// Offset of the end record.
        end: u64,
    },
}

/// A damaged v2 log: the byte offset of the record or event at fault and
/// what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// Byte offset from the start of the file.
    pub offset: u64,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// A record's name for messages.
pub fn record_name(tag: u8) -> String {
    match tag {
        TAG_HEADER => "header (H)".to_owned(),
        TAG_MODULE => "module (M)".to_owned(),
        TAG_STACK => "stack (S)".to_owned(),
        TAG_EVENTS => "events (E)".to_owned(),
        TAG_END => "end (Z)".to_owned(),
        TAG_REACHABILITY => "reachability (R)".to_owned(),
        t => format!("unknown (tag 0x{t:02x})"),
    }
}

/// "a stack (S) record", "an events (E) record": a record's name with its article.
fn a_record(tag: u8) -> String {
    let name = record_name(tag);
    let article = if name.starts_with(['e', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name} record")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offset {} (0x{:x}): ", self.offset, self.offset)?;
        match &self.kind {
            ErrorKind::ShortPreamble { len } => write!(
                f,
                "truncated v2 log: the file ends after {len} of the {PREAMBLE_LEN} bytes of magic and version"
            ),
            ErrorKind::BadMagic { found } if found[..7] == MAGIC[..7] && found[7] == b'\r' => write!(
                f,
                "wrong magic: it ends in \\r instead of \\n, so the log went through a transfer \
                 that rewrites line ends (copy it as binary)"
            ),
            ErrorKind::BadMagic { found } => {
                write!(f, "wrong magic {found:02x?} (a v2 log starts with {MAGIC:02x?})")
            }
            ErrorKind::BadVersion(v) => write!(
                f,
                "unsupported log version {v} (this mallocator reads version {VERSION}; \
                 is the log from a newer mallocator?)"
            ),
            ErrorKind::RecordPastEnd {
                tag,
                declared,
                present,
            } => write!(
                f,
                "truncated log: the {} record declares {declared} bytes of payload but the file \
                 ends after {present}",
                record_name(*tag)
            ),
            ErrorKind::RecordHeadCut { present } => write!(
                f,
                "truncated log: the file ends inside a record's tag and length ({present} of \
                 {RECORD_HEAD_LEN} bytes)"
            ),
            ErrorKind::HeaderNotFirst { tag } => write!(
                f,
                "the first record is {}, not the header (H): not a mallocator log, or damaged",
                a_record(*tag)
            ),
            ErrorKind::HeaderTwice { first } => {
                write!(f, "a second header record (the first is at offset {first})")
            }
            ErrorKind::PayloadTooShort {
                tag,
                field,
                needed,
                len,
            } => write!(
                f,
                "payload too short: the {} record has {len} bytes, its {field} needs {needed}",
                record_name(*tag)
            ),
            ErrorKind::TooManyFrames { id, count } => write!(
                f,
                "stack {id} has {count} frames (at most {MAX_FRAMES} are allowed)"
            ),
            ErrorKind::ReservedStackId(id) => write!(
                f,
                "stack id {id:#x} is out of range (ids from {RESERVED_STACK_IDS:#x} up are reserved)"
            ),
            ErrorKind::StackDefinedTwice { id, first } => write!(
                f,
                "stack {id} is defined twice (first at offset {first})"
            ),
            ErrorKind::UndefinedStack(id) => write!(
                f,
                "the event names stack {id}, which no earlier stack record defines"
            ),
            ErrorKind::UnknownEvent(tag) => write!(
                f,
                "unknown event tag 0x{tag:02x} (events are 01 alloc and 02 free)"
            ),
            ErrorKind::EventCut { tag, needed, left } => write!(
                f,
                "payload too short: the chunk ends {left} bytes into an {} event of {needed} bytes",
                if *tag == EVENT_ALLOC { "alloc" } else { "free" }
            ),
            ErrorKind::UnknownLeakKind(code) => write!(
                f,
                "unknown reachability class {code} in a reachability (R) record (1 to 4: \
                 definitely, indirectly, possibly lost, still reachable)"
            ),
            ErrorKind::RecordAfterEnd { tag, end } => write!(
                f,
                "{} after the end record (at offset {end}), which must be last",
                a_record(*tag)
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Checks the magic and version; `Ok` is where the records start.
pub fn check_preamble(data: &[u8]) -> Result<usize, Error> {
    let at = |offset: usize, kind| Error {
        offset: offset as u64,
        kind,
    };
    if data.len() >= MAGIC.len() && data[..MAGIC.len()] != MAGIC {
        let mut found = [0; 8];
        found.copy_from_slice(&data[..8]);
        return Err(at(0, ErrorKind::BadMagic { found }));
    }
    if data.len() < PREAMBLE_LEN {
        if !MAGIC.starts_with(&data[..data.len().min(8)]) {
            let mut found = [0; 8];
            found[..data.len()].copy_from_slice(data);
            return Err(at(0, ErrorKind::BadMagic { found }));
        }
        return Err(at(data.len(), ErrorKind::ShortPreamble { len: data.len() }));
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if version != VERSION {
        return Err(at(8, ErrorKind::BadVersion(version)));
    }
    Ok(PREAMBLE_LEN)
}

/// One record: its offset, tag and payload.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Offset of the tag byte.
    pub offset: u64,
    /// The tag.
    pub tag: u8,
    /// The payload.
    pub payload: &'a [u8],
}

impl Record<'_> {
    /// Offset of the payload's first byte.
    pub fn payload_offset(&self) -> u64 {
        self.offset + RECORD_HEAD_LEN as u64
    }
}

/// The record at `pos` and the position after it; `None` at the end.
pub fn next_record(data: &[u8], pos: usize) -> Result<Option<(Record<'_>, usize)>, Error> {
    let rest = data.get(pos..).unwrap_or_default();
    if rest.is_empty() {
        return Ok(None);
    }
    if rest.len() < RECORD_HEAD_LEN {
        return Err(Error {
            offset: pos as u64,
            kind: ErrorKind::RecordHeadCut {
                present: rest.len(),
            },
        });
    }
    let tag = rest[0];
    let declared = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
    let present = rest.len() - RECORD_HEAD_LEN;
    if declared > present {
        return Err(Error {
            offset: pos as u64,
            kind: ErrorKind::RecordPastEnd {
                tag,
                declared: declared as u64,
                present: present as u64,
            },
        });
    }
    let payload = &rest[RECORD_HEAD_LEN..RECORD_HEAD_LEN + declared];
    let record = Record {
        offset: pos as u64,
        tag,
        payload,
    };
    Ok(Some((record, pos + RECORD_HEAD_LEN + declared)))
}

/// Reads a record's fields in order, each checked against the payload's end.
struct Fields<'a> {
    record: Record<'a>,
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(record: Record<'a>) -> Self {
        Fields { record, pos: 0 }
    }

    fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Error> {
        let payload = self.record.payload;
        match payload.get(self.pos..self.pos.saturating_add(n)) {
            Some(b) if self.pos.checked_add(n).is_some() => {
                self.pos += n;
                Ok(b)
            }
            _ => Err(Error {
                offset: self.record.offset,
                kind: ErrorKind::PayloadTooShort {
                    tag: self.record.tag,
                    field,
                    needed: self.pos.saturating_add(n),
                    len: payload.len(),
                },
            }),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Error> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, Error> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
}

/// The `H` record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Process id.
    pub pid: u32,
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub start_ns: u64,
    /// What timestamps count (1 monotonic ns, 2 QueryPerformanceCounter).
    pub clock: u8,
    /// Timestamp units per second.
    pub ticks_per_second: u64,
    /// Path of the executable (may be empty).
    pub exe: Vec<u8>,
    /// Working directory at the start (may be empty).
    pub cwd: Vec<u8>,
}

/// Decodes an `H` record. Bytes after the last field are ignored.
pub fn header(record: Record<'_>) -> Result<Header, Error> {
    let mut f = Fields::new(record);
    let pid = f.u32("pid")?;
    let start_ns = f.u64("start_ns")?;
    let clock = f.u8("clock")?;
    let ticks_per_second = f.u64("ticks_per_second")?;
    let exe_len = f.u16("exe_len")?;
    let exe = f.bytes(exe_len.into(), "exe")?.to_vec();
    let cwd_len = f.u16("cwd_len")?;
    let cwd = f.bytes(cwd_len.into(), "cwd")?.to_vec();
    Ok(Header {
        pid,
        start_ns,
        clock,
        ticks_per_second,
        exe,
        cwd,
    })
}

/// The `M` record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleRecord {
    /// Load bias: address minus bias is the object file's own address.
    pub bias: u64,
    /// Lowest address of its loaded segments.
    pub start: u64,
    /// One past the highest.
    pub end: u64,
    /// The `NT_GNU_BUILD_ID` note (empty if none).
    pub build_id: Vec<u8>,
    /// Path as the loader knows it.
    pub path: Vec<u8>,
}

/// Decodes an `M` record. Bytes after the last field are ignored.
pub fn module(record: Record<'_>) -> Result<ModuleRecord, Error> {
    let mut f = Fields::new(record);
    let bias = f.u64("bias")?;
    let start = f.u64("start")?;
    let end = f.u64("end")?;
    let id_len = f.u8("build_id_len")?;
    let build_id = f.bytes(id_len.into(), "build_id")?.to_vec();
    let path_len = f.u16("path_len")?;
    let path = f.bytes(path_len.into(), "path")?.to_vec();
    Ok(ModuleRecord {
        bias,
        start,
        end,
        build_id,
        path,
    })
}

/// The `S` record: a stack id and its frames.
#[derive(Clone, Copy, Debug)]
pub struct StackRecord<'a> {
    /// The id events name it by.
    pub id: u32,
    /// `count` little-endian `u64` return addresses, innermost first.
    frames: &'a [u8],
}

impl StackRecord<'_> {
    /// The return addresses, innermost first.
    pub fn frames(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.frames
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }
}

/// Decodes an `S` record: at most [`MAX_FRAMES`] frames, an id below
/// [`RESERVED_STACK_IDS`]. Bytes after the frames are ignored.
pub fn stack(record: Record<'_>) -> Result<StackRecord<'_>, Error> {
    let mut f = Fields::new(record);
    let id = f.u32("id")?;
    let count = f.u16("count")?;
    let err = |kind| Error {
        offset: record.offset,
        kind,
    };
    if id >= RESERVED_STACK_IDS {
        return Err(err(ErrorKind::ReservedStackId(id)));
    }
    if count > MAX_FRAMES {
        return Err(err(ErrorKind::TooManyFrames { id, count }));
    }
    let frames = f.bytes(usize::from(count) * 8, "frames")?;
    Ok(StackRecord { id, frames })
}

/// The `Z` record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct End {
    /// Events the tracker wrote.
    pub events: u64,
    /// Events it could not write.
    pub lost: u64,
}

/// Decodes a `Z` record. Bytes after the last field are ignored.
pub fn end(record: Record<'_>) -> Result<End, Error> {
    let mut f = Fields::new(record);
    Ok(End {
        events: f.u64("events")?,
        lost: f.u64("lost")?,
    })
}

/// An `R` record: the timestamp of the leak scan, and each block it
/// classified (address, class).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reachability {
    /// When the scan ran, in the header's clock.
    pub ts: u64,
    /// Each block's address and class.
    pub blocks: Vec<(u64, LeakKind)>,
}

/// Decodes an `R` record: every entry whole, every class known (the
/// offset of an error is the entry's).
pub fn reachability(record: Record<'_>) -> Result<Reachability, Error> {
    let mut f = Fields::new(record);
    let ts = f.u64("ts")?;
    let mut blocks =
        Vec::with_capacity(record.payload.len().saturating_sub(8) / REACHABILITY_ENTRY);
    while f.pos < record.payload.len() {
        let at = record.payload_offset() + f.pos as u64;
        let addr = f.u64("block address")?;
        let kind = match f.u8("block class")? {
            1 => LeakKind::DefinitelyLost,
            2 => LeakKind::IndirectlyLost,
            3 => LeakKind::PossiblyLost,
            4 => LeakKind::StillReachable,
            code => {
                return Err(Error {
                    offset: at,
                    kind: ErrorKind::UnknownLeakKind(code),
                })
            }
        };
        blocks.push((addr, kind));
    }
    Ok(Reachability { ts, blocks })
}

/// The thread id of an `E` record (its events follow, from [`THREAD_LEN`] on).
pub fn chunk_thread(record: Record<'_>) -> Result<u64, Error> {
    Fields::new(record).u64("thread")
}

/// The requested alignment in bytes for an event's `align_log2` (0: no
/// requirement, also for a log2 too large for a `u64`, which no allocator
/// can honour).
pub fn align(align_log2: u8) -> u64 {
    1u64.checked_shl(align_log2.into()).unwrap_or(0)
}

// The readers below take bytes that were checked, but a mapped log can
// change under the reader (see `input.rs`): out of range reads give 0
// instead of a panic.

#[inline]
fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

#[inline]
fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// The length of the event starting at `events[0]` (its tag), or why
/// there is none: an unknown tag or too few bytes left.
#[inline]
pub fn event_len(events: &[u8]) -> Result<usize, ErrorKind> {
    let tag = events[0];
    let needed = match tag {
        EVENT_ALLOC => ALLOC_LEN,
        EVENT_FREE => FREE_LEN,
        _ => return Err(ErrorKind::UnknownEvent(tag)),
    };
    if events.len() < needed {
        return Err(ErrorKind::EventCut {
            tag,
            needed,
            left: events.len(),
        });
    }
    Ok(needed)
}

/// The stack id of a whole event (`event` is exactly its bytes).
#[inline]
pub fn event_stack(event: &[u8]) -> u32 {
    le32(event, event.len().saturating_sub(4))
}

/// The block of a whole event.
#[inline]
pub fn event_addr(event: &[u8]) -> u64 {
    le64(event, 9)
}

/// The requested size of a whole allocation event.
#[inline]
pub fn alloc_size(event: &[u8]) -> u64 {
    le64(event, 17)
}

/// log2 of the requested alignment of a whole allocation event.
#[inline]
pub fn alloc_align_log2(event: &[u8]) -> u8 {
    event.get(25).copied().unwrap_or(0xFF)
}

/// The timestamp of a whole event.
#[inline]
pub fn event_ts(event: &[u8]) -> u64 {
    le64(event, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tag: u8, payload: &[u8]) -> Record<'_> {
        Record {
            offset: 100,
            tag,
            payload,
        }
    }

    #[test]
    fn detection_takes_the_magic_its_crlf_form_and_its_beginnings() {
        assert!(looks_like_v2(&MAGIC));
        assert!(looks_like_v2(b"\x89mallog\r"));
        assert!(looks_like_v2(b"\x89mal"));
        assert!(!looks_like_v2(b""));
        assert!(!looks_like_v2(b"+++ ALLOC"));
        assert!(!looks_like_v2(b"\x89PNG\r\n\x1a\n"));
    }

    #[test]
    fn preamble_errors_name_what_is_wrong() {
        let mut ok = MAGIC.to_vec();
        ok.extend_from_slice(&2u32.to_le_bytes());
        assert_eq!(check_preamble(&ok), Ok(PREAMBLE_LEN));
        let mut v3 = MAGIC.to_vec();
        v3.extend_from_slice(&3u32.to_le_bytes());
        let e = check_preamble(&v3).unwrap_err();
        assert_eq!((e.offset, e.kind.clone()), (8, ErrorKind::BadVersion(3)));
        assert!(e.to_string().contains("unsupported log version 3"), "{e}");
        let crlf = b"\x89mallog\r\n\x02\x00\x00\x00";
        let e = check_preamble(crlf).unwrap_err();
        assert!(e.to_string().contains("rewrites line ends"), "{e}");
        let e = check_preamble(&MAGIC[..5]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ShortPreamble { len: 5 });
        assert_eq!(e.offset, 5);
        let e = check_preamble(&ok[..10]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ShortPreamble { len: 10 });
        let e = check_preamble(b"\x89ma!").unwrap_err();
        assert!(matches!(e.kind, ErrorKind::BadMagic { .. }), "{e}");
    }

    #[test]
    fn records_past_the_end_and_cut_heads_are_truncation() {
        let data = [0u8, 0, 0, TAG_END, 20, 0, 0, 0, 1, 2];
        let e = next_record(&data, 3).unwrap_err();
        assert_eq!(
            e,
            Error {
                offset: 3,
                kind: ErrorKind::RecordPastEnd {
                    tag: TAG_END,
                    declared: 20,
                    present: 2
                }
            }
        );
        assert!(e.to_string().starts_with("offset 3 (0x3): truncated log"));
        let e = next_record(&data[..6], 3).unwrap_err();
        assert_eq!(e.kind, ErrorKind::RecordHeadCut { present: 3 });
        assert!(next_record(&data, 10).unwrap().is_none());
        let whole = [TAG_END, 2, 0, 0, 0, 7, 8];
        let (r, next) = next_record(&whole, 0).unwrap().unwrap();
        assert_eq!((r.tag, r.payload, next), (TAG_END, &[7u8, 8][..], 7));
    }

    #[test]
    fn payload_too_short_names_the_field() {
        let e = header(rec(TAG_HEADER, &[0; 12])).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::PayloadTooShort {
                tag: TAG_HEADER,
                field: "clock",
                needed: 13,
                len: 12
            }
        );
        assert_eq!(e.offset, 100);
        assert!(e.to_string().contains("payload too short"), "{e}");
        // A path longer than the payload.
        let mut m = vec![0; 24];
        m.push(0);
        m.extend_from_slice(&5u16.to_le_bytes());
        m.extend_from_slice(b"/ab");
        let e = module(rec(TAG_MODULE, &m)).unwrap_err();
        assert!(matches!(
            e.kind,
            ErrorKind::PayloadTooShort { field: "path", .. }
        ));
        let e = end(rec(TAG_END, &[0; 15])).unwrap_err();
        assert!(matches!(
            e.kind,
            ErrorKind::PayloadTooShort { field: "lost", .. }
        ));
    }

    #[test]
    fn stack_limits() {
        let mut s = 7u32.to_le_bytes().to_vec();
        s.extend_from_slice(&2u16.to_le_bytes());
        s.extend_from_slice(&0x1000u64.to_le_bytes());
        s.extend_from_slice(&0x2000u64.to_le_bytes());
        let st = stack(rec(TAG_STACK, &s)).unwrap();
        assert_eq!(st.id, 7);
        assert_eq!(st.frames().collect::<Vec<_>>(), vec![0x1000, 0x2000]);
        let mut many = 7u32.to_le_bytes().to_vec();
        many.extend_from_slice(&257u16.to_le_bytes());
        many.extend(std::iter::repeat_n(0, 257 * 8));
        let e = stack(rec(TAG_STACK, &many)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooManyFrames { id: 7, count: 257 });
        let mut reserved = RESERVED_STACK_IDS.to_le_bytes().to_vec();
        reserved.extend_from_slice(&0u16.to_le_bytes());
        let e = stack(rec(TAG_STACK, &reserved)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ReservedStackId(RESERVED_STACK_IDS));
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = stack(rec(TAG_STACK, &s[..20])).unwrap_err();
        assert!(matches!(
            e.kind,
            ErrorKind::PayloadTooShort {
                field: "frames",
                needed: 22,
                len: 20,
                ..
            }
        ));
    }

    #[test]
    fn events_decode_and_their_damage_is_named() {
        let mut alloc = vec![EVENT_ALLOC];
        alloc.extend_from_slice(&5u64.to_le_bytes());
        alloc.extend_from_slice(&0x10u64.to_le_bytes());
        alloc.extend_from_slice(&24u64.to_le_bytes());
        alloc.push(4);
        alloc.extend_from_slice(&3u32.to_le_bytes());
        assert_eq!(event_len(&alloc), Ok(ALLOC_LEN));
        assert_eq!(
            (event_ts(&alloc), event_addr(&alloc), alloc_size(&alloc)),
            (5, 0x10, 24)
        );
        assert_eq!(alloc_align_log2(&alloc), 4);
        assert_eq!(event_stack(&alloc), 3);
        assert_eq!(event_ts(&alloc), 5);
        assert_eq!(
            event_len(&alloc[..29]),
            Err(ErrorKind::EventCut {
                tag: EVENT_ALLOC,
                needed: 30,
                left: 29
            })
        );
        assert_eq!(event_len(&[9, 0]), Err(ErrorKind::UnknownEvent(9)));
        assert_eq!(align(4), 16);
        assert_eq!(align(0xFF), 0);
        assert_eq!(align(63), 1 << 63);
        assert_eq!(align(64), 0);
    }
}
