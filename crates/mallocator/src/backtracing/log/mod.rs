//! Log mode: every allocation and free as an event in a log, for an
//! offline report (`mallocator leaks`) or C tooling.
//!
//! Two formats ([`LogFormat`]): the compact binary log (`compact.rs`,
//! the default), written through per-thread buffers (`threads.rs`), and
//! the Firedancer text format (`text.rs`), written record by record.
//!
//! Every write to the output happens under the log lock and in one call
//! (retrying short writes), so records of different threads never
//! interleave. Lock order: a thread's buffer, then the log, then the
//! stack table's shards (the compact log writes new stacks there); a
//! thread flushing another thread's buffer takes the log first and only
//! tries that buffer's lock (see `threads.rs`).

mod compact;
mod record_buf;
mod text;
mod threads;

use core::sync::atomic::{AtomicU8, Ordering};

use super::fork;
use super::live::Record;
use super::os::{self, Sink};
use super::reachability::LeakKind;
use super::report::{classified_live, Reach};
use super::stacks::{StackTable, NO_STACK};
use super::state::State;
use super::sync::{RawLock, SpinGuard, SpinLock};
use super::sys_vec::{sys_vec, SysVec};
use super::thread::{Busy, ThreadState};
use record_buf::{try_append, RecordBuf};
use text::{LineCache, StackLines};

pub(crate) use threads::{
    after_fork_in_child, detach, finish_all, finish_all_for_exec, flush, resume_all_after_exec,
    ThreadBuffer, BUFFERS,
};

/// Creates the file at `path` for a log, or empties it, the way the
/// tracker does for [`LogTarget::Path`] and `MALLOCATOR_LOG` (and the
/// way to create any other file that holds a process's addresses, such
/// as a report drawn from a log): a log holds addresses, so on Unix it
/// is created with mode 0600, a symbolic link at `path` is refused
/// rather than followed, and an existing file is used
/// only if it is a regular file of this user with no other name (no hard
/// link), set to 0600, then emptied.
/// For a caller that opens the file itself and lends its descriptor
/// ([`LogTarget::Fd`]), to see the error at once.
///
/// ```
/// # #[cfg(not(miri))] { // Miri cannot open files with these flags
/// let path = std::env::temp_dir().join(format!("mallocator-doc-{}.log", std::process::id()));
/// let file = mallocator::backtracing::create_log_file(&path).unwrap();
/// # #[cfg(unix)] {
/// use std::os::unix::fs::PermissionsExt;
/// assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
/// # }
/// # drop(file);
/// # std::fs::remove_file(&path).unwrap();
/// # }
/// ```
pub fn create_log_file(path: impl AsRef<std::path::Path>) -> std::io::Result<std::fs::File> {
    os::create_private_file(path.as_ref())
}

/// Where log mode writes.
///
/// ```
/// use mallocator::backtracing::{Backtracing, Config, LogTarget};
/// use mallocator::Valloc;
///
/// fn collect(record: &[u8]) {
///     // Compact log records start with a tag byte; the first write
///     // starts with the file's magic.
///     assert!(record.starts_with(b"\x89mallog\n") || b"MSEZ".contains(&record[0]));
/// }
/// let t = Backtracing::with_config(Valloc::libc(), Config { log: LogTarget::Callback(collect), ..Config::DEFAULT });
/// let v = t.valloc();
/// // SAFETY: freeing what `v` returned.
/// unsafe { v.free(v.malloc(8, 8)) };
/// ```
#[derive(Debug, Clone, Copy)]
pub enum LogTarget {
    /// No log (the default).
    None,
    /// The process's standard output (like the C version).
    Stdout,
    /// The process's standard error.
    Stderr,
    /// An open file descriptor, which the tracker never closes. Borrowed
    /// for the whole program: making one is `unsafe`
    /// ([`BorrowedFd::borrow_raw`](std::os::fd::BorrowedFd::borrow_raw)),
    /// so safe code cannot point the log at a descriptor it does not own.
    #[cfg(unix)]
    Fd(std::os::fd::BorrowedFd<'static>),
    /// A file, created (truncated) at the first event: mode 0600 on
    /// Unix, and never through a symbolic link (the log holds addresses).
    Path(&'static str),
    /// A function called with each write: whole records (a Firedancer
    /// record, or compact records: the file's start, stacks, a chunk of
    /// events), under the log lock, so calls never overlap. It may allocate.
    Callback(fn(&[u8])),
}

/// The format of the log.
///
/// ```
/// use mallocator::backtracing::{Config, LogFormat};
/// assert_eq!(Config::DEFAULT.log_format, LogFormat::Compact);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// The compact binary log (format v2, documented in
    /// `docs/log-format.md`): raw frames, each distinct stack once, a map
    /// of the loaded objects for offline symbolisation, events buffered
    /// per thread. About 25 bytes an event. The default.
    Compact,
    /// The Firedancer text format: each event with its frames described
    /// by the loader (`object(symbol+0xoff)[0xip]`), as C tooling reads
    /// it. Hundreds of bytes an event.
    Firedancer,
}

/// Where the log stands: not opened yet, open, or failed to open.
enum Output {
    Closed(LogTarget),
    Open(Sink),
    Callback(fn(&[u8])),
    Failed,
}

/// The log of one tracker.
pub(crate) struct Log {
    inner: SpinLock<Inner>,
    /// The [`LogFormat`] (as `Compact as u8`...), read without the lock.
    format: AtomicU8,
}

/// What the log lock protects.
struct Inner {
    output: Output,
    /// The bytes of one write, built before it is made.
    buf: RecordBuf,
    /// Firedancer format: frame lines already described, by address and
    /// by stack.
    lines: LineCache,
    stack_lines: StackLines,
    /// Compact format: the file's start is written.
    started: bool,
    /// Compact format: the end record is written; nothing more is.
    finished: bool,
    /// Compact format: the address ranges of the modules written.
    modules: SysVec<(usize, usize)>,
    /// Compact format: a stack was written with a frame in no module
    /// written, without the loader's lock to read the map again: the next
    /// chunk reads it.
    rescan: bool,
    /// Compact format: events written.
    events: u64,
    /// Compact format: how many `exec` calls, of different threads, are
    /// under way with the log ended by [`Log::finish_for_exec`] (a chunk
    /// to write then waits: see [`Log::chunk_writer`]); the last of them
    /// to fail takes the end back, cutting the file back to `end_at`,
    /// where the end record starts (meaningful while `execs` is not 0).
    execs: u32,
    end_at: u64,
}

impl core::fmt::Debug for Log {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Log")
    }
}

/// The [`LogFormat`] as `Log::format` stores it.
const fn format_code(format: LogFormat) -> u8 {
    match format {
        LogFormat::Compact => 0,
        LogFormat::Firedancer => 1,
    }
}

impl Log {
    pub(crate) const fn new(target: LogTarget, format: LogFormat) -> Self {
        Log {
            inner: SpinLock::new(Inner {
                output: Output::Closed(target),
                buf: RecordBuf::new(),
                lines: LineCache::new(),
                stack_lines: StackLines::new(),
                started: false,
                finished: false,
                modules: sys_vec(),
                rescan: false,
                events: 0,
                execs: 0,
                end_at: 0,
            }),
            format: AtomicU8::new(format_code(format)),
        }
    }

    /// The format events are written in.
    #[inline]
    pub(crate) fn format(&self) -> LogFormat {
        if self.format.load(Ordering::Relaxed) == 0 {
            LogFormat::Compact
        } else {
            LogFormat::Firedancer
        }
    }

    /// Replaces the target (opened at the next event) and the format.
    /// Meant for the configuration, before the first event.
    pub(crate) fn set_target(&self, target: LogTarget, format: LogFormat) {
        self.inner.lock().output = Output::Closed(target);
        self.format.store(format_code(format), Ordering::Relaxed);
    }

    /// Replaces the target with an already open sink, and the format.
    pub(crate) fn set_sink(&self, sink: Sink, format: LogFormat) {
        self.inner.lock().output = Output::Open(sink);
        self.format.store(format_code(format), Ordering::Relaxed);
    }

    /// Builds the next records in a buffer that can (`false`) or cannot
    /// (`true`) grow, as when memory runs out (for the tests that run
    /// where a log can be read back: Unix, not Miri).
    #[cfg(all(test, unix, not(miri)))]
    fn starve(&self, starved: bool) {
        self.inner.lock().buf = if starved {
            RecordBuf::new_in(crate::valloc::Valloc::null())
        } else {
            RecordBuf::new()
        };
    }

    /// The log's lock, for the fork handlers.
    pub(crate) fn lock(&self) -> &dyn RawLock {
        &self.inner
    }

    /// In a child process after `fork`: a compact log stops (the parent
    /// writes the file; the child's events would mix with its chunks
    /// under the same thread ids). A Firedancer log goes on, as the C
    /// tool's does, into the file it shares with its parent; unless the
    /// file is not open yet, when the child would create it anew, emptying
    /// what its parent writes there: it stops too.
    pub(crate) fn stop_in_child(&self) {
        let mut inner = self.inner.lock();
        // Ended for an `exec` of a thread the child does not have: there
        // is no `exec` to wait for.
        inner.execs = 0;
        if self.format() == LogFormat::Compact
            || matches!(inner.output, Output::Closed(LogTarget::Path(_)))
        {
            inner.output = Output::Failed;
        }
    }

    /// In a child process after `fork`, for a log of its own: the log
    /// starts over in `sink` as if the child had just started (its
    /// header, the module map, every stack written again, then only the
    /// child's events). The compact log's start is written at once, not
    /// at the child's first event: a child that allocates nothing and
    /// frees nothing still leaves a whole log, its start and its end,
    /// rather than an empty file.
    pub(crate) fn restart_in_child(&self, sink: Sink, stacks: &StackTable) {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        inner.output = Output::Open(sink);
        inner.started = false;
        inner.finished = false;
        inner.modules.clear();
        inner.rescan = false;
        inner.events = 0;
        inner.execs = 0;
        if self.format() == LogFormat::Compact {
            inner.start_at_once();
        }
        drop(guard);
        stacks.forget_written();
    }

    /// Writes the compact log's start now, unless it is written already
    /// (or the log is not compact, or cannot be opened): for a tracker
    /// started before the program runs, so that a program that allocates
    /// nothing and frees nothing still leaves a whole log, its start and
    /// its end, rather than an empty file.
    pub(crate) fn start_now(&self) {
        if self.format() != LogFormat::Compact {
            return;
        }
        let mut inner = self.inner.lock();
        if !inner.started && !inner.finished && inner.open() {
            inner.start_at_once();
        }
    }

    /// Writes a Firedancer record of an allocation (`alloc`: `Some((align,
    /// size))`) or a free of `addr`, with its stack's `frames` (interned
    /// as `id`, or a sentinel id when not interned).
    pub(crate) fn write_text(
        &self,
        addr: usize,
        alloc: Option<(usize, usize)>,
        id: u32,
        frames: &[usize],
    ) {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if !inner.open() {
            return;
        }
        inner.buf.clear();
        let (lines, stacks) = (&mut inner.lines, &mut inner.stack_lines);
        let id = (id < NO_STACK).then_some(id);
        text::format_record(&mut inner.buf, addr, alloc, frames, &mut |buf| {
            stacks.append(id, frames, lines, buf)
        });
        if !inner.emit() {
            // The record may be cut: one written after it would be read
            // as its missing lines.
            inner.output = Output::Failed;
        }
    }

    /// Writes a chunk of `thread`'s compact events (`count` of them, in
    /// `events`), after the file's start and any stack not written yet.
    /// One write: the whole chunk or, if that fails, none of it, and the
    /// log stops (the records it lost would leave later events naming
    /// stacks the file never defines).
    ///
    /// The module map is read with the loader's lock, which is taken
    /// before the log's (see `os::with_loader_locked`): only when the map
    /// may have to be read (the file's start, a stack with a frame in no
    /// known module), since it costs a lock most chunks do not need.
    pub(crate) fn write_chunk(&self, stacks: &StackTable, thread: u64, events: &[u8], count: u64) {
        self.wait_for_exec();
        let run = |loader_locked| {
            self.chunk_writer(stacks, loader_locked)
                .write(thread, events, count)
        };
        if self.needs_modules(stacks) {
            os::with_loader_locked(|| run(true))
        } else {
            run(false)
        }
    }

    /// Runs `f` holding the loader's lock and the log lock, with a writer
    /// of chunks: for a thread that flushes another thread's buffer,
    /// which it must take only while holding the log lock (see
    /// `threads.rs`). Always with the loader's lock: that buffer's events
    /// may name stacks stored after any check this thread could make
    /// (see [`Inner::new_stacks`]), so every stack must be written, with
    /// the modules it needs first.
    pub(crate) fn with_chunk_writer<R>(
        &self,
        stacks: &StackTable,
        f: impl FnOnce(&mut ChunkWriter<'_>) -> R,
    ) -> R {
        self.wait_for_exec();
        os::with_loader_locked(|| f(&mut self.chunk_writer(stacks, true)))
    }

    /// A writer of chunks, holding the log lock; `loader_locked` says
    /// whether the caller holds the loader's lock too.
    ///
    /// While the log is ended for an `exec` that may fail, it waits, the
    /// lock let go: the `exec` ends this thread, or its failure takes the
    /// end back (under this lock). Writing nothing would lose the events
    /// in the log that goes on (the blocks they name read as leaks, their
    /// frees as double ones). It waits before the caller takes any
    /// buffer to write, so that a thread's chunks keep their order.
    fn chunk_writer<'l>(&'l self, stacks: &'l StackTable, loader_locked: bool) -> ChunkWriter<'l> {
        let mut inner = self.inner.lock();
        while inner.ended_for_exec() {
            inner.unlocked(std::thread::yield_now);
        }
        ChunkWriter {
            inner,
            stacks,
            loader_locked,
        }
    }

    /// Waits, holding no lock, while the log is ended for an `exec` (see
    /// [`chunk_writer`](Self::chunk_writer), which checks again under the
    /// lock): a writer that waits there may hold the loader's lock.
    fn wait_for_exec(&self) {
        while self.inner.lock().ended_for_exec() {
            std::thread::yield_now();
        }
    }

    /// Writes the module records of the objects `frames` lie in, when
    /// the compact log has none for one of them yet (starting the file if
    /// it is not): for a stack just interned, so that an object unloaded
    /// before the stack is written still has its record.
    pub(crate) fn map_objects_of(&self, frames: &[usize]) {
        if self.format() != LogFormat::Compact {
            return;
        }
        {
            let inner = self.inner.lock();
            if inner.finished || all_mapped(&inner.modules, frames) {
                return;
            }
        }
        os::with_loader_locked(|| {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            if inner.finished || !inner.open() {
                return;
            }
            inner.buf.clear();
            if inner.started {
                inner.rescan_modules();
            } else {
                inner.start(true);
            }
            if !inner.buf.is_empty() && !inner.emit() {
                inner.output = Output::Failed;
            }
        });
    }

    /// After the loader unloaded objects (`dlclose`), another object may
    /// be loaded at their addresses, and the module records written so
    /// far would name its frames after the unloaded one (a frame inside a
    /// written range is never looked up again). So when a written object
    /// is no longer loaded, every stack stored until now is written, named
    /// by the map it was captured under, and the ranges of the objects
    /// gone are forgotten: a stack with a frame there later makes the map
    /// be read again, and the record of what is loaded there written,
    /// which replaces the older one for the stacks after it (see
    /// `docs/log-format.md`). The text format forgets the frame lines it
    /// has cached instead.
    pub(crate) fn objects_unloaded(&self, stacks: &StackTable) {
        if self.format() == LogFormat::Firedancer {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            text::forget(&mut inner.lines, &mut inner.stack_lines);
            return;
        }
        os::with_loader_locked(|| {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            // Not started: no record written yet, none to forget.
            if !inner.started || inner.finished || !inner.open() {
                return;
            }
            // The ranges loaded now; if they cannot all be listed (out of
            // memory), every written one counts as gone.
            let mut loaded: SysVec<(usize, usize)> = sys_vec();
            let mut listed = true;
            os::for_each_module(&mut |m| {
                listed &= loaded.try_reserve(1).is_ok();
                if listed {
                    loaded.push((m.start, m.end));
                }
            });
            let still_loaded = |range: &(usize, usize)| listed && loaded.contains(range);
            if inner.modules.iter().all(still_loaded) {
                return;
            }
            inner.buf.clear();
            inner.new_stacks(stacks, true);
            if !inner.buf.is_empty() && !inner.emit() {
                inner.output = Output::Failed;
                return;
            }
            inner.modules.retain(still_loaded);
        });
    }

    /// Whether the next chunk may have to read the module map.
    fn needs_modules(&self, stacks: &StackTable) -> bool {
        let inner = self.inner.lock();
        let known = &inner.modules;
        !inner.started
            || inner.rescan
            || stacks.any_unwritten(&mut |frames| !all_mapped(known, frames))
    }

    /// Writes the compact log's end record, once, after the last chunk
    /// (at exit, or when the tracker is dropped); nothing is written after it.
    pub(crate) fn finish(&self) {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if !inner.started || inner.finished || !inner.open() {
            return;
        }
        inner.write_end();
    }

    /// Writes into a compact log that is going on how reachable the
    /// leak scan made at `ts` found each block: `blocks`, sorted by
    /// address, classified as `kinds` says. In records of at most 16 KiB,
    /// each written whole; a failed write ends the log, as for events.
    pub(crate) fn write_reachability(&self, ts: u64, blocks: &[Record], kinds: &[LeakKind]) {
        /// Entries of one record: as many as fit in 16 KiB after the
        /// timestamp.
        const PER_RECORD: usize = (16 * 1024 - 8) / compact::REACHABILITY_ENTRY;
        if self.format() != LogFormat::Compact {
            return;
        }
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if !inner.started || inner.finished || !inner.open() {
            return;
        }
        for (blocks, kinds) in blocks.chunks(PER_RECORD).zip(kinds.chunks(PER_RECORD)) {
            inner.buf.clear();
            let entries = blocks.iter().zip(kinds).map(|(r, &kind)| (r.addr, kind));
            compact::reachability(&mut inner.buf, ts, entries);
            if !inner.emit() {
                inner.output = Output::Failed;
                return;
            }
        }
    }

    /// Whether the log has started and is going on (not ended, nor
    /// stopped by a failed write).
    fn going_on(&self) -> bool {
        let inner = self.inner.lock();
        inner.started
            && !inner.finished
            && matches!(inner.output, Output::Open(_) | Output::Callback(_))
    }

    /// [`finish`](Self::finish), for a process about to replace itself
    /// with `exec`, where [`resume_after_exec`](Self::resume_after_exec)
    /// can take the end back: in a regular file (the end record is cut
    /// off again). Elsewhere (a pipe, a callback) the log is left going
    /// on: without its end, a reader says it was cut short.
    pub(crate) fn finish_for_exec(&self) {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if inner.ended_for_exec() {
            // Another thread's `exec` ended it.
            inner.execs += 1;
            return;
        }
        if !inner.started || inner.finished || !inner.open() {
            return;
        }
        let Output::Open(sink) = &inner.output else {
            return;
        };
        let Some(at) = os::position(sink) else {
            return;
        };
        inner.execs = 1;
        inner.end_at = at;
        inner.write_end();
    }

    /// After an `exec` that failed: the end [`finish_for_exec`](Self::finish_for_exec)
    /// wrote is cut off, and the log goes on, with the chunks that waited
    /// meanwhile. If it cannot be cut (an error of the file system), the
    /// log stays ended, and their events are not written.
    pub(crate) fn resume_after_exec(&self) {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if inner.execs == 0 {
            return;
        }
        inner.execs -= 1;
        if inner.execs > 0 {
            return;
        }
        if let Output::Open(sink) = &inner.output {
            inner.finished = !os::cut_back(sink, inner.end_at);
        }
    }
}

/// Writes chunks of events to a log whose lock it holds (see
/// [`Log::with_chunk_writer`]).
pub(crate) struct ChunkWriter<'l> {
    inner: SpinGuard<'l, Inner>,
    stacks: &'l StackTable,
    /// Whether the loader's lock is held too (the module map may be read).
    loader_locked: bool,
}

impl ChunkWriter<'_> {
    /// Writes a chunk of `thread`'s compact events (`count` of them, in
    /// `events`), as [`Log::write_chunk`] describes.
    pub(crate) fn write(&mut self, thread: u64, events: &[u8], count: u64) {
        let inner = &mut *self.inner;
        if inner.finished || !inner.open() {
            return;
        }
        inner.buf.clear();
        if !inner.started {
            inner.start(self.loader_locked);
        }
        inner.new_stacks(self.stacks, self.loader_locked);
        compact::chunk_start(&mut inner.buf, thread, events.len());
        if inner.emit_with(events) {
            inner.events += count;
        } else {
            inner.output = Output::Failed;
        }
    }
}

impl Inner {
    /// Whether [`Log::finish_for_exec`] ended the log, for an `exec` still
    /// under way (see `execs`).
    fn ended_for_exec(&self) -> bool {
        self.finished && self.execs > 0
    }

    /// Writes the compact log's end record; nothing is written after it.
    fn write_end(&mut self) {
        self.finished = true;
        self.buf.clear();
        // None lost: a failed write ends the log without this record.
        compact::end(&mut self.buf, self.events, 0);
        self.emit();
    }

    /// Opens the target at the first write; false when there is none.
    #[inline]
    fn open(&mut self) -> bool {
        if let Output::Closed(target) = self.output {
            self.output = match target {
                LogTarget::None => Output::Failed,
                LogTarget::Stdout => Output::Open(Sink::stdout()),
                LogTarget::Stderr => Output::Open(Sink::stderr()),
                #[cfg(unix)]
                LogTarget::Fd(fd) => Output::Open(Sink::Borrowed(fd)),
                LogTarget::Path(p) => Sink::create(p).map_or(Output::Failed, Output::Open),
                LogTarget::Callback(f) => Output::Callback(f),
            };
        }
        !matches!(self.output, Output::Closed(_) | Output::Failed)
    }

    /// Writes `buf` in one call; false when the write failed, or when
    /// `buf` was cut (out of memory) and is not written.
    fn emit(&mut self) -> bool {
        if self.buf.is_cut() {
            return false;
        }
        match &self.output {
            Output::Open(sink) => os::write_all(sink, &self.buf),
            Output::Callback(f) => {
                // It may allocate: the tracker's own work (invariant 12).
                let _own = super::thread::Busy::own();
                f(&self.buf);
                true
            }
            Output::Closed(_) | Output::Failed => false,
        }
    }

    /// Writes `buf` and then `tail` as one record: to a file without
    /// copying `tail` first (a chunk's events, 16 KiB); false when the
    /// write failed.
    fn emit_with(&mut self, tail: &[u8]) -> bool {
        if self.buf.is_cut() {
            return false;
        }
        if let Output::Open(sink) = &self.output {
            return os::write_all_two(sink, &self.buf, tail);
        }
        // A callback takes each record whole.
        self.buf.append(tail);
        self.emit()
    }

    /// Writes the file's start at once, the module map left for the
    /// first chunk (which may come from code that holds the loader's
    /// lock, and cannot wait for it).
    fn start_at_once(&mut self) {
        self.buf.clear();
        self.start(false);
        if !self.emit() {
            self.output = Output::Failed;
        }
    }

    /// Appends the file's start and the module map (when `loader_locked`;
    /// else at the next chunk) to `buf`, and makes sure the process
    /// flushes its buffers at exit.
    fn start(&mut self, loader_locked: bool) {
        self.started = true;
        let process = os::process();
        let (mut exe, mut cwd) = ([0u8; os::PATH_MAX], [0u8; os::PATH_MAX]);
        let exe_len = os::executable(&mut exe);
        let cwd_len = os::working_directory(&mut cwd);
        compact::file_start(
            &mut self.buf,
            &compact::Header {
                pid: process.pid,
                start_ns: process.now_ns,
                clock: os::CLOCK,
                ticks_per_second: os::ticks_per_second(),
                exe: &exe[..exe_len],
                cwd: &cwd[..cwd_len],
            },
        );
        if loader_locked {
            self.scan_modules(&exe[..exe_len]);
        } else {
            self.rescan = true;
        }
        threads::flush_at_exit();
    }

    /// Appends a module record for every loaded object not written yet
    /// (the executable's path, which the loader leaves empty, is `exe`).
    fn scan_modules(&mut self, exe: &[u8]) {
        let (buf, known) = (&mut self.buf, &mut self.modules);
        os::for_each_module(&mut |m| {
            if known.iter().any(|&(s, e)| (s, e) == (m.start, m.end)) {
                return;
            }
            if known.try_reserve(1).is_err() {
                return;
            }
            known.push((m.start, m.end));
            let path = if m.path.is_empty() { exe } else { m.path };
            compact::module(buf, m.bias, m.start, m.end, m.build_id, path);
        });
    }

    /// [`scan_modules`](Self::scan_modules) after the file's start, with
    /// the executable's path asked again.
    fn rescan_modules(&mut self) {
        let mut exe = [0u8; os::PATH_MAX];
        let exe_len = os::executable(&mut exe);
        self.scan_modules(&exe[..exe_len]);
    }

    /// Appends every stack not written yet, after the modules its frames
    /// lie in: a frame in no module written so far means an object was
    /// loaded since, so the module map is scanned again (once per write).
    ///
    /// Without the loader's lock the map cannot be read, so a stack with
    /// such a frame is left for the next writer that holds it (a chunk
    /// whose [`Log::needs_modules`] sees it, or [`Log::map_objects_of`]).
    /// The chunk being written never needs it: it is the writing thread's
    /// own (another thread's buffer is written with the loader's lock:
    /// [`Log::with_chunk_writer`]), whose events name only stacks stored
    /// before the thread checked, before taking the log's lock, that
    /// every stack stored by then lies in written modules; one stored
    /// since comes after them in its shard.
    fn new_stacks(&mut self, stacks: &StackTable, loader_locked: bool) {
        let (buf, known) = (&mut self.buf, &self.modules);
        if !loader_locked {
            stacks.for_each_unwritten(
                &mut |frames| all_mapped(known, frames),
                &mut |id, frames| compact::stack(buf, id, frames),
            );
            return;
        }
        let mut unknown = self.rescan;
        let stacks_from = buf.len();
        stacks.for_each_unwritten(&mut |_| true, &mut |id, frames| {
            unknown |= !all_mapped(known, frames);
            compact::stack(buf, id, frames);
        });
        if unknown && !cfg!(miri) {
            // The new module records must come before the stacks: move
            // the stacks behind them.
            let mut tail: SysVec<u8> = sys_vec();
            if !try_append(&mut tail, &self.buf[stacks_from..]) {
                // Out of memory: the stacks go without, the next write
                // tries again.
                self.rescan = true;
                return;
            }
            self.rescan = false;
            self.buf.truncate(stacks_from);
            self.rescan_modules();
            self.buf.append(&tail);
        }
    }
}

/// Whether every frame lies in one of the `modules` written so far
/// (`(start, end)` address ranges).
fn all_mapped(modules: &[(usize, usize)], frames: &[usize]) -> bool {
    frames
        .iter()
        .all(|&ip| modules.iter().any(|&(s, e)| s <= ip && ip < e))
}

/// The compact log's id for an interned stack id (the tracker's
/// sentinel ids mean "no stack" in the log).
fn stack_id(id: u32) -> u32 {
    if id >= NO_STACK {
        compact::NO_STACK_ID
    } else {
        id
    }
}

/// Logs an allocation of `size` bytes aligned to `align` (log2
/// `align_log2`) at `ptr` (null: it failed), with its stack (`id`, and
/// the raw `frames` for the text format). The timestamp is read now,
/// after the inner allocator returned the block (see the format's
/// ordering rule). `t` is the calling thread's state (`None` once it is
/// gone).
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) fn alloc(
    st: &State,
    t: Option<&ThreadState>,
    ptr: *mut u8,
    align: usize,
    align_log2: u8,
    size: usize,
    id: u32,
    frames: &[usize],
) {
    match st.log.format() {
        LogFormat::Compact => {
            let e = compact::alloc_event(os::ticks(), ptr as usize, size, align_log2, stack_id(id));
            threads::push(st, t, &e);
        }
        LogFormat::Firedancer => st
            .log
            .write_text(ptr as usize, Some((align, size)), id, frames),
    }
}

/// At exit, before the logs end: a leak scan of each tracker whose
/// compact log is going on, written there ([`Log::write_reachability`])
/// for an offline report to sort its leaks as the in-process exit report
/// does. `registers` are the exit hook's callee-saved registers, taken
/// first thing; the stack is scanned from the code that called `exit`.
pub(crate) fn write_reachability_at_exit(registers: os::Registers) {
    if !os::ROOTS_KNOWN {
        return;
    }
    let mut sp = None;
    fork::for_each_state(&mut |st| {
        if st.log.format() != LogFormat::Compact || !st.log.going_on() {
            return;
        }
        // Inside the tracker: what the unwinder looking for `exit`'s
        // caller allocates is the tracker's own, not the program's.
        let _busy = Busy::enter(st.epoch);
        let sp = *sp.get_or_insert_with(|| {
            os::stack_of_exit_caller().unwrap_or_else(os::stack_pointer_estimate)
        });
        let ts = os::ticks();
        let mut records = sys_vec();
        let reach = Reach::AllRoots { sp, registers };
        if let Some(Some(kinds)) = st.reading(|| classified_live(st, &mut records, reach)) {
            st.log.write_reachability(ts, &records, &kinds);
        }
    });
}

/// The timestamp of an event logged now: the clock (see `os::ticks`)
/// for the compact log, 0 for the text format, which has none.
#[inline]
pub(crate) fn now(st: &State) -> u64 {
    match st.log.format() {
        LogFormat::Compact => os::ticks(),
        LogFormat::Firedancer => 0,
    }
}

/// Logs a free of `ptr` at `ts` (from [`now`], read before the block
/// goes back to the inner allocator) with its stack (`id`, and the raw
/// `frames` for the text format; `t` as for [`alloc`]).
#[inline]
pub(crate) fn free(
    st: &State,
    t: Option<&ThreadState>,
    ts: u64,
    ptr: *mut u8,
    id: u32,
    frames: &[usize],
) {
    match st.log.format() {
        LogFormat::Compact => {
            let e = compact::free_event(ts, ptr as usize, stack_id(id));
            threads::push(st, t, &e);
        }
        LogFormat::Firedancer => st.log.write_text(ptr as usize, None, id, frames),
    }
}

#[cfg(all(test, unix, not(miri)))]
mod tests {
    use super::*;

    static WAITING_OUT: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
    static STARVED_OUT: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

    fn collect_starved(bytes: &[u8]) {
        STARVED_OUT.lock().unwrap().extend_from_slice(bytes);
    }

    /// Out of memory while a record is built, the log stops (as after a
    /// failed write) instead of aborting the program: nothing of the cut
    /// record is written, nor anything after it, which could name a stack
    /// the lost record defined.
    #[test]
    fn a_record_that_cannot_be_built_stops_the_log() {
        let stacks = StackTable::new();
        let write = |log: &Log, format| match format {
            LogFormat::Firedancer => log.write_text(0x10, Some((16, 8)), NO_STACK, &[]),
            LogFormat::Compact => log.write_chunk(&stacks, 1, &[0; compact::FREE_EVENT], 1),
        };
        for format in [LogFormat::Firedancer, LogFormat::Compact] {
            STARVED_OUT.lock().unwrap().clear();
            let log = Log::new(LogTarget::Callback(collect_starved), format);
            log.starve(true);
            write(&log, format);
            log.starve(false);
            write(&log, format);
            log.finish();
            assert!(STARVED_OUT.lock().unwrap().is_empty(), "{format:?}");
            // A log that has the memory writes the same events.
            let log = Log::new(LogTarget::Callback(collect_starved), format);
            write(&log, format);
            assert!(!STARVED_OUT.lock().unwrap().is_empty(), "{format:?}");
        }
    }

    static SCANNED_OUT: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

    fn collect_scanned(bytes: &[u8]) {
        SCANNED_OUT.lock().unwrap().extend_from_slice(bytes);
    }

    /// A leak scan's result goes into a compact log that has started, in
    /// records of at most 16 KiB that together list every block; not
    /// into one that has not started (no header yet) or has ended.
    #[test]
    fn a_leak_scan_is_written_in_whole_records_of_at_most_16_kib() {
        let blocks: Vec<Record> = (1..=5000)
            .map(|i| Record::new(16 * i, 8, 0xff, 1, 0))
            .collect();
        let kinds: Vec<LeakKind> = (0..5000)
            .map(|i| [LeakKind::DefinitelyLost, LeakKind::StillReachable][i % 2])
            .collect();
        let log = Log::new(LogTarget::Callback(collect_scanned), LogFormat::Compact);
        log.write_reachability(1, &blocks, &kinds);
        assert!(SCANNED_OUT.lock().unwrap().is_empty());
        let stacks = StackTable::new();
        log.write_chunk(&stacks, 1, &[0; compact::FREE_EVENT], 1);
        log.write_reachability(7, &blocks, &kinds);
        log.finish();
        log.write_reachability(8, &blocks, &kinds);
        let out = SCANNED_OUT.lock().unwrap().clone();
        // The module map (`M`) comes before the first chunk.
        let tags: Vec<u8> = (records(&out).iter())
            .map(|r| r.0)
            .filter(|&t| t != b'M')
            .collect();
        assert_eq!(tags, b"HERRRZ");
        // The entries, in order, with their class codes.
        let mut at = 12;
        let mut entries = Vec::new();
        while at < out.len() {
            let len = u32::from_le_bytes(out[at + 1..at + 5].try_into().unwrap()) as usize;
            if out[at] == b'R' {
                assert!(len <= 16 * 1024);
                let payload = &out[at + 5..at + 5 + len];
                assert_eq!(u64::from_le_bytes(payload[..8].try_into().unwrap()), 7);
                for e in payload[8..].chunks(compact::REACHABILITY_ENTRY) {
                    entries.push((u64::from_le_bytes(e[..8].try_into().unwrap()), e[8]));
                }
            }
            at += 5 + len;
        }
        let expected: Vec<(u64, u8)> = (1..=5000u64)
            .map(|i| (16 * i, [4, 1][i as usize % 2]))
            .collect();
        assert_eq!(entries, expected);
    }

    fn collect_waiting(bytes: &[u8]) {
        WAITING_OUT.lock().unwrap().extend_from_slice(bytes);
    }

    /// The tags of the records in a compact log, and each stack record's
    /// first frame.
    fn records(log: &[u8]) -> Vec<(u8, u64)> {
        let mut at = 12; // magic and version
        let mut out = Vec::new();
        while at < log.len() {
            let tag = log[at];
            let len = u32::from_le_bytes(log[at + 1..at + 5].try_into().unwrap()) as usize;
            let payload = &log[at + 5..at + 5 + len];
            let first = if tag == b'S' {
                u64::from_le_bytes(payload[6..14].try_into().unwrap())
            } else {
                0
            };
            out.push((tag, first));
            at += 5 + len;
        }
        out
    }

    /// A child forked before the text log's file was opened leaves it to
    /// its parent (opening it would empty what the parent writes there);
    /// the parent, or a process that did not fork, creates it at its first
    /// record.
    #[test]
    fn a_text_log_not_open_at_a_fork_is_the_parents() {
        let dir = crate::test_util::TempDir::new("forked");
        // SAFETY: `dir` is dropped after the logs that use the paths.
        let (child, parent) = unsafe { (dir.lend("child.log"), dir.lend("parent.log")) };
        let in_child = Log::new(LogTarget::Path(child), LogFormat::Firedancer);
        in_child.stop_in_child();
        in_child.write_text(0x10, Some((16, 8)), NO_STACK, &[]);
        assert!(!std::path::Path::new(child).exists());
        let in_parent = Log::new(LogTarget::Path(parent), LogFormat::Firedancer);
        in_parent.write_text(0x10, Some((16, 8)), NO_STACK, &[]);
        assert!(std::fs::read_to_string(parent)
            .unwrap()
            .starts_with("+++ ALLOC"));
        drop((in_child, in_parent));
    }

    /// A stack stored after a chunk's writer checked the module map (by
    /// another thread, in a library it just loaded) is not written by
    /// that writer, which cannot read the map: it waits for one holding
    /// the loader's lock, which writes the module record first.
    #[test]
    fn a_stack_outside_the_written_map_waits_for_the_loaders_lock() {
        let log = Log::new(LogTarget::Callback(collect_waiting), LogFormat::Compact);
        let stacks = StackTable::new();
        let write = |loader_locked| {
            ChunkWriter {
                inner: log.inner.lock(),
                stacks: &stacks,
                loader_locked,
            }
            .write(1, &[], 0)
        };
        write(true);
        let here = records as fn(&[u8]) -> Vec<(u8, u64)> as usize;
        let outside = 0x10;
        stacks.intern_frames(u64::MAX, &[here]);
        stacks.intern_frames(u64::MAX, &[outside, here]);
        write(false);
        let stacks_written = |log: &[u8]| -> Vec<u64> {
            records(log)
                .into_iter()
                .filter(|r| r.0 == b'S')
                .map(|r| r.1)
                .collect()
        };
        assert_eq!(stacks_written(&WAITING_OUT.lock().unwrap()), [here as u64]);
        write(true);
        assert_eq!(
            stacks_written(&WAITING_OUT.lock().unwrap()),
            [here as u64, outside as u64]
        );
    }

    static UNLOADED_OUT: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

    fn collect_unloaded(bytes: &[u8]) {
        UNLOADED_OUT.lock().unwrap().extend_from_slice(bytes);
    }

    /// After an object written in the map is unloaded, the stacks stored
    /// until then are written at once, under the map they were captured
    /// with, and its range is forgotten (code loaded there later gets its
    /// own record before its stacks); the ranges still loaded are kept.
    /// An unload of nothing written changes nothing. The text format's
    /// caches are emptied.
    #[test]
    fn an_unload_writes_the_stacks_so_far_and_forgets_the_objects_gone() {
        let log = Log::new(LogTarget::Callback(collect_unloaded), LogFormat::Compact);
        let stacks = StackTable::new();
        let here = records as fn(&[u8]) -> Vec<(u8, u64)> as usize;
        let written = || -> Vec<u64> {
            records(&UNLOADED_OUT.lock().unwrap())
                .into_iter()
                .filter(|r| r.0 == b'S')
                .map(|r| r.1)
                .collect()
        };
        log.write_chunk(&stacks, 1, &[], 0);
        let mapped = log.inner.lock().modules.len();
        assert!(mapped > 0);
        // Nothing written is gone: nothing to do.
        stacks.intern_frames(u64::MAX, &[here]);
        log.objects_unloaded(&stacks);
        assert!(written().is_empty());
        // An object written at a range where nothing is loaded now, as
        // after its `dlclose`.
        let gone = (0x1000, 0x2000);
        log.inner.lock().modules.push(gone);
        log.objects_unloaded(&stacks);
        assert_eq!(written(), [here as u64]);
        let modules = log.inner.lock().modules.clone();
        assert!(!modules.contains(&gone));
        assert_eq!(modules.len(), mapped);

        let text = Log::new(LogTarget::Callback(collect_unloaded), LogFormat::Firedancer);
        text.write_text(0x10, Some((16, 8)), 1, &[here]);
        let cached = |log: &Log| {
            let inner = log.inner.lock();
            text::emptied(&inner.lines, &inner.stack_lines)
        };
        assert_eq!(cached(&text), (false, false));
        text.objects_unloaded(&stacks);
        assert_eq!(cached(&text), (true, true));
    }

    static EXEC_OUT: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

    fn collect_exec(bytes: &[u8]) {
        EXEC_OUT.lock().unwrap().extend_from_slice(bytes);
    }

    /// The end written before an `exec` is taken back when the exec
    /// fails: the file is cut back to what it held before, and the log
    /// goes on; a chunk that came meanwhile (another thread's) waited,
    /// and is written after. A log that is not in a file (a callback
    /// here, a pipe elsewhere), whose end could not be taken back, is not
    /// ended for an `exec`.
    #[test]
    fn an_end_before_a_failed_exec_is_taken_back() {
        let dir = crate::test_util::TempDir::new("exec");
        // SAFETY: `dir` is dropped after the log that uses the path.
        let file = unsafe { dir.lend("exec.log") };
        let log = Log::new(LogTarget::Path(file), LogFormat::Compact);
        let stacks = StackTable::new();
        let chunk = |log: &Log, events: u64| {
            let bytes = vec![0; compact::FREE_EVENT * events as usize];
            log.write_chunk(&stacks, 1, &bytes, events);
        };
        let read = || std::fs::read(file).unwrap();
        let tags = |bytes: &[u8]| -> Vec<u8> { records(bytes).iter().map(|r| r.0).collect() };
        // (events, lost) of the end record that ends `bytes`.
        let end = |bytes: &[u8]| {
            let at = bytes.len() - 16;
            let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
            (word(at), word(at + 8))
        };
        chunk(&log, 1);
        let before = read();
        log.finish_for_exec();
        let ended = read();
        assert_eq!(tags(&ended).last(), Some(&b'Z'));
        assert_eq!(end(&ended), (1, 0));
        std::thread::scope(|s| {
            let waiting = s.spawn(|| chunk(&log, 2));
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!waiting.is_finished(), "the chunk waits for the exec");
            assert_eq!(read(), ended, "nothing after the end");
            log.resume_after_exec();
        });
        let resumed = read();
        assert_eq!(resumed[..before.len()], before[..]);
        // One chunk after what was there before (`records` skips the 12
        // bytes of a file's start).
        assert_eq!(tags(&resumed[before.len() - 12..]), [b'E']);
        // Two threads' `exec` calls at once: the end stays until both
        // have failed.
        log.finish_for_exec();
        log.finish_for_exec();
        let ended = read();
        log.resume_after_exec();
        assert_eq!(read(), ended, "one exec still under way");
        log.resume_after_exec();
        assert_eq!(read(), resumed);
        chunk(&log, 1);
        log.finish();
        let whole = read();
        assert_eq!(tags(&whole).iter().filter(|&&t| t == b'Z').count(), 1);
        assert_eq!(end(&whole), (4, 0));
        drop(log);

        let log = Log::new(LogTarget::Callback(collect_exec), LogFormat::Compact);
        chunk(&log, 1);
        log.finish_for_exec();
        assert!(!tags(&EXEC_OUT.lock().unwrap()).contains(&b'Z'));
        log.resume_after_exec();
        chunk(&log, 1);
        log.finish();
        assert_eq!(end(&EXEC_OUT.lock().unwrap()), (2, 0));
    }

    /// A child forked while another thread's `exec` had the log ended
    /// has no `exec` coming (it has only the forking thread): a chunk
    /// there does not wait for one.
    #[test]
    fn a_child_forked_during_an_exec_does_not_wait_for_it() {
        let dir = crate::test_util::TempDir::new("exec-fork");
        // SAFETY: `dir` is dropped after the log that uses the path.
        let log = Log::new(
            LogTarget::Path(unsafe { dir.lend("exec.log") }),
            LogFormat::Compact,
        );
        let stacks = StackTable::new();
        log.write_chunk(&stacks, 1, &[0; compact::FREE_EVENT], 1);
        log.finish_for_exec();
        log.stop_in_child();
        std::thread::scope(|s| {
            let writer = s.spawn(|| log.write_chunk(&stacks, 1, &[0; compact::FREE_EVENT], 1));
            // Generous: a new thread may wait seconds for a core under
            // an emulator on a loaded machine.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !writer.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let waited = !writer.is_finished();
            // Let a waiting writer go, so that the test ends either way.
            log.inner.lock().execs = 0;
            assert!(!waited, "the chunk waited for an exec that is not coming");
        });
    }

    #[test]
    #[cfg(all(unix, not(miri)))]
    fn log_files_are_private_and_never_someone_elses() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = crate::test_util::TempDir::new("logfile");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // A new file: 0600.
        let fresh = dir.join("fresh.log");
        drop(create_log_file(&fresh).unwrap());
        assert_eq!(mode(&fresh), 0o600);
        // An existing file of ours, world-readable and not empty: 0600, emptied.
        let old = dir.join("old.log");
        std::fs::write(&old, b"old run").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(create_log_file(&old).unwrap());
        assert_eq!((mode(&old), std::fs::read(&old).unwrap().len()), (0o600, 0));
        // A symbolic link, to a file or to nowhere: refused, target untouched.
        let target = dir.join("target.txt");
        std::fs::write(&target, b"keep").unwrap();
        for (link, to) in [
            ("link.log", target.as_path()),
            ("dangling.log", dir.join("none").as_path()),
        ] {
            let link = dir.join(link);
            std::os::unix::fs::symlink(to, &link).unwrap();
            assert!(create_log_file(&link).is_err());
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(!dir.join("none").exists());
        // A second name of a file of ours (a hard link): refused, neither
        // emptied nor made private.
        let linked = dir.join("linked.log");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::hard_link(&target, &linked).unwrap();
        assert!(create_log_file(&linked).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(mode(&target), 0o644);
        // A FIFO: refused at once, not waited on.
        let fifo = dir.join("fifo.log");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(create_log_file(&fifo).is_err());
        // Another user's file (only root can make one): refused, untouched.
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let theirs = dir.join("theirs.log");
            std::fs::write(&theirs, b"theirs").unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            assert!(create_log_file(&theirs).is_err());
            assert_eq!(std::fs::read(&theirs).unwrap(), b"theirs");
            assert_eq!(std::fs::metadata(&theirs).unwrap().uid(), 65534);
        }
    }
}
