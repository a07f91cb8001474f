//! Symbolization for the in-process report: each distinct stack once,
//! shown from the program's first frame to its last (`trim.rs`); and the
//! name a frame is shown by ([`public_symbol_name`]), shared with the
//! offline report.

use core::ops::Range;
use std::collections::HashMap;

use super::os;
use super::stacks::StackTable;
use super::trim::{user_frames, FrameInfo};
use super::Frame;

/// Symbolizes stacks for one report, once per distinct stack.
pub(crate) struct Symbolizer<'t> {
    pub(crate) stacks: &'t StackTable,
    /// Each stack's frames, whole, and the part a report shows.
    pub(crate) cache: HashMap<u32, (Vec<Frame>, Range<usize>)>,
    /// Show every frame ([`Config::full_stacks`](super::Config::full_stacks)),
    /// not only the program's own ([`user_frames`]).
    pub(crate) full: bool,
}

impl Symbolizer<'_> {
    /// The frames of stack `id` a report shows.
    pub(crate) fn frames(&mut self, id: u32) -> Vec<Frame> {
        let (frames, shown) = self.resolve(id);
        frames[shown.clone()].to_vec()
    }

    /// Every frame of stack `id` (what suppressions are matched against).
    pub(crate) fn whole(&mut self, id: u32) -> &[Frame] {
        &self.resolve(id).0
    }

    fn resolve(&mut self, id: u32) -> &(Vec<Frame>, Range<usize>) {
        let (stacks, full) = (self.stacks, self.full);
        self.cache.entry(id).or_insert_with(|| {
            let mut frames = Vec::new();
            for &ip in stacks.get(id).iter() {
                os::symbolize(ip, &mut frames);
            }
            let shown = if full {
                0..frames.len()
            } else {
                let info: Vec<FrameInfo<'_>> = frames.iter().map(frame_info).collect();
                user_frames(&info)
            };
            (frames, shown)
        })
    }
}

/// What [`user_frames`] looks at. The crate's own unit tests are the
/// program there, not the tracker, though their names and files are
/// the crate's.
fn frame_info(f: &Frame) -> FrameInfo<'_> {
    let test = f
        .function
        .as_deref()
        .is_some_and(|n| n.contains("::tests::"))
        || f.file
            .as_deref()
            .is_some_and(|p| p.replace('\\', "/").contains("/backtracing/tests.rs"));
    FrameInfo {
        function: if test {
            Some("test")
        } else {
            f.function.as_deref()
        },
        file: if test { None } else { f.file.as_deref() },
        object: None,
    }
}

/// The name a symbol is shown by: a glibc-internal alias
/// (`__GI_setlocale`: the hidden name glibc's own calls go through,
/// which its debug information names) by the name it aliases
/// (`setlocale`), as Valgrind shows it; any other name as it is.
///
/// ```
/// use mallocator::backtracing::public_symbol_name;
///
/// assert_eq!(public_symbol_name("__GI___strdup"), "__strdup");
/// assert_eq!(public_symbol_name("malloc"), "malloc");
/// ```
pub fn public_symbol_name(sym: &str) -> &str {
    sym.strip_prefix("__GI_")
        .filter(|name| !name.is_empty())
        .unwrap_or(sym)
}

#[cfg(test)]
mod tests {
    use super::public_symbol_name;

    #[test]
    fn glibc_internal_aliases_are_shown_by_their_public_names() {
        for (raw, shown) in [
            ("__GI_setlocale", "setlocale"),
            ("__GI___strdup", "__strdup"),
            // Nothing after the prefix: not an alias.
            ("__GI_", "__GI_"),
            ("malloc", "malloc"),
            ("x__GI_y", "x__GI_y"),
        ] {
            assert_eq!(public_symbol_name(raw), shown, "{raw}");
        }
    }
}
