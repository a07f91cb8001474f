//! Streaming parser of backtracing-allocator logs (the C `fd_backtracing`
//! format, also written by `mallocator`'s log mode).
//!
//! A record is a header line followed by `n` frame lines:
//!
//! ```text
//! +++ ALLOC:<n>:0x<address>:<align>:<size>
//! +++ FREE:<n>:0x<address>
//! ```
//!
//! Every other line (the `---` record terminators, program output mixed
//! into the same stream) is skipped, exactly as the C leak script does.
//! The parser works on bytes, reuses its buffers and never keeps more than
//! one record in memory, so memory does not grow with the log.

use std::fmt;
use std::io::{self, BufRead};

/// Longest accepted line; longer lines are "not a log" (strict) or cut (lenient).
pub const MAX_LINE: usize = 64 * 1024;
/// Largest accepted frame count in a record header.
pub const MAX_FRAMES: u64 = 4096;
/// How many warnings are kept (the total is always counted).
pub const MAX_KEPT_WARNINGS: usize = 100;

const ALLOC_TAG: &[u8] = b"+++ ALLOC:";
const FREE_TAG: &[u8] = b"+++ FREE:";

/// What a record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `+++ ALLOC`: the inner allocator returned `addr` (0 for NULL).
    Alloc {
        /// Returned address.
        addr: u64,
        /// Requested alignment.
        align: u64,
        /// Requested size in bytes.
        size: u64,
    },
    /// `+++ FREE`: `addr` was passed to free (0 for `free(NULL)`).
    Free {
        /// Freed address.
        addr: u64,
    },
}

/// One parsed record; `stack` is the frame lines joined by `\n`.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The operation.
    pub op: Op,
    /// 1-based line number of the `+++` header.
    pub line: u64,
    /// Frame lines, verbatim (without line ends), joined by `\n`.
    pub stack: &'a [u8],
}

/// Why the input is not a valid log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A header field is missing (the header line was cut short).
    MissingField(&'static str),
    /// A header field is not a number of the expected form.
    BadNumber {
        /// Which field.
        field: &'static str,
        /// The offending text (shortened).
        text: String,
    },
    /// Text after the last header field.
    TrailingText(String),
    /// The frame count is absurdly large.
    TooManyFrames(u64),
    /// The input ended inside a record.
    Truncated {
        /// Frames the header declared.
        declared: u64,
        /// Frame lines present before the end of input.
        found: u64,
    },
    /// A `---` or a new `+++` header came before all declared frames.
    FrameCountTooLarge {
        /// Frames the header declared.
        declared: u64,
        /// Frame lines present before the interruption.
        found: u64,
        /// Line that interrupted the record.
        at_line: u64,
    },
    /// The line is not text (invalid UTF-8 or NUL bytes).
    Binary,
    /// The line is longer than [`MAX_LINE`].
    LineTooLong,
}

/// A problem in the input, with its 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Line where the problem is (for a record: its header line).
    pub line: u64,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.kind {
            ErrorKind::MissingField(field) => {
                write!(f, "record header is cut short: the {field} is missing")
            }
            ErrorKind::BadNumber { field, text } => {
                write!(f, "record header has an invalid {field}: {text:?}")
            }
            ErrorKind::TrailingText(text) => {
                write!(f, "unexpected text after the record header: {text:?}")
            }
            ErrorKind::TooManyFrames(n) => write!(
                f,
                "record header declares {n} frames (more than {MAX_FRAMES}): not a backtracing log?"
            ),
            ErrorKind::Truncated { declared, found } => write!(
                f,
                "truncated record: it declares {declared} frames but the input ends after {found}"
            ),
            ErrorKind::FrameCountTooLarge {
                declared,
                found,
                at_line,
            } => write!(
                f,
                "frame count larger than the lines that follow: the record declares {declared} \
                 frames but line {at_line} ends it after {found}"
            ),
            ErrorKind::Binary => {
                write!(
                    f,
                    "binary data (not UTF-8 text): is this a backtracing log?"
                )
            }
            ErrorKind::LineTooLong => write!(
                f,
                "line longer than {MAX_LINE} bytes: is this a backtracing log?"
            ),
        }
    }
}

impl std::error::Error for ParseError {}

/// Anything that stops parsing: a read error or (strict mode) bad input.
#[derive(Debug)]
pub enum Error {
    /// Reading the input failed.
    Io(io::Error),
    /// The input is not a valid log.
    Parse(ParseError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "cannot read the log: {e}"),
            Error::Parse(e) => e.fmt(f),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// Counts of what was read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InputStats {
    /// Bytes read.
    pub bytes: u64,
    /// Lines read.
    pub lines: u64,
    /// `+++ ALLOC` records.
    pub allocs: u64,
    /// `+++ FREE` records.
    pub frees: u64,
    /// Lines that were neither headers nor frames (`---`, program output).
    pub other_lines: u64,
}

/// Result of reading one line.
enum Line {
    Eof,
    /// A line was read; `too_long` if it was cut at [`MAX_LINE`].
    Read {
        too_long: bool,
    },
}

/// Byte line reader over any `BufRead`: appends to a caller's reused
/// buffer, strips `\n` / `\r\n`, cuts lines at [`MAX_LINE`] bytes.
struct LineReader<R> {
    inner: R,
    line_no: u64,
    bytes: u64,
}

impl<R: BufRead> LineReader<R> {
    fn read_into(&mut self, out: &mut Vec<u8>) -> io::Result<Line> {
        let start = out.len();
        let mut too_long = false;
        let mut any = false;
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                break;
            }
            any = true;
            let (take, done) = match memchr::memchr(b'\n', buf) {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            let room = (start + MAX_LINE + 2).saturating_sub(out.len());
            if take > room {
                too_long = true;
            }
            out.extend_from_slice(&buf[..take.min(room)]);
            self.inner.consume(take);
            self.bytes += take as u64;
            if done {
                break;
            }
        }
        if !any {
            return Ok(Line::Eof);
        }
        self.line_no += 1;
        if out.last() == Some(&b'\n') && !too_long {
            out.pop();
        }
        if out.last() == Some(&b'\r') && !too_long {
            out.pop();
        }
        if out.len() - start > MAX_LINE {
            too_long = true;
        }
        if too_long {
            out.truncate(start + MAX_LINE);
        }
        Ok(Line::Read { too_long })
    }
}

/// Is `line` text (valid UTF-8 without NUL bytes)?
fn is_text(line: &[u8]) -> bool {
    memchr::memchr(0, line).is_none() && std::str::from_utf8(line).is_ok()
}

/// Where a record header starts in `line`, if any: at the start, or after
/// program output that had no line end (`hello+++ ALLOC:...`).
fn header_start(line: &[u8]) -> Option<usize> {
    if line.starts_with(ALLOC_TAG) || line.starts_with(FREE_TAG) {
        return Some(0);
    }
    if line == b"---" {
        return None;
    }
    let finder = memchr::memmem::find_iter(line, b"+++ ");
    for i in finder {
        let rest = &line[i..];
        if rest.starts_with(ALLOC_TAG) || rest.starts_with(FREE_TAG) {
            return Some(i);
        }
    }
    None
}

fn shorten(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(text);
    if s.chars().count() > 40 {
        let cut: String = s.chars().take(40).collect();
        format!("{cut}...")
    } else {
        s.into_owned()
    }
}

fn decimal(text: &[u8], name: &'static str) -> Result<u64, ErrorKind> {
    let bad = || ErrorKind::BadNumber {
        field: name,
        text: shorten(text),
    };
    if text.is_empty() || text.len() > 20 {
        return Err(bad());
    }
    let mut v: u64 = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return Err(bad());
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(bad)?;
    }
    Ok(v)
}

fn hex_address(text: &[u8]) -> Result<u64, ErrorKind> {
    let bad = || ErrorKind::BadNumber {
        field: "address",
        text: shorten(text),
    };
    let digits = text
        .strip_prefix(b"0x")
        .or_else(|| text.strip_prefix(b"0X"))
        .ok_or_else(bad)?;
    if digits.is_empty() || digits.len() > 16 {
        return Err(bad());
    }
    let mut v: u64 = 0;
    for &b in digits {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(bad()),
        };
        v = (v << 4) | u64::from(d);
    }
    Ok(v)
}

/// Parses a header line that starts with `+++ ALLOC:` or `+++ FREE:`;
/// returns the operation and the frame count.
pub fn parse_header(line: &[u8]) -> Result<(Op, u64), ErrorKind> {
    let (is_alloc, rest) = if let Some(r) = line.strip_prefix(ALLOC_TAG) {
        (true, r)
    } else if let Some(r) = line.strip_prefix(FREE_TAG) {
        (false, r)
    } else {
        return Err(ErrorKind::MissingField("operation"));
    };
    let names: &[&'static str] = if is_alloc {
        &["frame count", "address", "alignment", "size"]
    } else {
        &["frame count", "address"]
    };
    let mut fields = [&b""[..]; 4];
    let mut parts = rest.splitn(names.len(), |&b| b == b':');
    for (name, slot) in names.iter().zip(fields.iter_mut()) {
        match parts.next() {
            Some(f) if !f.is_empty() => *slot = f,
            _ => return Err(ErrorKind::MissingField(name)),
        }
    }
    // The last field ends at the first blank; trailing blanks are
    // harmless, anything after them is not our format.
    let last = &mut fields[names.len() - 1];
    let end = last
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(last.len());
    let (value, rest) = last.split_at(end);
    if rest.iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(ErrorKind::TrailingText(shorten(rest)));
    }
    *last = value;
    let n = decimal(fields[0], "frame count")?;
    let addr = hex_address(fields[1])?;
    let op = if is_alloc {
        Op::Alloc {
            addr,
            align: decimal(fields[2], "alignment")?,
            size: decimal(fields[3], "size")?,
        }
    } else {
        Op::Free { addr }
    };
    if n > MAX_FRAMES {
        return Err(ErrorKind::TooManyFrames(n));
    }
    Ok((op, n))
}

/// Streaming log parser. Strict by default: the first problem is an
/// error. Lenient: problems become warnings and parsing goes on with a
/// best-effort reading (a cut record keeps the frames it has).
pub struct Parser<R> {
    reader: LineReader<R>,
    line: Vec<u8>,
    /// `line` holds a header line that still has to be handled.
    pending: Option<u64>,
    stack: Vec<u8>,
    lenient: bool,
    stats: InputStats,
    warnings: Vec<ParseError>,
    warnings_total: u64,
}

impl<R: BufRead> Parser<R> {
    /// A parser reading `inner`.
    pub fn new(inner: R, lenient: bool) -> Self {
        Parser {
            reader: LineReader {
                inner,
                line_no: 0,
                bytes: 0,
            },
            line: Vec::with_capacity(256),
            pending: None,
            stack: Vec::with_capacity(4096),
            lenient,
            stats: InputStats::default(),
            warnings: Vec::new(),
            warnings_total: 0,
        }
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.reader.bytes
    }

    /// What was read so far.
    pub fn stats(&self) -> InputStats {
        InputStats {
            bytes: self.reader.bytes,
            lines: self.reader.line_no,
            ..self.stats
        }
    }

    /// Warnings of lenient mode (the first [`MAX_KEPT_WARNINGS`]) and their total.
    pub fn warnings(&self) -> (&[ParseError], u64) {
        (&self.warnings, self.warnings_total)
    }

    /// Strict: turns the problem into an error. Lenient: records a warning.
    fn problem(&mut self, line: u64, kind: ErrorKind) -> Result<(), Error> {
        let e = ParseError { line, kind };
        if !self.lenient {
            return Err(Error::Parse(e));
        }
        self.warnings_total += 1;
        if self.warnings.len() < MAX_KEPT_WARNINGS {
            self.warnings.push(e);
        }
        Ok(())
    }

    /// The next record, `None` at the end of input.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, Error> {
        let (op, declared, header_line) = loop {
            let line_no = match self.pending.take() {
                Some(n) => n,
                None => {
                    self.line.clear();
                    match self.reader.read_into(&mut self.line)? {
                        Line::Eof => return Ok(None),
                        Line::Read { too_long } => {
                            let n = self.reader.line_no;
                            if too_long {
                                self.problem(n, ErrorKind::LineTooLong)?;
                            }
                            if !is_text(&self.line) {
                                self.problem(n, ErrorKind::Binary)?;
                                self.stats.other_lines += 1;
                                continue;
                            }
                            n
                        }
                    }
                }
            };
            let Some(at) = header_start(&self.line) else {
                self.stats.other_lines += 1;
                continue;
            };
            match parse_header(&self.line[at..]) {
                Ok((op, n)) => break (op, n, line_no),
                Err(kind) => {
                    self.problem(line_no, kind)?;
                    self.stats.other_lines += 1;
                }
            }
        };
        match op {
            Op::Alloc { .. } => self.stats.allocs += 1,
            Op::Free { .. } => self.stats.frees += 1,
        }
        self.stack.clear();
        let mut found = 0;
        while found < declared {
            let start = self.stack.len();
            if start > 0 {
                self.stack.push(b'\n');
            }
            let frame_start = self.stack.len();
            let too_long = match self.reader.read_into(&mut self.stack)? {
                Line::Eof => {
                    self.stack.truncate(start);
                    self.problem(header_line, ErrorKind::Truncated { declared, found })?;
                    break;
                }
                Line::Read { too_long } => too_long,
            };
            let at_line = self.reader.line_no;
            if too_long {
                self.problem(at_line, ErrorKind::LineTooLong)?;
            }
            let frame = &self.stack[frame_start..];
            if frame == b"---" || header_start(frame) == Some(0) {
                let kind = ErrorKind::FrameCountTooLarge {
                    declared,
                    found,
                    at_line,
                };
                if frame != b"---" {
                    self.line.clear();
                    self.line.extend_from_slice(frame);
                    self.pending = Some(at_line);
                } else {
                    self.stats.other_lines += 1;
                }
                self.stack.truncate(start);
                self.problem(header_line, kind)?;
                break;
            }
            if !is_text(frame) {
                let lossy = String::from_utf8_lossy(frame).replace('\0', "\u{fffd}");
                self.problem(at_line, ErrorKind::Binary)?;
                self.stack.truncate(frame_start);
                self.stack.extend_from_slice(lossy.as_bytes());
            }
            found += 1;
        }
        Ok(Some(Record {
            op,
            line: header_line,
            stack: &self.stack,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of `log` as (op, header line, stack text).
    fn records(log: &[u8], lenient: bool) -> Result<Vec<(Op, u64, String)>, Error> {
        let mut p = Parser::new(log, lenient);
        let mut out = Vec::new();
        while let Some(r) = p.next_record()? {
            out.push((r.op, r.line, String::from_utf8(r.stack.to_vec()).unwrap()));
        }
        Ok(out)
    }

    fn strict_error(log: &[u8]) -> ParseError {
        match records(log, false) {
            Err(Error::Parse(e)) => e,
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    const ALLOC1: Op = Op::Alloc {
        addr: 0x55d5c0a0b2a0,
        align: 16,
        size: 32,
    };

    #[test]
    fn parses_c_format_with_glibc_frames_and_noise() {
        let log = b"program says hi\n\
+++ ALLOC:2:0x000055d5c0a0b2a0:16:32\n\
./prog(leaky+0x1a)[0x55d5c0a0b1a2]\n\
./prog(main+0x20)[0x55d5c0a0b1c0]\n\
---\n\
+++ diff-looking program output\n\
+++ FREE:1:0x000055d5c0a0b2a0\r\n\
/lib/x86_64-linux-gnu/libc.so.6(+0x271ca)[0x7f0c5a2271ca]\r\n\
---\n";
        let recs = records(log, false).unwrap();
        assert_eq!(
            recs,
            vec![
                (
                    ALLOC1,
                    2,
                    "./prog(leaky+0x1a)[0x55d5c0a0b1a2]\n./prog(main+0x20)[0x55d5c0a0b1c0]".into()
                ),
                (
                    Op::Free {
                        addr: 0x55d5c0a0b2a0
                    },
                    7,
                    "/lib/x86_64-linux-gnu/libc.so.6(+0x271ca)[0x7f0c5a2271ca]".into()
                ),
            ]
        );
        let mut p = Parser::new(&log[..], false);
        while p.next_record().unwrap().is_some() {}
        let s = p.stats();
        assert_eq!((s.lines, s.allocs, s.frees, s.other_lines), (9, 1, 1, 4));
        assert_eq!(s.bytes, log.len() as u64);
    }

    #[test]
    fn header_after_output_without_newline_and_zero_frames() {
        let log = b"partial output+++ ALLOC:0:0x10:8:4\n+++ FREE:0:0x0\n";
        let recs = records(log, false).unwrap();
        assert_eq!(
            recs,
            vec![
                (
                    Op::Alloc {
                        addr: 0x10,
                        align: 8,
                        size: 4
                    },
                    1,
                    String::new()
                ),
                (Op::Free { addr: 0 }, 2, String::new()),
            ]
        );
    }

    #[test]
    fn no_final_newline_is_fine() {
        let recs = records(b"+++ FREE:1:0x20\nframe", false).unwrap();
        assert_eq!(recs, vec![(Op::Free { addr: 0x20 }, 1, "frame".into())]);
    }

    #[test]
    fn bad_headers_name_line_and_field() {
        let cases: &[(&[u8], ErrorKind)] = &[
            (
                b"x\n+++ ALLOC:3:0x10\n",
                ErrorKind::MissingField("alignment"),
            ),
            (
                b"x\n+++ ALLOC:3:0x10:16:\n",
                ErrorKind::MissingField("size"),
            ),
            (b"x\n+++ FREE:3\n", ErrorKind::MissingField("address")),
            (
                b"x\n+++ ALLOC:0:0x10:16:8:9\n",
                ErrorKind::BadNumber {
                    field: "size",
                    text: "8:9".into(),
                },
            ),
            (
                b"x\n+++ ALLOC:three:0x10:16:8\n",
                ErrorKind::BadNumber {
                    field: "frame count",
                    text: "three".into(),
                },
            ),
            (
                b"x\n+++ FREE:0:0xZZ\n",
                ErrorKind::BadNumber {
                    field: "address",
                    text: "0xZZ".into(),
                },
            ),
            (
                b"x\n+++ FREE:0:1234\n",
                ErrorKind::BadNumber {
                    field: "address",
                    text: "1234".into(),
                },
            ),
            (
                b"x\n+++ ALLOC:0:0x10:sixteen:8\n",
                ErrorKind::BadNumber {
                    field: "alignment",
                    text: "sixteen".into(),
                },
            ),
            (
                b"x\n+++ ALLOC:0:0x10:16:99999999999999999999999\n",
                ErrorKind::BadNumber {
                    field: "size",
                    text: "99999999999999999999999".into(),
                },
            ),
            (
                b"x\n+++ ALLOC:0:0x10:16:8 oops\n",
                ErrorKind::TrailingText(" oops".into()),
            ),
            (b"x\n+++ FREE:99999:0x10\n", ErrorKind::TooManyFrames(99999)),
            (
                b"x\n+++ FREE:0:0x10000000000000000\n",
                ErrorKind::BadNumber {
                    field: "address",
                    text: "0x10000000000000000".into(),
                },
            ),
        ];
        for (log, kind) in cases {
            let e = strict_error(log);
            assert_eq!(
                e,
                ParseError {
                    line: 2,
                    kind: kind.clone()
                },
                "{log:?}"
            );
            assert!(e.to_string().starts_with("line 2: "), "{e}");
        }
    }

    #[test]
    fn truncated_record_at_end_of_input() {
        let log = b"+++ ALLOC:1:0x10:16:8\nf\n---\n+++ ALLOC:3:0x20:16:8\nf1\nf2\n";
        let e = strict_error(log);
        assert_eq!(
            e,
            ParseError {
                line: 4,
                kind: ErrorKind::Truncated {
                    declared: 3,
                    found: 2
                }
            }
        );
        assert!(e.to_string().contains("truncated record"), "{e}");
        // Lenient: the cut record keeps its two frames.
        let recs = records(log, true).unwrap();
        assert_eq!(recs[1].2, "f1\nf2");
    }

    #[test]
    fn frame_count_larger_than_following_lines() {
        let log = b"+++ ALLOC:4:0x10:16:8\nf1\n---\n+++ FREE:1:0x10\ng\n";
        let log2 = b"+++ ALLOC:4:0x10:16:8\nf1\n+++ FREE:1:0x10\ng\n";
        for log in [&log[..], &log2[..]] {
            let e = strict_error(log);
            let kind = ErrorKind::FrameCountTooLarge {
                declared: 4,
                found: 1,
                at_line: 3,
            };
            assert_eq!(e, ParseError { line: 1, kind });
        }
        // Lenient: the interrupted record keeps its frame and the next
        // header is still read as a record.
        for log in [&log[..], &log2[..]] {
            let mut p = Parser::new(log, true);
            let mut got = Vec::new();
            while let Some(r) = p.next_record().unwrap() {
                got.push((r.op, r.line, r.stack.to_vec()));
            }
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].2, b"f1");
            assert_eq!(got[1], (Op::Free { addr: 0x10 }, got[1].1, b"g".to_vec()));
            let (w, total) = p.warnings();
            assert_eq!(total, 1);
            assert_eq!(w[0].line, 1);
        }
    }

    #[test]
    fn binary_garbage_is_rejected_with_its_line() {
        let log = b"ok\n+++ FREE:0:0x10\n\xff\xfe\x00\x01garbage\n";
        assert_eq!(
            strict_error(log),
            ParseError {
                line: 3,
                kind: ErrorKind::Binary
            }
        );
        let nul = b"ok\nwith\0nul\n";
        assert_eq!(strict_error(nul).line, 2);
        // Inside a record, too.
        let in_frame = b"+++ FREE:2:0x10\nok\n\xc3\x28\n";
        assert_eq!(
            strict_error(in_frame),
            ParseError {
                line: 3,
                kind: ErrorKind::Binary
            }
        );
        let recs = records(in_frame, true).unwrap();
        assert_eq!(recs[0].2, "ok\n\u{fffd}(");
        assert_eq!(records(log, true).unwrap().len(), 1);
    }

    #[test]
    fn over_long_lines_are_rejected_or_cut() {
        let mut log = b"+++ FREE:1:0x10\n".to_vec();
        log.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
        log.extend_from_slice(b"\n+++ FREE:0:0x20\n");
        let e = strict_error(&log);
        assert_eq!(
            e,
            ParseError {
                line: 2,
                kind: ErrorKind::LineTooLong
            }
        );
        let recs = records(&log, true).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].2.len(), MAX_LINE);
        assert_eq!(recs[1].1, 3);
    }

    #[test]
    fn tiny_reader_buffers_give_the_same_records() {
        let log = b"noise\n+++ ALLOC:2:0x000055d5c0a0b2a0:16:32\nab\ncd\n---\n+++ FREE:0:0x1\n";
        let whole = records(log, false).unwrap();
        let reader = io::BufReader::with_capacity(3, &log[..]);
        let mut p = Parser::new(reader, false);
        let mut small = Vec::new();
        while let Some(r) = p.next_record().unwrap() {
            small.push((r.op, r.line, String::from_utf8(r.stack.to_vec()).unwrap()));
        }
        assert_eq!(whole, small);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]
        /// Any bytes, and the fixture with random bytes overwritten or cut:
        /// strict parsing ends in records or an error, lenient parsing
        /// always reaches the end; neither panics.
        #[test]
        fn never_panics(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            edits in proptest::collection::vec((0usize..4000, proptest::prelude::any::<u8>()), 0..8),
            cut in 0usize..4000,
        ) {
            let mut log = include_bytes!("../../tests/fixtures/c_glibc.log").to_vec();
            for (at, b) in edits {
                let at = at % log.len();
                log[at] = b;
            }
            log.truncate(cut.min(log.len()));
            for input in [&noise[..], &log[..]] {
                let _ = records(input, false);
                proptest::prop_assert!(records(input, true).is_ok());
            }
        }
    }

    #[test]
    fn empty_input_has_no_records() {
        assert!(records(b"", false).unwrap().is_empty());
    }
}
