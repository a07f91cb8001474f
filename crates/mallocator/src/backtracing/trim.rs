//! Which frames of an allocation stack a report shows: the program's own,
//! without the allocation machinery above them (this tracker, global
//! allocator shims, `alloc`'s and `core`'s allocation internals, the C
//! library's `malloc` family) or the runtime below them (`std::rt`,
//! `lang_start`, `catch_unwind`, the test harness, `__libc_start_main`,
//! a thread's start). The in-process reports and `mallocator leaks` use
//! this same function, so both group and show stacks alike.

use core::ops::Range;

/// What a report knows of one frame.
///
/// ```
/// use mallocator::backtracing::FrameInfo;
/// let f = FrameInfo { function: Some("app::main"), file: Some("src/main.rs"), object: None };
/// # let _ = f;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameInfo<'a> {
    /// The function's name (demangled), when known.
    pub function: Option<&'a str>,
    /// The source file, when known.
    pub file: Option<&'a str>,
    /// The object file (executable or shared library), when known.
    pub object: Option<&'a str>,
}

/// The range of `frames` (innermost first) a report shows: from the
/// first frame of the program's own code to the last one, machinery and
/// runtime cut off both ends. A stack with no frame of the program's
/// (all machinery and runtime) is shown whole.
///
/// ```
/// use mallocator::backtracing::{user_frames, FrameInfo};
/// let f = |name| FrameInfo { function: Some(name), ..FrameInfo::default() };
/// let stack = [
///     f("__rust_alloc"),
///     f("alloc::raw_vec::RawVec<T>::allocate_in"),
///     f("app::load"),
///     f("app::main"),
///     f("std::rt::lang_start_internal"),
///     f("__libc_start_main"),
/// ];
/// assert_eq!(user_frames(&stack), 2..4);
/// ```
pub fn user_frames(frames: &[FrameInfo<'_>]) -> Range<usize> {
    // Above the program: the machinery, and in it maybe a few frames of
    // a global-allocator shim the rules cannot name (inlined, with a
    // short name, in the program's own files) before the allocator's
    // entry point (`__rust_alloc`) it is called from.
    let mut start = frames.iter().take_while(|f| is_machinery(f)).count();
    while let Some(entry) = frames[start..]
        .iter()
        .take(MAX_SHIMS + 1)
        .position(is_allocator_entry)
    {
        let after = start + entry + 1;
        start = after
            + frames[after..]
                .iter()
                .take_while(|f| is_machinery(f))
                .count();
    }
    let rest = &frames[start..];
    // Below the program: the runtime's marker of where user code starts
    // and all below it (or nothing), then the runtime frames above that.
    let marker = rest
        .iter()
        .position(is_user_code_start)
        .unwrap_or(rest.len());
    let end = marker
        - rest[..marker]
            .iter()
            .rev()
            .take_while(|f| is_runtime(f))
            .count();
    if end == 0 {
        // Still without the preload library's frames: they have no name
        // to show.
        return frames.iter().take_while(|f| is_preload_library(f)).count()..frames.len();
    }
    start..start + end
}

/// Frames before an allocator entry point that are taken for a
/// global-allocator shim (more, and they are the program's).
const MAX_SHIMS: usize = 3;

/// Where a global allocator or the C library's allocator is entered:
/// everything above such a frame is allocation machinery.
fn is_allocator_entry(f: &FrameInfo<'_>) -> bool {
    const ENTRIES: [&str; 7] = [
        "__rust_alloc",
        "__rust_realloc",
        "__rust_dealloc",
        "__rg_",
        "__rdl_",
        "mlc_valloc_",
        "fd_valloc_",
    ];
    f.function.is_some_and(|n| {
        ENTRIES.iter().any(|e| n.starts_with(e))
            || [
                "malloc",
                "calloc",
                "realloc",
                "aligned_alloc",
                "posix_memalign",
                "memalign",
            ]
            .contains(&n)
            || n.contains(" as core::alloc::global::GlobalAlloc>::")
    })
}

/// Code of the Rust standard library (by its source path, as the
/// compiler records it).
fn in_std_source(file: &str) -> bool {
    let file = file.replace('\\', "/");
    file.starts_with("/rustc/")
        || file.contains("/rustlib/src/rust/library/")
        || file.starts_with("library/")
}

/// The allocation machinery between the program and the capture.
/// The file name of `mallocator trace`'s preload library, whose frames
/// every report cuts.
///
/// ```
/// assert!(mallocator::backtracing::PRELOAD_LIBRARY.ends_with(".so"));
/// ```
pub const PRELOAD_LIBRARY: &str = "libmallocator_preload.so";

/// A frame of the preload library of `mallocator trace` (this tracker,
/// built without symbols), by its file name wherever it was put.
fn is_preload_library(f: &FrameInfo<'_>) -> bool {
    f.object
        .is_some_and(|o| o.rsplit(['/', '\\']).next() == Some(PRELOAD_LIBRARY))
}

fn is_machinery(f: &FrameInfo<'_>) -> bool {
    const MALLOC: [&str; 13] = [
        "malloc",
        "calloc",
        "realloc",
        "free",
        "memalign",
        "posix_memalign",
        "aligned_alloc",
        "valloc",
        "pvalloc",
        "reallocarray",
        "operator new",
        "operator new[]",
        "operator delete",
    ];
    const PREFIXES: [&str; 17] = [
        "__rust",
        "__rdl",
        "__rg_",
        "__rustc::",
        "mallocator::",
        "<mallocator::",
        "mallocator_c::",
        "mlc_",
        "fd_valloc_",
        "fd_backtracing_",
        "backtrace::",
        "alloc::",
        "<alloc::",
        "core::",
        "<core::",
        "allocator_api2::",
        "hashbrown::",
    ];
    // This crate and the allocation code of the crates it and collections
    // use, by file (inlined frames often carry only a short name).
    const OWN_FILES: [&str; 6] = [
        "mallocator/src/",
        "mallocator-c/src/",
        "mallocator-preload/src/",
        "/backtrace-0.",
        "/allocator-api2-",
        "/hashbrown-",
    ];
    if is_preload_library(f) {
        return true;
    }
    if let Some(name) = f.function {
        if MALLOC.contains(&name)
            || PREFIXES.iter().any(|p| name.starts_with(p))
            || name.contains(" as core::alloc::global::GlobalAlloc>::")
            || name.contains(" as core::alloc::Allocator>::")
            || name.contains(" as allocator_api2::")
        {
            return true;
        }
    }
    f.file.is_some_and(|file| {
        let file = file.replace('\\', "/");
        OWN_FILES.iter().any(|p| file.contains(p))
            || (in_std_source(&file)
                && ["library/alloc/", "library/core/"]
                    .iter()
                    .any(|p| file.contains(p)))
    })
}

/// The frame where the runtime hands over to the program's code (Rust's
/// marker for backtraces, in `main` and every spawned thread).
fn is_user_code_start(f: &FrameInfo<'_>) -> bool {
    f.function
        .is_some_and(|n| n.contains("__rust_begin_short_backtrace"))
}

/// The runtime that calls the program: process and thread start, the
/// standard library's `main` wrapper, unwinding guards, the test harness.
fn is_runtime(f: &FrameInfo<'_>) -> bool {
    const NAMES: [&str; 13] = [
        "std::rt::",
        "std::panicking::",
        "std::panic::catch_unwind",
        "std::sys::backtrace::",
        "std::thread::",
        "<std::thread::",
        "std::sys::pal::",
        "core::ops::function::",
        "<core::ops::function::",
        "<alloc::boxed::Box<F",
        "test::",
        "<test::",
        "__libc_start",
    ];
    if f.file.is_some_and(in_std_source) {
        // Below the program, the standard library is its runtime.
        return true;
    }
    // C's `main` is not listed: a C program's is its own code, and the
    // one rustc generates lies below Rust's marker of user code.
    // The C library's thread and process start, by exact name (a
    // program's `clone_tree` is not `clone`).
    const EXACT: [&str; 5] = ["start_thread", "clone", "clone3", "__clone", "_start"];
    match f.function {
        Some(name) => EXACT.contains(&name) || NAMES.iter().any(|p| name.starts_with(p)),
        // An unnamed frame at the bottom: the C library's start code.
        None => f
            .object
            .or(f.file)
            .is_none_or(|o| is_c_library(o.as_bytes()) || o.contains("ld-linux")),
    }
}

/// Whether the object at `path` is the C library (`libc.so.6`, or an
/// older glibc's `libc-2.31.so`).
pub(crate) fn is_c_library(path: &[u8]) -> bool {
    let name = path
        .rsplit(|&b| b == b'/' || b == b'\\')
        .next()
        .unwrap_or(path);
    name.starts_with(b"libc.so") || name.starts_with(b"libc-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(names: &[&'static str]) -> Vec<FrameInfo<'static>> {
        names
            .iter()
            .map(|&n| FrameInfo {
                function: Some(n),
                ..FrameInfo::default()
            })
            .collect()
    }

    #[test]
    fn machinery_above_and_runtime_below_are_cut() {
        let stack = named(&[
            "mallocator::backtracing::Backtracing::alloc_raw",
            "<mallocator::backtracing::GlobalBacktracing as core::alloc::global::GlobalAlloc>::alloc",
            "__rust_alloc",
            "alloc::alloc::alloc",
            "<alloc::alloc::Global as core::alloc::Allocator>::allocate",
            "app::cache::fill",
            "core::iter::traits::iterator::Iterator::for_each",
            "app::main",
            "core::ops::function::FnOnce::call_once",
            "std::sys::backtrace::__rust_begin_short_backtrace",
            "std::rt::lang_start::{{closure}}",
            "std::rt::lang_start_internal",
            "main",
            "__libc_start_call_main",
            "__libc_start_main",
            "_start",
        ]);
        // std frames between the program's are kept.
        assert_eq!(user_frames(&stack), 5..8);
    }

    #[test]
    fn threads_tests_and_c_programs() {
        // A spawned thread: its closure, then the thread start.
        let thread = named(&[
            "__rust_alloc",
            "app::worker",
            "app::spawn_workers::{{closure}}",
            "std::sys::backtrace::__rust_begin_short_backtrace",
            "std::thread::Builder::spawn_unchecked_::{{closure}}",
            "start_thread",
            "clone3",
        ]);
        assert_eq!(user_frames(&thread), 1..3);
        // A test: the harness below the test function.
        let test = named(&[
            "alloc::raw_vec::finish_grow",
            "tests::it_works",
            "tests::it_works::{{closure}}",
            "core::ops::function::FnOnce::call_once",
            "test::__rust_begin_short_backtrace",
            "test::run_test_in_process",
        ]);
        assert_eq!(user_frames(&test), 1..3);
        // C: malloc above, the C library's start below (unnamed there).
        let libc = FrameInfo {
            object: Some("/lib/x86_64-linux-gnu/libc.so.6"),
            ..FrameInfo::default()
        };
        let mut c = named(&["fd_backtracing_malloc", "make_node", "main"]);
        c.push(libc);
        assert_eq!(user_frames(&c), 1..3);
        // A traced program: the preload library's frames, unnamed
        // (it has no symbols) wherever it was put, then its `malloc`.
        let preload = FrameInfo {
            object: Some("/tmp/mallocator-trace-x1/libmallocator_preload.so"),
            ..FrameInfo::default()
        };
        let mut traced = vec![preload, preload];
        traced.extend(named(&["malloc", "make_node", "main"]));
        traced.push(libc);
        assert_eq!(user_frames(&traced), 3..5);
        // With no frame of the program's named, still without them.
        assert_eq!(user_frames(&[preload, preload, libc, libc]), 2..4);
    }

    #[test]
    fn by_file_when_names_are_short_and_whole_when_nothing_is_the_programs() {
        let f = |function, file| FrameInfo {
            function: Some(function),
            file: Some(file),
            object: None,
        };
        let stack = [
            f("alloc", "/work/crates/mallocator/src/backtracing/global.rs"),
            f("allocate", "/rustc/abc/library/alloc/src/alloc.rs"),
            f("new<Node>", "/rustc/abc/library/alloc/src/boxed.rs"),
            f("push_front", "examples/leaky_list.rs"),
            f("main", "examples/leaky_list.rs"),
        ];
        // The program's `main`, named short but with its file, is kept;
        // the C `main` (no file) is the runtime's.
        assert_eq!(user_frames(&stack), 3..5);
        // A global-allocator shim of the program's between the tracker
        // and the allocator's entry point, inlined under a short name; the
        // runtime below by file.
        let shimmed = [
            f("alloc", "/w/crates/mallocator/src/backtracing/global.rs"),
            f("alloc", "examples/alloc_switch/mod.rs"),
            f("__rust_alloc", "examples/leaky_list.rs"),
            f("alloc", "/rustc/abc/library/alloc/src/alloc.rs"),
            f(
                "with_capacity<u64>",
                "/rustc/abc/library/alloc/src/vec/mod.rs",
            ),
            f("make_table", "examples/leaky_list.rs"),
            f("main", "examples/leaky_list.rs"),
            f(
                "call_once<fn(), ()>",
                "/rustc/abc/library/core/src/ops/function.rs",
            ),
            f(
                "__rust_begin_short_backtrace<fn(), ()>",
                "/rustc/abc/library/std/src/sys/backtrace.rs",
            ),
        ];
        assert_eq!(user_frames(&shimmed), 5..7);
        // Without the tracker's frame above it, the same.
        assert_eq!(user_frames(&shimmed[1..]), 4..6);
        // A third-party collection's allocation code, by its file.
        let api2 = [
            f(
                "allocate_in<u8>",
                "/r/allocator-api2-0.2.21/src/stable/raw_vec.rs",
            ),
            f("new_session", "examples/leak_hunt.rs"),
        ];
        assert_eq!(user_frames(&api2), 1..2);
        // More unknown frames than a shim has before the machinery: the
        // program's own, kept.
        let deep = named(&["a", "b", "c", "d", "__rust_alloc", "e"]);
        assert_eq!(user_frames(&deep), 0..6);
        let all_runtime = named(&["__rust_alloc", "std::rt::lang_start_internal"]);
        assert_eq!(user_frames(&all_runtime), 0..2);
        assert_eq!(user_frames(&[]), 0..0);
    }
}
