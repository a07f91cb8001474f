//! `mallocator leaks` on binary v2 logs, run as a user would: the built
//! binary on files and standard input, every report, damaged logs and
//! their exit code, the merge of threads' chunks, and symbolization from
//! the module map (of this test binary itself, from another directory).

#[path = "support/cli.rs"]
mod cli;
#[path = "support/v2_log.rs"]
mod v2_log;

use cli::{json, run, stderr, stdout, BIN};
use std::path::{Path, PathBuf};
use std::process::Command;
use v2_log::{alloc, first_event, free, Log, NO_STACK};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Two threads, no module map (frames stay `[0xip]`): a 100-byte leak
/// from stack 1, two 20-byte leaks from stack 2, a double free, an
/// unknown free, a failed allocation and free(NULL).
fn sample() -> Log {
    let mut log = Log::new();
    log.header("/opt/app", "/opt")
        .stack(1, &[0x1111, 0x2222])
        .stack(2, &[0x3333])
        .stack(3, &[0x4444])
        .events(
            1,
            &[
                alloc(1, 0x10, 100, 1),
                alloc(2, 0x20, 20, 2),
                alloc(3, 0x30, 8, 1),
                free(4, 0x30, 3),
                free(7, 0x30, 3),
            ],
        )
        .events(
            2,
            &[
                alloc(5, 0x40, 20, 2),
                free(6, 0xbad, 3),
                alloc(8, 0, 1 << 40, 1),
                free(9, 0, NO_STACK),
            ],
        )
        .end(9, 0);
    log
}

#[test]
fn text_report_of_a_v2_log() {
    let o = run(&["leaks", "-"], Some(&sample().build()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(
        s.starts_with("Leaks: 140 bytes in 3 blocks never freed, from 2 allocation stacks."),
        "{s}"
    );
    let size = sample().build().len();
    assert!(
        s.contains(&format!("(log: {size} bytes, 5 allocations, 4 frees)")),
        "{s}"
    );
    // 100 + 20 + 8 + 20 allocated; 140 live once the 8 bytes are freed
    // and the second thread's 20 allocated.
    assert!(
        s.contains(
            "(heap: 148 bytes allocated in all; at most 140 bytes in 3 blocks live at once)"
        ),
        "{s}"
    );
    let big = s.find("#1: 100 bytes in 1 block\n    [0x1111]\n    [0x2222]");
    let small = s.find("#2: 40 bytes in 2 blocks\n    [0x3333]");
    assert!(big.unwrap() < small.unwrap(), "{s}");
    assert!(
        s.contains("Double frees (a block freed again after it was already freed): 1"),
        "{s}"
    );
    assert!(s.contains(", first at offset "), "{s}");
    assert!(!s.contains("first at line"), "{s}");
    for problem in [
        "Frees of addresses never allocated in the log",
        "Allocations that returned NULL",
        "free(NULL) calls",
    ] {
        assert!(s.contains(problem), "missing {problem:?} in\n{s}");
    }
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn json_c_layout_top_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = sample();
    let path = write(dir.path(), "app.mallog", &log.build());
    let p = path.to_str().unwrap();
    let v = json(&run(&["leaks", "--json", p], None));
    assert_eq!(v["leaked_bytes"], 140);
    assert_eq!(v["leaked_blocks"], 3);
    // No module map: a frame is its address alone.
    assert_eq!(
        v["groups"][0]["frames"][0],
        serde_json::json!({"ip": 0x1111})
    );
    assert_eq!(v["source"], "log");
    assert_eq!(v["log"]["format"], "v2");
    assert_eq!(v["log"]["input"]["allocs"], 5);
    assert_eq!(v["log"]["input"]["frees"], 4);
    assert_eq!(v["log"]["input"]["bytes"], log.bytes.len() as u64);
    // The double free is the fifth event of the first chunk; its place
    // is a byte offset.
    let df = &v["errors"][0];
    assert_eq!(df["kind"], "double_free");
    assert!(df.get("first_line").is_none(), "{df}");
    let chunk = {
        let mut l = Log::new();
        l.header("/opt/app", "/opt")
            .stack(1, &[0x1111, 0x2222])
            .stack(2, &[0x3333])
            .stack(3, &[0x4444]);
        l.offset()
    };
    assert_eq!(
        df["first_offset"],
        (first_event(chunk) + 30 * 3 + 21) as u64
    );
    assert_eq!(df["alloc_frames"][0], serde_json::json!({"ip": 0x1111}));
    // The same report from standard input, piped or redirected.
    let piped = json(&run(&["leaks", "--json"], Some(&log.build())));
    assert_eq!(v, piped);
    let redirected = Command::new(BIN)
        .args(["leaks", "--json", "-"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    assert_eq!(v, json(&redirected));
    let top = json(&run(&["leaks", "--json", "--top", "1", p], None));
    assert_eq!(top["groups"].as_array().unwrap().len(), 1);
    assert_eq!(top["log"]["groups_total"], 2);
    let c = run(&["leaks", "--format", "c", p], None);
    assert_eq!(
        stdout(&c),
        "40 2\n[0x3333]\n\n100 1\n[0x1111]\n[0x2222]\n\n"
    );
    assert_eq!(
        run(&["leaks", "--fail-on-leaks", p], None).status.code(),
        Some(1)
    );
    let svg = dir.path().join("leaks.svg");
    let o = run(&["leaks", "--flamegraph", svg.to_str().unwrap(), p], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("[0x1111] (100 bytes, "), "{text}");
}

#[test]
fn a_later_chunk_of_earlier_events_is_merged_by_time() {
    // Thread 1 allocates and frees X early, but its chunk is written
    // after thread 2's, which allocates X again later in time and keeps
    // it: thread 2's block is the leak.
    let mut log = Log::new();
    log.header("", "")
        .stack(1, &[0xaaa])
        .stack(2, &[0xbbb])
        .stack(3, &[0xccc])
        .events(2, &[alloc(50, 0x7000, 64, 2)])
        .events(1, &[alloc(10, 0x7000, 32, 1), free(20, 0x7000, 3)])
        .end(3, 0);
    let o = run(&["leaks", "--json", "--fail-on-leaks"], Some(&log.build()));
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["leaked_bytes"], 64);
    assert_eq!(
        v["groups"][0]["frames"][0],
        serde_json::json!({"ip": 0xbbb})
    );
    assert_eq!(v["error_counts"]["live_address_reused"], 0);
    assert_eq!(v["error_counts"]["invalid_free"], 0);
}

#[test]
fn a_log_cut_short_is_reported_with_a_warning() {
    let mut log = sample();
    // Everything but the end record (17 + 5 bytes).
    log.bytes.truncate(log.bytes.len() - 21);
    let o = run(&["leaks", "-"], Some(&log.build()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: <stdin>: cut short: the log has no end record"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).starts_with("Leaks: 140 bytes"), "{}", stdout(&o));
    // Lost events are said too.
    let mut lossy = sample();
    lossy.bytes.truncate(lossy.bytes.len() - 21);
    lossy.end(9, 4);
    let o = run(&["leaks", "-"], Some(&lossy.build()));
    assert!(
        stderr(&o).contains("could not write 4 events"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_log_without_events_is_an_error_unless_allowed() {
    let mut log = Log::new();
    log.header("/x", "/").end(0, 0);
    let o = run(&["leaks", "--fail-on-leaks"], Some(&log.build()));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no records found in <stdin> (a binary v2 log of"),
        "{}",
        stderr(&o)
    );
    let o = run(&["leaks", "--allow-empty"], Some(&log.build()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("No leaks"), "{}", stdout(&o));
}

/// Damaged logs: each one's offset and message, and whether `--lenient`
/// can report it anyway.
fn damaged() -> Vec<(Vec<u8>, usize, &'static str, bool)> {
    let base = || {
        let mut l = Log::new();
        l.header("/a", "/").stack(1, &[0x10]);
        l
    };
    let mut cases = Vec::new();

    let mut l = base();
    let at = l.offset();
    l.events(1, &[alloc(1, 0x10, 8, 1)]);
    let mut bytes = l.build();
    bytes.pop();
    cases.push((bytes, at, "truncated log: the events (E) record declares 38 bytes of payload but the file ends after 37", true));

    let mut l = Log::with_version(7);
    l.header("/a", "/");
    cases.push((l.build(), 8, "unsupported log version 7", false));

    let mut crlf = base().build();
    crlf[7] = b'\r';
    cases.push((crlf, 0, "rewrites line ends", false));

    let mut garbage = Log::new().build();
    garbage.extend_from_slice(&[0x17, 3, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0xff]);
    cases.push((
        garbage,
        12,
        "the first record is an unknown (tag 0x17) record, not the header (H)",
        true,
    ));

    let mut l = base();
    let at = l.offset();
    l.stack(2, &[0x20; 300]);
    cases.push((
        l.build(),
        at,
        "stack 2 has 300 frames (at most 256 are allowed)",
        true,
    ));

    let mut l = base();
    let at = l.offset();
    l.stack(0xFFFF_FFF5, &[0x20]);
    cases.push((l.build(), at, "stack id 0xfffffff5 is out of range", true));

    let mut l = base();
    let chunk = l.offset();
    l.events(1, &[alloc(1, 0x10, 8, 1), alloc(2, 0x20, 8, 5)]);
    cases.push((
        l.build(),
        first_event(chunk) + 30,
        "the event names stack 5, which no earlier stack record defines",
        true,
    ));

    let mut l = base();
    let at = l.offset();
    l.record(b'Z', &[0; 9]);
    cases.push((
        l.build(),
        at,
        "payload too short: the end (Z) record has 9 bytes, its lost needs 16",
        true,
    ));

    let mut l = base();
    let chunk = l.offset();
    let mut payload = 1u64.to_le_bytes().to_vec();
    payload.extend_from_slice(&[0x09; 30]);
    l.record(b'E', &payload);
    cases.push((
        l.build(),
        first_event(chunk),
        "unknown event tag 0x09",
        true,
    ));

    let mut l = base();
    l.end(0, 0);
    let at = l.offset();
    l.stack(2, &[]);
    cases.push((
        l.build(),
        at,
        "a stack (S) record after the end record",
        true,
    ));
    cases
}

#[test]
fn damaged_logs_exit_2_with_the_offset() {
    for (log, offset, message, lenient_reads) in damaged() {
        let o = run(&["leaks", "-"], Some(&log));
        assert_eq!(o.status.code(), Some(2), "{message}: {}", stderr(&o));
        let err = stderr(&o);
        let expected = format!("<stdin>: offset {offset} (0x{offset:x}): ");
        assert!(err.contains(&expected), "{expected} in {err}");
        assert!(err.contains(message), "{message} in {err}");
        assert!(o.stdout.is_empty());

        let o = run(
            &["leaks", "--lenient", "--json", "--allow-empty", "-"],
            Some(&log),
        );
        if lenient_reads {
            assert_eq!(o.status.code(), Some(0), "{message}: {}", stderr(&o));
            let v = json(&o);
            let warning = &v["log"]["warnings"][0];
            assert_eq!(warning["offset"], offset as u64, "{message}");
            assert!(warning.get("line").is_none());
            assert!(stderr(&o).contains(message), "{}", stderr(&o));
        } else {
            assert_eq!(o.status.code(), Some(2), "{message}");
        }
    }
    // The same from a file.
    let dir = tempfile::tempdir().unwrap();
    let (log, offset, message, _) = damaged().remove(0);
    let path = write(dir.path(), "cut.mallog", &log);
    let o = run(&["leaks", path.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2));
    let expected = format!("cut.mallog: offset {offset} (0x{offset:x}): {message}");
    assert!(stderr(&o).contains(&expected), "{}", stderr(&o));
    assert!(stderr(&o).contains("--lenient"), "{}", stderr(&o));
}

#[test]
fn help_describes_both_formats_and_the_symbol_options() {
    let help = stdout(&run(&["leaks", "--help"], None));
    for word in [
        "binary log (format v2",
        "Firedancer text format",
        "--binary <PATH>",
        "--search-path <DIR>",
        "build-id",
        "cut short",
        "byte offset",
    ] {
        assert!(help.contains(word), "{word}: {help}");
    }
}

/// Symbolization from the module map, against this test binary: its real
/// build-id, its real load bias, and a return address at the end of a
/// function of its own.
#[cfg(target_os = "linux")]
mod symbols {
    use super::cli::run_in;
    use super::*;
    use object::{Object, ObjectSymbol};

    /// The function the frames point into.
    #[inline(never)]
    #[no_mangle]
    pub extern "C" fn mallocator_v2_symbolize_target(x: u64) -> u64 {
        std::hint::black_box(x).wrapping_mul(3).wrapping_add(1)
    }

    /// (path, build-id, bias, return address into the target function).
    /// Text logs name objects by path too: `--symbolize` finds them the
    /// same ways, and says so for every object it does not use, a
    /// rebuilt one (newer than the log) above all.
    #[test]
    fn text_logs_symbolize_only_the_build_they_came_from() {
        let (exe, _, bias, frame) = this_binary();
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::copy(&exe, &app).unwrap();
        let set_time = |path: &Path, t: std::time::SystemTime| {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(t)
                .unwrap();
        };
        let hour = std::time::Duration::from_secs(3600);
        set_time(&app, std::time::SystemTime::now() - hour);
        let log = dir.path().join("leak.log");
        let record = |object: &Path| {
            format!(
                "+++ ALLOC:1:0x0000000000001000:8:24\n{}(+{:#x})[{frame:#x}]\n---\n",
                object.display(),
                frame - bias
            )
        };
        std::fs::write(&log, record(&app)).unwrap();
        let run_on = |extra: &[&str]| {
            let mut args = vec!["leaks", "--json", "--full-stacks", "--symbolize"];
            args.extend_from_slice(extra);
            args.push(log.to_str().unwrap());
            let o = run_in(Some(dir.path()), &args, None);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            let frame = json(&o)["groups"][0]["frames"][0].clone();
            (frame, stderr(&o))
        };
        let named = |f: &serde_json::Value| f["function"] == "mallocator_v2_symbolize_target";
        let raw = |f: &serde_json::Value| f.get("function").is_none() && f["ip"] == frame;
        let (f, err) = run_on(&[]);
        assert!(named(&f), "{f} {err}");
        assert!(err.is_empty(), "{err}");
        // Rebuilt after the log: not used, and said.
        set_time(&app, std::time::SystemTime::now() + hour);
        let (f, err) = run_on(&[]);
        assert!(raw(&f), "{f}");
        assert!(err.contains("changed after the log was written"), "{err}");
        // Gone: said, raw; --binary names the right build.
        std::fs::remove_file(&app).unwrap();
        let (f, err) = run_on(&[]);
        assert!(raw(&f), "{f}");
        assert!(err.contains("app: not found at"), "{err}");
        let kept = tempfile::tempdir().unwrap();
        let build = kept.path().join("app");
        std::fs::copy(&exe, &build).unwrap();
        set_time(&build, std::time::SystemTime::now() - hour);
        let (f, err) = run_on(&["--binary", build.to_str().unwrap()]);
        assert!(named(&f), "{f} {err}");
    }

    fn this_binary() -> (PathBuf, Vec<u8>, u64, u64) {
        let exe = std::env::current_exe().unwrap();
        let data = std::fs::read(&exe).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let build_id = file
            .build_id()
            .unwrap()
            .expect("the test binary has a build-id");
        let symbol = file
            .symbols()
            .find(|s| s.name() == Ok("mallocator_v2_symbolize_target"))
            .expect("the target function is in the symbol table");
        let runtime = mallocator_v2_symbolize_target as *const () as u64;
        assert_eq!(mallocator_v2_symbolize_target(1), 4);
        let bias = runtime - symbol.address();
        // The return address of a call that is the function's last
        // instruction: one past its end, in the next function, so only a
        // lookup of `frame - 1` lands in the target.
        assert!(symbol.size() > 0);
        (exe, build_id.to_vec(), bias, runtime + symbol.size())
    }

    /// A log of one leak whose stack is the target's return address and
    /// an address in no module, with the test binary's module recorded
    /// as `path` (header cwd: `cwd`) and build-id `build_id`.
    fn log(path: &[u8], cwd: &str, build_id: &[u8]) -> Vec<u8> {
        let (_, _, bias, frame) = this_binary();
        let mut log = Log::new();
        log.header("", cwd)
            .module(bias, frame - 0x1000, frame + 0x1000, build_id, path)
            .stack(1, &[frame, 0x10])
            .events(1, &[alloc(1, 0x100, 24, 1)])
            .end(1, 0);
        log.build()
    }

    /// The frame objects of the JSON report's first group, and stderr.
    /// Whole stacks: these tests look at how each frame is resolved, the
    /// unknown one at the bottom included.
    fn report(dir: &Path, args: &[&str], log: &[u8]) -> (Vec<serde_json::Value>, String) {
        let mut all = vec!["leaks", "--json", "--full-stacks"];
        all.extend_from_slice(args);
        all.push("-");
        let o = run_in(Some(dir), &all, Some(log));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v = json(&o);
        let frames = v["groups"][0]["frames"].as_array().unwrap().clone();
        (frames, stderr(&o))
    }

    /// The first frame is the target function with its source location,
    /// still with its address and module; the one outside any module is
    /// its address alone.
    fn assert_symbolized(frames: &[serde_json::Value], err: &str) {
        let (_, _, bias, ip) = this_binary();
        let f = &frames[0];
        assert_eq!(f["function"], "mallocator_v2_symbolize_target", "{f}");
        assert!(
            f["file"].as_str().unwrap().ends_with("leaks_v2_cli.rs"),
            "{f}"
        );
        assert!(f["line"].as_u64().unwrap() > 0, "{f}");
        assert_eq!(f["ip"], ip, "{f}");
        assert_eq!(f["offset"], ip - bias, "{f}");
        assert!(f["object"].is_string(), "{f}");
        assert_eq!(frames.last().unwrap(), &serde_json::json!({"ip": 0x10}));
        assert!(err.is_empty(), "{err}");
    }

    #[test]
    fn frames_are_symbolized_from_any_directory() {
        let (exe, build_id, _, _) = this_binary();
        let elsewhere = tempfile::tempdir().unwrap();
        let log = log(exe.to_str().unwrap().as_bytes(), "/", &build_id);
        let (frames, err) = report(elsewhere.path(), &[], &log);
        assert_symbolized(&frames, &err);
        assert_eq!(frames[0]["object"], exe.to_str().unwrap());
        // The text report shows the same frame as `function at file:line`.
        let o = run_in(
            Some(elsewhere.path()),
            &["leaks", "--full-stacks", "-"],
            Some(&log),
        );
        let text = stdout(&o);
        assert!(
            text.contains("    mallocator_v2_symbolize_target at ")
                && text.contains("leaks_v2_cli.rs:")
                && text.contains("    [0x10]\n"),
            "{text}"
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_logs_working_directory() {
        let (exe, build_id, _, _) = this_binary();
        let dir = exe.parent().unwrap().to_str().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let log = log(name.as_bytes(), dir, &build_id);
        let (frames, err) = report(elsewhere.path(), &[], &log);
        assert_symbolized(&frames, &err);
    }

    #[test]
    fn binary_and_search_path_find_a_moved_object() {
        let (exe, build_id, _, _) = this_binary();
        let name = exe.file_name().unwrap().to_str().unwrap();
        let moved = format!("/no/such/dir/{name}");
        let log = log(moved.as_bytes(), "/", &build_id);
        let elsewhere = tempfile::tempdir().unwrap();
        let (frames, err) = report(elsewhere.path(), &["--binary", exe.to_str().unwrap()], &log);
        assert_symbolized(&frames, &err);
        let dir = exe.parent().unwrap().to_str().unwrap();
        let (frames, err) = report(
            elsewhere.path(),
            &["--search-path", "/no/such/place", "--search-path", dir],
            &log,
        );
        assert_symbolized(&frames, &err);
        // Not found anywhere: one warning, frames raw.
        let (frames, err) = report(elsewhere.path(), &[], &log);
        assert_eq!(frames[0]["object"], moved, "{frames:?}");
        assert!(frames[0].get("function").is_none(), "{frames:?}");
        assert!(
            err.contains(&format!("warning: <stdin>: {moved}: not found at {moved}")),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    #[test]
    fn a_rebuilt_object_is_not_used() {
        let (exe, build_id, bias, frame) = this_binary();
        let path = exe.to_str().unwrap();
        let mut wrong = build_id.clone();
        wrong[0] ^= 0xff;
        let elsewhere = tempfile::tempdir().unwrap();
        let (frames, err) = report(elsewhere.path(), &[], &log(path.as_bytes(), "/", &wrong));
        let raw = vec![
            serde_json::json!({"ip": frame, "object": path, "offset": frame - bias}),
            serde_json::json!({"ip": 0x10}),
        ];
        assert_eq!(frames, raw);
        assert!(
            err.contains(&format!(
                "warning: <stdin>: {path}: build-id mismatch: the log recorded"
            )),
            "{err}"
        );
        assert!(err.contains("its frames stay raw"), "{err}");
        // No build-id in the log, one in the file: not the same build either.
        let (frames, err) = report(elsewhere.path(), &[], &log(path.as_bytes(), "/", &[]));
        assert_eq!(frames, raw);
        assert!(err.contains("the log recorded none"), "{err}");
    }
}
