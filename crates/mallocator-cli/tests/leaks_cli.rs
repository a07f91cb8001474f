//! `mallocator leaks` run as a user would: the built binary on files and
//! standard input, every output format, bad input and exit codes.

#[path = "support/cli.rs"]
mod cli;

use cli::{json, run, stderr, stdout, BIN};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A hand-written log imitating the C allocator's output (glibc
/// `backtrace_symbols_fd` frames) with program output mixed in, a double
/// free, an unknown free, a NULL result, free(NULL), a still-live address
/// handed out again and a record glued to program output.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/c_glibc.log")
}

fn leaks(args: &[&str]) -> Output {
    let mut all = vec!["leaks"];
    all.extend_from_slice(args);
    run(&all, None)
}

#[test]
fn text_report_of_a_c_log_largest_first() {
    let f = fixture();
    let o = leaks(&[f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(
        s.starts_with("Leaks: 384 bytes in 5 blocks never freed, from 4 allocation stacks."),
        "{s}"
    );
    let order: Vec<usize> = [
        // Each stack from the program's first frame (the C allocator's
        // malloc wrapper above it and the C library's start below cut off).
        "#1: 200 bytes in 1 block\n    ./leaky(load_config+0x3a)[0x55a4c1f0951a]\n    ./leaky(main+0x52)[0x55a4c1f095a2]\n\n",
        "#2: 128 bytes in 2 blocks\n    ./leaky(make_node+0x21)",
        "#3: 48 bytes in 1 block\n    ./leaky(cache_put+0x2d)",
        "#4: 8 bytes in 1 block\n    ./leaky(main+0xd4)",
    ]
    .iter()
    .map(|g| s.find(g).unwrap_or_else(|| panic!("missing {g:?} in\n{s}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{s}");
    for problem in [
        "Double frees (a block freed again after it was already freed): 1",
        "Frees of addresses never allocated in the log",
        "Allocations that returned NULL",
        "1099511627776 bytes requested",
        "free(NULL) calls",
        "Allocations that returned a still-allocated address",
    ] {
        assert!(s.contains(problem), "missing {problem:?} in\n{s}");
    }
}

#[test]
fn json_report_schema_and_values() {
    let f = fixture();
    let o = leaks(&["--json", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let v = json(&o);
    assert_eq!(v["leaked_bytes"], 384);
    assert_eq!(v["leaked_blocks"], 5);
    let groups = v["groups"].as_array().unwrap();
    let sizes: Vec<(u64, u64)> = groups
        .iter()
        .map(|g| (g["bytes"].as_u64().unwrap(), g["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(sizes, vec![(200, 1), (128, 2), (48, 1), (8, 1)]);
    // The program's frames only: the malloc wrapper above and the C
    // library's start below are cut off.
    assert_eq!(groups[0]["frames"].as_array().unwrap().len(), 2);
    // glibc frame lines broken down: address, object, function.
    let frame = |ip: u64, function: &str| serde_json::json!({"ip": ip, "function": function, "object": "./leaky"});
    assert_eq!(groups[0]["frames"][0], frame(0x55a4c1f0951a, "load_config"));
    // --full-stacks: all five.
    let full = json(&leaks(&["--json", "--full-stacks", f.to_str().unwrap()]));
    let full_frames = full["groups"][0]["frames"].as_array().unwrap();
    assert_eq!(full_frames.len(), 5);
    assert_eq!(
        full_frames[3],
        serde_json::json!({"ip": 0x7f3b1e8271cau64, "object": "/lib/x86_64-linux-gnu/libc.so.6",
            "offset": 0x271ca})
    );
    assert_eq!(
        v["error_counts"],
        serde_json::json!({"double_free": 1, "invalid_free": 1, "null_result": 1,
            "free_null": 1, "live_address_reused": 1})
    );
    let errors = v["errors"].as_array().unwrap();
    let error = |kind: &str| {
        errors
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {errors:#?}"))
    };
    let df = error("double_free");
    assert_eq!(df["first_line"], 52);
    assert_eq!(df["bytes"], 32);
    // Error stacks are cut like leak stacks: the wrapper's frame is gone.
    assert_eq!(df["alloc_frames"][0], frame(0x55a4c1f09609, "make_name"));
    assert_eq!(df["first_free_frames"][1], frame(0x55a4c1f095dc, "main"));
    // The error's own stack: where the block was freed again.
    assert_eq!(df["frames"][1], frame(0x55a4c1f095e8, "main"));
    assert_eq!(error("invalid_free")["first_line"], 59);
    assert_eq!(error("null_result")["bytes"], 1099511627776u64);
    assert_eq!(error("live_address_reused")["bytes"], 16);
    assert!(error("free_null").get("bytes").is_none());
    let log = &v["log"];
    assert_eq!(log["input"]["lines"], 91);
    assert_eq!(log["format"], "text");
    assert_eq!(log["input"]["allocs"], 9);
    assert_eq!(log["input"]["frees"], 5);
    assert_eq!(log["warnings_total"], 0);
    // --top limits the listed groups, not the totals.
    let o = leaks(&["--json", "--top", "1", f.to_str().unwrap()]);
    let v = json(&o);
    assert_eq!(v["groups"].as_array().unwrap().len(), 1);
    assert_eq!(v["log"]["groups_total"], 4);
    assert_eq!(v["leaked_bytes"], 384);
}

#[test]
fn stdin_dash_and_file_agree() {
    let f = fixture();
    let log = std::fs::read(&f).unwrap();
    let from_file = leaks(&["--format", "json", f.to_str().unwrap()]);
    let dash = run(&["leaks", "--json", "-"], Some(&log));
    let bare = run(&["leaks", "--json"], Some(&log));
    assert_eq!(json(&from_file), json(&dash));
    assert_eq!(json(&from_file), json(&bare));
}

#[test]
fn c_layout_output() {
    let log = b"+++ ALLOC:1:0x0000000000000010:16:5\n./p(a+0x1)[0x1]\n---\n\
+++ ALLOC:1:0x0000000000000020:16:7\n./p(b+0x1)[0x2]\n---\n\
+++ ALLOC:1:0x0000000000000030:16:7\n./p(b+0x1)[0x2]\n---\n";
    let o = run(&["leaks", "--format", "c"], Some(log));
    assert_eq!(
        stdout(&o),
        "5 1\n./p(a+0x1)[0x1]\n\n14 2\n./p(b+0x1)[0x2]\n\n"
    );
}

#[test]
fn flamegraph_svg_of_leaked_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("leaks.svg");
    let f = fixture();
    let o = leaks(&["--flamegraph", svg.to_str().unwrap(), f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg"));
    for func in ["load_config", "make_node", "cache_put"] {
        assert!(text.contains(func), "{func} missing from the flamegraph");
    }
    assert!(
        !text.contains("__libc_start_main"),
        "the runtime is cut off by default"
    );
    assert!(text.contains("200 bytes"), "the frame titles carry bytes");
    assert!(
        text.contains("all leaked bytes (384 bytes, 100.00%)"),
        "the root is labelled"
    );
    // The SVG is the output: no report on stdout, one line on stderr
    // (besides the warnings that the log's objects are not here to
    // symbolize its frames).
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let note = stderr(&o);
    let lines: Vec<&str> = note.lines().filter(|l| !l.contains("warning:")).collect();
    assert_eq!(lines.len(), 1, "{note}");
    assert!(note.contains("./leaky: not found at"), "{note}");
    assert!(
        note.contains("flame graph of 384 leaked bytes in 5 blocks written to")
            && note.contains(svg.to_str().unwrap()),
        "{note}"
    );
    // A report asked for is printed beside it, and the note is not.
    for (flag, start) in [
        (&["--format", "text"][..], "Leaks: 384 bytes"),
        (&["--json"][..], "{"),
    ] {
        let mut args = flag.to_vec();
        args.extend(["--flamegraph", svg.to_str().unwrap(), f.to_str().unwrap()]);
        let o = leaks(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).starts_with(start), "{flag:?}: {}", stdout(&o));
        assert!(!stderr(&o).contains("flame graph of"), "{}", stderr(&o));
    }
    // An unwritable path is an error, not a panic.
    let bad = dir.path().join("no/such/dir/x.svg");
    let o = leaks(&["--flamegraph", bad.to_str().unwrap(), f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot write"), "{}", stderr(&o));
}

/// The SVG holds the program's addresses where frames have no names: it
/// is created mode 0600, an existing one of ours is made 0600 again, and
/// a symbolic link at its path is refused, its target left alone.
#[test]
#[cfg(unix)]
fn flamegraph_file_is_private_and_never_follows_a_link() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let f = fixture();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let svg = dir.path().join("leaks.svg");
    for existing in [false, true] {
        if existing {
            std::fs::set_permissions(&svg, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let o = leaks(&["--flamegraph", svg.to_str().unwrap(), f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(mode(&svg), 0o600, "existing: {existing}");
    }
    let target = dir.path().join("someone-elses");
    std::fs::write(&target, "kept").unwrap();
    let link = dir.path().join("link.svg");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = leaks(&["--flamegraph", link.to_str().unwrap(), f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot write"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "kept");
}

/// `--flamegraph -` writes the SVG on standard output, alone: a report
/// asked for beside it is refused before the log is read.
#[test]
fn flamegraph_dash_writes_the_svg_to_stdout() {
    let f = fixture();
    let o = leaks(&["--flamegraph", "-", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let svg = stdout(&o);
    assert!(
        svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    assert!(svg.contains("load_config"), "{svg}");
    assert!(!stderr(&o).contains("flame graph of"), "{}", stderr(&o));
    for report in [&["--json"][..], &["--format", "text"][..]] {
        let mut args = report.to_vec();
        args.extend(["--flamegraph", "-", "/no/such/log"]);
        let o = leaks(&args);
        assert_eq!(o.status.code(), Some(2), "{report:?}");
        assert!(o.stdout.is_empty());
        assert!(
            stderr(&o).contains("a report cannot go there too"),
            "{}",
            stderr(&o)
        );
    }
}

/// Runs `leaks --flamegraph` on `log` (stdin) and returns the SVG text.
fn flamegraph_of(log: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("leaks.svg");
    let o = run(
        &["leaks", "--flamegraph", svg.to_str().unwrap(), "-"],
        Some(log),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg") && text.trim_end().ends_with("</svg>"));
    assert!(!text.contains("ERROR"), "{text}");
    text
}

#[test]
fn flamegraph_of_only_blank_frames_is_drawn_as_unknown() {
    // A whitespace-only frame line and `()` (glibc's frame of an object
    // with no name and no symbol) have no label of their own.
    let log = b"+++ ALLOC:1:0x0000000000000010:16:64\n   \n---\n\
+++ ALLOC:2:0x0000000000000020:16:32\n()\n\t\n---\n";
    let svg = flamegraph_of(log);
    assert!(svg.contains("[unknown] (96 bytes, 100.00%)"), "{svg}");
    assert!(svg.contains("[unknown] (32 bytes, "), "{svg}");
}

#[test]
fn flamegraph_keeps_blank_groups_beside_named_ones() {
    let log =
        b"+++ ALLOC:2:0x0000000000000010:16:64\n./p(named+0x1)[0x1]\n./p(main+0x1)[0x2]\n---\n\
+++ ALLOC:1:0x0000000000000020:16:32\n  \n---\n\
+++ ALLOC:1:0x0000000000000030:16:16\n./p(a;b+0x1)[0x3]\n---\n\
+++ ALLOC:1:0x0000000000000040:16:8\nretry 3\n---\n";
    let svg = flamegraph_of(log);
    for title in [
        "all (120 bytes, 100%)",
        "named (64 bytes, ",
        "[unknown] (32 bytes, ",
        "a,b (16 bytes, ",
        "retry\u{a0}3 (8 bytes, ",
    ] {
        assert!(svg.contains(title), "{title:?} missing from\n{svg}");
    }
}

/// Every class of bad input: exit 2 with the line number, or with
/// --lenient a warning and a report.
#[test]
fn bad_input_exit_2_or_lenient_warning() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"ok\n+++ ALLOC:2:0x0000000000000010:16:8\nframe\n",
            "line 2: truncated record: it declares 2 frames but the input ends after 1",
        ),
        (
            b"+++ ALLOC:x:0x0000000000000010:16:8\n",
            "line 1: record header has an invalid frame count: \"x\"",
        ),
        (
            b"a\nb\n+++ FREE:0:0xnothex\n",
            "line 3: record header has an invalid address",
        ),
        (
            b"+++ ALLOC:0:0x0000000000000010:16\n",
            "line 1: record header is cut short: the size is missing",
        ),
        (
            b"+++ ALLOC:3:0x0000000000000010:16:8\nf\n---\n+++ FREE:0:0x10\n",
            "line 1: frame count larger than the lines that follow: the record declares 3 frames but line 3 ends it after 1",
        ),
        (
            b"+++ FREE:0:0x10\n\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe\n",
            "line 2: binary data (not UTF-8 text)",
        ),
    ];
    for (log, message) in cases {
        let o = run(&["leaks", "-"], Some(log));
        assert_eq!(o.status.code(), Some(2), "{message}");
        let err = stderr(&o);
        assert!(err.contains(&format!("<stdin>: {message}")), "{err}");
        assert!(err.contains("--lenient"), "{err}");
        assert!(o.stdout.is_empty());

        let o = run(&["leaks", "--lenient", "--json", "-"], Some(log));
        assert_eq!(o.status.code(), Some(0), "{message}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("warning: <stdin>: line "), "{err}");
        let v = json(&o);
        assert_eq!(v["log"]["warnings_total"], 1, "{message}");
        assert!(v["log"]["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("line "));
    }
}

#[test]
fn lenient_report_keeps_what_can_be_read() {
    let log = b"+++ ALLOC:1:0x0000000000000010:16:8\n./p(keep+0x1)[0x1]\n---\n\
+++ ALLOC:bad:0x20:16:8\n\
+++ ALLOC:4:0x0000000000000030:16:9\n./p(cut+0x1)[0x2]\n";
    let o = run(&["leaks", "--lenient", "--json"], Some(log));
    let v = json(&o);
    assert_eq!(v["leaked_bytes"], 17);
    assert_eq!(v["log"]["warnings_total"], 2);
    assert_eq!(v["log"]["warnings"][0]["line"], 4);
    assert_eq!(v["log"]["warnings"][1]["line"], 5);
    let o = run(&["leaks", "--lenient"], Some(log));
    assert!(
        stdout(&o).contains("The log had 2 problems"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn exit_codes() {
    let missing = leaks(&["/no/such/file.log"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("/no/such/file.log"));
    let f = fixture();
    assert_eq!(
        leaks(&["--fail-on-leaks", f.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );
    let clean = b"+++ ALLOC:0:0x0000000000000010:16:8\n+++ FREE:0:0x0000000000000010\n";
    let o = run(&["leaks", "--fail-on-leaks"], Some(clean));
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("No leaks: every block allocated in the log was freed"));
    // Usage errors are clap's exit code 2 too.
    assert_eq!(leaks(&["--json", "--format", "c"]).status.code(), Some(2));
    assert_eq!(leaks(&["--top", "many"]).status.code(), Some(2));
}

#[test]
fn a_closed_output_pipe_is_not_an_error() {
    // `mallocator leaks log | head`: the reader is gone before the report
    // is written.
    let mut child = Command::new(BIN)
        .args(["leaks", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mallocator");
    drop(child.stdout.take());
    let log = std::fs::read(fixture()).unwrap();
    child.stdin.take().unwrap().write_all(&log).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

#[test]
fn help_says_what_flamegraph_and_json_write() {
    let help = stdout(&run(&["leaks", "--help"], None));
    for words in [
        "docs/report-schema.md",
        "\"all leaked bytes\"",
        "standard output stays empty",
        "symbolized for it as with --symbolize",
        "none with --flamegraph",
        "created mode 0600",
        "--flamegraph - writes the SVG to standard output",
    ] {
        assert!(help.contains(words), "{words}: {help}");
    }
}

#[test]
fn help_uses_words_people_search_for() {
    let o = run(&["leaks", "--help"], None);
    assert_eq!(o.status.code(), Some(0));
    let help = stdout(&o);
    for word in [
        "leak",
        "heaptrack",
        "valgrind",
        "log",
        "double free",
        "flamegraph",
        "JSON",
        "stdin",
        "Exit codes",
    ] {
        assert!(
            help.to_lowercase().contains(&word.to_lowercase()),
            "{word}: {help}"
        );
    }
    let top = stdout(&run(&["--help"], None));
    assert!(top.contains("leaks"), "{top}");
}

#[test]
fn input_without_records_is_an_error_unless_allowed() {
    // A wrong path that exists (a README), an empty file, and stdin with
    // program output only: no "no leaks" that would let a CI job pass.
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let dir = std::env::temp_dir().join(format!("mallocator-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.log");
    std::fs::write(&empty, b"").unwrap();
    for path in [readme.to_str().unwrap(), empty.to_str().unwrap()] {
        let o = leaks(&[path, "--fail-on-leaks"]);
        assert_eq!(o.status.code(), Some(2), "{path}: {}", stdout(&o));
        assert!(stderr(&o).contains("no records found in"), "{}", stderr(&o));
        let o = leaks(&[path, "--allow-empty"]);
        assert_eq!(o.status.code(), Some(0), "{path}: {}", stderr(&o));
    }
    let o = run(&["leaks"], Some(b"hello from the program\n"));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no records found in <stdin>"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Three leaks: one in the program's cache, one in its main, one made by
/// the standard library's stdout at its first use.
const SUPPRESSIBLE: &[u8] = b"\
+++ ALLOC:2:0x0000000000001000:8:100
./app(app::cache::fill+0x10)[0x5000]
./app(main+0x20)[0x5100]
---
+++ ALLOC:1:0x0000000000002000:8:30
./app(app::main+0x20)[0x5200]
---
+++ ALLOC:2:0x0000000000003000:8:1024
./app(std::io::stdio::stdout+0x8)[0x5300]
./app(app::main+0x30)[0x5210]
---
";

#[test]
fn suppressions_leave_out_matching_stacks_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let supp = dir.path().join("app.supp");
    std::fs::write(&supp, "# the cache lives for good\nleak:app::cache\n").unwrap();
    // The built-in list alone: stdout's buffer is left out.
    let o = run(&["leaks", "-"], Some(SUPPRESSIBLE));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("Leaks: 130 bytes in 2 blocks"), "{text}");
    assert!(
        text.contains("(suppressed: 1024 bytes in 1 block"),
        "{text}"
    );
    // And the file: the cache too; --fail-on-leaks still sees main's block.
    let args = [
        "leaks",
        "-",
        "--fail-on-leaks",
        "--suppressions",
        supp.to_str().unwrap(),
    ];
    let o = run(&args, Some(SUPPRESSIBLE));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("Leaks: 30 bytes in 1 block"), "{text}");
    assert!(
        text.contains("(suppressed: 1124 bytes in 2 blocks"),
        "{text}"
    );
    // Every leak suppressed: not a failure.
    std::fs::write(&supp, "leak:app::\n").unwrap();
    let o = run(&args, Some(SUPPRESSIBLE));
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).starts_with("No leaks but suppressed ones"),
        "{}",
        stdout(&o)
    );
    // A file with a bad line, or none at all: exit 2, naming it.
    std::fs::write(&supp, "leak:app\nrace:x\n").unwrap();
    let o = run(&args, Some(SUPPRESSIBLE));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("app.supp: line 2"), "{}", stderr(&o));
    let missing = dir.path().join("none.supp");
    let o = run(
        &["leaks", "-", "--suppressions", missing.to_str().unwrap()],
        Some(SUPPRESSIBLE),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("none.supp"), "{}", stderr(&o));
}

#[test]
fn sizes_a_log_cannot_hold_saturate_when_groups_merge_or_are_suppressed() {
    // Two stacks the report cuts to the same frame (what is below `main`
    // differs), and two of the standard library's own leaks, which the
    // built-in suppressions leave out: each pair's sum is over 2^64.
    let log = b"\
+++ ALLOC:2:0x0000000000001000:8:9223372036854775808
./app(my_app::f+0x10)[0x5000]
./app(std::rt::lang_start+0x20)[0x5100]
---
+++ ALLOC:2:0x0000000000002000:8:9223372036854775808
./app(my_app::f+0x10)[0x5000]
/lib/libc.so.6(__libc_start_main+0x20)[0x6100]
---
+++ ALLOC:1:0x0000000000003000:8:18446744073709551615
./app(std::io::stdio::stdout+0x8)[0x5300]
---
+++ ALLOC:1:0x0000000000004000:8:18446744073709551615
./app(std::thread::current::init_current+0x8)[0x5400]
---
";
    let o = run(&["leaks", "--json", "-"], Some(log));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{v:#}");
    assert_eq!(groups[0]["count"], 2);
    assert_eq!(groups[0]["bytes"], u64::MAX);
    assert_eq!(v["leaked_bytes"], u64::MAX);
    assert_eq!(v["suppressed_bytes"], u64::MAX);
}
