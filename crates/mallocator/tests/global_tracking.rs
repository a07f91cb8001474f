//! The tracker as the global allocator of this test binary.

mod common;

use mallocator::backtracing::{ErrorKind, GlobalBacktracing};

#[global_allocator]
static GLOBAL: GlobalBacktracing = GlobalBacktracing::new();

#[inline(never)]
fn leak_a_box(size: usize) -> &'static mut [u8] {
    Box::leak(vec![7u8; size].into_boxed_slice())
}

#[test]
fn scoped_leak_is_found_with_its_function() {
    let tracker = GLOBAL.tracker();
    let scope = tracker.scope();
    let churn: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    drop(churn);
    assert!(scope.leaks().is_clean(), "{}", scope.leaks());
    let leaked = leak_a_box(4321);
    let leaks = scope.leaks();
    assert_eq!(
        (leaks.leaked_blocks, leaks.leaked_bytes),
        (1, 4321),
        "{leaks}"
    );
    if !cfg!(miri) {
        let names: Vec<_> = leaks.groups[0]
            .frames
            .iter()
            .filter_map(|f| f.function.as_deref())
            .collect();
        assert!(names.iter().any(|n| n.contains("leak_a_box")), "{names:?}");
    }
    // The whole-program report contains it too.
    let all = tracker.report();
    assert!(all.leaked_bytes >= 4321);
    assert!(tracker.live_bytes() >= 4321 && tracker.peak_bytes() >= tracker.live_bytes());
    // SAFETY: `leaked` came from `Box::leak` of a boxed slice of this size.
    drop(unsafe { Box::from_raw(leaked as *mut [u8]) });
    assert!(scope.leaks().is_clean());
}

#[test]
fn threads_allocating_and_freeing_across_threads() {
    let tracker = GLOBAL.tracker();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u64>>();
    let n = if cfg!(miri) { 20 } else { 5000 };
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let tx = tx.clone();
            s.spawn(move || {
                for i in 0..n {
                    tx.send(vec![t; (i % 10) + 1]).unwrap();
                }
            });
        }
        drop(tx);
        s.spawn(move || {
            let mut total = 0u64;
            for v in rx {
                total += v.len() as u64;
            }
            assert!(total > 0);
        });
    });
    assert_eq!(tracker.report().errors_total, 0);
}

#[test]
fn other_threads_leak_does_not_fail_my_scope() {
    let scope = GLOBAL.tracker().scope();
    let other = std::thread::spawn(|| leak_a_box(99) as *mut [u8] as *mut u8 as usize)
        .join()
        .unwrap();
    scope.assert_no_leaks();
    // SAFETY: the block is the other thread's leaked 99-byte boxed slice
    // (freed here so that Miri's leak check stays quiet).
    drop(unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(other as *mut u8, 99)) });
}

#[test]
#[cfg_attr(miri, ignore)] // spawns a process
fn exit_report_and_log_from_the_environment() {
    if std::env::var_os("BT_CHILD").is_some() {
        return;
    }
    let dir = std::env::temp_dir();
    let report = dir.join(format!("bt-exit-{}.json", std::process::id()));
    let log = dir.join(format!("bt-log-{}.txt", std::process::id()));
    let out = run_leaky_child(&[
        ("MALLOCATOR_LEAKS", report.as_os_str()),
        ("MALLOCATOR_LEAKS_FORMAT", "json".as_ref()),
        ("MALLOCATOR_LOG", log.as_os_str()),
        ("MALLOCATOR_LOG_FORMAT", "fd".as_ref()),
    ]);
    assert!(out.status.success(), "{out:?}");
    // It holds addresses: private to its owner.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&report).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let groups = json["groups"].as_array().unwrap();
    let mine = groups
        .iter()
        .find(|g| g["bytes"] == 777 && g["count"] == 1)
        .unwrap_or_else(|| panic!("no 777-byte group in {json}"));
    assert!(mine["frames"].to_string().contains("leak_a_box"), "{mine}");
    let errors = json["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["kind"] == "double_free"),
        "{errors:?}"
    );
    // The log has the leaked block's ALLOC record and never its FREE.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("+++ ALLOC:") && l.ends_with(":1:777"))
        .unwrap_or_else(|| panic!("no ALLOC of 777 bytes"));
    let addr = lines[at].split(':').nth(2).unwrap();
    assert!(!lines[at..]
        .iter()
        .any(|l| l.starts_with("+++ FREE:") && l.ends_with(addr)));
    let _ = std::fs::remove_file(report);
    let _ = std::fs::remove_file(log);
}

#[test]
#[cfg_attr(miri, ignore)] // spawns a process
fn compact_log_by_default_ended_at_exit() {
    if std::env::var_os("BT_CHILD").is_some() {
        return;
    }
    let log = std::env::temp_dir().join(format!("bt-log-{}.v2", std::process::id()));
    let out = run_leaky_child(&[("MALLOCATOR_LOG", log.as_os_str())]);
    assert!(out.status.success(), "{out:?}");
    let bytes = std::fs::read(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(
        bytes.starts_with(b"\x89mallog\n\x02\0\0\0"),
        "{:?}",
        &bytes[..bytes.len().min(16)]
    );
    // The end record (tag, length 16, two counts) closes the file: the
    // exit flush wrote every thread's buffer, then it.
    let end = &bytes[bytes.len() - 21..];
    assert_eq!((end[0], &end[1..5]), (b'Z', &16u32.to_le_bytes()[..]));
    let events = u64::from_le_bytes(end[5..13].try_into().unwrap());
    assert!(events > 2, "{events} events");
}

#[test]
#[cfg_attr(miri, ignore)] // spawns a process
fn bad_settings_warn_once_on_stderr() {
    if std::env::var_os("BT_CHILD").is_some() {
        return;
    }
    let out = run_leaky_child(&[
        ("MALLOCATOR_DEPTH", "deep".as_ref()),
        ("MALLOCATOR_STACKS", "libunwind".as_ref()),
        ("MALLOCATOR_LOG", "/nonexistent-dir/alloc.log".as_ref()),
        ("MALLOCATOR_LOG_FORMAT", "xml".as_ref()),
    ]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "mallocator: MALLOCATOR_DEPTH=deep is not a number; using 32",
        "mallocator: MALLOCATOR_STACKS=libunwind is not auto, fp, dwarf or unwind",
        "mallocator: MALLOCATOR_LOG_FORMAT=xml is not v2 or fd; using v2",
        "mallocator: MALLOCATOR_LOG: cannot create /nonexistent-dir/alloc.log",
    ] {
        assert_eq!(
            stderr.matches(expected).count(),
            1,
            "{expected:?} in {stderr}"
        );
    }
}

/// Runs `child_leaks_on_purpose` in a child process with `vars` set.
fn run_leaky_child(vars: &[(&str, &std::ffi::OsStr)]) -> std::process::Output {
    let mut command = common::this_test_binary();
    command
        .args([
            "--exact",
            "child_leaks_on_purpose",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env("BT_CHILD", "1");
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// The leak class of the one-block group of `bytes` bytes in a JSON
/// exit report.
fn kind_of_block(json: &serde_json::Value, bytes: u64) -> serde_json::Value {
    json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["bytes"] == bytes && g["count"] == 1)
        .unwrap_or_else(|| panic!("no {bytes}-byte group in {json}"))["kind"]
        .clone()
}

/// A block the child keeps for good (still reachable at exit).
static KEPT: std::sync::atomic::AtomicPtr<u8> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

#[test]
#[cfg_attr(miri, ignore)] // spawns a process
fn exit_report_classifies_reachability_and_sets_the_exit_code() {
    if std::env::var_os("BT_CHILD").is_some() {
        return;
    }
    let report = std::env::temp_dir().join(format!("bt-exitcode-{}.json", std::process::id()));
    let out = run_leaky_child(&[
        ("MALLOCATOR_LEAKS", report.as_os_str()),
        ("MALLOCATOR_LEAKS_FORMAT", "json".as_ref()),
        ("MALLOCATOR_LEAKS_EXITCODE", "23".as_ref()),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(23), "{stderr}");
    assert!(
        stderr.contains("exiting with status 23 (MALLOCATOR_LEAKS_EXITCODE)"),
        "{stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let _ = std::fs::remove_file(&report);
    let kind_of = |bytes: u64| kind_of_block(&json, bytes);
    // Without the variable the child exits normally.
    let out = run_leaky_child(&[("MALLOCATOR_LEAKS", "stderr".as_ref())]);
    assert!(out.status.success(), "{out:?}");
    // Reachability is classified where the loader lists the roots (Linux;
    // elsewhere every never-freed block counts as lost for the exit code).
    if cfg!(target_os = "linux") {
        // Forgotten: nothing points to it. Kept in a static: reachable.
        assert_eq!(kind_of(777), "definitely_lost");
        assert_eq!(kind_of(555), "still_reachable");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("definitely lost:") && stderr.contains("still reachable:"),
            "{stderr}"
        );
    }
}

/// An exit report whose path is a symbolic link is not written through
/// it (another user could aim it at a file of ours): the file it names
/// stays as it was, and stderr says why there is no report.
#[test]
#[cfg(unix)]
#[cfg_attr(miri, ignore)] // spawns a process
fn exit_report_never_follows_a_symbolic_link() {
    if std::env::var_os("BT_CHILD").is_some() {
        return;
    }
    let dir = std::env::temp_dir();
    let target = dir.join(format!("bt-link-target-{}.txt", std::process::id()));
    let link = dir.join(format!("bt-link-{}.json", std::process::id()));
    std::fs::write(&target, b"keep").unwrap();
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = run_leaky_child(&[("MALLOCATOR_LEAKS", link.as_os_str())]);
    let kept = std::fs::read_to_string(&target).unwrap();
    let _ = std::fs::remove_file(&link);
    let _ = std::fs::remove_file(&target);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(kept, "keep");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write the leak report to"),
        "{stderr}"
    );
}

/// A program that ends by `quick_exit` runs only its `at_quick_exit`
/// functions, not its `atexit` ones: the exit report runs there too, with
/// its classes and its exit status.
#[test]
#[cfg(target_os = "linux")] // where the hooks are registered for quick_exit
#[cfg_attr(miri, ignore)] // spawns a process
fn exit_report_runs_at_quick_exit() {
    if std::env::var_os("BT_CHILD").is_some() {
        return;
    }
    let report = std::env::temp_dir().join(format!("bt-quick-{}.json", std::process::id()));
    let out = run_leaky_child(&[
        ("BT_QUICK_EXIT", "1".as_ref()),
        ("MALLOCATOR_LEAKS", report.as_os_str()),
        ("MALLOCATOR_LEAKS_FORMAT", "json".as_ref()),
        ("MALLOCATOR_LEAKS_EXITCODE", "23".as_ref()),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(23), "{stderr}");
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let _ = std::fs::remove_file(&report);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let kind_of = |bytes: u64| kind_of_block(&json, bytes);
    assert_eq!(kind_of(777), "definitely_lost");
    assert_eq!(kind_of(555), "still_reachable");
    // Without the exit code, the program's own quick_exit status stands.
    let out = run_leaky_child(&[
        ("BT_QUICK_EXIT", "1".as_ref()),
        ("MALLOCATOR_LEAKS", "stderr".as_ref()),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(QUICK_EXIT_STATUS), "{stderr}");
    assert!(stderr.contains("== mallocator leak report =="), "{stderr}");
}

/// The status the child ends with when it ends by `quick_exit`.
#[cfg(target_os = "linux")]
const QUICK_EXIT_STATUS: i32 = 9;

#[test]
#[cfg_attr(miri, ignore)] // spawns a process
fn suppressions_file_leaves_out_matching_stacks() {
    if std::env::var_os("BT_CHILD").is_some() {
        return;
    }
    let dir = std::env::temp_dir();
    let supp = dir.join(format!("bt-supp-{}.txt", std::process::id()));
    let report = dir.join(format!("bt-supp-{}.json", std::process::id()));
    std::fs::write(
        &supp,
        "# the child's own leaks\nleak:child_leaks_on_purpose\n",
    )
    .unwrap();
    let out = run_leaky_child(&[
        ("MALLOCATOR_LEAKS", report.as_os_str()),
        ("MALLOCATOR_LEAKS_FORMAT", "json".as_ref()),
        ("MALLOCATOR_SUPPRESSIONS", supp.as_os_str()),
    ]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let groups = json["groups"].as_array().unwrap();
    assert!(
        !groups
            .iter()
            .any(|g| g["bytes"] == 777 || g["bytes"] == 555),
        "{json}"
    );
    // Those two, and the standard library's one-time blocks (built in).
    assert!(json["suppressed_blocks"].as_u64().unwrap() >= 2, "{json}");
    assert!(
        json["suppressed_bytes"].as_u64().unwrap() >= 777 + 555,
        "{json}"
    );
    // A file that is not a suppressions file: a warning naming the line.
    std::fs::write(&supp, "leak:ok\nrace:not_ours\n").unwrap();
    let out = run_leaky_child(&[("MALLOCATOR_SUPPRESSIONS", supp.as_os_str())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("MALLOCATOR_SUPPRESSIONS:") && stderr.contains("line 2"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&supp);
    let _ = std::fs::remove_file(&report);
}

/// Run only as the child of the tests above.
#[test]
#[ignore = "run by exit_report_and_log_from_the_environment"]
fn child_leaks_on_purpose() {
    if std::env::var_os("BT_CHILD").is_none() {
        return;
    }
    leak_a_box(777);
    // Still reachable at exit: a static points to it.
    KEPT.store(
        leak_a_box(555).as_mut_ptr(),
        std::sync::atomic::Ordering::Relaxed,
    );
    // A double free through the global allocator's own path: the tracker
    // catches it, and the process exits normally.
    let layout = std::alloc::Layout::from_size_align(32, 8).unwrap();
    // SAFETY: allocation and one valid free; the second free is the bug
    // under test, which the tracker accepts without passing it on.
    unsafe {
        let p = std::alloc::alloc(layout);
        std::alloc::dealloc(p, layout);
        std::alloc::dealloc(p, layout);
    }
    let errors = GLOBAL.tracker().report().errors;
    assert_eq!(errors.last().map(|e| e.kind), Some(ErrorKind::DoubleFree));
    #[cfg(target_os = "linux")]
    if std::env::var_os("BT_QUICK_EXIT").is_some() {
        extern "C" {
            fn quick_exit(status: core::ffi::c_int) -> !;
        }
        // SAFETY: C11's quick_exit, which ends the process; nothing of
        // this test is left to run.
        unsafe { quick_exit(QUICK_EXIT_STATUS) };
    }
}
