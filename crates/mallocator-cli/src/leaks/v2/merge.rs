//! The threads' event streams of a v2 log merged into one, in time order.
//!
//! Each thread appends its events a chunk at a time, so the chunks of
//! different threads are not in time order in the file (a thread that
//! allocates rarely flushes old events late). The merge follows one
//! cursor per thread through that thread's chunks, in file order, and
//! always takes the earliest next event: by timestamp, a free before an
//! allocation at the same timestamp (the tracker stamps a free before it
//! gives the block back and an allocation after it got the block, so a
//! block freed by one thread and handed to another is freed first), then
//! the earlier in the file. A thread's own events keep their order.
//!
//! Thread 0 stands for threads whose thread-local storage was already
//! gone: its chunks can come from different threads, so each of them is
//! a stream of its own.

use super::format::{event_ts, EVENT_ALLOC, EVENT_FREE};
use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::BinaryHeap;
use std::ops::Range;

/// The events of one chunk: a byte range of the log holding whole,
/// checked events.
pub type ChunkEvents = Range<usize>;

/// The chunks of each thread, in file order.
#[derive(Default)]
pub struct Streams {
    streams: Vec<Vec<ChunkEvents>>,
    /// Index in `streams` of each thread id met so far (0 excluded).
    by_thread: hashbrown::HashMap<u64, usize>,
}

impl Streams {
    /// Adds a chunk of `thread`'s events (empty chunks are dropped).
    pub fn push(&mut self, thread: u64, events: ChunkEvents) {
        if events.is_empty() {
            return;
        }
        if thread == 0 {
            self.streams.push(vec![events]);
            return;
        }
        let next = self.streams.len();
        let i = *self.by_thread.entry(thread).or_insert(next);
        if i == next {
            self.streams.push(Vec::new());
        }
        self.streams[i].push(events);
    }

    /// Number of chunks.
    pub fn chunks(&self) -> usize {
        self.streams.iter().map(Vec::len).sum()
    }

    /// Number of distinct threads (thread 0 counted once).
    pub fn threads(&self) -> usize {
        let zero = self.streams.len() - self.by_thread.len();
        self.by_thread.len() + usize::from(zero > 0)
    }
}

/// Length of the event whose tag is `tag` (checked before the merge).
#[inline]
fn len_of(tag: u8) -> usize {
    if tag == EVENT_ALLOC {
        super::format::ALLOC_LEN
    } else {
        debug_assert_eq!(tag, EVENT_FREE);
        super::format::FREE_LEN
    }
}

/// The merge order of the event at `pos`: timestamp, then frees first,
/// then file position (positions are below 2^63: a log is a slice).
#[inline]
fn key(data: &[u8], pos: usize) -> u128 {
    let ts = event_ts(&data[pos..]);
    let alloc = u128::from(data[pos] == EVENT_ALLOC);
    (u128::from(ts) << 64) | (alloc << 63) | pos as u128
}

/// A cursor through one stream.
struct Cursor<'s> {
    chunks: std::slice::Iter<'s, ChunkEvents>,
    pos: usize,
    end: usize,
}

impl Cursor<'_> {
    /// Moves past the event at `self.pos`; the position of the next one.
    #[inline]
    fn advance(&mut self, data: &[u8]) -> Option<usize> {
        self.pos += len_of(data[self.pos]);
        if self.pos < self.end {
            return Some(self.pos);
        }
        let next = self.chunks.next()?;
        (self.pos, self.end) = (next.start, next.end);
        Some(self.pos)
    }
}

/// Up to this many streams, the earliest is found by scanning them all
/// (a few comparisons without branches to mispredict, which is what a
/// merge of randomly interleaved threads pays for most); beyond it, a
/// binary heap.
const SCAN_STREAMS: usize = 8;
/// The key of a stream with no events left.
const DONE: u128 = u128::MAX;

/// Calls `emit` with the position in `data` of every event of `streams`,
/// in merge order (see the module docs). The chunks must hold whole
/// events with known tags, as the reader checked them.
pub fn merge(data: &[u8], streams: &Streams, emit: impl FnMut(usize)) {
    let (cursors, keys) = start(data, streams);
    if cursors.len() <= SCAN_STREAMS {
        merge_scan(data, cursors, keys, emit);
    } else {
        merge_heap(data, cursors, keys, emit);
    }
}

/// A cursor at the first event of each stream, and that event's key.
fn start<'s>(data: &[u8], streams: &'s Streams) -> (Vec<Cursor<'s>>, Vec<u128>) {
    let mut cursors: Vec<Cursor<'_>> = Vec::with_capacity(streams.streams.len());
    let mut keys = Vec::with_capacity(streams.streams.len());
    for chunks in &streams.streams {
        let mut iter = chunks.iter();
        let Some(first) = iter.next() else { continue };
        keys.push(key(data, first.start));
        cursors.push(Cursor {
            chunks: iter,
            pos: first.start,
            end: first.end,
        });
    }
    (cursors, keys)
}

/// [`merge`] over few streams: each event, a scan of every stream's next key.
fn merge_scan(
    data: &[u8],
    mut cursors: Vec<Cursor<'_>>,
    mut keys: Vec<u128>,
    mut emit: impl FnMut(usize),
) {
    loop {
        let (mut best, mut best_key) = (0, DONE);
        for (i, &k) in keys.iter().enumerate() {
            let earlier = k < best_key;
            best_key = if earlier { k } else { best_key };
            best = if earlier { i } else { best };
        }
        if best_key == DONE {
            return;
        }
        let cursor = &mut cursors[best];
        emit(cursor.pos);
        keys[best] = cursor.advance(data).map_or(DONE, |pos| key(data, pos));
    }
}

/// [`merge`] over many streams, with a binary heap of their next keys.
fn merge_heap(
    data: &[u8],
    mut cursors: Vec<Cursor<'_>>,
    keys: Vec<u128>,
    mut emit: impl FnMut(usize),
) {
    let mut heap: BinaryHeap<Reverse<(u128, u32)>> = keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| Reverse((k, i as u32)))
        .collect();
    while let Some(&Reverse((_, stream))) = heap.peek() {
        // The second-earliest stream is a child of the top; its key bounds
        // how long the top stream goes on.
        let bound = heap
            .as_slice()
            .get(1..)
            .and_then(|rest| rest.iter().take(2).max())
            .map(|&Reverse((k, _))| k);
        let cursor = &mut cursors[stream as usize];
        // Take this stream's events for as long as they come before every
        // other stream's next one: one comparison each, no heap work.
        let next = loop {
            emit(cursor.pos);
            let Some(pos) = cursor.advance(data) else {
                break None;
            };
            let k = key(data, pos);
            if bound.is_some_and(|b| k > b) {
                break Some(k);
            }
        };
        match (next, heap.peek_mut()) {
            (Some(k), Some(mut top)) => top.0 .0 = k,
            (None, Some(top)) => {
                PeekMut::pop(top);
            }
            (_, None) => unreachable!("the heap held this stream"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log body of events (alloc if `addr` is odd, free if even), with
    /// each chunk's range; events are `(ts, addr)`.
    fn chunks(spec: &[(u64, &[(u64, u64)])]) -> (Vec<u8>, Streams, Vec<usize>) {
        let mut data = vec![0u8; 3];
        let mut streams = Streams::default();
        let mut order = Vec::new();
        for (thread, events) in spec {
            let start = data.len();
            for &(ts, addr) in *events {
                order.push(data.len());
                if addr % 2 == 1 {
                    data.push(EVENT_ALLOC);
                    data.extend_from_slice(&ts.to_le_bytes());
                    data.extend_from_slice(&addr.to_le_bytes());
                    data.extend_from_slice(&[0; 8 + 1 + 4]);
                } else {
                    data.push(EVENT_FREE);
                    data.extend_from_slice(&ts.to_le_bytes());
                    data.extend_from_slice(&addr.to_le_bytes());
                    data.extend_from_slice(&[0; 4]);
                }
            }
            streams.push(*thread, start..data.len());
        }
        (data, streams, order)
    }

    fn merged(spec: &[(u64, &[(u64, u64)])]) -> Vec<(u64, u64)> {
        let (data, streams, _) = chunks(spec);
        let mut out = Vec::new();
        merge(&data, &streams, |pos| {
            let event = &data[pos..pos + len_of(data[pos])];
            out.push((event_ts(event), super::super::format::event_addr(event)));
        });
        out
    }

    #[test]
    fn threads_interleave_by_timestamp() {
        let out = merged(&[
            (1, &[(1, 1), (4, 3), (9, 5)]),
            (2, &[(2, 7), (3, 9)]),
            (1, &[(10, 11)]),
            (2, &[(5, 13)]),
        ]);
        let ts: Vec<u64> = out.iter().map(|e| e.0).collect();
        assert_eq!(ts, vec![1, 2, 3, 4, 5, 9, 10]);
    }

    #[test]
    fn frees_go_before_allocations_at_equal_timestamps() {
        // Thread 2 allocates 0x11 at ts 5; thread 1 freed it at ts 5 too,
        // in a chunk written later.
        let out = merged(&[(2, &[(5, 0x11)]), (1, &[(5, 0x10)])]);
        assert_eq!(out, vec![(5, 0x10), (5, 0x11)]);
    }

    #[test]
    fn a_threads_own_order_is_kept_even_against_its_timestamps() {
        // Not non-decreasing (a damaged clock): still in thread order.
        let out = merged(&[(1, &[(9, 1), (2, 3)]), (2, &[(5, 5)])]);
        assert_eq!(out, vec![(5, 5), (9, 1), (2, 3)]);
    }

    #[test]
    fn thread_zero_chunks_are_separate_streams() {
        let out = merged(&[(0, &[(8, 1)]), (0, &[(3, 3)]), (4, &[(5, 5)])]);
        assert_eq!(out, vec![(3, 3), (5, 5), (8, 1)]);
        let (_, streams, _) = chunks(&[(0, &[(8, 1)]), (0, &[(3, 3)]), (4, &[(5, 5)])]);
        assert_eq!((streams.chunks(), streams.threads()), (3, 2));
    }

    #[test]
    fn equal_keys_follow_the_file() {
        let (data, streams, order) =
            chunks(&[(1, &[(5, 1), (5, 3)]), (2, &[(5, 5)]), (3, &[(5, 7)])]);
        let mut got = Vec::new();
        merge(&data, &streams, |pos| got.push(pos));
        assert_eq!(got, order);
    }

    /// A thread id and its events `(ts, addr)`.
    type Chunk = (u64, Vec<(u64, u64)>);

    proptest::proptest! {
        /// Any threads' streams cut into chunks and written in any order
        /// that keeps each thread's chunks in its own order: every event
        /// comes out once, timestamps never go back, and each thread's
        /// events keep their order.
        #[test]
        fn merge_is_a_sorted_interleaving(
            threads in proptest::collection::vec(
                proptest::collection::vec((0u64..4, 0u64..4), 0..8), 1..14),
            split in 1usize..4,
            picks in proptest::collection::vec(0usize..16, 40),
        ) {
            let mut pending: Vec<std::collections::VecDeque<Chunk>> = threads
                .iter()
                .enumerate()
                .map(|(t, evs)| {
                    let mut ts = 0;
                    let evs: Vec<(u64, u64)> =
                        evs.iter().map(|&(dt, a)| { ts += dt; (ts, a) }).collect();
                    evs.chunks(split).map(|c| (t as u64 + 1, c.to_vec())).collect()
                })
                .collect();
            let mut file = Vec::new();
            let mut picks = picks.into_iter().cycle();
            while pending.iter().any(|p| !p.is_empty()) {
                let live: Vec<usize> = (0..pending.len()).filter(|&t| !pending[t].is_empty()).collect();
                let t = live[picks.next().unwrap_or(0) % live.len()];
                file.push(pending[t].pop_front().unwrap());
            }
            let spec: Vec<(u64, &[(u64, u64)])> =
                file.iter().map(|(t, e)| (*t, e.as_slice())).collect();
            let (data, streams, order) = chunks(&spec);
            let thread_of: std::collections::HashMap<usize, u64> = order
                .iter()
                .zip(spec.iter().flat_map(|(t, e)| e.iter().map(move |_| *t)))
                .map(|(&pos, t)| (pos, t))
                .collect();
            let mut got = Vec::new();
            merge(&data, &streams, |pos| got.push(pos));
            // Both ways of finding the earliest stream give one order.
            for heap in [false, true] {
                let (cursors, keys) = start(&data, &streams);
                let mut other = Vec::new();
                if heap {
                    merge_heap(&data, cursors, keys, |pos| other.push(pos));
                } else {
                    merge_scan(&data, cursors, keys, |pos| other.push(pos));
                }
                proptest::prop_assert_eq!(&other, &got);
            }
            let mut sorted = got.clone();
            sorted.sort_unstable();
            proptest::prop_assert_eq!(sorted, order);
            let ts: Vec<u64> = got.iter().map(|&p| event_ts(&data[p..])).collect();
            proptest::prop_assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{:?}", ts);
            for t in 1..=threads.len() as u64 {
                let mine: Vec<usize> = got.iter().copied().filter(|p| thread_of[p] == t).collect();
                proptest::prop_assert!(mine.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
