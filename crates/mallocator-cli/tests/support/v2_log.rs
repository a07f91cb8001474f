//! A writer of v2 binary logs for tests and benchmarks: records laid out
//! as `docs/log-format.md` says, written in whatever order (and with
//! whatever damage) a test asks for. Not part of the command.
//!
//! Included by path from the unit tests, the integration tests and the
//! throughput benchmark, each of which uses only part of it.
#![allow(dead_code)]

/// The first 8 bytes of a v2 log.
pub const MAGIC: [u8; 8] = *b"\x89mallog\n";
/// The stack id of an event whose stack was not captured.
pub const NO_STACK: u32 = u32::MAX;

/// One event of a chunk.
#[derive(Clone, Copy, Debug)]
pub enum Ev {
    /// An allocation that returned `addr` (0: failed).
    Alloc {
        /// Timestamp.
        ts: u64,
        /// The block.
        addr: u64,
        /// Requested size.
        size: u64,
        /// log2 of the alignment, 0xFF for none.
        align_log2: u8,
        /// Stack id.
        stack: u32,
    },
    /// A free of `addr` (0: `free(NULL)`).
    Free {
        /// Timestamp.
        ts: u64,
        /// The block.
        addr: u64,
        /// Stack id.
        stack: u32,
    },
}

/// An allocation with 16-byte alignment.
pub fn alloc(ts: u64, addr: u64, size: u64, stack: u32) -> Ev {
    Ev::Alloc {
        ts,
        addr,
        size,
        align_log2: 4,
        stack,
    }
}

/// A free.
pub fn free(ts: u64, addr: u64, stack: u32) -> Ev {
    Ev::Free { ts, addr, stack }
}

impl Ev {
    /// The event's bytes, tag first.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Ev::Alloc {
                ts,
                addr,
                size,
                align_log2,
                stack,
            } => {
                out.push(1);
                out.extend_from_slice(&ts.to_le_bytes());
                out.extend_from_slice(&addr.to_le_bytes());
                out.extend_from_slice(&size.to_le_bytes());
                out.push(align_log2);
                out.extend_from_slice(&stack.to_le_bytes());
            }
            Ev::Free { ts, addr, stack } => {
                out.push(2);
                out.extend_from_slice(&ts.to_le_bytes());
                out.extend_from_slice(&addr.to_le_bytes());
                out.extend_from_slice(&stack.to_le_bytes());
            }
        }
    }
}

/// A v2 log being written.
#[derive(Clone, Debug)]
pub struct Log {
    /// The bytes so far.
    pub bytes: Vec<u8>,
}

impl Default for Log {
    fn default() -> Self {
        Log::with_version(2)
    }
}

impl Log {
    /// The magic and version 2, no record yet.
    pub fn new() -> Self {
        Log::default()
    }

    /// The magic and any version.
    pub fn with_version(version: u32) -> Self {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        Log { bytes }
    }

    /// Where the next record starts.
    pub fn offset(&self) -> usize {
        self.bytes.len()
    }

    /// A record with any tag and payload.
    pub fn record(&mut self, tag: u8, payload: &[u8]) -> &mut Self {
        self.bytes.push(tag);
        self.bytes
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(payload);
        self
    }

    /// The header: pid 42, monotonic nanoseconds.
    pub fn header(&mut self, exe: &str, cwd: &str) -> &mut Self {
        let mut p = Vec::new();
        p.extend_from_slice(&42u32.to_le_bytes());
        p.extend_from_slice(&1_700_000_000_000_000_000u64.to_le_bytes());
        p.push(1);
        p.extend_from_slice(&1_000_000_000u64.to_le_bytes());
        p.extend_from_slice(&(exe.len() as u16).to_le_bytes());
        p.extend_from_slice(exe.as_bytes());
        p.extend_from_slice(&(cwd.len() as u16).to_le_bytes());
        p.extend_from_slice(cwd.as_bytes());
        self.record(b'H', &p)
    }

    /// A module record.
    pub fn module(
        &mut self,
        bias: u64,
        start: u64,
        end: u64,
        build_id: &[u8],
        path: &[u8],
    ) -> &mut Self {
        let mut p = Vec::new();
        for v in [bias, start, end] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p.push(build_id.len() as u8);
        p.extend_from_slice(build_id);
        p.extend_from_slice(&(path.len() as u16).to_le_bytes());
        p.extend_from_slice(path);
        self.record(b'M', &p)
    }

    /// A stack record.
    pub fn stack(&mut self, id: u32, frames: &[u64]) -> &mut Self {
        let mut p = Vec::new();
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(&(frames.len() as u16).to_le_bytes());
        for f in frames {
            p.extend_from_slice(&f.to_le_bytes());
        }
        self.record(b'S', &p)
    }

    /// A chunk of `thread`'s events.
    pub fn events(&mut self, thread: u64, events: &[Ev]) -> &mut Self {
        let mut p = thread.to_le_bytes().to_vec();
        for e in events {
            e.encode(&mut p);
        }
        self.record(b'E', &p)
    }

    /// A reachability record: the leak scan at `ts` found each block
    /// `(address, class code)` (1 definitely, 2 indirectly, 3 possibly
    /// lost, 4 still reachable).
    pub fn reachability(&mut self, ts: u64, blocks: &[(u64, u8)]) -> &mut Self {
        let mut p = ts.to_le_bytes().to_vec();
        for &(addr, code) in blocks {
            p.extend_from_slice(&addr.to_le_bytes());
            p.push(code);
        }
        self.record(b'R', &p)
    }

    /// The end record.
    pub fn end(&mut self, events: u64, lost: u64) -> &mut Self {
        let mut p = events.to_le_bytes().to_vec();
        p.extend_from_slice(&lost.to_le_bytes());
        self.record(b'Z', &p)
    }

    /// The bytes written.
    pub fn build(&self) -> Vec<u8> {
        self.bytes.clone()
    }
}

/// Offset of the first event of the chunk record written at `record`.
pub fn first_event(record: usize) -> usize {
    record + 5 + 8
}
