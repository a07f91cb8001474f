//! Both producers of the JSON leak report against the one schema,
//! `docs/report-schema.json` (described in `docs/report-schema.md`):
//! `mallocator leaks --json` on text and v2 logs (hand-written ones with
//! every kind of error, and the tracker's own logs, symbolized), and the
//! in-process tracker's report, from `Backtracing::report` and from the
//! global tracker's exit report in a child process. A producer that
//! renames, adds or drops a field, or writes a null, fails here; so does
//! a schema too loose to notice (the drift cases at the end).
#![cfg(not(miri))]

#[path = "support/cli.rs"]
mod cli;
#[path = "support/v2_log.rs"]
mod v2_log;

use cli::{json, run, stderr};
use mallocator::backtracing::{Backtracing, GlobalBacktracing};
use mallocator::Valloc;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use v2_log::{alloc, free, Log, NO_STACK};

// The exit report comes from this binary run as a child, tracked.
#[global_allocator]
static GLOBAL: GlobalBacktracing = GlobalBacktracing::new();

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/report-schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("docs/report-schema.json is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema()).expect("docs/report-schema.json is a JSON Schema")
}

/// Every way `report` breaks the schema, one line each.
fn violations(v: &jsonschema::Validator, report: &Value) -> Vec<String> {
    v.iter_errors(report)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[track_caller]
fn assert_valid(what: &str, report: &Value) {
    let problems = violations(&validator(), report);
    assert!(
        problems.is_empty(),
        "{what} breaks docs/report-schema.json:\n  {}\nin\n{report:#}",
        problems.join("\n  ")
    );
}

/// `mallocator leaks` with `args` on `stdin`: its JSON report.
fn leaks_json(args: &[&str], stdin: &[u8]) -> Value {
    let mut all = vec!["leaks"];
    all.extend_from_slice(args);
    let out = run(&all, Some(stdin));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    json(&out)
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/c_glibc.log")
}

/// The kinds of the report's errors, in order.
fn kinds(report: &Value) -> Vec<&str> {
    report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

const EVERY_LOG_KIND: [&str; 5] = [
    "double_free",
    "invalid_free",
    "null_result",
    "free_null",
    "live_address_reused",
];

#[test]
fn text_log_reports_follow_the_schema() {
    let log = std::fs::read(fixture()).unwrap();
    let report = leaks_json(&["--json"], &log);
    // The fixture has every kind of error a log can show.
    assert_eq!(kinds(&report), EVERY_LOG_KIND);
    assert_valid("a text log's report", &report);
    assert_valid(
        "a --top 1 report",
        &leaks_json(&["--json", "--top", "1"], &log),
    );
    // Lenient mode: warnings with line numbers, and frames no form fits.
    let damaged = b"+++ ALLOC:1:0x0000000000000010:16:8\nnot a glibc frame\n---\n\
+++ ALLOC:bad:0x20:16:8\n\
+++ ALLOC:1:0x0000000000000030:16:9\n()\n---\n";
    let report = leaks_json(&["--json", "--lenient"], damaged);
    assert_eq!(report["log"]["warnings_total"], 1);
    assert_eq!(report["groups"][0]["frames"][0], json!({"text": "()"}));
    assert_eq!(
        report["groups"][1]["frames"][0],
        json!({"text": "not a glibc frame"})
    );
    assert_valid("a lenient report", &report);
    let empty = leaks_json(&["--json", "--allow-empty"], b"");
    assert_valid("the report of an empty log", &empty);
}

/// A v2 log with a module, stacks in and out of it, every kind of error,
/// and an event naming a stack never defined (read leniently).
fn v2_sample() -> Log {
    let mut log = Log::new();
    log.header("/opt/app", "/opt")
        .module(0x1000, 0x1000, 0x2000, &[0xab, 0xcd], b"/opt/app")
        .stack(1, &[0x1010, 0x1020])
        .stack(2, &[0x5000])
        .events(
            1,
            &[
                alloc(1, 0x10, 100, 1),
                alloc(2, 0x20, 24, 2),
                free(3, 0x20, 2),
                free(4, 0x20, 1),
                free(5, 0x99, 2),
                alloc(6, 0, 1 << 40, 1),
                free(7, 0, NO_STACK),
                alloc(8, 0x40, 8, 2),
                alloc(9, 0x40, 16, 1),
                alloc(10, 0x50, 8, 7),
            ],
        )
        .reachability(11, &[(0x10, 1), (0x40, 4)])
        .end(10, 0);
    log
}

#[test]
fn v2_log_reports_follow_the_schema() {
    let log = v2_sample().build();
    let report = leaks_json(&["--json", "--lenient"], &log);
    assert_eq!(kinds(&report), EVERY_LOG_KIND);
    assert_eq!(report["log"]["format"], "v2");
    // The module's object is not on this machine: raw frames with their
    // module and offset; the stack never defined is a note.
    assert_eq!(
        report["groups"][0]["frames"][0],
        json!({"ip": 0x1010, "object": "/opt/app", "offset": 0x10})
    );
    let notes = report["groups"].as_array().unwrap().iter().any(|g| {
        g["frames"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("not defined"))
    });
    assert!(notes, "{report:#}");
    assert!(report["log"]["warnings_total"].as_u64() > Some(0));
    // The leak scan's classes, and a block it did not see (allocated with
    // a stack never defined, then not classified).
    assert_eq!(report["groups"][0]["kind"], "definitely_lost");
    let kinds: Vec<&Value> = (report["groups"].as_array().unwrap().iter())
        .map(|g| &g["kind"])
        .collect();
    assert!(kinds.contains(&&json!("still_reachable")), "{report:#}");
    assert!(kinds.contains(&&Value::Null), "{report:#}");
    assert_valid("a v2 log's report", &report);
}

/// The tracker of this test writes a log of a leak, a double free and an
/// invalid free; `mallocator leaks --json --symbolize` reads it.
#[cfg(unix)]
#[test]
fn the_trackers_own_logs_read_back_follow_the_schema() {
    use mallocator::backtracing::{Config, LogFormat, LogTarget};
    for (format, args) in [
        (LogFormat::Firedancer, &["--json", "--symbolize"][..]),
        (LogFormat::Compact, &["--json"][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let path_str: &'static str = Box::leak(path.to_str().unwrap().to_owned().into_boxed_str());
        let tracker = Backtracing::with_config(
            Valloc::libc(),
            Config {
                log: LogTarget::Path(path_str),
                log_format: format,
                ..Config::DEFAULT
            },
        );
        leak_and_misfree(tracker.valloc());
        tracker.flush_log();
        let report = leaks_json(args, &std::fs::read(&path).unwrap());
        // Symbolized from this test binary's debug info.
        let located = report["groups"].as_array().unwrap().iter().any(|g| {
            g["frames"].as_array().unwrap().iter().any(|f| {
                f["file"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("report_schema.rs"))
            })
        });
        assert!(located, "{format:?}: {report:#}");
        assert_valid(&format!("the report of a {format:?} log"), &report);
    }
}

/// A leak, a double free and an invalid free through `v`.
#[inline(never)]
fn leak_and_misfree(v: Valloc<'_>) -> *mut u8 {
    let leaked = std::hint::black_box(v.malloc(16, 48));
    let p = v.malloc(16, 24);
    // SAFETY: one valid free; the second free and the free of an address
    // never handed out are the bugs under test, which the tracker catches
    // and does not pass on.
    unsafe {
        v.free(p);
        v.free(p);
        v.free(0x1000 as *mut u8);
    }
    leaked
}

#[test]
fn in_process_reports_follow_the_schema() {
    let tracker = Backtracing::new(Valloc::libc());
    let leaked = leak_and_misfree(tracker.valloc());
    let report: Value = serde_json::from_str(&tracker.report().to_json()).unwrap();
    assert_eq!(report["source"], "in_process");
    assert_eq!(kinds(&report), ["double_free", "invalid_free"]);
    assert_valid("Backtracing::report", &report);
    // A scope's report: no errors.
    let scope = tracker.scope();
    let v = tracker.valloc();
    let p = v.malloc(8, 8);
    let report: Value = serde_json::from_str(&scope.leaks().to_json()).unwrap();
    assert_eq!(report["leaked_blocks"], 1);
    assert_valid("Scope::leaks", &report);
    // SAFETY: both came from this tracker and are freed once.
    unsafe {
        v.free(p);
        v.free(leaked);
    }
    let empty = mallocator::backtracing::LeakReport::default().to_json();
    assert_valid("an empty report", &serde_json::from_str(&empty).unwrap());
}

/// A block the child keeps for good (still reachable at exit).
static KEPT: std::sync::atomic::AtomicPtr<u8> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

#[test]
fn the_exit_report_follows_the_schema() {
    if std::env::var_os("REPORT_SCHEMA_CHILD").is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exit.json");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_leaks_and_misfrees",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env("REPORT_SCHEMA_CHILD", "1")
        .env("MALLOCATOR_LEAKS", &path)
        .env("MALLOCATOR_LEAKS_FORMAT", "json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&path).expect("the child wrote its exit report");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["source"], "in_process");
    assert_eq!(
        report["error_counts"],
        json!({"double_free": 1, "invalid_free": 1})
    );
    if cfg!(target_os = "linux") {
        // The exit report classifies reachability (Linux only).
        let kinds: Vec<&Value> = report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| &g["kind"])
            .collect();
        assert!(kinds.contains(&&json!("definitely_lost")), "{report:#}");
        assert!(kinds.contains(&&json!("still_reachable")), "{report:#}");
    }
    assert_valid("the global tracker's exit report", &report);
}

/// Run only as the child of the test above.
#[test]
#[ignore = "run by the_exit_report_follows_the_schema"]
fn child_leaks_and_misfrees() {
    if std::env::var_os("REPORT_SCHEMA_CHILD").is_none() {
        return;
    }
    std::hint::black_box(Box::leak(vec![1u8; 777].into_boxed_slice()));
    KEPT.store(
        Box::leak(vec![2u8; 555].into_boxed_slice()).as_mut_ptr(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let layout = std::alloc::Layout::from_size_align(32, 8).unwrap();
    let foreign = Valloc::libc().malloc(8, 32);
    // SAFETY: one valid allocation and free; the second free and the free
    // of a block the tracker never handed out are the bugs under test,
    // which it catches without passing them on.
    unsafe {
        let p = std::alloc::alloc(layout);
        std::alloc::dealloc(p, layout);
        std::alloc::dealloc(p, layout);
        std::alloc::dealloc(foreign, layout);
        Valloc::libc().free(foreign);
    }
}

/// A schema that lets these through would not catch a producer's drift.
#[test]
fn the_schema_rejects_drift() {
    let v = validator();
    let log_report = leaks_json(&["--json"], &std::fs::read(fixture()).unwrap());
    let tracker = Backtracing::new(Valloc::libc());
    let leaked = leak_and_misfree(tracker.valloc());
    let in_process: Value = serde_json::from_str(&tracker.report().to_json()).unwrap();
    // SAFETY: `leaked` came from this tracker.
    unsafe { tracker.valloc().free(leaked) };
    type Change = fn(&mut Value);
    let drifts: [(&str, Change); 14] = [
        ("a renamed field", |r| {
            let n = r.as_object_mut().unwrap().remove("leaked_bytes").unwrap();
            r["leaked_byte"] = n;
        }),
        ("an added field", |r| r["extra"] = json!(1)),
        ("a missing field", |r| {
            r.as_object_mut().unwrap().remove("suppressed_bytes");
        }),
        ("another schema version", |r| r["schema"] = json!(2)),
        ("an unknown source", |r| r["source"] = json!("other")),
        ("a null", |r| {
            r["groups"][0]["frames"][0]["function"] = Value::Null
        }),
        ("a frame as a string", |r| {
            r["groups"][0]["frames"][0] = json!("./prog(f+0x1)[0x2]")
        }),
        ("a frame with neither address nor text", |r| {
            r["groups"][0]["frames"][0] = json!({"function": "f"})
        }),
        ("an unknown error kind", |r| {
            r["errors"][0]["kind"] = json!("oops")
        }),
        ("an unknown group kind", |r| {
            r["groups"][0]["kind"] = json!("lost")
        }),
        ("a negative count", |r| r["leaked_blocks"] = json!(-1)),
        ("a double free without its allocation", |r| {
            r["errors"][0]
                .as_object_mut()
                .unwrap()
                .remove("alloc_frames");
        }),
        ("the other producer's extras", |r| {
            let other = if r["source"] == "log" {
                "in_process"
            } else {
                "log"
            };
            r[other] = json!({});
        }),
        ("an error count of the other producer's name", |r| {
            r["error_counts"]["double_frees"] = json!(0)
        }),
    ];
    for (name, report) in [("log", &log_report), ("in_process", &in_process)] {
        assert!(violations(&v, report).is_empty(), "{name}: {report:#}");
        for (drift, change) in &drifts {
            let mut changed = report.clone();
            change(&mut changed);
            assert!(
                !violations(&v, &changed).is_empty(),
                "{name} report with {drift} passes the schema"
            );
        }
    }
    // What only one producer may write.
    let mut r = in_process.clone();
    r["errors"][0]["first_line"] = json!(3);
    assert!(!v.is_valid(&r), "an in-process error with a log line");
    let mut r = in_process.clone();
    r["error_counts"]["null_result"] = json!(0);
    assert!(!v.is_valid(&r), "an in-process count of NULL results");
    let mut r = log_report.clone();
    r["groups"][0]["kind"] = json!("definitely_lost");
    assert!(!v.is_valid(&r), "a classified text log group");
    let mut r = log_report.clone();
    r["errors"][0]["address"] = json!(16);
    assert!(!v.is_valid(&r), "a log error with an address");
    let mut r = log_report.clone();
    let first = r["errors"][0].as_object_mut().unwrap().remove("first_line");
    r["errors"][0]["first_offset"] = first.unwrap();
    assert!(!v.is_valid(&r), "a text log's error located by offset");
}

fn schema_doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/report-schema.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_documented_examples_follow_the_schema() {
    let doc = schema_doc();
    let examples: Vec<&str> = doc
        .split("```json\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .collect();
    let sources: Vec<Value> = examples
        .iter()
        .map(|text| {
            let example: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("an example is not JSON ({e}):\n{text}"));
            assert_valid("an example of docs/report-schema.md", &example);
            example["source"].clone()
        })
        .collect();
    assert_eq!(sources, [json!("in_process"), json!("log")]);
}

/// The table of text-log frame lines in docs/report-schema.md says what
/// `mallocator leaks --json` makes of each line: it does.
#[test]
fn the_documented_frame_lines_read_as_documented() {
    let doc = schema_doc();
    let rows: Vec<(&str, Value)> = doc
        .lines()
        .filter_map(|row| {
            let cells: Vec<&str> = row.split(" | ").collect();
            let line = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
            let frame = cells.get(1)?.strip_prefix("`{")?.strip_suffix("}` |")?;
            Some((line, serde_json::from_str(&format!("{{{frame}}}")).unwrap()))
        })
        .collect();
    assert_eq!(rows.len(), 4, "the table of frame lines moved: {rows:?}");
    let mut log = format!("+++ ALLOC:{}:0x0000000000000010:16:8\n", rows.len());
    for (line, _) in &rows {
        log.push_str(line);
        log.push('\n');
    }
    log.push_str("---\n");
    let report = leaks_json(&["--json"], log.as_bytes());
    let expected: Vec<Value> = rows.into_iter().map(|(_, frame)| frame).collect();
    assert_eq!(report["groups"][0]["frames"], json!(expected));
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    if let Err(e) = jsonschema::draft202012::meta::validate(&schema()) {
        panic!("docs/report-schema.json: {e}");
    }
}
