//! Symbolization for the in-process report: each distinct stack once,
//! shown from the program's first frame to its last (`trim.rs`).

use std::collections::HashMap;

use super::os;
use super::stacks::StackTable;
use super::trim::{user_frames, FrameInfo};
use super::Frame;

/// Symbolizes stacks for one report, once per distinct stack.
pub(crate) struct Symbolizer<'t> {
    pub(crate) stacks: &'t StackTable,
    pub(crate) cache: HashMap<u32, Vec<Frame>>,
    /// Show every frame ([`Config::full_stacks`](super::Config::full_stacks)),
    /// not only the program's own ([`user_frames`]).
    pub(crate) full: bool,
}

impl Symbolizer<'_> {
    pub(crate) fn frames(&mut self, id: u32) -> Vec<Frame> {
        let (stacks, full) = (self.stacks, self.full);
        self.cache
            .entry(id)
            .or_insert_with(|| {
                let mut frames = Vec::new();
                for &ip in stacks.get(id).iter() {
                    os::symbolize(ip, &mut frames);
                }
                if !full {
                    let info: Vec<FrameInfo<'_>> = frames.iter().map(frame_info).collect();
                    let keep = user_frames(&info);
                    frames.truncate(keep.end);
                    frames.drain(..keep.start);
                }
                frames
            })
            .clone()
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
