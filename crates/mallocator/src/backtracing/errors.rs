//! Bad frees (double and invalid) as the tracker records them, with
//! their stacks as ids until a report symbolizes them.

use super::recent_frees::Freed;
use super::stacks::NO_STACK;
use super::state::State;
use super::{thread, ErrorKind};

/// A recorded bad free (stacks still as ids).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ErrorRecord {
    pub(crate) kind: ErrorKind,
    pub(crate) addr: usize,
    pub(crate) size: Option<usize>,
    pub(crate) thread: u64,
    pub(crate) stack: u32,
    pub(crate) alloc_stack: u32,
    pub(crate) first_free_stack: u32,
}

/// Bad frees kept for the report.
const MAX_ERRORS: usize = 4096;

/// Records a free of `addr`, which is not live: a double free when
/// `first` (from the recent-frees ring) says when it was freed, with
/// that free's stack in `first_frames`; else an invalid free.
#[cold]
pub(crate) fn record_bad_free(
    st: &State,
    addr: usize,
    frames: &[usize],
    first: Option<(Freed, usize)>,
    first_frames: &[usize],
) {
    let first_free_stack = match first {
        Some((_, n)) => st.stacks.intern_frames(st.epoch, &first_frames[..n]),
        None => NO_STACK,
    };
    let error = ErrorRecord {
        kind: if first.is_some() {
            ErrorKind::DoubleFree
        } else {
            ErrorKind::InvalidFree
        },
        addr,
        size: first.map(|(f, _)| f.size),
        thread: thread::thread_id(),
        stack: st.stacks.intern_frames(st.epoch, frames),
        alloc_stack: first.map_or(NO_STACK, |(f, _)| f.alloc_stack),
        first_free_stack,
    };
    let mut errors = st.errors.lock();
    errors.total += 1;
    if error.kind == ErrorKind::DoubleFree {
        errors.double_frees += 1;
    }
    if errors.kept.len() < MAX_ERRORS && errors.kept.try_reserve(1).is_ok() {
        errors.kept.push(error);
    }
}
