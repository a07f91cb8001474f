//! The Firedancer text format, for C tooling: every event as a record
//! in the C tool's exact format.
//!
//! ```text
//! +++ ALLOC:<n>:0x<address, 16 hex digits>:<align>:<size>
//! <n frame lines, glibc backtrace_symbols_fd style>
//! ---
//! +++ FREE:<n>:0x<address, 16 hex digits>
//! <n frame lines>
//! ---
//! ```

use super::super::os;
use super::super::sys_vec::{sys_vec, SysVec};
use super::record_buf::{try_append, RecordBuf};

/// Text already made, by a non-zero key: direct-mapped (`SLOTS` slots,
/// a power of two; a newer text replaces an older one in its slot), the
/// texts kept in one buffer of at most `TEXT` bytes, emptied with the
/// slots when full. Its memory comes from the C library when first
/// needed; without it, every text is made anew. A text cut short by a
/// lack of memory (the log then stops) is never kept.
struct TextCache<const SLOTS: usize, const TEXT: usize> {
    /// `(key, start, len)` of each slot's text in `text`; key 0: empty.
    slots: SysVec<(usize, u32, u32)>,
    text: SysVec<u8>,
}

impl<const SLOTS: usize, const TEXT: usize> TextCache<SLOTS, TEXT> {
    const fn new() -> Self {
        // A power of two above 1: a slot is the top log2(SLOTS) bits of a
        // product, a shift by less than 64.
        assert!(SLOTS.is_power_of_two() && SLOTS > 1);
        TextCache {
            slots: sys_vec(),
            text: sys_vec(),
        }
    }

    /// Whether no text is kept (for the log's tests, which run on Unix,
    /// not under Miri).
    #[cfg(all(test, unix, not(miri)))]
    fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Forgets every text.
    fn clear(&mut self) {
        self.text.clear();
        self.slots.iter_mut().for_each(|s| *s = (0, 0, 0));
    }

    /// Appends the text of `key` (not 0) to `buf`: the cached one, or
    /// the one `make` appends, then kept.
    fn append(&mut self, key: usize, buf: &mut RecordBuf, make: impl FnOnce(&mut RecordBuf)) {
        debug_assert!(key != 0, "key 0 marks an empty slot");
        if self.slots.is_empty() {
            if self.slots.try_reserve_exact(SLOTS).is_err() {
                return make(buf);
            }
            self.slots.resize(SLOTS, (0, 0, 0));
        }
        // The product's top bits, as many as choose a slot.
        let slot = ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            >> (64 - SLOTS.trailing_zeros())) as usize;
        let (cached, start, len) = self.slots[slot];
        if cached == key {
            buf.append(&self.text[start as usize..(start + len) as usize]);
            return;
        }
        let from = buf.len();
        make(buf);
        if buf.is_cut() {
            return;
        }
        let made = &buf[from..];
        if self.text.len() + made.len() > TEXT {
            self.clear();
        }
        let start = self.text.len();
        if try_append(&mut self.text, made) {
            self.slots[slot] = (key, start as u32, made.len() as u32);
        }
    }
}

/// Frame lines already described, by instruction pointer: asking the
/// loader (`dladdr`) costs thousands of instructions, and a program's
/// allocation sites repeat. A line stays as first described until the
/// tracker is told of an unload (`dlclose`: [`forget`]),
/// after which other code loaded at the same address gets its own.
pub(super) struct LineCache(TextCache<4096, LINE_TEXT>);

/// Most bytes of cached line text.
const LINE_TEXT: usize = 1 << 20;

impl LineCache {
    pub(super) const fn new() -> Self {
        LineCache(TextCache::new())
    }

    /// Appends the frame line of `ip` to `buf`.
    pub(super) fn line(&mut self, ip: usize, buf: &mut RecordBuf) {
        match ip {
            0 => describe_ip(ip, buf),
            _ => self.0.append(ip, buf, |buf| describe_ip(ip, buf)),
        }
    }
}

/// The frame lines of whole stacks, by interned stack id: a program's
/// events repeat a few thousand stacks, so most records get their frame
/// lines with one copy instead of one lookup and copy per frame. An id
/// always names the same frames (interned stacks never change), so a
/// cached block is what the frames' lines would be.
pub(super) struct StackLines(TextCache<4096, STACK_TEXT>);

/// Most bytes of cached stack text.
const STACK_TEXT: usize = 4 << 20;

impl StackLines {
    pub(super) const fn new() -> Self {
        StackLines(TextCache::new())
    }

    /// Appends the frame lines of `frames`, whose interned id is `id`
    /// (`None`: not interned, described frame by frame).
    #[inline]
    pub(super) fn append(
        &mut self,
        id: Option<u32>,
        frames: &[usize],
        lines: &mut LineCache,
        buf: &mut RecordBuf,
    ) {
        let mut each = |buf: &mut RecordBuf| frames.iter().for_each(|&ip| lines.line(ip, buf));
        match id {
            Some(id) => self.0.append(id as usize + 1, buf, each),
            None => each(buf),
        }
    }
}

/// Forgets every cached line and stack (objects were unloaded: code
/// loaded at their addresses is not what the lines name).
pub(super) fn forget(lines: &mut LineCache, stacks: &mut StackLines) {
    lines.0.clear();
    stacks.0.clear();
}

/// Whether the line cache and the stack cache are empty (for the log's
/// tests, as [`TextCache::is_empty`]).
#[cfg(all(test, unix, not(miri)))]
pub(super) fn emptied(lines: &LineCache, stacks: &StackLines) -> (bool, bool) {
    (lines.0.is_empty(), stacks.0.is_empty())
}

/// Appends one frame line in glibc's `backtrace_symbols_fd` format:
/// `file(symbol+0xoff)[0xip]`, `file(+0xoff)[0xip]` when the address has
/// no dynamic symbol (offset from the object's load address), or
/// `[0xip]` when it is in no known object.
pub(super) fn describe_ip(ip: usize, buf: &mut RecordBuf) {
    os::with_code_site(ip, |site| {
        let Some(site) = site.filter(|s| !s.object.is_empty()) else {
            return;
        };
        buf.append(site.object);
        if site.symbol.is_some() || site.base != 0 {
            buf.push(b'(');
            if let Some(symbol) = site.symbol {
                buf.append(symbol);
            }
            if ip >= site.base {
                buf.append(b"+0x");
                push_hex(buf, (ip - site.base) as u64, 1);
            } else {
                buf.append(b"-0x");
                push_hex(buf, (site.base - ip) as u64, 1);
            }
            buf.push(b')');
        }
    });
    buf.append(b"[0x");
    push_hex(buf, ip as u64, 1);
    buf.append(b"]\n");
}

/// Appends `v` in lowercase hex, at least `width` digits.
/// The digits are made in a local array and appended with one copy (a
/// push per digit checks the vector's capacity each time: that was a
/// sixth of the text log's cost).
fn push_hex(buf: &mut RecordBuf, v: u64, width: usize) {
    let digits = (16 - (v.leading_zeros() as usize) / 4).clamp(width.clamp(1, 16), 16);
    let mut tmp = [0u8; 16];
    for (i, d) in tmp.iter_mut().enumerate() {
        *d = b"0123456789abcdef"[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    buf.append(&tmp[16 - digits..]);
}

/// Appends `v` in decimal.
fn push_dec(buf: &mut RecordBuf, v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut v = v;
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.append(&tmp[i..]);
}

/// One record: `+++ ALLOC:n:0x<addr>:<align>:<size>` when `alloc` is
/// `Some((align, size))`, else `+++ FREE:n:0x<addr>`; then the frames
/// and `---`.
#[inline]
pub(super) fn format_record(
    buf: &mut RecordBuf,
    addr: usize,
    alloc: Option<(usize, usize)>,
    frames: &[usize],
    frame_lines: &mut dyn FnMut(&mut RecordBuf),
) {
    buf.append(if alloc.is_some() {
        b"+++ ALLOC:"
    } else {
        b"+++ FREE:"
    });
    push_dec(buf, frames.len() as u64);
    buf.append(b":0x");
    push_hex(buf, addr as u64, 16);
    if let Some((align, size)) = alloc {
        buf.push(b':');
        push_dec(buf, align as u64);
        buf.push(b':');
        push_dec(buf, size as u64);
    }
    buf.push(b'\n');
    frame_lines(buf);
    buf.append(b"---\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(buf: &RecordBuf) -> &str {
        core::str::from_utf8(buf).unwrap()
    }

    #[test]
    fn numbers() {
        let mut b = RecordBuf::new();
        push_hex(&mut b, 0, 1);
        b.push(b' ');
        push_hex(&mut b, 0xdead_beef, 16);
        b.push(b' ');
        push_hex(&mut b, u64::MAX, 1);
        b.push(b' ');
        push_dec(&mut b, 0);
        b.push(b' ');
        push_dec(&mut b, u64::MAX);
        assert_eq!(
            text(&b),
            "0 00000000deadbeef ffffffffffffffff 0 18446744073709551615"
        );
    }

    /// A line or a stack's lines cut short for want of memory are not
    /// cached: a later record would get them cut.
    #[test]
    fn cut_lines_are_not_cached() {
        let (mut lines, mut stacks) = (LineCache::new(), StackLines::new());
        let here = cut_lines_are_not_cached as fn() as usize;
        let mut starved = RecordBuf::new_in(crate::valloc::Valloc::null());
        lines.line(here, &mut starved);
        stacks.append(Some(1), &[here + 1], &mut lines, &mut starved);
        assert!(starved.is_cut());
        let (mut direct, mut cached) = (RecordBuf::new(), RecordBuf::new());
        describe_ip(here, &mut direct);
        describe_ip(here + 1, &mut direct);
        lines.line(here, &mut cached);
        stacks.append(Some(1), &[here + 1], &mut lines, &mut cached);
        assert_eq!(text(&cached), text(&direct));
    }

    #[test]
    fn cached_lines_are_the_described_lines() {
        let mut cache = LineCache::new();
        // This function's own address: a line with an object and a symbol
        // where `dladdr` exists; then addresses in no object.
        let here = cached_lines_are_the_described_lines as fn() as usize;
        let ips: Vec<usize> = [here, here + 1]
            .into_iter()
            .chain((1..200).map(|i| i * 4096))
            .collect();
        for round in 0..3 {
            for &ip in &ips {
                let (mut direct, mut cached) = (RecordBuf::new(), RecordBuf::new());
                describe_ip(ip, &mut direct);
                cache.line(ip, &mut cached);
                assert_eq!(text(&cached), text(&direct), "ip {ip:#x}, round {round}");
            }
        }
        // More text than the cache keeps: it starts over, still right.
        let n = if cfg!(miri) { 200 } else { LINE_TEXT / 8 };
        for i in 0..n {
            let mut line = RecordBuf::new();
            cache.line(0x1000_0000 + i * 8, &mut line);
        }
        assert!(cache.0.text.len() <= LINE_TEXT);
        let (mut direct, mut cached) = (RecordBuf::new(), RecordBuf::new());
        describe_ip(here, &mut direct);
        cache.line(here, &mut cached);
        assert_eq!(text(&cached), text(&direct));
    }

    #[test]
    fn cached_stacks_are_their_frames_lines() {
        let (mut lines, mut stacks) = (LineCache::new(), StackLines::new());
        let here = cached_stacks_are_their_frames_lines as fn() as usize;
        let stack = |i: usize| [here, 0x1000 * i, 0x2000 * i];
        for round in 0..3 {
            for i in 1..50 {
                let (mut direct, mut cached) = (RecordBuf::new(), RecordBuf::new());
                stack(i).iter().for_each(|&ip| describe_ip(ip, &mut direct));
                stacks.append(Some(i as u32), &stack(i), &mut lines, &mut cached);
                assert_eq!(text(&cached), text(&direct), "stack {i}, round {round}");
            }
        }
        let mut none = RecordBuf::new();
        stacks.append(None, &stack(3), &mut lines, &mut none);
        let mut direct = RecordBuf::new();
        stack(3).iter().for_each(|&ip| describe_ip(ip, &mut direct));
        assert_eq!(text(&none), text(&direct));
    }

    #[test]
    fn records_match_the_c_format() {
        let mut b = RecordBuf::new();
        format_record(&mut b, 0x1234, Some((16, 40)), &[0xaa, 0xbb], &mut |buf| {
            describe_ip(0xaa, buf);
            describe_ip(0xbb, buf);
        });
        format_record(&mut b, 0, None, &[], &mut |_| {});
        let t = text(&b);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "+++ ALLOC:2:0x0000000000001234:16:40");
        assert!(lines[1].ends_with("[0xaa]"), "{}", lines[1]);
        assert!(lines[2].ends_with("[0xbb]"), "{}", lines[2]);
        assert_eq!(lines[3], "---");
        assert_eq!(lines[4], "+++ FREE:0:0x0000000000000000");
        assert_eq!(lines[5], "---");
        assert_eq!(lines.len(), 6);
        assert!(t.ends_with("---\n"));
    }
}
