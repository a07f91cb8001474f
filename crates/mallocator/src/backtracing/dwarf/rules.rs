//! The unwind rule of each return address, learned from framehop once
//! and then applied without it: a table lookup and two or three bounds-
//! checked loads per frame, where a step through framehop costs about
//! ten times that (its iterator, its own cache, its rule interpreter).
//!
//! Every rule framehop derives for x86-64 (from call-frame information,
//! or its frame-pointer fallback) is one of a few linear forms in the
//! stack pointer `sp` and frame pointer `bp` of the frame; the caller's
//! return address always lies just below the caller's stack pointer.
//! [`Rule`] holds those forms. A rule is learned by one *probe*: framehop
//! unwinds the frame from made-up registers ([`PROBE_SP`], [`PROBE_BP`])
//! over a made-up stack whose every word holds its own address, tagged
//! ([`TAG`]); the registers and return address it produces show which
//! form and offsets it applied ([`decode`]); the table keeps it as a
//! [`Step`], one shape for every form. A result of any other shape
//! (a rule framehop could not cache either, such as a signal frame's,
//! which reads the stack pointer from memory) is not learned: such
//! frames go through framehop every time.

use core::sync::atomic::{fence, AtomicU64, Ordering};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{FrameAddress, Unwinder as _};

use super::Policy;

/// How the caller's registers follow from a frame's `sp` and `bp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rule {
    /// The outermost frame: there is no caller.
    End,
    /// The caller's stack pointer is `sp + 8 * cfa` (the return address
    /// is the word below it); its frame pointer is `bp` (`None`) or the
    /// word at `sp + 8 * bp`.
    Sp { cfa: u16, bp: Option<i16> },
    /// A frame record at `bp`: the caller's frame pointer there, the
    /// return address above it, the caller's stack pointer above that.
    Fp,
}

/// The probe's made-up stack and frame pointers: far apart, so that an
/// address read tells which one it was computed from.
const PROBE_SP: u64 = 0x1000_0000;
const PROBE_BP: u64 = 0x4000_0000;
/// Marks the words of the probe's made-up stack: each holds its address
/// with this tag (no real stack or code address has these bits).
const TAG: u64 = 0x5a00_0000_0000_0000;

/// The rule framehop applies to `frame` (a return address, or the
/// instruction pointer of the innermost frame), or `None` when it has
/// none of [`Rule`]'s forms (see the module docs).
pub(super) fn probe(
    unwinder: &UnwinderX86_64<Vec<u8>, Policy>,
    cache: &mut CacheX86_64<Policy>,
    frame: FrameAddress,
) -> Option<Rule> {
    let mut regs = UnwindRegsX86_64::new(frame.address(), PROBE_SP, PROBE_BP);
    let mut made_up = |addr: u64| Ok(TAG | addr);
    match unwinder.unwind_frame(frame, &mut regs, cache, &mut made_up) {
        Ok(None) => Some(Rule::End),
        Ok(Some(ret)) => decode(ret, regs.sp(), regs.bp()),
        Err(_) => None,
    }
}

/// The rule that turned the probe's registers into return address `ret`,
/// stack pointer `sp` and frame pointer `bp`, if it has one of
/// [`Rule`]'s forms.
fn decode(ret: u64, sp: u64, bp: u64) -> Option<Rule> {
    // The return address must be a word of the made-up stack: its address.
    if ret & TAG != TAG {
        return None;
    }
    let ret_at = ret & !TAG;
    if sp == PROBE_BP + 16 && ret_at == PROBE_BP + 8 && bp == TAG | PROBE_BP {
        return Some(Rule::Fp);
    }
    let grown = sp.checked_sub(PROBE_SP)?;
    if grown == 0 || grown % 8 != 0 || ret_at != sp - 8 {
        return None;
    }
    let cfa = u16::try_from(grown / 8).ok()?;
    let bp = if bp == PROBE_BP {
        None
    } else if bp & TAG == TAG {
        let at = ((bp & !TAG) as i64).checked_sub(PROBE_SP as i64)?;
        if at % 8 != 0 {
            return None;
        }
        Some(i16::try_from(at / 8).ok()?)
    } else {
        return None;
    };
    Some(Rule::Sp { cfa, bp })
}

/// A [`Rule`] as the table stores and [`apply`] applies it: the caller's
/// stack pointer is a base register (`sp` or `bp`) plus an offset, the
/// return address is the word below it, and the caller's frame pointer
/// is `bp` or a word at a fixed offset from the caller's stack pointer.
/// One shape for every form, so that a frame costs a few arithmetic
/// steps and no match over the forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Step {
    /// The offset in bytes from the base register to the caller's stack
    /// pointer (a multiple of 8; 0 for [`Rule::End`]), with the flags
    /// [`FROM_BP`], [`BP_SAVED`] and [`KNOWN`] in its low three bits.
    cfa: u32,
    /// Where the caller's frame pointer is saved, in bytes from the
    /// caller's stack pointer (when [`BP_SAVED`]).
    bp_at: i32,
}

/// [`Step::cfa`]'s flags: the base register is `bp` (else `sp`); the
/// caller's frame pointer is read from the stack (else it is `bp`); the
/// return address lies in an object the unwinder knows.
const FROM_BP: u32 = 1;
const BP_SAVED: u32 = 2;
const KNOWN: u32 = 4;

impl Step {
    /// `rule` in applied form, for a return address that lies in a known
    /// object when `known`.
    pub(super) fn new(rule: Rule, known: bool) -> Step {
        let known = if known { KNOWN } else { 0 };
        match rule {
            Rule::End => Step {
                cfa: known,
                bp_at: 0,
            },
            // The record at `bp` is the caller's frame pointer, then the
            // return address; the caller's stack pointer is above both.
            Rule::Fp => Step {
                cfa: 16 | FROM_BP | BP_SAVED | known,
                bp_at: -16,
            },
            Rule::Sp { cfa, bp } => Step {
                cfa: (8 * u32::from(cfa)) | known | if bp.is_some() { BP_SAVED } else { 0 },
                // Saved at `sp + 8 * at`, the caller's stack pointer being
                // `sp + 8 * cfa`.
                bp_at: bp.map_or(0, |at| 8 * (i32::from(at) - i32::from(cfa))),
            },
        }
    }

    /// Whether the return address lies in an object the unwinder knows.
    pub(super) fn known(self) -> bool {
        self.cfa & KNOWN != 0
    }

    /// The step as one word, for a slot of [`Rules`].
    fn pack(self) -> u64 {
        u64::from(self.cfa) | u64::from(self.bp_at as u32) << 32
    }

    fn unpack(word: u64) -> Step {
        Step {
            cfa: word as u32,
            bp_at: (word >> 32) as u32 as i32,
        }
    }
}

/// Applies `step` to a frame's `sp` and `bp`, reading the stack through
/// `read` (which checks every address): the caller's return address
/// (`None` at the end of the stack), with `sp` and `bp` now the caller's.
/// `Err` when a read is refused (`sp` and `bp` are then unchanged).
#[inline(always)]
pub(super) fn apply(
    step: Step,
    sp: &mut u64,
    bp: &mut u64,
    read: &mut impl FnMut(u64) -> Result<u64, ()>,
) -> Result<Option<u64>, ()> {
    let offset = u64::from(step.cfa & !7);
    if offset == 0 {
        return Ok(None);
    }
    let base = if step.cfa & FROM_BP != 0 { *bp } else { *sp };
    let caller_sp = base.wrapping_add(offset);
    let ret = read(caller_sp.wrapping_sub(8))?;
    if step.cfa & BP_SAVED != 0 {
        *bp = read(caller_sp.wrapping_add_signed(i64::from(step.bp_at)))?;
    }
    *sp = caller_sp;
    Ok(Some(ret))
}

/// Learned steps by address (a return address, or the instruction
/// pointer of the innermost frame): two-way set-associative, each address
/// hashed to a pair of neighbouring slots (a [`Pair`], one cache line).
/// A new address takes the pair's first slot, and the address there moves
/// to the second, forgetting the one before it. With one slot per
/// address, two return addresses of one stack that hashed alike took each
/// other's slot on every walk, and that stack never walked without the
/// lock (a layout of the test binary under ThreadSanitizer met that).
///
/// **Read without a lock; written only under the unwinder's lock**, as a
/// sequence lock over the whole table: a writer makes `generation` odd,
/// writes, and makes it even again; a reader takes what it read only when
/// `generation` was the same even number before its first read
/// ([`begin_read`](Self::begin_read)) and after its last
/// ([`unchanged_since`](Self::unchanged_since)). Writes are rare (a
/// return address seen for the first time, a rescan), so a walk almost
/// never reads twice; a reader that raced one reads under the lock.
/// Whatever a racing reader read is only offsets, and every stack read
/// it made was checked (invariant 1 in the module docs of `dwarf`).
pub(super) struct Rules {
    generation: AtomicU64,
    pairs: [Pair; SLOTS / WAYS],
}

/// The slots one address may take, in one cache line.
#[repr(align(32))]
struct Pair([Slot; WAYS]);

/// One slot: an address (0 when empty: no return address is 0) and its
/// packed [`Step`].
struct Slot {
    at: AtomicU64,
    step: AtomicU64,
}

/// Slots in [`Rules`] (a power of two): about ten times the distinct
/// return addresses on the stacks of a large program's allocations.
const SLOTS: usize = 1 << 14;
/// Slots an address may take: a pair, next to each other.
const WAYS: usize = 2;

impl Rules {
    /// An empty table.
    pub(super) const fn new() -> Rules {
        Rules {
            generation: AtomicU64::new(0),
            pairs: [const {
                Pair(
                    [const {
                        Slot {
                            at: AtomicU64::new(0),
                            step: AtomicU64::new(0),
                        }
                    }; WAYS],
                )
            }; SLOTS / WAYS],
        }
    }

    /// The pair of slots `at` may take.
    fn pair(&self, at: u64) -> &[Slot; WAYS] {
        let bits = (SLOTS / WAYS).trailing_zeros();
        &self.pairs[(at.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize].0
    }

    /// Starts a read without the lock: the generation to check with
    /// [`unchanged_since`](Self::unchanged_since), or `None` while a write
    /// is under way.
    #[inline(always)]
    pub(super) fn begin_read(&self) -> Option<u64> {
        let generation = self.generation.load(Ordering::Acquire);
        (generation % 2 == 0).then_some(generation)
    }

    /// Whether the table did not change since [`begin_read`](Self::begin_read)
    /// gave `generation`: every step read in between belongs to its address.
    #[inline(always)]
    pub(super) fn unchanged_since(&self, generation: u64) -> bool {
        fence(Ordering::Acquire);
        self.generation.load(Ordering::Relaxed) == generation
    }

    /// The step learned for address `at`, if learned (a reader without
    /// the lock checks it with [`unchanged_since`](Self::unchanged_since)).
    #[inline(always)]
    pub(super) fn get(&self, at: u64) -> Option<Step> {
        let slot = self
            .pair(at)
            .iter()
            .find(|slot| slot.at.load(Ordering::Relaxed) == at)?;
        Some(Step::unpack(slot.step.load(Ordering::Relaxed)))
    }

    /// Runs the write `f` inside the sequence lock. Only under the
    /// unwinder's lock (one writer at a time).
    fn write(&self, f: impl FnOnce()) {
        let generation = self.generation.load(Ordering::Relaxed);
        self.generation.store(generation + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        f();
        self.generation.store(generation + 2, Ordering::Release);
    }

    /// Learns `step` for address `at`. Only under the unwinder's lock.
    pub(super) fn insert(&self, at: u64, step: Step) {
        let pair = self.pair(at);
        let [first, second] = pair;
        self.write(|| {
            let known = pair
                .iter()
                .find(|slot| slot.at.load(Ordering::Relaxed) == at);
            let slot = known.unwrap_or_else(|| {
                // The newest first: the first slot's address moves on.
                second
                    .at
                    .store(first.at.load(Ordering::Relaxed), Ordering::Relaxed);
                second
                    .step
                    .store(first.step.load(Ordering::Relaxed), Ordering::Relaxed);
                first
            });
            slot.at.store(at, Ordering::Relaxed);
            slot.step.store(step.pack(), Ordering::Relaxed);
        });
    }

    /// Forgets every step (the loaded objects changed). Only under the
    /// unwinder's lock.
    pub(super) fn clear(&self) {
        self.write(|| {
            for slot in self.pairs.iter().flat_map(|pair| &pair.0) {
                slot.at.store(0, Ordering::Relaxed);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What framehop's probe gives for each form, decoded back.
    #[test]
    fn every_form_decodes_and_nothing_else_does() {
        let word = |at: u64| TAG | at;
        // sp + 8 * 3, return address below it, bp kept.
        let sp = PROBE_SP + 24;
        assert_eq!(
            decode(word(sp - 8), sp, PROBE_BP),
            Some(Rule::Sp { cfa: 3, bp: None })
        );
        // ... bp restored from sp + 8.
        assert_eq!(
            decode(word(sp - 8), sp, word(PROBE_SP + 8)),
            Some(Rule::Sp {
                cfa: 3,
                bp: Some(1)
            })
        );
        // The frame record at bp.
        assert_eq!(
            decode(word(PROBE_BP + 8), PROBE_BP + 16, word(PROBE_BP)),
            Some(Rule::Fp)
        );
        // Not these: a return address that is no stack word, one not
        // below the caller's stack pointer, a stack pointer read from
        // memory (a signal frame), one that did not move or moved by a
        // part of a word, a frame pointer from nowhere.
        assert_eq!(decode(0x40_1000, sp, PROBE_BP), None);
        assert_eq!(decode(word(sp - 16), sp, PROBE_BP), None);
        assert_eq!(decode(word(sp - 8), word(PROBE_SP + 64), PROBE_BP), None);
        assert_eq!(decode(word(PROBE_SP - 8), PROBE_SP, PROBE_BP), None);
        assert_eq!(decode(word(sp - 4), sp + 4, PROBE_BP), None);
        assert_eq!(decode(word(sp - 8), sp, 0x1234), None);
        assert_eq!(decode(word(sp - 8), sp, word(PROBE_SP + 4)), None);
    }

    /// The forms applied to a stack of known words, through a reader
    /// that refuses what lies outside it.
    #[test]
    fn rules_apply_as_framehop_would() {
        let base = 0x7000u64;
        let stack: Vec<u64> = (0..16).map(|i| 0xa000 + i).collect();
        let mut read = |addr: u64| {
            let i = addr.checked_sub(base).ok_or(())? / 8;
            stack.get(i as usize).copied().ok_or(())
        };
        let step = |rule| Step::new(rule, true);
        // (rule, bp before, return address, sp and bp after), each from
        // sp = base.
        let cases = [
            (
                Rule::Sp {
                    cfa: 2,
                    bp: Some(0),
                },
                base + 64,
                0xa001,
                (base + 16, 0xa000),
            ),
            // bp kept.
            (
                Rule::Sp { cfa: 3, bp: None },
                base + 64,
                0xa002,
                (base + 24, base + 64),
            ),
            // bp saved above the frame's own stack pointer.
            (
                Rule::Sp {
                    cfa: 4,
                    bp: Some(2),
                },
                base + 64,
                0xa003,
                (base + 32, 0xa002),
            ),
            (Rule::Fp, base + 32, 0xa005, (base + 48, 0xa004)),
        ];
        for (rule, bp_before, ret, after) in cases {
            let (mut sp, mut bp) = (base, bp_before);
            let got = apply(step(rule), &mut sp, &mut bp, &mut read);
            assert_eq!(got, Ok(Some(ret)), "{rule:?}");
            assert_eq!((sp, bp), after, "{rule:?}");
        }
        let (mut sp, mut bp) = (base + 48, 0xa004);
        assert_eq!(
            apply(step(Rule::End), &mut sp, &mut bp, &mut read),
            Ok(None)
        );
        // A frame pointer off the stack: refused, registers unchanged.
        let (mut sp, mut bp) = (base, 0x10);
        assert_eq!(apply(step(Rule::Fp), &mut sp, &mut bp, &mut read), Err(()));
        assert_eq!((sp, bp), (base, 0x10));
        // A saved frame pointer the reader refuses: unchanged too.
        let (mut sp, mut bp) = (base + 8 * 14, base);
        let rule = Rule::Sp {
            cfa: 1,
            bp: Some(2),
        };
        assert_eq!(apply(step(rule), &mut sp, &mut bp, &mut read), Err(()));
        assert_eq!((sp, bp), (base + 8 * 14, base));
    }

    /// Every form, with offsets at the ends of their ranges.
    const FORMS: [Rule; 5] = [
        Rule::End,
        Rule::Fp,
        Rule::Sp { cfa: 1, bp: None },
        Rule::Sp {
            cfa: u16::MAX,
            bp: Some(i16::MIN),
        },
        Rule::Sp {
            cfa: 1,
            bp: Some(i16::MAX),
        },
    ];

    #[test]
    fn steps_keep_whether_the_address_is_known() {
        for rule in FORMS {
            assert!(Step::new(rule, true).known());
            assert!(!Step::new(rule, false).known());
        }
    }

    #[test]
    fn the_table_keeps_the_last_rule_per_slot() {
        static RULES: Rules = Rules::new();
        let rules = &RULES;
        assert_eq!(rules.get(0x40_1234), None);
        rules.insert(0x40_1234, Step::new(Rule::Fp, true));
        assert_eq!(rules.get(0x40_1234), Some(Step::new(Rule::Fp, true)));
        rules.insert(0x40_1234, Step::new(Rule::End, false));
        assert_eq!(rules.get(0x40_1234), Some(Step::new(Rule::End, false)));
        assert_eq!(rules.get(0x40_1235), None);
        rules.clear();
        assert_eq!(rules.get(0x40_1234), None);
    }

    #[test]
    fn steps_pack_into_a_word_and_back() {
        for rule in FORMS {
            for known in [false, true] {
                let step = Step::new(rule, known);
                assert_eq!(Step::unpack(step.pack()), step);
            }
        }
    }

    /// Three addresses that hash to one pair of slots, `a` first.
    fn sharing_a_pair(rules: &Rules, a: u64) -> [u64; 3] {
        let pair_of = |at: u64| core::ptr::from_ref(rules.pair(at));
        let mut same = (a + 1..).filter(|&b| pair_of(b) == pair_of(a));
        [a, same.next().unwrap(), same.next().unwrap()]
    }

    #[test]
    fn two_addresses_that_hash_alike_are_both_kept() {
        let rules = Rules::new();
        let [a, b, c] = sharing_a_pair(&rules, 0x40_1000);
        let step = |n: u16| Step::new(Rule::Sp { cfa: n, bp: None }, true);
        rules.insert(a, step(1));
        rules.insert(b, step(2));
        rules.insert(a, step(3));
        assert_eq!((rules.get(a), rules.get(b)), (Some(step(3)), Some(step(2))));
        // A third forgets the address that came first.
        rules.insert(c, step(4));
        assert_eq!(
            (rules.get(a), rules.get(b), rules.get(c)),
            (None, Some(step(2)), Some(step(4)))
        );
        rules.clear();
        assert!([a, b, c].iter().all(|&at| rules.get(at).is_none()));
    }

    /// Readers racing a writer that keeps replacing one pair's addresses
    /// and steps never take one address with another's step.
    #[test]
    fn a_reader_never_pairs_an_address_with_another_addresses_step() {
        static RULES: Rules = Rules::new();
        let addresses = sharing_a_pair(&RULES, 0x40_1000);
        let steps = [
            Step::new(
                Rule::Sp {
                    cfa: 3,
                    bp: Some(1),
                },
                true,
            ),
            Step::new(Rule::Fp, false),
            Step::new(Rule::Sp { cfa: 5, bp: None }, false),
        ];
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut taken = 0u64;
                        loop {
                            // One more read after the writes end: at
                            // least that one is taken.
                            let ended = done.load(Ordering::Acquire);
                            let Some(generation) = RULES.begin_read() else {
                                continue;
                            };
                            let read = addresses.map(|at| RULES.get(at));
                            if RULES.unchanged_since(generation) {
                                for (got, want) in read.iter().zip(steps) {
                                    assert!(got.is_none_or(|step| step == want));
                                }
                                taken += 1;
                            }
                            if ended {
                                return taken;
                            }
                        }
                    })
                })
                .collect();
            // Three addresses in turn in a pair of two: each write evicts.
            for _ in 0..200_000 {
                for (at, step) in addresses.iter().zip(steps) {
                    RULES.insert(*at, step);
                }
            }
            done.store(true, Ordering::Release);
            // Reads that raced no write were taken, and checked.
            let taken: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
            assert!(taken > 0);
        });
    }
}
