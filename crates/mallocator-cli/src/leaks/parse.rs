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
//!
//! The parser works on bytes in large blocks read into one reused buffer,
//! never keeps more than the current record of the input, and hands out
//! each record's stack as a slice of that buffer: memory does not grow
//! with the log, and a well-formed log costs a few instructions per byte
//! (finding line ends with `memchr`, one vectorised scan for bytes that
//! are not ASCII, the first bytes of each line) rather than a copy and a
//! UTF-8 check of every line.

use memchr::memmem;
use std::fmt;
use std::io::{self, Read};

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

/// How much the parser asks of the reader at once, once the input has
/// shown it is not small. Large blocks make the per-read cost (a system
/// call) negligible and let `memchr` run over long stretches.
pub const BLOCK: usize = 1 << 20;

/// The buffer's first size: it doubles with each refill up to [`BLOCK`],
/// so that a small input (a test's, the fuzzer's) costs no full block.
const FIRST_BUFFER: usize = 64 << 10;

/// A line of the buffer: its text is `start..end` (without the `\n` or
/// `\r\n` that ended it, cut at [`MAX_LINE`] bytes).
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    end: usize,
    /// The line was longer than [`MAX_LINE`] and is cut.
    too_long: bool,
}

/// The input, read in blocks into one reused buffer and handed out as
/// lines ([`Span`]s into the buffer), so that lines are neither copied nor
/// allocated. Bytes from `keep` on stay in the buffer across refills (the
/// current record's frames, so that its stack is one slice of the
/// buffer); everything before `keep` may be dropped when the buffer is
/// refilled. The buffer grows to a block as the input proves large, and
/// beyond that only when what must be kept does not fit, so its size
/// follows the largest record, not the input.
struct Input<R> {
    reader: R,
    buf: Vec<u8>,
    /// `buf[..filled]` holds input.
    filled: usize,
    /// Start of the next line.
    pos: usize,
    /// First byte that must survive a refill (at most `pos`).
    keep: usize,
    /// Bytes of the input no longer in the buffer before `pos`, so that
    /// `dropped + pos` is the input offset of `pos`.
    dropped: u64,
    /// The reader has reported the end of input.
    eof: bool,
    /// The size the buffer grows to at least (see [`BLOCK`]).
    block: usize,
    /// No byte from where the last scan started up to `clean_end` is NUL
    /// or non-ASCII (the bytes that could make a line not text). Lines are
    /// checked in input order, so a line that ends before `clean_end` is
    /// text: see [`Input::is_text`].
    clean_end: usize,
    /// Lines handed out.
    line_no: u64,
}

/// Index of the first byte of `bytes` that is NUL or not ASCII (the only
/// bytes that can make a line not text), or `bytes.len()`. Whole chunks
/// are tested with one OR of all their bytes, which the compiler turns
/// into vector instructions.
fn first_suspect(bytes: &[u8]) -> usize {
    const CHUNK: usize = 64;
    // b - 1 sets the high bit for 0; b has it for 128 and up.
    let suspect = |b: u8| (b.wrapping_sub(1) | b) & 0x80 != 0;
    let mut at = 0;
    for chunk in bytes.chunks_exact(CHUNK) {
        let any = chunk
            .iter()
            .fold(0u8, |acc, &b| acc | b.wrapping_sub(1) | b);
        if any & 0x80 != 0 {
            break;
        }
        at += CHUNK;
    }
    at + bytes[at..]
        .iter()
        .position(|&b| suspect(b))
        .unwrap_or(bytes.len() - at)
}

/// Is `line` text (valid UTF-8 without NUL bytes)?
fn is_text(line: &[u8]) -> bool {
    memchr::memchr(0, line).is_none() && std::str::from_utf8(line).is_ok()
}

impl<R: Read> Input<R> {
    fn new(reader: R, block: usize) -> Self {
        Input {
            reader,
            buf: vec![0; block.clamp(1, FIRST_BUFFER)],
            filled: 0,
            pos: 0,
            keep: 0,
            dropped: 0,
            eof: false,
            block,
            clean_end: 0,
            line_no: 0,
        }
    }

    /// Input offset of the next line.
    fn offset(&self) -> u64 {
        self.dropped + self.pos as u64
    }

    /// The text of `span`.
    fn text(&self, span: Span) -> &[u8] {
        &self.buf[span.start..span.end]
    }

    /// Reads more input after `filled`, first making room when less than
    /// a quarter of the buffer is free: the bytes from `keep` on move to
    /// the front (positions shift down by `keep`), and the buffer doubles
    /// if that is not enough or while it is smaller than a block. Returns
    /// the bytes read, 0 at the end of input.
    fn refill(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let little_room =
            |input: &Self| input.buf.len() - input.filled < (input.buf.len() / 4).max(1);
        if little_room(self) {
            let shift = self.keep;
            if shift > 0 {
                self.buf.copy_within(shift..self.filled, 0);
                self.filled -= shift;
                self.pos -= shift;
                self.keep = 0;
                self.clean_end = self.clean_end.saturating_sub(shift);
                self.dropped += shift as u64;
            }
            if little_room(self) || self.buf.len() < self.block {
                self.buf.resize(2 * self.buf.len(), 0);
            }
        }
        loop {
            match self.reader.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.filled += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The line `start..nl` (`nl`: where its `\n` is, or the end of input)
    /// without a final `\r`, cut at [`MAX_LINE`].
    fn span(&self, start: usize, nl: usize) -> Span {
        let mut end = nl;
        if end > start && self.buf[end - 1] == b'\r' {
            end -= 1;
        }
        let too_long = end - start > MAX_LINE;
        if too_long {
            end = start + MAX_LINE;
        }
        Span {
            start,
            end,
            too_long,
        }
    }

    /// The next line, `None` at the end of input.
    #[inline]
    fn next_line(&mut self) -> io::Result<Option<Span>> {
        if let Some(i) = memchr::memchr(b'\n', &self.buf[self.pos..self.filled]) {
            let nl = self.pos + i;
            let span = self.span(self.pos, nl);
            self.pos = nl + 1;
            self.line_no += 1;
            return Ok(Some(span));
        }
        self.next_line_after_refill()
    }

    /// [`Input::next_line`] for a line that does not end in the buffer.
    #[cold]
    fn next_line_after_refill(&mut self) -> io::Result<Option<Span>> {
        // Everything from `pos` to `scanned` is known to hold no `\n`.
        let mut scanned = self.filled - self.pos;
        loop {
            if scanned >= MAX_LINE + 2 {
                // Even without its `\r\n` the line is too long: keep its
                // first MAX_LINE bytes, not the whole line.
                return self.skip_long_line().map(Some);
            }
            if self.refill()? == 0 {
                if self.pos == self.filled {
                    return Ok(None);
                }
                let span = self.span(self.pos, self.filled);
                self.pos = self.filled;
                self.line_no += 1;
                return Ok(Some(span));
            }
            let from = self.pos + scanned;
            if let Some(i) = memchr::memchr(b'\n', &self.buf[from..self.filled]) {
                let nl = from + i;
                let span = self.span(self.pos, nl);
                self.pos = nl + 1;
                self.line_no += 1;
                return Ok(Some(span));
            }
            scanned = self.filled - self.pos;
        }
    }

    /// The line at `pos`, known to be longer than [`MAX_LINE`] + 2 bytes
    /// with no line end yet: its first [`MAX_LINE`] bytes stay where they
    /// are and the rest of it is read and dropped, so that a huge line
    /// (or a binary file without line ends) needs no more memory than a
    /// cut line.
    fn skip_long_line(&mut self) -> io::Result<Span> {
        let mut start = self.pos;
        let kept = start + MAX_LINE;
        self.dropped += (self.filled - kept) as u64;
        self.filled = kept;
        self.clean_end = self.clean_end.min(kept);
        // The bytes after `kept` are scratch space from here on.
        self.pos = kept;
        loop {
            let before = self.pos;
            let read = self.refill()?;
            // A refill may move what is kept to the front, the line's
            // start with it (by as much as `pos` moved, each time).
            start -= before - self.pos;
            let kept = self.pos;
            if read == 0 {
                self.line_no += 1;
                return Ok(Span {
                    start,
                    end: kept,
                    too_long: true,
                });
            }
            if let Some(i) = memchr::memchr(b'\n', &self.buf[kept..self.filled]) {
                let rest = kept + i + 1;
                self.buf.copy_within(rest..self.filled, kept);
                self.dropped += (rest - kept) as u64;
                self.filled -= rest - kept;
                self.line_no += 1;
                return Ok(Span {
                    start,
                    end: kept,
                    too_long: true,
                });
            }
            self.dropped += (self.filled - kept) as u64;
            self.filled = kept;
        }
    }

    /// Is the line `span` text (valid UTF-8 without NUL bytes)? The buffer
    /// is scanned ahead, once, for the bytes that could make a line not
    /// text; only a line that has one is then checked by itself, so that
    /// ASCII logs cost one pass of a few instructions per 64 bytes.
    #[inline(always)]
    fn is_text(&mut self, span: Span) -> bool {
        span.end <= self.clean_end || self.scan_and_check(span)
    }

    /// [`Input::is_text`] past `clean_end`: scans ahead, then checks the
    /// line by itself if a suspect byte is in it.
    #[inline(never)]
    fn scan_and_check(&mut self, span: Span) -> bool {
        let from = self.clean_end.max(span.start);
        self.clean_end = from + first_suspect(&self.buf[from..self.filled]);
        span.end <= self.clean_end || is_text(self.text(span))
    }
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
    match parse_header_fast(line) {
        Some(parsed) => Ok(parsed),
        None => parse_header_checked(line),
    }
}

/// The digits at the start of `text` as a number, and the rest; `None`
/// if there are none or more than 19 (which could overflow: the checked
/// parser decides those).
#[inline]
fn leading_decimal(text: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    let mut digits = 0;
    for &b in text {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        if digits == 19 {
            return None;
        }
        value = value * 10 + u64::from(d);
        digits += 1;
    }
    (digits > 0).then(|| (value, &text[digits..]))
}

/// The value of each byte as a hexadecimal digit, or [`NOT_HEX`].
static HEX_DIGITS: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            c @ b'0'..=b'9' => c - b'0',
            c @ b'a'..=b'f' => c - b'a' + 10,
            c @ b'A'..=b'F' => c - b'A' + 10,
            _ => NOT_HEX,
        };
        b += 1;
    }
    table
};
const NOT_HEX: u8 = 0xff;

/// `0x` and 1 to 16 hexadecimal digits at the start of `text` as a number,
/// and the rest; `None` otherwise.
#[inline]
fn leading_hex(text: &[u8]) -> Option<(u64, &[u8])> {
    let text = text
        .strip_prefix(b"0x")
        .or_else(|| text.strip_prefix(b"0X"))?;
    let mut value = 0u64;
    let mut digits = 0;
    for &b in text {
        let d = HEX_DIGITS[usize::from(b)];
        if d == NOT_HEX {
            break;
        }
        if digits == 16 {
            return None;
        }
        value = (value << 4) | u64::from(d);
        digits += 1;
    }
    (digits > 0).then(|| (value, &text[digits..]))
}

/// [`parse_header`] for a well-formed header, in one pass over the line;
/// `None` for anything else, which [`parse_header_checked`] then reads
/// again to name the problem. Accepts only what the checked parser
/// accepts, with the same values.
#[inline]
fn parse_header_fast(line: &[u8]) -> Option<(Op, u64)> {
    let (is_alloc, rest) = match line.strip_prefix(ALLOC_TAG) {
        Some(rest) => (true, rest),
        None => (false, line.strip_prefix(FREE_TAG)?),
    };
    let (n, rest) = leading_decimal(rest)?;
    let (addr, rest) = leading_hex(rest.strip_prefix(b":")?)?;
    let (op, rest) = if is_alloc {
        let (align, rest) = leading_decimal(rest.strip_prefix(b":")?)?;
        let (size, rest) = leading_decimal(rest.strip_prefix(b":")?)?;
        (Op::Alloc { addr, align, size }, rest)
    } else {
        (Op::Free { addr }, rest)
    };
    if n > MAX_FRAMES || !rest.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some((op, n))
}

/// [`parse_header`] field by field, naming the first problem.
fn parse_header_checked(line: &[u8]) -> Result<(Op, u64), ErrorKind> {
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

/// Where a record header starts in `line`, if any: at the start, or after
/// program output that had no line end (`hello+++ ALLOC:...`). `finder`
/// looks for `"+++ "`; it is built once, not for every line.
fn header_start(line: &[u8], finder: &memmem::Finder<'_>) -> Option<usize> {
    if is_header(line) {
        return Some(0);
    }
    if line == b"---" {
        return None;
    }
    finder.find_iter(line).find(|&i| is_header(&line[i..]))
}

/// Does `line` start with a record header's tag?
#[inline]
fn is_header(line: &[u8]) -> bool {
    line.first() == Some(&b'+') && (line.starts_with(ALLOC_TAG) || line.starts_with(FREE_TAG))
}

/// Streaming log parser. Strict by default: the first problem is an
/// error. Lenient: problems become warnings and parsing goes on with a
/// best-effort reading (a cut record keeps the frames it has).
///
/// The input is read in large blocks into one buffer (see [`BLOCK`]) and
/// looked at in place: a record's stack is handed out as the slice of the
/// buffer its frame lines occupy, so a well-formed log is parsed without
/// copying or allocating anything per line or per record. Only a stack
/// whose frames are not plain `\n`-separated text (`\r\n` line ends, a cut
/// over-long line, bytes that are not UTF-8) is assembled in a separate
/// buffer.
pub struct Parser<R> {
    input: Input<R>,
    /// Finds `"+++ "` in program output (a header glued to it).
    header_finder: memmem::Finder<'static>,
    /// A header line that interrupted the previous record, still to be
    /// handled, with its line number.
    pending: Option<(Span, u64)>,
    /// The current record's stack when it is not a slice of the input.
    assembled: Vec<u8>,
    lenient: bool,
    stats: InputStats,
    warnings: Vec<ParseError>,
    warnings_total: u64,
}

impl<R: Read> Parser<R> {
    /// A parser reading `inner`.
    pub fn new(inner: R, lenient: bool) -> Self {
        Self::with_block(inner, lenient, BLOCK)
    }

    /// A parser reading `inner` in blocks of `block` bytes (the buffer
    /// grows beyond that only for records that do not fit), so that tests
    /// can cut the input into tiny blocks.
    fn with_block(inner: R, lenient: bool, block: usize) -> Self {
        Parser {
            input: Input::new(inner, block),
            header_finder: memmem::Finder::new(b"+++ "),
            pending: None,
            assembled: Vec::new(),
            lenient,
            stats: InputStats::default(),
            warnings: Vec::new(),
            warnings_total: 0,
        }
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.input.offset()
    }

    /// What was read so far.
    pub fn stats(&self) -> InputStats {
        InputStats {
            bytes: self.input.offset(),
            lines: self.input.line_no,
            ..self.stats
        }
    }

    /// Warnings of lenient mode (the first [`MAX_KEPT_WARNINGS`]) and their total.
    pub fn warnings(&self) -> (&[ParseError], u64) {
        (&self.warnings, self.warnings_total)
    }

    /// Strict: turns the problem into an error. Lenient: records a warning.
    #[cold]
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

    /// The next record header: its operation, frame count and line.
    /// `None` at the end of input.
    fn next_header(&mut self) -> Result<Option<(Op, u64, u64)>, Error> {
        loop {
            let (span, line_no) = match self.pending.take() {
                Some(pending) => pending,
                None => {
                    self.input.keep = self.input.pos;
                    let Some(span) = self.input.next_line()? else {
                        return Ok(None);
                    };
                    let n = self.input.line_no;
                    if span.too_long {
                        self.problem(n, ErrorKind::LineTooLong)?;
                    }
                    if !self.input.is_text(span) {
                        self.problem(n, ErrorKind::Binary)?;
                        self.stats.other_lines += 1;
                        continue;
                    }
                    (span, n)
                }
            };
            let line = self.input.text(span);
            let Some(at) = header_start(line, &self.header_finder) else {
                self.stats.other_lines += 1;
                continue;
            };
            match parse_header(&line[at..]) {
                Ok((op, n)) => return Ok(Some((op, n, line_no))),
                Err(kind) => {
                    self.problem(line_no, kind)?;
                    self.stats.other_lines += 1;
                }
            }
        }
    }

    /// The next record, `None` at the end of input.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, Error> {
        let Some((op, declared, header_line)) = self.next_header()? else {
            return Ok(None);
        };
        match op {
            Op::Alloc { .. } => self.stats.allocs += 1,
            Op::Free { .. } => self.stats.frees += 1,
        }
        // The frames stay in the buffer from `keep` on, and while they
        // are plain lines one after the other, `keep..keep + len` is the
        // stack. Otherwise they are copied to `assembled`, from then on.
        self.input.keep = self.input.pos;
        let mut len = 0;
        let mut copied = false;
        let mut found = 0;
        while found < declared {
            if copied {
                self.input.keep = self.input.pos;
            }
            let Some(span) = self.input.next_line()? else {
                self.problem(header_line, ErrorKind::Truncated { declared, found })?;
                break;
            };
            let at_line = self.input.line_no;
            if span.too_long {
                self.problem(at_line, ErrorKind::LineTooLong)?;
            }
            let frame = self.input.text(span);
            if frame == b"---" || is_header(frame) {
                let kind = ErrorKind::FrameCountTooLarge {
                    declared,
                    found,
                    at_line,
                };
                if frame == b"---" {
                    self.stats.other_lines += 1;
                } else {
                    self.pending = Some((span, at_line));
                }
                self.problem(header_line, kind)?;
                break;
            }
            let text = self.input.is_text(span);
            if !text {
                self.problem(at_line, ErrorKind::Binary)?;
            }
            let keep = self.input.keep;
            // A slice of the buffer holds the frames joined by `\n` only
            // while each one starts right after the previous one's `\n`
            // and needs no replacement characters.
            let in_slice = text && (found == 0 || span.start == keep + len + 1);
            if !copied && !in_slice {
                self.assembled.clear();
                self.assembled
                    .extend_from_slice(&self.input.buf[keep..keep + len]);
                copied = true;
            }
            if copied {
                if found > 0 {
                    self.assembled.push(b'\n');
                }
                let frame = self.input.text(span);
                if text {
                    self.assembled.extend_from_slice(frame);
                } else {
                    let lossy = String::from_utf8_lossy(frame).replace('\0', "\u{fffd}");
                    self.assembled.extend_from_slice(lossy.as_bytes());
                }
            } else {
                len = span.end - keep;
            }
            found += 1;
        }
        let stack = if copied {
            &self.assembled[..]
        } else {
            let keep = self.input.keep;
            &self.input.buf[keep..keep + len]
        };
        Ok(Some(Record {
            op,
            line: header_line,
            stack,
        }))
    }
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    fn blank_frames_are_kept_even_at_the_top_of_a_stack() {
        // As the C leak script joins them: a blank first frame is a
        // different stack from the same frames without it.
        let recs = records(b"+++ FREE:3:0x20\n\nmain\n\n+++ FREE:1:0x20\nmain\n", false).unwrap();
        assert_eq!(recs[0].2, "\nmain\n");
        assert_eq!(recs[1].2, "main");
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
        let mut p = Parser::with_block(reader, false, 3);
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

    /// A reader that hands out at most `step` bytes per call, and fails
    /// every other call with `Interrupted` (which must be retried).
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Everything a reading of a log gives: each record with the input
    /// offset after it, the error that stopped a strict reading, the
    /// counts and the warnings.
    #[derive(Debug, PartialEq)]
    struct Reading {
        records: Vec<(Op, u64, Vec<u8>, u64)>,
        error: Option<ParseError>,
        stats: InputStats,
        warnings: Vec<ParseError>,
        warnings_total: u64,
    }

    /// Reads a whole log with `$parser` (this module's parser or the
    /// reference one: they have the same methods).
    macro_rules! read_all {
        ($parser:expr) => {{
            let mut p = $parser;
            let mut records = Vec::new();
            let error = loop {
                match p.next_record() {
                    Ok(Some(r)) => records.push((r.op, r.line, r.stack.to_vec(), 0)),
                    Ok(None) => break None,
                    Err(Error::Parse(e)) => break Some(e),
                    Err(Error::Io(e)) => panic!("reading from memory failed: {e}"),
                }
                records.last_mut().unwrap().3 = p.bytes_read();
            };
            let (warnings, warnings_total) = p.warnings();
            Reading {
                records,
                error,
                stats: p.stats(),
                warnings: warnings.to_vec(),
                warnings_total,
            }
        }};
    }

    /// `log` read by this parser in blocks of `block` bytes from a reader
    /// that gives `step` bytes at a time.
    fn reading(log: &[u8], lenient: bool, block: usize, step: usize) -> Reading {
        let input = Trickle {
            data: log,
            step,
            interrupt: false,
        };
        read_all!(Parser::with_block(input, lenient, block))
    }

    /// `log` read line by line by the reference parser.
    fn reference_reading(log: &[u8], lenient: bool) -> Reading {
        read_all!(reference::Reference::new(log, lenient))
    }

    /// Reads `log` strict and lenient, in every block size and read size
    /// given, and checks each reading against the reference parser's.
    fn assert_same_as_reference(log: &[u8], blocks: &[usize], steps: &[usize]) {
        for lenient in [false, true] {
            let expected = reference_reading(log, lenient);
            for &block in blocks {
                for &step in steps {
                    let got = reading(log, lenient, block, step);
                    assert_eq!(
                        got,
                        expected,
                        "lenient {lenient}, block {block}, step {step}, log {:?}",
                        String::from_utf8_lossy(&log[..log.len().min(2000)])
                    );
                }
            }
        }
    }

    #[test]
    fn committed_logs_read_the_same_as_line_by_line_in_any_block_size() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut logs = vec![dir.join("tests/fixtures/c_glibc.log")];
        for entry in std::fs::read_dir(dir.join("fuzz/corpus/leaks_pipeline")).unwrap() {
            logs.push(entry.unwrap().path());
        }
        for path in logs {
            let log = std::fs::read(&path).unwrap();
            assert_same_as_reference(&log, &[1, 2, 5, 64, 4096, BLOCK], &[1, 7, usize::MAX]);
        }
    }

    /// Lines around and far beyond [`MAX_LINE`], with and without `\r`,
    /// as frames, as program output and as the last line.
    #[test]
    fn long_lines_read_the_same_as_line_by_line() {
        let lengths = [
            MAX_LINE - 1,
            MAX_LINE,
            MAX_LINE + 1,
            MAX_LINE + 2,
            MAX_LINE + 3,
        ];
        let mut logs = Vec::new();
        for len in lengths {
            for end in [&b"\n"[..], b"\r\n", b"\r", b""] {
                let mut line = vec![b'a'; len];
                line.extend_from_slice(end);
                let mut framed = b"+++ FREE:2:0x10\nf1\n".to_vec();
                framed.extend_from_slice(&line);
                framed.extend_from_slice(b"\n+++ FREE:0:0x20\n");
                let mut output = line.clone();
                output.extend_from_slice(b"\n+++ FREE:1:0x30\nlast frame");
                let mut last = b"+++ FREE:1:0x40\n".to_vec();
                last.extend_from_slice(&line);
                logs.extend([framed, output, last]);
            }
        }
        // A line several blocks long, ending in multi-byte UTF-8 cut at
        // the limit, and one with a header glued to its far end.
        let mut utf8 = b"+++ FREE:1:0x10\n".to_vec();
        utf8.extend(std::iter::repeat_n(b'x', MAX_LINE - 1));
        utf8.extend("\u{e9}\u{e9}\n---\n".as_bytes());
        let mut glued = vec![b'y'; 3 * MAX_LINE];
        glued.extend_from_slice(b"+++ ALLOC:1:0x10:16:8\nframe\n");
        logs.extend([utf8, glued]);
        for log in &logs {
            assert_same_as_reference(log, &[1, 1000, BLOCK], &[4096, usize::MAX]);
        }
        // A line longer than a whole block, after a line whose check
        // scanned the block ahead, then binary data where that block's
        // bytes were: the scan must not vouch for what replaced them.
        let mut after_scan = b"x\n".to_vec();
        after_scan.extend(std::iter::repeat_n(b'a', BLOCK + MAX_LINE));
        after_scan.extend_from_slice(b"\n\xff\n+++ FREE:1:0x10\n\x00\n");
        assert_same_as_reference(&after_scan, &[BLOCK], &[usize::MAX]);
        // A line of several blocks starting late in the buffer: the
        // refills while it is skipped move it to the front, then read on.
        let mut late = b"x\n".repeat(BLOCK * 4 / 5 / 2);
        late.extend(std::iter::repeat_n(b'z', 3 * BLOCK));
        late.extend_from_slice(b"\n+++ FREE:1:0x10\nf\n");
        assert_same_as_reference(&late, &[BLOCK], &[4096, 65536, 1000 * 1000, usize::MAX]);
    }

    /// One line of a log built by [`log_line`]: records, frames (plain,
    /// `\r\n`, blank, UTF-8, binary), terminators, program output with and
    /// without glued headers, and malformed headers.
    fn log_line() -> impl Strategy<Value = Vec<u8>> {
        let header = (any::<bool>(), 0u64..5, 0u64..4).prop_map(|(alloc, n, a)| {
            let addr = 0x10 * a;
            if alloc {
                format!("+++ ALLOC:{n}:0x{addr:016x}:16:{}\n", 8 * n).into_bytes()
            } else {
                format!("+++ FREE:{n}:0x{addr:x}\n").into_bytes()
            }
        });
        let fixed = prop::sample::select(vec![
            &b"./prog(leaky+0x1a)[0x55d5c0a0b1a2]\n"[..],
            b"/lib/x86_64-linux-gnu/libc.so.6(+0x271ca)[0x7f0c5a2271ca]\r\n",
            b"main\n",
            b"\n",
            b"\r\n",
            b"   \n",
            b"---\n",
            b"---\r\n",
            b"caf\xc3\xa9(+0x1)[0x2]\n",
            b"program output\n",
            b"+++ diff-looking output\n",
            b"output+++ ALLOC:1:0x20:16:8\n",
            b"+++ +++ FREE:0:0x30\n",
            b"+++ ALLOC:x:0x10:16:8\n",
            b"+++ FREE:1:0x10 junk\n",
            b"+++ FREE:99999:0x10\n",
            b"+++ ALLOC:1:0x10:16\n",
            b"+++ ALLOC:1:0x10:16:8 \n",
            b"+++ FREE:00000000000000000001:0x10\n",
        ])
        .prop_map(<[u8]>::to_vec);
        let binary = prop::collection::vec(any::<u8>(), 0..6).prop_map(|mut b| {
            b.push(b'\n');
            b
        });
        prop_oneof![3 => header, 6 => fixed, 1 => binary]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]
        /// Random logs read in random block and read sizes: the same
        /// records, errors, warnings and counts as the line-by-line
        /// reference parser, strict and lenient.
        #[test]
        fn any_block_size_reads_like_the_reference(
            lines in prop::collection::vec(log_line(), 0..40),
            cut_final_newline in any::<bool>(),
            block in prop::sample::select(vec![1usize, 2, 3, 7, 16, 64, 1000, BLOCK]),
            step in prop::sample::select(vec![1usize, 2, 5, 13, 100, usize::MAX]),
        ) {
            let mut log = lines.concat();
            if cut_final_newline && log.last() == Some(&b'\n') {
                log.pop();
            }
            assert_same_as_reference(&log, &[block], &[step]);
        }

        /// The one-pass header parser accepts only what the field-by-field
        /// parser accepts, with the same values.
        #[test]
        fn fast_header_parse_agrees_with_the_checked_one(
            tag in prop::sample::select(vec!["+++ ALLOC:", "+++ FREE:"]),
            fields in prop::collection::vec(
                prop::sample::select(vec![
                    "0", "7", "4096", "4097", "18446744073709551615", "18446744073709551616",
                    "1234567890123456789", "00000000000000000001", "0x10", "0X1f", "0x", "0xg",
                    "0x0123456789abcdef", "0x0123456789abcdef0", "", " ", "1 ", "16\t", "x", "-1",
                ]),
                0..6,
            ),
            tail in prop::sample::select(vec!["", " ", "\t \u{c}", " x", ":", "\u{b}"]),
        ) {
            let line = format!("{tag}{}{tail}", fields.join(":"));
            let checked = parse_header_checked(line.as_bytes());
            if let Some(fast) = parse_header_fast(line.as_bytes()) {
                prop_assert_eq!(Ok(fast), checked, "{:?}", line);
            }
        }
    }

    #[test]
    fn well_formed_headers_take_the_fast_path() {
        for line in [
            "+++ ALLOC:12:0x000055d5c0a0b2a0:16:32",
            "+++ ALLOC:0:0x10:8:0 ",
            "+++ FREE:4096:0xFFFFFFFFFFFFFFFF",
            "+++ FREE:1:0X0\t",
        ] {
            let fast = parse_header_fast(line.as_bytes());
            assert!(fast.is_some(), "{line}");
            assert_eq!(Ok(fast.unwrap()), parse_header_checked(line.as_bytes()));
        }
    }

    /// A log of `records` ALLOC records of `frames` frames each, with a
    /// line of program output between them.
    fn clean_log(records: usize, frames: usize, line_end: &str) -> Vec<u8> {
        let mut log = String::new();
        for r in 0..records {
            log.push_str(&format!(
                "+++ ALLOC:{frames}:0x{:x}:16:8{line_end}",
                0x10 * r
            ));
            for f in 0..frames {
                log.push_str(&format!(
                    "./prog(function_{r}_{f}+0x1a)[0x55d5c0a0b1a2]{line_end}"
                ));
            }
            log.push_str(&format!("---{line_end}worker: batch done{line_end}"));
        }
        log.into_bytes()
    }

    #[test]
    fn stacks_are_slices_of_the_input_buffer_not_copies() {
        let log = clean_log(500, 7, "\n");
        // Blocks far smaller than the log: records cross block ends.
        let mut p = Parser::with_block(&log[..], false, 1000);
        let mut n = 0;
        while let Some(r) = p.next_record().unwrap() {
            assert_eq!(r.stack.split(|&b| b == b'\n').count(), 7);
            n += 1;
        }
        assert_eq!(n, 500);
        assert_eq!(p.assembled.capacity(), 0, "a clean log copied a stack");
        // `\r\n` line ends are no slice: those stacks are copied, and
        // read the same.
        let crlf = clean_log(500, 7, "\r\n");
        let mut p = Parser::with_block(&crlf[..], false, 1000);
        let mut q = Parser::with_block(&log[..], false, 1000);
        while let Some(r) = p.next_record().unwrap() {
            assert_eq!(r.stack, q.next_record().unwrap().unwrap().stack);
        }
        assert!(p.assembled.capacity() > 0);
    }

    #[test]
    fn the_buffer_follows_the_largest_record_not_the_input() {
        // 20 MB of small records in 4 KiB blocks: the buffer stays at its
        // first size.
        let log = clean_log(100_000, 5, "\n");
        let mut p = Parser::with_block(&log[..], false, 4096);
        while p.next_record().unwrap().is_some() {}
        assert_eq!(p.stats().allocs, 100_000);
        assert_eq!(p.input.buf.len(), 4096);
        // A record larger than a block makes it grow to hold the record.
        let big = clean_log(3, 400, "\n");
        let mut p = Parser::with_block(&big[..], false, 4096);
        while let Some(r) = p.next_record().unwrap() {
            assert_eq!(r.stack.split(|&b| b == b'\n').count(), 400);
        }
        assert!(
            p.input.buf.len() < 4 * big.len() / 3,
            "{}",
            p.input.buf.len()
        );
        // A huge line (a binary file without line ends) keeps only its
        // first MAX_LINE bytes.
        let huge = vec![b'z'; 40 * MAX_LINE];
        let mut p = Parser::with_block(&huge[..], true, 4096);
        while p.next_record().unwrap().is_some() {}
        assert!(
            p.input.buf.len() <= 2 * MAX_LINE + 4096,
            "{}",
            p.input.buf.len()
        );
        assert_eq!(p.stats().bytes, huge.len() as u64);
        assert_eq!(p.warnings().0[0].kind, ErrorKind::LineTooLong);
    }

    #[test]
    fn small_inputs_get_a_small_buffer_large_ones_a_block() {
        let mut p = Parser::new(&b"+++ FREE:0:0x10\n"[..], false);
        while p.next_record().unwrap().is_some() {}
        assert!(p.input.buf.len() <= FIRST_BUFFER, "{}", p.input.buf.len());
        let log = clean_log(30_000, 5, "\n");
        assert!(log.len() > 4 * BLOCK);
        let mut p = Parser::new(&log[..], false);
        while p.next_record().unwrap().is_some() {}
        assert_eq!(p.input.buf.len(), BLOCK);
    }

    #[test]
    fn read_errors_stop_parsing() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        match Parser::new(Failing, true).next_record() {
            Err(Error::Io(e)) => assert_eq!(e.to_string(), "disk on fire"),
            other => panic!("expected a read error, got {other:?}"),
        }
    }

    #[test]
    fn first_suspect_finds_nul_and_non_ascii_anywhere() {
        for len in [0, 1, 63, 64, 65, 200] {
            let clean = vec![b'a'; len];
            assert_eq!(first_suspect(&clean), len);
            for at in 0..len {
                for bad in [0u8, 0x80, 0xc3, 0xff] {
                    let mut bytes = clean.clone();
                    bytes[at] = bad;
                    assert_eq!(first_suspect(&bytes), at, "{len} {at} {bad}");
                }
            }
        }
        // Every other byte is harmless.
        let harmless: Vec<u8> = (1..0x80).collect();
        assert_eq!(first_suspect(&harmless), harmless.len());
    }

    #[test]
    fn empty_input_has_no_records() {
        assert!(records(b"", false).unwrap().is_empty());
    }
}
