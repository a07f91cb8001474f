//! The log `mallocator leaks` reads, opened and told apart by its first
//! bytes: a v2 binary log is taken whole (a regular file mapped, also when
//! it is standard input; a pipe read into memory), a text log is streamed.

use super::v2;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::Deref;
use std::path::Path;

/// Read buffer of the text parser.
const TEXT_BUFFER: usize = 1 << 18;

/// The bytes of a v2 log.
pub enum Bytes {
    /// A regular file, mapped.
    Mapped(memmap2::Mmap),
    /// Read whole (standard input, a pipe, or a file that cannot be mapped).
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// An opened log.
pub enum Input {
    /// A v2 binary log.
    V2(Bytes),
    /// A text log, streamed; `size` when it is a file.
    Text {
        /// The whole input, its first bytes included.
        reader: Box<dyn BufRead>,
        /// Its size, if known.
        size: Option<u64>,
    },
}

/// Reads up to 8 bytes (fewer only at the end of the input).
fn prefix(r: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut buf = [0; 8];
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf[..n].to_vec())
}

/// Maps a regular file for reading.
fn map(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: the map is read-only and only ever read as bytes, and the
    // reader handles any byte values: the log is checked record by record,
    // and what the second pass reads again goes through reads that give 0
    // outside what they expect instead of panicking. A writer still
    // appending to the log does not touch the mapped part (appended bytes
    // lie past the length mapped now). What a map cannot survive is the
    // file being truncated under it (the lost pages raise SIGBUS, ending
    // the command as a read error would); nothing in the tracker does
    // that to a log it is writing.
    unsafe { memmap2::Mmap::map(file) }
}

/// Standard input as a file, when it is a regular file read from its
/// start (`mallocator leaks < log`): then it is mapped like a named file
/// instead of being copied into memory.
#[cfg(unix)]
fn stdin_file() -> Option<File> {
    use std::io::Seek;
    use std::os::fd::AsFd;
    let fd = io::stdin().as_fd().try_clone_to_owned().ok()?;
    let mut file = File::from(fd);
    let regular = file.metadata().ok()?.is_file();
    (regular && file.stream_position().ok()? == 0).then_some(file)
}

#[cfg(not(unix))]
fn stdin_file() -> Option<File> {
    None
}

/// Tells the format of an open file (read from its start).
fn open_file(mut file: File) -> io::Result<Input> {
    let meta = file.metadata()?;
    let first = prefix(&mut file)?;
    if v2::looks_like_v2(&first) {
        if meta.is_file() && meta.len() > 0 {
            if let Ok(m) = map(&file) {
                return Ok(Input::V2(Bytes::Mapped(m)));
            }
        }
        let mut all = first;
        file.read_to_end(&mut all)?;
        return Ok(Input::V2(Bytes::Owned(all)));
    }
    let size = meta.is_file().then_some(meta.len());
    let reader = io::Cursor::new(first).chain(file);
    Ok(Input::Text {
        reader: Box::new(BufReader::with_capacity(TEXT_BUFFER, reader)),
        size,
    })
}

/// Opens `path` (`None` or `-`: standard input) and tells its format.
pub fn open(path: Option<&Path>) -> io::Result<Input> {
    match path {
        Some(path) if path.as_os_str() != "-" => open_file(File::open(path)?),
        _ => {
            if let Some(file) = stdin_file() {
                return open_file(file);
            }
            let mut stdin = io::stdin().lock();
            let first = prefix(&mut stdin)?;
            if v2::looks_like_v2(&first) {
                let mut all = first;
                stdin.read_to_end(&mut all)?;
                return Ok(Input::V2(Bytes::Owned(all)));
            }
            let reader = io::Cursor::new(first).chain(stdin);
            Ok(Input::Text {
                reader: Box::new(BufReader::with_capacity(TEXT_BUFFER, reader)),
                size: None,
            })
        }
    }
}
