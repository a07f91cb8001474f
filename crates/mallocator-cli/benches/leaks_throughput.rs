//! Throughput of `mallocator leaks`: writes a large synthetic log in the C
//! format (glibc frames, program output mixed in, address reuse, one
//! allocation in 1000 leaked), runs the built binary on it (file and
//! stdin), and prints MB/s and the peak memory of the run. Then the same
//! for a binary v2 log (four threads, chunks of 16 KiB, blocks freed by
//! other threads), in events per second.
//!
//! `cargo bench -p mallocator-cli --bench leaks_throughput`
//! (`LEAKS_BENCH_MB=512` for a bigger text log, default 256;
//! `LEAKS_BENCH_EVENTS=40000000` for a bigger v2 log, default 20 million;
//! `LEAKS_BENCH_ONLY=v2` or `text` for one of the two;
//! `LEAKS_BENCH_DIR=DIR` writes the logs there and keeps them, to profile
//! a run of `mallocator leaks` on them).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/support/v2_log.rs"]
mod v2_log;

const BIN: &str = env!("CARGO_BIN_EXE_mallocator");

/// 64 distinct stacks of 6 to 13 glibc-style frames.
fn stacks(rng: &mut fastrand::Rng) -> Vec<String> {
    (0..64)
        .map(|s| {
            let depth = 6 + rng.u64(..8);
            let mut text = String::new();
            text.push_str("./app(fd_backtracing_malloc+0x4b)[0x55a4c1f0a2bb]\n");
            for d in 0..depth {
                let off = rng.u64(..0x400);
                text.push_str(&format!(
                    "./app(module{s}_function{d}+0x{off:x})[0x55a4c1f{:05x}]\n",
                    rng.u64(..1 << 20)
                ));
            }
            text.push_str(
                "/lib/x86_64-linux-gnu/libc.so.6(__libc_start_main+0x85)[0x7f3b1e827285]\n",
            );
            text
        })
        .collect()
}

/// Writes about `mb` MB of log; returns (bytes, leaked blocks).
fn write_log(path: &Path, mb: u64) -> (u64, u64) {
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let stacks = stacks(&mut rng);
    let frames: Vec<usize> = stacks.iter().map(|s| s.lines().count()).collect();
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let (mut live, mut pool): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
    let (mut next_addr, mut written, mut leaked) = (0x5555_0000_0000u64, 0u64, 0u64);
    let limit = mb << 20;
    let mut line = Vec::with_capacity(128);
    while written < limit {
        line.clear();
        if rng.u64(..50) == 0 {
            line.extend_from_slice(b"worker 3: processed batch, 1234 items ok\n");
        }
        let s = rng.usize(..stacks.len());
        if live.len() < 4096 && (live.len() < 16 || rng.u64(..100) < 52) {
            let addr = pool.pop().unwrap_or_else(|| {
                next_addr += 0x60;
                next_addr
            });
            let size = 16 + rng.u64(..65);
            writeln!(line, "+++ ALLOC:{}:0x{addr:016x}:16:{size}", frames[s]).unwrap();
            if rng.u64(..1000) == 0 {
                leaked += 1;
            } else {
                live.push(addr);
            }
        } else {
            let i = rng.usize(..live.len());
            let addr = live.swap_remove(i);
            pool.push(addr);
            writeln!(line, "+++ FREE:{}:0x{addr:016x}", frames[s]).unwrap();
        }
        out.write_all(&line).unwrap();
        out.write_all(stacks[s].as_bytes()).unwrap();
        out.write_all(b"---\n").unwrap();
        written += (line.len() + stacks[s].len() + 4) as u64;
    }
    out.flush().unwrap();
    (written, leaked + live.len() as u64)
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

fn main() {
    let only = std::env::var("LEAKS_BENCH_ONLY").unwrap_or_default();
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("LEAKS_BENCH_DIR").map_or(temp.path().to_owned(), Into::into);
    if only != "v2" {
        bench_text(&dir.join("synthetic.log"));
    }
    if only != "text" {
        bench_v2(&dir.join("synthetic.v2"));
    }
    println!(
        "peak RSS of the leaks runs: {:.1} MB",
        children_peak_rss_mb()
    );
}

fn bench_text(path: &Path) {
    let mb: u64 = std::env::var("LEAKS_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let t = Instant::now();
    let (bytes, leaked) = write_log(path, mb);
    println!(
        "synthetic log: {:.1} MB, {leaked} blocks never freed (written in {:.2?})",
        bytes as f64 / 1e6,
        t.elapsed()
    );
    for (name, stdin) in [("file", false), ("stdin", true)] {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let (took, report) = run(path, stdin);
            assert_eq!(report["leaked_blocks"], leaked, "wrong leak count");
            assert_eq!(report["input"]["bytes"], bytes);
            best = best.min(took);
        }
        println!(
            "mallocator leaks ({name}): best of 3 {:.3} s = {:.0} MB/s",
            best.as_secs_f64(),
            bytes as f64 / 1e6 / best.as_secs_f64()
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
