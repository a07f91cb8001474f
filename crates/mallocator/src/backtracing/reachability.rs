//! Which never-freed blocks the program can still reach, classified the
//! way Valgrind's memcheck and LeakSanitizer do: the program's roots
//! (writable data of every loaded object, the current thread's stack,
//! registers and thread-local storage) are scanned for words that point
//! into a live block, and so, transitively, are the blocks found.
//!
//! * **still reachable**: a chain of pointers to the block's start leads
//!   to it from a root;
//! * **possibly lost**: only chains with a pointer into its middle do;
//! * **indirectly lost**: no chain from a root, but a pointer from
//!   another unreachable block (the rest of a lost list or tree);
//! * **definitely lost**: nothing points to it at all (the head of what
//!   was lost), or only blocks it points to itself (a lost cycle's first
//!   block, as memcheck counts it).
//!
//! This file is the algorithm alone, over blocks and a way to read words:
//! the memory comes from the caller (`os/roots.rs` for the roots, the blocks
//! themselves), so it runs under Miri on made-up memory. What it cannot
//! see: pointers hidden by arithmetic or XOR tricks, other threads'
//! stacks and registers (threads still running at exit), and memory the
//! tracker does not know (blocks of another allocator, `mmap` regions);
//! a block referenced only from there is reported lost.

use serde::Serialize;

use super::sys_vec::{sys_vec, SysVec};

/// How reachable a never-freed block is at the moment of the report.
///
/// ```
/// use mallocator::backtracing::LeakKind;
/// assert!(LeakKind::DefinitelyLost.is_lost());
/// assert!(!LeakKind::StillReachable.is_lost());
/// assert_eq!(LeakKind::IndirectlyLost.as_str(), "indirectly_lost");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakKind {
    /// No pointer to the block anywhere the scan looked.
    DefinitelyLost,
    /// Pointed to only from other unreachable blocks.
    IndirectlyLost,
    /// Reachable only through a pointer into the middle of a block.
    PossiblyLost,
    /// Reachable from the roots through pointers to blocks' starts.
    StillReachable,
}

impl LeakKind {
    /// The name used in reports (`definitely_lost`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            LeakKind::DefinitelyLost => "definitely_lost",
            LeakKind::IndirectlyLost => "indirectly_lost",
            LeakKind::PossiblyLost => "possibly_lost",
            LeakKind::StillReachable => "still_reachable",
        }
    }

    /// Definitely or indirectly lost: memory the program can no longer
    /// free (what `MALLOCATOR_LEAKS_EXITCODE` fails on).
    pub fn is_lost(self) -> bool {
        matches!(self, LeakKind::DefinitelyLost | LeakKind::IndirectlyLost)
    }
}

/// A block's state during the scan. The first three only ever rise
/// (`Unreached < Possibly < Reachable`); `Indirect` is set on unreached
/// blocks in the last phase.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mark {
    Unreached,
    Possibly,
    Reachable,
    Indirect,
}

/// The block `word` points into: its index, and whether `word` is its
/// start. `blocks` is sorted by address, without overlaps.
fn block_of(blocks: &[(usize, usize)], word: usize) -> Option<(usize, bool)> {
    let i = blocks.partition_point(|&(a, _)| a <= word).checked_sub(1)?;
    let (addr, size) = blocks[i];
    (word == addr || word - addr < size).then_some((i, word == addr))
}

/// Calls its argument with every word of the roots.
pub(crate) type Roots<'a> = dyn FnMut(&mut dyn FnMut(usize)) + 'a;
/// `words(addr, size, f)` calls `f` with every aligned word of a block.
pub(crate) type Words<'a> = dyn FnMut(usize, usize, &mut dyn FnMut(usize)) + 'a;

/// Classifies `blocks` (`(address, size)`, sorted by address, not
/// overlapping). `roots` calls its argument with every word of the roots;
/// `words(addr, size, f)` calls `f` with every aligned word of the block
/// at `addr`. `None` when out of memory.
///
/// Its memory comes from the C library ([`SysVec`]), reserved before the
/// scan: the tracker runs it while holding every live-table lock (so
/// that no block is freed under the scan), when an allocation through the
/// tracker would wait for those locks.
pub(crate) fn classify(
    blocks: &[(usize, usize)],
    roots: &mut Roots<'_>,
    words: &mut Words<'_>,
) -> Option<SysVec<LeakKind>> {
    let n = blocks.len();
    let mut mark: SysVec<Mark> = sys_vec();
    mark.try_reserve_exact(n).ok()?;
    mark.resize(n, Mark::Unreached);
    // A block is queued at most twice while the roots' reach is followed
    // (it rises at most twice), and once in the last phase.
    let mut work: SysVec<usize> = sys_vec();
    work.try_reserve_exact(2 * n + 1).ok()?;
    // Raises block `i` to `to`; queued when it rose.
    let raise = |mark: &mut SysVec<Mark>, work: &mut SysVec<usize>, i: usize, to: Mark| {
        if mark[i] < to {
            mark[i] = to;
            work.push(i);
        }
    };
    roots(&mut |w| {
        if let Some((i, start)) = block_of(blocks, w) {
            let to = if start {
                Mark::Reachable
            } else {
                Mark::Possibly
            };
            raise(&mut mark, &mut work, i, to);
        }
    });
    while let Some(i) = work.pop() {
        let from = mark[i];
        words(blocks[i].0, blocks[i].1, &mut |w| {
            if let Some((j, start)) = block_of(blocks, w) {
                let to = if start && from == Mark::Reachable {
                    Mark::Reachable
                } else {
                    Mark::Possibly
                };
                raise(&mut mark, &mut work, j, to);
            }
        });
    }
    // What no root reaches: each unreached block, in address order, not
    // already found from an earlier one, leads a search that marks every
    // other unreached block it reaches (through any pointer) indirect.
    for leader in 0..blocks.len() {
        if mark[leader] != Mark::Unreached {
            continue;
        }
        work.push(leader);
        while let Some(i) = work.pop() {
            words(blocks[i].0, blocks[i].1, &mut |w| {
                if let Some((j, _)) = block_of(blocks, w) {
                    if j != leader && mark[j] == Mark::Unreached {
                        mark[j] = Mark::Indirect;
                        work.push(j);
                    }
                }
            });
        }
    }
    let mut kinds: SysVec<LeakKind> = sys_vec();
    kinds.try_reserve_exact(n).ok()?;
    kinds.extend(mark.iter().map(|m| match m {
        Mark::Unreached => LeakKind::DefinitelyLost,
        Mark::Indirect => LeakKind::IndirectlyLost,
        Mark::Possibly => LeakKind::PossiblyLost,
        Mark::Reachable => LeakKind::StillReachable,
    }));
    Some(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Made-up memory: blocks at 0x1000 * (i + 1), each with its words.
    struct Heap {
        blocks: Vec<(usize, usize)>,
        memory: HashMap<usize, Vec<usize>>,
    }

    impl Heap {
        fn new(contents: &[&[usize]]) -> Heap {
            let mut h = Heap {
                blocks: Vec::new(),
                memory: HashMap::new(),
            };
            for (i, words) in contents.iter().enumerate() {
                let addr = 0x1000 * (i + 1);
                h.blocks.push((addr, 8 * words.len().max(1)));
                h.memory.insert(addr, words.to_vec());
            }
            h
        }

        fn classify(&self, roots: &[usize]) -> Vec<LeakKind> {
            classify(
                &self.blocks,
                &mut |f| roots.iter().for_each(|&w| f(w)),
                &mut |addr, _, f| self.memory[&addr].iter().for_each(|&w| f(w)),
            )
            .unwrap()
            .to_vec()
        }
    }

    /// Block `i`'s address (plus `offset`).
    fn at(i: usize, offset: usize) -> usize {
        0x1000 * (i + 1) + offset
    }

    use LeakKind::*;

    #[test]
    fn a_lost_list_is_one_definite_head_and_an_indirect_tail() {
        // 0 -> 1 -> 2, nothing points to 0.
        let h = Heap::new(&[&[at(1, 0)], &[at(2, 0)], &[0]]);
        assert_eq!(
            h.classify(&[]),
            [DefinitelyLost, IndirectlyLost, IndirectlyLost]
        );
        // The same list held by a root: all reachable.
        assert_eq!(h.classify(&[at(0, 0)]), [StillReachable; 3]);
        // Held by a pointer into the head's middle: possibly lost, and the
        // rest too (every chain has an interior pointer).
        let h = Heap::new(&[&[at(1, 0), 0], &[at(2, 0)], &[0]]);
        assert_eq!(h.classify(&[at(0, 8)]), [PossiblyLost; 3]);
    }

    #[test]
    fn a_start_chain_wins_over_an_interior_one() {
        // Root points into 0's middle; 0 points to 1's start; another
        // root points to 1's start: 1 is reachable, 0 possibly lost.
        let h = Heap::new(&[&[at(1, 0), 0], &[0]]);
        assert_eq!(
            h.classify(&[at(0, 8), at(1, 0)]),
            [PossiblyLost, StillReachable]
        );
        // Found possibly first, then reachable: raised, and its children with it.
        let h = Heap::new(&[&[at(2, 0)], &[at(0, 0)], &[0]]);
        assert_eq!(h.classify(&[at(0, 4), at(1, 0)]), [StillReachable; 3]);
    }

    #[test]
    fn lost_cycles_and_trees_count_as_memcheck_counts_them() {
        // A cycle 0 <-> 1: the first is definitely lost, the other indirectly.
        let h = Heap::new(&[&[at(1, 0)], &[at(0, 0)]]);
        assert_eq!(h.classify(&[]), [DefinitelyLost, IndirectlyLost]);
        // A self-pointing block is definitely lost.
        let h = Heap::new(&[&[at(0, 0)]]);
        assert_eq!(h.classify(&[]), [DefinitelyLost]);
        // Block 2 points to block 0, which leads 0 -> 1: 0 was a leader
        // first, then found from 2, so only 2 is definitely lost.
        let h = Heap::new(&[&[at(1, 0)], &[0], &[at(0, 0)]]);
        assert_eq!(
            h.classify(&[]),
            [IndirectlyLost, IndirectlyLost, DefinitelyLost]
        );
    }

    #[test]
    fn words_outside_every_block_are_ignored() {
        let h = Heap::new(&[&[0, 7, usize::MAX], &[at(0, 16) + 8]]);
        // One past the end of block 0 (it is 24 bytes) is not inside it.
        assert_eq!(
            h.classify(&[at(0, 24), 0x10, usize::MAX]),
            [DefinitelyLost, DefinitelyLost]
        );
        // A zero-size block is reached by a pointer to its address.
        let blocks = [(0x1000, 0), (0x2000, 8)];
        let kinds = classify(&blocks, &mut |f| f(0x1000), &mut |_, _, _| {}).unwrap();
        assert_eq!(*kinds, [StillReachable, DefinitelyLost]);
    }

    #[test]
    fn no_block_no_work() {
        let kinds = classify(&[], &mut |f| f(0x1000), &mut |_, _, _| unreachable!()).unwrap();
        assert!(kinds.is_empty());
    }
}
