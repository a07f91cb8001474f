//! The parser as it was first written, kept as the oracle of the tests:
//! it reads one line at a time into a buffer of its own, checks each line
//! as UTF-8 by itself and looks for a record header in each line by
//! itself. Too slow for large logs (about 16 instructions per byte), but
//! plain enough to check by reading, so the block parser must agree with
//! it on every input: the same records, errors, warnings and counts.

use super::{
    parse_header, Error, ErrorKind, InputStats, Op, ParseError, Record, ALLOC_TAG, FREE_TAG,
    MAX_KEPT_WARNINGS, MAX_LINE,
};
use std::io::{self, BufRead};

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

/// The line-by-line parser: every line copied into a buffer of its own,
/// checked as UTF-8 on its own and searched for a header on its own.
pub struct Reference<R> {
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

impl<R: BufRead> Reference<R> {
    /// A reference parser reading `inner`.
    pub fn new(inner: R, lenient: bool) -> Self {
        Reference {
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
            // One change from the first version, which tested `start > 0`
            // and so dropped blank frames at the top of a stack: frames
            // are joined by `\n` as documented, blank ones included.
            if found > 0 {
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
