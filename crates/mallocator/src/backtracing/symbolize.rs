//! Symbolization for the in-process report: each distinct stack once,
//! with the allocation machinery above the user's code cut off.

use std::collections::HashMap;

use super::os;
use super::stacks::StackTable;
use super::Frame;

/// Symbolizes stacks for one report, once per distinct stack.
pub(crate) struct Symbolizer<'t> {
    pub(crate) stacks: &'t StackTable,
    pub(crate) cache: HashMap<u32, Vec<Frame>>,
}

impl Symbolizer<'_> {
    pub(crate) fn frames(&mut self, id: u32) -> Vec<Frame> {
        let stacks = self.stacks;
        self.cache
            .entry(id)
            .or_insert_with(|| {
                let mut frames = Vec::new();
                for &ip in stacks.get(id).iter() {
                    os::symbolize(ip, &mut frames);
                }
                let own = frames.iter().take_while(|f| is_tracker_frame(f)).count();
                frames.drain(..own);
                frames
            })
            .clone()
    }
}

/// The allocation machinery between user code and the capture (this
/// crate's tracker and handle, the unwinder, the global-allocator shims):
/// removed from the top of reported stacks. Decided by source file when
/// known (inlined functions often carry only a short name), else by name.
pub(crate) fn is_tracker_frame(frame: &Frame) -> bool {
    const OWN_FILES: [&str; 10] = [
        "mallocator/src/backtracing/",
        "mallocator-c/src/",
        "mallocator/src/valloc.rs",
        "mallocator/src/global.rs",
        "mallocator/src/libc_alloc.rs",
        "/backtrace-0.",
        "library/alloc/src/alloc.rs",
        "library/core/src/alloc/global.rs",
        "library/std/src/alloc.rs",
        "library/std/src/sys/alloc/",
    ];
    const OWN_NAMES: [&str; 11] = [
        "mallocator::backtracing::",
        "mlc_valloc_",
        "fd_valloc_",
        "mallocator::valloc::",
        "mallocator::global::",
        "backtrace::",
        "__rust_alloc",
        "__rust_dealloc",
        "__rust_realloc",
        "__rustc::",
        "__rdl_",
    ];
    let in_tests = |s: &str| s.contains("backtracing/tests.rs") || s.contains("backtracing::tests");
    let by_name = frame.function.as_deref().is_some_and(|f| {
        let f = f.trim_start_matches('<');
        OWN_NAMES.iter().any(|p| f.starts_with(p)) && !in_tests(f)
    });
    by_name
        || frame.file.as_deref().is_some_and(|file| {
            let file = file.replace('\\', "/");
            OWN_FILES.iter().any(|p| file.contains(p)) && !in_tests(&file)
        })
}
