//! `mallocator trace` on C programs (`tests/trace/programs.c`, one mode
//! per case): each knows what it leaks, and the trace must find exactly
//! that, with the leak sites named, whatever way the program ends.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::ffi::OsStr;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mallocator");

/// Runs the tool `program` with `args`; panics with its messages when it
/// fails.
fn run<A: AsRef<OsStr>>(program: &str, args: &[A]) {
    let out = Command::new(program).args(args).output().unwrap();
    let args: Vec<_> = args.iter().map(AsRef::as_ref).collect();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the C compiler with `flags` then `args` (see [`run`]).
fn cc(flags: &[&str], args: &[&str]) {
    run("cc", &[flags, args].concat());
}

/// The test programs, built once: `programs`, `shell_like` beside it and
/// the plugins, with line
/// tables and without frame pointers (as distributions build), so that
/// every stack past its first frame needs the trace's DWARF unwinding.
fn programs() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/trace");
        let out =
            std::env::temp_dir().join(format!("mallocator-trace-test-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let flags = ["-O2", "-g", "-fomit-frame-pointer", "-Wall", "-Werror"];
        let cc = |args: &[&str]| cc(&flags, args);
        let exe = out.join("programs");
        cc(&[
            src.join("programs.c").to_str().unwrap(),
            "-pthread",
            "-ldl",
            "-o",
            exe.to_str().unwrap(),
        ]);
        let shell_like = out.join("shell_like");
        cc(&[
            src.join("shell_like.c").to_str().unwrap(),
            "-o",
            shell_like.to_str().unwrap(),
        ]);
        for (name, define) in [("libplugin.so", None), ("libplugin2.so", Some("-DSECOND"))] {
            let plugin = src.join("plugin.c");
            let lib = out.join(name);
            let mut args = vec!["-shared", "-fPIC", plugin.to_str().unwrap()];
            args.extend(define);
            args.extend(["-o", lib.to_str().unwrap()]);
            cc(&args);
        }
        exe
    })
}

/// A fresh directory for one test's files.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `mallocator trace --output LOG -- programs ARGS`: its output, and the
/// JSON leak report of the log.
fn trace(dir: &Path, args: &[&str]) -> (Output, Value) {
    trace_program(dir, programs(), args)
}

/// [`trace`] of `program`, LOG in `dir`.
fn trace_program(dir: &Path, program: &Path, args: &[&str]) -> (Output, Value) {
    let log = dir.join("events.log");
    let out = Command::new(BIN)
        .args(["trace", "--output", log.to_str().unwrap(), "--"])
        .arg(program)
        .args(args)
        .output()
        .unwrap();
    (out, json_report(&log))
}

/// The JSON leak report of the log at `path`, after checking that only
/// its owner can read it (it holds addresses). A process may allocate
/// nothing (one that only runs another program): its log has no events.
fn json_report(path: &Path) -> Value {
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    let report = Command::new(BIN)
        .args(["leaks", "--json", "--allow-empty"])
        .arg(path)
        .output()
        .unwrap();
    assert!(report.status.success(), "{report:?}");
    // Every process these tests trace ends its log, however it exits.
    let stderr = String::from_utf8_lossy(&report.stderr);
    assert!(
        !stderr.contains("cut short"),
        "{}: {stderr}",
        path.display()
    );
    serde_json::from_slice(&report.stdout).unwrap()
}

/// The leak groups whose stack goes through one of the test programs'
/// sources, `programs.c`, `plugin.c` or `shell_like.c` (the C library's own one-time allocations are left to it, and so are
/// the thread-local storage blocks it keeps for reuse when a thread the
/// program made ends), as (bytes, count, innermost function of those
/// files, its line).
const SOURCES: [&str; 3] = ["programs.c", "plugin.c", "shell_like.c"];

fn our_leaks(report: &Value) -> Vec<(u64, u64, String, u64)> {
    let mut found: Vec<_> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| {
            let frames = g["frames"].as_array()?;
            // Named so whether glibc's debug info is installed or not
            // (which names it `__GI__dl_allocate_tls`, its internal alias).
            let tls = |f: &Value| f["function"] == "_dl_allocate_tls";
            if frames.iter().any(tls) {
                return None;
            }
            let frame = frames.iter().find(|f| {
                f["file"]
                    .as_str()
                    .is_some_and(|file| SOURCES.iter().any(|s| file.ends_with(s)))
            })?;
            Some((
                g["bytes"].as_u64().unwrap(),
                g["count"].as_u64().unwrap(),
                frame["function"].as_str().unwrap_or("?").to_owned(),
                frame["line"].as_u64().unwrap_or(0),
            ))
        })
        .collect();
    found.sort();
    found
}

/// The line of `programs.c` holding `text`.
fn line_of(text: &str) -> u64 {
    let src = include_str!("trace/programs.c");
    1 + src.lines().position(|l| l.contains(text)).unwrap() as u64
}

fn exit_code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn every_function_of_the_malloc_family_and_its_leaks_by_site() {
    let dir = scratch();
    let (out, report) = trace(dir.path(), &["family"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    let leaks = our_leaks(&report);
    let sites: Vec<(u64, u64, &str)> = leaks.iter().map(|l| (l.0, l.1, l.2.as_str())).collect();
    assert_eq!(
        sites,
        [(40, 1, "family"), (256, 1, "family"), (300, 3, "leak_here")],
        "{report:#}"
    );
    let leak_here = leaks.iter().find(|l| l.2 == "leak_here").unwrap();
    assert_eq!(leak_here.3, line_of("char *p = malloc(100);"));
    let errors = &report["error_counts"];
    assert_eq!(errors["invalid_free"], 0, "{report:#}");
    assert_eq!(errors["double_free"], 0);
    assert!(errors["free_null"].as_u64().unwrap() >= 1);
}

#[test]
fn usable_sizes_survive_realloc_and_calloc_leaves_fresh_pages_alone() {
    let dir = scratch();
    let (out, report) = trace(dir.path(), &["sizes"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert_eq!(our_leaks(&report), [], "{report:#}");
    assert_eq!(report["error_counts"]["invalid_free"], 0, "{report:#}");
}

#[test]
fn sized_frees_free_their_blocks() {
    let dir = scratch();
    let (out, report) = trace(dir.path(), &["sized-frees"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert_eq!(our_leaks(&report), [], "{report:#}");
    assert_eq!(report["error_counts"]["invalid_free"], 0, "{report:#}");
}

#[test]
fn eight_threads_freeing_each_others_blocks() {
    let dir = scratch();
    let (out, report) = trace(dir.path(), &["threads"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    let leaks = our_leaks(&report);
    assert_eq!(leaks.len(), 1, "{leaks:?}");
    assert_eq!(
        (leaks[0].0, leaks[0].1, leaks[0].2.as_str()),
        (8 * 24, 8, "worker")
    );
    assert_eq!(report["error_counts"]["invalid_free"], 0);
}

#[test]
fn forks_while_threads_allocate_and_the_children_run_on() {
    let dir = scratch();
    let (out, report) = trace(dir.path(), &["fork"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert_eq!(our_leaks(&report), []);
    assert_eq!(report["error_counts"]["invalid_free"], 0);
}

/// The per-process logs `NAME.PID` in `dir` of a tree traced with
/// `--output NAME` and `--follow-fork` or `--follow-exec`, in order.
fn child_logs(dir: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = format!("{name}.");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect();
    found.sort();
    found
}

/// The logs of `trace --output LOG ARGS... -- programs MODE`: PROGRAM's,
/// then each child's (LOG.PID), as JSON reports.
fn trace_tree(dir: &Path, options: &[&str], mode: &str) -> (Output, Value, Vec<Value>) {
    let log = dir.join("tree.log");
    let out = Command::new(BIN)
        .args(["trace", "--output", log.to_str().unwrap()])
        .args(options)
        .arg("--")
        .arg(programs())
        .arg(mode)
        .output()
        .unwrap();
    let children = child_logs(dir, "tree.log");
    let main = json_report(&log);
    (out, main, children.iter().map(|c| json_report(c)).collect())
}

#[test]
fn forked_children_are_traced_each_into_its_own_log_when_asked() {
    let dir = scratch();
    let (out, main, children) = trace_tree(dir.path(), &["--follow-fork"], "fork");
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert_eq!(our_leaks(&main), []);
    assert_eq!(children.len(), 50, "one log per child");
    for child in &children {
        assert!(
            child["log"]["input"]["allocs"].as_u64().unwrap() >= 100,
            "{child:#}"
        );
        // The blocks it inherited are in its log: what it frees of them is
        // no unknown free, and what it leaves are blocks the other threads
        // had allocated when it was made.
        assert_eq!(child["error_counts"]["invalid_free"], 0, "{child:#}");
        assert!(our_leaks(child).iter().all(|l| l.2 == "pair"), "{child:#}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("a child: ").count(), 50, "{stderr}");
    // Without the option: PROGRAM's log alone.
    let dir = scratch();
    let (_, _, children) = trace_tree(dir.path(), &[], "fork");
    assert!(children.is_empty());
}

#[test]
fn a_program_and_its_child_that_allocate_nothing_leave_whole_logs() {
    // Their starts and their ends, not empty files (which read as text
    // logs of no lines), and no event of the tracker's own: the program
    // forks and waits, the child exits at once.
    let dir = scratch();
    let log = dir.path().join("idle.log");
    let out = Command::new(BIN)
        .args([
            "trace",
            "--follow-fork",
            "--output",
            log.to_str().unwrap(),
            "--",
        ])
        .arg(programs())
        .arg("idle-child")
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{out:?}");
    let children = child_logs(dir.path(), "idle.log");
    assert_eq!(children.len(), 1, "{children:?}");
    for log in [&log, &children[0]] {
        let report = json_report(log);
        assert_eq!(report["log"]["format"], "v2", "{report:#}");
        assert_eq!(report["log"]["warnings_total"], 0, "{report:#}");
        let input = &report["log"]["input"];
        assert_eq!(
            (&input["allocs"], &input["frees"]),
            (&0.into(), &0.into()),
            "{report:#}"
        );
    }
}

#[test]
fn programs_run_by_exec_are_traced_when_asked() {
    let dir = scratch();
    let (out, main, children) = trace_tree(dir.path(), &["--follow-exec"], "exec");
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert_eq!(our_leaks(&main), []);
    assert_eq!(children.len(), 1);
    let sites: Vec<(u64, u64)> = our_leaks(&children[0]).iter().map(|l| (l.0, l.1)).collect();
    assert_eq!(sites, [(40, 1), (256, 1), (300, 3)], "{:#}", children[0]);
    let dir = scratch();
    let (_, _, children) = trace_tree(dir.path(), &[], "exec");
    assert!(children.is_empty());
}

#[test]
fn a_program_that_replaces_itself_by_exec_leaves_a_whole_log() {
    // Every exec function fails once (the log goes on after each), then
    // the program becomes env (untraced) with the environment it gave
    // execle: its log ends there, with the events it still had in its
    // buffers.
    let dir = scratch();
    let (out, report) = trace(dir.path(), &["exec-fails"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "MALLOCATOR_TEST=execle\n"
    );
    let sites: Vec<(u64, u64)> = our_leaks(&report).iter().map(|l| (l.0, l.1)).collect();
    assert_eq!(sites, [(601, 1), (602, 1)], "{report:#}");
    assert_eq!(report["log"]["warnings_total"], 0, "{report:#}");
}

#[test]
fn a_program_that_defines_its_own_environment_functions_runs_its_children_untraced() {
    // As bash: its `unsetenv` changes nothing while the library starts.
    // Its child, given the environment it was given, is not traced, and
    // so leaves its log alone (it used to truncate it and write its own).
    let dir = scratch();
    let (out, report) = trace_program(dir.path(), &programs().with_file_name("shell_like"), &[]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{out:?}");
    let sites: Vec<(u64, u64)> = our_leaks(&report).iter().map(|l| (l.0, l.1)).collect();
    assert_eq!(sites, [(501, 1)]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_program_that_closes_every_descriptor_keeps_its_log_and_its_files() {
    // As OpenSSH and daemons at start: the log's descriptor is neither
    // closed (the log would end there) nor replaced; the program's own
    // file, opened at descriptor 3 after, gets only what it wrote.
    let dir = scratch();
    let own = dir.path().join("own.txt");
    let (out, report) = trace(dir.path(), &["close-all", own.to_str().unwrap()]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "dup2 refused 1\n");
    assert_eq!(
        std::fs::read_to_string(&own).unwrap(),
        "the program's own\n"
    );
    let sites: Vec<(u64, u64)> = our_leaks(&report).iter().map(|l| (l.0, l.1)).collect();
    assert_eq!(sites, [(701, 1), (702, 1)], "{report:#}");
}

#[test]
fn a_shell_script_that_redirects_descriptor_3_writes_only_its_own_lines() {
    // `exec 3>FILE` is a dup2 onto descriptor 3, where a log opened
    // first would have been: the log's records went into FILE.
    let dir = scratch();
    let file = dir.path().join("three.txt");
    let (out, report) = trace_program(
        dir.path(),
        Path::new("/bin/sh"),
        &[
            "-c",
            "exec 3>\"$1\"; echo line >&3",
            "sh",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "line\n");
    assert!(
        report["log"]["input"]["allocs"].as_u64().unwrap() > 0,
        "{report:#}"
    );
}

/// Threads whose first allocation is inside `pthread_getattr_np` (glibc's
/// allocates holding the lock of the thread it describes, the lock the
/// tracker's question for a thread's stack takes too): the program ends,
/// its log whole (a deadlock ends it by SIGALRM after 10 s).
#[test]
fn threads_whose_first_call_asks_for_a_threads_attributes() {
    let dir = scratch();
    let (out, report) = trace(dir.path(), &["getattr-first"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert_eq!(our_leaks(&report), []);
    assert!(
        report["log"]["input"]["allocs"].as_u64().unwrap() >= 3,
        "{report:#}"
    );
}

/// Threads cancelled while they allocate: cancelled in the program's
/// code only, never halfway through a log write, so the log is whole and
/// every event in it (`json_report` fails on a damaged one).
#[test]
fn threads_cancelled_while_they_allocate() {
    let dir = scratch();
    let (out, mut report) = trace(dir.path(), &["cancel"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    // The C library loads its unwinder at the first `pthread_cancel`, for
    // good: its one-time blocks are left to it.
    let by_cancel = |g: &Value| {
        g["frames"].as_array().unwrap().iter().any(|f| {
            f["function"]
                .as_str()
                .is_some_and(|name| name.trim_start_matches('_') == "pthread_cancel")
        })
    };
    let groups = report["groups"].as_array_mut().unwrap();
    groups.retain(|g| !by_cancel(g));
    assert_eq!(our_leaks(&report), []);
    assert_eq!(report["error_counts"]["invalid_free"], 0, "{report:#}");
}

#[test]
fn a_signal_handler_that_allocates() {
    let dir = scratch();
    let (out, report) = trace(dir.path(), &["signal"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    let leaks = our_leaks(&report);
    assert_eq!(leaks.len(), 1, "{leaks:?}");
    assert_eq!(
        (leaks[0].0, leaks[0].1, leaks[0].2.as_str()),
        (12, 1, "on_alarm")
    );
}

/// The functions of the group of `bytes` bytes leaked by `count`
/// blocks, innermost first (`?` where a frame has no name).
fn functions_of(report: &Value, bytes: u64, count: u64) -> Vec<String> {
    let groups = report["groups"].as_array().unwrap();
    let group = groups
        .iter()
        .find(|g| g["bytes"] == bytes && g["count"] == count)
        .unwrap_or_else(|| panic!("no group of {bytes} bytes in {count}: {report:#}"));
    group["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Whether `names` holds `wanted` in that order (others may lie between).
fn in_order(names: &[String], wanted: &[&str]) -> bool {
    let mut rest = names.iter();
    wanted.iter().all(|w| rest.any(|n| n == w))
}

#[test]
fn a_loaded_and_unloaded_library_that_leaks() {
    let dir = scratch();
    let plugin = programs().with_file_name("libplugin.so");
    let (out, report) = trace(dir.path(), &["plugin", plugin.to_str().unwrap()]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    // The library was loaded after the unwinder's first look at the
    // loaded objects: its frame, built without frame pointers, is unwound
    // by its call-frame information all the same, into the caller's.
    // (`main` calls `plugin` last: a tail call, no frame of its own.)
    let stack = functions_of(&report, 64, 1);
    assert!(in_order(&stack, &["plugin_leak", "plugin"]), "{stack:?}");
}

#[test]
fn a_library_loaded_where_an_unloaded_one_was_is_named_for_itself() {
    let dir = scratch();
    let first = programs().with_file_name("libplugin.so");
    let second = programs().with_file_name("libplugin2.so");
    let (out, report) = trace(
        dir.path(),
        &[
            "replugin",
            first.to_str().unwrap(),
            second.to_str().unwrap(),
        ],
    );
    assert_eq!(exit_code(&out), 0, "{out:?}");
    // Otherwise this test would not test what it is for.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "loaded where the first was\n"
    );
    // Each leak's innermost frame: its library, and its line there.
    let src = include_str!("trace/plugin.c");
    let line = |text: &str| 1 + src.lines().position(|l| l.contains(text)).unwrap() as u64;
    let innermost = |bytes: u64| {
        let group = report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["bytes"] == bytes && g["count"] == 1)
            .unwrap_or_else(|| panic!("no leak of {bytes} bytes: {report:#}"));
        let frame = group["frames"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["function"] == "plugin_leak")
            .unwrap_or_else(|| panic!("{group:#}"));
        let object = frame["object"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        (object.to_owned(), frame["line"].as_u64().unwrap())
    };
    assert_eq!(innermost(64), ("libplugin.so".into(), line("malloc(64)")));
    assert_eq!(innermost(65), ("libplugin2.so".into(), line("malloc(65)")));
    // Unwound by its own call-frame information, not the first library's.
    for bytes in [64, 65] {
        let stack = functions_of(&report, bytes, 1);
        assert!(in_order(&stack, &["plugin_leak", "replugin"]), "{stack:?}");
    }
}

#[test]
fn stacks_without_frame_pointers_hold_every_caller() {
    let dir = scratch();
    let (out, report) = trace(dir.path(), &["churn", "3000"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    // Blocks 0, 1000 and 2000 leaked (16, 66 and 51 bytes, one stack).
    // `middle` and `main` end in tail calls: no frames of their own
    // (Valgrind shows the same stack).
    let stack = functions_of(&report, 16 + 66 + 51, 3);
    assert!(
        in_order(&stack, &["make_block", "churn_one", "churn_pairs"]),
        "{stack:?}"
    );
    // Frame pointers only: the walk stops after the caller of malloc.
    let log = dir.path().join("fp.log");
    let out = Command::new(BIN)
        .args([
            "trace",
            "--frame-pointers",
            "--output",
            log.to_str().unwrap(),
            "--",
        ])
        .arg(programs())
        .args(["churn", "3000"])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{out:?}");
    let stack = functions_of(&json_report(&log), 16 + 66 + 51, 3);
    assert_eq!(stack, ["make_block"]);
}

/// Runs `program` with `args`; panics with its error output if it fails.
#[test]
fn a_stripped_program_is_named_from_its_separate_debug_info() {
    // As distributions ship programs: stripped, their debug info in a
    // file named by their build-id (Debian's -dbgsym packages, under
    // /usr/lib/debug). `--debug-dir` names another such folder.
    let dir = scratch();
    let exe = dir.path().join("stripped");
    std::fs::copy(programs(), &exe).unwrap();
    let debug = dir.path().join("programs.debug");
    run(
        "objcopy",
        &[
            OsStr::new("--only-keep-debug"),
            exe.as_os_str(),
            debug.as_os_str(),
        ],
    );
    run("strip", &[OsStr::new("--strip-all"), exe.as_os_str()]);
    let data = std::fs::read(&exe).unwrap();
    let id = object::Object::build_id(&object::File::parse(&*data).unwrap())
        .unwrap()
        .expect("cc links with a build-id")
        .to_vec();
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let debug_dir = dir.path().join("debug");
    let place = debug_dir.join(format!(".build-id/{}/{}.debug", &hex[..2], &hex[2..]));
    std::fs::create_dir_all(place.parent().unwrap()).unwrap();
    std::fs::rename(&debug, &place).unwrap();

    let (out, without) = trace_program(dir.path(), &exe, &["family"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert_eq!(our_leaks(&without), [], "{without:#}");
    let log = dir.path().join("events.log");
    let report = Command::new(BIN)
        .args(["leaks", "--json", "--debug-dir"])
        .arg(&debug_dir)
        .arg(&log)
        .output()
        .unwrap();
    assert!(report.status.success(), "{report:?}");
    let with: Value = serde_json::from_slice(&report.stdout).unwrap();
    let (_, unstripped) = trace(scratch().path(), &["family"]);
    assert_eq!(our_leaks(&with), our_leaks(&unstripped), "{with:#}");
    assert!(!our_leaks(&with).is_empty());
}

#[test]
fn every_way_out_leaves_a_whole_log() {
    for (mode, status, leaked, function) in [
        ("destructor", 7, 33, "last_words"),
        ("_exit", 4, 21, "main"),
        ("abort", 128 + libc::SIGABRT, 22, "main"),
        // The program's own `at_quick_exit` function ran before the end.
        ("quick_exit", 5, 78, "last_quick_words"),
    ] {
        let dir = scratch();
        let (out, report) = trace(dir.path(), &[mode]);
        assert_eq!(exit_code(&out), status, "{mode}: {out:?}");
        let leaks = our_leaks(&report);
        assert!(
            leaks
                .iter()
                .any(|l| l.0 == leaked && l.1 == 1 && l.2 == function),
            "{mode}: {leaks:?}"
        );
        if mode == "abort" {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("was killed by signal 6"), "{stderr}");
        }
        assert_eq!(tracker_blocks(&report), 0, "{mode}: {report:#}");
    }
}

/// The leak groups made from inside the preload library: the tracker's
/// own blocks (the C library allocates for it, to register a thread's
/// destructors, say), which it must never report. Visible when the
/// program ends without running the destructors that free them.
fn tracker_blocks(report: &Value) -> usize {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| {
            g["frames"].as_array().unwrap().iter().any(|f| {
                f["object"]
                    .as_str()
                    .is_some_and(|o| o.ends_with("/libmallocator_preload.so"))
            })
        })
        .count()
}

#[test]
fn without_output_the_report_goes_to_stderr() {
    let out = Command::new(BIN)
        .args(["trace", "--"])
        .arg(programs())
        .arg("family")
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Leaks: "), "{stderr}");
    assert!(stderr.contains("leak_here at "), "{stderr}");
    assert!(out.stdout.is_empty(), "the program's own output only");
}

/// `--error-exitcode N` makes a run whose report finds anything exit N,
/// over the program's own code, whichever process of the traced tree it
/// was found in; a run that finds nothing (or only suppressed leaks)
/// keeps the program's code, and a death by signal its 128+N.
#[test]
fn error_exitcode_fails_a_run_whose_report_finds_leaks_or_bad_frees() {
    let dir = scratch();
    let code = |options: &[&str], mode: &str| {
        let out = Command::new(BIN)
            .arg("trace")
            .args(options)
            .arg("--")
            .arg(programs())
            .arg(mode)
            .output()
            .unwrap();
        (
            exit_code(&out),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let fail = ["--error-exitcode", "23"];
    // Leaks; leaks in a program that exits 7.
    assert_eq!(code(&fail, "family").0, 23);
    assert_eq!(code(&[], "family").0, 0);
    assert_eq!(code(&fail, "destructor").0, 23);
    // A double free, no leak.
    let (status, stderr) = code(&fail, "double-free");
    assert_eq!(status, 23, "{stderr}");
    assert!(stderr.contains("Double frees ("), "{stderr}");
    assert!(
        stderr.contains("0 lost blocks, 1 bad frees: exiting with status 23"),
        "{stderr}"
    );
    assert_eq!(code(&[], "double-free").0, 0);
    // Nothing found.
    assert_eq!(code(&fail, "peak").0, 0);
    let supp = dir.path().join("destructor.supp");
    std::fs::write(&supp, "leak:last_words\n").unwrap();
    let suppressed = [&fail[..], &["--suppressions", supp.to_str().unwrap()]].concat();
    assert_eq!(code(&suppressed, "destructor").0, 7);
    // A leak in a child, found only when the child is traced.
    let follow = [&fail[..], &["--follow-fork"]].concat();
    assert_eq!(code(&follow, "leaky-child").0, 23);
    assert_eq!(code(&fail, "leaky-child").0, 0);
    // Killed by SIGABRT after a leak.
    assert_eq!(code(&fail, "abort").0, 128 + 6);
    // Out of range, or with no report to find anything in: usage errors.
    let log = dir.path().join("log");
    for bad in [
        &["--error-exitcode", "0"][..],
        &["--error-exitcode", "256"],
        &["--error-exitcode", "1", "--output", log.to_str().unwrap()],
    ] {
        assert_eq!(code(bad, "peak").0, 2, "{bad:?}");
    }
    assert!(!log.exists());
}

/// The blocks live at exit are classified as memcheck does, by a scan of
/// the program's memory written into the log: in the JSON report each
/// group has its class; the text report lists the lost ones and only
/// counts the reachable ones; `--error-exitcode` fails on lost blocks.
#[test]
fn leaks_are_classified_by_a_scan_of_memory_at_exit() {
    let dir = scratch();
    let (out, report) = trace(dir.path(), &["reachability"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    let mut classes: Vec<(String, u64, u64, String)> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| {
            let frames = g["frames"].as_array()?;
            let ours = frames.iter().find(|f| {
                f["file"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("programs.c"))
            })?;
            Some((
                ours["function"].as_str()?.to_owned(),
                g["bytes"].as_u64()?,
                g["count"].as_u64()?,
                g["kind"].as_str()?.to_owned(),
            ))
        })
        .collect();
    classes.sort();
    let class = |f: &str, bytes, count, kind: &str| (f.to_owned(), bytes, count, kind.to_owned());
    assert_eq!(
        classes,
        [
            class("list_node", 48, 1, "definitely_lost"),
            class("list_node", 96, 2, "indirectly_lost"),
            class("middle_block", 64, 1, "possibly_lost"),
            class("reachable_block", 48, 1, "still_reachable"),
        ],
        "{report:#}"
    );

    let out = Command::new(BIN)
        .args(["trace", "--error-exitcode", "23", "--"])
        .arg(programs())
        .arg("reachability")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(exit_code(&out), 23, "{stderr}");
    for line in [
        "   definitely lost: 48 bytes in 1 block\n",
        "   indirectly lost: 96 bytes in 2 blocks\n",
        "     possibly lost: 64 bytes in 1 block\n",
        ": 96 bytes in 2 blocks, indirectly lost\n    list_node at ",
        ": 64 bytes in 1 block, possibly lost\n    middle_block at ",
        "3 lost blocks, 0 bad frees: exiting with status 23",
    ] {
        assert!(stderr.contains(line), "{line:?} in {stderr}");
    }
    assert!(stderr.contains("   still reachable: "), "{stderr}");
    assert!(!stderr.contains("reachable_block"), "{stderr}");
}

/// A program that made a page of a block unreadable (a guard page) is
/// not killed by the leak scan at exit, which reads around it.
#[test]
fn the_leak_scan_reads_around_a_page_the_program_made_unreadable() {
    let dir = scratch();
    let (out, report) = trace(dir.path(), &["guard-page"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    // The blocks `guard_page` allocated: 40 bytes, and 3 pages.
    let mut ours: Vec<(u64, &str)> = (report["groups"].as_array().unwrap().iter())
        .filter(|g| {
            let frames = g["frames"].as_array().unwrap();
            frames.iter().any(|f| f["function"] == "guard_page")
        })
        .map(|g| (g["bytes"].as_u64().unwrap(), g["kind"].as_str().unwrap()))
        .collect();
    ours.sort();
    assert_eq!(ours.len(), 2, "{report:#}");
    assert_eq!(ours[0], (40, "still_reachable"), "{report:#}");
    assert_eq!(ours[1].1, "still_reachable", "{report:#}");
    assert!(ours[1].0 >= 3 * 4096, "{report:#}");
}

/// The stacks that held the most at the heap's peak: in the report on
/// stderr when asked for, and in the log's JSON report, named from the
/// program's debug info.
#[test]
fn the_peak_is_listed_by_the_stacks_that_held_it() {
    let out = Command::new(BIN)
        .args(["trace", "--peak-limit", "1", "--"])
        .arg(programs())
        .arg("peak")
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak = &stderr[stderr.find("Peak heap use: ").expect(&stderr)..];
    // One stack for the three calls of `peak_big`, which the compiler may
    // make from several addresses of one line (an unrolled loop).
    let big = peak.find("  #1: 300000 bytes in 3 blocks\n").expect(peak);
    let more = peak.find("  ... 1 more allocation stack").expect(peak);
    assert!(peak[big..more].contains("peak_big at "), "{peak}");
    assert!(!peak.contains("peak_small"), "{peak}");

    let dir = scratch();
    let (out, report) = trace(dir.path(), &["peak"]);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    let consumers = report["log"]["peak_consumers"].as_array().unwrap();
    let first = |g: &Value| {
        let frames = g["frames"].as_array().unwrap();
        let ours = frames.iter().find(|f| {
            f["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("programs.c"))
        });
        (
            g["bytes"].as_u64().unwrap(),
            g["count"].as_u64().unwrap(),
            ours.map(|f| f["function"].clone()),
        )
    };
    assert_eq!(
        first(&consumers[0]),
        (300000, 3, Some("peak_big".into())),
        "{report:#}"
    );
    assert_eq!(
        first(&consumers[1]),
        (10000, 10, Some("peak_small".into())),
        "{report:#}"
    );
    assert!(
        report["log"]["heap"]["peak_bytes"].as_u64().unwrap() >= 310000,
        "{report:#}"
    );
}

#[test]
fn static_programs_and_those_setuid_to_another_user_are_refused() {
    let dir = scratch();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/trace/plugin.c");
    let main = dir.path().join("main.c");
    std::fs::write(&main, "int main(void) { return 0; }\n").unwrap();
    let exe = dir.path().join("static");
    cc(
        &["-static"],
        &[
            main.to_str().unwrap(),
            src.to_str().unwrap(),
            "-o",
            exe.to_str().unwrap(),
        ],
    );
    let out = Command::new(BIN)
        .args(["trace", "--"])
        .arg(&exe)
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is statically linked"),
        "{out:?}"
    );

    // Setuid to its caller: the loader runs it as any program.
    let setuid = dir.path().join("setuid");
    std::fs::copy(programs(), &setuid).unwrap();
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let run = || {
        Command::new(BIN)
            .args(["trace", "--"])
            .arg(&setuid)
            .arg("family")
            .output()
            .unwrap()
    };
    let out = run();
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("leak_here at "));
    // Setuid to another user: refused, unless the file system ignores
    // setuid bits. Only root can give the file away.
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: a program setuid to another user is not tried");
        return;
    }
    std::os::unix::fs::chown(&setuid, Some(65534), None).unwrap();
    // chown clears the setuid bit.
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let out = run();
    if nosuid(dir.path()) {
        assert_eq!(exit_code(&out), 0, "nosuid: traced as any program: {out:?}");
    } else {
        assert_eq!(exit_code(&out), 2, "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is setuid"),
            "{out:?}"
        );
    }
    // A caller whose effective user is not its real one passes its
    // effective user on to any program it runs, so the loader runs even a
    // plain one in secure mode: refused, whatever the mount.
    let plain = dir.path().join("plain");
    std::fs::copy(programs(), &plain).unwrap();
    let mut command = Command::new(BIN);
    command.args(["trace", "--"]).arg(&plain).arg("family");
    // SAFETY: `setreuid` is async-signal-safe; as root, any ids may be set.
    unsafe {
        command.pre_exec(|| match libc::setreuid(65534, 0) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        })
    };
    let out = command.output().unwrap();
    assert_eq!(exit_code(&out), 2, "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("effective user"),
        "{out:?}"
    );
}

/// Whether the file system holding `dir` is mounted `nosuid`.
fn nosuid(dir: &Path) -> bool {
    let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; `fs` is written only.
    let mut fs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut fs) }, 0);
    fs.f_flag & libc::ST_NOSUID != 0
}

#[test]
fn the_log_is_created_new_and_never_through_a_link() {
    let dir = scratch();
    let log = dir.path().join("log");
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me").unwrap();
    symlink(&target, &log).unwrap();
    let run = |force: bool| {
        let mut c = Command::new(BIN);
        c.args(["trace", "--output", log.to_str().unwrap()]);
        if force {
            c.arg("--force");
        }
        c.arg("--").arg(programs()).arg("family").output().unwrap()
    };
    let out = run(false);
    assert_eq!(exit_code(&out), 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{out:?}"
    );
    let out = run(true);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert!(
        !log.symlink_metadata().unwrap().is_symlink(),
        "the link was replaced"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
}

#[test]
fn a_missing_program_is_an_error() {
    let out = Command::new(BIN)
        .args(["trace", "--", "no-such-program-anywhere"])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such program"));
}

#[test]
fn report_settings_from_the_shell_do_not_reach_the_program() {
    let out = Command::new(BIN)
        .args(["trace", "--"])
        .arg(programs())
        .arg("family")
        .env("MALLOCATOR_LEAKS", "stderr")
        .env("MALLOCATOR_LEAKS_EXITCODE", "23")
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "the program's status: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("MALLOCATOR_LEAKS_EXITCODE is not passed to the program"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("Leaks: ").count(),
        1,
        "the trace's alone: {stderr}"
    );

    // Exec'd programs stay untraced without --follow-exec, and so leave
    // PROGRAM's log whole.
    let dir = scratch();
    let log = dir.path().join("tree.log");
    let out = Command::new(BIN)
        .args(["trace", "--output", log.to_str().unwrap(), "--"])
        .arg(programs())
        .arg("exec")
        .env("MALLOCATOR_FOLLOW_EXEC", "1")
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert_eq!(our_leaks(&json_report(&log)), []);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_closed_standard_error_keeps_the_programs_status() {
    let mut child = Command::new(BIN)
        .args(["trace", "--"])
        .arg(programs())
        .arg("destructor")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    assert_eq!(child.wait().unwrap().code(), Some(7));
}

#[test]
fn a_run_that_fails_leaves_no_log_and_bad_options_stop_it_before_the_program() {
    let dir = scratch();
    let log = dir.path().join("log");
    // A directory cannot be run.
    let out = Command::new(BIN)
        .args(["trace", "--output", log.to_str().unwrap(), "--"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 2, "{out:?}");
    assert!(!log.exists(), "the empty log was removed");

    let ran = dir.path().join("ran");
    let out = Command::new(BIN)
        .args(["trace", "--suppressions"])
        .arg(dir.path().join("missing.supp"))
        .args(["--", "sh", "-c"])
        .arg(format!("touch {}", ran.display()))
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 2, "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.supp"));
    assert!(!ran.exists(), "the program did not run");

    // The tracker reads the path from the environment, as text.
    use std::os::unix::ffi::OsStrExt;
    let not_text = dir.path().join(std::ffi::OsStr::from_bytes(b"\xff.log"));
    let out = Command::new(BIN)
        .arg("trace")
        .arg("--output")
        .arg(&not_text)
        .arg("--")
        .arg(programs())
        .arg("family")
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 2, "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be UTF-8"));
    assert!(!not_text.exists());
}

#[test]
fn logs_left_by_an_earlier_tree_are_not_taken_for_this_ones() {
    let dir = scratch();
    let stale = dir.path().join("tree.log.1");
    std::fs::write(&stale, "an earlier run's").unwrap();
    let run = |force: bool| {
        let mut c = Command::new(BIN);
        c.args(["trace", "--follow-fork", "--output"])
            .arg(dir.path().join("tree.log"));
        if force {
            c.arg("--force");
        }
        c.arg("--").arg(programs()).arg("family").output().unwrap()
    };
    let out = run(false);
    assert_eq!(exit_code(&out), 2, "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tree.log.1 exists"),
        "{out:?}"
    );
    let out = run(true);
    assert_eq!(exit_code(&out), 0, "{out:?}");
    assert!(!stale.exists());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("a child"));
}

#[test]
fn a_relative_log_path_holds_for_a_child_in_another_directory() {
    let dir = scratch();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "trace",
            "--follow-exec",
            "--output",
            "tree.log",
            "--",
            "sh",
            "-c",
        ])
        // Not the shell's last command, which it would exec in its place.
        .arg(format!("cd / && {} family; exit 0", programs().display()))
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{out:?}");
    let children = child_logs(dir.path(), "tree.log");
    assert_eq!(children.len(), 1, "{children:?}");
    let leaks = our_leaks(&json_report(&children[0]));
    assert!(leaks.iter().any(|l| l.2 == "leak_here"), "{leaks:?}");
}

#[test]
fn a_setting_that_is_not_text_is_reported() {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(BIN)
        .args(["trace", "--"])
        .arg(programs())
        .arg("family")
        .env("MALLOCATOR_DEPTH", std::ffi::OsStr::from_bytes(b"1\xff"))
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("MALLOCATOR_DEPTH=1\u{fffd} is not UTF-8"),
        "{stderr}"
    );
}

/// A library initialised before the preload library registers its fork
/// handlers first, so they run while the tracker's hold every tracker
/// lock (the program checks that they do: exit status 4 otherwise); what
/// they allocate and free there is recorded once the locks are free, and
/// the program neither hangs nor loses those events.
#[test]
fn fork_handlers_of_a_library_loaded_before_the_tracker_may_allocate() {
    let dir = scratch();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/trace");
    let cc = |args: &[&str]| cc(&["-O2", "-g", "-Wall", "-Werror"], args);
    let lib_dir = dir.path().to_str().unwrap();
    cc(&[
        "-shared",
        "-fPIC",
        src.join("fork_handlers_lib.c").to_str().unwrap(),
        "-o",
        &format!("{lib_dir}/libforkhandlers.so"),
    ]);
    let exe = dir.path().join("fork_handlers");
    cc(&[
        src.join("fork_handlers.c").to_str().unwrap(),
        &format!("-L{lib_dir}"),
        &format!("-Wl,-rpath,{lib_dir}"),
        "-lforkhandlers",
        "-o",
        exe.to_str().unwrap(),
    ]);
    let log = dir.path().join("events.log");
    let mut child = Command::new(BIN)
        .args(["trace", "--output", log.to_str().unwrap(), "--"])
        .arg(&exe)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // A group of its own, so that a hung program goes with the trace.
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: signals the process group made above.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            panic!("the traced program hung at fork");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let report = json_report(&log);
    let leaks: Vec<(u64, u64)> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["bytes"].as_u64().unwrap(), g["count"].as_u64().unwrap()))
        .collect();
    assert!(leaks.contains(&(77, 1)), "{report:#}");
    assert!(leaks.contains(&(90, 1)), "the probe: {report:#}");
    assert!(!leaks.iter().any(|l| l.0 == 100), "{report:#}");
}
