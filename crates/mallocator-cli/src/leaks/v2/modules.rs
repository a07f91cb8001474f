//! The module map of a v2 log (which object each address belongs to, as
//! the `M` records describe it at each point of the log) and the keys the
//! analysis knows the stacks by.
//!
//! A stack's frames are tied to their modules when its `S` record is read,
//! against the map as it stands then: an address range reused after a
//! `dlclose` belongs to the old object for the stacks before the new
//! module record and to the new one after it. The analysis interns each
//! stack as a compact key (its return addresses and the module of each),
//! and only the stacks a report shows are turned into text at the end
//! (see [`super::stack_text`]), so memory follows the distinct stacks at
//! 12 bytes a frame rather than a line of text a frame.

use std::collections::BTreeMap;

use super::format::ModuleRecord;

/// A loaded object, from an `M` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Load bias: an address minus this is the object file's own address.
    pub bias: u64,
    /// Lowest address of its loaded segments.
    pub start: u64,
    /// One past the highest.
    pub end: u64,
    /// The `NT_GNU_BUILD_ID` note as the log recorded it (empty: none).
    pub build_id: Box<[u8]>,
    /// The path as the loader knew it.
    pub path: Box<[u8]>,
    /// Offset of its record in the log.
    pub offset: u64,
}

impl Module {
    /// The path for messages and frame text.
    pub fn path_text(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Every module record read, and which of them own which addresses now.
#[derive(Default)]
pub struct ModuleMap {
    /// All module records, in log order; indices name them.
    pub modules: Vec<Module>,
    /// The modules in force by start address, not overlapping. (A map,
    /// not a sorted vector: a log may list thousands of modules in
    /// descending order, each insertion at the front.)
    active: BTreeMap<u64, u32>,
}

impl ModuleMap {
    /// Adds a module read at `offset`: it replaces every module in force
    /// whose range overlaps its own. A module with an empty range (its end
    /// not above its start) is kept for the record but owns no address.
    pub fn add(&mut self, m: ModuleRecord, offset: u64) -> u32 {
        let index = u32::try_from(self.modules.len()).unwrap_or(u32::MAX);
        let (start, end) = (m.start, m.end);
        self.modules.push(Module {
            bias: m.bias,
            start,
            end,
            build_id: m.build_id.into_boxed_slice(),
            path: m.path.into_boxed_slice(),
            offset,
        });
        if start < end && index != u32::MAX {
            // The one starting before `start` overlaps if it reaches past
            // it; all starting in `start..end` do.
            let before = (self.active.range(..start).next_back())
                .filter(|&(_, &i)| self.modules[i as usize].end > start)
                .map(|(&s, _)| s);
            let inside: Vec<u64> = self.active.range(start..end).map(|(&s, _)| s).collect();
            for s in before.into_iter().chain(inside) {
                self.active.remove(&s);
            }
            self.active.insert(start, index);
        }
        index
    }

    /// The module in force that holds `addr`.
    pub fn find(&self, addr: u64) -> Option<u32> {
        let (_, &i) = self.active.range(..=addr).next_back()?;
        (addr < self.modules[i as usize].end).then_some(i)
    }
}

/// First byte of a key of frames.
const KEY_FRAMES: u8 = 0;
/// First byte of a key that is text to show as it is.
const KEY_TEXT: u8 = 1;

/// The key of a stack: its return addresses, then the module of each
/// (index + 1, 0 for none) as the map stands now.
pub fn frames_key(frames: impl ExactSizeIterator<Item = u64>, map: &ModuleMap, out: &mut Vec<u8>) {
    out.clear();
    out.push(KEY_FRAMES);
    let n = frames.len();
    out.extend_from_slice(&(n as u16).to_le_bytes());
    let modules_at = out.len() + 8 * n;
    out.resize(modules_at + 4 * n, 0);
    for (i, ip) in frames.enumerate() {
        out[3 + 8 * i..11 + 8 * i].copy_from_slice(&ip.to_le_bytes());
        let m = map.find(ip).map_or(0, |m| m.saturating_add(1));
        out[modules_at + 4 * i..modules_at + 4 * i + 4].copy_from_slice(&m.to_le_bytes());
    }
}

/// The key of a stack with no frames (an event whose stack was not captured).
pub fn empty_key() -> Vec<u8> {
    vec![KEY_FRAMES, 0, 0]
}

/// The key of a stack shown as `text` (one frame line).
pub fn text_key(text: &str) -> Vec<u8> {
    let mut key = vec![KEY_TEXT];
    key.extend_from_slice(text.as_bytes());
    key
}

/// A decoded key.
#[derive(Debug, PartialEq, Eq)]
pub enum StackKey<'a> {
    /// Return addresses with the index of their module.
    Frames(Vec<(u64, Option<u32>)>),
    /// Text to show as it is.
    Text(&'a [u8]),
}

/// Decodes a key made by [`frames_key`], [`empty_key`] or [`text_key`];
/// anything else (it never happens) is shown as text.
pub fn decode_key(key: &[u8]) -> StackKey<'_> {
    let frames = || -> Option<Vec<(u64, Option<u32>)>> {
        let n = usize::from(u16::from_le_bytes([*key.get(1)?, *key.get(2)?]));
        let ips = key.get(3..3 + 8 * n)?;
        let modules = key.get(3 + 8 * n..3 + 12 * n)?;
        Some(
            ips.chunks_exact(8)
                .zip(modules.chunks_exact(4))
                .map(|(ip, m)| {
                    let ip = u64::from_le_bytes(ip.try_into().unwrap_or_default());
                    let m = u32::from_le_bytes(m.try_into().unwrap_or_default());
                    (ip, m.checked_sub(1))
                })
                .collect(),
        )
    };
    match key.first() {
        Some(&KEY_FRAMES) => frames().map_or(StackKey::Text(key), StackKey::Frames),
        Some(&KEY_TEXT) => StackKey::Text(&key[1..]),
        _ => StackKey::Text(key),
    }
}

/// A frame left as the log has it: `path+0xoffset [0xip]` inside a module
/// (the offset is the object file's own address), `[0xip]` outside any.
pub fn raw_frame(ip: u64, module: Option<&Module>) -> String {
    match module {
        Some(m) => format!("{}+{:#x} [{ip:#x}]", m.path_text(), ip.wrapping_sub(m.bias)),
        None => format!("[{ip:#x}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(start: u64, end: u64, path: &str) -> ModuleRecord {
        ModuleRecord {
            bias: start,
            start,
            end,
            build_id: vec![1, 2],
            path: path.as_bytes().to_vec(),
        }
    }

    #[test]
    fn addresses_find_their_module_and_a_later_overlap_replaces() {
        let mut map = ModuleMap::default();
        let a = map.add(record(0x1000, 0x2000, "/a"), 12);
        let b = map.add(record(0x3000, 0x4000, "/b"), 40);
        let empty = map.add(record(0x5000, 0x5000, "/empty"), 60);
        assert_eq!(map.find(0x0fff), None);
        assert_eq!(map.find(0x1000), Some(a));
        assert_eq!(map.find(0x1fff), Some(a));
        assert_eq!(map.find(0x2000), None);
        assert_eq!(map.find(0x3abc), Some(b));
        assert_eq!(map.find(0x5000), None, "{empty}");
        // After a dlclose and a dlopen: one object over both ranges.
        let c = map.add(record(0x1800, 0x3800, "/c"), 80);
        assert_eq!(map.find(0x1000), None, "a is replaced whole");
        assert_eq!(map.find(0x1900), Some(c));
        assert_eq!(map.find(0x3900), None, "b is replaced whole");
        assert_eq!(map.modules[a as usize].path_text(), "/a");
        assert_eq!(map.modules.len(), 4);
    }

    #[test]
    fn keys_round_trip_with_the_module_in_force() {
        let mut map = ModuleMap::default();
        let a = map.add(record(0x1000, 0x2000, "/lib/a.so"), 12);
        let mut key = Vec::new();
        frames_key([0x1010, 0x9999].into_iter(), &map, &mut key);
        assert_eq!(
            decode_key(&key),
            StackKey::Frames(vec![(0x1010, Some(a)), (0x9999, None)])
        );
        // The same addresses under a new module give another key.
        let b = map.add(record(0x1000, 0x2000, "/lib/b.so"), 90);
        let mut later = Vec::new();
        frames_key([0x1010, 0x9999].into_iter(), &map, &mut later);
        assert_ne!(key, later);
        assert_eq!(
            decode_key(&later),
            StackKey::Frames(vec![(0x1010, Some(b)), (0x9999, None)])
        );
        assert_eq!(decode_key(&empty_key()), StackKey::Frames(vec![]));
        assert_eq!(decode_key(&text_key("x y")), StackKey::Text(b"x y"));
        assert_eq!(
            raw_frame(0x1010, Some(&map.modules[a as usize])),
            "/lib/a.so+0x10 [0x1010]"
        );
        assert_eq!(raw_frame(0x9999, None), "[0x9999]");
    }

    proptest::proptest! {
        /// Against the plain rule: each module replaces every one in force
        /// that it overlaps, and an address belongs to the one holding it.
        #[test]
        fn the_map_follows_the_plain_rule(
            ranges in proptest::collection::vec((0u64..64, 0u64..16), 0..40),
        ) {
            let mut map = ModuleMap::default();
            let mut plain: Vec<(u64, u64, u32)> = Vec::new();
            for (start, len) in ranges {
                let end = start + len;
                let index = map.add(record(start, end, "m"), 0);
                if start < end {
                    plain.retain(|&(s, e, _)| e <= start || s >= end);
                    plain.push((start, end, index));
                }
                for addr in 0..80 {
                    let want = plain.iter().find(|&&(s, e, _)| s <= addr && addr < e);
                    proptest::prop_assert_eq!(map.find(addr), want.map(|w| w.2), "{}", addr);
                }
            }
        }
    }
}
