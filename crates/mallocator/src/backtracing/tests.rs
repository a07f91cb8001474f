//! Tests of the tracker through its handle. Under Miri, stacks come from
//! the stand-in (`os::set_stand_in_site` picks a synthetic call site).

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::collections::HashMap;
use std::sync::Mutex;

use super::stacks::NO_STACK;
use super::*;
use crate::valloc::{AllocError, RawAlloc};

/// Under Miri, makes the next captures look like they come from call
/// site `n`; natively the real call sites differ already.
fn site(n: usize) {
    #[cfg(miri)]
    os::set_stand_in_site(n);
    let _ = n;
}

/// Frees `p` through `v` (a named site for the free stacks).
#[inline(never)]
fn first_free_site(v: Valloc<'_>, p: *mut u8) {
    // SAFETY: the tracker accepts any pointer (bad frees are reported).
    unsafe { v.free(core::hint::black_box(p)) };
    core::hint::black_box(());
}

/// As [`first_free_site`], from another site.
#[inline(never)]
fn second_free_site(v: Valloc<'_>, p: *mut u8) {
    // SAFETY: as in `first_free_site`.
    unsafe { v.free(core::hint::black_box(p)) };
    core::hint::black_box(());
}

#[inline(never)]
fn alloc_at_a(v: Valloc<'_>, size: usize) -> *mut u8 {
    site(1);
    let p = v.malloc(8, size);
    site(0);
    // Used after the call: no tail call (in release builds), so this
    // function's frame is on the captured stack.
    core::hint::black_box(p)
}

#[inline(never)]
fn alloc_at_b(v: Valloc<'_>, size: usize) -> *mut u8 {
    site(2);
    let p = v.malloc(8, size);
    site(0);
    // Used after the call: no tail call (in release builds), so this
    // function's frame is on the captured stack.
    core::hint::black_box(p)
}

/// Counts what reaches the inner allocator.
#[derive(Default)]
struct Counting {
    allocs: AtomicUsize,
    frees: AtomicUsize,
}

// SAFETY: blocks come from the libc allocator.
unsafe impl RawAlloc for Counting {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.allocs.fetch_add(1, Ordering::Relaxed);
        Valloc::libc().alloc_layout(layout)
    }
    unsafe fn free(&self, ptr: NonNull<u8>) {
        self.frees.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc`, i.e. from libc.
        unsafe { Valloc::libc().free(ptr.as_ptr()) }
    }
}

/// Calls the handle's vtable directly, as C does (no validation on the
/// Rust side first).
fn c_malloc(v: Valloc<'_>, align: usize, size: usize) -> *mut u8 {
    // SAFETY: tracker handles accept any arguments.
    unsafe { ((*v.vtable()).malloc)(v.self_ptr(), align, size).cast() }
}

/// `free` through the vtable, as C does (NULL reaches the tracker).
fn c_free(v: Valloc<'_>, p: *mut u8) {
    // SAFETY: tracker handles accept any pointer.
    unsafe { ((*v.vtable()).free)(v.self_ptr(), p.cast()) }
}

fn names(frames: &[Frame]) -> Vec<&str> {
    frames
        .iter()
        .filter_map(|f| f.function.as_deref())
        .collect()
}

#[test]
fn leaks_grouped_by_stack_largest_first() {
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    let a: Vec<_> = (0..core::hint::black_box(3))
        .map(|_| alloc_at_a(v, 100))
        .collect();
    let b = alloc_at_b(v, 500);
    let freed = alloc_at_b(v, 7);
    // SAFETY: `freed` came from `v`.
    unsafe { v.free(freed) };
    let r = t.report();
    assert_eq!((r.leaked_bytes, r.leaked_blocks), (800, 4));
    assert_eq!(r.groups.len(), 2, "{r}");
    assert_eq!((r.groups[0].bytes, r.groups[0].count), (500, 1));
    assert_eq!((r.groups[1].bytes, r.groups[1].count), (300, 3));
    assert!(r.errors.is_empty() && r.errors_total == 0);
    if !cfg!(miri) {
        // Symbolized, the tracker's own frames removed from the top.
        let top = names(&r.groups[0].frames);
        assert!(top.iter().any(|n| n.contains("alloc_at_b")), "{top:?}");
        assert!(!top[0].contains("alloc_raw"), "{top:?}");
        assert!(names(&r.groups[1].frames)
            .iter()
            .any(|n| n.contains("alloc_at_a")));
    } else {
        assert_ne!(r.groups[0].frames, r.groups[1].frames);
    }
    assert_eq!((t.live_blocks(), t.live_bytes()), (4, 800));
    assert_eq!(t.peak_bytes(), 807);
    for p in a.into_iter().chain([b]) {
        // SAFETY: each came from `v` and is freed once.
        unsafe { v.free(p) };
    }
    assert!(t.report().is_clean());
    // Only allocation stacks are interned (free stacks stay raw in the
    // recent-frees ring unless a double free is reported): natively the
    // 3 allocation sites; the Miri stand-in has sites a and b.
    assert_eq!(t.metadata().stacks, if cfg!(miri) { 2 } else { 3 });
}

#[test]
fn double_free_is_reported_with_three_stacks_and_not_passed_on() {
    let inner = Counting::default();
    let t = Backtracing::new(Valloc::new(&inner));
    let v = t.valloc();
    let p = alloc_at_a(v, 48);
    // The first free is valid; the second is the bug under test, which
    // the tracker accepts.
    first_free_site(v, p);
    second_free_site(v, p);
    assert_eq!(inner.frees.load(Ordering::Relaxed), 1);
    assert_eq!(t.error_count(), 1);
    let r = t.report();
    assert_eq!(r.errors_total, 1);
    assert_eq!((r.double_frees, r.invalid_frees), (1, 0));
    let e = &r.errors[0];
    assert_eq!(e.kind, ErrorKind::DoubleFree);
    assert_eq!((e.address, e.size), (p as usize, Some(48)));
    assert!(!e.frames.is_empty());
    assert!(!e.first_free_frames.is_empty());
    assert!(!e.alloc_frames.is_empty());
    if !cfg!(miri) {
        assert!(names(&e.alloc_frames)
            .iter()
            .any(|n| n.contains("alloc_at_a")));
        // Each free's stack is its own: the first one kept raw in the
        // recent-frees ring, the second captured at the report.
        let (first, second) = (names(&e.first_free_frames), names(&e.frames));
        assert!(
            first.iter().any(|n| n.contains("first_free_site")),
            "{first:?}"
        );
        assert!(
            !first.iter().any(|n| n.contains("second_free_site")),
            "{first:?}"
        );
        assert!(
            second.iter().any(|n| n.contains("second_free_site")),
            "{second:?}"
        );
    }
    let text = r.to_text();
    assert!(text.contains("double free of"), "{text}");
    assert!(text.contains("first freed at"), "{text}");
    // The program goes on, and the tracker too.
    let q = v.malloc(8, 8);
    // SAFETY: `q` came from `v`.
    unsafe { v.free(q) };
    assert_eq!(r.leaked_blocks, 0);
}

#[test]
fn invalid_frees_are_reported_and_not_passed_on() {
    let inner = Counting::default();
    let t = Backtracing::new(Valloc::new(&inner));
    let v = t.valloc();
    let foreign = Valloc::libc().malloc(8, 16);
    let mut local = 0u64;
    // SAFETY: the tracker accepts any pointer and never dereferences it.
    unsafe {
        v.free(foreign);
        v.free(0x1000 as *mut u8);
        v.free(core::ptr::addr_of_mut!(local).cast());
    }
    c_free(v, core::ptr::null_mut()); // not an error
    assert_eq!(inner.frees.load(Ordering::Relaxed), 0);
    let r = t.report();
    assert_eq!(r.errors_total, 3);
    assert_eq!((r.double_frees, r.invalid_frees), (0, 3));
    assert!(r
        .errors
        .iter()
        .all(|e| e.kind == ErrorKind::InvalidFree && e.size.is_none()));
    assert_eq!(r.errors[1].address, 0x1000);
    assert!(r.errors[0].alloc_frames.is_empty() && !r.errors[0].frames.is_empty());
    // SAFETY: `foreign` came from libc and was not freed by the tracker.
    unsafe { Valloc::libc().free(foreign) };
    let _ = local;
}

#[test]
fn zero_size_and_invalid_requests() {
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    // From C, a zero size reaches the tracker and is recorded as asked.
    let a = c_malloc(v, 8, 0);
    let b = c_malloc(v, 0, 0);
    assert!(!a.is_null() && !b.is_null() && a != b);
    assert_eq!(b as usize % 16, 0, "align 0 means 16");
    assert_eq!((t.live_blocks(), t.live_bytes()), (2, 0));
    let r = t.report();
    assert_eq!((r.leaked_blocks, r.leaked_bytes), (2, 0));
    assert_eq!(
        r.groups
            .iter()
            .map(|g| (g.count, g.bytes))
            .fold((0, 0), |a, g| (a.0 + g.0, a.1 + g.1)),
        (2, 0)
    );
    // From Rust, `Valloc` makes it 1 byte before the vtable.
    let c = v.malloc(8, 0);
    assert_eq!((t.live_blocks(), t.live_bytes()), (3, 1));
    assert!(c_malloc(v, 3, 8).is_null(), "non-power-of-two alignment");
    assert!(
        c_malloc(v, 64, usize::MAX - 8).is_null(),
        "overflowing size"
    );
    assert!(v.malloc(3, 8).is_null());
    assert_eq!(t.live_blocks(), 3);
    // SAFETY: all came from `v`.
    unsafe {
        v.free(a);
        v.free(b);
        v.free(c);
    }
    assert!(t.report().is_clean());
}

#[test]
fn works_as_an_allocator_api2_allocator() {
    let t = Backtracing::new(Valloc::libc());
    let scope = t.scope();
    {
        let mut xs = allocator_api2::vec::Vec::new_in(t.valloc());
        for i in 0..100u64 {
            xs.push(i);
        }
        assert_eq!(xs.iter().sum::<u64>(), 4950);
        assert!(t.live_blocks() == 1 && t.live_bytes() >= 800);
    }
    scope.assert_no_leaks();
    assert!(t.report().is_clean());
}

#[test]
fn four_threads_allocate_and_free_across_threads() {
    const THREADS: usize = 4;
    let per = if cfg!(miri) { 10 } else { 2000 };
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    let blocks: Vec<Vec<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                s.spawn(move || {
                    (0..per)
                        .map(|k| v.malloc(16, 16 + (i * per + k) % 64) as usize)
                        .collect::<Vec<usize>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(t.live_blocks(), THREADS * per);
    let expected_total: usize = (0..THREADS * per).map(|n| 16 + n % 64).sum();
    assert_eq!(t.live_bytes(), expected_total);
    assert_eq!(t.peak_bytes(), expected_total);
    // Each thread frees another thread's blocks, all but the first.
    std::thread::scope(|s| {
        for i in 0..THREADS {
            let mine = &blocks[(i + 1) % THREADS];
            s.spawn(move || {
                for &p in &mine[1..] {
                    // SAFETY: every block came from `v` and is freed once.
                    unsafe { v.free(p as *mut u8) };
                }
            });
        }
    });
    let r = t.report();
    assert_eq!(r.leaked_blocks, THREADS, "{r}");
    assert_eq!(r.errors_total, 0);
    // With several threads the peak is an estimate that may miss up to
    // 64 KiB of another thread's changes; here every thread only
    // allocated before the peak, so it can only fall short.
    let peak = t.peak_bytes();
    assert!(peak <= expected_total && peak + (THREADS - 1) * (64 << 10) >= expected_total);
    for list in &blocks {
        // SAFETY: the first block of each list is still live.
        unsafe { v.free(list[0] as *mut u8) };
    }
    assert!(t.report().is_clean());
}

#[test]
fn scope_sees_only_this_threads_new_blocks() {
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    let before = v.malloc(8, 11);
    let scope = t.scope();
    // Another thread leaks inside our scope: not our business.
    let other = std::thread::scope(|s| s.spawn(|| v.malloc(8, 22) as usize).join().unwrap());
    // A block from before the scope, freed inside it: fine.
    // SAFETY: `before` came from `v`.
    unsafe { v.free(before) };
    let churn = v.malloc(8, 33);
    // SAFETY: `churn` came from `v`.
    unsafe { v.free(churn) };
    assert!(scope.leaks().is_clean());
    let mine = v.malloc(8, 44);
    let leaks = scope.leaks();
    assert_eq!((leaks.leaked_blocks, leaks.leaked_bytes), (1, 44));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        t.scope(); // a fresh scope sees nothing yet
        scope.assert_no_leaks();
    }));
    let message = panicked.unwrap_err();
    let message = message.downcast_ref::<String>().unwrap();
    assert!(message.contains("44 bytes in 1 block"), "{message}");
    // SAFETY: both came from `v`.
    unsafe {
        v.free(mine);
        v.free(other as *mut u8);
    }
    t.scope().assert_no_leaks();
}

/// A parsed log record: op, address, `(align, size)` for ALLOC, frames.
type LogRecord = (String, usize, Option<(usize, usize)>, Vec<String>);

/// Parses log records back.
fn parse_log(text: &str) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(head) = lines.next() {
        let fields: Vec<&str> = head.strip_prefix("+++ ").expect(head).split(':').collect();
        let n: usize = fields[1].parse().unwrap();
        let hex = fields[2].strip_prefix("0x").unwrap();
        assert_eq!(hex.len(), 16, "{head}");
        let addr = usize::from_str_radix(hex, 16).unwrap();
        let extra = match fields[0] {
            "ALLOC" => {
                assert_eq!(fields.len(), 5, "{head}");
                Some((fields[3].parse().unwrap(), fields[4].parse().unwrap()))
            }
            "FREE" => {
                assert_eq!(fields.len(), 3, "{head}");
                None
            }
            other => panic!("bad op {other}"),
        };
        let frames: Vec<String> = (0..n).map(|_| lines.next().unwrap().to_owned()).collect();
        for f in &frames {
            assert!(f.contains("[0x") && f.ends_with(']'), "{f}");
        }
        assert_eq!(lines.next(), Some("---"));
        out.push((fields[0].to_owned(), addr, extra, frames));
    }
    out
}

static LOG_BUF: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn collect_log(record: &[u8]) {
    let mut buf = LOG_BUF.lock().unwrap();
    buf.extend_from_slice(record);
}

#[test]
fn log_mode_writes_the_c_format() {
    let t = Backtracing::with_config(
        Valloc::libc(),
        Config {
            log: LogTarget::Callback(collect_log),
            log_format: LogFormat::Firedancer,
            depth: 5,
            ..Config::DEFAULT
        },
    );
    let v = t.valloc();
    let p = v.malloc(16, 40);
    assert!(c_malloc(v, 3, 8).is_null());
    // SAFETY: `p` came from `v`.
    unsafe { v.free(p) };
    c_free(v, core::ptr::null_mut());
    let text = String::from_utf8(LOG_BUF.lock().unwrap().clone()).unwrap();
    let records = parse_log(&text);
    assert_eq!(records.len(), 4, "{text}");
    assert_eq!(records[0].0, "ALLOC");
    assert_eq!((records[0].1, records[0].2), (p as usize, Some((16, 40))));
    assert_eq!(
        (records[1].0.as_str(), records[1].1, records[1].2),
        ("ALLOC", 0, Some((3, 8)))
    );
    assert_eq!((records[2].0.as_str(), records[2].1), ("FREE", p as usize));
    assert_eq!((records[3].0.as_str(), records[3].1), ("FREE", 0));
    assert!(records.iter().all(|r| !r.3.is_empty() && r.3.len() <= 5));
    assert!(text.lines().next().unwrap().starts_with("+++ ALLOC:"));
}

#[test]
#[cfg_attr(miri, ignore)] // files
fn log_records_from_threads_never_interleave() {
    let dir = crate::test_util::TempDir::new("bt-log");
    // SAFETY: `dir` is dropped after the tracker that uses the path.
    let leaked = unsafe { dir.lend("log.txt") };
    let t = Backtracing::with_config(
        Valloc::libc(),
        Config {
            log: LogTarget::Path(leaked),
            log_format: LogFormat::Firedancer,
            ..Config::DEFAULT
        },
    );
    let v = t.valloc();
    std::thread::scope(|s| {
        for i in 0..4 {
            s.spawn(move || {
                for k in 0..200 {
                    let p = v.malloc(8, 16 + (i + k) % 64);
                    // SAFETY: `p` came from `v`.
                    unsafe { v.free(p) };
                }
            });
        }
    });
    drop(t);
    let text = std::fs::read_to_string(leaked).unwrap();
    let records = parse_log(&text);
    assert_eq!(records.len(), 4 * 200 * 2);
    let allocs = records.iter().filter(|r| r.0 == "ALLOC").count();
    assert_eq!(allocs, 800);
    // Real frames have the glibc shape on Linux: file(...)[0x...].
    #[cfg(target_os = "linux")]
    assert!(
        records[0]
            .3
            .iter()
            .any(|f| f.contains("(+0x") || f.contains("+0x")),
        "{:?}",
        records[0].3
    );
}

/// A module record: bias, start, end, build-id, path.
type ModuleRecord = (u64, u64, u64, Vec<u8>, Vec<u8>);

/// A compact log, decoded (for the tests; the reader users run is
/// `mallocator leaks`).
#[derive(Debug, Default)]
pub(super) struct Decoded {
    pid: u32,
    exe: Vec<u8>,
    modules: Vec<ModuleRecord>,
    stacks: HashMap<u32, Vec<u64>>,
    /// `(thread, kind, ts, addr, size, stack)`: kind 1 alloc, 2 free.
    pub(super) events: Vec<(u64, u8, u64, u64, u64, u32)>,
    end: Option<(u64, u64)>,
}

/// Decodes a whole compact log, checking the layout of
/// `docs/log-format.md` as it goes: the header first, each stack defined
/// once and before any event names it, nothing after the end record.
pub(super) fn decode_compact(b: &[u8]) -> Decoded {
    let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().unwrap()) as usize;
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    assert_eq!(&b[..8], b"\x89mallog\n");
    assert_eq!(u32_at(8), 2);
    let mut d = Decoded::default();
    let mut at = 12;
    let mut first = true;
    while at < b.len() {
        assert!(d.end.is_none(), "a record after the end record");
        let (tag, len) = (b[at], u32_at(at + 1) as usize);
        let p = at + 5;
        assert!(p + len <= b.len(), "record at {at} runs past the end");
        assert_eq!(first, tag == b'H', "the header, and only it, comes first");
        first = false;
        match tag {
            b'H' => {
                d.pid = u32_at(p);
                let n = u16_at(p + 21);
                d.exe = b[p + 23..p + 23 + n].to_vec();
            }
            b'M' => {
                let n = b[p + 24] as usize;
                let id = b[p + 25..p + 25 + n].to_vec();
                let path = b[p + 27 + n..p + len].to_vec();
                assert_eq!(u16_at(p + 25 + n), path.len());
                d.modules
                    .push((u64_at(p), u64_at(p + 8), u64_at(p + 16), id, path));
            }
            b'S' => {
                let (id, n) = (u32_at(p), u16_at(p + 4));
                assert_eq!(len, 6 + 8 * n);
                let frames = (0..n).map(|i| u64_at(p + 6 + 8 * i)).collect();
                assert!(
                    d.stacks.insert(id, frames).is_none(),
                    "stack {id} defined twice"
                );
            }
            b'E' => {
                let thread = u64_at(p);
                let mut e = p + 8;
                while e < p + len {
                    let (kind, ts, addr) = (b[e], u64_at(e + 1), u64_at(e + 9));
                    let (size, stack, next) = match kind {
                        1 => (u64_at(e + 17), u32_at(e + 26), e + 30),
                        2 => (0, u32_at(e + 17), e + 21),
                        k => panic!("event kind {k} at {e}"),
                    };
                    assert!(
                        stack == u32::MAX || d.stacks.contains_key(&stack),
                        "stack {stack} used before its record"
                    );
                    d.events.push((thread, kind, ts, addr, size, stack));
                    e = next;
                }
                assert_eq!(e, p + len, "events fill the chunk");
            }
            b'Z' => d.end = Some((u64_at(p), u64_at(p + 8))),
            t => panic!("unknown record {t} at {at}"),
        }
        at = p + len;
    }
    d
}

/// A tracker over the C library whose log (compact) goes to `f`; const,
/// for the trackers tests keep in statics too.
pub(super) const fn logging_to(f: fn(&[u8])) -> Backtracing<'static> {
    Backtracing::with_config(
        Valloc::libc(),
        Config {
            log: LogTarget::Callback(f),
            ..Config::DEFAULT
        },
    )
}

static COMPACT_BUF: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn collect_compact(bytes: &[u8]) {
    COMPACT_BUF.lock().unwrap().extend_from_slice(bytes);
}

#[test]
fn compact_log_round_trip() {
    let t = logging_to(collect_compact);
    let v = t.valloc();
    let kept = alloc_at_a(v, 24);
    let p = alloc_at_b(v, 40);
    assert!(
        c_malloc(v, 3, 8).is_null(),
        "a bad alignment fails, and is logged"
    );
    // SAFETY: `p` came from `v`.
    unsafe { v.free(p) };
    // Threads: their buffers are written when they end.
    let per_thread = if cfg!(miri) { 20 } else { 100 };
    std::thread::scope(|s| {
        for i in 0..3 {
            s.spawn(move || {
                for k in 0..per_thread {
                    // SAFETY: freeing what `v` returned.
                    unsafe { v.free(v.malloc(8, 16 + i + k)) };
                }
            });
        }
    });
    // SAFETY: `kept` came from `v`.
    unsafe { v.free(kept) };
    drop(t);
    let d = decode_compact(&COMPACT_BUF.lock().unwrap());
    assert_eq!(d.pid, std::process::id());
    assert_eq!(d.events.len(), 3 + 1 + 3 * per_thread * 2 + 1);
    assert_eq!(d.end, Some((d.events.len() as u64, 0)));
    let main = thread::thread_id();
    let mine: Vec<_> = d.events.iter().filter(|e| e.0 == main).collect();
    assert_eq!((mine[0].1, mine[0].3, mine[0].4), (1, kept as u64, 24));
    assert_eq!((mine[1].1, mine[1].3, mine[1].4), (1, p as u64, 40));
    assert_eq!(
        (mine[2].1, mine[2].3, mine[2].4),
        (1, 0, 8),
        "the failed allocation"
    );
    assert_eq!((mine[3].1, mine[3].3), (2, p as u64));
    assert_eq!(
        (mine.last().unwrap().1, mine.last().unwrap().3),
        (2, kept as u64)
    );
    assert_eq!(
        d.events.iter().filter(|e| e.0 != main).count(),
        3 * per_thread * 2
    );
    // Each thread's timestamps never go back.
    for thread in d.events.iter().map(|e| e.0) {
        let ts: Vec<u64> = d
            .events
            .iter()
            .filter(|e| e.0 == thread)
            .map(|e| e.2)
            .collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]));
    }
    // Allocation stacks are real stacks (the in-memory report's frames).
    let a = d.stacks[&mine[0].5].clone();
    assert!(!a.is_empty() && mine[0].5 != mine[1].5);
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        // The module map covers the frames and names this executable.
        let exe = std::env::current_exe().unwrap();
        assert_eq!(d.exe, exe.as_os_str().as_encoded_bytes());
        let in_module = |ip: u64| d.modules.iter().any(|m| m.1 <= ip && ip < m.2);
        assert!(a.iter().all(|&ip| in_module(ip)), "{a:x?} {:x?}", d.modules);
        assert!(
            d.modules.iter().any(|m| m.4 == d.exe && !m.3.is_empty()),
            "the executable, with its build-id"
        );
    }
}

static LATE_BUF: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn collect_late(bytes: &[u8]) {
    LATE_BUF.lock().unwrap().extend_from_slice(bytes);
}

static LATE_TRACKER: Backtracing<'static> = logging_to(collect_late);

/// A thread-local destructor that runs after the one that freed the
/// thread's log buffer, and allocates: its events cannot use that buffer
/// (the thread's state must not keep pointing to it) and go out alone.
#[test]
fn events_after_a_threads_log_buffer_is_gone_are_written_alone() {
    struct AllocatesOnDrop;
    impl Drop for AllocatesOnDrop {
        fn drop(&mut self) {
            let v = LATE_TRACKER.valloc();
            for size in [64, 65] {
                // SAFETY: freeing what `v` returned.
                unsafe { v.free(v.malloc(8, size)) };
            }
        }
    }
    std::thread_local! {
        static LATE: AllocatesOnDrop = const { AllocatesOnDrop };
    }
    std::thread::spawn(|| {
        // Registered first, so destroyed after the log buffer's slot,
        // which the first logged event registers.
        LATE.with(|_| {});
        let v = LATE_TRACKER.valloc();
        // SAFETY: freeing what `v` returned.
        unsafe { v.free(v.malloc(8, 63)) };
    })
    .join()
    .unwrap();
    LATE_TRACKER.flush_log();
    let d = decode_compact(&LATE_BUF.lock().unwrap());
    let sizes: Vec<u64> = d.events.iter().filter(|e| e.1 == 1).map(|e| e.4).collect();
    assert_eq!(sizes, [63, 64, 65], "{:?}", d.events);
    assert_eq!(d.events.len(), 6);
}

static OWN_BLOCKS_BUF: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn collect_own_blocks(bytes: &[u8]) {
    OWN_BLOCKS_BUF.lock().unwrap().extend_from_slice(bytes);
}

/// A block the tracker allocated for itself (inside it: not logged) and
/// that is freed from outside it, as a C library frees the thread
/// destructor entries it allocated when the tracker registered one: the
/// free is not logged either, or a log reader would see a free of a
/// block never allocated.
#[test]
fn the_trackers_own_blocks_are_not_logged_whoever_frees_them() {
    let t = logging_to(collect_own_blocks);
    let v = t.valloc();
    let busy = Busy::enter(t.state().unwrap().epoch);
    let own = v.malloc(8, 32);
    drop(busy);
    let user = v.malloc(8, 48);
    // SAFETY: both came from `v`, freed once.
    unsafe {
        v.free(own);
        v.free(user);
    }
    assert_eq!(t.error_count(), 0);
    drop(t);
    let d = decode_compact(&OWN_BLOCKS_BUF.lock().unwrap());
    let addresses: Vec<(u8, u64)> = d.events.iter().map(|e| (e.1, e.3)).collect();
    assert_eq!(addresses, [(1, user as u64), (2, user as u64)]);
}

/// An inner allocator over the C library's that, once armed, runs its
/// `handler` from inside its next `alloc` (or `free`), which its
/// tracker's hot path calls: as a signal handler that interrupts that
/// path would.
struct Armed {
    on_alloc: core::sync::atomic::AtomicBool,
    on_free: core::sync::atomic::AtomicBool,
    handler: fn(),
}

impl Armed {
    const fn new(handler: fn()) -> Armed {
        Armed {
            on_alloc: core::sync::atomic::AtomicBool::new(false),
            on_free: core::sync::atomic::AtomicBool::new(false),
            handler,
        }
    }
}

// SAFETY: blocks come from the libc allocator, which upholds the contract.
unsafe impl RawAlloc for Armed {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        if self.on_alloc.swap(false, Ordering::SeqCst) {
            (self.handler)();
        }
        Valloc::libc().alloc_layout(layout)
    }
    unsafe fn free(&self, ptr: NonNull<u8>) {
        if self.on_free.swap(false, Ordering::SeqCst) {
            (self.handler)();
        }
        // SAFETY: `ptr` came from `alloc`, i.e. from the libc allocator.
        unsafe { Valloc::libc().free(ptr.as_ptr()) }
    }
}

/// The end of a test whose simulated signal handler kept a 77-byte block,
/// `kept`, while the program allocated `outer`, 24 bytes, through `t`:
/// both are tracked as the program's, and are freed cleanly. The caller
/// takes `kept` out of the static its handler left it in (`swap(0)`): a
/// freed block's address left in a static makes a later test's block at
/// that address reachable from static data, and so not that test's
/// scope leak.
pub(super) fn assert_both_tracked_then_free(t: &Backtracing<'_>, outer: *mut u8, kept: *mut u8) {
    assert!(!outer.is_null() && !kept.is_null());
    let report = t.report();
    assert_eq!((report.leaked_blocks, report.leaked_bytes), (2, 24 + 77));
    let v = t.valloc();
    // SAFETY: both came from `v`, freed once.
    unsafe {
        v.free(outer);
        v.free(kept);
    }
    assert_eq!(t.error_count(), 0);
    assert!(t.report().is_clean());
}

/// As a signal handler in [`INTERRUPTED`]'s allocation path: keeps a
/// 77-byte block (in [`INTERRUPTED_KEPT`]) and frees a 55-byte one.
fn interrupted_handler() {
    let v = INTERRUPTED.valloc();
    INTERRUPTED_KEPT.store(v.malloc(8, 77) as usize, Ordering::SeqCst);
    // SAFETY: freeing what `v` returned, once.
    unsafe { v.free(v.malloc(8, 55)) };
}

static INTERRUPTING: Armed = Armed::new(interrupted_handler);
static INTERRUPTED_KEPT: AtomicUsize = AtomicUsize::new(0);
static INTERRUPTED_BUF: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn collect_interrupted(bytes: &[u8]) {
    INTERRUPTED_BUF.lock().unwrap().extend_from_slice(bytes);
}

static INTERRUPTED: Backtracing<'static> = Backtracing::with_config(
    Valloc::new(&INTERRUPTING),
    Config {
        log: LogTarget::Callback(collect_interrupted),
        ..Config::DEFAULT
    },
);

/// A signal handler's allocations and frees while its thread is in the
/// tracker's hot path are tracked (invariant 12): recorded, with their
/// own stacks, logged right after the interrupted allocation, never
/// taken for the tracker's own.
#[test]
fn a_signal_handlers_calls_inside_the_hot_path_are_tracked_after_it() {
    let v = INTERRUPTED.valloc();
    INTERRUPTING.on_alloc.store(true, Ordering::SeqCst);
    let outer = v.malloc(8, 24);
    let kept = INTERRUPTED_KEPT.swap(0, Ordering::SeqCst) as *mut u8;
    // Under Miri every stack is the same stand-in: one group for both.
    #[cfg(not(miri))]
    {
        let report = INTERRUPTED.report();
        let handlers = report.groups.iter().find(|g| g.bytes == 77).unwrap();
        assert!(!handlers.frames.is_empty(), "the handler's own stack");
    }
    assert_both_tracked_then_free(&INTERRUPTED, outer, kept);
    INTERRUPTED.flush_log();
    let d = decode_compact(&INTERRUPTED_BUF.lock().unwrap());
    let sizes: Vec<(u8, u64)> = d.events.iter().map(|e| (e.1, e.4)).collect();
    assert_eq!(
        &sizes[..4],
        [(1, 24), (1, 77), (1, 55), (2, 0)],
        "{:?}",
        d.events
    );
}

/// As a signal handler in [`NESTING`]'s allocation path that then calls
/// a second tracker, [`NESTED`], as a tracker whose inner allocator is
/// another tracker does: keeps a 77-byte block from `NESTING` (left in
/// the thread's queue) and makes a pair through `NESTED`, whose hot path
/// then ends with that event waiting.
fn nesting_handler() {
    NESTING_KEPT.store(NESTING.valloc().malloc(8, 77) as usize, Ordering::SeqCst);
    let w = NESTED.valloc();
    // SAFETY: freeing what `w` returned, once.
    unsafe { w.free(w.malloc(8, 1)) };
}

static INTERRUPTING_THEN_NESTING: Armed = Armed::new(nesting_handler);
static NESTING_KEPT: AtomicUsize = AtomicUsize::new(0);
static NESTING: Backtracing<'static> = Backtracing::new(Valloc::new(&INTERRUPTING_THEN_NESTING));
static NESTED: Backtracing<'static> = Backtracing::new(Valloc::libc());

/// A signal handler's event waits for the tracker whose hot path it
/// interrupted, even when another tracker's hot path runs inside that
/// one and ends first: the other tracker leaves it alone.
#[test]
fn a_signal_handlers_event_is_recorded_by_the_tracker_it_interrupted() {
    let v = NESTING.valloc();
    INTERRUPTING_THEN_NESTING
        .on_alloc
        .store(true, Ordering::SeqCst);
    let outer = v.malloc(8, 24);
    let kept = NESTING_KEPT.swap(0, Ordering::SeqCst) as *mut u8;
    assert!(NESTED.report().is_clean(), "{:?}", NESTED.report());
    assert_both_tracked_then_free(&NESTING, outer, kept);
    assert_eq!(NESTED.error_count(), 0);
}

/// As a signal handler in [`UNWOUND`]'s allocation path (whose stacks
/// come from the `backtrace` unwinder): keeps a 77-byte block, and
/// counts that unwinder's calls meanwhile.
#[cfg(unix)]
fn unwound_handler() {
    let count = || os::UNWINDS.with(core::cell::Cell::get);
    let before = count();
    UNWOUND_KEPT.store(UNWOUND.valloc().malloc(8, 77) as usize, Ordering::SeqCst);
    UNWOUND_UNWINDS.store(count() - before, Ordering::SeqCst);
}

#[cfg(unix)]
static INTERRUPTING_UNWOUND: Armed = Armed::new(unwound_handler);
#[cfg(unix)]
static UNWOUND_KEPT: AtomicUsize = AtomicUsize::new(0);
#[cfg(unix)]
static UNWOUND_UNWINDS: AtomicUsize = AtomicUsize::new(usize::MAX);
#[cfg(unix)]
static UNWOUND: Backtracing<'static> = Backtracing::with_config(
    Valloc::new(&INTERRUPTING_UNWOUND),
    Config {
        stack_mode: StackMode::Unwind,
        ..Config::DEFAULT
    },
);

/// A signal handler's stack is taken without the `backtrace` unwinder,
/// which allocates (the interrupted thread may hold the locks an
/// allocation through a tracker takes): by frame pointers. Its block is
/// tracked all the same.
#[test]
#[cfg(unix)]
#[cfg_attr(miri, ignore = "no unwinder under Miri: stacks are stand-ins")]
fn a_signal_handlers_stack_is_taken_without_allocating() {
    let v = UNWOUND.valloc();
    INTERRUPTING_UNWOUND.on_alloc.store(true, Ordering::SeqCst);
    let outer = v.malloc(8, 24);
    let kept = UNWOUND_KEPT.swap(0, Ordering::SeqCst) as *mut u8;
    assert_eq!(UNWOUND_UNWINDS.load(Ordering::SeqCst), 0);
    assert_both_tracked_then_free(&UNWOUND, outer, kept);
}

/// As a signal handler in [`FRESH`]'s free path: keeps a 77-byte block.
fn fresh_thread_handler() {
    FRESH_KEPT.store(FRESH.valloc().malloc(8, 77) as usize, Ordering::SeqCst);
}

static INTERRUPTING_FREE: Armed = Armed::new(fresh_thread_handler);
static FRESH_KEPT: AtomicUsize = AtomicUsize::new(0);
static FRESH: Backtracing<'static> = Backtracing::with_config(
    Valloc::new(&INTERRUPTING_FREE),
    Config {
        free_stacks: false,
        ..Config::DEFAULT
    },
);

/// A signal handler's stack is not taken on a thread that never asked
/// for its stack bounds (the C library allocates to find them, and a
/// handler's capture allocates nothing): here the thread's first call is
/// a free, which takes no stack. The handler's block is tracked all the
/// same, without a stack.
#[test]
#[cfg_attr(miri, ignore = "no stack bounds under Miri")]
fn a_signal_handler_on_a_thread_without_known_stack_bounds_asks_for_none() {
    let v = FRESH.valloc();
    let block = v.malloc(8, 24) as usize;
    let asked = std::thread::spawn(move || {
        let before = stack::thread_bounds_asked();
        INTERRUPTING_FREE.on_free.store(true, Ordering::SeqCst);
        // SAFETY: `block` came from `v`, freed once.
        unsafe { v.free(block as *mut u8) };
        (before, stack::thread_bounds_asked())
    })
    .join()
    .unwrap();
    assert_eq!(asked, (false, false));
    // Taken out of the static (see `assert_both_tracked_then_free`).
    let kept = FRESH_KEPT.swap(0, Ordering::SeqCst) as *mut u8;
    let report = FRESH.report();
    assert_eq!((report.leaked_blocks, report.leaked_bytes), (1, 77));
    assert!(report.groups[0].frames.is_empty());
    // SAFETY: `kept` came from `v`, freed once.
    unsafe { v.free(kept) };
    assert_eq!(FRESH.error_count(), 0);
    assert!(FRESH.report().is_clean());
}

/// A signal handler's call that comes after the interrupted call has
/// released the tracker, but before it recorded the events earlier
/// handlers left, records those first: here a free of a block whose
/// allocation still waits in the queue.
#[test]
fn a_handlers_call_records_the_events_waiting_before_its_own() {
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    // SAFETY: freeing what `v` returned (the tracker is set up).
    unsafe { v.free(v.malloc(8, 8)) };
    let st = t.state().unwrap();
    // An earlier handler's allocation, left in the queue.
    let block = Valloc::libc().malloc(8, 40);
    assert!(!block.is_null());
    let me = thread::current().unwrap();
    assert!(me.pending.push(pending::Deferred {
        epoch: st.epoch,
        ptr: block as usize,
        size: 40,
        align: 8,
        align_log2: 3,
        ..pending::Deferred::EMPTY
    }));
    // SAFETY: `block` is live, in the queue as `t`'s.
    unsafe { v.free(block) };
    assert_eq!(t.error_count(), 0, "{:?}", t.report());
    assert!(t.report().is_clean() && !me.pending.has(st.epoch));
}

/// A signal handler's free of a block whose shard a report is reading
/// (simulated: the report's filter runs under that shard's lock, and
/// frees the block it is shown) waits in the thread's queue instead of
/// for the lock, and is done once the report has read the tables, before
/// it returns. In a child process, whose watchdog ends a hang.
#[test]
#[cfg(all(unix, not(miri)))]
fn a_handlers_free_while_a_report_reads_its_shard_waits_in_the_queue() {
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    let p = v.malloc(8, 40);
    assert!(fork::tests_support::in_child(|| {
        let freed = core::cell::Cell::new(false);
        let as_handler = |r: &live::Record| {
            if r.addr == p as usize && !freed.replace(true) {
                // SAFETY: `p` came from `v`, freed once.
                unsafe { v.free(p) };
            }
            true
        };
        let report = t
            .build_report(&as_handler, false, report::Reach::Unclassified)
            .unwrap();
        let me = thread::current().unwrap();
        freed.get() && report.leaked_blocks == 1 && !me.has_pending() && t.live_blocks() == 0
    }));
    // SAFETY: `p` came from `v`; only the child freed it.
    unsafe { v.free(p) };
}

/// The same for the tracker's accessors, which read the shards under
/// their locks too ([`State::reading`] inside `Backtracing::read`).
#[test]
#[cfg(all(unix, not(miri)))]
fn a_handlers_free_while_an_accessor_reads_its_shard_waits_in_the_queue() {
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    let p = v.malloc(8, 40);
    assert!(fork::tests_support::in_child(|| {
        let me = thread::current().unwrap();
        let mut waited = false;
        let live = t.read(|st| {
            st.reading(|| {
                for shard in &st.live {
                    let held = shard.lock();
                    if held.get(p as usize).is_some() {
                        // SAFETY: `p` came from `v`, freed once.
                        unsafe { v.free(p) };
                        waited = me.has_pending();
                    }
                    drop(held);
                }
                st.live.iter().map(|s| s.lock().tracked()).sum::<usize>()
            })
        });
        waited && live == Some(1) && !me.has_pending() && t.live_blocks() == 0
    }));
    // SAFETY: `p` came from `v`; only the child freed it.
    unsafe { v.free(p) };
}

/// Real signals, sent to a thread that allocates and frees through a
/// tracker, whose handler allocates and frees through the same tracker:
/// when a call returns, no event of a handler waits in the thread's
/// queue (a handler that runs after the hot path's last check defers
/// its event, so the check must come after the guard is released), and
/// every event is recorded. The tracker's inner allocator is one a
/// handler may call: a bump allocator over memory taken beforehand.
///
/// Not under ThreadSanitizer, which reports the tracker's own table
/// growth in the handler (a `malloc` call there, as the handler's own
/// allocation would be without the tracker) as a signal-unsafe call.
#[test]
#[cfg(all(target_os = "linux", not(miri)))]
#[cfg_attr(
    mallocator_sanitize = "thread",
    ignore = "ThreadSanitizer flags malloc inside a signal handler, see the doc comment"
)]
fn no_signal_handlers_event_outlives_the_call_it_interrupted() {
    use core::sync::atomic::AtomicBool;

    /// Bump allocation in `[base, base + len)`, in 64-byte steps; a free
    /// gives back only the newest block of one step (a pair's free follows
    /// its allocation), so that a long run, while the signals come slowly
    /// on a loaded machine, does not use the arena up.
    struct Bump {
        base: AtomicUsize,
        used: AtomicUsize,
        len: usize,
    }
    // SAFETY: every block is a distinct, aligned range of the arena,
    // which lives for the whole process (leaked).
    unsafe impl RawAlloc for Bump {
        fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
            let size = layout.size().max(1).next_multiple_of(64);
            let at = self.used.fetch_add(size, Ordering::Relaxed);
            if layout.align() > 64 || at + size > self.len {
                return Err(AllocError);
            }
            NonNull::new((self.base.load(Ordering::Relaxed) + at) as *mut u8).ok_or(AllocError)
        }
        unsafe fn free(&self, ptr: NonNull<u8>) {
            let used = self.used.load(Ordering::Relaxed);
            let newest = self.base.load(Ordering::Relaxed) + used.wrapping_sub(64);
            if used >= 64 && used <= self.len && ptr.as_ptr() as usize == newest {
                // Fails, and keeps the block, if a handler allocated since.
                let _ = self.used.compare_exchange(
                    used,
                    used - 64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
    }
    static BUMP: Bump = Bump {
        base: AtomicUsize::new(0),
        used: AtomicUsize::new(0),
        len: 64 << 20,
    };
    static SIGNALLED: Backtracing<'static> = Backtracing::new(Valloc::new(&BUMP));
    static FREED: AtomicUsize = AtomicUsize::new(0);
    static KEPT: AtomicUsize = AtomicUsize::new(0);
    static HANDLED: AtomicUsize = AtomicUsize::new(0);
    static STOP: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(_: libc::c_int) {
        let v = SIGNALLED.valloc();
        // A free first: its block, an earlier handler's, may still wait
        // in the queue, to be recorded before this free.
        let old = FREED.swap(0, Ordering::SeqCst);
        // SAFETY: `old` came from `v` (or is null), freed once.
        unsafe { v.free(old as *mut u8) };
        FREED.store(v.malloc(8, 16) as usize, Ordering::SeqCst);
        // A reallocation of a block an earlier handler made, which may
        // still wait in the queue too; null (the block kept as it is)
        // when its record is behind a lock.
        let kept = KEPT.load(Ordering::SeqCst) as *mut u8;
        let size = 16 + 16 * (HANDLED.load(Ordering::SeqCst) % 2);
        let new = if kept.is_null() {
            v.malloc(8, size)
        } else {
            // SAFETY: `kept` is a live block of `SIGNALLED`.
            unsafe { SIGNALLED.realloc_raw(kept, size) }
        };
        if !new.is_null() {
            KEPT.store(new as usize, Ordering::SeqCst);
        }
        HANDLED.fetch_add(1, Ordering::SeqCst);
    }

    let arena = Box::leak(vec![0u8; BUMP.len].into_boxed_slice());
    BUMP.base
        .store(arena.as_mut_ptr() as usize, Ordering::Relaxed);
    let v = SIGNALLED.valloc();
    let epoch = SIGNALLED.state().unwrap().epoch;
    let me = thread::current().unwrap();
    // SAFETY: a plain handler for SIGUSR1, restored below; `pthread_self`
    // names this thread, which outlives the sender (joined below).
    let (old, target) = unsafe {
        (
            libc::signal(libc::SIGUSR1, on_signal as *const () as libc::sighandler_t),
            libc::pthread_self() as usize,
        )
    };
    // A signal at a varying point of a pair, then none until the next
    // pair: more would fill the thread's queue of deferred events (whose
    // overflow is refused, leaving blocks unrecorded or never freed).
    static PAIRS: AtomicUsize = AtomicUsize::new(0);
    let sender = std::thread::spawn(move || {
        let mut wait = 0usize;
        while !STOP.load(Ordering::Relaxed) {
            let pairs = PAIRS.load(Ordering::Relaxed);
            // SAFETY: the target thread is alive until it stops this loop.
            unsafe { libc::pthread_kill(target as libc::pthread_t, libc::SIGUSR1) };
            wait = (wait + 37) % 400;
            for _ in 0..wait {
                core::hint::spin_loop();
            }
            while PAIRS.load(Ordering::Relaxed) < pairs + 2 && !STOP.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    });
    // Until enough signals came (the sender may wait for a core while
    // other tests run; 20 s were too few under qemu-user on a loaded
    // 2-core machine), or a while.
    let start = std::time::Instant::now();
    let mut late = 0;
    let mut i = 0;
    while (i < 200_000 || HANDLED.load(Ordering::Relaxed) < 2000)
        && start.elapsed() < std::time::Duration::from_secs(60)
    {
        let p = v.malloc(8, 32);
        // SAFETY: `p` came from `v`.
        unsafe { v.free(p) };
        late += usize::from(me.pending.has(epoch));
        i += 1;
        PAIRS.store(i, Ordering::Relaxed);
    }
    STOP.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    // SAFETY: the handler that was there before; ignored first, so that
    // a signal still on its way cannot end the process by its default.
    unsafe {
        libc::signal(libc::SIGUSR1, libc::SIG_IGN);
        libc::signal(libc::SIGUSR1, old);
    }
    assert!(
        HANDLED.load(Ordering::SeqCst) >= 2000,
        "too few signals to tell"
    );
    assert_eq!(
        late, 0,
        "calls that returned with a handler's event waiting"
    );
    assert_eq!(SIGNALLED.error_count(), 0);
    // The handler's last two blocks.
    let report = SIGNALLED.report();
    assert_eq!(report.leaked_blocks, 2);
    assert!([32, 48].contains(&report.leaked_bytes), "{report:?}");
}

/// A page's worth of bytes, aligned to a page.
#[repr(align(4096))]
struct Page(core::cell::UnsafeCell<[u8; 4096]>);

/// An inner allocator that hands out the 64-byte blocks of one page, so
/// that all its blocks share one live shard (the page's), and never
/// reuses them. Once armed, it calls `handler` from inside its own
/// `alloc` (which its tracker's hot path calls), as a signal handler
/// that interrupts that path would.
struct OnePage {
    page: Page,
    next: AtomicUsize,
    armed: core::sync::atomic::AtomicBool,
    handler: fn(),
}

// SAFETY: the page's bytes are reached only through the blocks handed
// out, each once (the cursor is atomic).
unsafe impl Sync for OnePage {}

impl OnePage {
    const fn new(handler: fn()) -> Self {
        OnePage {
            page: Page(core::cell::UnsafeCell::new([0; 4096])),
            next: AtomicUsize::new(0),
            armed: core::sync::atomic::AtomicBool::new(false),
            handler,
        }
    }
}

// SAFETY: each block is 64 bytes of the page, aligned to 64, handed out
// once and never reused.
unsafe impl RawAlloc for OnePage {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            (self.handler)();
        }
        if layout.size() > 64 || layout.align() > 64 {
            return Err(AllocError);
        }
        let at = self.next.fetch_add(64, Ordering::Relaxed);
        if at >= 4096 {
            return Err(AllocError);
        }
        // SAFETY: `at` is within the page.
        NonNull::new(unsafe { self.page.0.get().cast::<u8>().add(at) }).ok_or(AllocError)
    }
    unsafe fn free(&self, _ptr: NonNull<u8>) {}
}

/// Runs `f` on a thread of its own; fails if it has not returned within
/// 20 seconds: it would be waiting forever for a lock its own thread
/// holds.
fn returns(f: fn()) {
    let (done, finished) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match finished.recv_timeout(std::time::Duration::from_secs(20)) {
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("no answer: waiting for a lock its own thread holds")
        }
        _ => {
            if let Err(e) = handle.join() {
                std::panic::resume_unwind(e);
            }
        }
    }
}

fn no_handler() {}

static LOOKED_UP_PAGE: OnePage = OnePage::new(no_handler);
static LOOKED_UP: Backtracing<'static> = Backtracing::new(Valloc::new(&LOOKED_UP_PAGE));
static LOOKED_UP_BLOCKS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// A signal handler that arrives while a reallocation looks its block
/// up (the shard's lock taken) leaves its calls for later, as in the
/// allocation and free paths (invariant 12): here a free and an
/// allocation in that very shard, recorded once the look-up is over.
#[test]
fn a_signal_handler_that_interrupts_a_look_up_waits_for_no_lock() {
    returns(|| {
        let v = LOOKED_UP.valloc();
        let p = v.malloc(8, 24);
        LOOKED_UP_BLOCKS[0].store(v.malloc(8, 16) as usize, Ordering::SeqCst);
        live::test_hooks::interrupt_next_lookup(|| {
            let v = LOOKED_UP.valloc();
            let q = LOOKED_UP_BLOCKS[0].load(Ordering::SeqCst) as *mut u8;
            // SAFETY: `q` came from `v`, freed once.
            unsafe { v.free(q) };
            LOOKED_UP_BLOCKS[1].store(v.malloc(8, 40) as usize, Ordering::SeqCst);
        });
        assert_eq!(LOOKED_UP.block_of(p), Block::Live { size: 24, stamp: 0 });
        let kept = LOOKED_UP_BLOCKS[1].load(Ordering::SeqCst) as *mut u8;
        assert!(!kept.is_null(), "the handler did not run");
        let report = LOOKED_UP.report();
        assert_eq!((report.leaked_blocks, report.leaked_bytes), (2, 24 + 40));
        assert_eq!(LOOKED_UP.error_count(), 0);
        // SAFETY: both came from `v`, freed once.
        unsafe {
            v.free(p);
            v.free(kept);
        }
        assert!(LOOKED_UP.report().is_clean());
    });
}

static HELD_PAGE: OnePage = OnePage::new(realloc_behind_a_held_lock);
static HELD: Backtracing<'static> = Backtracing::new(Valloc::new(&HELD_PAGE));
static HELD_BLOCK: AtomicUsize = AtomicUsize::new(0);
/// What the handler saw: `block_of`'s answer and `realloc_raw`'s.
static HELD_ANSWERS: Mutex<Option<(Block, usize)>> = Mutex::new(None);

/// The handler of [`HELD_PAGE`]: reallocates [`HELD_BLOCK`] while the
/// interrupted path holds the lock of its shard (taken here on its
/// behalf).
fn realloc_behind_a_held_lock() {
    let p = HELD_BLOCK.load(Ordering::SeqCst) as *mut u8;
    let st = HELD.state().unwrap();
    let shard = st.live[live::shard_of(p as usize)].lock();
    let answer = HELD.block_of(p);
    // SAFETY: `p` is a live block of `HELD`, not used after this call
    // unless it fails.
    let new = unsafe { HELD.realloc_raw(p, 48) };
    drop(shard);
    *HELD_ANSWERS.lock().unwrap() = Some((answer, new as usize));
}

/// A signal handler's reallocation while its thread's hot path may hold
/// the block's shard lock does not wait for it: it fails, and the old
/// block stays live and untouched.
#[test]
fn a_handlers_realloc_behind_a_held_lock_fails_and_keeps_the_block() {
    returns(|| {
        let v = HELD.valloc();
        let p = v.malloc(8, 24);
        // SAFETY: `p` is a block of 24 bytes.
        unsafe { p.write_bytes(7, 24) };
        HELD_BLOCK.store(p as usize, Ordering::SeqCst);
        HELD_PAGE.armed.store(true, Ordering::SeqCst);
        let outer = v.malloc(8, 8);
        let answers = HELD_ANSWERS.lock().unwrap().take();
        assert_eq!(answers, Some((Block::Unreadable, 0)));
        assert_eq!(HELD.block_of(p), Block::Live { size: 24, stamp: 0 });
        // SAFETY: `p` is still a live block of 24 bytes.
        assert_eq!(unsafe { core::slice::from_raw_parts(p, 24) }, [7; 24]);
        let report = HELD.report();
        assert_eq!((report.leaked_blocks, report.leaked_bytes), (2, 24 + 8));
        assert_eq!(HELD.error_count(), 0);
        // SAFETY: both came from `v`, freed once.
        unsafe {
            v.free(p);
            v.free(outer);
        }
        assert!(HELD.report().is_clean());
    });
}

static DEFERRED_PAGE: OnePage = OnePage::new(realloc_a_deferred_block);
static DEFERRED: Backtracing<'static> = Backtracing::new(Valloc::new(&DEFERRED_PAGE));
/// The handler's block and what its reallocation returned.
static DEFERRED_BLOCKS: Mutex<(usize, usize)> = Mutex::new((0, 0));

/// The handler of [`DEFERRED_PAGE`]: allocates a block (whose record
/// waits in the thread's queue) and reallocates it at once.
fn realloc_a_deferred_block() {
    let p = DEFERRED.valloc().malloc(8, 16);
    let mut q = core::ptr::null_mut();
    if !p.is_null() {
        // SAFETY: `p` is a live block of 16 bytes from `DEFERRED`, not
        // used after the reallocation unless it fails.
        unsafe {
            p.write_bytes(7, 16);
            q = DEFERRED.realloc_raw(p, 40);
        }
    }
    *DEFERRED_BLOCKS.lock().unwrap() = (p as usize, q as usize);
}

/// A signal handler that reallocates a block it allocated while its
/// thread was in the tracker's hot path (the block's record still in
/// the thread's queue) gets a new block with the old one's bytes, and
/// the old one is freed once, not taken for a bad free.
#[test]
fn a_handlers_realloc_of_a_block_still_in_its_queue_keeps_and_copies_it() {
    let v = DEFERRED.valloc();
    DEFERRED_PAGE.armed.store(true, Ordering::SeqCst);
    let outer = v.malloc(8, 24);
    let (p, q) = *DEFERRED_BLOCKS.lock().unwrap();
    assert!(p != 0 && q != 0, "the reallocation failed");
    assert_ne!(p, q);
    assert_eq!(
        // SAFETY: `q` is a live block of 40 bytes, the first 16 copied.
        unsafe { core::slice::from_raw_parts(q as *const u8, 16) },
        [7; 16]
    );
    let report = DEFERRED.report();
    assert_eq!((report.leaked_blocks, report.leaked_bytes), (2, 24 + 40));
    assert_eq!(DEFERRED.error_count(), 0);
    // SAFETY: both came from `v`, freed once.
    unsafe {
        v.free(outer);
        v.free(q as *mut u8);
    }
    assert!(DEFERRED.report().is_clean());
}

static STAMPED_PAGE: OnePage = OnePage::new(realloc_a_block_from_before_the_scope);
static STAMPED: Backtracing<'static> = Backtracing::new(Valloc::new(&STAMPED_PAGE));
/// The block to reallocate, and what its reallocation returned.
static STAMPED_BLOCKS: Mutex<(usize, usize)> = Mutex::new((0, 0));

/// The handler of [`STAMPED_PAGE`]: reallocates the first block of
/// [`STAMPED_BLOCKS`].
fn realloc_a_block_from_before_the_scope() {
    let mut blocks = STAMPED_BLOCKS.lock().unwrap();
    // SAFETY: the block is a live one of `STAMPED`, not used after this
    // call unless it fails.
    blocks.1 = unsafe { STAMPED.realloc_raw(blocks.0 as *mut u8, 40) } as usize;
}

/// A signal handler's reallocation, its new block's record left in the
/// thread's queue, gives the new block the old one's scope stamp, not
/// the one the thread has when the queue is recorded.
#[test]
fn a_handlers_realloc_keeps_the_old_blocks_stamp() {
    let v = STAMPED.valloc();
    let p = v.malloc(8, 16);
    let Block::Live { stamp, .. } = STAMPED.block_of(p) else {
        panic!("not live");
    };
    STAMPED_BLOCKS.lock().unwrap().0 = p as usize;
    let scope = STAMPED.scope();
    STAMPED_PAGE.armed.store(true, Ordering::SeqCst);
    let outer = v.malloc(8, 24);
    let q = STAMPED_BLOCKS.lock().unwrap().1 as *mut u8;
    assert!(!q.is_null(), "the reallocation failed");
    assert_eq!(STAMPED.block_of(q), Block::Live { size: 40, stamp });
    // SAFETY: both came from `v`, freed once.
    unsafe {
        v.free(outer);
        v.free(q);
    }
    scope.assert_no_leaks();
    assert_eq!(STAMPED.error_count(), 0);
}

static FLUSHED_BUF: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn collect_flushed(bytes: &[u8]) {
    FLUSHED_BUF.lock().unwrap().extend_from_slice(bytes);
}

/// A thread's events keep their order in the log while another thread
/// flushes its buffer: an event logged while the flushing thread holds
/// the buffer must not reach the log before the buffered ones (a free
/// before its allocation would read as an invalid free and a leak).
#[test]
fn a_threads_events_stay_in_order_while_another_thread_flushes_them() {
    let t = Backtracing::with_config(
        Valloc::libc(),
        Config {
            log: LogTarget::Callback(collect_flushed),
            depth: 4,
            ..Config::DEFAULT
        },
    );
    let v = t.valloc();
    let pairs = if cfg!(miri) { 40 } else { 20_000 };
    let done = core::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for k in 0..pairs {
                // SAFETY: freeing what `v` returned.
                unsafe { v.free(v.malloc(8, 16 + k % 64)) };
            }
            done.store(true, Ordering::SeqCst);
        });
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                t.flush_log();
            }
        });
    });
    drop(t);
    let d = decode_compact(&FLUSHED_BUF.lock().unwrap());
    assert_eq!(d.events.len(), 2 * pairs, "every event is written once");
    assert_eq!(d.end, Some((2 * pairs as u64, 0)));
    let mut threads: HashMap<u64, (u64, std::collections::HashSet<u64>)> = HashMap::new();
    for (i, &(thread, kind, ts, addr, _, _)) in d.events.iter().enumerate() {
        let (last, live) = threads.entry(thread).or_default();
        assert!(ts >= *last, "event {i}: thread {thread}'s time goes back");
        *last = ts;
        if kind == 1 {
            assert!(live.insert(addr), "event {i}: {addr:#x} allocated twice");
        } else {
            assert!(
                live.remove(&addr),
                "event {i}: {addr:#x} freed before its allocation"
            );
        }
    }
}

#[test]
#[cfg_attr(miri, ignore)] // files
fn compact_log_file_from_many_threads() {
    let dir = crate::test_util::TempDir::new("bt-v2");
    // SAFETY: `dir` is dropped after the tracker that uses the path.
    let leaked = unsafe { dir.lend("log.v2") };
    let t = Backtracing::with_config(
        Valloc::libc(),
        Config {
            log: LogTarget::Path(leaked),
            ..Config::DEFAULT
        },
    );
    let v = t.valloc();
    // Enough events that every thread fills its buffer several times.
    std::thread::scope(|s| {
        for i in 0..4 {
            s.spawn(move || {
                for k in 0..5000 {
                    let p = v.malloc(8, 16 + (i + k) % 64);
                    // SAFETY: `p` came from `v`.
                    unsafe { v.free(p) };
                }
            });
        }
    });
    drop(t);
    let bytes = std::fs::read(leaked).unwrap();
    let d = decode_compact(&bytes);
    assert_eq!(d.events.len(), 4 * 5000 * 2);
    assert_eq!(d.end, Some((40_000, 0)));
    let threads: std::collections::HashSet<u64> = d.events.iter().map(|e| e.0).collect();
    assert_eq!(threads.len(), 4);
    // About 25 bytes an event, stacks and module map included.
    assert!(bytes.len() < 40_000 * 40, "{} bytes", bytes.len());
}

/// The report keeps the first 4096 bad frees, but counts each kind over
/// all of them: a double free after the cap is still counted as one.
#[test]
#[cfg_attr(miri, ignore = "thousands of captured stacks")]
fn error_counts_by_kind_go_past_the_kept_errors() {
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    for i in 0..4100usize {
        // SAFETY: never handed out: an invalid free, caught and not passed on.
        unsafe { v.free((0x1000 + 16 * i) as *mut u8) };
    }
    let p = v.malloc(8, 8);
    // SAFETY: one valid free, then a double free (caught).
    unsafe {
        v.free(p);
        v.free(p);
    }
    let r = t.report();
    assert_eq!(r.errors.len(), 4096);
    assert_eq!(r.errors_total, 4101);
    assert_eq!((r.double_frees, r.invalid_frees), (1, 4100));
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(
        json["error_counts"],
        serde_json::json!({"double_free": 1, "invalid_free": 4100})
    );
}

#[test]
fn report_json_structure() {
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    let keep = alloc_at_a(v, 24);
    let p = alloc_at_b(v, 8);
    // SAFETY: one valid free, one double free (caught).
    unsafe {
        v.free(p);
        v.free(p);
    }
    let json: serde_json::Value = serde_json::from_str(&t.report().to_json()).unwrap();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["source"], "in_process");
    assert_eq!(json["leaked_bytes"], 24);
    assert_eq!(json["leaked_blocks"], 1);
    assert_eq!(json["in_process"]["errors_total"], 1);
    assert_eq!(
        json["error_counts"],
        serde_json::json!({"double_free": 1, "invalid_free": 0})
    );
    let group = &json["groups"][0];
    assert_eq!(
        (group["bytes"].as_u64(), group["count"].as_u64()),
        (Some(24), Some(1))
    );
    let frame = &group["frames"][0];
    assert!(frame["ip"].is_u64());
    // This test binary has debug info: its own frame is named in full
    // (Miri's stand-in frames have a name only).
    assert!(frame["function"].is_string(), "{frame}");
    if !cfg!(miri) {
        assert!(frame["file"].is_string(), "{frame}");
        assert!(frame["line"].is_u64(), "{frame}");
    }
    let err = &json["errors"][0];
    assert_eq!(err["kind"], "double_free");
    assert_eq!(err["count"], 1);
    assert_eq!(err["address"].as_u64(), Some(p as u64));
    assert_eq!(err["bytes"], 8);
    for key in ["frames", "alloc_frames", "first_free_frames"] {
        assert!(err[key].as_array().is_some_and(|a| !a.is_empty()), "{key}");
    }
    // SAFETY: `keep` came from `v`.
    unsafe { v.free(keep) };
}

#[test]
fn depth_is_capped_and_free_stacks_can_be_off() {
    let t = Backtracing::with_config(
        Valloc::libc(),
        Config {
            depth: 1000,
            free_stacks: false,
            ..Config::DEFAULT
        },
    );
    assert_eq!(t.depth.load(Ordering::Relaxed), MAX_DEPTH);
    let v = t.valloc();
    let p = v.malloc(8, 8);
    // SAFETY: valid free, then a caught double free.
    unsafe {
        v.free(p);
        v.free(p);
    }
    let r = t.report();
    assert_eq!(r.errors[0].kind, ErrorKind::DoubleFree);
    // The bad free's own stack is taken when it is caught; the first
    // free's was not kept.
    assert!(!r.errors[0].frames.is_empty() && r.errors[0].first_free_frames.is_empty());
    assert!(!r.errors[0].alloc_frames.is_empty());
}

#[test]
fn metadata_counts_records_and_stacks() {
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    let ps: Vec<_> = (0..100).map(|_| alloc_at_a(v, 8)).collect();
    let m = t.metadata();
    assert_eq!(m.record_bytes, core::mem::size_of::<Record>());
    assert_eq!((m.live_blocks, m.stacks), (100, 1));
    assert!(m.live_table_bytes >= 100 * m.record_bytes);
    for p in ps {
        // SAFETY: each came from `v`.
        unsafe { v.free(p) };
    }
}

/// The bookkeeping bound while the live set grows: at most 48 bytes of live-table memory (every slot
/// allocated, empty ones and growth slack included) per live block, at
/// every size from 4096 live blocks on (checked every 1000 blocks up to
/// 300k).
#[test]
#[cfg_attr(miri, ignore)] // 300k allocations
fn live_table_costs_at_most_48_bytes_per_live_block() {
    let config = Config {
        depth: 1,
        stack_mode: StackMode::FramePointers,
        ..Config::DEFAULT
    };
    let t = Backtracing::with_config(Valloc::libc(), config);
    let v = t.valloc();
    let mut blocks = Vec::with_capacity(300_000);
    let mut worst = 0.0f64;
    for n in 1..=300_000usize {
        blocks.push(v.malloc(8, 8));
        if n >= 4096 && (n % 1000 == 0 || [5_000, 50_000, 300_000].contains(&n)) {
            let m = t.metadata();
            assert_eq!(m.live_blocks, n);
            let per_block = m.live_table_bytes as f64 / n as f64;
            assert!(per_block <= 48.0, "{per_block:.1} bytes per block at {n}");
            worst = worst.max(per_block);
        }
    }
    // Honest accounting: at least the records themselves.
    assert!(worst >= 24.0);
    for p in blocks {
        // SAFETY: each came from `v`.
        unsafe { v.free(p) };
    }
    assert!(t.report().is_clean());
}

#[test]
fn unrecordable_sizes_fail_without_reaching_the_inner_allocator() {
    let inner = Counting::default();
    let t = Backtracing::new(Valloc::new(&inner));
    let v = t.valloc();
    if usize::BITS == 64 {
        assert!(c_malloc(v, 8, 1 << 56).is_null());
        assert_eq!(inner.allocs.load(Ordering::Relaxed), 0);
    }
    let p = c_malloc(v, 8, 100);
    assert_eq!(inner.allocs.load(Ordering::Relaxed), 1);
    assert_eq!(t.live_bytes(), 100);
    c_free(v, p);
    assert!(t.report().is_clean());
}

#[test]
fn nested_scopes_both_see_the_inner_blocks() {
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    let outer = t.scope();
    let a = alloc_at_a(v, 10);
    let inner = t.scope();
    let b = alloc_at_b(v, 20);
    assert_eq!(inner.leaks().leaked_bytes, 20);
    assert_eq!(outer.leaks().leaked_bytes, 30);
    // Another thread's scope does not capture this thread's blocks.
    let seen = std::thread::scope(|s| {
        s.spawn(|| {
            let theirs = t.scope();
            theirs.leaks().leaked_blocks
        })
        .join()
        .unwrap()
    });
    let c = v.malloc(8, 40);
    assert_eq!((seen, outer.leaks().leaked_bytes), (0, 70));
    // SAFETY: all came from `v`.
    unsafe {
        v.free(a);
        v.free(b);
        v.free(c);
    }
    outer.assert_no_leaks();
    inner.assert_no_leaks();
}

#[test]
fn peak_is_exact_for_one_thread_across_synchronisations() {
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    let n = if cfg!(miri) { 40 } else { 300 };
    // 300 KB, crossing the 64 KiB synchronisation points several times.
    let blocks: Vec<_> = (0..n).map(|_| v.malloc(8, 1000)).collect();
    for p in &blocks {
        // SAFETY: each came from `v`.
        unsafe { v.free(*p) };
    }
    let small = v.malloc(8, 10);
    assert_eq!(t.live_bytes(), 10);
    assert_eq!(t.peak_bytes(), n * 1000);
    // SAFETY: `small` came from `v`.
    unsafe { v.free(small) };
}

/// One thread allocating through trackers in turn, each block through
/// one of them, then freeing them all: every tracker's peak is exact. A
/// tracker nested in another's inner allocator is used by every
/// allocation of the outer one; with three or more, the thread's shares
/// of them cannot all be kept and are summed again instead.
#[test]
fn peak_is_exact_for_one_thread_using_trackers_in_turn() {
    // Nested: every block of `outer` is a block of `inner` too.
    let inner = Backtracing::new(Valloc::libc());
    let outer = Backtracing::new(inner.valloc());
    let v = outer.valloc();
    let blocks: Vec<_> = (0..10).map(|_| v.malloc(8, 100)).collect();
    for p in &blocks {
        // SAFETY: each came from `v`.
        unsafe { v.free(*p) };
    }
    assert_eq!((outer.live_bytes(), outer.peak_bytes()), (0, 1000));
    assert_eq!((inner.live_bytes(), inner.peak_bytes()), (0, 1000));
    // In turn, one to six of them (the thread keeps two shares, and
    // remembers four trackers whose share it dropped).
    for n in 1..=6 {
        let trackers: Vec<_> = (0..n).map(|_| Backtracing::new(Valloc::libc())).collect();
        let mut blocks = Vec::new();
        for _ in 0..10 {
            for t in &trackers {
                blocks.push((t.valloc(), t.valloc().malloc(8, 100)));
            }
        }
        for (v, p) in blocks {
            // SAFETY: each came from its `v`.
            unsafe { v.free(p) };
        }
        for t in &trackers {
            assert_eq!((t.live_bytes(), t.peak_bytes()), (0, 1000), "{n} trackers");
        }
    }
}

#[test]
fn a_big_change_racing_a_synchronisation_still_reaches_the_peak() {
    let t = Backtracing::new(Valloc::libc());
    let st = t.state().unwrap();
    let (addr, big) = (0x1000_0000usize, 1 << 20);
    // A synchronisation runs after the change's caller read `sync_gen`
    // and before the change is in its shard: it did not sum it.
    let stale = st.sync_gen.load(Ordering::Acquire);
    st.synchronise();
    let i = live::shard_of(addr);
    let (shard, hint) = (&st.live[i], &st.live_hints[i]);
    shard
        .lock()
        .insert(Record::new(addr, big, 3, NO_STACK, 0), hint);
    thread::THREAD.with(|th| st.account(Some(th), big as isize, stale));
    assert_eq!(st.peak_bytes.load(Ordering::Relaxed), big);
    assert!(shard.lock().remove(addr, hint).is_some());
}

#[test]
fn a_block_whose_record_cannot_be_stored_is_refused_and_given_back() {
    let inner = Counting::default();
    let t = Backtracing::new(Valloc::new(&inner));
    let v = t.valloc();
    let kept = v.malloc(8, 8);
    assert!(!kept.is_null());
    // The tables cannot grow from here on: each shard takes 12 records
    // (3/4 of its first 16 slots), then refuses.
    live::test_hooks::fail_growth(true);
    let n = if cfg!(miri) { 600 } else { 4000 };
    let got: Vec<*mut u8> = (0..n).map(|_| v.malloc(8, 8)).collect();
    live::test_hooks::fail_growth(false);
    let handed_out: Vec<*mut u8> = got.iter().copied().filter(|p| !p.is_null()).collect();
    let refused = n - handed_out.len();
    assert!(refused > 0, "some shard filled up");
    assert_eq!(t.live_blocks(), handed_out.len() + 1);
    // Every refused block went back to the inner allocator at once.
    let (allocs, frees) = (
        inner.allocs.load(Ordering::Relaxed),
        inner.frees.load(Ordering::Relaxed),
    );
    assert_eq!(allocs - frees, handed_out.len() + 1);
    let r = t.report();
    assert_eq!(r.refused_allocations, refused);
    assert!(r.to_text().contains("refused"), "{r}");
    // Every block handed out is known, and its free reaches the inner
    // allocator (a block handed out unrecorded would be an invalid free).
    for p in handed_out.into_iter().chain([kept]) {
        // SAFETY: each came from `v`.
        unsafe { v.free(p) };
    }
    assert_eq!(t.error_count(), 0);
    assert_eq!(
        inner.allocs.load(Ordering::Relaxed),
        inner.frees.load(Ordering::Relaxed)
    );
}

/// An allocator that allocates through a tracker of its own while
/// serving a block: the inner tracker must see that allocation as its
/// user's, whatever tracker the thread is inside.
struct AllocatesThroughATracker<'t> {
    tracker: &'t Backtracing<'t>,
    kept: Mutex<Vec<usize>>,
}

// SAFETY: blocks come from the libc allocator.
unsafe impl RawAlloc for AllocatesThroughATracker<'_> {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let side = self.tracker.valloc().malloc(8, 24);
        self.kept.lock().unwrap().push(side as usize);
        Valloc::libc().alloc_layout(layout)
    }
    unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: `ptr` came from `alloc`, i.e. from libc.
        unsafe { Valloc::libc().free(ptr.as_ptr()) }
    }
}

#[test]
fn reentrancy_is_per_tracker() {
    // A tracker wrapping another tracker's handle: both see the block.
    let inner = Backtracing::new(Valloc::libc());
    let outer = Backtracing::new(inner.valloc());
    let p = outer.valloc().malloc(8, 40);
    assert_eq!((outer.live_blocks(), outer.live_bytes()), (1, 40));
    assert_eq!(
        (inner.live_blocks(), inner.live_bytes()),
        (1, 40),
        "the inner tracker lost the block"
    );
    assert_eq!(inner.report().leaked_blocks, 1);
    // SAFETY: `p` came from `outer`.
    unsafe { outer.valloc().free(p) };
    assert!(outer.report().is_clean() && inner.report().is_clean());

    // An inner allocator that allocates through another tracker.
    let side = Backtracing::new(Valloc::libc());
    let alloc = AllocatesThroughATracker {
        tracker: &side,
        kept: Mutex::new(Vec::new()),
    };
    let t = Backtracing::new(Valloc::new(&alloc));
    let q = t.valloc().malloc(8, 16);
    assert_eq!(
        side.report().leaked_bytes,
        24,
        "the side allocation was lost"
    );
    // SAFETY: `q` came from `t`.
    unsafe { t.valloc().free(q) };
    for a in alloc.kept.lock().unwrap().drain(..) {
        // SAFETY: each came from `side`.
        unsafe { side.valloc().free(a as *mut u8) };
    }
    assert!(side.report().is_clean());
}

#[test]
fn live_tables_shrink_after_the_blocks_are_freed() {
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    let n = if cfg!(miri) { 2000 } else { 200_000 };
    let blocks: Vec<*mut u8> = (0..n).map(|_| v.malloc(8, 8)).collect();
    let grown = t.metadata().live_table_bytes;
    assert!(grown >= n * 24);
    for p in blocks {
        // SAFETY: each came from `v`.
        unsafe { v.free(p) };
    }
    // Back to the smallest tables: at most 16 slots in each of the 256
    // shards (a shard no block landed in has none).
    let m = t.metadata();
    assert!(
        m.live_table_bytes <= 256 * 16 * m.record_bytes,
        "{} (was {grown})",
        m.live_table_bytes
    );
}

#[test]
fn scopes_of_other_threads_are_not_counted() {
    let t = Backtracing::new(Valloc::libc());
    let v = t.valloc();
    let mine = t.scope();
    let a = alloc_at_a(v, 10);
    // Another thread opens its own scopes after this one, and leaks.
    let theirs = std::thread::scope(|s| {
        s.spawn(|| {
            let scope = t.scope();
            let b = alloc_at_b(v, 20);
            let nested = t.scope();
            let c = alloc_at_b(v, 30);
            assert_eq!(nested.leaks().leaked_bytes, 30);
            assert_eq!(scope.leaks().leaked_bytes, 50);
            [b as usize, c as usize]
        })
        .join()
        .unwrap()
    });
    assert_eq!(mine.leaks().leaked_bytes, 10);
    for p in theirs.into_iter().chain([a as usize]) {
        // SAFETY: each came from `v`.
        unsafe { v.free(p as *mut u8) };
    }
    mine.assert_no_leaks();
}

#[test]
fn a_dropped_tracker_leaves_the_fork_registry() {
    // Trackers come and go (each test has its own); their states must
    // not stay registered, or the fork handlers would lock freed memory.
    for _ in 0..if cfg!(miri) { 3 } else { 50 } {
        let t = Backtracing::new(Valloc::libc());
        let p = t.valloc().malloc(8, 8);
        // SAFETY: `p` came from `t`.
        unsafe { t.valloc().free(p) };
        let moved = t; // a tracker may move between uses
        drop(moved);
    }
    fork::tests_support::prepare_and_release();
}

#[test]
fn a_failed_scope_check_points_at_the_caller() {
    let t = Backtracing::new(Valloc::libc());
    let line = core::cell::Cell::new(0);
    let mut leaked = core::ptr::null_mut();
    let at = crate::test_util::panic_location(|| {
        let scope = t.scope();
        leaked = t.valloc().malloc(8, 40);
        line.set(line!() + 1);
        scope.assert_no_leaks();
    });
    assert_eq!(at, (file!().to_owned(), line.get()));
    // SAFETY: the block came from `t`.
    unsafe { t.valloc().free(leaked) };
}

/// Allocates through `v` two calls below the test (each frame kept: the
/// result is used after the call).
#[inline(never)]
fn dwarf_outer(v: Valloc<'_>) -> *mut u8 {
    core::hint::black_box(dwarf_inner(v))
}

#[inline(never)]
fn dwarf_inner(v: Valloc<'_>) -> *mut u8 {
    core::hint::black_box(alloc_at_a(v, 24))
}

/// Unwound by call-frame information, a stack holds every caller (the
/// test binary is not built with frame pointers, so a walk would stop
/// after the first frames), the same stack as the `backtrace` unwinder
/// from the first frame outside the tracker, and the tracker's own
/// frames are left out from the start.
#[test]
#[cfg_attr(miri, ignore)] // real stacks
fn dwarf_unwinding_finds_every_caller_as_the_unwinder_does() {
    let modes = [StackMode::Dwarf, StackMode::Unwind];
    let stacks = modes.map(|stack_mode| {
        let t = Backtracing::with_config(
            Valloc::libc(),
            Config {
                stack_mode,
                full_stacks: true,
                ..Config::DEFAULT
            },
        );
        let p = dwarf_outer(t.valloc());
        let r = t.report();
        // SAFETY: `p` came from the tracker's handle.
        unsafe { t.valloc().free(p) };
        assert_eq!(r.groups.len(), 1, "{r}");
        let names: Vec<String> = names(&r.groups[0].frames)
            .into_iter()
            .map(String::from)
            .collect();
        (t.stack_mode(), names)
    });
    let ((mode, why), dwarf) = &stacks[0];
    if !cfg!(dwarf_unwinder) {
        assert_eq!(*mode, StackMode::Unwind, "{why}");
        return;
    }
    assert_eq!(*mode, StackMode::Dwarf, "{why}");
    let at = |stack: &[String], f: &str| stack.iter().position(|n| n.contains(f));
    let chain = [
        "alloc_at_a",
        "dwarf_inner",
        "dwarf_outer",
        "dwarf_unwinding_finds",
    ];
    let found: Vec<_> = chain.iter().map(|f| at(dwarf, f)).collect();
    assert!(
        found.iter().all(Option::is_some) && found.windows(2).all(|w| w[0] < w[1]),
        "{chain:?} in order in {dwarf:?}"
    );
    assert!(
        !dwarf.iter().any(|n| n.contains("dwarf::unwind")),
        "the unwinder's own frame is skipped: {dwarf:?}"
    );
    // The same callers as far as both go (each mode's stack is cut at
    // the depth, and the unwinder's starts with frames of its own).
    let unwound = &stacks[1].1;
    let from = |stack: &[String]| stack[at(stack, "alloc_at_a").unwrap()..].to_vec();
    let (dwarf, unwound) = (from(dwarf), from(unwound));
    let common = dwarf.len().min(unwound.len());
    assert!(common >= chain.len(), "{dwarf:?} {unwound:?}");
    assert_eq!(dwarf[..common], unwound[..common]);
}

/// Called from generated code by
/// `dwarf_unwinding_goes_through_generated_code`: allocates through the
/// tracker `arg` points to.
#[cfg(dwarf_unwinder)]
extern "C" fn called_from_generated_code(arg: *mut core::ffi::c_void) -> *mut u8 {
    // SAFETY: the test passes a pointer to its live tracker.
    let t = unsafe { &*arg.cast::<Backtracing<'static>>() };
    core::hint::black_box(alloc_at_a(t.valloc(), 40))
}

/// Generated code (in no loaded object: no call-frame information, no
/// module) in the middle of a stack is unwound by its frame pointer, and
/// the callers beyond it by theirs: by the walk under the unwinder's lock
/// that learns its rule, and by the lock-free walk after it (one stack:
/// both allocations in one group).
#[cfg(dwarf_unwinder)]
#[test]
fn dwarf_unwinding_goes_through_generated_code() {
    // push rbp; mov rbp, rsp; mov rax, rdi; mov rdi, rsi; call rax;
    // pop rbp; ret: calls its first argument with its second, in a frame
    // with a frame record.
    const CODE: [u8; 14] = [
        0x55, 0x48, 0x89, 0xe5, 0x48, 0x89, 0xf8, 0x48, 0x89, 0xf7, 0xff, 0xd0, 0x5d, 0xc3,
    ];
    type Trampoline = unsafe extern "C" fn(
        extern "C" fn(*mut core::ffi::c_void) -> *mut u8,
        *mut core::ffi::c_void,
    ) -> *mut u8;
    // SAFETY: a fresh anonymous private mapping; no address is given.
    let page = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED);
    // SAFETY: the page is writable and larger than the code; then made
    // executable (and no longer writable) before it runs.
    let trampoline: Trampoline = unsafe {
        core::ptr::copy_nonoverlapping(CODE.as_ptr(), page.cast::<u8>(), CODE.len());
        assert_eq!(
            libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC),
            0
        );
        core::mem::transmute::<*mut libc::c_void, Trampoline>(page)
    };
    let t = Backtracing::with_config(
        Valloc::libc(),
        Config {
            stack_mode: StackMode::Dwarf,
            full_stacks: true,
            ..Config::DEFAULT
        },
    );
    let arg = core::ptr::from_ref(&t)
        .cast_mut()
        .cast::<core::ffi::c_void>();
    // SAFETY: the trampoline calls the callback with `arg` and returns
    // its result; `arg` points to `t`, alive throughout.
    let blocks = [(); 2].map(|()| unsafe { trampoline(called_from_generated_code, arg) });
    let r = t.report();
    for p in blocks {
        // SAFETY: each came from the tracker's handle.
        unsafe { t.valloc().free(p) };
    }
    // SAFETY: the code no longer runs; the mapping is ours.
    assert_eq!(unsafe { libc::munmap(page, 4096) }, 0);
    assert_eq!((r.groups.len(), r.groups[0].count), (1, 2), "{r}");
    // Positions in the frames (the generated one has no name).
    let frames = &r.groups[0].frames;
    let at = |f: &str| {
        frames
            .iter()
            .position(|frame| frame.function.as_deref().is_some_and(|n| n.ends_with(f)))
    };
    let generated = page as usize..page as usize + CODE.len();
    let found = [
        at("::alloc_at_a"),
        at("::called_from_generated_code"),
        frames.iter().position(|f| generated.contains(&f.ip)),
        at("::dwarf_unwinding_goes_through_generated_code"),
    ];
    assert!(
        found.iter().all(Option::is_some) && found.windows(2).all(|w| w[0] < w[1]),
        "the callback, the generated code and the test, in order: {found:?} in {:?}",
        frames.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
}

/// Out of memory for the records a report copies out of the tables (an
/// address-space limit just above what the process uses), `try_report`
/// answers `None` and the program goes on; with the memory back, the
/// report is whole. In a child process: the limit is the process's.
/// Not under the sanitizers, whose own memory the limit would starve.
#[test]
#[cfg(all(target_os = "linux", not(miri)))]
#[cfg_attr(
    any(mallocator_sanitize = "address", mallocator_sanitize = "thread"),
    ignore = "the sanitizers' own memory does not fit under an address-space limit"
)]
fn a_report_without_memory_for_its_records_is_none_and_the_program_goes_on() {
    if !crate::test_util::address_space_limits_hold() {
        eprintln!("skipped: this system does not enforce address-space limits");
        return;
    }
    assert!(fork::tests_support::in_child(|| {
        // A million blocks: 24 MiB of records to copy out.
        const BLOCKS: usize = 1 << 20;
        let t = Backtracing::new(Valloc::libc());
        let v = t.valloc();
        let blocks: Vec<*mut u8> = (0..BLOCKS).map(|_| v.malloc(8, 16)).collect();
        let all_made = blocks.iter().all(|p| !p.is_null());
        let starved = crate::test_util::with_address_space_limited(4 << 20, || t.try_report());
        let whole = t.try_report();
        for &p in &blocks {
            // SAFETY: each block came from `v`, freed once.
            unsafe { v.free(p) };
        }
        all_made
            && starved.is_none()
            && whole.is_some_and(|r| r.leaked_blocks == BLOCKS && r.leaked_bytes == 16 * BLOCKS)
    }));
}
