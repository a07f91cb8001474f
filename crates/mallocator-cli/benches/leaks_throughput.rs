//! Throughput of `mallocator leaks` on large, realistic synthetic logs.
//! The text (C) format: records like the tracker writes them (5 to 20
//! frame lines of shared libraries and the program, a few thousand
//! distinct stacks), most blocks freed, some leaked, address reuse, a
//! little program output mixed in; in MB/s. Then a binary v2 log (four
//! threads, chunks of 16 KiB, blocks freed by other threads), in events
//! per second. Each report is checked against what was written.
//!
//! `cargo bench -p mallocator-cli --bench leaks_throughput`
//! (`LEAKS_BENCH_MB=512` for a bigger text log, default 256;
//! `LEAKS_BENCH_EVENTS=40000000` for a bigger v2 log, default 20 million;
//! `LEAKS_BENCH_ONLY=v2` or `text` for one of the two;
//! `LEAKS_BENCH_DIR=DIR` writes the logs there and keeps them, to profile
//! a run of `mallocator leaks` on them).
//!
//! `... --bench leaks_throughput -- --write-log PATH [--mb N]` only writes
//! the text log (and prints its facts), for
//! `scripts/bench-leaks-throughput.sh`, which times the release binary
//! against `wc -l` on it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/support/v2_log.rs"]
mod v2_log;

const BIN: &str = env!("CARGO_BIN_EXE_mallocator");

/// Distinct allocation (and free) stacks in the log.
const STACKS: usize = 3000;
/// Blocks live at once, at most; the program frees most of what it allocates.
const MAX_LIVE: usize = 20_000;
/// One allocation in this many is never freed.
const LEAK_ONE_IN: u64 = 500;

/// A pool of frame lines as glibc's `backtrace_symbols_fd` (and
/// mallocator's log mode) print them: `object(function+0xoff)[0xip]` for
/// exported functions, `object(+0xoff)[0xip]` for the rest.
fn frame_pool(rng: &mut fastrand::Rng) -> Vec<String> {
    let libs = [
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/usr/lib/x86_64-linux-gnu/libglib-2.0.so.0",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libsqlite3.so.0",
        "/usr/lib/x86_64-linux-gnu/libfoo.so",
        "/opt/service/lib/libcore.so",
        "./server",
    ];
    let verbs = [
        "parse", "alloc", "read", "write", "new", "init", "push", "insert", "encode", "decode",
        "lookup", "handle", "flush", "clone", "load",
    ];
    let nouns = [
        "buffer", "node", "request", "header", "table", "entry", "string", "config", "session",
        "frame", "message", "chunk",
    ];
    let mut pool = Vec::new();
    for (l, lib) in libs.iter().enumerate() {
        let base = 0x7f3b_1e00_0000u64 + ((l as u64) << 24);
        for _ in 0..40 {
            let off = rng.u64(0x100..0x4_0000);
            let ip = base + off;
            let frame = if rng.u64(..4) == 0 {
                format!("{lib}(+0x{off:x})[0x{ip:x}]")
            } else {
                let f = format!(
                    "{}_{}{}",
                    verbs[rng.usize(..verbs.len())],
                    nouns[rng.usize(..nouns.len())],
                    ["", "_impl", "_locked", "_slow"][rng.usize(..4)]
                );
                format!("{lib}({f}+0x{:x})[0x{ip:x}]", rng.u64(..0x300))
            };
            pool.push(frame);
        }
    }
    pool
}

/// `STACKS` distinct stacks of 5 to 20 frames: the allocator's entry
/// point, frames from the pool, and the program's start.
fn stacks(rng: &mut fastrand::Rng) -> Vec<(String, usize)> {
    let pool = frame_pool(rng);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(STACKS);
    while out.len() < STACKS {
        let depth = rng.usize(5..=20);
        let mut text = String::new();
        text.push_str("./server(fd_backtracing_malloc+0x4b)[0x55a4c1f0a2bb]\n");
        for _ in 0..depth - 2 {
            text.push_str(&pool[rng.usize(..pool.len())]);
            text.push('\n');
        }
        text.push_str("/lib/x86_64-linux-gnu/libc.so.6(__libc_start_main+0x85)[0x7f3b1e827285]\n");
        if seen.insert(text.clone()) {
            out.push((text, depth));
        }
    }
    out
}

/// What a written log contains, to check the report against.
struct LogFacts {
    bytes: u64,
    records: u64,
    /// Blocks never freed.
    leaked: u64,
}

/// Writes about `mb` MB (10^6 bytes) of log.
fn write_log(path: &Path, mb: u64) -> LogFacts {
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let stacks = stacks(&mut rng);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let (mut live, mut pool): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
    let (mut next_addr, mut written, mut leaked, mut records) = (0x5555_0000_0000u64, 0, 0, 0);
    let limit = mb * 1_000_000;
    let mut head = Vec::with_capacity(128);
    while written < limit {
        head.clear();
        if rng.u64(..200) == 0 {
            head.extend_from_slice(b"worker 3: processed batch, 1234 items ok\n");
        }
        // Popular call sites allocate far more often than rare ones.
        let popular = rng.usize(1..=stacks.len());
        let s = rng.usize(..popular);
        let (stack, depth) = &stacks[s];
        if live.len() < MAX_LIVE && (live.len() < 64 || rng.bool()) {
            let addr = pool.pop().unwrap_or_else(|| {
                next_addr += 0x40 + 0x10 * rng.u64(..64);
                next_addr
            });
            let size = [8, 16, 24, 32, 48, 64, 100, 256, 1024, 4096][rng.usize(..10)];
            writeln!(head, "+++ ALLOC:{depth}:0x{addr:016x}:16:{size}").unwrap();
            if rng.u64(..LEAK_ONE_IN) == 0 {
                leaked += 1;
            } else {
                live.push(addr);
            }
        } else {
            let addr = live.swap_remove(rng.usize(..live.len()));
            pool.push(addr);
            writeln!(head, "+++ FREE:{depth}:0x{addr:016x}").unwrap();
        }
        out.write_all(&head).unwrap();
        out.write_all(stack.as_bytes()).unwrap();
        out.write_all(b"---\n").unwrap();
        written += (head.len() + stack.len() + 4) as u64;
        records += 1;
    }
    out.flush().unwrap();
    LogFacts {
        bytes: written,
        records,
        leaked: leaked + live.len() as u64,
    }
}

/// Peak resident memory of finished children, in MB (Linux: ru_maxrss is KiB).
#[cfg(unix)]
fn children_peak_rss_mb() -> f64 {
    // SAFETY: `usage` is a valid, writable rusage; getrusage only writes it.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    usage.ru_maxrss as f64 / 1024.0
}

#[cfg(not(unix))]
fn children_peak_rss_mb() -> f64 {
    f64::NAN
}

/// Writes a v2 log of `events` events from four threads (each a 16 KiB
/// buffer, flushed as a chunk when full, so chunks are out of time
/// order); about one block in 1000 is never freed. Returns (bytes, leaked
/// blocks).
fn write_v2_log(path: &Path, events: u64) -> (u64, u64) {
    const THREADS: usize = 4;
    const CHUNK: usize = 16 << 10;
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut log = v2_log::Log::new();
    let base = 0x5555_5555_0000u64;
    log.header("/opt/app/bin/app", "/opt/app")
        .module(
            base,
            base,
            base + (16 << 20),
            &[0x5a; 20],
            b"/opt/app/bin/app",
        )
        .module(
            0x7f00_0000_0000,
            0x7f00_0000_0000,
            0x7f00_0020_0000,
            &[0xc3; 20],
            b"/lib/x86_64-linux-gnu/libc.so.6",
        );
    for id in 0..64u32 {
        let depth = 6 + rng.usize(..8);
        let mut frames: Vec<u64> = (0..depth).map(|_| base + rng.u64(..16 << 20)).collect();
        frames.push(0x7f00_0000_0000 + 0x271ca);
        log.stack(id, &frames);
    }
    out.write_all(&log.bytes).unwrap();
    let mut written = log.bytes.len() as u64;
    let mut buffers: Vec<Vec<u8>> = (0..THREADS)
        .map(|t| (t as u64 + 1).to_le_bytes().to_vec())
        .collect();
    let flush = |out: &mut BufWriter<File>, buf: &mut Vec<u8>, thread: usize| -> u64 {
        let len = buf.len() as u32;
        out.write_all(b"E").unwrap();
        out.write_all(&len.to_le_bytes()).unwrap();
        out.write_all(buf).unwrap();
        buf.clear();
        buf.extend_from_slice(&(thread as u64 + 1).to_le_bytes());
        5 + u64::from(len)
    };
    let (mut live, mut pool): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
    let (mut next_addr, mut leaked) = (0x6000_0000_0000u64, 0u64);
    for i in 0..events {
        let t = rng.usize(..THREADS);
        let ts = 1000 + i * 37;
        let stack = rng.u32(..64);
        let event = if live.len() < 4096 && (live.len() < 16 || rng.u64(..100) < 52) {
            let addr = pool.pop().unwrap_or_else(|| {
                next_addr += 0x60;
                next_addr
            });
            if rng.u64(..1000) == 0 {
                leaked += 1;
            } else {
                live.push(addr);
            }
            v2_log::alloc(ts, addr, 16 + rng.u64(..65), stack)
        } else {
            let addr = live.swap_remove(rng.usize(..live.len()));
            pool.push(addr);
            v2_log::free(ts, addr, stack)
        };
        event.encode(&mut buffers[t]);
        if buffers[t].len() + 30 > CHUNK {
            written += flush(&mut out, &mut buffers[t], t);
        }
    }
    for (t, buf) in buffers.iter_mut().enumerate() {
        written += flush(&mut out, buf, t);
    }
    let mut end = v2_log::Log::new();
    end.bytes.clear();
    end.end(events, 0);
    out.write_all(&end.bytes).unwrap();
    written += end.bytes.len() as u64;
    // On disk before the runs, so that they do not compete with the kernel
    // writing half a gigabyte back.
    out.into_inner().unwrap().sync_all().unwrap();
    (written, leaked + live.len() as u64)
}

fn run(path: &Path, stdin: bool) -> (Duration, serde_json::Value) {
    let start = Instant::now();
    let out = if stdin {
        Command::new(BIN)
            .args(["leaks", "--json", "--top", "3", "-"])
            .stdin(File::open(path).unwrap())
            .stderr(Stdio::piped())
            .output()
    } else {
        Command::new(BIN)
            .args(["leaks", "--json", "--top", "3"])
            .arg(path)
            .stderr(Stdio::piped())
            .output()
    }
    .unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, serde_json::from_slice(&out.stdout).unwrap())
}

/// The command line after cargo's own `--bench`: `--write-log PATH` and `--mb N`.
fn options() -> (Option<PathBuf>, Option<u64>) {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let (mut write, mut mb) = (None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--write-log" => write = args.next().map(PathBuf::from),
            "--mb" => mb = args.next().and_then(|v| v.parse().ok()),
            other => panic!("unknown argument {other:?} (known: --write-log PATH, --mb N)"),
        }
    }
    (write, mb)
}

fn main() {
    let (write_only, mb) = options();
    let mb = mb
        .or_else(|| std::env::var("LEAKS_BENCH_MB").ok()?.parse().ok())
        .unwrap_or(256);
    if let Some(path) = write_only {
        let facts = write_log(&path, mb);
        println!(
            "bytes={} records={} leaked_blocks={}",
            facts.bytes, facts.records, facts.leaked
        );
        return;
    }
    let only = std::env::var("LEAKS_BENCH_ONLY").unwrap_or_default();
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("LEAKS_BENCH_DIR").map_or(temp.path().to_owned(), Into::into);
    if only != "v2" {
        bench_text(&dir.join("synthetic.log"), mb);
    }
    if only != "text" {
        bench_v2(&dir.join("synthetic.v2"));
    }
    println!(
        "peak RSS of the leaks runs: {:.1} MB",
        children_peak_rss_mb()
    );
}

fn bench_text(path: &Path, mb: u64) {
    let t = Instant::now();
    let facts = write_log(path, mb);
    println!(
        "synthetic log: {:.1} MB, {} records, {} blocks never freed (written in {:.2?})",
        facts.bytes as f64 / 1e6,
        facts.records,
        facts.leaked,
        t.elapsed()
    );
    for (name, stdin) in [("file", false), ("stdin", true)] {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let (took, report) = run(path, stdin);
            assert_eq!(report["leaked_blocks"], facts.leaked, "wrong leak count");
            assert_eq!(report["input"]["bytes"], facts.bytes);
            best = best.min(took);
        }
        println!(
            "mallocator leaks ({name}): best of 3 {:.3} s = {:.0} MB/s",
            best.as_secs_f64(),
            facts.bytes as f64 / 1e6 / best.as_secs_f64()
        );
    }
}

fn bench_v2(path: &Path) {
    let events: u64 = std::env::var("LEAKS_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000_000);
    let t = Instant::now();
    let (bytes, leaked) = write_v2_log(path, events);
    println!(
        "synthetic v2 log: {events} events, {:.1} MB, {leaked} blocks never freed (written in {:.2?})",
        bytes as f64 / 1e6,
        t.elapsed()
    );
    for (name, stdin) in [("file", false), ("stdin", true)] {
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let (took, report) = run(path, stdin);
            assert_eq!(report["leaked_blocks"], leaked, "wrong leak count");
            assert_eq!(report["input"]["bytes"], bytes);
            let read = report["input"]["allocs"].as_u64().unwrap()
                + report["input"]["frees"].as_u64().unwrap();
            assert_eq!(read, events);
            best = best.min(took);
        }
        println!(
            "mallocator leaks v2 ({name}): best of 5 {:.3} s = {:.1} M events/s ({:.0} MB/s)",
            best.as_secs_f64(),
            events as f64 / 1e6 / best.as_secs_f64(),
            bytes as f64 / 1e6 / best.as_secs_f64()
        );
    }
}
