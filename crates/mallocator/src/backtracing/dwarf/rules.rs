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
//! form and offsets it applied ([`decode`]). A result of any other shape
//! (a rule framehop could not cache either, such as a signal frame's,
//! which reads the stack pointer from memory) is not learned: such
//! frames go through framehop every time.

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

/// Applies `rule` to a frame's `sp` and `bp`, reading the stack through
/// `read` (which checks every address): the caller's return address
/// (`None` at the end of the stack), with `sp` and `bp` now the caller's.
/// `Err` when a read is refused.
#[inline]
pub(super) fn apply(
    rule: Rule,
    sp: &mut u64,
    bp: &mut u64,
    read: &mut impl FnMut(u64) -> Result<u64, ()>,
) -> Result<Option<u64>, ()> {
    match rule {
        Rule::End => Ok(None),
        Rule::Fp => {
            let record = *bp;
            let ret = read(record.wrapping_add(8))?;
            *bp = read(record)?;
            *sp = record.wrapping_add(16);
            Ok(Some(ret))
        }
        Rule::Sp { cfa, bp: saved } => {
            let caller_sp = sp.wrapping_add(8 * cfa as u64);
            let ret = read(caller_sp.wrapping_sub(8))?;
            if let Some(at) = saved {
                *bp = read(sp.wrapping_add_signed(8 * at as i64))?;
            }
            *sp = caller_sp;
            Ok(Some(ret))
        }
    }
}

/// Learned rules by return address: direct-mapped, each new one
/// replacing whatever shared its slot.
pub(super) struct Rules {
    /// `(return address, rule, whether the address lies in an object the
    /// unwinder knows)`; address 0 marks an empty slot (no return address
    /// is 0).
    slots: Vec<(u64, Rule, bool)>,
}

/// Slots in [`Rules`] (a power of two): about ten times the distinct
/// return addresses on the stacks of a large program's allocations.
const SLOTS: usize = 1 << 14;

impl Rules {
    /// An empty table; `None` when out of memory.
    pub(super) fn new() -> Option<Rules> {
        let mut slots = Vec::new();
        slots.try_reserve_exact(SLOTS).ok()?;
        slots.resize(SLOTS, (0, Rule::End, false));
        Some(Rules { slots })
    }

    fn slot(ra: u64) -> usize {
        (ra.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize
    }

    /// The rule learned for `ra`, and whether `ra` lies in a known
    /// object, if learned.
    #[inline]
    pub(super) fn get(&self, ra: u64) -> Option<(Rule, bool)> {
        let (at, rule, known) = self.slots[Self::slot(ra)];
        (at == ra).then_some((rule, known))
    }

    pub(super) fn insert(&mut self, ra: u64, rule: Rule, known: bool) {
        self.slots[Self::slot(ra)] = (ra, rule, known);
    }

    /// Forgets every rule (the loaded objects changed).
    pub(super) fn clear(&mut self) {
        self.slots.fill((0, Rule::End, false));
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
        let (mut sp, mut bp) = (base, base + 64);
        let rule = Rule::Sp {
            cfa: 2,
            bp: Some(0),
        };
        assert_eq!(apply(rule, &mut sp, &mut bp, &mut read), Ok(Some(0xa001)));
        assert_eq!((sp, bp), (base + 16, 0xa000));
        let (mut sp, mut bp) = (base, base + 32);
        assert_eq!(
            apply(Rule::Fp, &mut sp, &mut bp, &mut read),
            Ok(Some(0xa005))
        );
        assert_eq!((sp, bp), (base + 48, 0xa004));
        assert_eq!(apply(Rule::End, &mut sp, &mut bp, &mut read), Ok(None));
        // A frame pointer off the stack: refused, registers unchanged.
        let (mut sp, mut bp) = (base, 0x10);
        assert_eq!(apply(Rule::Fp, &mut sp, &mut bp, &mut read), Err(()));
        assert_eq!((sp, bp), (base, 0x10));
    }

    #[test]
    fn the_table_keeps_the_last_rule_per_slot() {
        let mut rules = Rules::new().unwrap();
        assert_eq!(rules.get(0x40_1234), None);
        rules.insert(0x40_1234, Rule::Fp, true);
        assert_eq!(rules.get(0x40_1234), Some((Rule::Fp, true)));
        rules.insert(0x40_1234, Rule::End, false);
        assert_eq!(rules.get(0x40_1234), Some((Rule::End, false)));
        assert_eq!(rules.get(0x40_1235), None);
        rules.clear();
        assert_eq!(rules.get(0x40_1234), None);
    }
}
