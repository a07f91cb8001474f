//! The frames a report shows: the program's own, without the allocation
//! machinery above them and the runtime below, decided by the same rules
//! as the tracker's in-process reports
//! ([`mallocator::backtracing::user_frames`]), so that both group and
//! show stacks alike (`--full-stacks` shows everything).

use std::collections::HashMap;

use mallocator::backtracing::{user_frames, FrameInfo};

use super::analyze::{sort_groups, Analysis, Group, Interner};
use super::frames::StackFrames;
use super::symbolize::shown_stacks;
use mallocator::backtracing::LeakKind;

/// What a frame line says about its frame. The report's lines come in
/// three shapes: symbolized (`function at file:line`, or `function`
/// alone), glibc's (`object(function+0xoff)[0xip]`, `object(+0xoff)[0xip]`,
/// `[0xip]`), and raw binary-log frames (`object+0xoff [0xip]`).
pub fn frame_info(line: &str) -> FrameInfo<'_> {
    let line = line.trim();
    if let Some((function, place)) = line.split_once(" at ") {
        let file = place.rsplit_once(':').map_or(place, |(file, _)| file);
        return FrameInfo {
            function: Some(function),
            file: Some(file),
            object: None,
        };
    }
    if let Some((object, rest)) = line.split_once('(') {
        let inside = rest.split(')').next().unwrap_or("");
        let function = inside.split('+').next().filter(|f| !f.is_empty());
        return FrameInfo {
            function,
            file: None,
            object: Some(object).filter(|o| !o.is_empty()),
        };
    }
    if line.starts_with('[') {
        return FrameInfo::default();
    }
    if let Some((object, _)) = line.split_once("+0x") {
        return FrameInfo {
            function: None,
            file: None,
            object: Some(object),
        };
    }
    FrameInfo {
        function: Some(line),
        file: None,
        object: None,
    }
}

/// Cuts every stack the report shows to the program's frames (its lines,
/// and its frame objects where symbolization made them: one per line),
/// then makes one group of the leak groups whose stacks became the same,
/// and one of the peak consumers whose stacks did.
pub fn trim(a: &mut Analysis, frames: &mut StackFrames) {
    for id in shown_stacks(a) {
        let text = String::from_utf8_lossy(a.stacks.text(id)).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        let info: Vec<FrameInfo<'_>> = lines.iter().map(|l| frame_info(l)).collect();
        let keep = user_frames(&info);
        if keep.len() < lines.len() {
            frames.keep(id, keep.clone());
            a.stacks.rewrite(id, lines[keep].join("\n").into_bytes());
        }
    }
    a.groups = merged(std::mem::take(&mut a.groups), &a.stacks);
    a.peak_consumers = merged(std::mem::take(&mut a.peak_consumers), &a.stacks);
}

/// `groups` with those whose stacks now read the same (and whose blocks
/// are as reachable) merged into one, sorted again.
fn merged(groups: Vec<Group>, stacks: &Interner) -> Vec<Group> {
    let mut merged: Vec<Group> = Vec::with_capacity(groups.len());
    let mut by_text: HashMap<(&[u8], Option<LeakKind>), usize> = HashMap::new();
    for g in groups {
        match by_text.get(&(stacks.text(g.stack), g.kind)) {
            Some(&i) => {
                merged[i].bytes = merged[i].bytes.saturating_add(g.bytes);
                merged[i].count += g.count;
            }
            None => {
                by_text.insert((stacks.text(g.stack), g.kind), merged.len());
                merged.push(g);
            }
        }
    }
    sort_groups(&mut merged, stacks);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lines_of_every_shape() {
        let f = frame_info("app::load at src/load.rs:12");
        assert_eq!(
            (f.function, f.file, f.object),
            (Some("app::load"), Some("src/load.rs"), None)
        );
        let f = frame_info("std::rt::lang_start::{{closure}}");
        assert_eq!(
            (f.function, f.file),
            (Some("std::rt::lang_start::{{closure}}"), None)
        );
        let f = frame_info("./app(app::cache::fill+0x10)[0x5000]");
        assert_eq!(
            (f.function, f.object),
            (Some("app::cache::fill"), Some("./app"))
        );
        let f = frame_info("/lib/libc.so.6(+0x2724a)[0x7f00]");
        assert_eq!((f.function, f.object), (None, Some("/lib/libc.so.6")));
        let f = frame_info("/lib/x86_64-linux-gnu/libc.so.6+0x2724a [0x7f51caa9324a]");
        assert_eq!(
            (f.function, f.object),
            (None, Some("/lib/x86_64-linux-gnu/libc.so.6"))
        );
        assert_eq!(frame_info("[0x1234]"), FrameInfo::default());
    }
}
