//! The log round trip: mallocator's tracker writes a log (in each format),
//! `mallocator leaks` reads it, and both find the same leaks (same groups,
//! same bytes and counts, same stacks down to the instruction pointers)
//! and the same bad frees.
#![cfg(all(unix, not(miri)))]

use mallocator::backtracing::{Backtracing, Config, ErrorKind, LogFormat, LogTarget};
use mallocator::Valloc;
use std::collections::BTreeMap;
use std::process::Command;

/// The instruction pointer of a frame object of the JSON report.
fn ip_of(frame: &serde_json::Value) -> usize {
    let ip = frame["ip"].as_u64();
    ip.unwrap_or_else(|| panic!("a frame without its address: {frame}")) as usize
}

/// Whether some frame of `frames` is the function `func` of this test,
/// with this file as its source.
fn names_here(frames: &serde_json::Value, func: &str) -> bool {
    frames.as_array().unwrap().iter().any(|f| {
        f["function"] == format!("leaks_roundtrip::{func}")
            && f["file"]
                .as_str()
                .is_some_and(|file| file.ends_with("leaks_roundtrip.rs"))
            && f["line"].is_u64()
    })
}

/// Groups as {ip stack -> (bytes, count)}.
type Groups = BTreeMap<Vec<usize>, (u64, u64)>;

#[inline(never)]
fn leak_small(v: Valloc<'_>, n: usize) {
    for i in 0..n {
        std::hint::black_box(v.malloc(8, 24 + i % 3));
    }
}

#[inline(never)]
fn leak_big(v: Valloc<'_>) -> *mut u8 {
    std::hint::black_box(v.malloc(64, 4000))
}

#[inline(never)]
fn churn(v: Valloc<'_>, n: usize) {
    for i in 0..n {
        let p = v.malloc(16, 16 + i % 64);
        // SAFETY: `p` came from `v` and is freed once.
        unsafe { v.free(p) };
    }
}

#[test]
fn tracker_text_log_read_by_the_cli_gives_the_tracker_report() {
    round_trip(LogFormat::Firedancer);
}

#[test]
fn tracker_compact_log_read_by_the_cli_gives_the_tracker_report() {
    round_trip(LogFormat::Compact);
}

/// The tracker logs in `format`, the CLI reads the log: the same report.
fn round_trip(format: LogFormat) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let path_str: &'static str = Box::leak(path.to_str().unwrap().to_owned().into_boxed_str());
    let tracker = Backtracing::with_config(
        Valloc::libc(),
        Config {
            log: LogTarget::Path(path_str),
            log_format: format,
            // The text log's frames are unnamed (this test binary exports
            // no symbols), so the CLI cannot tell the program's frames
            // from the rest: both sides show whole stacks there.
            full_stacks: format == LogFormat::Firedancer,
            ..Config::DEFAULT
        },
    );
    let v = tracker.valloc();
    leak_small(v, 7);
    let big = leak_big(v);
    churn(v, 500);
    // Four threads allocating, passing blocks to each other and freeing
    // them on another thread; every 50th block is kept (leaked).
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    std::thread::scope(|s| {
        for t in 0..4 {
            let tx = tx.clone();
            s.spawn(move || {
                for i in 0..400 {
                    let p = v.malloc(8, 8 + (t * 400 + i) % 100);
                    if i % 50 != 0 {
                        tx.send(p as usize).unwrap();
                    }
                }
            });
        }
        drop(tx);
        s.spawn(move || {
            for p in rx {
                // SAFETY: every pointer sent came from `v` and is sent once.
                unsafe { v.free(p as *mut u8) };
            }
        });
    });
    // Bad frees: the tracker records them and does not pass them on.
    // SAFETY: the tracker catches both (they never reach libc).
    unsafe {
        let p = v.malloc(16, 48);
        v.free(p);
        v.free(p);
        v.free(big.wrapping_add(8));
    }
    // A NULL result (the request cannot be met): only the log shows it.
    assert!(v.malloc(16, 1 << 60).is_null());

    let report = tracker.report();
    // The compact log's events wait in per-thread buffers until then.
    tracker.flush_log();
    // Read from another directory: the compact log's module map names
    // the objects by absolute path.
    let out = Command::new(env!("CARGO_BIN_EXE_mallocator"))
        .args(["leaks", "--json"])
        .args((format == LogFormat::Firedancer).then_some("--full-stacks"))
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(report.leaked_blocks, 7 + 1 + 4 * 8);
    assert_eq!(cli["leaked_blocks"], report.leaked_blocks);
    assert_eq!(cli["leaked_bytes"], report.leaked_bytes);

    if format == LogFormat::Compact {
        compare_symbolized(&report, &cli);
    } else {
        compare_raw(&report, &cli);
    }
    assert_eq!(cli["groups"].as_array().unwrap().len(), report.groups.len());
    // Both list the largest group first: the 4000-byte block.
    assert_eq!(cli["groups"][0]["bytes"], 4000);
    assert_eq!(report.groups[0].bytes, 4000);

    let kinds = |k: ErrorKind| report.errors.iter().filter(|e| e.kind == k).count();
    assert_eq!(kinds(ErrorKind::DoubleFree), 1);
    assert_eq!(kinds(ErrorKind::InvalidFree), 1);
    // The same kinds, by the same names, in both reports.
    let tracker_json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    for kind in ["double_free", "invalid_free"] {
        assert_eq!(cli["error_counts"][kind], 1, "{kind}");
        assert_eq!(tracker_json["error_counts"][kind], 1, "{kind}");
    }
    assert_eq!(cli["error_counts"]["null_result"], 1);
    let error = |kind: &str| {
        let errors = cli["errors"].as_array().unwrap();
        errors.iter().find(|e| e["kind"] == kind).unwrap().clone()
    };
    assert_eq!(error("null_result")["bytes"], 1u64 << 60);
    let df = error("double_free");
    assert_eq!(df["bytes"], 48);
    let tracker_df_json = tracker_json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "double_free")
        .unwrap();
    assert_eq!(tracker_df_json["bytes"], 48);
    let tracker_df = report
        .errors
        .iter()
        .find(|e| e.kind == ErrorKind::DoubleFree)
        .unwrap();
    if format == LogFormat::Compact {
        // Symbolized: the second free happened in this function.
        assert!(names_here(&df["frames"], "round_trip"), "{df}");
        assert!(
            names_here(&tracker_df_json["frames"], "round_trip"),
            "{tracker_df_json}"
        );
        return;
    }
    let mut second: Vec<usize> = tracker_df.frames.iter().map(|f| f.ip).collect();
    second.dedup();
    let cli_second: Vec<usize> = df["frames"].as_array().unwrap().iter().map(ip_of).collect();
    assert!(
        cli_second.ends_with(&second),
        "{cli_second:x?} vs {second:x?}"
    );

    // --symbolize reads this test binary's debug info: the leak sites get
    // their function, file and line; sizes and counts do not change.
    let out = Command::new(env!("CARGO_BIN_EXE_mallocator"))
        .args(["leaks", "--json", "--symbolize", "--full-stacks"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let named: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(named["leaked_bytes"], cli["leaked_bytes"]);
    let frames_of = |bytes: u64| -> serde_json::Value {
        let g = named["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["bytes"] == bytes)
            .unwrap();
        g["frames"].clone()
    };
    let big = frames_of(4000);
    assert!(names_here(&big, "leak_big"), "{big:#}");
    // leak_small: 24, 25, 26, 24, 25, 26, 24 bytes.
    let small = frames_of(174);
    assert!(names_here(&small, "leak_small"), "{small:#}");
    // A resolved frame keeps the address the log gave it: the same
    // stacks, address for address, as the unsymbolized report.
    let ips = |frames: &serde_json::Value| {
        let mut ips: Vec<usize> = frames.as_array().unwrap().iter().map(ip_of).collect();
        ips.dedup();
        ips
    };
    let raw_big = cli["groups"][0]["frames"].clone();
    assert_eq!(ips(&big), ips(&raw_big));

    // The text report names the functions too (`function at file:line`).
    let out = Command::new(env!("CARGO_BIN_EXE_mallocator"))
        .args(["leaks", "--symbolize"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("    leaks_roundtrip::leak_big at ") && text.contains("leaks_roundtrip.rs:"),
        "{text}"
    );

    // --flamegraph alone symbolizes a text log for its labels, writes
    // nothing on stdout and says where the SVG went.
    let svg = dir.path().join("leaks.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_mallocator"))
        .args(["leaks", "--flamegraph"])
        .args([&svg, &path])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let note = String::from_utf8(out.stderr).unwrap();
    assert!(note.contains(svg.to_str().unwrap()), "{note}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawn.contains("leaks_roundtrip::leak_big (4,000 bytes, "),
        "leak_big is not named in the flame graph"
    );
    assert!(
        drawn.contains("all leaked bytes ("),
        "the root is not named"
    );
}

/// The text log's frames carry their addresses: the same groups, stack
/// for stack, down to the instruction pointers.
fn compare_raw(report: &mallocator::backtracing::LeakReport, cli: &serde_json::Value) {
    let mut from_tracker = Groups::new();
    for g in &report.groups {
        let mut ips: Vec<usize> = g.frames.iter().map(|f| f.ip).collect();
        // Inlined functions give several frames for one ip.
        ips.dedup();
        let e = from_tracker.entry(ips).or_default();
        e.0 += g.bytes as u64;
        e.1 += g.count as u64;
    }
    // The log, like the C allocator's, shows the stack as captured,
    // starting inside the tracker; the tracker's report starts at its
    // caller. So each log stack is the report's stack below the same few
    // tracker frames.
    let log_stacks: Vec<(Vec<usize>, (u64, u64))> = cli["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let ips = g["frames"].as_array().unwrap().iter().map(ip_of).collect();
            (
                ips,
                (g["bytes"].as_u64().unwrap(), g["count"].as_u64().unwrap()),
            )
        })
        .collect();
    let (first_log, _) = &log_stacks[0];
    let first_report = from_tracker
        .keys()
        .find(|k| first_log.ends_with(k))
        .unwrap();
    let internal = first_log[..first_log.len() - first_report.len()].to_vec();
    let mut from_cli = Groups::new();
    for (ips, (bytes, count)) in log_stacks {
        assert!(ips.starts_with(&internal), "{ips:x?} vs {internal:x?}");
        let e = from_cli.entry(ips[internal.len()..].to_vec()).or_default();
        e.0 += bytes;
        e.1 += count;
    }
}

/// The compact log is symbolized from its module map: the same groups
/// (bytes and count), each naming the same innermost function of this
/// test as the tracker's own report.
fn compare_symbolized(report: &mallocator::backtracing::LeakReport, cli: &serde_json::Value) {
    let sizes = |mut v: Vec<(u64, u64)>| {
        v.sort();
        v
    };
    let tracker: Vec<(u64, u64)> = report
        .groups
        .iter()
        .map(|g| (g.bytes as u64, g.count as u64))
        .collect();
    let groups = cli["groups"].as_array().unwrap();
    let logged: Vec<(u64, u64)> = groups
        .iter()
        .map(|g| (g["bytes"].as_u64().unwrap(), g["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(sizes(logged), sizes(tracker));
    let big = groups[0]["frames"].to_string();
    assert!(big.contains("leak_big"), "leak_big not in {big}");
    let small = groups
        .iter()
        .filter(|g| g["frames"].to_string().contains("leak_small"))
        .map(|g| g["count"].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(small, 7, "the seven small leaks, named");
}
