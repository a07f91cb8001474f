//! Runs the real `mallocator bench` binary and checks what it prints.

use std::process::{Command, Output};

use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mallocator"))
        .arg("bench")
        .args(args)
        .output()
        .expect("the mallocator binary runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

fn positive_finite(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| x.is_finite() && x > 0.0)
}

/// The names `--list` prints, one per workload.
fn workload_names() -> Vec<String> {
    stdout(&bench(&["--list"]))
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect()
}

#[test]
fn json_has_every_workload_with_positive_finite_ratios() {
    let names = workload_names();
    assert!(names.len() >= 4, "{names:?}");
    let out = bench(&["--quick", "--json", "--size", "200"]);
    let doc: Value = serde_json::from_str(&stdout(&out)).expect("stdout is one JSON document");
    assert_eq!(doc["quick"], true);
    assert!(doc["clock"].as_str().is_some_and(|c| c.ends_with("time")));
    let runs = doc["runs"].as_u64().expect("runs") as usize;
    assert!(runs >= 1);
    assert!(doc["elapsed_seconds"].as_f64().is_some_and(|s| s >= 0.0));
    let groups = doc["groups"].as_array().expect("groups array");
    let got: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(
        got, names,
        "every workload runs by default, in --list order"
    );
    for g in groups {
        assert_eq!(g["ops_per_run"], 200, "--size sets ops per run");
        assert!(g["description"].as_str().is_some_and(|d| !d.is_empty()));
        let rows = g["rows"].as_array().expect("rows array");
        assert!(!rows.is_empty());
        assert_eq!(
            g["baseline"], rows[0]["allocator"],
            "the first row is the baseline"
        );
        assert_eq!(rows[0]["ratio"].as_f64(), Some(1.0));
        let base = rows[0]["ns_per_op"].as_f64().unwrap();
        for r in rows {
            assert!(r["allocator"].as_str().is_some_and(|a| !a.is_empty()));
            assert!(positive_finite(&r["ratio"]), "{r}");
            assert!(positive_finite(&r["ns_per_op"]), "{r}");
            assert!(r["mad_percent"]
                .as_f64()
                .is_some_and(|m| m.is_finite() && m >= 0.0));
            let samples = r["samples_ns_per_op"].as_array().expect("samples");
            assert_eq!(samples.len(), runs);
            assert!(samples.iter().all(positive_finite));
            let ratio = r["ratio"].as_f64().unwrap();
            let ns = r["ns_per_op"].as_f64().unwrap();
            assert!((ratio - ns / base).abs() <= 1e-9 * ratio, "{r}");
        }
    }
    assert!(out.stderr.is_empty(), "no progress bar with --json");
}

#[test]
fn workload_filter_accepts_commas_and_repeats() {
    let names = workload_names();
    let (a, b) = (&names[0], &names[names.len() - 1]);
    let out = bench(&[
        "--quick",
        "--json",
        "--size",
        "10",
        "--workload",
        &format!("{b},{a}"),
        "-w",
        a,
    ]);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let got: Vec<&str> = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, [a.as_str(), b.as_str()]);
}

#[test]
fn unknown_workload_is_a_usage_error() {
    let out = bench(&["--workload", "no-such-thing"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-thing") && err.contains("churn"),
        "{err}"
    );
}

#[test]
fn table_and_svg() {
    let dir = std::env::temp_dir().join(format!("mallocator-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("ratios.svg");
    let text = stdout(&bench(&[
        "--quick",
        "--size",
        "100",
        "--svg",
        svg.to_str().unwrap(),
    ]));
    for name in workload_names() {
        assert!(
            text.lines().any(|l| l.starts_with(&name)),
            "no row for {name}:\n{text}"
        );
    }
    assert!(text.contains("1.00x (baseline)"), "{text}");
    let chart = std::fs::read_to_string(&svg).expect("--svg writes the file");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("ratio to baseline"));
}

#[test]
fn unwritable_svg_path_fails_before_benchmarking() {
    // A directory cannot be written as a file: the error comes first, not
    // after a whole benchmark run, and no table is printed.
    let dir = std::env::temp_dir();
    let out = bench(&["--quick", "--size", "1", "--svg", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--svg"), "{err}");
}

#[test]
fn a_closed_output_pipe_is_not_an_error() {
    // The reader of the table goes away before it is printed (as with
    // `mallocator bench | head -0`): exit 0 and nothing on stderr, not a
    // panic from printing.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mallocator"))
        .args(["bench", "--quick", "--size", "1", "--workload", "churn"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the mallocator binary runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
